"""SQLite through apsw: the one source of truth of the daemon's state.

Edge devices lose power without warning, so the database runs in WAL mode with
``synchronous=FULL`` by default, and every schema change is a numbered SQL
file applied in its own transaction: a failed migration leaves the previous
version intact, and ``PRAGMA user_version`` says which one that is.
"""

import contextlib
import fcntl
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import NamedTuple

import apsw

from jamey import checksums
from jamey.errors import MigrationError
from jamey.errors import RowDamagedError
from jamey.errors import StateLockedError
from jamey.errors import StorageDamagedError
from jamey.errors import StorageError
from jamey.errors import UnsafeDirectoryError

log = logging.getLogger('jamey.storage')
DATABASE_NAME = 'jamey.db'
# SQLite's own threshold for copying the WAL back into the database file.
CHECKPOINT_PAGES = 1000
# Where the background checkpointer makes the WAL start over (4 MB, the
# size SQLite's own checkpoints keep it at), and how long that waits for
# readers to leave the WAL (writers wait meanwhile).
WAL_RESTART_PAGES = CHECKPOINT_PAGES
RESTART_WAIT_MS = 20
LOCK_NAME = 'jamey.lock'
# SQLite steps between the calls that let a long check be stopped: each call
# takes the GIL, so they are rare enough not to slow the Python beside it.
PROGRESS_STEPS = 100_000
# The package is always installed as files (wheel or editable), never zipped.
MIGRATIONS_DIR = Path(__file__).parent / 'migrations'
_MIGRATION_NAME = re.compile(r'^(\d{4})_([a-z0-9_]+)\.sql$')


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


STORAGE_BUSY = 'storage_busy'
NO_SPACE = 'no_space'
STORAGE_DAMAGED = 'storage_damaged'


def failure_code(error: apsw.Error | StorageDamagedError) -> str | None:
    """The stable code of a storage failure that every adapter reports alike
    (``storage_busy``, ``no_space``, ``storage_damaged``); None for any
    other. A full disk is an I/O error to SQLite as often as a full one; a
    row that fails its checksum is damage like a page SQLite cannot read."""
    if isinstance(error, StorageDamagedError):
        return STORAGE_DAMAGED
    if isinstance(error, apsw.BusyError | apsw.LockedError):
        return STORAGE_BUSY
    if isinstance(error, apsw.FullError | apsw.IOError):
        return NO_SPACE
    if isinstance(error, apsw.CorruptError | apsw.NotADBError):
        return STORAGE_DAMAGED
    return None


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in ``jamey/migrations``, checked to be 1..N."""
    found = []
    for entry in MIGRATIONS_DIR.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text('utf-8')))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StorageError('bundled migrations are not numbered 0001..N without gaps')
    return found


def private_directory(path: Path) -> Path:
    """Create (or tighten) a directory only its owner can enter.

    The directory must belong to the user running this code: another user's
    could be emptied, read or swapped under the daemon. The mode is checked
    and changed through one open descriptor, so a symlink swapped in between
    cannot redirect the change.

    Raises:
        UnsafeDirectoryError: the directory belongs to another user.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise UnsafeDirectoryError(
                f'{path} belongs to uid {info.st_uid}, not to this user'
                f' (uid {os.geteuid()}): run as its owner, or chown it'
            )
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def refuse_if_others_write(directory: Path, what: str) -> None:
    """A directory jameyd writes in must be this user's (or root's), and only
    theirs to write: whoever else may write there can swap a file jameyd is
    about to write or change for a symlink to another.

    Raises:
        UnsafeDirectoryError: another user owns the directory or may write in
            it; ``what`` names it in the message.
    """
    info = directory.stat()
    if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o022:
        raise UnsafeDirectoryError(
            f'{what} {directory} (uid {info.st_uid}, mode'
            f' {stat.S_IMODE(info.st_mode):04o}) may be written by other users:'
            ' give it to this user, writable by it alone'
        )


