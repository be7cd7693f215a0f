"""Health checks: what the watchdog, ``/health/detailed`` and operators share.

A *critical* check failing means the daemon cannot do its job (the database
does not answer or cannot take a write, the disk is full), and
``/health/detailed`` answers 503. Where a restart can mend it (a wedged
database) the watchdog stops pinging so systemd restarts the daemon; where
the cause is outside (a full disk) it keeps pinging, because a restart
cannot free space and would only loop while reads still work. A *degraded*
check is worth an operator's look but not a restart.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple

import apsw

from jamey import __version__
from jamey.storage import Database

if TYPE_CHECKING:
    from jamey.guard import Guard
    from jamey.integrity import IntegrityCheck
    from jamey.memory import MemoryStore
    from jamey.model import ModelBackend
    from jamey.mqtt import Bridge
    from jamey.vault import Vault

OK = 'ok'
DEGRADED = 'degraded'
FAILING = 'failing'
MIB = 1024 * 1024


class Check(NamedTuple):
    name: str
    status: str
    critical: bool
    detail: dict[str, Any]
    # The cause is outside the daemon: a restart cannot mend it.
    external: bool = False


class Report(NamedTuple):
    status: str
    checks: list[Check]

    @property
    def failing(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAILING]

    @property
    def wedged(self) -> bool:
        """A critical check fails that a restart may mend: the watchdog's cue."""
        return any(
            c.critical and c.status == FAILING and not c.external for c in self.checks
        )


class Thresholds(NamedTuple):
    min_free_mb: int
    max_rss_mb: int


