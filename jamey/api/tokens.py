"""``/tokens``: API tokens (admin), over jamey.access."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import access
from jamey import validation
from jamey.access import TokenStore
from jamey.api import query
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import ref
from jamey.api.openapi import text

_JSON = 'application/json'
_SCOPE = {'type': 'string', 'enum': ['read', 'write', 'admin']}
_TIME = {'type': ['string', 'null']}
_TOKEN_ID = {'type': 'string', 'pattern': '^[0-9a-f]{12}$'}
SCHEMAS: dict[str, Any] = {
    'TokenRequest': {
        'type': 'object',
        'additionalProperties': False,
        'required': ['name', 'scope'],
        'properties': {
            'name': text(access.MAX_TOKEN_NAME_CHARS),
            'scope': _SCOPE,
            'expires_in_s': {
                'type': 'number',
                'exclusiveMinimum': 0,
                'maximum': 10 * 365 * 86400,
            },
        },
    },
    'Token': {
        'type': 'object',
        'required': [
            'id',
            'name',
            'scope',
            'created_at',
            'expires_at',
            'last_used_at',
            'revoked_at',
            'active',
        ],
        'properties': {
            'id': _TOKEN_ID,
            'name': {'type': 'string'},
            'scope': _SCOPE,
            'created_at': {'type': 'string'},
            'expires_at': _TIME,
            'last_used_at': _TIME,
            'revoked_at': _TIME,
            'active': {'type': 'boolean'},
            'token': {
                'type': 'string',
                'description': 'the token itself: only in the answer to its creation',
            },
        },
    },
    'TokenList': {
        'type': 'object',
        'required': ['tokens'],
        'properties': {'tokens': {'type': 'array', 'items': ref('Token')}},
    },
}


class Tokens:
    """``GET /tokens`` and ``POST /tokens`` (admin)."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Every API token (never the tokens themselves)',
            'operationId': 'listTokens',
            'responses': {'200': json_response('The tokens', ref('TokenList'))},
        },
        'post': {
            'summary': 'Create a token; the answer is the only time it is shown',
            'operationId': 'createToken',
            'requestBody': {
                'required': True,
                'content': {_JSON: {'schema': ref('TokenRequest')}},
            },
            'responses': {'201': json_response('The new token', ref('Token'))},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params(req, ())
        resp.media = {'tokens': self.tokens.list()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validation.require_object(read_json(req))
        validation.reject_unknown(body, ('name', 'scope', 'expires_in_s'))
        validation.require_fields(body, ('name', 'scope'))
        record, token = self.tokens.create(
            body['name'], body['scope'], body.get('expires_in_s')
        )
        resp.status = falcon.HTTP_201
        resp.location = f'/tokens/{record["id"]}'
        resp.media = {**record, 'token': token}


class TokenItem:
    """``DELETE /tokens/{id}``: revoke (admin)."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [
            {'name': 'id', 'in': 'path', 'required': True, 'schema': _TOKEN_ID}
        ],
        'delete': {
            'summary': 'Revoke a token at once',
            'operationId': 'revokeToken',
            'responses': {'200': json_response('The revoked token', ref('Token'))},
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = self.tokens.revoke(id)
