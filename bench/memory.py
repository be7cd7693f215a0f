"""``scripts/bench memory``: the memory store against SQLite FTS5 and tantivy-py.

Documents are Debian's fortunes, one per document, repeated with a suffix
to reach the scale asked for; queries are 1,000 words and two-word phrases
drawn from the corpus, every word required (jamey's ``match=all``, as
FTS5's AND; ``scripts/bench recall`` measures questions). Every peer runs
in this process on the same documents and queries, with the same
transaction batching and ``synchronous=FULL``:
- jamey: MemoryStore (SQLite rows + journal, the Rust tantivy index);
- fts5: an FTS5 table through apsw, ranked by bm25;
- tantivy-py: the tantivy package from PyPI with an equivalent schema;
and, for the ingest, jamey's two halves alone: its rows and journal in
SQLite (nothing indexed), and its Rust index fed directly; for single
stores, jamey without its row checksums (the triggers dropped), which says
what they cost a store.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import tantivy
from conscience import fortunes
from startup import peak_rss_mb
from startup import reset_peak_rss
from startup import rss_mb

from jamey import storage
from jamey._core import MemoryIndex
from jamey.ids import new_ids
from jamey.memory import LAYERS
from jamey.memory import MemoryStore

BATCH = 1000
MB = 1024 * 1024


def corpus(size: int) -> list[str]:
    # Old fortunes use backspaces for underlining: text, not control codes.
    base = [re.sub(r'[\x00-\x08\x0b-\x1f\x7f-\x9f]', ' ', f) for f in fortunes()]
    return [
        base[i % len(base)] + ('' if i < len(base) else f' v{i // len(base)}')
        for i in range(size)
    ]


def queries(documents: list[str], count: int, rng: random.Random) -> list[str]:
    words = re.findall(r'[a-z]{4,}', ' '.join(documents[:5000]).lower())
    picked = []
    for _ in range(count):
        i = rng.randrange(len(words) - 1)
        picked.append(words[i] if rng.random() < 0.5 else f'{words[i]} {words[i + 1]}')
    return picked


def layer_of(i: int) -> str:
    return LAYERS[i % len(LAYERS)]


def bodies(documents: list[str], start: int) -> list[dict[str, str]]:
    """The store bodies of the batch of ``documents`` from ``start``."""
    return [
        {'content': d, 'layer': layer_of(start + i)}
        for i, d in enumerate(documents[start : start + BATCH])
    ]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1e3
    return f'p50 {p50:7.3f} ms  p99 {p99:7.3f} ms'


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * (len(samples) - 1))]


class Jamey:
    name = 'jamey'

    def __init__(
        self, root: Path, commit_interval_s: float = 1.0, checksums: bool = True
    ) -> None:
        name = f'{commit_interval_s}{"" if checksums else "-unchecked"}'
        self.db = storage.Database(root / f'jamey-{name}.db')
        self.db.checkpoint_in_background()  # as jameyd runs it
        self.db.migrate()
        if not checksums:
            # The peer that measures what the row checksums cost a store.
            self.db.connection().execute(
                'DROP TRIGGER memories_checksum_on_insert;'
                ' DROP TRIGGER memories_checksum_on_update'
            )
        self.store = MemoryStore(
            self.db,
            root / f'index-{name}',
            commit_interval_s=commit_interval_s,
        )
        self.store.start()

    def bulk(self, documents: list[str]) -> None:
        sequence = 0
        for start in range(0, len(documents), BATCH):
            _, sequence = self.store.store_many(bodies(documents, start))
        self.store.wait_indexed(sequence, 600)

    def single(self, documents: list[str]) -> None:
        for i, d in enumerate(documents):
            self.store.store({'content': d, 'layer': layer_of(i)})

    def search(self, query: str, layer: str | None) -> int:
        return len(self.store.search(query, layer=layer, limit=10, match='all'))

    def close(self) -> None:
        self.store.stop()
        self.db.close()


class JameyIndex:
    """The index alone (ids and scores), like for like with tantivy-py."""

    name = 'jamey index'

    def __init__(self, jamey: Jamey) -> None:
        self.jamey = jamey

    def search(self, query: str, layer: str | None) -> int:
        index = self.jamey.store.index
        assert index is not None
        return len(index.search(query, all_words=True, layer=layer, limit=10))


class JameyRows:
    """Half of jamey's ingest: the rows and their journal, nothing indexed."""

    name = 'jamey rows'

    def __init__(self, root: Path) -> None:
        self.db = storage.Database(root / 'rows.db')
        self.db.migrate()
        self.store = MemoryStore(self.db, root / 'rows-index')  # never started

    def bulk(self, documents: list[str]) -> None:
        for start in range(0, len(documents), BATCH):
            self.store.store_many(bodies(documents, start))

    def close(self) -> None:
        self.db.close()


