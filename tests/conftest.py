"""Shared fixtures: real jameyd processes, a real NOTIFY_SOCKET, real sockets."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer

from jamey import storage
from jamey.cli.client import UnixConnection

BIN = Path(sys.executable).parent
# What no error body may contain: stack traces, file paths, SQL, Python
# exception names. Every problem document a test receives is checked.
LEAKS = re.compile(r'Traceback|File "|\.py\b|/[a-z]+/|SELECT|sqlite|[A-Za-z]+Error\b')
# What every answer carries (docs/security.md), the HTTP servers' own too.
SECURITY_HEADERS = (
    'x-content-type-options',
    'x-frame-options',
    'content-security-policy',
    'referrer-policy',
    'cache-control',
)


def check_no_leak(status: int, headers: dict[str, str], data: bytes) -> None:
    """Fail the test if an error answer gives away the daemon's insides."""
    if status >= 400 and headers.get('content-type') == 'application/problem+json':
        assert not LEAKS.search(data.decode('utf-8', 'replace')), data


def _not_json(constant: str) -> None:
    raise AssertionError(f'{constant} in an answer: strict JSON parsers refuse it')


def strict_json(data: bytes) -> Any:
    """An answer's document, failing the test on NaN or Infinity (Python's
    json reads them; JSON has neither)."""
    return json.loads(data, parse_constant=_not_json)


def short_dir() -> Path:
    """A temporary directory with a short path: AF_UNIX paths are <= 107 bytes."""
    return Path(tempfile.mkdtemp(prefix='jamey-'))


@pytest.fixture
def db(tmp_path: Path) -> storage.Database:
    """A migrated database in a temporary directory."""
    database = storage.Database(tmp_path / 'jamey.db')
    database.migrate()
    return database


@pytest.fixture
def sdir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class NotifySocket:
    """What systemd listens on: collects sd_notify datagrams with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return False
        fields = dict(line.split('=', 1) for line in data.decode().splitlines() if line)
        self.messages.append((time.monotonic(), fields))
        return True

    def wait_for(
        self, key: str, value: str | None = None, timeout: float = 20.0, after: int = 0
    ) -> dict[str, str]:
        """The first message from index ``after`` on that sets ``key``."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.messages):
                fields = self.messages[index][1]
                index += 1
                if key in fields and (value is None or fields[key] == value):
                    return fields
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f'no {key}={value} within {timeout}s: {self.messages}'
                )
            self._receive(remaining)

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._receive(remaining)

    def times_of(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, f in self.messages if key in f and t >= since]

    def close(self) -> None:
        self.sock.close()


def request(
    path: Path,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    conn = UnixConnection(path)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        found = {k.lower(): v for k, v in resp.getheaders()}
        check_no_leak(resp.status, found, data)
        document = strict_json(data) if data else None
        return resp.status, found, document
    finally:
        conn.close()


def raw_exchange(path: Path, data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Send ``data`` as it is; the answer's head and its JSON body."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(str(path))
    client.sendall(data)
    reply = b''
    # A server that answers before reading everything resets as it closes.
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(4096):
            reply += chunk
    client.close()
    head, _, body = reply.partition(b'\r\n\r\n')
    return head, json.loads(body)


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created); skips without root."""
    path.mkdir(mode=0o700)
    mounted = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', f'size={size},mode=0700', 'tmpfs', str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr.strip()}')
    try:
        yield path
    finally:
        subprocess.run(['umount', str(path)], check=True)


class Jameyd:
    """A real jameyd process on a temporary state directory."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        notify: bool = True,
    ) -> None:
        self.root = root
        self.state_dir = root / 'state'
        self.socket = root / 'run' / 'jamey.sock'
        self.log_path = root / f'jameyd-{time.monotonic_ns()}.log'
        self.notify = (
            NotifySocket(root / f'notify-{time.monotonic_ns()}') if notify else None
        )
        self.env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'HOME': str(root),
            'JAMEY_STORAGE_STATE_DIR': str(self.state_dir),
            'JAMEY_API_SOCKET': str(self.socket),
            'JAMEY_LOG_FORMAT': 'json',
            'JAMEY_STORAGE_SYNCHRONOUS': 'normal',
            # Judged by phrases, whose verdicts these tests were written
            # for; tests/test_meaning.py turns meaning on.
            'JAMEY_CONSCIENCE_MEANING': 'off',
            **(env or {}),
        }
        if self.notify is not None:
            self.env['NOTIFY_SOCKET'] = str(self.notify.path)
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True, stderr: int | None = None) -> 'Jameyd':
        """Run it; its output goes to the log file, or stderr to ``stderr``
        (a file descriptor) when given."""
        with self.log_path.open('ab') as log:
            self.proc = subprocess.Popen(
                [str(BIN / 'jameyd'), *self.args],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log if stderr is None else stderr,
            )
        if wait_ready:
            assert self.notify is not None
            self.notify.wait_for('READY', '1')
        return self

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def reload(self) -> None:
        """SIGHUP, then wait until systemd would see the reload finish."""
        assert self.notify is not None
        mark = len(self.notify.messages)
        self.signal(signal.SIGHUP)
        self.notify.wait_for('RELOADING', '1', after=mark)
        self.notify.wait_for('READY', '1', after=mark)

    def get(self, target: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return request(self.socket, 'GET', target, **kw)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.notify is not None:
            self.notify.close()


@pytest.fixture
def make_jameyd(sdir: Path) -> Iterator[Any]:
    """Factory of real daemons; every one is stopped after the test."""
    started: list[Jameyd] = []

    def make(**kw: Any) -> Jameyd:
        daemon = Jameyd(sdir, **kw)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture
def jameyd(make_jameyd: Any) -> Jameyd:
    return make_jameyd().start()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed jameyctl as an operator would."""
    return subprocess.run(
        [str(BIN / 'jameyctl'), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={'PATH': os.environ.get('PATH', ''), **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def model() -> Iterator[ModelServer]:
    """A chat-completions server on a free port, answering as ``mode`` says."""
    server = ModelServer()
    yield server
    server.close()
