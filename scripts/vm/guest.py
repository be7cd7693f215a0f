"""The control service inside the system scripts/test-systemd boots.

It reads requests from a virtio-serial port, one JSON object per line
(``{"id": 1, "argv": [...], "input": "...", "timeout": 60}``), runs each
in a thread of its own and answers with one line carrying the same id
(``{"id": 1, "rc": 0, "out": "...", "err": "..."}``). Only the Python
standard library: it runs on the system's own Python.

While no host is connected the port reads as end of file; the service
waits and reads again, so the host can connect, leave and connect again.
"""

import json
import os
import subprocess
import threading
import time
from typing import Any

PORT = '/dev/virtio-ports/org.jamey.control'
# A request whose command gives no timeout is ended after this many seconds.
DEFAULT_TIMEOUT_S = 120.0


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request's command and say how it ended."""
    try:
        done = subprocess.run(
            request['argv'],
            input=request.get('input'),
            capture_output=True,
            text=True,
            errors='replace',
            timeout=request.get('timeout', DEFAULT_TIMEOUT_S),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {'rc': -1, 'out': '', 'err': 'timed out'}
    except OSError as exc:
        return {'rc': 127, 'out': '', 'err': str(exc)}
    return {'rc': done.returncode, 'out': done.stdout, 'err': done.stderr}


def answer(port: int, lock: threading.Lock, line: bytes) -> None:
    """Answer one request line on the port."""
    try:
        request = json.loads(line)
    except ValueError:
        return
    reply = {'id': request.get('id'), **run(request)}
    data = (json.dumps(reply) + '\n').encode()
    with lock:
        while data:
            data = data[os.write(port, data) :]


def main() -> None:
    while not os.path.exists(PORT):
        time.sleep(0.1)
    port = os.open(PORT, os.O_RDWR)
    lock = threading.Lock()
    pending = b''
    while True:
        chunk = os.read(port, 65536)
        if not chunk:
            # No host connected: what it sent last is void.
            pending = b''
            time.sleep(0.1)
            continue
        pending += chunk
        *lines, pending = pending.split(b'\n')
        for line in lines:
            threading.Thread(
                target=answer, args=(port, lock, line), daemon=True
            ).start()


if __name__ == '__main__':
    main()
