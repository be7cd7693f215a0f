"""The database: modes, pragmas, migrations, per-thread connections, the lock."""

import os
import threading
import time
from pathlib import Path

import apsw
import pytest

from jamey import storage
from jamey.errors import MigrationError
from jamey.errors import StateLockedError
from jamey.errors import StorageError
from jamey.storage import Database
from jamey.storage import Migration


@pytest.fixture
def db(tmp_path: Path) -> Database:
    state = storage.private_directory(tmp_path / 'state')
    database = Database(state / 'jamey.db')
    database.migrate()
    return database


def test_files_and_directories_are_private(tmp_path: Path) -> None:
    loose = tmp_path / 'state'
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    state = storage.private_directory(loose)
    assert state.stat().st_mode & 0o777 == 0o700
    (state / 'jamey.db').write_bytes(b'')
    (state / 'jamey.db').chmod(0o644)
    Database(state / 'jamey.db').migrate()
    assert (state / 'jamey.db').stat().st_mode & 0o777 == 0o600


def test_pragmas(db: Database) -> None:
    conn = db.connection()
    assert conn.execute('PRAGMA journal_mode').get == 'wal'
    assert conn.execute('PRAGMA synchronous').get == 2  # FULL
    assert conn.execute('PRAGMA foreign_keys').get == 1
    assert conn.execute('PRAGMA busy_timeout').get == 5000
    with pytest.raises(apsw.SQLError):
        conn.execute('SELECT "no such column" FROM meta')  # no double-quoted strings


def test_synchronous_is_configurable(tmp_path: Path) -> None:
    database = Database(tmp_path / 'x.db', synchronous='normal', busy_timeout_ms=7)
    assert database.connection().execute('PRAGMA synchronous').get == 1
    assert database.connection().execute('PRAGMA busy_timeout').get == 7


def _commit_past_the_checkpoint_threshold(database: Database) -> int:
    """Write more pages than SQLite's checkpoint threshold in one commit;
    the database file's size right after it."""
    with database.transaction() as conn:
        conn.execute(
            'INSERT INTO t VALUES (randomblob(?))', (storage.CHECKPOINT_PAGES * 5000,)
        )
    return database.path.stat().st_size


@pytest.mark.parametrize('background', [False, True])
def test_checkpoints_leave_the_commit_in_background(
    tmp_path: Path, background: bool
) -> None:
    database = Database(tmp_path / 'c.db')
    database.connection().execute('CREATE TABLE t (x BLOB)')
    if background:
        database.checkpoint_in_background()
    # The checkpointer's first use opens its connection, which needs this
    # lock: held, the thread cannot checkpoint yet.
    with database._lock:
        size = _commit_past_the_checkpoint_threshold(database)
    wal = Path(f'{database.path}-wal')
    if not background:
        assert size > storage.CHECKPOINT_PAGES * 4096  # checkpointed in the commit
        database.close()
        return
    assert size < 100_000 < wal.stat().st_size  # the commit did not checkpoint
    # The checkpointer copies the pages in steps: wait for all of them.
    checkpointed = storage.CHECKPOINT_PAGES * 4096
    deadline = time.monotonic() + 30
    while database.path.stat().st_size <= checkpointed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert database.path.stat().st_size > checkpointed
    assert database.connection().execute('SELECT length(x) FROM t').get == (
        storage.CHECKPOINT_PAGES * 5000
    )
    database.close()
    assert not any(t.name == 'jamey-checkpoint' for t in threading.enumerate())


