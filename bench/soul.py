"""``scripts/bench soul``: listing entities, and recording emotions.

- Listing all 10,000 entities, a page of 100 at a time through the API app
  (Falcon, in this process), against the original way on the same database:
  one query for the names, then one per entity for its row and its emotions.
- Emotion records per second through the API app (each one a durable
  transaction with synchronous=FULL, as the daemon runs by default).
"""

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import falcon.testing

from jamey import storage
from jamey.api import create_app
from jamey.conscience import Conscience
from jamey.health import HealthChecks
from jamey.health import Thresholds
from jamey.memory import MemoryStore
from jamey.soul import Soul
from jamey.soul.model import Emotion

PAGE = 100


def fill(db: storage.Database, count: int) -> None:
    conn = db.connection()
    emotions = list(Emotion)
    with conn:
        conn.executemany(
            'INSERT INTO entities (name, trust, decay_rate, decayed_ms, created_at,'
            " last_interaction_ms, interaction_count) VALUES (?, 0.5, 0.001, 0, 'then',"
            ' ?, 2)',
            [(f'entity-{i:05d}', i) for i in range(count)],
        )
        conn.executemany(
            'INSERT INTO emotions (entity, emotion, intensity, recorded_ms, source)'
            " VALUES (?, ?, 0.5, 0, 'api')",
            [
                (f'entity-{i:05d}', emotions[(i + k) % len(emotions)].value)
                for i in range(count)
                for k in range(2)
            ],
        )


def list_through_api(client: falcon.testing.TestClient, count: int) -> int:
    seen = 0
    for offset in range(0, count, PAGE):
        page = client.simulate_get(
            '/soul/entities', params={'sort': 'name', 'limit': PAGE, 'offset': offset}
        ).json
        seen += len(page['entities'])
    return seen


def list_through_the_store(soul: Soul, count: int) -> int:
    return sum(
        len(soul.page('name', False, PAGE, offset)[0])
        for offset in range(0, count, PAGE)
    )


def list_the_original_way(db: storage.Database) -> int:
    """One query for the names, then one per entity for the row and one for
    its emotion counts, as Jamey 3.0's listing did."""
    conn = db.connection()
    seen = 0
    names = [row[0] for row in conn.execute('SELECT name FROM entities ORDER BY name')]
    for name in names:
        conn.execute('SELECT * FROM entities WHERE name = ?', (name,)).fetchall()
        conn.execute(
            'SELECT emotion, count(*) FROM emotions WHERE entity = ? GROUP BY emotion',
            (name,),
        ).fetchall()
        seen += 1
    return seen


def best_of(rounds: int, call: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--entities', type=int, default=10_000)
    parser.add_argument('--records', type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix='jamey-bench-soul-'))
    try:
        db = storage.Database(root / 'jamey.db', synchronous='full')
        db.migrate()
        fill(db, args.entities)
        soul = Soul(db)
        memories = MemoryStore(db, root / 'index', on_entity=soul.link)
        health = HealthChecks(db, root, Thresholds(min_free_mb=1, max_rss_mb=4096))
        app = create_app(health, Conscience(db), memories, soul, max_body_bytes=65536)
        client = falcon.testing.TestClient(app)
        assert list_through_api(client, args.entities) == args.entities
        assert list_the_original_way(db) == args.entities
        ours = best_of(5, lambda: list_through_api(client, args.entities))
        store = best_of(5, lambda: list_through_the_store(soul, args.entities))
        theirs = best_of(5, lambda: list_the_original_way(db))
        print(f'\nlisting {args.entities:,} entities (best of 5)')
        print(f'  jamey, pages of {PAGE} through the API  {ours * 1000:8.1f} ms')
        print(f'  jamey, the same pages from the store   {store * 1000:8.1f} ms')
        print(f'  one query per entity (original)      {theirs * 1000:8.1f} ms')
        print(f'  jamey API / original {ours / theirs:.3f}x (target <= 0.05x)')
        print(f'  jamey store / original {store / theirs:.3f}x')
        started = time.perf_counter()
        for i in range(args.records):
            reply = client.simulate_post(
                f'/soul/entities/entity-{i % 50:05d}/emotions',
                json={'emotion': 'joy', 'intensity': 0.7},
            )
            assert reply.status_code == 201, reply.text
        rate = args.records / (time.perf_counter() - started)
        print(
            f'\nemotion records through the API: {rate:,.0f} per second'
            ' (each a durable transaction, synchronous=FULL)'
        )
        db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
