"""Every error as ``application/problem+json`` (RFC 9457), and nothing more.

Clients get a title, a stable ``code`` to branch on and the request id to
report; stack traces, paths and SQL go to the log only, under that id.
"""

import json
import logging
from http import HTTPStatus
from typing import Any

import falcon

from jamey import logs

PROBLEM_JSON = 'application/problem+json'
log = logging.getLogger('jamey.api')

# Stable codes for the errors Falcon raises on its own.
_CODES = {
    400: 'bad_request',
    404: 'not_found',
    405: 'method_not_allowed',
    406: 'not_acceptable',
    411: 'length_required',
    413: 'body_too_large',
    415: 'unsupported_media_type',
    429: 'rate_limited',
    431: 'headers_too_large',
    500: 'internal_error',
    501: 'not_implemented',
    503: 'unavailable',
}


def problem_body(status: int, detail: str | None) -> bytes:
    """The problem document for a status, shared with the listener's own errors."""
    phrase = HTTPStatus(status).phrase
    document: dict[str, Any] = {
        'type': 'about:blank',
        'title': phrase,
        'status': status,
        'detail': detail or phrase,
        'code': _CODES.get(status, f'http_{status}'),
    }
    rid = logs.request_id.get()
    if rid is not None:
        document['request_id'] = rid
    return json.dumps(document).encode()


def serialize(
    req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError
) -> None:
    """Falcon's error serializer: HTTPError -> problem+json, whatever Accept says."""
    resp.content_type = PROBLEM_JSON
    resp.data = problem_body(error.status_code, error.description)


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
