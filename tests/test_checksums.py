"""Row checksums and the full check, against a real SQLite file."""

import re
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from jamey import checksums
from jamey.conscience import Conscience
from jamey.errors import RowDamagedError
from jamey.errors import SnapshotCorruptError
from jamey.integrity import IntegrityCheck
from jamey.memory import MemoryStore
from jamey.soul import Soul
from jamey.soul import SoulSettings
from jamey.storage import Database
from jamey.storage import bundled_migrations
from jamey.vault import archive


def test_the_checksum_tells_values_and_their_classes_apart() -> None:
    rows: list[tuple[Any, ...]] = [
        (b'a', b'b'),
        (b'ab', None),
        (b'a', None, b'b'),
        (1,),
        (1.0,),
        (b'1',),
        (None,),
        (b'',),
        (b'\x00',),
        (-1,),
        (2**63 - 1,),
    ]
    assert len({checksums.row_checksum(*row) for row in rows}) == len(rows)
    # A text given as such is its UTF-8, as the triggers hand it over.
    assert checksums.row_checksum('é') == checksums.row_checksum('é'.encode())
    # Every single flipped bit of a value is found.
    value = b'Alice likes green tea'
    sums = {
        checksums.row_checksum(
            bytes(value[:i] + bytes([value[i] ^ bit]) + value[i + 1 :])
        )
        for i in range(len(value))
        for bit in (1, 2, 4, 8, 16, 32, 64, 128)
    }
    assert checksums.row_checksum(value) not in sums


