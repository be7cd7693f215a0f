"""The memory store and its index, in-process, on real SQLite and tantivy."""

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from jamey import storage
from jamey.errors import InputError
from jamey.errors import NotFoundError
from jamey.ids import new_ids
from jamey.memory import MemoryStore
from jamey.memory import Retention

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_store(db: storage.Database, clock: Clock, **kw: Any) -> MemoryStore:
    return MemoryStore(
        db, db.path.parent / 'index', commit_interval_s=0.02, clock=clock, **kw
    )


@pytest.fixture
def store(db: storage.Database, clock: Clock) -> Iterator[MemoryStore]:
    memories = make_store(db, clock)
    memories.start()
    yield memories
    memories.stop()


def keep(
    store: MemoryStore, content: str, layer: str = 'episodic', **extra: Any
) -> str:
    memory, sequence = store.store({'content': content, 'layer': layer, **extra})
    assert store.wait_indexed(sequence, 10)
    return memory.id


def found(store: MemoryStore, query: str | None, **filters: Any) -> list[str]:
    return [m.content for m, _ in store.search(query, **filters)]


def test_store_search_get_delete(store: MemoryStore) -> None:
    first = keep(
        store,
        'Ana planted tomatoes in the garden',
        entity='ana',
        metadata={'mood': 'sunny'},
    )
    keep(store, 'Bo painted the fence', layer='semantic')
    assert found(store, 'tomato') == ['Ana planted tomatoes in the garden']
    memory = store.get(first)
    assert memory.metadata == {'mood': 'sunny'}
    assert memory.created_at == '2027-01-15T08:00:00.000Z'
    sequence = store.delete(first)
    assert store.wait_indexed(sequence, 10)
    assert found(store, 'tomato') == []
    with pytest.raises(NotFoundError):
        store.get(first)
    with pytest.raises(NotFoundError):
        store.delete(first)


def test_filters_are_exact(store: MemoryStore, clock: Clock) -> None:
    keep(store, 'tea with ana', layer='episodic', entity='ana')
    clock.now += 3600
    keep(store, 'tea with bo', layer='episodic', entity='bo')
    clock.now += 3600
    keep(store, 'tea facts', layer='semantic')
    assert found(store, 'tea', entity='ana') == ['tea with ana']
    assert sorted(found(store, 'tea', layer='episodic')) == [
        'tea with ana',
        'tea with bo',
    ]
    assert found(
        store, 'tea', since='2027-01-15T08:30:00Z', until='2027-01-15T09:30:00+00:00'
    ) == ['tea with bo']
    assert found(store, 'tea', until='2027-01-15T08:00:00Z') == ['tea with ana']
    # Without words: newest first, with the same filters.
    assert found(store, None) == ['tea facts', 'tea with bo', 'tea with ana']
    assert found(store, '', layer='episodic', limit=1) == ['tea with bo']


@pytest.mark.parametrize(
    'query',
    [
        '"unbalanced',
        'content:',
        'layer:episodic',
        'AND OR NOT',
        '((',
        '-',
        '*',
        '\U0001f600',
        'hello^',
        '[a TO',
        'x' * 10_000,
        'tea AND',
        '+tea -',
    ],
)
def test_garbage_queries_never_fail(store: MemoryStore, query: str) -> None:
    keep(store, 'tea time')
    store.search(query)


@pytest.mark.parametrize(
    ('body', 'field', 'code'),
    [
        ({'layer': 'episodic'}, 'content', 'required'),
        ({'content': 'x'}, 'layer', 'required'),
        ({'content': 'x', 'layer': 'dreams'}, 'layer', 'unknown_layer'),
        ({'content': '', 'layer': 'working'}, 'content', 'empty'),
        ({'content': 'x' * 10_001, 'layer': 'working'}, 'content', 'too_long'),
        ({'content': 'nul\x00', 'layer': 'working'}, 'content', 'control_characters'),
        ({'content': 5, 'layer': 'working'}, 'content', 'wrong_type'),
        (
            {'content': 'x', 'layer': 'working', 'entity': 'e' * 129},
            'entity',
            'too_long',
        ),
        (
            {'content': 'x', 'layer': 'working', 'metadata': []},
            'metadata',
            'wrong_type',
        ),
        (
            {'content': 'x', 'layer': 'working', 'metadata': {'k': 'v' * 5000}},
            'metadata',
            'too_long',
        ),
        ({'content': 'x', 'layer': 'working', 'tags': []}, 'tags', 'unknown_field'),
        ('text', '', 'wrong_type'),
    ],
)
def test_invalid_memories(store: MemoryStore, body: Any, field: str, code: str) -> None:
    with pytest.raises(InputError) as caught:
        store.store(body)
    assert (caught.value.field, caught.value.code) == (field, code)
    assert store.stats()['total'] == 0


