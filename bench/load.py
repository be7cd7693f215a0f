"""A keep-alive HTTP load generator over a Unix socket, in one process.

All connections are multiplexed on one thread with non-blocking sockets, so
the client costs the same for every server it measures and never shares a
GIL with it.
"""

import selectors
import socket
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_s: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def columns(self) -> str:
        """Requests per second, p50 and p99 in milliseconds."""
        p50, p99 = self.percentile(0.5) * 1e3, self.percentile(0.99) * 1e3
        return f'{self.rate:12.0f} {p50:8.3f} {p99:8.3f}'

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Conn:
    def __init__(self, path: str, request: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.request = request
        self.buffer = b''
        self.sent_at = 0.0

    def send(self) -> None:
        self.buffer = b''
        self.sent_at = time.perf_counter()
        self.sock.sendall(self.request)

    def complete(self) -> bool:
        head, sep, body = self.buffer.partition(b'\r\n\r\n')
        if not sep:
            return False
        for line in head.split(b'\r\n'):
            if line.lower().startswith(b'content-length:'):
                return len(body) >= int(line.split(b':')[1])
        raise RuntimeError('response without Content-Length')


def run(
    path: str,
    target: str,
    clients: int,
    seconds: float,
    warmup_s: float = 0.5,
    body: bytes | None = None,
) -> LoadResult:
    """Keep ``clients`` requests in flight (a POST of JSON when ``body`` is set)."""
    if body is None:
        request = f'GET {target} HTTP/1.1\r\nHost: jamey\r\n\r\n'.encode()
    else:
        head = (
            f'POST {target} HTTP/1.1\r\nHost: jamey\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
        )
        request = head.encode() + body
    selector = selectors.DefaultSelector()
    conns = [_Conn(path, request) for _ in range(clients)]
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + seconds
    latencies: list[float] = []
    while (now := time.perf_counter()) < end:
        for key, _ in selector.select(timeout=1.0):
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise RuntimeError('server closed a keep-alive connection')
            conn.buffer += chunk
            if conn.complete():
                done = time.perf_counter()
                if conn.sent_at >= measure_from:
                    latencies.append(done - conn.sent_at)
                conn.send()
    for conn in conns:
        conn.sock.close()
    return LoadResult(len(latencies), now - measure_from, latencies)
