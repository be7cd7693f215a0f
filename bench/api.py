"""The API under load, over TLS and over the Unix socket, with authentication.

A real jameyd with a TLS listener (a self-signed certificate made by openssl)
serves 50 concurrent keep-alive clients for 60 s per listener, each sending a
mix of POST /evaluate, POST /memories and GET /memories?q=. Reported: errors
(anything but 2xx, 429 counted apart), p50/p99 per route, and the daemon's
RSS after the first 10 s and at the end. The TLS load runs twice: quiet, and
with 64 silent and 32 slow connections held open by strangers (the attacked
run's throughput and p99 against the quiet run's). Then, one client at a time, the cost
of TLS + authentication: GET /health/detailed over TLS with a token against
GET /health over the socket with none, and the authentication check itself
against the request time.

``--fuzz``: instead, schemathesis against the OpenAPI document, over TLS
with a token and over the socket (tests/test_schemathesis.py), with
``--examples`` generated requests per operation (the test suite uses 150):
the requests sent, their statuses, and any contract failure or 5xx.
"""

import argparse
import http.client
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from startup import BIN
from startup import jameyd_env
from startup import scratch
from startup import start_until_ready
from startup import stop

from jamey import storage
from jamey.access import Authenticator
from jamey.access import TokenStore
from jamey.cli.client import UnixConnection

WORDS = [
    'harm',
    'help',
    'truth',
    'lie',
    'protect',
    'delete',
    'backup',
    'garden',
    'river',
    'lamp',
    'window',
    'letter',
    'kitchen',
    'music',
    'promise',
    'secret',
    'friend',
    'stranger',
    'morning',
    'winter',
]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident MB in all, and of it the anonymous part (not mapped files:
    the index's segments are mmapped and count in RSS while the kernel keeps
    them cached)."""
    found = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'RssAnon'):
                found[key] = int(value.split()[0]) / 1024
    return found['VmRSS'], found['RssAnon']


def certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    subprocess.run(
        [
            'openssl', 'req', '-x509', '-newkey', 'ec',
            '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
            '-keyout', str(key), '-out', str(cert), '-days', '1',
            '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


Connect = Callable[[], http.client.HTTPConnection]


def call(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: Any = None,
) -> int:
    payload = None if body is None else json.dumps(body).encode()
    sent = dict(headers)
    if payload is not None:
        sent['Content-Type'] = 'application/json'
    conn.request(method, target, body=payload, headers=sent)
    response = conn.getresponse()
    response.read()
    return response.status


def mixed_request(rng: random.Random) -> tuple[str, str, str, Any]:
    """(route, method, target, body) of one request of the mix."""
    words = ' '.join(rng.choices(WORDS, k=12))
    pick = rng.random()
    if pick < 0.4:
        return 'POST /evaluate', 'POST', '/evaluate', {'action': f'I will {words}'}
    if pick < 0.7:
        body = {'content': words, 'layer': 'short_term'}
        return 'POST /memories', 'POST', '/memories', body
    return 'GET /memories', 'GET', f'/memories?q={rng.choice(WORDS)}&limit=10', None


def load(
    connect: Connect, headers: dict[str, str], clients: int, seconds: float, pid: int
) -> tuple[float, float]:
    """Run the mix; print its figures; return requests per second and p99 (s)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    rss: list[tuple[float, float]] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = connect()
        while time.monotonic() < stop_at:
            route, method, target, body = mixed_request(rng)
            started = time.perf_counter()
            try:
                status = call(conn, method, target, headers, body)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = connect()
            elapsed = time.perf_counter() - started
            with lock:
                statuses[status] += 1
                latencies[route].append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(min(10.0, seconds / 2))
    rss.append(rss_mb(pid))
    for thread in threads:
        thread.join()
    rss.append(rss_mb(pid))
    total = sum(statuses.values())
    limited = statuses.get(429, 0)
    errors = total - limited - sum(n for s, n in statuses.items() if 200 <= s < 300)
    print(f'  {total:,} requests in {seconds:.0f} s ({total / seconds:,.0f}/s);'
          f' errors {errors}; deliberate 429s {limited}')  # fmt: skip
    for route, samples in sorted(latencies.items()):
        p50, p99 = percentile(samples, 0.5) * 1e3, percentile(samples, 0.99) * 1e3
        print(f'  {route:16} {len(samples):8,}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms')
    (total_10s, anon_10s), (total_end, anon_end) = rss
    print(f'  RSS after the first 10 s {total_10s:.1f} MB, at the end'
          f' {total_end:.1f} MB ({(total_end / total_10s - 1) * 100:+.1f} %);'
          f' anonymous {anon_10s:.1f} -> {anon_end:.1f} MB'
          f' ({(anon_end / anon_10s - 1) * 100:+.1f} %)')  # fmt: skip
    every = [sample for samples in latencies.values() for sample in samples]
    return total / seconds, percentile(every, 0.99)


