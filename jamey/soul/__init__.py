"""The soul: who Jamey deals with, how much it trusts them, what it feels.

Entities, an emotion history and memory links live in SQLite. Trust decays
continuously: the stored trust is the value at ``decayed_ms``, and every read
adds the decay since, so the answer never depends on when the decay job last
ran; the job (and every interaction) writes the decayed value back.

The formulas are in ``jamey.soul.model``. Integrations are small public
methods: the conscience's verdicts become emotions through
``record_verdict``, the memory store calls ``link`` inside its own
transaction, and ``delete`` forgets memories through the function it was
given, so this module imports neither.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from jamey import checksums
from jamey import validation
from jamey.clock import iso_utc
from jamey.errors import InputError
from jamey.errors import NotFoundError
from jamey.soul import model
from jamey.soul.model import Emotion
from jamey.storage import Database

log = logging.getLogger('jamey.soul')

SOURCES = ('manual', 'conscience', 'api')
SORTS = ('trust', 'last_interaction', 'name')
MAX_PAGE = 100
_HOUR_MS = 3_600_000
# Trust now, in SQL: the stored trust less the decay since it was written.
_TRUST_NOW = (
    'max(0.0, min(1.0, trust - decay_rate * max(0, ? - decayed_ms) / 3600000.0))'
)
_COLUMNS = (
    'name, trust, decay_rate, decayed_ms, created_at, last_interaction_ms,'
    ' interaction_count'
)
_READ = f'SELECT {_COLUMNS}, {checksums.damaged_key("entities")} FROM entities'  # noqa: S608
_SOUND_ENTITY = f'{checksums.damaged_key("entities")} IS NULL'
_EMOTIONS_DAMAGED = checksums.damaged_key('emotions')


class SoulSettings(NamedTuple):
    auto_create: bool = True
    default_trust: float = model.DEFAULT_TRUST
    low_trust: float = 0.3
    low_trust_factor: float = 0.5
    prune: bool = False
    prune_threshold: float = 0.1
    max_emotions: int = 100
    decay_interval_s: float = 3600.0


class Entity(NamedTuple):
    name: str
    trust: float
    decay_rate: float
    created_at: str
    last_interaction: str | None
    interaction_count: int
    intensities: dict[Emotion, float]
    linked_memories: int

    @property
    def empathy(self) -> float:
        return model.empathy(self.intensities)

    def as_dict(self) -> dict[str, Any]:
        empathy = self.empathy
        dominant = model.dominant(self.intensities)
        return {
            'name': self.name,
            'trust': round(self.trust, 6),
            'empathy': round(empathy, 6),
            'empathy_description': model.empathy_description(empathy),
            'emotions': {e.value: self.intensities[e] for e in self.intensities},
            'dominant_emotion': None
            if dominant is None
            else {'name': dominant.value, 'emoji': dominant.emoji},
            'decay_rate': self.decay_rate,
            'created_at': self.created_at,
            'last_interaction': self.last_interaction,
            'interaction_count': self.interaction_count,
            'linked_memories': self.linked_memories,
        }


class Strictness(NamedTuple):
    """Why an entity's actions are judged more strictly than others'."""

    entity: str
    trust: float
    low_trust: float
    factor: float
    deny_weight: float
    usual_deny_weight: float

    def as_dict(self) -> dict[str, Any]:
        return {
            'entity': self.entity,
            'trust': round(self.trust, 6),
            'low_trust': self.low_trust,
            'factor': self.factor,
            'deny_weight': self.deny_weight,
            'usual_deny_weight': self.usual_deny_weight,
            'reason': (
                f'{self.entity} is trusted {self.trust:.2f},'
                f' below {self.low_trust:.2f}:'
                f' a violated rule of weight {self.deny_weight:g} or more denies'
                f' (usually {self.usual_deny_weight:g}).'
            ),
        }


def check_emotion(field: str, value: Any) -> Emotion:
    if not isinstance(value, str):
        raise InputError(field, 'wrong_type', f'{field} must be a string.')
    emotion = model.parse_emotion(value)
    if emotion is None:
        names = ', '.join(f'{e.value} {e.emoji}' for e in Emotion)
        raise InputError(
            field,
            'unknown_emotion',
            f'{field} must be one of {names}, or happy, sad or angry.',
        )
    return emotion


def check_unit(field: str, value: Any) -> float:
    """A number from 0 to 1 (trust, intensity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, 'wrong_type', f'{field} must be a number.')
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise InputError(field, 'out_of_range', f'{field} must be from 0 to 1.')
    return float(value)


