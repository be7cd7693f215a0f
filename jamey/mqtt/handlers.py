"""The requests MQTT answers: thin adapters over the capabilities.

Each takes the payload of a request and returns the document the HTTP API
answers for the same request, through the same functions, so a request
behaves the same whichever way it arrives.
"""

from collections.abc import Callable
from typing import Any

from jamey import memory
from jamey import validation
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.errors import InputError
from jamey.judgement import judge_request
from jamey.memory import MemoryStore
from jamey.soul import Soul

QUERY_FIELDS = ('q', 'match', 'context', 'layer', 'entity', 'limit')
DEFAULT_LIMIT = 20

# A handler takes the payload and the principal the request speaks for.
Handler = Callable[[dict[str, Any], str], dict[str, Any]]


def handlers(
    conscience: Conscience, soul: Soul, memories: MemoryStore, audit: AuditLog
) -> dict[str, Handler]:
    """The handler of each request topic (the part after the device)."""

    def evaluate(payload: dict[str, Any], principal: str) -> dict[str, Any]:
        return judge_request(conscience, soul, audit, principal, payload)

    def store(payload: dict[str, Any], principal: str) -> dict[str, Any]:
        kept, _ = memories.store(payload)
        return kept.as_dict()

    def query(payload: dict[str, Any], principal: str) -> dict[str, Any]:
        validation.reject_unknown(payload, QUERY_FIELDS)
        validation.require_fields(payload, ('q',))
        q = validation.text('q', payload['q'], memory.MAX_CONTENT_CHARS, required=False)
        limit = payload.get('limit', DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InputError('limit', 'wrong_type', 'limit must be an integer.')
        found = memories.search(
            q,
            match=payload.get('match', memory.MATCH_ANY),
            layer=payload.get('layer'),
            entity=payload.get('entity'),
            limit=limit,
        )
        context = payload.get('context', 0)
        return memory.search_results(memories.with_context(found, context))

    return {
        'conscience/evaluate': evaluate,
        'memory/store': store,
        'memory/query': query,
    }