def rss_bytes() -> int:
    """Resident memory of this process, from /proc (no psutil for one number)."""
    with open('/proc/self/status', 'rb') as f:
        for line in f:
            if line.startswith(b'VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


class HealthChecks:
    """Runs the checks; thresholds can be replaced live (SIGHUP)."""

    def __init__(
        self,
        db: Database,
        state_dir: Path,
        thresholds: Thresholds,
        clock: Callable[[], float] = time.monotonic,
        memories: 'MemoryStore | None' = None,
        vault: 'Vault | None' = None,
        backup_interval_s: float = 0.0,
        mqtt: 'Bridge | None' = None,
        llm: 'ModelBackend | None' = None,
        guard: 'Guard | None' = None,
        model_missing: str | None = None,
        integrity: 'IntegrityCheck | None' = None,
    ) -> None:
        self.db = db
        self.integrity = integrity
        self.memories = memories
        self.vault = vault
        self.backup_interval_s = backup_interval_s
        self.mqtt = mqtt
        self.llm = llm
        self.guard = guard
        self.model_missing = model_missing
        self.state_dir = state_dir
        self.thresholds = thresholds
        self._clock = clock
        self.started = clock()

    def uptime_s(self) -> float:
        return self._clock() - self.started

    def run(self) -> Report:
        checks = [
            self._database(),
            self._integrity(),
            self._disk(),
            self._memory(),
            self._versions(),
        ]
        if self.memories is not None:
            checks.append(self._memory_index(self.memories))
        if self.vault is not None and self.backup_interval_s > 0:
            checks.append(self._backups(self.vault, self.backup_interval_s))
        if self.mqtt is not None:
            checks.append(self._broker(self.mqtt))
        if self.llm is not None:
            checks.append(self._llm(self.llm))
        if self.guard is not None:
            checks.append(self._guard(self.guard))
        if self.model_missing is not None:
            checks.append(self._meaning(self.model_missing))
        if any(c.critical and c.status == FAILING for c in checks):
            status = FAILING
        elif any(c.status != OK for c in checks):
            status = DEGRADED
        else:
            status = OK
        return Report(status, checks)

    def _database(self) -> Check:
        """A read, then the write lock taken and given back as a writer would
        (within the busy timeout, nothing written): a lock held by another
        process or a write stuck on a frozen file system fails it, where a
        read alone would still pass."""
        start = time.perf_counter()
        try:
            row = (
                self.db.connection()
                .execute("SELECT value FROM meta WHERE key = 'instance_id'")
                .get
            )
        except Exception as exc:
            return Check('database', FAILING, True, {'error': type(exc).__name__})
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        if not row:
            return Check('database', FAILING, True, {'latency_ms': latency_ms})
        try:
            write_ms = round(self.db.probe_write() * 1000, 3)
        except apsw.FullError:
            detail = {'latency_ms': latency_ms, 'error': 'no_space'}
            return Check('database', FAILING, True, detail, external=True)
        except Exception as exc:
            detail = {'latency_ms': latency_ms, 'error': type(exc).__name__}
            return Check('database', FAILING, True, detail)
        detail = {'latency_ms': latency_ms, 'write_lock_ms': write_ms}
        return Check('database', OK, True, detail)

    def _integrity(self) -> Check:
        """Damage found by the last full check, or by a read since (a row
        that failed its checksum): critical, but external, since a restart
        cannot mend what only a restore or a deletion can."""
        detail: dict[str, Any] = {'damaged_rows': sorted(self.db.damaged)[:10]}
        last = None if self.integrity is None else self.integrity.last
        if last is not None:
            detail['last_check'] = last.started_at
            if last.problems:
                detail['problems'] = last.problems[:3]
        damaged = bool(self.db.damaged) or (last is not None and bool(last.problems))
        if damaged:
            detail['remedy'] = (
                'delete the damaged rows, or restore the newest backup'
                ' (jameyctl vault restore)'
            )
        return Check('integrity', FAILING if damaged else OK, True, detail, True)

    def _disk(self) -> Check:
        try:
            fs = os.statvfs(self.state_dir)
            free = fs.f_bavail * fs.f_frsize
        except OSError as exc:
            return Check('disk', FAILING, True, {'error': exc.strerror})
        threshold = self.thresholds.min_free_mb * MIB
        status = OK if free >= threshold else FAILING
        detail = {'free_bytes': free, 'threshold_bytes': threshold}
        return Check('disk', status, True, detail, external=True)

    def _memory(self) -> Check:
        rss = rss_bytes()
        limit = self.thresholds.max_rss_mb * MIB
        status = OK if rss <= limit else DEGRADED
        return Check('memory', status, False, {'rss_bytes': rss, 'limit_bytes': limit})

    @staticmethod
    def _memory_index(memories: 'MemoryStore') -> Check:
        """Search works from the index; a rebuild is worth an operator's look.
        Degraded while the index cannot take changes (a full disk: every
        acknowledged memory is in SQLite and its journal, and is indexed
        once it can be) or holds other than the journal says."""
        detail: dict[str, Any] = {
            'lag': memories.lag(),
            'documents': memories.index_documents(),
        }
        if memories.rebuilt_at is not None:
            detail['warning'] = (
                f'index rebuilt at {memories.rebuilt_at}: {memories.rebuild_reason}'
            )
        status = OK
        if memories.write_error is not None:
            status = DEGRADED
            detail['error'] = memories.write_error
            detail['failing_since'] = memories.failing_since
        elif (differs := memories.disagreement()) is not None:
            status = DEGRADED
            detail['error'] = differs
        return Check('memory_index', status, False, detail)

    def _backups(self, vault: 'Vault', interval_s: float) -> Check:
        """Each backup is read back and checked before it gets its name, so
        the newest one listed is the newest verified one. With none yet, the
        clock runs from the start: the first is due at once."""
        newest = vault.newest()
        detail: dict[str, Any]
        if newest is None:
            age, detail = self.uptime_s(), {'newest': None}
        else:
            age = max(0.0, time.time() - newest.created_s)
            detail = {'newest': newest.id, 'age_s': round(age)}
        status = OK if age <= 2 * interval_s else DEGRADED
        return Check('vault', status, False, {**detail, 'interval_s': interval_s})

    @staticmethod
    def _broker(mqtt: 'Bridge') -> Check:
        """Siblings cannot reach a device away from its broker, but it still
        guards locally and keeps their replies: degraded, not failing."""
        status = OK if mqtt.connected else DEGRADED
        return Check('mqtt', status, False, mqtt.stats())

    @staticmethod
    def _llm(llm: 'ModelBackend') -> Check:
        """Chat still judges and remembers without its model: degraded, not
        critical, while the last call failed; the next success clears it."""
        detail = llm.health()
        status = DEGRADED if detail['consecutive_failures'] else OK
        return Check('llm', status, False, detail)

    @staticmethod
    def _guard(guard: 'Guard') -> Check:
        """Without its guard model the conscience still judges (unsure texts
        get ``conscience.guard.on_failure``): degraded while the last call
        failed; the next success clears it."""
        detail = guard.health()
        status = DEGRADED if detail['consecutive_failures'] else OK
        return Check('guard', status, False, detail)

    @staticmethod
    def _meaning(error: str) -> Check:
        """``conscience.meaning = "optional"`` and no model: the rules judge
        by their phrases alone until the model is installed and jameyd
        restarted."""
        return Check(
            'meaning',
            DEGRADED,
            False,
            {'error': error, 'judged_by': 'phrases alone'},
        )

    def _versions(self) -> Check:
        # Imported here: start-up does not need the extension yet.
        from jamey import _core  # noqa: PLC0415

        core = _core.version()
        status = OK if core == __version__ else DEGRADED
        return Check('version', status, False, {'package': __version__, 'core': core})