class JameyIndexAlone:
    """The other half: the Rust index fed directly, one commit at the end
    (as tantivy-py is)."""

    name = 'jamey index'

    def __init__(self, root: Path) -> None:
        self.index = MemoryIndex(root / 'index-alone', 15 * MB)

    def bulk(self, documents: list[str]) -> None:
        for start in range(0, len(documents), BATCH):
            batch = documents[start : start + BATCH]
            ids = new_ids(len(batch), start)
            self.index.add(
                [
                    (memory_id, layer_of(start + i), None, start + i, d)
                    for i, (memory_id, d) in enumerate(zip(ids, batch, strict=True))
                ]
            )
        self.index.commit(1)

    def close(self) -> None:
        del self.index


class Fts5:
    name = 'fts5'

    def __init__(self, root: Path) -> None:
        root.mkdir(exist_ok=True)
        self.conn = apsw.Connection(str(root / 'fts.db'))
        self.conn.execute('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL')
        self.conn.execute(
            'CREATE VIRTUAL TABLE docs USING fts5(content,'
            " layer UNINDEXED, tokenize = 'porter unicode61')"
        )

    def _insert(self, rows: list[tuple[str, str]]) -> None:
        with self.conn:
            self.conn.executemany(
                'INSERT INTO docs (content, layer) VALUES (?, ?)', rows
            )

    def bulk(self, documents: list[str]) -> None:
        for start in range(0, len(documents), BATCH):
            self._insert(
                [
                    (d, layer_of(start + i))
                    for i, d in enumerate(documents[start : start + BATCH])
                ]
            )

    def single(self, documents: list[str]) -> None:
        for i, d in enumerate(documents):
            self._insert([(d, layer_of(i))])

    def search(self, query: str, layer: str | None) -> int:
        match = ' AND '.join(f'"{w}"' for w in query.split())
        sql = 'SELECT rowid FROM docs WHERE docs MATCH ?'
        params: tuple[str, ...] = (match,)
        if layer is not None:
            sql += ' AND layer = ?'
            params = (match, layer)
        return len(
            self.conn.execute(sql + ' ORDER BY bm25(docs) LIMIT 10', params).fetchall()
        )

    def close(self) -> None:
        self.conn.close()


class TantivyPy:
    name = 'tantivy-py'

    def __init__(self, root: Path) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field('id', stored=True, tokenizer_name='raw')
        builder.add_text_field('layer', tokenizer_name='raw')
        builder.add_text_field('content', tokenizer_name='en_stem')
        self.schema = builder.build()
        (root / 'tantivy').mkdir()
        self.index = tantivy.Index(self.schema, path=str(root / 'tantivy'))
        self.writer = self.index.writer(15 * MB, 1)
        self.count = 0

    def bulk(self, documents: list[str]) -> None:
        for i, d in enumerate(documents):
            self.writer.add_document(
                tantivy.Document(id=str(self.count + i), layer=layer_of(i), content=d)
            )
        self.count += len(documents)
        self.writer.commit()
        self.index.reload()

    def search(self, query: str, layer: str | None) -> int:
        # Lenient, as jamey parses: stop words alone are not an error.
        parsed, _ = self.index.parse_query_lenient(query, ['content'])
        if layer is not None:
            term = tantivy.Query.term_query(self.schema, 'layer', layer)
            parsed = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, parsed), (tantivy.Occur.Must, term)]
            )
        searcher = self.index.searcher()
        hits = searcher.search(parsed, 10).hits
        return len([searcher.doc(address)['id'] for _, address in hits])

    def close(self) -> None:
        self.writer = None


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bench_ingest(peers: list, documents: list[str]) -> None:
    print(f'\nbulk ingest of {len(documents):,} documents, batches of {BATCH}, durable')
    print('  (RSS added: once the ingest is over, and at its peak during it)')
    rates = {}
    for peer in peers:
        before = rss_mb(os.getpid())
        reset_peak_rss(os.getpid())
        seconds = timed(lambda peer=peer: peer.bulk(documents))
        rates[peer.name] = len(documents) / seconds
        added = rss_mb(os.getpid()) - before
        peak = peak_rss_mb(os.getpid()) - before
        print(
            f'  {peer.name:11} {rates[peer.name]:10,.0f} docs/s'
            f'   RSS {added:+.1f} MB, peak {peak:+.1f} MB'
        )
    print(f'  jamey / fts5 {rates["jamey"] / rates["fts5"]:.2f}x (target >= 1.0x)')
    print('  target: the writer adds <= 32 MB while ingesting 1 M documents')
    for name in ('jamey rows', 'jamey index', 'tantivy-py'):
        print(f'  {name} / fts5 {rates[name] / rates["fts5"]:.2f}x')


