"""The optional TLS listener: cheroot serving the same app, TLS 1.3 only.

waitress has no TLS, so this listener runs cheroot in a thread of its own.
Certificates are loaded into a fresh ``SSLContext`` on SIGHUP and swapped in:
handshakes from then on use the new one, connections already open keep theirs,
and the listening socket is never closed.
"""

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from jamey import config
from jamey.api.access import LISTENER_KEY
from jamey.api.access import TLS
from jamey.api.problems import PROBLEM_JSON
from jamey.api.problems import problem_body
from jamey.daemon.listener import ListenerError
from jamey.errors import ConfigError

log = logging.getLogger('jamey.daemon')


def tls_context(
    settings: config.TlsSettings, environ: Mapping[str, str]
) -> ssl.SSLContext:
    """A server context from the configured files: TLS 1.3, nothing older.

    Raises:
        ConfigError: a file is not set, missing, unreadable, or not what it
            should be (the daemon exits 78 at start; a reload keeps the old).
    """
    if not settings.cert_file or not settings.key_file:
        raise ConfigError('tls.listen needs tls.cert_file and tls.key_file')
    # The key must be private, like every secret (read_secret says how to fix it).
    config.read_secret(settings.key_file, environ)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(
            settings.cert_file, config.secret_path(settings.key_file, environ)
        )
        if settings.client_ca:
            context.load_verify_locations(cafile=settings.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f'tls.cert_file, tls.key_file or tls.client_ca cannot be loaded: {exc}'
        ) from None
    return context


class _Adapter(BuiltinSSLAdapter):
    """cheroot's adapter, but with a context made here (and replaceable)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        # NOTE: the base __init__ loads files into a context of its own with
        # the library's defaults (TLS 1.2 allowed); this one comes from tls_context.
        self.certificate = self.private_key = self.certificate_chain = None
        self.ciphers = None
        self.private_key_password = None
        self._server_env: dict[str, Any] = {}
        self.context = context


class _ProblemRequest(cheroot_server.HTTPRequest):
    """cheroot's own errors (oversized, malformed requests) as problem+json."""

    def simple_response(self, status: Any, msg: Any = '') -> None:
        code = int(str(status)[:3])
        detail = msg if isinstance(msg, str) and msg else HTTPStatus(code).phrase
        body = problem_body(code, detail)
        head = [
            f'{self.server.protocol} {code} {HTTPStatus(code).phrase}',
            f'Content-Length: {len(body)}',
            f'Content-Type: {PROBLEM_JSON}',
        ]
        if code >= 400:
            self.close_connection = True
            head.append('Connection: close')
        raw = ('\r\n'.join(head) + '\r\n\r\n').encode('latin-1') + body
        with contextlib.suppress(OSError):  # the client is gone
            self.conn.wfile.write(raw)


class _ProblemConnection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _ProblemRequest


def _tagged(app: Callable[..., Any]) -> Callable[..., Any]:
    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[LISTENER_KEY] = TLS
        return app(environ, start_response)

    return serve


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(':')
    return host.strip('[]'), int(port)


class TlsListener:
    """Serves the app over TLS on ``host:port`` from a thread of its own."""

    def __init__(
        self,
        app: Callable[..., Any],
        settings: config.TlsSettings,
        environ: Mapping[str, str],
        max_body_bytes: int,
        max_header_bytes: int,
    ) -> None:
        self._adapter = _Adapter(tls_context(settings, environ))
        self.server = wsgi.Server(
            parse_listen(settings.listen),
            _tagged(app),
            numthreads=settings.threads,
            server_name='jamey',
            request_queue_size=settings.connection_limit,
            timeout=10,
            shutdown_timeout=5,
        )
        self.server.ssl_adapter = self._adapter
        self.server.ConnectionClass = _ProblemConnection
        self.server.max_request_body_size = max_body_bytes
        self.server.max_request_header_size = max_header_bytes
        self.server.keep_alive_conn_limit = settings.connection_limit
        try:
            self.server.prepare()
        except OSError as exc:
            raise ListenerError(
                f'cannot listen on {settings.listen}: {exc.strerror}'
            ) from None
        self._thread = threading.Thread(
            target=self.server.serve, name='tls-listener', daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the port, when the setting asked for 0)."""
        bound = self.server.bind_addr
        return str(bound[0]), int(bound[1])

    def reload(self, settings: config.TlsSettings, environ: Mapping[str, str]) -> None:
        """Swap in certificates re-read from disk; keep the old ones on error."""
        try:
            self._adapter.context = tls_context(settings, environ)
        except ConfigError as exc:
            log.error('tls.reload_failed', extra={'error': str(exc)})
        else:
            log.info('tls.reloaded')

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, stop the threads."""
        self.server.stop()
        self._thread.join(timeout=10)
