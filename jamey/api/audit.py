"""``/audit`` (admin): the decisions of the conscience, over jamey.audit."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import validation
from jamey.api import query
from jamey.api.openapi import json_response
from jamey.api.openapi import query_parameter
from jamey.api.openapi import ref
from jamey.audit import MAX_PAGE
from jamey.audit import VERDICTS
from jamey.audit import AuditLog
from jamey.errors import InputError

SCHEMAS: dict[str, Any] = {
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
