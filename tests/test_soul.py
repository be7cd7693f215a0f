"""The soul store, in-process on real SQLite, wired to a real memory store."""

import logging
import threading
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from test_memory import Clock
from test_memory import make_store

from jamey import storage
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.errors import InputError
from jamey.errors import NotFoundError
from jamey.judgement import judge
from jamey.memory import MemoryStore
from jamey.soul import Soul
from jamey.soul import SoulSettings
from jamey.soul.model import Emotion

HOUR = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wired(db: storage.Database, clock: Clock) -> Iterator[tuple[Soul, MemoryStore]]:
    soul = Soul(db, clock=clock)
    memories = make_store(db, clock, on_entity=soul.link)
    soul.forget_memories = memories.forget_many
    memories.start()
    yield soul, memories
    memories.stop()


@pytest.fixture
def soul(wired: tuple[Soul, MemoryStore]) -> Soul:
    return wired[0]


def test_names_are_compared_in_nfc(soul: Soul) -> None:
    composed = 'Zoë'
    decomposed = unicodedata.normalize('NFD', composed)
    assert composed != decomposed
    soul.upsert(decomposed, {'trust': 0.6})
    assert soul.get(composed).name == composed
    _, created = soul.upsert(composed, {'trust': 0.7})
    assert not created
    assert soul.page()[1] == 1


@pytest.mark.parametrize(
    ('name', 'code'),
    [
        ('', 'empty'),
        ('x' * 129, 'too_long'),
        ('a\x00b', 'control_characters'),
        ('a\u2028b', 'control_characters'),
        ('a/b', 'invalid_name'),
        (' ana', 'invalid_name'),
        (42, 'wrong_type'),
        (None, 'wrong_type'),
    ],
)
def test_bad_names(soul: Soul, name: Any, code: str) -> None:
    with pytest.raises(InputError) as raised:
        soul.upsert(name, {'trust': 0.5})
    assert raised.value.code == code


@pytest.mark.parametrize(
    ('body', 'field', 'code'),
    [
        ({}, 'trust', 'required'),
        ({'trust': 1.5}, 'trust', 'out_of_range'),
        ({'trust': -0.1}, 'trust', 'out_of_range'),
        ({'trust': float('nan')}, 'trust', 'out_of_range'),
        ({'trust': '0.5'}, 'trust', 'wrong_type'),
        ({'trust': True}, 'trust', 'wrong_type'),
        ({'trust': 0.5, 'x': 1}, 'x', 'unknown_field'),
        ([], '', 'wrong_type'),
    ],
)
def test_bad_upserts(soul: Soul, body: Any, field: str, code: str) -> None:
    with pytest.raises(InputError) as raised:
        soul.upsert('ana', body)
    assert (raised.value.field, raised.value.code) == (field, code)


def test_emotions_move_trust_by_the_formulas(soul: Soul, clock: Clock) -> None:
    soul.upsert('ana', {'trust': 0.5})
    ana = soul.record('ana', 'happy')  # joy 0.8 -> empathy 1.5 / 1.7
    assert ana.intensities == {Emotion('joy'): 0.8}
    assert ana.trust == pytest.approx(0.5 + (1.5 / 1.7 - 0.7) * 0.5)
    assert ana.decay_rate == pytest.approx(0.0005)
    assert ana.interaction_count == 1
    clock.now += 10 * 24 * HOUR  # ten days later, read without any job
    later = soul.get('ana')
    assert later.trust == pytest.approx(ana.trust - 0.0005 * 240)
    # The latest intensity of an emotion replaces the earlier one.
    again = soul.record('ana', '😊', 0.2)
    assert again.intensities == {Emotion('joy'): 0.2}


def test_history_is_bounded_but_keeps_each_latest(
    db: storage.Database, clock: Clock
) -> None:
    soul = Soul(db, SoulSettings(max_emotions=5), clock=clock)
    soul.record('ana', 'love', 0.9)
    for _ in range(20):
        soul.record('ana', 'anger', 0.3)
    count = db.connection().execute('SELECT count(*) FROM emotions').get
    assert count == 6  # five newest, and the one love
    assert soul.get('ana').intensities == {
        Emotion('love'): 0.9,
        Emotion('anger'): 0.3,
    }


