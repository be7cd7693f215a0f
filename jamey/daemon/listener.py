"""The Unix socket listener: waitress, driven from the daemon's main loop.

waitress normally owns a thread's loop; here the daemon turns the crank
(``serve_once``), so the watchdog ping comes from the same loop that accepts
connections, and a wedged loop stops the pings. Signals wake the loop through
``signal.set_wakeup_fd``, and shutdown can stop accepting while requests in
flight (even half-received ones from slow clients) finish. A request that has
not arrived in full within ``api.request_timeout_s`` of its first byte (a
``Content-Length`` longer than the body sent) is answered 408 and its
connection closed: waitress alone would wait for the rest, and close the
connection silently only after two minutes.
"""

import contextlib
import logging
import socket
import time
import typing
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.server import create_server
from waitress.task import ErrorTask
from waitress.task import WSGITask
from waitress.utilities import Error

from jamey import logs
from jamey.api.access import ARRIVED_KEY
from jamey.api.access import LISTENER_KEY
from jamey.api.access import SECURITY_HEADERS
from jamey.api.access import UNIX
from jamey.api.access import Policy
from jamey.api.problems import PROBLEM_JSON
from jamey.api.problems import problem_body
from jamey.storage import refuse_if_others_write

log = logging.getLogger('jamey.daemon')
# How often the loop looks for requests that are late, while any connection
# is open (an idle daemon without connections sleeps as long as it likes).
_LATE_SWEEP_S = 1.0


class ListenerError(Exception):
    """The socket cannot be served (in use, or its directory is unusable)."""


class _RequestTimeoutError(Error):
    code = 408
    reason = 'Request Timeout'


class _ProblemErrorTask(ErrorTask):
    """waitress's own errors (oversized or malformed requests) as problem+json,
    with a request id and the headers every answer of the app carries.

    Logged at debug level only: a stranger can make one per connection.
    """

    def execute(self) -> None:
        # NOTE: the waitress stubs type ``request`` as the error itself; at
        # run time it is the parser, which carries the error.
        error = typing.cast(Any, self.request).error
        rid = logs.new_request_id()
        token = logs.request_id.set(rid)
        try:
            body = problem_body(error.code, error.body)
            log.debug('http.refused_by_server', extra={'status': error.code})
        finally:
            logs.request_id.reset(token)
        self.status = f'{error.code} {error.reason}'
        self.response_headers = [
            *self.response_headers,
            ('Content-Type', PROBLEM_JSON),
            ('X-Request-ID', rid),
            *SECURITY_HEADERS,
        ]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class StampedParser(HTTPRequestParser):
    """Notes when a request's first bytes arrived, for the request deadline."""

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.arrived = time.perf_counter()


class ListenerTask(WSGITask):
    """Tells the app which listener a request came in on, and since when."""

    listener = UNIX

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[LISTENER_KEY] = self.listener
        environ[ARRIVED_KEY] = typing.cast(StampedParser, self.request).arrived
        return environ


class ProblemChannel(HTTPChannel):
    """A waitress connection whose requests are stamped, tagged and problem+json."""

    parser_class = StampedParser
    task_class = ListenerTask
    error_task_class = _ProblemErrorTask

    def answer_late(self, limit_s: float) -> None:
        """Answer the request still arriving 408 (it did not arrive in full
        within ``limit_s``) and close the connection; what arrived of it is
        dropped. As waitress does with a malformed request: a request that
        carries the error, served by a worker (nothing more is read
        meanwhile: the channel is not readable while a request is queued)."""
        error = _RequestTimeoutError(
            f'The request did not arrive in full within {limit_s:g} s.'
        )
        # NOTE: the waitress stubs lack requests_lock and type add_task's
        # argument as a task; at run time it takes the channel.
        channel = typing.cast(Any, self)
        with channel.requests_lock:
            partial = self.request
            if partial is None or self.requests:
                return
            late = self.parser_class(self.adj)
            late.error = error
            self.requests = [late]
            self.request = None
        partial.close()
        self.server.add_task(channel)

    def handle_error(self) -> None:
        # NOTE: waitress's own handler logs a compact traceback (file paths
        # and values) as the message; here the class is logged, the trace
        # only at debug level, as for every other log line.
        log.error('http.connection_failed', exc_info=True)
        self.handle_close()