def bench_single(root: Path, documents: list[str], warm_up: int) -> None:
    """Durable stores one at a time: acknowledged (committed to SQLite) per
    second, with the index committing in groups at 250 ms. Each peer first
    stores ``warm_up`` documents untimed: the first commits of a new
    database also grow its files, which a running daemon did long ago."""
    print(
        f'\nsingle durable stores, {len(documents)} documents, one commit each'
        f' (after {warm_up} untimed)'
    )
    jamey = Jamey(root, commit_interval_s=0.25)
    unchecked = Jamey(root, commit_interval_s=0.25, checksums=False)
    fts5 = Fts5(root / 'single')
    for peer in (jamey, unchecked, fts5):
        peer.single(documents[:warm_up])
    ours = len(documents) / timed(lambda: jamey.single(documents))
    started = time.perf_counter()
    jamey.store.wait_indexed(jamey.store.latest_sequence(), 60)
    searchable_ms = (time.perf_counter() - started) * 1000
    theirs = len(documents) / timed(lambda: fts5.single(documents))
    # With and without the checksum triggers, in alternating rounds: the
    # machine's speed drifts more than the difference.
    rounds = [documents[i::4] for i in range(4)]
    seconds = {'checked': 0.0, 'unchecked': 0.0}
    for part in rounds:
        seconds['checked'] += timed(lambda part=part: jamey.single(part))
        seconds['unchecked'] += timed(lambda part=part: unchecked.single(part))
    for peer in (jamey, unchecked, fts5):
        peer.close()
    print(
        f'  jamey       {ours:10,.0f} docs/s  (all searchable {searchable_ms:.0f} ms'
        ' after the last acknowledgement)'
    )
    print(f'  fts5        {theirs:10,.0f} docs/s')
    print(f'  jamey / fts5 {ours / theirs:.2f}x (target >= 1.0x)')
    cost = seconds['checked'] / seconds['unchecked'] - 1
    print(
        f'  row checksums: {len(documents) / seconds["checked"]:,.0f} against'
        f' {len(documents) / seconds["unchecked"]:,.0f} docs/s without them,'
        f' {cost * 100:+.1f} % a store (target <= 5 %)'
    )


def bench_search(peers: list, wanted: list[str], scale: int) -> None:
    print(f'\ntop-10 search at {scale:,} documents, {len(wanted)} queries')
    for layer in (None, 'episodic'):
        results: dict[str, list[float]] = {}
        for peer in peers:
            for query in wanted:  # untimed: the page cache, a merge ending
                peer.search(query, layer)
            samples = []
            for query in wanted:
                started = time.perf_counter()
                peer.search(query, layer)
                samples.append(time.perf_counter() - started)
            results[peer.name] = samples
            print(
                f'  {peer.name:11} {"layer filter" if layer else "no filter   "}'
                f'  {percentiles(samples)}'
            )
        for ours in ('jamey', 'jamey index'):
            mine = p99(results[ours])
            print(
                f'  {ours} p99 / fts5 p99 {mine / p99(results["fts5"]):.3f}x'
                f' (<= 0.1x), / tantivy-py p99'
                f' {mine / p99(results["tantivy-py"]):.2f}x (<= 1.2x)'
            )


def bench_lag(root: Path, documents: list[str], rate: int, seconds: float) -> None:
    """Time from a store's acknowledgement to its being searchable."""
    db = storage.Database(root / 'lag.db')
    db.checkpoint_in_background()
    db.migrate()
    store = MemoryStore(db, root / 'lag-index')
    store.start()
    acked: dict[int, float] = {}
    lags: list[float] = []
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while not done.is_set() or seen < max(acked, default=0):
            committed = store.committed
            now = time.perf_counter()
            for sequence in range(seen + 1, committed + 1):
                if sequence in acked:
                    lags.append(now - acked[sequence])
            seen = max(seen, committed)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i * interval
        time.sleep(max(0.0, due - time.perf_counter()))
        _, sequence = store.store(
            {'content': documents[i % len(documents)], 'layer': layer_of(i)}
        )
        acked[sequence] = time.perf_counter()
    done.set()
    watcher.join()
    store.stop()
    db.close()
    print(
        f'\nvisibility lag at {rate} stores/s for {seconds:g} s (commit interval'
        f' {store.commit_interval_s * 1000:.0f} ms): {percentiles(lags)}'
        f'   (target p99 <= commit interval + 100 ms)'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--scale', type=int, default=100_000)
    parser.add_argument('--queries', type=int, default=1000)
    parser.add_argument('--singles', type=int, default=2000)
    parser.add_argument('--lag-seconds', type=float, default=10.0)
    args = parser.parse_args()
    rng = random.Random(5)
    documents = corpus(args.scale)
    wanted = queries(documents, args.queries, rng)
    root = Path(tempfile.mkdtemp(prefix='jamey-bench-memory-'))
    try:
        jamey = Jamey(root)
        peers = [jamey, Fts5(root), TantivyPy(root)]
        halves = [JameyRows(root), JameyIndexAlone(root)]
        bench_ingest([*peers, *halves], documents)
        for half in halves:
            half.close()
        bench_search([*peers, JameyIndex(jamey)], wanted, args.scale)
        for peer in peers:
            peer.close()
        bench_single(root, documents[: args.singles], args.singles // 4)
        bench_lag(root, documents, 500, args.lag_seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == '__main__':
    main()
