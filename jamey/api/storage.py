"""``/storage/check``: the full check of the database (jamey.integrity)."""

from typing import Any
from typing import ClassVar

import falcon

from jamey.api import query
from jamey.api.openapi import json_response
from jamey.api.openapi import ref
from jamey.integrity import IntegrityCheck

SCHEMAS: dict[str, Any] = {
    'StorageCheck': {
        'type': 'object',
        'required': ['running', 'interval_s', 'last'],
        'properties': {
            'running': {
                'type': 'boolean',
                'description': 'A check runs now, or is asked for',
            },
            'interval_s': {
                'type': 'number',
                'description': 'Seconds between scheduled checks (0: none)',
            },
            'last': {
                'oneOf': [ref('StorageFinding'), {'type': 'null'}],
                'description': 'The last finished check; null before the first',
            },
        },
    },
    'StorageFinding': {
        'type': 'object',
        'required': ['started_at', 'seconds', 'status', 'problems', 'damaged_rows'],
        'properties': {
            'started_at': {'type': 'string'},
            'seconds': {'type': 'number', 'minimum': 0},
            'status': {'type': 'string', 'enum': ['ok', 'damaged']},
            'problems': {
                'type': 'array',
                'items': {'type': 'string'},
                'description': "SQLite's integrity_check findings",
            },
            'damaged_rows': {
                'type': 'array',
                'items': {'type': 'string'},
                'description': 'Rows that fail their checksums, as table/key',
            },
        },
    },
}


class StorageCheck:
    """``GET`` the full check's state and last finding; ``POST`` to run one
    now (it runs on its own thread: poll ``GET`` for its finding)."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': "The full database check's state and last finding",
            'operationId': 'getStorageCheck',
            'responses': {
                '200': json_response('The state', ref('StorageCheck')),
            },
        },
        'post': {
            'summary': "Run the full check now: SQLite's integrity_check and"
            " every row's checksum (writes nothing)",
            'operationId': 'runStorageCheck',
            'responses': {
                '202': json_response('Asked for; poll GET', ref('StorageCheck')),
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, integrity: IntegrityCheck) -> None:
        self.integrity = integrity

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params(req, ())
        resp.media = self.integrity.state()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params(req, ())
        self.integrity.request()
        resp.status = falcon.HTTP_202
        resp.media = self.integrity.state()
