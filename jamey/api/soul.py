"""``/soul``: thin adapters over jamey.soul."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import soul
from jamey import validation
from jamey.api import query
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import query_parameter
from jamey.api.openapi import ref
from jamey.api.openapi import text
from jamey.errors import InputError
from jamey.soul import Soul
from jamey.soul.model import Emotion

_JSON = 'application/json'
_UNIT = {'type': 'number', 'minimum': 0, 'maximum': 1}
_EMOTION_NAMES = [e.value for e in Emotion]

SCHEMAS: dict[str, Any] = {
    'Entity': {
        'type': 'object',
        'required': [
            'name',
            'trust',
            'empathy',
            'empathy_description',
            'emotions',
            'dominant_emotion',
            'decay_rate',
            'created_at',
            'last_interaction',
            'interaction_count',
            'linked_memories',
        ],
        'properties': {
            'name': {'type': 'string'},
            'trust': _UNIT,
            'empathy': _UNIT,
            'empathy_description': {'type': 'string'},
            'emotions': {
                'type': 'object',
                'description': 'the latest intensity of each emotion recorded',
                'additionalProperties': _UNIT,
            },
            'dominant_emotion': {
                'type': ['object', 'null'],
                'properties': {
                    'name': {'type': 'string', 'enum': _EMOTION_NAMES},
                    'emoji': {'type': 'string'},
                },
            },
            'decay_rate': {'type': 'number', 'description': 'trust lost per hour'},
            'created_at': {'type': 'string'},
            'last_interaction': {'type': ['string', 'null']},
            'interaction_count': {'type': 'integer', 'minimum': 0},
            'linked_memories': {'type': 'integer', 'minimum': 0},
        },
    },
    'EntityPage': {
        'type': 'object',
        'required': ['entities', 'total', 'limit', 'offset'],
        'properties': {
            'entities': {'type': 'array', 'items': ref('Entity')},
            'total': {'type': 'integer', 'minimum': 0},
            'limit': {'type': 'integer'},
            'offset': {'type': 'integer'},
        },
    },
    'EntityInput': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['trust'],
        'properties': {'trust': _UNIT},
    },
    'EmotionInput': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['emotion'],
        'properties': {
            'emotion': {
                'type': 'string',
                'description': 'a name, happy / sad / angry, or the emoji',
            },
            'intensity': _UNIT,
            'source': {'type': 'string', 'enum': ['api', 'manual']},
        },
    },
    'EntityDeleted': {
        'type': 'object',
        'required': ['name', 'emotions', 'links', 'memories_forgotten'],
        'properties': {
            'name': {'type': 'string'},
            'emotions': {'type': 'integer'},
            'links': {'type': 'integer'},
            'memories_forgotten': {'type': 'integer'},
        },
    },
    'DecayResult': {
        'type': 'object',
        'required': ['decayed', 'pruned'],
        'properties': {
            'decayed': {'type': 'integer'},
            'pruned': {'type': 'array', 'items': {'type': 'string'}},
        },
    },
}
_NAME = {
    'name': 'name',
    'in': 'path',
    'required': True,
    'schema': text(validation.MAX_ENTITY_CHARS),
}


class Entities:
    """``GET /soul/entities``: a page of entities, sorted."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Entities, a page at a time',
            'operationId': 'listEntities',
            'parameters': [
                query_parameter(
                    'sort',
                    {'type': 'string', 'enum': list(soul.SORTS)},
                    'sort key (default last_interaction)',
                ),
                query_parameter(
                    'order',
                    {'type': 'string', 'enum': ['asc', 'desc']},
                    'sort order (default desc)',
                ),
                query_parameter(
                    'limit',
                    {'type': 'integer', 'minimum': 1, 'maximum': soul.MAX_PAGE},
                    'at most this many (default 20)',
                ),
                query_parameter(
                    'offset',
                    {'type': 'integer', 'minimum': 0},
                    'skip this many (default 0)',
                ),
            ],
            'responses': {'200': json_response('The page', ref('EntityPage'))},
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, soul: Soul) -> None:
        self.soul = soul

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params(req, ('sort', 'order', 'limit', 'offset'))
        order = params.get('order', 'desc')
        if order not in ('asc', 'desc'):
            raise InputError('order', 'wrong_type', 'order must be asc or desc.')
        limit = query.whole(params, 'limit', 20)
        offset = query.whole(params, 'offset', 0)
        entities, total = self.soul.page(
            params.get('sort', 'last_interaction'), order == 'desc', limit, offset
        )
        resp.media = {
            'entities': [e.as_dict() for e in entities],
            'total': total,
            'limit': limit,
            'offset': offset,
        }


class EntityItem:
    """``GET|PUT|DELETE /soul/entities/{name}``."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [_NAME],
        'get': {
            'summary': 'One entity: trust, empathy, emotions',
            'operationId': 'getEntity',
            'responses': {'200': json_response('The entity', ref('Entity'))},
        },
        'put': {
            'summary': 'Create an entity or set its trust',
            'operationId': 'upsertEntity',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('EntityInput')}},
            },
            'responses': {
                '200': json_response('Trust set', ref('Entity')),
                '201': json_response('Created', ref('Entity')),
            },
        },
        'delete': {
            'summary': 'Remove an entity, its emotions and links',
            'operationId': 'deleteEntity',
            'parameters': [
                query_parameter(
                    'forget_memories',
                    {'type': 'boolean'},
                    'forget its memories too (they leave the index)',
                ),
            ],
            'responses': {'200': json_response('Removed', ref('EntityDeleted'))},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, soul: Soul) -> None:
        self.soul = soul

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params(req, ())
        resp.media = self.soul.get(name).as_dict()

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        entity, created = self.soul.upsert(name, read_json(req))
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.media = entity.as_dict()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        params = query.params(req, ('forget_memories',))
        resp.media = self.soul.delete(name, query.flag(params, 'forget_memories'))


class EntityEmotions:
    """``POST /soul/entities/{name}/emotions``: record an emotion."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [_NAME],
        'post': {
            'summary': 'Record an emotion about an entity',
            'operationId': 'recordEmotion',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('EmotionInput')}},
            },
            'responses': {
                '201': json_response('Recorded; the entity now', ref('Entity'))
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, soul: Soul) -> None:
        self.soul = soul

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = validation.require_object(read_json(req))
        validation.reject_unknown(body, ('emotion', 'intensity', 'source'))
        if 'emotion' not in body:
            raise InputError('emotion', 'required', 'emotion is required.')
        source = body.get('source', 'api')
        if source not in ('api', 'manual'):
            raise InputError(
                'source', 'unknown_source', 'source must be api or manual.'
            )
        entity = self.soul.record(name, body['emotion'], body.get('intensity'), source)
        resp.status = falcon.HTTP_201
        resp.media = entity.as_dict()


class Decay:
    """``POST /soul/decay``: apply trust decay now (and prune, if on)."""

    spec: ClassVar[dict[str, Any]] = {
        'post': {
            'summary': 'Apply trust decay to every entity now',
            'operationId': 'decaySoul',
            'responses': {'200': json_response('Applied', ref('DecayResult'))},
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, soul: Soul) -> None:
        self.soul = soul

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.soul.decay()