@pytest.mark.parametrize(
    ('kwargs', 'field', 'code'),
    [
        ({'layer': 'dreams'}, 'layer', 'unknown_layer'),
        ({'limit': 0}, 'limit', 'out_of_range'),
        ({'limit': 101}, 'limit', 'out_of_range'),
        ({'since': 'yesterday'}, 'since', 'invalid_time'),
        ({'until': '2027-01-15T08:00:00'}, 'until', 'invalid_time'),
    ],
)
def test_invalid_searches(
    store: MemoryStore, kwargs: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(InputError) as caught:
        store.search('tea', **kwargs)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_invalid_ids(store: MemoryStore) -> None:
    for bad in ('nope', '', '../../etc', '1234'):
        with pytest.raises(InputError) as caught:
            store.get(bad)
        assert caught.value.code == 'invalid_id'


def test_retention_by_age_and_count(db: storage.Database, clock: Clock) -> None:
    # The worker's own schedule is far away: this test applies retention.
    store = make_store(
        db,
        clock,
        retention_interval_s=10**9,
        retention=Retention({'short_term': 24 * 3600, 'working': 3600}, max_items=2),
    )
    store.start()
    try:
        keep(store, 'old chat', layer='short_term')
        keep(store, 'old scratch', layer='working')
        for n in range(3):
            keep(store, f'fact {n}', layer='semantic')
            clock.now += 1
        clock.now += 2 * 3600  # scratch expires, chat not yet
        assert store.apply_retention() == 2  # scratch, and the oldest fact
        clock.now += 24 * 3600
        assert store.apply_retention() == 1  # chat
        assert store.wait_indexed(store.latest_sequence(), 10)
        assert sorted(found(store, None)) == ['fact 1', 'fact 2']
        assert found(store, 'scratch OR chat') == []
        assert store.index_documents() == 2
    finally:
        store.stop()


def test_the_worker_applies_retention_on_its_schedule(
    db: storage.Database, clock: Clock
) -> None:
    store = make_store(
        db,
        clock,
        retention_interval_s=60,
        retention=Retention({'working': 3600}, max_items=0),
    )
    store.start()
    try:
        keep(store, 'scratch', layer='working')
        clock.now += 2 * 3600
        store.store({'content': 'wake the worker', 'layer': 'semantic'})
        deadline = time.monotonic() + 10
        while found(store, None, layer='working') and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found(store, None, layer='working') == []
        assert store.wait_indexed(store.latest_sequence(), 10)
        assert found(store, 'scratch') == []
    finally:
        store.stop()


def test_store_many_in_one_transaction(store: MemoryStore) -> None:
    memories, sequence = store.store_many(
        [{'content': f'note {i}', 'layer': 'long_term'} for i in range(500)]
    )
    assert len({m.id for m in memories}) == 500
    assert store.wait_indexed(sequence, 10)
    assert store.index_documents() == 500
    with pytest.raises(InputError):
        store.store_many(
            [
                {'content': 'fine', 'layer': 'working'},
                {'content': 'bad', 'layer': 'nope'},
            ]
        )
    assert store.stats()['total'] == 500, 'nothing of a refused batch is kept'


def test_the_journal_survives_a_stop_before_commit(
    db: storage.Database, clock: Clock
) -> None:
    store = make_store(db, clock)
    store.start()
    store.stop()
    # Stored while no indexer runs (as if the daemon died before indexing).
    store.store({'content': 'written but never indexed', 'layer': 'episodic'})
    again = make_store(db, clock)
    again.start()
    try:
        assert found(again, 'indexed') == ['written but never indexed']
        assert again.rebuilt_at is None, 'a replay, not a rebuild'
    finally:
        again.stop()


def fill_and_stop(db: storage.Database, clock: Clock) -> None:
    """Twenty memories, indexed, and the store stopped as a daemon would."""
    store = make_store(db, clock)
    store.start()
    for n in range(20):
        keep(store, f'garden note {n}')
    store.stop()


def test_a_deleted_index_is_rebuilt(db: storage.Database, clock: Clock) -> None:
    fill_and_stop(db, clock)
    shutil.rmtree(db.path.parent / 'index')
    again = make_store(db, clock)
    again.start()
    try:
        assert len(again.search('garden', limit=100)) == 20
        assert again.rebuilt_at is not None
    finally:
        again.stop()


def test_temporaries_left_by_a_killed_commit_are_removed(
    db: storage.Database, clock: Clock
) -> None:
    """What tantivy leaves when a commit is killed before its renames: files
    named .tmp and six characters beside the index's own."""
    fill_and_stop(db, clock)
    index_dir = db.path.parent / 'index'
    left = [index_dir / '.tmpAb3dE9', index_dir / '.tmpQ1w2e3']
    for path in left:
        path.write_bytes(os.urandom(4096))
    kept = sorted(p.name for p in index_dir.iterdir() if not p.name.startswith('.tmp'))
    again = make_store(db, clock)
    again.start()
    try:
        assert not any(path.exists() for path in left)
        assert len(again.search('garden', limit=100)) == 20
        assert again.rebuilt_at is None  # the index itself was sound
        assert set(kept) <= {p.name for p in index_dir.iterdir()}
    finally:
        again.stop()


def test_a_truncated_segment_is_rebuilt(db: storage.Database, clock: Clock) -> None:
    fill_and_stop(db, clock)
    segment = max(
        (db.path.parent / 'index').glob('*.idx'), key=lambda p: p.stat().st_size
    )
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    again = make_store(db, clock)
    again.start()
    try:
        assert len(again.search('garden', limit=100)) == 20
        assert again.rebuild_reason is not None
        assert again.stats()['index_documents'] == 20
    finally:
        again.stop()


def test_a_rebuild_at_start_reports_each_batch(
    db: storage.Database, clock: Clock
) -> None:
    """So a daemon can keep telling systemd it is at work."""
    first = make_store(db, clock)
    first.store_many(
        [{'content': f'note {n}', 'layer': 'semantic'} for n in range(2500)]
    )  # journaled, never indexed: the store was not started
    again = make_store(db, clock)
    replayed: list[int] = []
    again.start(progress=replayed.append)
    again.stop()
    assert replayed == [1000, 2000, 2500]
    shutil.rmtree(db.path.parent / 'index')
    rebuilt: list[int] = []
    again = make_store(db, clock)
    again.start(progress=rebuilt.append)
    try:
        assert rebuilt == [1000, 2000, 2500]
        assert len(again.search('note', limit=100)) == 100
        assert again.stats()['index_documents'] == 2500
    finally:
        again.stop()


@pytest.mark.parametrize(
    ('field', 'option', 'earlier'),
    [
        # The layer without frequencies, as before filters were pruned.
        ('layer', 'record', 'basic'),
        # Text split by tantivy's en_stem, without irregular forms.
        ('content', 'tokenizer', 'en_stem'),
    ],
)
def test_an_index_of_an_earlier_layout_is_rebuilt(
    db: storage.Database, clock: Clock, field: str, option: str, earlier: str
) -> None:
    """An index written by a version whose fields differed is not opened
    but rebuilt, with the reason in the stats."""
    fill_and_stop(db, clock)
    meta = db.path.parent / 'index' / 'meta.json'
    document = json.loads(meta.read_text())
    changed = next(f for f in document['schema'] if f['name'] == field)
    changed['options']['indexing'][option] = earlier
    meta.write_text(json.dumps(document))
    again = make_store(db, clock)
    again.start()
    try:
        assert len(again.search('garden', layer='episodic', limit=100)) == 20
        assert again.rebuild_reason is not None
    finally:
        again.stop()


@pytest.mark.parametrize(
    ('stored', 'asked'),
    [
        ('Caroline drew a sunset last week', 'What did Caroline draw?'),
        ('Mel has drawn horses since she was six', 'who draws horses'),
        ('We went to the beach in May', 'when do they go to the beach'),
        ('The children swam in the lake', 'did the child swim'),
        ('Someone stole my bike on 7 May 2023', 'bike stolen 2023'),
        ('Flight 714 leaves at 10:30', '714'),
    ],
)
def test_forms_of_a_word_and_numbers_find_each_other(
    store: MemoryStore, stored: str, asked: str
) -> None:
    keep(store, stored)
    keep(store, 'Nothing to do with it at all')
    assert found(store, asked) == [stored]


def test_new_ids_are_time_ordered_version_7_uuids() -> None:
    earlier = new_ids(10, 1_764_000_000_000)
    ids = new_ids(2000, 1_764_000_000_001)
    assert len(set(ids)) == 2000
    assert max(earlier) < min(ids)
    for memory_id in ids:
        parsed = uuid.UUID(memory_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == memory_id
        assert parsed.int >> 80 == 1_764_000_000_001


def test_an_index_that_holds_other_than_the_journal_says_is_reported(
    store: MemoryStore, db: storage.Database
) -> None:
    keep(store, 'one')
    kept = keep(store, 'two')
    assert store.disagreement() is None
    # A row gone behind the journal's back: the index still holds it.
    with db.transaction() as conn:
        conn.execute('DELETE FROM memories WHERE id = ?', (kept,))
    assert store.disagreement() == (
        'the index holds 2 memories where the database has 1'
    )
    store.reindex()
    assert store.disagreement() is None
