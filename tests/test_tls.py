"""The TLS listener under attack: strangers who connect and stall, or send slowly.

Every test runs a real jameyd with its TLS listener and real TCP connections
on loopback, the way a stranger on the network would hold them open.
"""

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import strict_json
from test_access import Site
from test_access import start_site

# What a normal client may wait for one request while the listener is attacked
# (the bound; before the listener handshook off its accept path, one
# silent connection made every request wait ten seconds).
P99_BOUND_S = 1.0


def silent(port: int, count: int) -> list[socket.socket]:
    """Connections that never send a ClientHello."""
    return [
        socket.create_connection(('127.0.0.1', port), timeout=30) for _ in range(count)
    ]


@contextlib.contextmanager
def slow_senders(site: Site, count: int, every_s: float) -> Iterator[list[int]]:
    """Connections that handshake, then send a request head a line at a time.

    Yields a list that holds, per connection, how many header lines got
    through before the server closed it (while it runs: so far).
    """
    sent = [0] * count
    stop = threading.Event()

    def drip(index: int) -> None:
        raw = socket.create_connection(('127.0.0.1', site.tls.port), timeout=30)
        try:
            with site.tls.context.wrap_socket(raw, server_hostname='localhost') as tls:
                tls.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n')
                while not stop.wait(every_s):
                    tls.sendall(b'X-Slow: 1\r\n')
                    sent[index] += 1
        except OSError:
            return
        finally:
            raw.close()

    threads = [threading.Thread(target=drip, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield sent
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def timed_requests(site: Site, count: int) -> list[float]:
    """A normal client on one kept-alive connection: each request's duration."""
    token = site.jwt('read')
    conn = http.client.HTTPSConnection(
        '127.0.0.1', site.tls.port, context=site.tls.context, timeout=30
    )
    durations = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request('GET', '/rules', headers={'Authorization': f'Bearer {token}'})
            response = conn.getresponse()
            body = response.read()
            durations.append(time.perf_counter() - started)
            assert response.status == 200, body
            assert json.loads(body)['rules']
    finally:
        conn.close()
    return durations


def fresh_connections(site: Site, count: int) -> list[float]:
    """A normal client that connects anew for each request (a new handshake)."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        assert site.tls.request('GET', '/health')[0] == 200
        durations.append(time.perf_counter() - started)
    return durations


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b''
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def attacked(sdir: Path, make_jameyd: Any) -> Site:
    """Limits that let 64 silent and 32 slow connections all stay open."""
    return start_site(
        sdir,
        make_jameyd,
        {
            'JAMEY_TLS_CONNECTION_LIMIT': '200',
            'JAMEY_TLS_CONNECTIONS_PER_PEER': '200',
            'JAMEY_TLS_HANDSHAKE_TIMEOUT_S': '30',
            'JAMEY_TLS_READ_TIMEOUT_S': '30',
        },
    )


def test_silent_and_slow_connections_do_not_stall_others(attacked: Site) -> None:
    quiet = timed_requests(attacked, 50)
    held = silent(attacked.tls.port, 64)
    try:
        with slow_senders(attacked, 32, every_s=0.5) as sent:
            time.sleep(1.5)  # every slow sender is in the middle of its head
            kept_alive = timed_requests(attacked, 200)
            connecting = fresh_connections(attacked, 50)
            assert all(lines >= 1 for lines in sent), sent
        # All 96 were still open while the normal client was served.
        assert all(not closed_by_server(s, 0.01) for s in held)
    finally:
        for sock in held:
            sock.close()
    assert p99(kept_alive) < P99_BOUND_S, (p99(quiet), p99(kept_alive))
    assert p99(connecting) < P99_BOUND_S, p99(connecting)


def test_a_stalled_handshake_is_closed_at_its_deadline(
    sdir: Path, make_jameyd: Any
) -> None:
    site = start_site(sdir, make_jameyd, {'JAMEY_TLS_HANDSHAKE_TIMEOUT_S': '0.5'})
    [sock] = silent(site.tls.port, 1)
    with sock:
        assert closed_by_server(sock, 3)
    assert site.tls.request('GET', '/health')[0] == 200


def _answer(tls: ssl.SSLSocket) -> tuple[bytes, dict[str, Any]]:
    """Everything the server sends until it closes: the head and the body."""
    reply = b''
    while chunk := tls.recv(65536):
        reply += chunk
    head, _, body = reply.partition(b'\r\n\r\n')
    return head, strict_json(body)


@pytest.mark.parametrize(
    'partial',
    [
        # A head that never ends.
        b'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ',
        # A body announced longer than it is.
        b'POST /evaluate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}',
    ],
)
def test_a_request_not_arrived_by_its_deadline_is_answered_408(
    sdir: Path, make_jameyd: Any, partial: bytes
) -> None:
    site = start_site(sdir, make_jameyd, {'JAMEY_TLS_READ_TIMEOUT_S': '1'})
    raw = socket.create_connection(('127.0.0.1', site.tls.port), timeout=10)
    with site.tls.context.wrap_socket(raw, server_hostname='localhost') as tls:
        started = time.monotonic()
        tls.sendall(partial)
        head, problem = _answer(tls)
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0
    assert head.split(b' ')[1] == b'408'
    assert b'\r\nConnection: close' in head
    assert (problem['status'], problem['code']) == (408, 'request_timeout')
    assert problem['request_id']
    assert site.tls.request('GET', '/health')[0] == 200


def test_a_slow_sender_is_stopped_at_its_deadline(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(sdir, make_jameyd, {'JAMEY_TLS_READ_TIMEOUT_S': '1'})
    with slow_senders(site, 1, every_s=0.2) as sent:
        time.sleep(3)
        # The server answered after about five lines; it took nothing more.
        lines_when_closed = sent[0]
        time.sleep(1)
        assert sent[0] == lines_when_closed
    assert 1 <= lines_when_closed < 12, lines_when_closed


def test_new_connections_replace_the_oldest_not_in_use(
    sdir: Path, make_jameyd: Any
) -> None:
    site = start_site(
        sdir,
        make_jameyd,
        {'JAMEY_TLS_CONNECTIONS_PER_PEER': '4', 'JAMEY_TLS_HANDSHAKE_TIMEOUT_S': '60'},
    )
    first = silent(site.tls.port, 4)
    # A kept-alive client connects fifth: the oldest silent one makes room.
    token = site.jwt('read')
    conn = http.client.HTTPSConnection(
        '127.0.0.1', site.tls.port, context=site.tls.context, timeout=10
    )
    try:
        conn.request('GET', '/rules', headers={'Authorization': f'Bearer {token}'})
        assert conn.getresponse().read()
        assert closed_by_server(first[0], 5)
        assert not any(closed_by_server(s, 0.05) for s in first[1:])
        # More silent ones: the older silent ones go, never the client in use.
        later = silent(site.tls.port, 3)
        assert all(closed_by_server(s, 5) for s in first[1:])
        conn.request('GET', '/rules', headers={'Authorization': f'Bearer {token}'})
        response = conn.getresponse()
        assert (response.status, bool(response.read())) == (200, True)
    finally:
        conn.close()
        for sock in first + later:
            sock.close()
    deadline = time.monotonic() + 5
    while not (events := closed_events(site)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events and events[0]['reasons'].get('peer_limit', 0) >= 1


def closed_events(site: Site) -> list[dict[str, Any]]:
    return [
        line
        for line in site.daemon.log_lines()
        if line['event'] == 'tls.connections_closed'
    ]


def test_every_line_is_json_when_strangers_misbehave(
    sdir: Path, make_jameyd: Any
) -> None:
    """Aborted handshakes, garbage and resets: summed up, never a traceback."""
    site = start_site(sdir, make_jameyd, {'JAMEY_TLS_HANDSHAKE_TIMEOUT_S': '0.3'})
    for payload in (b'', b'\x16\x03\x01\x00\x05hello', b'GET / HTTP/1.1\r\n\r\n'):
        for _ in range(10):
            with socket.create_connection(('127.0.0.1', site.tls.port)) as sock:
                if payload:
                    sock.sendall(payload)
                sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_LINGER,
                    b'\x01\x00\x00\x00\x00\x00\x00\x00',
                )
    time.sleep(0.6)
    assert site.tls.request('GET', '/health')[0] == 200
    site.daemon.stop()
    lines = site.daemon.log_text().splitlines()
    for line in lines:
        json.loads(line)
    assert 'Traceback' not in site.daemon.log_text()
    closed = [json.loads(line) for line in lines if 'tls.connections_closed' in line]
    assert closed, lines
    # Thirty strangers, at most a line or two about them.
    assert len(closed) <= 2


def _exchange(site: Site, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a new TLS connection; the status and body of the answer."""
    conn = socket.create_connection(('127.0.0.1', site.tls.port), timeout=10)
    with site.tls.context.wrap_socket(conn, server_hostname='localhost') as tls:
        tls.sendall(raw)
        reply = b''
        while b'\r\n\r\n' not in reply or not reply.endswith(b'}'):
            chunk = tls.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b'\r\n\r\n')
    return int(head.split()[1]), body


def test_chunked_bodies_and_repeated_credentials(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(sdir, make_jameyd)
    token = site.jwt('write')
    body = json.dumps({'action': 'I will help my neighbour'}).encode()
    chunked = b'%x\r\n%s\r\n0\r\n\r\n' % (len(body), body)
    status, answer = _exchange(
        site,
        b'POST /evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
        + f'Authorization: Bearer {token}\r\n'.encode()
        + b'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
        + chunked,
    )
    assert status == 200, answer
    assert json.loads(answer)['verdict'] == 'allow'
    # Two credentials are none: neither the first nor the last one wins.
    for first, last in ((token, 'forged'), ('forged', token)):
        status, answer = _exchange(
            site,
            b'GET /rules HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            + f'Authorization: Bearer {first}\r\n'.encode()
            + f'Authorization: Bearer {last}\r\n\r\n'.encode(),
        )
        assert status == 401, answer