@pytest.mark.parametrize(
    ('emotion', 'intensity', 'field', 'code'),
    [
        ('glee', None, 'emotion', 'unknown_emotion'),
        (3, None, 'emotion', 'wrong_type'),
        ('joy', 2, 'intensity', 'out_of_range'),
        ('joy', 'high', 'intensity', 'wrong_type'),
    ],
)
def test_bad_emotions(
    soul: Soul, emotion: Any, intensity: Any, field: str, code: str
) -> None:
    with pytest.raises(InputError) as raised:
        soul.record('ana', emotion, intensity)
    assert (raised.value.field, raised.value.code) == (field, code)
    with pytest.raises(NotFoundError):
        soul.get('ana')  # nothing half-made


def test_memories_link_and_delete_forgets_them(
    wired: tuple[Soul, MemoryStore],
) -> None:
    soul, memories = wired
    kept, _ = memories.store(
        {'content': 'Ana keeps bees', 'layer': 'episodic', 'entity': 'Ana'}
    )
    other, _ = memories.store({'content': 'Bo keeps bees', 'layer': 'episodic'})
    assert soul.get('Ana').linked_memories == 1
    soul.record('Ana', 'joy')
    assert memories.wait_indexed(memories.latest_sequence(), 10)
    gone = soul.delete('Ana', forget_memories=True)
    assert gone == {'name': 'Ana', 'emotions': 1, 'links': 1, 'memories_forgotten': 1}
    assert memories.wait_indexed(memories.latest_sequence(), 10)
    assert [m.id for m, _ in memories.search('bees')] == [other.id]
    with pytest.raises(NotFoundError):
        memories.get(kept.id)
    with pytest.raises(NotFoundError):
        soul.get('Ana')
    conn = memories.db.connection()
    assert conn.execute('SELECT count(*) FROM emotions').get == 0
    assert conn.execute('SELECT count(*) FROM memory_links').get == 0


def test_delete_without_forgetting_keeps_memories(
    wired: tuple[Soul, MemoryStore],
) -> None:
    soul, memories = wired
    kept, _ = memories.store({'content': 'note', 'layer': 'semantic', 'entity': 'cy'})
    assert soul.delete('cy')['memories_forgotten'] == 0
    assert memories.get(kept.id).entity == 'cy'
    with pytest.raises(NotFoundError):
        soul.delete('cy')


def test_a_failed_link_stores_no_memory(db: storage.Database, clock: Clock) -> None:
    soul = Soul(db, SoulSettings(auto_create=False), clock=clock)
    memories = make_store(db, clock, on_entity=soul.link)
    with pytest.raises(InputError) as raised:
        memories.store({'content': 'x', 'layer': 'working', 'entity': 'nobody'})
    assert raised.value.code == 'unknown_entity'
    assert db.connection().execute('SELECT count(*) FROM memories').get == 0
    assert db.connection().execute('SELECT count(*) FROM memory_journal').get == 0


def test_low_trust_is_judged_more_strictly(db: storage.Database, clock: Clock) -> None:
    conscience = Conscience(db)
    conscience.create_rule(
        {'name': 'tidy', 'description': 'No mess', 'weight': 5, 'violations': ['mess']}
    )
    soul = Soul(db, clock=clock)
    soul.upsert('trusted', {'trust': 0.9})
    soul.upsert('doubted', {'trust': 0.2})
    action = 'I will make a mess'
    usual = judge(conscience, soul, AuditLog(db, 1000), 'test', action, 'trusted')
    strict = judge(conscience, soul, AuditLog(db, 1000), 'test', action, 'doubted')
    assert (usual['verdict'], usual['strictness']) == ('review', None)
    assert strict['verdict'] == 'deny'
    assert strict['strictness']['deny_weight'] == 4.0  # 8 x 0.5
    assert 'doubted is trusted 0.20, below 0.30' in strict['strictness']['reason']
    assert usual['score'] == strict['score'] == -5.0
    assert (usual['emotion']['name'], strict['emotion']['name']) == ('sadness', 'anger')
    # The emotion is recorded, and trust moved by it.
    assert soul.get('doubted').intensities == {Emotion('anger'): 5 / 23}
    assert strict['trust'] == pytest.approx(0.2 - 0.3 * 0.3)