def test_the_wal_starts_over_under_steady_writes(tmp_path: Path) -> None:
    """Without the restart the WAL would hold every commit (five times the
    restart size here) and keep growing."""
    database = Database(tmp_path / 'w.db')
    database.connection().execute('CREATE TABLE t (x BLOB)')
    database.checkpoint_in_background()
    wal = Path(f'{database.path}-wal')
    frame = 4096 + 24
    largest = 0
    for _ in range(5 * storage.WAL_RESTART_PAGES // 3):
        with database.transaction() as conn:  # about three pages a commit
            conn.execute('INSERT INTO t VALUES (randomblob(5000))')
        largest = max(largest, wal.stat().st_size)
    assert largest <= 2 * storage.WAL_RESTART_PAGES * frame
    assert database.connection().execute('SELECT count(*) FROM t').get == (
        5 * storage.WAL_RESTART_PAGES // 3
    )
    database.close()


def test_bundled_migrations_and_meta(db: Database) -> None:
    assert db.version() == len(storage.bundled_migrations())
    instance = (
        db.connection().execute("SELECT value FROM meta WHERE key = 'instance_id'").get
    )
    assert len(instance) == 32
    assert db.migrate() == (db.version(), db.version())  # idempotent


def test_one_connection_per_thread(db: Database) -> None:
    seen: list[apsw.Connection] = []
    thread = threading.Thread(target=lambda: seen.append(db.connection()))
    thread.start()
    thread.join()
    assert seen[0] is not db.connection()
    assert db.connection() is db.connection()


def _hold_the_gate(database: Database, release: threading.Event) -> threading.Thread:
    """A thread in a write transaction until ``release`` is set."""
    holding = threading.Event()

    def hold() -> None:
        with database.transaction() as conn:
            conn.execute('INSERT INTO t VALUES (1)')
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    return holder


@pytest.mark.parametrize('busy_timeout_ms', [200, 5000])
def test_writers_queue_for_the_gate_and_give_up_like_sqlite(
    tmp_path: Path, busy_timeout_ms: int
) -> None:
    database = Database(tmp_path / 'g.db', busy_timeout_ms=busy_timeout_ms)
    database.connection().execute('CREATE TABLE t (x INTEGER)')
    release = threading.Event()
    holder = _hold_the_gate(database, release)
    if busy_timeout_ms == 200:
        with pytest.raises(apsw.BusyError, match='locked'), database.transaction():
            pass  # not reached: the gate stays held past the busy timeout
        release.set()
        holder.join()
        database.close()
        return
    threading.Timer(0.1, release.set).start()
    with database.transaction() as conn:  # waits for the holder, then writes
        conn.execute('INSERT INTO t VALUES (2)')
    holder.join()
    rows = database.connection().execute('SELECT x FROM t ORDER BY rowid').fetchall()
    assert rows == [(1,), (2,)]
    database.close()


def test_closed_database_refuses_use(db: Database) -> None:
    db.close()
    with pytest.raises(StorageError, match='closed'):
        db.connection()


def test_a_failing_migration_rolls_back_whole(tmp_path: Path) -> None:
    database = Database(tmp_path / 'm.db')
    good = Migration(1, 'first', 'CREATE TABLE a (x INTEGER);')
    bad = Migration(
        2, 'second', 'CREATE TABLE b (y INTEGER); INSERT INTO nope VALUES (1);'
    )
    assert database.migrate([good]) == (0, 1)
    with pytest.raises(MigrationError) as caught:
        database.migrate([good, bad])
    message = str(caught.value)
    assert '0002_second failed' in message
    assert 'no such table: nope' in message
    assert 'left at schema version 1' in message
    assert database.version() == 1
    tables = (
        database.connection()
        .execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .get
    )
    assert tables == 'a', 'table b from the failed migration is rolled back'


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    database = Database(tmp_path / 'n.db')
    database.connection().execute('PRAGMA user_version = 99')
    with pytest.raises(MigrationError, match='schema version 99, newer than'):
        database.migrate()


def test_state_lock_names_the_holder(tmp_path: Path) -> None:
    lock = storage.StateLock(tmp_path)
    assert (tmp_path / 'jamey.lock').read_text().strip() == str(os.getpid())
    with pytest.raises(StateLockedError, match=f'in use by jameyd pid {os.getpid()}'):
        storage.StateLock(tmp_path)
    lock.release()
    storage.StateLock(tmp_path).release()


def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / 'garbage.db').write_bytes(b'this is not a database' * 100)
    database = Database(tmp_path / 'garbage.db')
    with pytest.raises(StorageError, match='cannot open database'):
        database.connection()


def test_the_check_stops_at_its_budget(tmp_path: Path) -> None:
    db = storage.Database(tmp_path / 'jamey.db')
    db.migrate()
    with db.transaction() as conn:
        # Enough pages that the check is asked to stop before it ends.
        for i in range(20_000):
            conn.execute(
                'INSERT INTO meta (key, value) VALUES (?, ?)', (f'k{i}', 'v' * 400)
            )
    db.close()
    assert storage.StartCheck(db.path, full=True, budget_s=60).wait()[0]
    assert not storage.StartCheck(db.path, full=False, budget_s=1e-9).wait()[0]


def test_the_check_leaves_a_missing_file_to_the_start(tmp_path: Path) -> None:
    finished, _ = storage.StartCheck(tmp_path / 'new.db', False, 10).wait()
    assert finished
    assert not (tmp_path / 'new.db').exists()
