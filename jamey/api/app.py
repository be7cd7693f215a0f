"""The app factory: routes, middleware and error handling in one place."""

import functools
import json
import mimetypes
from typing import Any
from typing import NamedTuple

import falcon
from prometheus_client import CollectorRegistry

from jamey.access import Scope
from jamey.access import TokenStore
from jamey.api import problems
from jamey.api.access import Access
from jamey.api.access import Cors
from jamey.api.access import Deadline
from jamey.api.access import Policy
from jamey.api.access import Route
from jamey.api.access import RoutedOnce
from jamey.api.audit import Audit
from jamey.api.chat import ChatResource
from jamey.api.chat import ChatSession
from jamey.api.conscience import Evaluate
from jamey.api.conscience import RuleItem
from jamey.api.conscience import Rules
from jamey.api.health import Detailed
from jamey.api.health import Liveness
from jamey.api.health import Root
from jamey.api.memory import Memories
from jamey.api.memory import MemoryItem
from jamey.api.memory import MemoryReindex
from jamey.api.memory import MemoryStats
from jamey.api.metrics import Gauge
from jamey.api.metrics import Metrics
from jamey.api.metrics import MetricsResource
from jamey.api.metrics import registry
from jamey.api.middleware import BodyLimit
from jamey.api.middleware import RenderBody
from jamey.api.middleware import RequestContext
from jamey.api.openapi import OpenApi
from jamey.api.openapi import build_document
from jamey.api.soul import Decay
from jamey.api.soul import Entities
from jamey.api.soul import EntityEmotions
from jamey.api.soul import EntityItem
from jamey.api.storage import StorageCheck
from jamey.api.tokens import TokenItem
from jamey.api.tokens import Tokens
from jamey.api.vault import Backups
from jamey.api.vault import BackupVerify
from jamey.audit import AuditLog
from jamey.chat import Chat
from jamey.conscience import Conscience
from jamey.health import HealthChecks
from jamey.integrity import IntegrityCheck
from jamey.memory import MemoryStore
from jamey.soul import Soul
from jamey.vault import Vault

_ADMIN = Scope.ADMIN


class Parts(NamedTuple):
    """The capabilities the API adapts, and how it guards them."""

    health: HealthChecks
    conscience: Conscience
    memories: MemoryStore
    soul: Soul
    tokens: TokenStore
    audit: AuditLog
    policy: Policy
    max_body_bytes: int = 1_048_576
    consistent_timeout_s: float = 5.0
    gauges: tuple[Gauge, ...] = ()
    vault: Vault | None = None
    chat: Chat | None = None
    integrity: IntegrityCheck | None = None


def routes(parts: Parts, metrics: CollectorRegistry) -> dict[str, Route]:
    """The route table: each path (but the document), its resource, its scope.

    Reads need ``read`` unless a route says otherwise, changes ``write``;
    liveness is open to anyone; access, backups, reindexing and the full
    database check need ``admin``.
    """
    p = parts
    table = {
        '/': Route(Root()),
        '/health': Route(Liveness(), floor=None),
        '/health/detailed': Route(Detailed(p.health)),
        '/metrics': Route(MetricsResource(metrics)),
        '/evaluate': Route(Evaluate(p.conscience, p.soul, p.audit)),
        '/rules': Route(Rules(p.conscience)),
        '/rules/{name}': Route(RuleItem(p.conscience)),
        '/memories': Route(Memories(p.memories, p.consistent_timeout_s)),
        '/memories/{id}': Route(MemoryItem(p.memories)),
        '/memories/stats': Route(MemoryStats(p.memories)),
        '/memories/reindex': Route(MemoryReindex(p.memories), floor=_ADMIN),
        '/soul/entities': Route(Entities(p.soul)),
        '/soul/entities/{name}': Route(EntityItem(p.soul)),
        '/soul/entities/{name}/emotions': Route(EntityEmotions(p.soul)),
        '/soul/decay': Route(Decay(p.soul)),
        '/tokens': Route(Tokens(p.tokens), floor=_ADMIN),
        '/tokens/{id}': Route(TokenItem(p.tokens), floor=_ADMIN),
        '/audit': Route(Audit(p.audit), floor=_ADMIN),
    }
    if p.vault is not None:
        table['/vault/backups'] = Route(
            Backups(p.vault, p.health.db.path), floor=_ADMIN
        )
        table['/vault/backups/{id}/verify'] = Route(BackupVerify(p.vault), floor=_ADMIN)
    if p.integrity is not None:
        table['/storage/check'] = Route(StorageCheck(p.integrity), floor=_ADMIN)
    if p.chat is not None:
        table['/chat'] = Route(ChatResource(p.chat))
        table['/chat/sessions/{session}'] = Route(ChatSession(p.chat))
    return table


def create_app(parts: Parts) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the WSGI app from the capabilities it adapts; no globals."""
    # NOTE: Falcon reads the system's MIME tables (mimetypes.init) for static
    # files, which jameyd never serves. Marking the module initialised keeps
    # Python's built-in table and saves 5 ms of start-up.
    mimetypes.inited = True
    metrics = registry(
        parts.memories, parts.audit, list(parts.gauges), parts.conscience.guard
    )
    table = routes(parts, metrics)
    # The document describes itself too; resource classes carry the specs.
    document = build_document({**table, '/openapi.json': Route(OpenApi)})
    table['/openapi.json'] = Route(OpenApi(document))
    # Access finds a request's route itself, before routing: an unknown path
    # is refused to a stranger like a known one.
    router = RoutedOnce()
    middleware: list[Any] = [
        Metrics(metrics),
        RequestContext(),
        RenderBody(),
        Access(parts.policy, table, router),
        Cors(parts.policy),
        Deadline(parts.policy),
        BodyLimit(parts.max_body_bytes),
    ]
    app = falcon.App(middleware=middleware, router=router)
    app.req_options.strip_url_path_trailing_slash = True
    # NaN and Infinity are not JSON: an answer holding one is a bug, raised.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=functools.partial(json.dumps, ensure_ascii=False, allow_nan=False)
    )
    for path, route in table.items():
        app.add_route(path, route.resource)
    problems.install(app)
    return app
