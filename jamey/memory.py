"""Five-layer memory: SQLite holds the memories, one tantivy index finds them.

Every insert and delete writes a journal row in the same transaction. A
background indexer applies the journal in batches, commits the index at most
every ``commit_interval``, and records the last journal sequence in the
commit; at start it replays what is newer, and rebuilds the index from SQLite
when it is missing, unreadable or disagrees with the database. So a crash at
any moment loses nothing that was acknowledged.
"""

import errno
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import NamedTuple

from jamey import checksums
from jamey import heap
from jamey import validation
from jamey._core import MemoryIndex
from jamey.clock import iso_utc
from jamey.errors import InputError
from jamey.errors import MemoryIndexError
from jamey.errors import NotFoundError
from jamey.ids import new_ids
from jamey.storage import Database

# The index's directory in the state directory: derived, rebuilt when absent.
INDEX_DIR = 'index'
LAYERS = ('short_term', 'long_term', 'working', 'episodic', 'semantic')
MAX_CONTENT_CHARS = 10_000
MAX_ENTITY_CHARS = validation.MAX_ENTITY_CHARS
MAX_METADATA_BYTES = 4096
MAX_LIMIT = 100
# How a query's words match: any of them, ranked, or all of them.
MATCH_ANY = 'any'
MATCH_ALL = 'all'
MATCHES = (MATCH_ANY, MATCH_ALL)
# The most neighbours a search may bring on each side of a hit.
MAX_CONTEXT = 5
# Memories of one layer and entity with the same value of this metadata key
# (or none) belong together, in the order they were stored: a chat session.
GROUP_KEY = 'session'
BATCH = 1000
BULK = 100  # changes in one transaction that wake the indexer at once
FIELDS = ('content', 'layer', 'entity', 'metadata')
log = logging.getLogger('jamey.memory')

_COLUMNS = 'id, layer, content, entity, created_ms, created_at, metadata'
_READ = f'SELECT {_COLUMNS}, {checksums.damaged_key("memories")} FROM memories'  # noqa: S608


class Memory(NamedTuple):
    id: str
    layer: str
    content: str
    entity: str | None
    created_ms: int
    created_at: str
    metadata: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'layer': self.layer,
            'content': self.content,
            'entity': self.entity,
            'created_at': self.created_at,
            'metadata': self.metadata,
        }


class Retention(NamedTuple):
    """Per layer: age in seconds at which memories expire (0: never), and
    the most memories a layer keeps (0: no limit)."""

    ttl_s: dict[str, int]
    max_items: int


class Found(NamedTuple):
    """A memory a search answers: a hit with its score, or the context of
    one (``context_of`` names the hit; no score)."""

    memory: Memory
    score: float | None
    context_of: str | None


def search_results(found: list[Found]) -> dict[str, Any]:
    """The document a search answers, whichever way it was asked."""
    return {
        'memories': [
            {**f.memory.as_dict(), 'score': f.score, 'context_of': f.context_of}
            for f in found
        ]
    }


def _null(constant: str) -> None:
    return None


# A database may hold metadata with Infinity or NaN, written before the edge
# refused numbers beyond range (1e400): it reads as null, since no answer may
# carry it.
_STORED = json.JSONDecoder(parse_constant=_null)


