"""The full check of the database, on request and on a schedule.

The start-up check is SQLite's ``quick_check`` within a budget: it finds a
damaged page, not a damaged value, and not an index that disagrees with its
table. The full check is SQLite's ``integrity_check`` and every row's
checksum (``jamey.checksums``), on a thread of its own so that neither the
API nor the main loop waits for it; its last finding is what health reports
until the next one. It reads one snapshot while it runs, as a backup does,
and writes nothing.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import apsw

from jamey import checksums
from jamey.clock import iso_utc
from jamey.errors import StorageError
from jamey.storage import PROGRESS_STEPS
from jamey.storage import Database

log = logging.getLogger('jamey.integrity')
# The most problems and damaged rows a finding names.
MAX_NAMED = 20


class Finding(NamedTuple):
    """What one full check found: SQLite's problems and the rows that fail
    their checksums, both empty when the database is sound."""

    started_at: str
    seconds: float
    problems: list[str]
    damaged_rows: list[str]

    @property
    def sound(self) -> bool:
        return not self.problems and not self.damaged_rows

    def as_dict(self) -> dict[str, Any]:
        return {
            'started_at': self.started_at,
            'seconds': self.seconds,
            'status': 'ok' if self.sound else 'damaged',
            'problems': self.problems,
            'damaged_rows': self.damaged_rows,
        }


class IntegrityCheck:
    """Runs the full check when asked and every ``interval_s`` (0: only
    when asked), one at a time."""

    def __init__(
        self,
        db: Database,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.interval_s = interval_s
        self._clock = clock
        self._wake = threading.Condition()
        self._asked = False
        self._stopping = False
        self._running = False
        self._thread: threading.Thread | None = None
        self.last: Finding | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name='jamey-integrity', daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a check under way is interrupted, not recorded."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def request(self) -> None:
        """Run a check as soon as the one under way (if any) has finished."""
        with self._wake:
            self._asked = True
            self._wake.notify_all()

    def state(self) -> dict[str, Any]:
        """Whether a check runs or is asked for, and the last finding."""
        with self._wake:
            busy = self._running or self._asked
        return {
            'running': busy,
            'interval_s': self.interval_s,
            'last': None if self.last is None else self.last.as_dict(),
        }

    def _loop(self) -> None:
        while True:
            with self._wake:
                # Asked for, or the interval is up (with none, only asked).
                self._wake.wait_for(
                    lambda: self._asked or self._stopping, self.interval_s or None
                )
                if self._stopping:
                    return
                self._asked = False
                self._running = True
            try:
                self.run()
            except StorageError:
                return  # the database closed under it: the daemon stops
            except apsw.InterruptError:
                return  # stopped mid-way
            except apsw.Error as exc:
                log.error('storage.full_check_failed', extra={'error': str(exc)})
            finally:
                with self._wake:
                    self._running = False

    def run(self) -> Finding:
        """One full check on the calling thread; its finding is kept.

        Raises:
            apsw.InterruptError: ``stop`` was called meanwhile.
            apsw.Error: the database could not be read.
        """
        started = time.monotonic()
        started_at = iso_utc(self._clock())
        conn = self.db.connection()
        conn.set_progress_handler(lambda: self._stopping, PROGRESS_STEPS)
        try:
            with self.db.transaction(write=False):
                problems = [
                    str(row[0])
                    for row in conn.execute(f'PRAGMA integrity_check({MAX_NAMED})')
                ]
                damaged = checksums.damaged_rows(conn, MAX_NAMED)
        finally:
            conn.set_progress_handler(None)
        finding = Finding(
            started_at,
            round(time.monotonic() - started, 3),
            [] if problems == ['ok'] else problems,
            damaged,
        )
        self.last = finding
        self.db.damaged = set(damaged)
        if finding.sound:
            log.info('storage.full_check', extra={'seconds': finding.seconds})
        else:
            log.error(
                'storage.full_check_damaged',
                extra={
                    'seconds': finding.seconds,
                    'problems': problems[:3],
                    'damaged_rows': damaged[:3],
                },
            )
        return finding
