"""The sd_notify protocol, in the standard library.

Like systemd's own ``sd_notify``: without ``$NOTIFY_SOCKET`` it does nothing,
and it never raises, because a daemon must not die for failing to tell its
supervisor how it is.
"""

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger('jamey.daemon')


class Notifier:
    """Sends state changes (``READY=1``, ``WATCHDOG=1``, ...) to systemd."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get('NOTIFY_SOCKET', '')
        if address.startswith('@'):
            address = '\0' + address[1:]  # an abstract socket
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
            )

    def notify(self, *assignments: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto('\n'.join(assignments).encode(), self.address)
        except OSError as exc:
            log.debug('systemd.notify_failed', extra={'error': exc.strerror})

    def reloading(self) -> None:
        """RELOADING=1 with the timestamp systemd 253+ uses to match READY=1."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify('RELOADING=1', f'MONOTONIC_USEC={usec}')

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between required pings, or None when no watchdog is asked for.

    ``$WATCHDOG_PID`` names the process the watchdog is meant for; any other
    process (a child, say) must not ping on the daemon's behalf.
    """
    try:
        usec = int(environ.get('WATCHDOG_USEC', '0'))
    except ValueError:
        return None
    pid = environ.get('WATCHDOG_PID')
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