def _metadata(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(_STORED.decode(text))


def _memory(row: tuple[Any, ...]) -> Memory:
    id_, layer, content, entity, created_ms, created_at, metadata = row
    return Memory(
        id_, layer, content, entity, created_ms, created_at, _metadata(metadata)
    )


# How tantivy's errors name the operating system's: both of Rust's forms.
_OS_ERROR = re.compile(r'(?:os error |Os \{ code: )(\d+)')


def _os_reason(error: MemoryIndexError, directory: Path) -> str:
    """What went wrong in an index error, without the paths it names: the
    operating system's reason where it gave one, else a full disk if
    ``directory``'s file system has no space left."""
    found = _OS_ERROR.search(str(error))
    if found:
        return os.strerror(int(found.group(1)))
    try:
        full = os.statvfs(directory).f_bavail == 0
    except OSError:
        full = False
    return os.strerror(errno.ENOSPC) if full else 'the index failed to write'


def parse_time(field: str, value: str) -> int:
    """An ISO 8601 time (with a zone) as milliseconds since the epoch."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InputError(
            field,
            'invalid_time',
            f'{field} must be an ISO 8601 time such as 2026-11-25T17:00:00Z.',
        ) from None
    if moment.tzinfo is None:
        raise InputError(field, 'invalid_time', f'{field} must include a time zone.')
    return int(moment.timestamp() * 1000)


def check_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError):
        raise InputError('id', 'invalid_id', 'id must be a UUID.') from None


def _checked(raw: Any) -> dict[str, Any]:
    body = validation.require_object(raw)
    validation.reject_unknown(body, FIELDS)
    validation.require_fields(body, ('content', 'layer'))
    validation.text('content', body['content'], MAX_CONTENT_CHARS)
    if body['layer'] not in LAYERS:
        raise InputError(
            'layer', 'unknown_layer', f'layer must be one of {", ".join(LAYERS)}.'
        )
    if body.get('entity') is not None:
        body = {**body, 'entity': validation.entity_name('entity', body['entity'])}
    metadata = body.get('metadata')
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InputError('metadata', 'wrong_type', 'metadata must be an object.')
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
        if len(encoded.encode()) > MAX_METADATA_BYTES:
            raise InputError(
                'metadata',
                'too_long',
                f'metadata is larger than {MAX_METADATA_BYTES} bytes.',
            )
        body = {**body, 'metadata': encoded}
    return body


class MemoryStore:
    """Memories, their index and the worker that keeps the two in step."""

    def __init__(
        self,
        db: Database,
        index_dir: Path,
        *,
        commit_interval_s: float = 1.0,
        writer_bytes: int = 15 * 1024 * 1024,
        retention: Retention | None = None,
        retention_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        on_entity: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        """``on_entity(name, ids)`` runs in the transaction that stores
        memories of an entity (the soul links them), so both or neither
        are kept."""
        self.db = db
        self._on_entity = on_entity
        self.index_dir = index_dir
        self.commit_interval_s = commit_interval_s
        self.writer_bytes = writer_bytes
        self.retention = retention or Retention({}, 0)
        self.retention_interval_s = retention_interval_s
        self._clock = clock
        self._wake = threading.Condition()
        self._idle = False
        # The index has one writer: the worker, a rebuild or the final flush.
        self._index_lock = threading.RLock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.index: MemoryIndex | None = None
        self.applied = 0
        self.committed = 0
        self.rebuilt_at: str | None = None
        self.rebuild_reason: str | None = None
        # Why the index last failed to take a change (a full disk), and
        # since when; None while it works.
        self.write_error: str | None = None
        self.failing_since: str | None = None
        self._last_commit = 0.0
        self._next_retention = 0.0
        self._progress: Callable[[int], None] | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self, progress: Callable[[int], None] | None = None) -> None:
        """Open (or rebuild) the index, replay the journal, start the worker.

        ``progress(done)`` runs after each batch that a rebuild or the replay
        indexes, with the memories indexed so far: a rebuild of a large index
        takes minutes on a small device, and a daemon starting with one must
        keep telling its supervisor that it is at work.
        """
        self._progress = progress
        try:
            self._reopen_if_closed()
        except MemoryIndexError:
            # A full disk (recorded): memories are still taken and
            # journaled, searches answer index_unavailable, and the worker
            # opens the index once there is room.
            pass
        finally:
            self._progress = None
        self._next_retention = self._clock()
        self._thread = threading.Thread(
            target=self._run, name='jamey-indexer', daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Apply and commit everything journaled, then stop the worker."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.index is not None:
            self._drain(commit=True)
            self.index = None

    def _remove_stale_temporaries(self) -> None:
        """tantivy writes each file through a temporary beside it (``.tmp``
        and six characters); a commit killed half-way leaves its temporaries
        there for good. Nobody else writes in the directory while the state
        lock is held, so at start every one of them is stale."""
        stale = [p for p in self.index_dir.glob('.tmp*') if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info('memory.index_temporaries_removed', extra={'count': len(stale)})

    def _open(self) -> None:
        """Open (or rebuild) the index and bring it up to the journal.

        Raises:
            MemoryIndexError: the index's disk is full; the index on it is
                left as it is.
        """
        self.index = self._open_index()
        self.committed = self.applied = self.index.committed_sequence
        self._drain(commit=True)
        if self.index.doc_count != self._count():
            self._rebuild('the index disagrees with the database')
        if self.write_error is not None:
            log.info('memory.index_recovered', extra={'since': self.failing_since})
            self.write_error = self.failing_since = None

    def _open_index(self) -> MemoryIndex:
        self._remove_stale_temporaries()
        try:
            index = MemoryIndex(self.index_dir, self.writer_bytes)
            damaged = index.damaged_files()
            if not damaged:
                return index
            del index  # releases the writer's lock before the files go
            log.warning('memory.index_damaged', extra={'files': damaged})
        except MemoryIndexError as exc:
            if _os_reason(exc, self.index_dir) == os.strerror(errno.ENOSPC):
                raise  # not damaged: a full disk, whose index is kept
            log.warning('memory.index_unreadable', extra={'error': str(exc)})
        shutil.rmtree(self.index_dir, ignore_errors=True)
        index = MemoryIndex(self.index_dir, self.writer_bytes)
        self.index = index
        self._rebuild('the index was unreadable')
        return index

    def _rebuild(self, reason: str) -> None:
        """Index every memory again, from one snapshot of the database.

        Raises:
            MemoryIndexError: the index could not take it (a full disk); it
                keeps what it held before.
        """
        with self._index_lock:
            try:
                self._rebuild_locked(reason)
            except MemoryIndexError as exc:
                self._write_failed(exc)
                raise

    def _write_failed(self, error: MemoryIndexError) -> None:
        """The writer dropped everything it held uncommitted (see
        ``MemoryIndex``): the journal is applied again from the last commit,
        whose entries are still there, since they go only once committed."""
        first = self.write_error is None
        self.applied = self.committed
        self.write_error = _os_reason(error, self.index_dir)
        if first:
            self.failing_since = iso_utc(self._clock())
        log.error(
            'memory.index_write_failed',
            extra={'error': str(error), 'committed': self.committed},
        )

    def _rebuild_locked(self, reason: str) -> None:
        if self.index is None:
            raise MemoryIndexError(f'the index is not open: {self.write_error}')
        log.warning('memory.index_rebuilt', extra={'reason': reason})
        conn = self.db.connection()
        self.index.clear()
        with conn:  # one snapshot: the memories and the sequence they reach
            sequence = self._journal_counter()
            batch, indexed = [], 0
            for row in conn.execute(
                'SELECT id, layer, entity, created_ms, content FROM memories'
            ):
                batch.append(row)
                if len(batch) >= BATCH:
                    indexed = self._index_batch(batch, indexed)
                    batch = []
            self._index_batch(batch, indexed)
        self.index.commit(sequence)
        heap.release_free()
        self.write_error = self.failing_since = None
        self.rebuilt_at = iso_utc(self._clock())
        self.rebuild_reason = reason
        with self._wake:  # searches waiting for consistency may go on
            self.applied = self.committed = sequence
            self._wake.notify_all()

    def _index_batch(self, batch: list[Any], indexed: int) -> int:
        """Add a rebuild's batch; the memories indexed so far."""
        assert self.index is not None
        self.index.add(batch)
        indexed += len(batch)
        self._advanced(indexed)
        return indexed

    def _advanced(self, done: int) -> None:
        if self._progress is not None:
            self._progress(done)

    def _journal_counter(self) -> int:
        """The last sequence the journal handed out, even if since pruned
        (AUTOINCREMENT keeps it in sqlite_sequence)."""
        row = (
            self.db.connection()
            .execute("SELECT seq FROM sqlite_sequence WHERE name = 'memory_journal'")
            .fetchall()
        )
        return int(row[0][0]) if row else 0  # type: ignore[arg-type]

    # -- the worker ------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                if not self._pending():
                    # Only an idle worker is woken by stores (see _notify).
                    self._idle = True
                    self._wake.wait(self._until_retention())
                    self._idle = False
            try:
                self._reopen_if_closed()
                self._drain(commit=False)
                self._retain_if_due()
            except MemoryIndexError:
                time.sleep(1.0)  # logged; the journal is applied again
            except Exception:
                # The worker must outlive a bad moment; the journal keeps
                # everything, and the next round retries.
                log.exception('memory.indexer_failed')
                time.sleep(1.0)

    def _reopen_if_closed(self) -> None:
        """Open the index if it is not open (at start, and after a full disk
        kept it closed there); a failure is recorded for health and raised."""
        if self.index is not None:
            return
        try:
            self._open()
        except MemoryIndexError as exc:
            if self.index is None:
                self._write_failed(exc)
            raise

    def _pending(self) -> bool:
        if self.index is None:
            return True  # to open
        return self.latest_sequence() > self.applied or self.applied > self.committed

    def _until_retention(self) -> float:
        return max(0.05, self._next_retention - self._clock())

    def latest_sequence(self) -> int:
        """The journal sequence of the newest acknowledged change."""
        return int(
            self.db.connection()
            .execute('SELECT coalesce(max(seq), 0) FROM memory_journal')
            .get
        )

    def _drain(self, commit: bool) -> None:
        """Apply journal batches; commit when the interval has passed."""
        with self._index_lock:
            try:
                self._drain_locked(commit)
            except MemoryIndexError as exc:
                self._write_failed(exc)
                raise

    def _drain_locked(self, commit: bool) -> None:
        if not commit:
            # At most one commit per interval (each fsyncs several files):
            # single stores meanwhile are read in one go and join it, while
            # a bulk store wakes the worker to index its batch at once, so
            # the writer works alongside the import instead of after it.
            deadline = self._last_commit + self.commit_interval_s
            while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
                with self._wake:
                    self._wake.wait(remaining)
                self._apply_journal()
        self._apply_journal()
        if self.applied > self.committed:
            self._commit()

    def _apply_journal(self) -> None:
        done = 0
        while True:
            rows = (
                self.db.connection()
                .execute(
                    'SELECT j.seq, j.op, j.memory_id, m.layer, m.entity, m.created_ms,'
                    ' m.content FROM memory_journal j LEFT JOIN memories m'
                    ' ON m.id = j.memory_id WHERE j.seq > ? ORDER BY j.seq LIMIT ?',
                    (self.applied, BATCH),
                )
                .fetchall()
            )
            if not rows:
                return
            self._apply(rows)
            done += len(rows)
            self._advanced(done)

    def _apply(self, rows: list[tuple[Any, ...]]) -> None:
        assert self.index is not None
        adds, deletes = [], []
        for seq, op, memory_id, layer, entity, created_ms, content in rows:
            if op == 'add' and layer is not None:
                adds.append((memory_id, layer, entity, created_ms, content))
            else:
                deletes.append(memory_id)
            self.applied = seq
        # An id added and deleted within one batch has no row any more (the
        # join found none), so it is only deleted; ids are never reused.
        self.index.delete(deletes)
        self.index.add(adds)

    def _commit(self) -> None:
        assert self.index is not None
        sequence = self.applied
        self.index.commit(sequence)
        heap.release_free()
        self._last_commit = time.monotonic()
        if self.write_error is not None:
            log.info('memory.index_recovered', extra={'since': self.failing_since})
            self.write_error = self.failing_since = None
        with self._wake:
            self.committed = sequence
            self._wake.notify_all()
        with self.db.transaction() as conn:
            conn.execute('DELETE FROM memory_journal WHERE seq <= ?', (sequence,))

    def wait_indexed(self, sequence: int, timeout_s: float) -> bool:
        """Block until the index has committed ``sequence``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while self.committed < sequence:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
        return True

    # -- retention -------------------------------------------------------

    def _retain_if_due(self) -> None:
        now = self._clock()
        if now < self._next_retention:
            return
        self._next_retention = now + self.retention_interval_s
        removed = self.apply_retention()
        if removed:
            log.info('memory.expired', extra={'removed': removed})

    def apply_retention(self) -> int:
        """Remove memories past their layer's age or count limit."""
        now_ms = int(self._clock() * 1000)
        removed = 0
        with self.db.transaction() as conn:
            for layer in LAYERS:
                ttl = self.retention.ttl_s.get(layer, 0)
                if ttl:
                    ids = conn.execute(
                        'DELETE FROM memories WHERE layer = ? AND created_ms < ?'
                        ' RETURNING id',
                        (layer, now_ms - ttl * 1000),
                    ).fetchall()
                    removed += self._journal_deletes(conn, ids)
                if self.retention.max_items:
                    ids = conn.execute(
                        'DELETE FROM memories WHERE id IN (SELECT id FROM memories'
                        ' WHERE layer = ? ORDER BY created_ms DESC, id LIMIT -1'
                        ' OFFSET ?) RETURNING id',
                        (layer, self.retention.max_items),
                    ).fetchall()
                    removed += self._journal_deletes(conn, ids)
        if removed:
            self._notify()
        return removed

    @staticmethod
    def _journal_deletes(conn: Any, ids: list[tuple[Any, ...]]) -> int:
        conn.executemany(
            "INSERT INTO memory_journal (memory_id, op) VALUES (?, 'delete')", ids
        )
        return len(ids)

    # -- the capability --------------------------------------------------

    def _notify(self, count: int = 1) -> None:
        """Wake the worker if it sleeps waiting for work, or if ``count``
        changes make a batch worth indexing now.

        A worker already counting down to its next commit will read single
        stores anyway; waking it per store would cost a thread switch each.
        The flag is read and written under the lock, and the worker checks
        for work under it before sleeping, so no store is missed.
        """
        with self._wake:
            if self._idle or count >= BULK:
                self._wake.notify_all()

    def store(self, body: Any) -> tuple[Memory, int]:
        """Keep one memory; returns it and its journal sequence."""
        memories, sequence = self.store_many([body])
        return memories[0], sequence

    def store_many(self, bodies: list[Any]) -> tuple[list[Memory], int]:
        """Keep many memories in one transaction (imports)."""
        checked = [_checked(body) for body in bodies]
        now = self._clock()
        created_ms, created_at = int(now * 1000), iso_utc(now)
        rows = [
            (
                memory_id,
                c['layer'],
                c['content'],
                c.get('entity'),
                created_ms,
                created_at,
                c.get('metadata'),
            )
            for memory_id, c in zip(
                new_ids(len(checked), created_ms), checked, strict=True
            )
        ]
        with self.db.transaction() as conn:
            conn.executemany(
                f'INSERT INTO memories ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)',  # noqa: S608
                rows,
            )
            conn.executemany(
                "INSERT INTO memory_journal (memory_id, op) VALUES (?, 'add')",
                [(r[0],) for r in rows],
            )
            sequence = conn.last_insert_rowid()
            self._link_entities(rows)
            self.db.after_commit(lambda: self._notify(len(rows)))
        return [_memory(r) for r in rows], sequence

    def _link_entities(self, rows: list[tuple[Any, ...]]) -> None:
        if self._on_entity is None:
            return
        by_entity: dict[str, list[str]] = {}
        for row in rows:
            if row[3] is not None:
                by_entity.setdefault(row[3], []).append(row[0])
        for entity, ids in by_entity.items():
            self._on_entity(entity, ids)

    def _read(self, where: str, params: tuple[Any, ...]) -> list[Memory]:
        """The memories ``where`` (and what follows it) selects, each
        checked against its checksum (RowDamagedError)."""
        return [
            _memory(r)
            for r in self.db.read_rows('memories', f'{_READ} {where}', params)
        ]

    def get(self, memory_id: str) -> Memory:
        found = self._read('WHERE id = ?', (check_id(memory_id),))
        if not found:
            raise NotFoundError('memory_not_found', 'No memory has that id.')
        return found[0]

    def delete(self, memory_id: str) -> int:
        """Forget one memory; returns its journal sequence."""
        with self.db.transaction() as conn:
            if not self.forget_many([check_id(memory_id)]):
                raise NotFoundError('memory_not_found', 'No memory has that id.')
            return int(conn.last_insert_rowid())

    def forget_many(self, ids: list[str]) -> int:
        """Forget the memories with these ids (unknown ones are skipped);
        joins the caller's transaction. Returns how many were forgotten."""
        gone: list[tuple[Any, ...]] = []
        with self.db.transaction() as conn:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                marks = ', '.join('?' * len(chunk))
                gone += conn.execute(
                    f'DELETE FROM memories WHERE id IN ({marks}) RETURNING id',  # noqa: S608
                    chunk,
                ).fetchall()
            self._journal_deletes(conn, gone)
            self.db.after_commit(lambda: self._notify(len(gone)))
        return len(gone)

    def search(
        self,
        query: str | None = None,
        *,
        layer: str | None = None,
        entity: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 20,
        match: str = MATCH_ANY,
    ) -> list[tuple[Memory, float | None]]:
        """Memories matching ``query`` (best first), or the newest without one.

        ``match`` is ``any`` (memories with any of the words, ranked by BM25:
        a question is a query) or ``all`` (only those with every word).
        """
        if not isinstance(match, str):
            raise InputError('match', 'wrong_type', 'match must be a string.')
        if match not in MATCHES:
            raise InputError(
                'match', 'unknown_match', f'match must be one of {", ".join(MATCHES)}.'
            )
        if layer is not None and layer not in LAYERS:
            raise InputError(
                'layer', 'unknown_layer', f'layer must be one of {", ".join(LAYERS)}.'
            )
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(
                'limit', 'out_of_range', f'limit must be between 1 and {MAX_LIMIT}.'
            )
        if entity is not None:
            entity = validation.entity_name('entity', entity)
        since_ms = parse_time('since', since) if since is not None else None
        until_ms = parse_time('until', until) if until is not None else None
        if query is None or not query.strip():
            return [
                (m, None)
                for m in self._newest(layer, entity, since_ms, until_ms, limit)
            ]
        validation.text('q', query, MAX_CONTENT_CHARS)
        index = self.index
        if index is None:
            raise MemoryIndexError(f'the index is not open: {self.write_error}')
        hits = index.search(
            query,
            all_words=match == MATCH_ALL,
            layer=layer,
            entity=entity,
            since=since_ms,
            until=until_ms,
            limit=limit,
        )
        found = self._by_ids([memory_id for memory_id, _ in hits])
        # An id the index still has but the database no longer: deleted.
        return [(found[i], score) for i, score in hits if i in found]

    def with_context(
        self, hits: list[tuple[Memory, float | None]], neighbours: int
    ) -> list[Found]:
        """``hits`` in their order, each between the ``neighbours`` memories
        stored just before it and just after it in its group (same layer,
        entity and ``metadata.session``). A memory appears once: a hit as
        itself, else as the context of the first hit it neighbours.

        Raises:
            InputError: ``neighbours`` is not in 0..MAX_CONTEXT.
        """
        if isinstance(neighbours, bool) or not isinstance(neighbours, int):
            raise InputError('context', 'wrong_type', 'context must be an integer.')
        if not 0 <= neighbours <= MAX_CONTEXT:
            raise InputError(
                'context',
                'out_of_range',
                f'context must be between 0 and {MAX_CONTEXT}.',
            )
        shown = {m.id for m, _ in hits}

        def context(side: list[Memory], hit: Memory) -> list[Found]:
            fresh = [near for near in side if near.id not in shown]
            shown.update(near.id for near in fresh)
            return [Found(near, None, hit.id) for near in fresh]

        found: list[Found] = []
        for memory, score in hits:
            before, after = (
                self._neighbours(memory, neighbours) if neighbours else ([], [])
            )
            found += [
                *context(before, memory),
                Found(memory, score, None),
                *context(after, memory),
            ]
        return found

    def _neighbours(self, memory: Memory, n: int) -> tuple[list[Memory], list[Memory]]:
        """The ``n`` memories of ``memory``'s group stored before it (oldest
        first) and after it."""
        group = (memory.metadata or {}).get(GROUP_KEY)
        where = 'layer = ? AND entity IS ? AND json_extract(metadata, ?) IS ?'
        params = (memory.layer, memory.entity, f'$.{GROUP_KEY}', group)
        at = (memory.created_ms, memory.id)
        earlier, later = (
            self._read(
                f'WHERE {where} AND (created_ms, id) {side} (?, ?)'
                f' ORDER BY created_ms {order}, id {order} LIMIT ?',
                (*params, *at, n),
            )
            for side, order in (('<', 'DESC'), ('>', 'ASC'))
        )
        return earlier[::-1], later

    def _newest(
        self,
        layer: str | None,
        entity: str | None,
        since: int | None,
        until: int | None,
        limit: int,
    ) -> list[Memory]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (('layer', layer), ('entity', entity)):
            if value is not None:
                where.append(f'{column} = ?')
                params.append(value)
        if since is not None:
            where.append('created_ms >= ?')
            params.append(since)
        if until is not None:
            where.append('created_ms <= ?')
            params.append(until)
        sql = f'WHERE {" AND ".join(where)}' if where else ''
        return self._read(
            f'{sql} ORDER BY created_ms DESC, id LIMIT ?', (*params, limit)
        )

    def tagged(self, layer: str, key: str, value: str, limit: int) -> list[Memory]:
        """The newest memories of ``layer`` whose metadata has ``key`` set to
        ``value``: a chat session is its working memories, tagged with it."""
        return self._read(
            'WHERE layer = ? AND json_extract(metadata, ?) = ?'
            ' ORDER BY created_ms DESC, id DESC LIMIT ?',
            (layer, f'$.{key}', value, limit),
        )

    def _by_ids(self, ids: list[str]) -> dict[str, Memory]:
        if not ids:
            return {}
        marks = ', '.join('?' * len(ids))
        return {m.id: m for m in self._read(f'WHERE id IN ({marks})', tuple(ids))}

    def _count(self) -> int:
        return int(self.db.connection().execute('SELECT count(*) FROM memories').get)

    def index_documents(self) -> int:
        index = self.index
        return index.doc_count if index is not None else 0

    def lag(self) -> int:
        """Journal entries acknowledged but not yet searchable."""
        return max(0, self.latest_sequence() - self.committed)

    def disagreement(self) -> str | None:
        """How the index differs from what the journal says it holds, or
        None: once it has committed the journal's last change, it holds
        exactly the database's memories. Not checked (None) while it is
        behind, or while the worker is changing it."""
        index = self.index
        if index is None or not self._index_lock.acquire(blocking=False):
            return None
        try:
            conn = self.db.connection()
            with conn:  # one snapshot: the last change and the memories
                last, count = self._journal_counter(), self._count()
            if last != self.committed:
                return None
            held = index.doc_count
            if held == count:
                return None
            return f'the index holds {held} memories where the database has {count}'
        finally:
            self._index_lock.release()

    def stats(self) -> dict[str, Any]:
        conn = self.db.connection()
        counts = dict.fromkeys(LAYERS, 0)
        for layer, count in conn.execute(
            'SELECT layer, count(*) FROM memories GROUP BY layer'
        ):
            counts[str(layer)] = int(count)
        index_bytes = sum(
            p.stat().st_size for p in self.index_dir.rglob('*') if p.is_file()
        )
        return {
            'layers': counts,
            'total': sum(counts.values()),
            'index_documents': self.index_documents(),
            'lag': self.lag(),
            'index_bytes': index_bytes,
            'database_bytes': sum(p.stat().st_size for p in self._database_files()),
            'rebuilt_at': self.rebuilt_at,
        }

    def _database_files(self) -> list[Path]:
        path = self.db.path
        candidates = [path, path.with_name(path.name + '-wal')]
        return [p for p in candidates if p.exists()]

    def reindex(self) -> None:
        """Rebuild the index from the database (an operator's repair)."""
        self._rebuild('an operator asked for it')
