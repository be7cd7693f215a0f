"""The optional TLS listener: waitress serving the same app, TLS 1.3 only.

waitress reads every request in full on its event loop before a worker
thread sees it, so a client that sends slowly holds a connection, never a
worker. This module adds TLS to that loop: each connection is wrapped without
a handshake, and the handshake then runs non-blocking on the loop like any
other I/O, so a client that never sends its ClientHello stalls nobody.

Limits no stranger can outlast, all enforced by the loop:

- a handshake must finish within ``tls.handshake_timeout_s``, a request
  (head and body) within ``tls.read_timeout_s`` of its first byte (else it
  is answered 408 and the connection closed), and an idle kept-alive
  connection is closed after ``tls.idle_timeout_s``;
- at most ``tls.connections_per_peer`` connections per address and
  ``tls.connection_limit`` in all: a new connection beyond either closes the
  oldest one that is not in use (still in its handshake first, then one still
  sending its request, then an idle one); while every connection is serving a
  request, new ones wait in the backlog.

The loop waits in epoll with one-shot arming (``_SocketMap``): a connection
whose request a worker is serving is armed for nothing, so the loop never
touches its TLS object meanwhile (an ``SSLSocket`` must not be used from two
threads at once); the worker writes the answer itself and re-arms the
connection when it is done. A request thus costs two thread wake-ups (its
bytes arriving, a worker taking it), where waitress's own loop adds a third
(a pipe that wakes the loop to poll the connection again), and every socket
is not polled anew on every turn.

Certificates are loaded into a fresh ``SSLContext`` on SIGHUP and swapped in:
handshakes from then on use the new one, connections already open keep
theirs, and the listening socket is never closed.
"""

import contextlib
import logging
import select
import ssl
import threading
import time
import typing
from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer

from jamey import config
from jamey.api.access import TLS
from jamey.daemon.listener import ListenerError
from jamey.daemon.listener import ListenerTask
from jamey.daemon.listener import ProblemChannel
from jamey.daemon.listener import StampedParser
from jamey.errors import ConfigError

log = logging.getLogger('jamey.daemon')

# How often the loop wakes to enforce deadlines, at the least.
_TICK_S = 0.25
# Connection-level events are summed and logged at most this often.
_REPORT_EVERY_S = 10.0


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


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(':')
    return host.strip('[]'), int(port)


