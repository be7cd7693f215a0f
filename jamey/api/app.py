"""The app factory: routes, middleware and error handling in one place."""

import mimetypes
from pathlib import Path
from typing import Any

import falcon

from jamey.api import problems
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
from jamey.api.middleware import BodyLimit
from jamey.api.middleware import RequestContext
from jamey.api.openapi import OpenApi
from jamey.api.openapi import build_document
from jamey.api.soul import Decay
from jamey.api.soul import Entities
from jamey.api.soul import EntityEmotions
from jamey.api.soul import EntityItem
from jamey.api.vault import Backups
from jamey.api.vault import BackupVerify
from jamey.conscience import Conscience
from jamey.health import HealthChecks
from jamey.memory import MemoryStore
from jamey.soul import Soul
from jamey.vault import Vault


def routes(
    health: HealthChecks,
    conscience: Conscience,
    memories: MemoryStore,
    soul: Soul,
    consistent_timeout_s: float = 5.0,
    vault: Vault | None = None,
    database: Path | None = None,
) -> dict[str, Any]:
    """The route table: each path served (but the document) and its resource."""
    table = {
        '/': Root(),
        '/health': Liveness(),
        '/health/detailed': Detailed(health),
        '/evaluate': Evaluate(conscience, soul),
        '/rules': Rules(conscience),
        '/rules/{name}': RuleItem(conscience),
        '/memories': Memories(memories, consistent_timeout_s),
        '/memories/{id}': MemoryItem(memories),
        '/memories/stats': MemoryStats(memories),
        '/memories/reindex': MemoryReindex(memories),
        '/soul/entities': Entities(soul),
        '/soul/entities/{name}': EntityItem(soul),
        '/soul/entities/{name}/emotions': EntityEmotions(soul),
        '/soul/decay': Decay(soul),
    }
    if vault is not None and database is not None:
        table['/vault/backups'] = Backups(vault, database)
        table['/vault/backups/{id}/verify'] = BackupVerify(vault)
    return table


def create_app(
    health: HealthChecks,
    conscience: Conscience,
    memories: MemoryStore,
    soul: Soul,
    max_body_bytes: int,
    consistent_timeout_s: float = 5.0,
    vault: Vault | None = None,
    database: Path | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the WSGI app from the capabilities it adapts; no globals."""
    # NOTE: Falcon reads the system's MIME tables (mimetypes.init) for static
    # files, which jameyd never serves. Marking the module initialised keeps
    # Python's built-in table and saves 5 ms of start-up.
    mimetypes.inited = True
    middleware: list[Any] = [RequestContext(), BodyLimit(max_body_bytes)]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    table = routes(
        health, conscience, memories, soul, consistent_timeout_s, vault, database
    )
    classes = {path: type(resource) for path, resource in table.items()}
    table['/openapi.json'] = OpenApi(
        build_document({**classes, '/openapi.json': OpenApi})
    )
    for path, resource in table.items():
        app.add_route(path, resource)
    problems.install(app)
    return app
