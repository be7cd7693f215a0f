"""HTTP over the daemon's Unix socket, for jameyctl."""

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DaemonUnreachableError(Exception):
    """No daemon answered on the socket (missing, refused, timed out)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f'cannot reach jameyd at {path}: {reason}')
        self.path = path


@dataclass(frozen=True)
class Reply:
    status: int
    document: Any


class UnixConnection(http.client.HTTPConnection):
    """HTTP to jameyd over its Unix socket (the tests and benchmarks use it too)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        super().__init__('localhost', timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """A small JSON client of the API; one connection per request is plenty."""

    def __init__(
        self, path: Path, timeout: float = 10.0, token: str | None = None
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.token = token

    def request(self, method: str, target: str, body: Any = None) -> Reply:
        conn = UnixConnection(self.path, self.timeout)
        headers = {'Accept': 'application/json'}
        if self.token:
            headers['Authorization'] = f'Bearer {self.token}'
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except FileNotFoundError:
            raise DaemonUnreachableError(
                self.path, 'no such socket (is jameyd running?)'
            ) from None
        except ConnectionRefusedError:
            raise DaemonUnreachableError(self.path, 'connection refused') from None
        except PermissionError:
            raise DaemonUnreachableError(
                self.path, 'permission denied (are you in its group?)'
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonUnreachableError(
                self.path, str(exc) or type(exc).__name__
            ) from None
        finally:
            conn.close()
        try:
            document = json.loads(data) if data else None
        except ValueError:
            raise DaemonUnreachableError(self.path, 'the reply is not JSON') from None
        return Reply(response.status, document)