def _unknown_entity_field(name: str) -> InputError:
    """An ``entity`` field naming no entity while auto-creation is off."""
    return InputError(
        'entity',
        'unknown_entity',
        f'No entity is named {name!r}, and soul.auto_create is off.',
    )


def _trust_at(trust: float, rate: float, decayed_ms: int, now_ms: int) -> float:
    """Stored trust, decayed from when it was written until ``now_ms``."""
    return model.decayed_trust(trust, rate, (now_ms - decayed_ms) / _HOUR_MS)


def _entity_missing(name: str) -> NotFoundError:
    return NotFoundError('entity_not_found', f'No entity is named {name!r}.')


class Soul:
    """Entities, emotions, trust; safe to use from many threads."""

    def __init__(
        self,
        db: Database,
        settings: SoulSettings | None = None,
        *,
        forget_memories: Callable[[list[str]], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.settings = settings or SoulSettings()
        self.forget_memories = forget_memories
        self._clock = clock
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- reading ---------------------------------------------------------

    def get(self, name: Any) -> Entity:
        name = validation.entity_name('name', name)
        with self.db.transaction(write=False) as conn:
            entity = self._read(conn, name)
        if entity is None:
            raise _entity_missing(name)
        return entity

    def _read(self, conn: Any, name: str) -> Entity | None:
        rows = self.db.read_rows('entities', f'{_READ} WHERE name = ?', (name,))
        return self._entities(conn, rows)[0] if rows else None

    def _entities(self, conn: Any, rows: list[tuple[Any, ...]]) -> list[Entity]:
        """Entities from their rows, in three queries however many there are
        (the original made one per entity)."""
        names = json.dumps([row[0] for row in rows])
        linked = dict(
            conn.execute(
                'SELECT entity, count(*) FROM memory_links WHERE entity IN'
                ' (SELECT value FROM json_each(?)) GROUP BY entity',
                (names,),
            ).fetchall()
        )
        felt: dict[str, dict[Emotion, float]] = {}
        for entity, emotion, intensity in self.db.read_rows(
            'emotions',
            f'SELECT entity, emotion, intensity, {_EMOTIONS_DAMAGED}'  # noqa: S608 - constants only
            ' FROM emotions WHERE id IN'
            ' (SELECT max(id) FROM emotions WHERE entity IN'
            ' (SELECT value FROM json_each(?)) GROUP BY entity, emotion)',
            (names,),
        ):
            felt.setdefault(entity, {})[Emotion(emotion)] = float(intensity)
        now_ms = self._now_ms()
        entities = []
        for name, trust, rate, decayed_ms, created_at, last_ms, count in rows:
            found = felt.get(name, {})
            entities.append(
                Entity(
                    name,
                    _trust_at(trust, rate, decayed_ms, now_ms),
                    rate,
                    created_at,
                    None if last_ms is None else iso_utc(last_ms / 1000),
                    count,
                    {e: found[e] for e in Emotion if e in found},
                    int(linked.get(name, 0)),
                )
            )
        return entities

    def _current(self, name: str) -> dict[Emotion, float]:
        """The latest intensity of each emotion recorded for ``name``."""
        rows = self.db.read_rows(
            'emotions',
            f'SELECT emotion, intensity, {_EMOTIONS_DAMAGED} FROM emotions'  # noqa: S608 - constants only
            ' WHERE id IN'
            ' (SELECT max(id) FROM emotions WHERE entity = ? GROUP BY emotion)',
            (name,),
        )
        return {Emotion(emotion): float(intensity) for emotion, intensity in rows}

    def trust_of(self, name: str) -> float | None:
        """Trust now, or None for an unknown entity."""
        return self._trust_now(name, self._now_ms())

    def _trust_now(self, name: str, now_ms: int) -> float | None:
        """The whole row is read, so that its checksum is checked before
        anything is computed (and written) from it."""
        rows = self.db.read_rows('entities', f'{_READ} WHERE name = ?', (name,))
        if not rows:
            return None
        _, trust, rate, decayed_ms = rows[0][:4]
        return _trust_at(trust, rate, decayed_ms, now_ms)

    def page(
        self,
        sort: str = 'last_interaction',
        descending: bool = True,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Entity], int]:
        """One page of entities and how many there are in all."""
        if sort not in SORTS:
            raise InputError('sort', 'unknown_sort', f'sort must be one of {SORTS}.')
        if not 1 <= limit <= MAX_PAGE:
            raise InputError(
                'limit', 'out_of_range', f'limit must be between 1 and {MAX_PAGE}.'
            )
        if offset < 0:
            raise InputError('offset', 'out_of_range', 'offset must not be negative.')
        key = {
            'trust': _TRUST_NOW,
            'last_interaction': 'coalesce(last_interaction_ms, 0)',
            'name': 'name',
        }[sort]
        direction = 'DESC' if descending else 'ASC'
        sql = f'{_READ} ORDER BY {key} {direction}, name LIMIT ? OFFSET ?'
        params = (self._now_ms(),) * (sort == 'trust') + (limit, offset)
        with self.db.transaction(write=False) as conn:
            rows = self.db.read_rows('entities', sql, params)
            total = int(conn.execute('SELECT count(*) FROM entities').get)
            return self._entities(conn, rows), total

    # -- changing --------------------------------------------------------

    def _ensure(self, conn: Any, name: str, missing: Callable[[], Exception]) -> None:
        """Create ``name`` if it is new and ``soul.auto_create`` allows it."""
        exists = conn.execute('SELECT 1 FROM entities WHERE name = ?', (name,))
        if exists.fetchall():
            return
        if not self.settings.auto_create:
            raise missing()
        self._create(conn, name, self.settings.default_trust)

    def _create(self, conn: Any, name: str, trust: float) -> None:
        now = self._clock()
        conn.execute(
            'INSERT INTO entities (name, trust, decay_rate, decayed_ms, created_at)'
            ' VALUES (?, ?, ?, ?, ?)',
            (
                name,
                trust,
                model.decay_rate(model.NEUTRAL_EMPATHY),
                int(now * 1000),
                iso_utc(now),
            ),
        )

    def upsert(self, name: Any, body: Any) -> tuple[Entity, bool]:
        """Create an entity or set its trust; True if it was created."""
        name = validation.entity_name('name', name)
        body = validation.require_object(body)
        validation.reject_unknown(body, ('trust',))
        validation.require_fields(body, ('trust',))
        trust = check_unit('trust', body['trust'])
        now_ms = self._now_ms()
        with self.db.transaction() as conn:
            # Read (and so checked) first: a damaged row is not rewritten.
            created = self._trust_now(name, now_ms) is None
            if created:
                self._create(conn, name, trust)
            else:
                conn.execute(
                    'UPDATE entities SET trust = ?, decayed_ms = ? WHERE name = ?',
                    (trust, now_ms, name),
                )
            entity = self._read(conn, name)
        assert entity is not None
        return entity, created

    def record(
        self,
        name: Any,
        emotion: Any,
        intensity: Any = None,
        source: str = 'api',
    ) -> Entity:
        """Record an emotion about ``name`` and let it move trust.

        Raises:
            InputError: a bad name, emotion, intensity or source.
            NotFoundError: an unknown entity while ``soul.auto_create`` is off.
        """
        name = validation.entity_name('name', name)
        felt = check_emotion('emotion', emotion)
        strength = (
            felt.default_intensity
            if intensity is None
            else check_unit('intensity', intensity)
        )
        if source not in SOURCES:
            raise InputError(
                'source', 'unknown_source', f'source must be one of {SOURCES}.'
            )
        with self.db.transaction() as conn:
            self._ensure(conn, name, lambda: _entity_missing(name))
            self._record(conn, name, felt, strength, source)
            entity = self._read(conn, name)
        assert entity is not None
        return entity

    def _record(
        self, conn: Any, name: str, emotion: Emotion, intensity: float, source: str
    ) -> None:
        now_ms = self._now_ms()
        conn.execute(
            'INSERT INTO emotions (entity, emotion, intensity, recorded_ms, source)'
            ' VALUES (?, ?, ?, ?, ?)',
            (name, emotion.value, intensity, now_ms, source),
        )
        # Bounded history; the latest of each emotion always stays, because
        # the current intensities (and so empathy) are made of them.
        conn.execute(
            'DELETE FROM emotions WHERE entity = ?1 AND id NOT IN'
            ' (SELECT id FROM emotions WHERE entity = ?1 ORDER BY id DESC LIMIT ?2)'
            ' AND id NOT IN (SELECT max(id) FROM emotions WHERE entity = ?1'
            ' GROUP BY emotion)',
            (name, self.settings.max_emotions),
        )
        trust_now = self._trust_now(name, now_ms)
        assert trust_now is not None, 'the entity exists in this transaction'
        empathy = model.empathy(self._current(name))
        conn.execute(
            'UPDATE entities SET trust = ?, decay_rate = ?, decayed_ms = ?,'
            ' last_interaction_ms = ?, interaction_count = interaction_count + 1'
            ' WHERE name = ?',
            (
                model.boosted_trust(trust_now, empathy),
                model.decay_rate(empathy),
                now_ms,
                now_ms,
                name,
            ),
        )

    def link(self, name: str, memory_ids: list[str]) -> None:
        """Link memories to ``name`` (already checked by the memory store);
        joins the caller's transaction."""
        with self.db.transaction() as conn:
            self._ensure(conn, name, lambda: _unknown_entity_field(name))
            conn.executemany(
                'INSERT OR IGNORE INTO memory_links (entity, memory_id) VALUES (?, ?)',
                [(name, memory_id) for memory_id in memory_ids],
            )

    def delete(self, name: Any, forget_memories: bool = False) -> dict[str, Any]:
        """Remove an entity, its emotions and links (and its memories if asked)."""
        name = validation.entity_name('name', name)
        with self.db.transaction() as conn:
            emotions = int(
                conn.execute(
                    'SELECT count(*) FROM emotions WHERE entity = ?', (name,)
                ).get
            )
            links = int(
                conn.execute(
                    'SELECT count(*) FROM memory_links WHERE entity = ?', (name,)
                ).get
            )
            forgotten = 0
            if forget_memories and self.forget_memories is not None:
                ids = [
                    str(row[0])
                    for row in conn.execute(
                        'SELECT memory_id FROM memory_links WHERE entity = ?1'
                        ' UNION SELECT id FROM memories WHERE entity = ?1',
                        (name,),
                    )
                ]
                forgotten = self.forget_memories(ids)
            gone = conn.execute(
                'DELETE FROM entities WHERE name = ? RETURNING name', (name,)
            ).fetchall()
            if not gone:
                raise _entity_missing(name)
        return {
            'name': name,
            'emotions': emotions,
            'links': links,
            'memories_forgotten': forgotten,
        }

    # -- the conscience's side -------------------------------------------

    def strictness(self, name: str, deny_weight: float) -> Strictness | None:
        """How to judge ``name`` if it is trusted less than ``soul.low_trust``."""
        trust = self.trust_of(name)
        low = self.settings.low_trust
        if trust is None or trust >= low:
            return None
        factor = self.settings.low_trust_factor
        return Strictness(name, trust, low, factor, deny_weight * factor, deny_weight)

    def record_verdict(
        self, name: str, verdict: str, score: float, max_score: float
    ) -> tuple[Emotion, float, Entity]:
        """Record what judging ``name``'s action felt like (see model)."""
        emotion = model.verdict_emotion(verdict, score, max_score)
        intensity = model.verdict_intensity(emotion, score, max_score)
        with self.db.transaction() as conn:
            self._ensure(conn, name, lambda: _unknown_entity_field(name))
            self._record(conn, name, emotion, intensity, 'conscience')
            entity = self._read(conn, name)
        assert entity is not None
        return emotion, intensity, entity

    # -- decay and prune -------------------------------------------------

    def decay(self) -> dict[str, Any]:
        """Write the decay so far into every entity; prune if configured."""
        now_ms = self._now_ms()
        pruned: list[str] = []
        with self.db.transaction() as conn:
            decayed = conn.execute(
                # A damaged row is left as it is, for the check to report:
                # decaying it would give its damage a new checksum.
                f'UPDATE entities SET trust = {_TRUST_NOW}, decayed_ms = ?'  # noqa: S608
                f' WHERE {_SOUND_ENTITY} RETURNING name',
                (now_ms, now_ms),
            ).fetchall()
            if self.settings.prune:
                pruned = [
                    str(row[0])
                    for row in conn.execute(
                        'DELETE FROM entities WHERE trust < ? RETURNING name',
                        (self.settings.prune_threshold,),
                    )
                ]
        for name in pruned:
            log.info(
                'soul.pruned',
                extra={'entity': name, 'threshold': self.settings.prune_threshold},
            )
        return {'decayed': len(decayed), 'pruned': pruned}

    def start(self) -> None:
        """Run ``decay`` every ``decay_interval_s`` in a thread of its own."""
        self._thread = threading.Thread(
            target=self._run, name='jamey-soul-decay', daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                # Checked before sleeping too: a stop that came first must not
                # wait out a whole interval.
                if self._wake.wait_for(
                    lambda: self._stopping, self.settings.decay_interval_s
                ):
                    return
            try:
                self.decay()
            except Exception:
                log.exception('soul.decay_failed')

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
