"""``/vault``: thin adapters over jamey.vault."""

import logging
from pathlib import Path
from typing import Any
from typing import ClassVar

import falcon

from jamey import validation
from jamey.api import query
from jamey.api.body import read_json
from jamey.api.openapi import json_response
from jamey.api.openapi import ref
from jamey.api.problems import Problem
from jamey.errors import BackupCancelledError
from jamey.errors import BackupNotFoundError
from jamey.errors import VaultBusyError
from jamey.errors import VaultConfigError
from jamey.errors import VaultError
from jamey.errors import VaultSpaceError
from jamey.vault import Vault

log = logging.getLogger('jamey.vault')

# What each failure of the vault answers; the rest is a finding about a
# backup (verify reports it) or a fault of the daemon (500).
_STATUS = {
    BackupCancelledError: 503,
    BackupNotFoundError: 404,
    VaultBusyError: 409,
    VaultConfigError: 409,
    VaultSpaceError: 507,
}

SCHEMAS: dict[str, Any] = {
    'Backup': {
        'type': 'object',
        'required': ['id', 'created_at', 'size_bytes', 'key_mode', 'key_id', 'cipher'],
        'properties': {
            'id': {'type': 'string', 'format': 'uuid'},
            'created_at': {'type': 'string'},
            'size_bytes': {'type': 'integer', 'minimum': 0},
            'key_mode': {
                'type': 'string',
                'enum': ['key', 'passphrase', 'recipient', 'unknown'],
            },
            'key_id': {'type': 'string', 'description': '8 bytes, hex'},
            'cipher': {
                'type': 'string',
                'enum': ['aes-256-gcm', 'chacha20-poly1305'],
            },
        },
    },
    'BackupList': {
        'type': 'object',
        'required': ['backups', 'unreadable'],
        'properties': {
            'backups': {'type': 'array', 'items': ref('Backup')},
            'unreadable': {
                'type': 'array',
                'items': ref('Unreadable'),
                'description': 'files named like backups whose headers fail',
            },
        },
    },
    'Unreadable': {
        'type': 'object',
        'required': ['file', 'code', 'detail'],
        'properties': {
            'file': {'type': 'string', 'description': 'its name in the vault'},
            'code': {
                'type': 'string',
                'description': 'why: not_a_backup, header_damaged, truncated,'
                ' misnamed (the header names another backup), os_error',
            },
            'detail': {'type': 'string'},
        },
    },
    'Verification': {
        'type': 'object',
        'required': ['id', 'ok'],
        'properties': {
            'id': {'type': 'string'},
            'ok': {'type': 'boolean'},
            'code': {
                'type': 'string',
                'description': 'what is wrong (when not ok): wrong_key,'
                ' header_damaged, chunk_tampered, truncated, ...',
            },
            'detail': {'type': 'string'},
            'chunks': {'type': 'integer'},
            'schema_version': {'type': 'integer'},
            'source_version': {'type': ['string', 'null']},
            'device': {
                'type': ['string', 'null'],
                'description': 'the device that made it (mqtt.device_id); null'
                ' for a backup made before backups named their device',
            },
            'components': {
                'type': 'array',
                'items': {
                    'type': 'object',
                    'required': ['name', 'size', 'sha256'],
                    'properties': {
                        'name': {'type': 'string'},
                        'kind': {'type': 'string'},
                        'size': {'type': 'integer'},
                        'sha256': {'type': 'string'},
                    },
                },
            },
        },
    },
}


def _status(error: VaultError) -> int | None:
    return next((s for cls, s in _STATUS.items() if isinstance(error, cls)), None)


def _problem(error: VaultError) -> Problem:
    return Problem(_status(error) or 500, error.code, str(error))


class Backups:
    """``GET|POST /vault/backups``: list (from headers), or back up now."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Backups in the vault, oldest first (no key needed)',
            'operationId': 'listBackups',
            'responses': {'200': json_response('The backups', ref('BackupList'))},
        },
        'post': {
            'summary': 'Back up now (then prune, as the schedule does)',
            'operationId': 'createBackup',
            'responses': {
                '201': json_response('Made, read back and verified', ref('Backup'))
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, vault: Vault, database: Path) -> None:
        self.vault = vault
        self.database = database

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params(req, ())
        backups, unreadable = self.vault.backups()
        for entry in unreadable:
            if entry.error is not None:  # what the system said, with the path
                log.warning(
                    'vault.unreadable', extra={'file': entry.file, 'error': entry.error}
                )
        resp.media = {
            'backups': [b.as_dict() for b in backups],
            'unreadable': [u.as_dict() for u in unreadable],
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params(req, ())
        if req.content_length:
            validation.reject_unknown(validation.require_object(read_json(req)), ())
        try:
            backup = self.vault.create(self.database)
            self.vault.prune()
        except VaultError as exc:
            raise _problem(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = backup.as_dict()


class BackupVerify:
    """``POST /vault/backups/{id}/verify``: decrypt and check one backup."""

    spec: ClassVar[dict[str, Any]] = {
        'parameters': [
            {
                'name': 'id',
                'in': 'path',
                'required': True,
                'schema': {'type': 'string', 'format': 'uuid'},
            }
        ],
        'post': {
            'summary': 'Decrypt a backup in full, check every hash and the'
            ' snapshot (writes nothing)',
            'operationId': 'verifyBackup',
            'responses': {
                '200': json_response(
                    'Checked: ok, or what is wrong with it', ref('Verification')
                )
            },
        },
    }
    schemas: ClassVar[dict[str, Any]] = SCHEMAS

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def on_post(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        query.params(req, ())
        try:
            resp.media = self.vault.verify(id)
        except VaultError as exc:
            if _status(exc) is not None:
                raise _problem(exc) from None
            resp.media = {'id': id, 'ok': False, 'code': exc.code, 'detail': str(exc)}
