"""``/tokens`` and ``/audit``: the admin's view of access, over jamey.access
and jamey.audit."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import access
from jamey import validation
from jamey.access import TokenStore
from jamey.api import query
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import query_parameter
from jamey.api.openapi import ref
from jamey.api.openapi import text
from jamey.audit import MAX_PAGE
from jamey.audit import VERDICTS
from jamey.audit import AuditLog
from jamey.errors import InputError

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
    'AuditPage': {
        'type': 'object',
        'required': ['entries', 'next_before'],
        'properties': {
            'entries': {
                'type': 'array',
                'items': {
                    'type': 'object',
                    'required': [
                        'seq',
                        'decision_id',
                        'decided_at',
                        'principal',
                        'verdict',
                        'rules_version',
                        'action_sha256',
                    ],
                    'properties': {
                        'seq': {'type': 'integer'},
                        'decision_id': {'type': 'string'},
                        'decided_at': {'type': 'string'},
                        'principal': {'type': 'string'},
                        'verdict': {'type': 'string', 'enum': list(VERDICTS)},
                        'rules_version': {'type': 'integer'},
                        'action_sha256': {'type': 'string'},
                    },
                },
            },
            'next_before': {'type': ['integer', 'null']},
        },
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
        for field in ('name', 'scope'):
            if field not in body:
                raise InputError(field, 'required', f'{field} is required.')
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


_AUDIT_QUERY = ('limit', 'before', 'decision_id')


class Audit:
    """``GET /audit`` (admin): the decisions of the conscience, newest first."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'The audit log of decisions, newest first',
            'operationId': 'listAudit',
            'parameters': [
                query_parameter(
                    'limit',
                    {'type': 'integer', 'minimum': 1, 'maximum': MAX_PAGE},
                    'entries per page (default 100)',
                ),
                query_parameter(
                    'before',
                    {'type': 'integer', 'minimum': 1},
                    'continue below this seq (next_before of the previous page)',
                ),
                query_parameter(
                    'decision_id', {'type': 'string'}, 'only this decision'
                ),
            ],
            'responses': {'200': json_response('A page of entries', ref('AuditPage'))},
        }
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query.params(req, _AUDIT_QUERY)
        limit = query.whole(params, 'limit', 100)
        if not 1 <= limit <= MAX_PAGE:
            raise InputError('limit', 'out_of_range', f'limit must be 1-{MAX_PAGE}.')
        before = query.whole(params, 'before', 0) or None
        decision_id = params.get('decision_id')
        if decision_id is not None:
            decision_id = validation.text('decision_id', decision_id, 64)
        resp.media = self.audit.entries(limit, before, decision_id)
