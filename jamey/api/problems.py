"""Every error as ``application/problem+json`` (RFC 9457), and nothing more.

Clients get a title, a stable ``code`` to branch on and the request id to
report; stack traces, paths and SQL go to the log only, under that id.
"""

import json
import logging
from http import HTTPStatus
from typing import Any

import apsw
import falcon

from jamey import logs
from jamey import storage
from jamey.errors import ConflictError
from jamey.errors import InputError
from jamey.errors import MemoryIndexError
from jamey.errors import NotFoundError
from jamey.errors import RowDamagedError
from jamey.errors import StorageDamagedError

PROBLEM_JSON = 'application/problem+json'
log = logging.getLogger('jamey.api')

# Stable codes for the errors Falcon raises on its own.
_CODES = {
    400: 'bad_request',
    404: 'not_found',
    405: 'method_not_allowed',
    406: 'not_acceptable',
    408: 'request_timeout',
    411: 'length_required',
    413: 'body_too_large',
    415: 'unsupported_media_type',
    422: 'invalid_input',
    429: 'rate_limited',
    431: 'headers_too_large',
    500: 'internal_error',
    501: 'not_implemented',
    503: 'unavailable',
}


class Problem(falcon.HTTPError):
    """An error with a stable code, and the request field it is about."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, description=detail, headers=headers)
        self.problem_code = code
        self.field = field


def problem_body(
    status: int, detail: str | None, code: str | None = None, field: str | None = None
) -> bytes:
    """The problem document for a status, shared with the listener's own errors."""
    phrase = HTTPStatus(status).phrase
    document: dict[str, Any] = {
        'type': 'about:blank',
        'title': phrase,
        'status': status,
        'detail': detail or phrase,
        'code': code or _CODES.get(status, f'http_{status}'),
    }
    if field is not None:
        document['field'] = field
    rid = logs.request_id.get()
    if rid is not None:
        document['request_id'] = rid
    return json.dumps(document, allow_nan=False).encode()


def serialize(
    req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError
) -> None:
    """Falcon's error serializer: HTTPError -> problem+json, whatever Accept says."""
    resp.content_type = PROBLEM_JSON
    resp.data = problem_body(
        error.status_code,
        error.description,
        getattr(error, 'problem_code', None),
        getattr(error, 'field', None),
    )


def _from_input(
    req: falcon.Request, resp: falcon.Response, error: InputError, params: Any
) -> None:
    status = 400 if error.code == 'invalid_json' else 422
    raise Problem(status, error.code, str(error), error.field)


def _from_not_found(
    req: falcon.Request, resp: falcon.Response, error: NotFoundError, params: Any
) -> None:
    raise Problem(404, error.code, str(error))


def _from_conflict(
    req: falcon.Request, resp: falcon.Response, error: ConflictError, params: Any
) -> None:
    raise Problem(409, error.code, str(error))


def _from_index(
    req: falcon.Request, resp: falcon.Response, error: MemoryIndexError, params: Any
) -> None:
    raise Problem(
        503,
        'index_unavailable',
        'The memory index cannot be used now (its health check,'
        ' memory_index, says why); memories are kept, and indexed once it'
        ' can. Try again later.',
        headers={'Retry-After': '10'},
    )


def _from_storage(
    req: falcon.Request,
    resp: falcon.Response,
    error: apsw.Error | StorageDamagedError,
    params: Any,
) -> None:
    """SQLite's failures as stable problems, each logged under its own
    event: the request changed nothing (its transaction rolled back)."""
    code = storage.failure_code(error)
    if code == storage.STORAGE_BUSY:
        log.warning('storage.busy', extra={'route': req.uri_template})
        raise Problem(
            503,
            'storage_busy',
            'The database is held by another writer; try again.',
            headers={'Retry-After': '1'},
        )
    if code == storage.NO_SPACE:
        log.error(
            'storage.write_failed',
            extra={'route': req.uri_template, 'error': type(error).__name__},
        )
        raise Problem(
            507,
            'no_space',
            'The database could not be written (the disk is full or failing);'
            ' nothing of this request was kept.',
        )
    if code == storage.STORAGE_DAMAGED:
        log.error('storage.damaged', extra={'route': req.uri_template})
        # A row's own damage names the row (and the remedy).
        what = str(error) if isinstance(error, RowDamagedError) else ''
        raise Problem(
            500,
            'storage_damaged',
            what
            or 'The database is damaged. Restore the newest backup'
            ' (jameyctl vault restore) after stopping jamey.',
        )
    unexpected(req, resp, error, params)


def answer(resp: falcon.Response, problem: Problem) -> None:
    """Replace whatever ``resp`` holds with ``problem`` (after a handler ran)."""
    resp.status = problem.status_code
    resp.content_type = PROBLEM_JSON
    resp.text = None
    resp.data = problem_body(
        problem.status_code, problem.description, problem.problem_code
    )


def unexpected(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: dict[str, Any]
) -> None:
    """Last resort for a bug: log it under the request id, tell the client little."""
    log.error('http.unhandled', exc_info=error, extra={'route': req.uri_template})
    resp.status = falcon.HTTP_500
    resp.content_type = PROBLEM_JSON
    resp.data = problem_body(500, 'The request failed; the log has details.')


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    app.set_error_serializer(serialize)
    app.add_error_handler(Exception, unexpected)
    # Capability modules raise these; the API only maps them to statuses.
    app.add_error_handler(InputError, _from_input)
    app.add_error_handler(NotFoundError, _from_not_found)
    app.add_error_handler(ConflictError, _from_conflict)
    app.add_error_handler(MemoryIndexError, _from_index)
    app.add_error_handler(apsw.Error, _from_storage)
    app.add_error_handler(StorageDamagedError, _from_storage)