def test_the_triggers_checksum_what_reads_check(db: Database) -> None:
    """Migration 0009's triggers and ``damaged_key`` agree, column by column."""
    db.migrate()
    triggers = dict(
        db.connection()
        .execute("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
        .fetchall()
    )
    for table, spec in checksums.TABLES.items():
        call = re.sub(r'\s', '', f'{checksums.FUNCTION}({spec.arguments("NEW.")})')
        for event in ('insert', 'update'):
            sql = re.sub(r'\s', '', triggers[f'{table}_checksum_on_{event}'])
            assert call in sql, (table, event)


@pytest.fixture
def parts(db: Database, tmp_path: Path) -> Any:
    db.migrate()
    soul = Soul(db, SoulSettings())
    memories = MemoryStore(db, tmp_path / 'index', on_entity=soul.link)
    memories.start()
    yield db, memories, soul, Conscience(db)
    memories.stop()


def corrupt(db: Database, table: str, column: str, value: Any) -> None:
    """Change a value as a flipped bit would: under the triggers, with a
    connection whose checksum function writes what was there before."""
    raw = apsw.Connection(str(db.path))
    stored = dict(raw.execute(f'SELECT rowid, checksum FROM {table}').fetchall())  # noqa: S608
    raw.create_scalar_function(checksums.FUNCTION, lambda *_: None)
    raw.execute(f'UPDATE {table} SET {column} = ?', (value,))  # noqa: S608
    for rowid, checksum in stored.items():
        raw.execute(
            f'UPDATE {table} SET checksum = ? WHERE rowid = ?',  # noqa: S608
            (checksum, rowid),
        )
    raw.close()


def test_every_write_path_leaves_sound_rows(parts: Any) -> None:
    db, memories, soul, conscience = parts
    memory, _ = memories.store(
        {'content': 'Alice likes tea', 'layer': 'episodic', 'entity': 'alice'}
    )
    soul.record('alice', 'joy', 0.5)
    soul.upsert('bob', {'trust': 0.7})
    soul.decay()
    conscience.create_rule({'name': 'kind', 'description': 'Be kind', 'weight': 2})
    conscience.update_rule('kind', {'violations': ['sneer']})
    assert checksums.damaged_rows(db.connection(), 10) == []
    assert memories.get(memory.id).content == 'Alice likes tea'


def test_a_damaged_memory_is_refused_on_every_read_and_found(parts: Any) -> None:
    db, memories, _, _ = parts
    kept, _ = memories.store({'content': 'Alice likes green tea', 'layer': 'semantic'})
    other, _ = memories.store({'content': 'Bob drinks coffee', 'layer': 'episodic'})
    corrupt(db, 'memories', 'content', 'Alice likes green tee')
    memories.forget_many([other.id])
    with pytest.raises(RowDamagedError, match=f'memories/{kept.id} is damaged'):
        memories.get(kept.id)
    with pytest.raises(RowDamagedError):
        memories.search(layer='semantic')
    assert db.damaged == {f'memories/{kept.id}'}
    finding = IntegrityCheck(db, 0).run()
    assert not finding.sound
    assert finding.problems == []
    assert finding.damaged_rows == [f'memories/{kept.id}']


def test_text_that_is_no_longer_utf8_is_damage_not_a_crash(parts: Any) -> None:
    db, memories, _, _ = parts
    kept, _ = memories.store({'content': 'a note', 'layer': 'episodic'})
    raw = apsw.Connection(str(db.path))
    checksum = raw.execute('SELECT checksum FROM memories').get
    raw.create_scalar_function(checksums.FUNCTION, lambda *_: checksum)
    raw.execute("UPDATE memories SET content = CAST(x'61e16e6f7465' AS TEXT)")
    raw.close()
    with pytest.raises(RowDamagedError, match=r'memories/\? is damaged'):
        memories.get(kept.id)
    assert IntegrityCheck(db, 0).run().damaged_rows == [f'memories/{kept.id}']


def test_damaged_soul_rows_are_refused_and_not_decayed_into_new_checksums(
    parts: Any,
) -> None:
    db, _, soul, _ = parts
    soul.record('alice', 'joy', 0.5)
    corrupt(db, 'entities', 'interaction_count', 7)
    with pytest.raises(RowDamagedError, match='entities/alice'):
        soul.get('alice')
    with pytest.raises(RowDamagedError):
        soul.upsert('alice', {'trust': 0.9})
    soul.decay()
    assert checksums.damaged_rows(db.connection(), 10) == ['entities/alice']
    corrupt(db, 'emotions', 'intensity', 0.9)
    assert checksums.damaged_rows(db.connection(), 10)[1].startswith('emotions/')


def test_a_damaged_rule_is_not_judged_by(parts: Any) -> None:
    db, _, _, conscience = parts
    corrupt(db, 'rules', 'weight', 0.5)
    with pytest.raises(RowDamagedError, match='rules/'):
        conscience.rules()
    with pytest.raises(RowDamagedError):
        conscience.rule('truth')


def test_a_full_check_that_finds_nothing_clears_what_reads_saw(parts: Any) -> None:
    db, memories, _, _ = parts
    kept, _ = memories.store({'content': 'soon damaged', 'layer': 'episodic'})
    corrupt(db, 'memories', 'content', 'soon damagee')
    with pytest.raises(RowDamagedError):
        memories.get(kept.id)
    memories.forget_many([kept.id])
    check = IntegrityCheck(db, 0)
    assert check.run().sound
    assert db.damaged == set()
    assert check.state()['last']['status'] == 'ok'


def test_the_vault_check_finds_damaged_rows_in_a_snapshot(parts: Any) -> None:
    db, memories, _, _ = parts
    memories.store({'content': 'in the snapshot', 'layer': 'episodic'})
    db.connection().wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    assert archive.check_database(db.path) == 9
    corrupt(db, 'memories', 'content', 'in the snapshoT')
    with pytest.raises(SnapshotCorruptError, match='fail their checksums: memories/'):
        archive.check_database(db.path)


def test_a_snapshot_older_than_checksums_is_still_checked(tmp_path: Path) -> None:
    old = Database(tmp_path / 'old.db')
    old.migrate(bundled_migrations()[:8])
    old.close()
    assert archive.check_database(tmp_path / 'old.db') == 8


def test_the_full_check_runs_on_its_schedule(db: Database) -> None:
    db.migrate()
    check = IntegrityCheck(db, 0.05)
    check.start()
    try:
        deadline = time.monotonic() + 30
        while check.last is None:
            assert time.monotonic() < deadline, 'no scheduled check ran'
            time.sleep(0.02)
        assert check.last.sound
    finally:
        check.stop()
    assert check.state()['running'] is False