class Attackers:
    """Strangers who hold TLS connections open without authenticating.

    ``silent`` connections never send a ClientHello; ``slow`` ones complete
    the handshake, then send a request head one line every ``every_s``
    seconds. Whatever the server closes is opened again at once.
    """

    def __init__(
        self, port: int, context: ssl.SSLContext, silent: int, slow: int, every_s: float
    ) -> None:
        self.port, self.context, self.every_s = port, context, every_s
        self.stop = threading.Event()
        self.reopened = 0
        self.threads = [
            threading.Thread(target=self._silent) for _ in range(silent)
        ] + [threading.Thread(target=self._slow) for _ in range(slow)]

    def __enter__(self) -> 'Attackers':
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # all of them connected before the clients start
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _silent(self) -> None:
        while not self.stop.is_set():
            with socket.create_connection(('127.0.0.1', self.port)) as sock:
                sock.settimeout(0.5)
                while not self.stop.is_set():
                    try:
                        if sock.recv(1) == b'':
                            break
                    except TimeoutError:
                        continue
                    except OSError:
                        break
            self.reopened += 1

    def _slow(self) -> None:
        while not self.stop.is_set():
            try:
                raw = socket.create_connection(('127.0.0.1', self.port), timeout=30)
                with self.context.wrap_socket(raw, server_hostname='127.0.0.1') as tls:
                    tls.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n')
                    while not self.stop.wait(self.every_s):
                        tls.sendall(b'X-Slow: 1\r\n')
            except OSError:
                self.reopened += 1


def serial(connect: Connect, target: str, headers: dict[str, str], n: int) -> float:
    """p50 of ``n`` GETs in a row on one keep-alive connection (seconds)."""
    conn = connect()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        assert call(conn, 'GET', target, headers) == 200
        samples.append(time.perf_counter() - started)
    conn.close()
    return percentile(samples, 0.5)


def auth_check_cost(n: int = 20_000) -> float:
    """Seconds one authentication of an API token takes, in process."""
    with scratch() as root:
        db = storage.Database(root / 'jamey.db')
        db.migrate()
        tokens = TokenStore(db)
        _, fresh = tokens.create('bench', 'admin')
        authenticator = Authenticator(tokens, None)
        authenticator.authenticate(fresh)
        started = time.perf_counter()
        for _ in range(n):
            authenticator.authenticate(fresh)
        return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--clients', type=int, default=50)
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument(
        '--meaning',
        choices=('required', 'off'),
        default='required',
        help='conscience.meaning: off times the listener without the encoder',
    )
    parser.add_argument('--fuzz', action='store_true', help='schemathesis instead')
    parser.add_argument('--examples', type=int, default=1000, help='with --fuzz')
    args = parser.parse_args()
    if args.fuzz:
        fuzz(args.examples)
        return
    with scratch() as root:
        cert, key = certificate(root)
        port = free_port()
        env = jameyd_env(
            root,
            JAMEY_TLS_LISTEN=f'127.0.0.1:{port}',
            JAMEY_TLS_CERT_FILE=str(cert),
            JAMEY_TLS_KEY_FILE=str(key),
            JAMEY_API_RATE_LIMIT_PER_S='2000',
            JAMEY_API_RATE_LIMIT_BURST='4000',
            # Every client and attacker comes from 127.0.0.1, and every
            # attacker's connection is to stay open until its own deadline.
            JAMEY_TLS_CONNECTION_LIMIT='256',
            JAMEY_TLS_CONNECTIONS_PER_PEER='256',
            JAMEY_LOG_LEVEL='warning',
            JAMEY_CONSCIENCE_MEANING=args.meaning,
        )
        _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
        try:
            run(args, root / 'jamey.sock', port, cert, proc.pid)
        finally:
            stop(proc)


