"""Cross-cutting request handling: request ids, access log, body limit, and
the answer rendered while its errors can still be answered."""

import logging
import re
import time
from typing import Any

import falcon

from jamey import logs

log = logging.getLogger('jamey.api')
# An id a client sends is echoed into headers and logs: accept only plain ones.
_REQUEST_ID = re.compile(r'[A-Za-z0-9._:-]{1,128}')


class RequestContext:
    """Gives each request an id (the client's, if sane) and logs its outcome."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        rid = req.get_header('X-Request-ID')
        if rid is None or not _REQUEST_ID.fullmatch(rid):
            rid = logs.new_request_id()
        req.context.request_id = rid
        req.context.started = time.perf_counter()
        req.context.log_token = logs.request_id.set(rid)
        resp.set_header('X-Request-ID', rid)

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        status = resp.status_code
        if status >= 500:
            level = logging.WARNING
        elif status >= 400:
            level = logging.INFO
        else:
            level = logging.DEBUG
        if log.isEnabledFor(level):
            # The route template, never the raw path: paths can carry user data.
            elapsed_ms = (time.perf_counter() - req.context.started) * 1000
            log.log(
                level,
                'http.request',
                extra={
                    'method': req.method,
                    'route': req.uri_template or '(none)',
                    'status': status,
                    'duration_ms': round(elapsed_ms, 3),
                },
            )
        logs.request_id.reset(req.context.log_token)


class BodyLimit:
    """Refuses a declared body over the limit before anything reads it."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self.max_body_bytes:
            raise falcon.HTTPContentTooLarge(
                description=f'The body is larger than {self.max_body_bytes} bytes.'
            )


class RenderBody:
    """Serialises the answer before it is logged and counted.

    Falcon renders the body after every middleware has run; an answer that
    cannot be serialised (a NaN, which no answer may carry: a bug) would then
    go out as an empty 500, logged and counted as the success it was not.
    Rendered here, it raises where the error handler answers it as a problem.
    """

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        resp.render_body()