class ClosedConnections:
    """Counts the connections the listener closed, by reason.

    A stranger can make these as fast as the network allows, so they are not
    logged one by one: the counts since the last report go out as one
    ``tls.connections_closed`` line at most every ``every_s`` seconds.
    """

    def __init__(
        self,
        every_s: float = _REPORT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pending: Counter[str] = Counter()
        self._every_s = every_s
        self._clock = clock
        self._reported = -every_s  # the first closes are reported at once

    def count(self, reason: str) -> None:
        self._pending[reason] += 1

    def report(self, force: bool = False) -> None:
        """Log what was counted since the last report, if it is time."""
        now = self._clock()
        if self._pending and (force or now - self._reported >= self._every_s):
            log.warning(
                'tls.connections_closed', extra={'reasons': dict(self._pending)}
            )
            self._pending.clear()
            self._reported = now


class _SocketMap(dict[int, Any]):
    """waitress's socket map (fd -> dispatcher), with an epoll set beside it.

    Every socket is registered one-shot: after an event it stays silent until
    it is armed again for what it then waits for, as its ``readable()`` and
    ``writable()`` say. The loop arms a dispatcher after handling its event;
    a worker arms the connection it has served. Arming reads the state and
    writes epoll under the dispatcher's own lock, so whichever of the two
    arms last does so from the newest state.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoll = select.epoll()
        self._fresh: list[int] = []
        self._locks: dict[int, threading.Lock] = {}

    def __setitem__(self, fd: int, dispatcher: Any) -> None:
        super().__setitem__(fd, dispatcher)
        self._locks[fd] = threading.Lock()
        self.epoll.register(fd, select.EPOLLONESHOT)
        # Armed on the loop's next turn: its constructor is still running.
        self._fresh.append(fd)

    def __delitem__(self, fd: int) -> None:
        super().__delitem__(fd)
        self._locks.pop(fd, None)
        with contextlib.suppress(OSError):
            self.epoll.unregister(fd)

    def arm(self, dispatcher: Any) -> None:
        fd = dispatcher._fileno
        lock = self._locks.get(fd)
        if lock is None:  # closed meanwhile
            return
        with lock:
            current = self.get(fd)
            if current is None or current is not dispatcher:
                return
            events = 0
            if current.readable():
                events |= select.EPOLLIN | select.EPOLLPRI
            if current.writable():
                events |= select.EPOLLOUT
            # Waiting for nothing (a worker serves it), it stays disarmed:
            # not even a hang-up reaches the loop before the worker is done.
            if events:
                with contextlib.suppress(OSError):
                    self.epoll.modify(fd, events | select.EPOLLONESHOT)

    def turn(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for events and handle them."""
        fresh, self._fresh = self._fresh, []
        for fd in fresh:
            if fd in self:
                self.arm(self[fd])
        for fd, events in self.epoll.poll(timeout):
            dispatcher = self.get(fd)
            if dispatcher is not None:
                wasyncore.readwrite(dispatcher, events)
                self.arm(dispatcher)

    def close(self) -> None:
        self.epoll.close()


# The connection a worker thread is serving, so that its call to wake the
# loop re-arms that connection instead.
_serving = threading.local()


class _TlsTask(ListenerTask):
    listener = TLS


class _TlsChannel(ProblemChannel):
    """One TLS connection: the handshake, then waitress's HTTP channel."""

    task_class = _TlsTask
    server: '_TlsServer'

    def __init__(
        self, server: '_TlsServer', sock: Any, addr: Any, adj: Any, map: Any = None
    ) -> None:
        tls = server.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        self.tls = tls
        self.handshaking = True
        self._wants_write = False
        self.peer = str(addr[0])
        super().__init__(server, tls, addr, adj, map)

    def readable(self) -> bool:
        return True if self.handshaking else bool(super().readable())

    def writable(self) -> bool:
        if self.handshaking:
            return self._wants_write
        return bool(super().writable())

    def handle_read(self) -> None:
        if self.handshaking:
            self._handshake()
            return
        chunks, ended = self._read_available()
        if chunks:
            self.last_activity = time.time()
            self.received(b''.join(chunks))
        if ended and not self.requests:
            self.handle_close()

    def handle_write(self) -> None:
        if self.handshaking:
            self._handshake()
            return
        super().handle_write()

    def _handshake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._wants_write = False
            return
        except ssl.SSLWantWriteError:
            self._wants_write = True
            return
        except (ssl.SSLError, OSError):
            self.close_for('handshake_failed')
            return
        self.handshaking = False
        self.last_activity = time.time()

    def _read_available(self) -> tuple[list[bytes], bool]:
        """What the connection has now, decrypted; and whether it ended.

        Bytes already decrypted wait inside the TLS object, where poll does
        not see them, so reading goes on while any are pending.
        """
        chunks: list[bytes] = []
        try:
            while True:
                data = self.tls.recv(self.adj.recv_bytes)
                if not data:
                    return chunks, True
                chunks.append(data)
                if not self.tls.pending():
                    return chunks, False
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return chunks, False
        except (ssl.SSLError, OSError):  # reset, or a broken record
            return chunks, True

    def service(self) -> None:
        _serving.channel = self
        try:
            super().service()
        finally:
            _serving.channel = None

    def send(self, data: bytes, do_close: bool = True) -> int:
        try:
            return self.tls.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (ssl.SSLError, OSError):
            if do_close:
                self.handle_close()
            return 0

    def close_for(self, reason: str) -> None:
        self.server.closed.count(reason)
        self.handle_close()

    def eviction_rank(self) -> tuple[int, float] | None:
        """Which connection a new one may replace first; None: it is in use."""
        if self.handshaking:
            return (0, self.creation_time)
        if self.requests or self.total_outbufs_len or self.will_close:
            return None
        if self.request is not None:
            return (1, self.arrived())
        return (2, self.last_activity)

    def arrived(self) -> float:
        """When the first bytes of the request being received came."""
        return typing.cast(StampedParser, self.request).arrived


class _TlsServer(TcpWSGIServer):
    """waitress's TCP server, with TLS channels and limits per connection."""

    channel_class = _TlsChannel

    def __init__(
        self,
        app: Callable[..., Any],
        socket_map: _SocketMap,
        adj: Adjustments,
        context: ssl.SSLContext,
        settings: config.TlsSettings,
    ) -> None:
        self.context = context
        self.settings = settings
        self.closed = ClosedConnections()
        self.socket_map = socket_map
        self._next_sweep = 0.0
        super().__init__(app, map=socket_map, adj=adj)

    def channels(self) -> list[_TlsChannel]:
        return list(self._active().values())

    def _active(self) -> dict[int, _TlsChannel]:
        return typing.cast(dict[int, _TlsChannel], self.active_channels)

    def readable(self) -> bool:
        self.enforce_deadlines()
        if not self.accepting:
            return False
        return len(self._active()) < self.settings.connection_limit or any(
            ch.eviction_rank() is not None for ch in self.channels()
        )

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:  # the client left before it was accepted
            return
        if accepted is None:
            return
        conn, addr = accepted
        try:
            self.set_socket_options(conn)
            channel = _TlsChannel(
                self, conn, self.fix_addr(addr), self.adj, self.socket_map
            )
        except OSError:
            self.closed.count('accept_failed')
            conn.close()
            return
        self._make_room(channel)

    def _make_room(self, newcomer: _TlsChannel) -> None:
        """Close the oldest connections not in use while over a limit."""
        limits = (
            ('peer_limit', self.settings.connections_per_peer, newcomer.peer),
            ('connection_limit', self.settings.connection_limit, None),
        )
        for reason, limit, peer in limits:
            others = [
                ch
                for ch in self.channels()
                if ch is not newcomer and (peer is None or ch.peer == peer)
            ]
            while len(others) >= limit:
                ranked = [(r, ch) for ch in others if (r := ch.eviction_rank())]
                if not ranked:
                    newcomer.close_for(reason)
                    return
                oldest = min(ranked, key=lambda pair: pair[0])[1]
                oldest.close_for(reason)
                others.remove(oldest)

    def enforce_deadlines(self) -> None:
        """Close connections past their handshake, read or idle deadline."""
        self.closed.report()
        clock = time.perf_counter()
        if clock < self._next_sweep:
            return
        self._next_sweep = clock + _TICK_S
        wall = time.time()
        for channel in self.channels():
            if channel.handshaking:
                if wall - channel.creation_time > self.settings.handshake_timeout_s:
                    channel.close_for('handshake_timeout')
            elif channel.request is not None and not channel.requests:
                if clock - channel.arrived() > self.settings.read_timeout_s:
                    self.closed.count('read_timeout')
                    channel.answer_late(self.settings.read_timeout_s)
            elif (
                not channel.requests
                and not channel.total_outbufs_len
                and wall - channel.last_activity > self.settings.idle_timeout_s
            ):
                channel.close_for('idle_timeout')

    def maintenance(self, now: float) -> None:
        """waitress's idle sweep: ``enforce_deadlines`` does it, each tick."""

    def pull_trigger(self) -> None:
        """Re-arm the connection a worker serves; otherwise wake the loop."""
        channel = getattr(_serving, 'channel', None)
        if channel is None:
            super().pull_trigger()
        else:
            self.socket_map.arm(channel)


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
        host, port = parse_listen(settings.listen)
        adj = Adjustments(
            host=host,
            port=port,
            threads=settings.threads,
            # The listener enforces its own limits (see the module's docstring).
            connection_limit=10_000,
            max_request_body_size=max_body_bytes,
            max_request_header_size=max_header_bytes,
            url_scheme='https',
            # A worker sends its answer itself (see the module's docstring).
            send_bytes=1,
            ident='jamey',  # the name alone: no version to look up exploits for
            log_socket_errors=False,
            expose_tracebacks=False,
        )
        self._map = _SocketMap()
        try:
            self.server = _TlsServer(
                app, self._map, adj, tls_context(settings, environ), settings
            )
        except OSError as exc:
            raise ListenerError(
                f'cannot listen on {settings.listen}: {exc.strerror}'
            ) from None
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name='tls-listener', daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the port, when the setting asked for 0)."""
        # NOTE: waitress sets these in its constructor; its stubs omit them.
        bound = typing.cast(Any, self.server)
        return str(bound.effective_host), int(bound.effective_port)

    def reload(self, settings: config.TlsSettings, environ: Mapping[str, str]) -> None:
        """Swap in certificates re-read from disk; keep the old ones on error."""
        try:
            self.server.context = tls_context(settings, environ)
        except ConfigError as exc:
            log.error('tls.reload_failed', extra={'error': str(exc)})
        else:
            log.info('tls.reloaded')

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._map.turn(_TICK_S)
            # Deadlines pass, and room for a new connection is made, without
            # an event of the listening socket's own.
            self._map.arm(self.server)
        # Stop accepting, then let requests in flight finish for a while.
        wasyncore.dispatcher.close(self.server)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
            ch.requests or ch.total_outbufs_len for ch in self.server.channels()
        ):
            self._map.turn(0.05)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        self.server.closed.report(force=True)
        for dispatcher in list(self._map.values()):
            with contextlib.suppress(OSError):
                dispatcher.close()
        self._map.close()

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, stop the threads."""
        self._stopping.set()
        self.server.pull_trigger()
        self._thread.join(timeout=10)