class StateLock:
    """An exclusive lock on a state directory, held for the daemon's lifetime.

    Two daemons writing one database through separate journals and indexes
    would corrupt derived state; the kernel drops a flock when its holder
    dies, so a crash never leaves a stale lock behind.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode('ascii', 'replace').strip() or '?'
            os.close(fd)
            raise StateLockedError(
                f'state directory {state_dir} is in use by jameyd pid {holder}'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StartCheck:
    """SQLite's own check of a database file (``quick_check``, or with
    ``full`` the ``integrity_check`` that also compares every index with its
    table), within ``budget_s``, on a thread and a connection of its own.

    jameyd begins it as soon as its settings are known, so that it runs
    while the daemon's modules are imported (SQLite reads without the GIL),
    and waits for it before anything reads the database. A file that does
    not exist yet (a first start), or that cannot be opened, is left to the
    start, which creates it or says why it cannot.
    """

    def __init__(self, path: Path, full: bool, budget_s: float) -> None:
        self.path = path
        self._full = full
        self._budget_s = budget_s
        self._found: list[str] | None = None  # None: stopped at the budget
        self._seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, name='jamey-start-check', daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        deadline = started + self._budget_s
        pragma = 'integrity_check' if self._full else 'quick_check'
        try:
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE)
        except apsw.CantOpenError:
            self._found = ['ok']
            return
        try:
            conn.set_progress_handler(
                lambda: time.monotonic() > deadline, PROGRESS_STEPS
            )
            self._found = [str(row[0]) for row in conn.execute(f'PRAGMA {pragma}(20)')]
        except apsw.InterruptError:
            self._found = None
        except apsw.Error as exc:
            self._found = [str(exc)]
        finally:
            conn.close()
            self._seconds = time.monotonic() - started

    def wait(self) -> tuple[bool, float]:
        """Whether the check finished within its budget, and its seconds.

        Raises:
            StorageDamagedError: the check found damage; the first problems
                it names, and the remedy.
        """
        self._thread.join()
        if self._found is not None and self._found != ['ok']:
            raise StorageDamagedError(
                f'database {self.path} is damaged ({"; ".join(self._found[:3])});'
                ' restore the newest backup: jameyctl vault restore ID --yes'
            )
        return self._found is not None, self._seconds


class Database:
    """The state database, with one apsw connection per thread.

    waitress workers and the daemon's main loop each get their own
    connection on first use; ``close`` closes them all at shutdown.
    """

    def __init__(
        self,
        path: Path,
        synchronous: str = 'full',
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._checkpointer: threading.Thread | None = None
        self._wal_full = threading.Event()
        self._wal_pages = 0
        self._checkpoint_at = CHECKPOINT_PAGES
        self._write_gate = threading.Lock()
        # Rows that failed their checksum since the start (or the last full
        # check), named: health reports them until a full check finds none.
        self.damaged: set[str] = set()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)

    def connection(self) -> apsw.Connection:
        """The calling thread's connection, opened and configured on first use."""
        conn = getattr(self._local, 'conn', None)
        if conn is None or self._closed:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> apsw.Connection:
        with self._lock:
            if self._closed:
                raise StorageError('the database is closed')
            try:
                conn = apsw.Connection(
                    str(self.path),
                    flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE,
                )
                conn.setbusytimeout(self._busy_timeout_ms)
                conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
                conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
                conn.execute('PRAGMA journal_mode = WAL')
                conn.execute(f'PRAGMA synchronous = {self._synchronous.upper()}')
                conn.execute('PRAGMA foreign_keys = ON')
                checksums.register(conn)
            except apsw.Error as exc:
                raise StorageError(f'cannot open database {self.path}: {exc}') from exc
            if self._checkpointer is not None:
                conn.set_wal_hook(self._wal_grew)
            self._all.append(conn)
            return conn

    def checkpoint_in_background(self) -> None:
        """Copy the WAL back into the database file on a thread of its own.

        SQLite checkpoints inside the commit that takes the WAL past
        CHECKPOINT_PAGES, fsyncing the database file while that commit's
        caller waits: under steady writes one request in a hundred took
        6 ms instead of 1 (``scripts/bench mqtt``). With this, a commit
        only notes the WAL's size, and the checkpoint runs here. The daemon
        calls it; short-lived tools keep SQLite's default.

        Each CHECKPOINT_PAGES of WAL are copied back PASSIVE (blocking no
        reader or writer). That alone never lets the WAL start over under
        steady writes (it does only when a checkpoint caught up with the
        last commit), and a WAL that keeps growing makes every commit's
        fsync also commit the file's new size: single stores ran at 60 %
        of their rate. So at WAL_RESTART_PAGES, after the passive pass, a
        RESTART checkpoint with the write gate held (it copies what came
        meanwhile) makes the next commit write from the start of the file
        again; writers wait for it, about a millisecond. Restarting at
        16 MB instead of 4 kept single stores 10 % slower for good (0.89x
        FTS5's rate against 1.01x, ``scripts/bench memory``), with no
        difference in ``scripts/bench mqtt``. A reader that stays longer (a
        backup's snapshot) makes it give up after RESTART_WAIT_MS, to try
        again at the next wake.
        """
        with self._lock:
            if self._checkpointer is not None or self._closed:
                return
            self._checkpointer = threading.Thread(
                target=self._checkpoint_when_full, name='jamey-checkpoint', daemon=True
            )
            for conn in self._all:
                conn.set_wal_hook(self._wal_grew)  # replaces the automatic one
        self._checkpointer.start()

    def _wal_grew(self, conn: apsw.Connection, name: str, pages: int) -> int:
        """After each commit (commits come one at a time): wake the
        checkpointer each time the WAL grew by CHECKPOINT_PAGES, not at
        every commit past it (until the WAL starts over, each would set
        off another checkpoint)."""
        if pages < self._wal_pages:  # the WAL started over
            self._checkpoint_at = CHECKPOINT_PAGES
        self._wal_pages = pages
        if pages >= self._checkpoint_at:
            self._checkpoint_at = pages + CHECKPOINT_PAGES
            self._wal_full.set()
        return int(apsw.SQLITE_OK)

    def _checkpoint_when_full(self) -> None:
        while True:
            self._wal_full.wait()
            if self._closed:
                return
            self._wal_full.clear()
            try:
                conn = self.connection()
                conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
                if self._wal_pages < WAL_RESTART_PAGES:
                    continue
                # What was committed meanwhile is all the restart copies.
                conn.setbusytimeout(RESTART_WAIT_MS)
                with self._write_gate:
                    conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_RESTART)
            except StorageError:
                return  # closed meanwhile
            except apsw.BusyError:
                pass  # a reader stayed: the next wake tries again
            except apsw.Error as exc:
                # The next wake tries again; until then the WAL holds
                # everything, only larger.
                log.warning('storage.checkpoint_failed', extra={'error': str(exc)})

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[apsw.Connection]:
        """A transaction on the calling thread's connection.

        Nested, it is a savepoint of the outer one, so capabilities can join
        one transaction (a memory and its link to an entity). An outermost
        writing one takes the write lock first (``BEGIN IMMEDIATE``): one
        that read first could not upgrade after another connection wrote,
        and would fail at once instead of waiting its turn. Callbacks handed
        to ``after_commit`` meanwhile run once the outermost one has
        committed, and are dropped if it rolls back: a worker woken before
        the commit would find nothing new and go back to sleep.

        Writers of this process queue for the write gate before SQLite's
        lock: one that finds SQLite's lock taken sleeps in its busy handler
        (1, 2, 5, 10 ms...) however soon it is free, while the gate hands
        over at once; and the checkpointer holds it to restart the WAL.
        """
        conn = self.connection()
        if getattr(self._local, 'after_commit', None) is not None:
            with conn:
                yield conn
            return
        self._local.after_commit = []
        try:
            with self._gate() if write else contextlib.nullcontext():
                conn.execute('BEGIN IMMEDIATE' if write else 'BEGIN')
                try:
                    yield conn
                    conn.execute('COMMIT')
                except BaseException:
                    if conn.in_transaction:
                        conn.execute('ROLLBACK')
                    raise
        finally:
            callbacks, self._local.after_commit = self._local.after_commit, None
        for callback in callbacks:
            callback()

    @contextlib.contextmanager
    def _gate(self) -> Iterator[None]:
        """The write gate, waited for as long as SQLite's busy timeout, and
        refused alike when that runs out."""
        if not self._write_gate.acquire(timeout=self._busy_timeout_ms / 1000):
            raise apsw.BusyError('database is locked (another writer held it)')
        try:
            yield
        finally:
            self._write_gate.release()

    def probe_write(self) -> float:
        """Seconds to take the write lock as a writer would (the gate, then
        SQLite's lock) and give it back; nothing is written, so probing
        often costs the disk nothing.

        Raises:
            apsw.BusyError: the lock stayed taken past the busy timeout
                (another process holds it, or a write is stuck).
        """
        started = time.monotonic()
        with self.transaction():
            pass
        return time.monotonic() - started

    def read_rows(
        self, table: str, sql: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of ``table`` that ``sql`` selects, on the calling
        thread's connection (inside its transaction, if one is open).
        ``sql`` selects ``checksums.damaged_key(table)`` last; the rows come
        back without it.

        Raises:
            RowDamagedError: a row failed its checksum, or holds text that
                is no longer UTF-8; it is noted for health and logged.
        """
        try:
            rows = self.connection().execute(sql, params).fetchall()
        except UnicodeDecodeError:
            raise self._damage(checksums.name(table, None)) from None
        for row in rows:
            if row[-1] is not None:
                raise self._damage(checksums.name(table, row[-1]))
        return [row[:-1] for row in rows]

    def _damage(self, row: str) -> RowDamagedError:
        log.error('storage.row_damaged', extra={'row': row})
        self.damaged.add(row)
        return RowDamagedError(
            f'{row} is damaged (it fails its checksum) and is not served:'
            ' delete it, or restore the newest backup (jameyctl vault restore)'
        )

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the current ``transaction()`` has committed
        (at once outside one)."""
        pending = getattr(self._local, 'after_commit', None)
        if pending is None:
            callback()
        else:
            pending.append(callback)

    def version(self) -> int:
        return int(self.connection().execute('PRAGMA user_version').get)

    def migrate(self, migrations: list[Migration] | None = None) -> tuple[int, int]:
        """Bring the schema up to date; return (version before, version after).

        Raises:
            MigrationError: a migration failed (the database stays at the
                version before it) or the database is newer than this code.
        """
        migrations = bundled_migrations() if migrations is None else migrations
        conn = self.connection()
        try:
            before = self.version()
        except apsw.Error as exc:
            raise StorageError(
                f'cannot read the schema version of database {self.path}: {exc}'
            ) from exc
        latest = migrations[-1].version if migrations else 0
        if before > latest:
            raise MigrationError(
                f'database {self.path} is at schema version {before}, newer than'
                f' this jameyd knows ({latest}); install the newer version'
            )
        for migration in migrations[before:]:
            try:
                with conn:
                    conn.execute(migration.sql)
                    conn.execute(f'PRAGMA user_version = {migration.version}')
            except apsw.Error as exc:
                raise MigrationError(
                    f'migration {migration.version:04d}_{migration.name} failed:'
                    f' {exc}; database {self.path} left at schema version'
                    f' {self.version()}'
                ) from exc
        return before, self.version()

    def close(self) -> None:
        """Close every thread's connection; later use raises StorageError."""
        with self._lock:
            self._closed = True
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._wal_full.set()
            checkpointer.join()
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