def test_evaluations_create_entities_unless_told_not_to(
    db: storage.Database, clock: Clock
) -> None:
    conscience = Conscience(db)
    soul = Soul(db, clock=clock)
    result = judge(
        conscience, soul, AuditLog(db, 1000), 'test', 'I will protect them', 'new one'
    )
    assert result['emotion']['name'] in ('joy', 'love')
    assert soul.get('new one').interaction_count == 1
    soul.settings = SoulSettings(auto_create=False)
    with pytest.raises(InputError) as raised:
        judge(conscience, soul, AuditLog(db, 1000), 'test', 'hello', 'stranger')
    assert raised.value.code == 'unknown_entity'


def test_decay_job_writes_back_and_prunes(
    db: storage.Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    soul = Soul(db, SoulSettings(prune=True, prune_threshold=0.1), clock=clock)
    soul.upsert('fading', {'trust': 0.15})
    soul.upsert('steady', {'trust': 0.9})
    clock.now += 100 * HOUR  # 0.001 x 100 = 0.1 lost
    with caplog.at_level(logging.INFO, logger='jamey.soul'):
        result = soul.decay()
    assert result == {'decayed': 2, 'pruned': ['fading']}
    assert any(getattr(r, 'entity', None) == 'fading' for r in caplog.records)
    stored = db.connection().execute('SELECT trust FROM entities').get
    assert stored == pytest.approx(0.8)
    assert soul.get('steady').trust == pytest.approx(0.8)  # no double decay


def test_pages_sort_by_trust_and_interaction(soul: Soul, clock: Clock) -> None:
    for i, name in enumerate(['a', 'b', 'c', 'd']):
        soul.upsert(name, {'trust': 0.2 * (i + 1)})
    clock.now += 1
    soul.record('b', 'neutral')
    entities, total = soul.page('trust', descending=True, limit=2)
    assert (total, [e.name for e in entities]) == (4, ['d', 'c'])
    entities, _ = soul.page('trust', descending=True, limit=2, offset=2)
    assert [e.name for e in entities] == ['b', 'a']
    entities, _ = soul.page('last_interaction', limit=1)
    assert [e.name for e in entities] == ['b']
    for bad, field in (({'sort': 'age'}, 'sort'), ({'limit': 0}, 'limit')):
        with pytest.raises(InputError) as raised:
            soul.page(**bad)
        assert raised.value.field == field


def test_concurrent_records_lose_no_update(db: storage.Database, clock: Clock) -> None:
    soul = Soul(db, clock=clock)
    soul.upsert('busy', {'trust': 0.5})
    threads, each = 8, 25

    def work() -> None:
        for _ in range(each):
            soul.record('busy', 'neutral', source='manual')

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert soul.get('busy').interaction_count == threads * each


def test_listing_takes_the_same_queries_for_any_page(
    db: storage.Database, clock: Clock
) -> None:
    soul = Soul(db, clock=clock)
    conn = db.connection()
    with conn:
        conn.executemany(
            'INSERT INTO entities (name, trust, decay_rate, decayed_ms, created_at)'
            " VALUES (?, 0.5, 0.001, 0, 'then')",
            [(f'e{i}',) for i in range(10_000)],
        )
    soul.record('e1', 'joy')
    statements: list[str] = []

    def trace(_cursor: Any, sql: str, _bindings: Any) -> bool:
        statements.append(sql)
        return True

    counts = []
    for limit in (1, 100):
        statements.clear()
        conn.exec_trace = trace
        entities, total = soul.page('name', descending=False, limit=limit)
        conn.exec_trace = None
        assert (len(entities), total) == (limit, 10_000)
        counts.append(len(statements))
    assert counts[0] == counts[1]
    assert soul.page('name', descending=False, limit=2)[0][1].intensities
