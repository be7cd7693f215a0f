"""``/memories``: thin adapters over jamey.memory."""

import time
from typing import Any
from typing import ClassVar

import falcon

from jamey import memory
from jamey.api import query
from jamey.api.access import deadline_problem
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import query_parameter
from jamey.api.openapi import ref
from jamey.api.openapi import text
from jamey.api.problems import Problem
from jamey.memory import MemoryStore

_JSON = 'application/json'
_QUERY = (
    'q',
    'match',
    'context',
    'layer',
    'entity',
    'since',
    'until',
    'limit',
    'consistent',
)


SCHEMAS: dict[str, Any] = {
    'MemoryInput': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['content', 'layer'],
        'properties': {
            'content': text(memory.MAX_CONTENT_CHARS),
            'layer': {'type': 'string', 'enum': list(memory.LAYERS)},
            'entity': text(memory.MAX_ENTITY_CHARS),
            'metadata': {'type': 'object'},
        },
    },
    'Memory': {
        'type': 'object',
        'required': ['id', 'layer', 'content', 'entity', 'created_at', 'metadata'],
        'properties': {
            'id': {'type': 'string', 'format': 'uuid'},
            'layer': {'type': 'string', 'enum': list(memory.LAYERS)},
            'content': {'type': 'string'},
            'entity': {'type': ['string', 'null']},
            'created_at': {'type': 'string'},
            'metadata': {'type': ['object', 'null']},
            'score': {'type': ['number', 'null']},
            'context_of': {
                'type': ['string', 'null'],
                'description': 'in a search with context: the hit this memory'
                ' was stored next to (null: a hit)',
            },
        },
    },
    'MemoryStats': {
        'type': 'object',
        'required': [
            'layers',
            'total',
            'index_documents',
            'lag',
            'index_bytes',
            'database_bytes',
            'rebuilt_at',
        ],
        'properties': {
            'layers': {
                'type': 'object',
                'additionalProperties': {'type': 'integer', 'minimum': 0},
            },
            'total': {'type': 'integer', 'minimum': 0},
            'index_documents': {'type': 'integer', 'minimum': 0},
            'lag': {'type': 'integer', 'minimum': 0},
            'index_bytes': {'type': 'integer', 'minimum': 0},
            'database_bytes': {'type': 'integer', 'minimum': 0},
            'rebuilt_at': {'type': ['string', 'null']},
        },
    },
    'MemoryList': {
        'type': 'object',
        'required': ['memories'],
        'properties': {'memories': {'type': 'array', 'items': ref('Memory')}},
    },
}


class Memories:
    """``POST /memories`` and ``GET /memories`` (search, or newest first)."""

    spec: ClassVar[dict[str, Any]] = {
        'post': {
            'summary': 'Keep a memory',
            'operationId': 'storeMemory',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('MemoryInput')}},
            },
            'responses': {
                '201': {
                    'description': 'Kept',
                    'content': {_JSON: {'schema': ref('Memory')}},
                }
            },
        },
        'get': {
            'summary': 'Search memories (BM25, any word), or list the newest without q',
            'operationId': 'searchMemories',
            'parameters': [
                query_parameter(
                    'q',
                    {'type': 'string', 'maxLength': memory.MAX_CONTENT_CHARS},
                    'words to look for (a question will do); any syntax is accepted',
                ),
                query_parameter(
                    'match',
                    {
                        'type': 'string',
                        'enum': list(memory.MATCHES),
                        'default': memory.MATCH_ANY,
                    },
                    'any: memories with any of the words, ranked by BM25 (English'
                    ' stopwords left out); all: only those with every word',
                ),
                query_parameter(
                    'context',
                    {'type': 'integer', 'minimum': 0, 'maximum': memory.MAX_CONTEXT},
                    'the memories stored just before and after each hit in its'
                    ' group (layer, entity, metadata.session), marked context_of',
                ),
                query_parameter(
                    'layer',
                    {'type': 'string', 'enum': list(memory.LAYERS)},
                    'only this layer',
                ),
                query_parameter(
                    'entity',
                    {'type': 'string', 'maxLength': memory.MAX_ENTITY_CHARS},
                    'only memories of this entity',
                ),
                query_parameter(
                    'since',
                    {'type': 'string', 'format': 'date-time'},
                    'created at or after',
                ),
                query_parameter(
                    'until',
                    {'type': 'string', 'format': 'date-time'},
                    'created at or before',
                ),
                query_parameter(
                    'limit',
                    {'type': 'integer', 'minimum': 1, 'maximum': memory.MAX_LIMIT},
                    'at most this many',
                ),
                query_parameter(
                    'consistent',
                    {'type': 'boolean'},
                    'wait until every memory stored before is searchable',
                ),
            ],
            'responses': {
                '200': {
                    'description': 'Matches, best first',
                    'content': {_JSON: {'schema': ref('MemoryList')}},
                }
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, store: MemoryStore, consistent_timeout_s: float) -> None:
        self.store = store
        self.consistent_timeout_s = consistent_timeout_s

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        kept, _ = self.store.store(read_json(req))
        resp.status = falcon.HTTP_201
        resp.location = f'/memories/{kept.id}'
        resp.media = kept.as_dict()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params(req, _QUERY)
        if query.flag(params, 'consistent'):
            latest = self.store.latest_sequence()
            left = req.context.deadline - time.perf_counter()
            if not self.store.wait_indexed(
                latest, min(self.consistent_timeout_s, left)
            ):
                if left <= self.consistent_timeout_s:
                    raise deadline_problem()
                raise Problem(
                    503,
                    'index_behind',
                    'The index did not catch up in time; try again.',
                )
        found = self.store.search(
            params.get('q'),
            match=params.get('match', memory.MATCH_ANY),
            layer=params.get('layer'),
            entity=params.get('entity'),
            since=params.get('since'),
            until=params.get('until'),
            limit=query.whole(params, 'limit', 20),
        )
        context = query.whole(params, 'context', 0)
        resp.media = memory.search_results(self.store.with_context(found, context))


class MemoryItem:
    """``GET|DELETE /memories/{id}``."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [
            {
                'name': 'id',
                'in': 'path',
                'required': True,
                'schema': {'type': 'string', 'maxLength': 64},
            }
        ],
        'get': {
            'summary': 'One memory',
            'operationId': 'getMemory',
            'responses': {
                '200': {
                    'description': 'The memory',
                    'content': {_JSON: {'schema': ref('Memory')}},
                }
            },
        },
        'delete': {
            'summary': 'Forget a memory (it leaves the index too)',
            'operationId': 'forgetMemory',
            'responses': {'204': {'description': 'Forgotten'}},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.store.get(id).as_dict()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        self.store.delete(id)
        resp.status = falcon.HTTP_204


class MemoryStats:
    """``GET /memories/stats``: counts per layer, index documents, lag, sizes."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Counts per layer, index documents, lag and sizes on disk',
            'operationId': 'memoryStats',
            'responses': {'200': json_response('The figures', ref('MemoryStats'))},
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.store.stats()


class MemoryReindex:
    """``POST /memories/reindex``: rebuild the index, answer the new figures.
    Only POST: a GET here would answer what its document does not say."""

    spec: ClassVar[dict[str, Any]] = {
        'post': {
            'summary': 'Rebuild the search index from the database',
            'operationId': 'reindexMemories',
            'responses': {
                '200': json_response('Rebuilt; the figures after', ref('MemoryStats'))
            },
        }
    }

    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.store.reindex()
        resp.media = self.store.stats()
