"""The envelope every message travels in, and the checks of a request's.

``{message_id, timestamp, payload, metadata{client_id, correlation_id}}``:
the ``message_id`` of a request is what makes a redelivery recognisable, and
a reply's ``correlation_id`` names the request it answers.
"""

import json
import time
import uuid
from typing import Any
from typing import NamedTuple

import apsw

from jamey import storage
from jamey import validation
from jamey.clock import iso_utc
from jamey.errors import InputError
from jamey.errors import RefusedError
from jamey.errors import StorageDamagedError

MAX_MESSAGE_BYTES = 128 * 1024
MAX_ID_CHARS = 128
FIELDS = ('message_id', 'timestamp', 'payload', 'metadata')


class Request(NamedTuple):
    message_id: str
    payload: dict[str, Any]


def refusal(error: InputError) -> RefusedError:
    """A refused field (of the envelope or a capability's), as a reply says it."""
    return RefusedError('bad_request', error.code, str(error), error.field or None)


# What a requester is told of each storage failure (``storage.failure_code``).
_STORAGE_REFUSALS = {
    storage.STORAGE_BUSY: ('locked', 'The database is held by another writer; retry.'),
    storage.NO_SPACE: (
        'write_failed',
        'The database could not be written (the disk is full or failing);'
        ' nothing of this request was kept.',
    ),
    storage.STORAGE_DAMAGED: (
        'damaged',
        'The database is damaged; its operator restores the newest backup.',
    ),
}


def storage_refusal(error: apsw.Error | StorageDamagedError) -> RefusedError | None:
    """SQLite's failures as the API's stable codes; None for any other
    failure. The request's transaction rolled back: nothing of it was kept."""
    code = storage.failure_code(error)
    if code is None:
        return None
    reason, message = _STORAGE_REFUSALS[code]
    return RefusedError(code, reason, message)


def parse_request(raw: bytes | bytearray) -> Request:
    """A request envelope: strict JSON, a message id, an object payload.

    Raises:
        RefusedError: ``bad_request`` naming the reason (``too_large``,
            ``invalid_json``, ``required``, ``wrong_type``, ...).
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise RefusedError(
            'bad_request',
            'too_large',
            f'The message is larger than {MAX_MESSAGE_BYTES} bytes.',
        )
    try:
        document = validation.json_document(bytes(raw), inner='payload')
        body = validation.require_object(document)
        validation.reject_unknown(body, FIELDS)
        validation.require_fields(body, ('message_id', 'payload'))
        message_id = validation.text('message_id', body['message_id'], MAX_ID_CHARS)
        if not isinstance(body['payload'], dict):
            raise InputError('payload', 'wrong_type', 'payload must be an object.')
        if not isinstance(body.get('metadata', {}), dict):
            raise InputError('metadata', 'wrong_type', 'metadata must be an object.')
        if 'timestamp' in body:
            validation.text('timestamp', body['timestamp'], 64)
    except InputError as exc:
        raise refusal(exc) from None
    return Request(message_id, body['payload'])


def encode(
    payload: dict[str, Any], client_id: str, correlation_id: str | None
) -> bytes:
    """A new message: its own id and time, the payload, who sent it and
    which request (if any) it answers."""
    document = {
        'message_id': str(uuid.uuid4()),
        'timestamp': iso_utc(time.time()),
        'payload': payload,
        'metadata': {'client_id': client_id, 'correlation_id': correlation_id},
    }
    return json.dumps(
        document, ensure_ascii=False, separators=(',', ':'), allow_nan=False
    ).encode()


def error_payload(refused: RefusedError) -> dict[str, Any]:
    payload: dict[str, Any] = {
        'error': refused.error,
        'reason': refused.reason,
        'detail': str(refused),
    }
    if refused.field is not None:
        payload['field'] = refused.field
    return payload