class _Wakeup(wasyncore.dispatcher):
    """The read end of the signal wake-up pair, so a signal ends a poll."""

    def __init__(self, sock: socket.socket, socket_map: dict[int, Any]) -> None:
        super().__init__(sock, map=socket_map)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.recv(512)


def _refuse_if_served(path: Path) -> None:
    """waitress unlinks a stale socket; a live one belongs to someone else."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return  # nobody listens: what a killed daemon leaves behind
    except OSError as exc:
        raise ListenerError(f'socket {path} cannot be checked: {exc}') from None
    finally:
        probe.close()
    raise ListenerError(f'socket {path} is in use by another process')


# waitress warns about every request that waits for a free worker thread: at
# any real load that is a line per request, all noise and SD-card wear.
logging.getLogger('waitress.queue').setLevel(logging.ERROR)


class UnixListener:
    """Serves a WSGI app on a Unix socket with a fixed pool of worker threads."""

    def __init__(
        self,
        app: Any,
        path: Path,
        mode: str,
        threads: int,
        max_body_bytes: int,
        connection_limit: int,
        max_header_bytes: int,
        policy: Policy,
    ) -> None:
        self.path = path
        self.policy = policy
        self._next_sweep = 0.0
        try:
            if not path.parent.is_dir():
                # Group members may reach the socket (mode 0660) through it.
                path.parent.mkdir(parents=True)
                path.parent.chmod(0o750)
        except OSError as exc:
            raise ListenerError(
                f'cannot create {path.parent}: {exc.strerror}'
            ) from None
        # Whoever else can write there can swap the socket for a symlink
        # between the bind and its chmod, and have that chmod another file.
        refuse_if_others_write(path.parent, 'the socket directory')
        _refuse_if_served(path)
        self._map: dict[int, Any] = {}
        try:
            server = create_server(
                app,
                map=self._map,
                unix_socket=str(path),
                unix_socket_perms=mode[-3:],
                threads=threads,
                connection_limit=connection_limit,
                max_request_body_size=max_body_bytes,
                max_request_header_size=max_header_bytes,
                asyncore_use_poll=True,
                ident='',
            )
        except OSError as exc:
            raise ListenerError(f'cannot listen on {path}: {exc.strerror}') from None
        # One listener gives one server, never waitress's multi-socket wrapper.
        assert isinstance(server, BaseWSGIServer)
        self.server = server
        self.server.channel_class = ProblemChannel
        self._accepting = True
        reader, self._wakeup_writer = socket.socketpair()
        reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        _Wakeup(reader, self._map)

    def wakeup_fd(self) -> int:
        """The fd to hand to ``signal.set_wakeup_fd``."""
        return self._wakeup_writer.fileno()

    def serve_once(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for I/O and handle what arrived;
        answer the requests that are late (see the module)."""
        channels = typing.cast(dict[int, ProblemChannel], self.server.active_channels)
        if channels:
            timeout = min(timeout, _LATE_SWEEP_S)
        wasyncore.loop(timeout=timeout, map=self._map, use_poll=True, count=1)
        now = time.perf_counter()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _LATE_SWEEP_S
        limit_s = self.policy.request_timeout_s
        for channel in list(channels.values()):
            request = typing.cast(StampedParser | None, channel.request)
            if request is not None and now - request.arrived > limit_s:
                channel.answer_late(limit_s)

    def stop_accepting(self) -> None:
        """Close the listening socket and remove its file: new clients fail fast."""
        if not self._accepting:
            return
        self._accepting = False
        # Only the listening socket: BaseWSGIServer.close() would also close
        # the trigger that worker threads still pull when they finish.
        wasyncore.dispatcher.close(self.server)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def busy(self) -> bool:
        """Whether any connection has a request being received, served or sent."""
        return any(
            ch.request is not None or ch.requests or ch.total_outbufs_len
            for ch in list(self._map.values())
            if isinstance(ch, HTTPChannel)
        )

    def drain(self, grace_s: float) -> bool:
        """Keep serving open requests for up to ``grace_s``; True if all finished."""
        deadline = time.monotonic() + grace_s
        while self.busy():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.serve_once(min(0.05, remaining))
        return True

    def close(self) -> None:
        """Close every connection and stop the worker threads."""
        self.stop_accepting()
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        for dispatcher in list(self._map.values()):
            dispatcher.close()
        self._wakeup_writer.close()