def fuzz(examples: int) -> None:
    """The schemathesis test with more examples; exits with its status."""
    print(f'schemathesis, up to {examples} examples per operation:', flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-q',
            '-s',
            '-p',
            'no:cacheprovider',
            '--timeout',
            '0',
            'test_schemathesis.py',
        ],
        cwd=Path(__file__).resolve().parent.parent / 'tests',
        env={**os.environ, 'JAMEY_FUZZ_EXAMPLES': str(examples)},
        check=False,
    )
    print(f'{time.monotonic() - started:.0f} s, exit {done.returncode}')
    sys.exit(done.returncode)


def run(args: argparse.Namespace, sock: Path, port: int, cert: Path, pid: int) -> None:
    context = ssl.create_default_context(cafile=str(cert))
    conn = UnixConnection(sock, 30)
    conn.request(
        'POST', '/tokens', json.dumps({'name': 'load', 'scope': 'write'}),
        {'Content-Type': 'application/json'},
    )  # fmt: skip
    token = json.loads(conn.getresponse().read())['token']
    conn.close()
    bearer = {'Authorization': f'Bearer {token}'}

    def tls() -> http.client.HTTPConnection:
        return http.client.HTTPSConnection(
            '127.0.0.1', port, context=context, timeout=30
        )

    def unix() -> http.client.HTTPConnection:
        return UnixConnection(sock, 30)

    print(f'{args.clients} clients, {args.seconds:.0f} s each:'
          ' 40% evaluate, 30% store, 30% search;'
          f' conscience.meaning = {args.meaning}')  # fmt: skip
    print('over TLS, with a token')
    quiet_rate, quiet_p99 = load(tls, bearer, args.clients, args.seconds, pid)
    print('over TLS, with 64 silent and 32 slow connections held open by strangers')
    with Attackers(port, context, silent=64, slow=32, every_s=5.0) as attack:
        rate, p99 = load(tls, bearer, args.clients, args.seconds, pid)
    print(f'  attacked / quiet: throughput {rate / quiet_rate:.2f}x,'
          f' p99 {p99 / quiet_p99:.2f}x (target <= 2x);'
          f' the server closed {attack.reopened} attacking connections')  # fmt: skip
    print('over the Unix socket')
    load(unix, {}, args.clients, args.seconds, pid)
    detailed = serial(tls, '/health/detailed', bearer, 2000)
    health = serial(unix, '/health', {}, 2000)
    print('one client, p50 of 2,000 requests each')
    print(f'  GET /health/detailed over TLS with a token {detailed * 1e3:7.3f} ms')
    print(f'  GET /health over the socket, no token       {health * 1e3:7.3f} ms')
    print(f'  ratio (the cost of TLS, auth and the checks) {detailed / health:6.2f}x')
    check = auth_check_cost()
    print(f'  the token check itself {check * 1e6:.1f} us ='
          f' {check / detailed * 100:.2f} % of the TLS request')  # fmt: skip


if __name__ == '__main__':
    main()
