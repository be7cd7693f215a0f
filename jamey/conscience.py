"""The conscience: weighted rules in SQLite, judged by the Rust scorer.

SQLite holds the rules and a ``rules_version`` that goes up with every
change, in the same transaction. The compiled scorer and the version it was
built from are held as one pair and replaced as one, so every evaluation is
judged by exactly one rule set and says which.
"""

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import apsw

from jamey import validation
from jamey._core import Scorer
from jamey.clock import iso_utc
from jamey.errors import ConflictError
from jamey.errors import InputError
from jamey.errors import NotFoundError
from jamey.errors import RuleError
from jamey.storage import Database

MAX_ACTION_CHARS = 10_000
MAX_DESCRIPTION_CHARS = 500
MAX_PHRASE_CHARS = 100
MAX_PHRASES = 200
MAX_WEIGHT = 100.0
RULE_FIELDS = ('name', 'description', 'weight', 'violations', 'affirmations', 'enabled')
NO_PHRASES_WARNING = 'The rule has no phrases yet, so it matches nothing.'


class Rule(NamedTuple):
    name: str
    description: str
    weight: float
    violations: tuple[str, ...]
    affirmations: tuple[str, ...]
    enabled: bool
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            'name': self.name,
            'description': self.description,
            'weight': self.weight,
            'violations': list(self.violations),
            'affirmations': list(self.affirmations),
            'enabled': self.enabled,
            'created_at': self.created_at,
            'updated_at': self.updated_at,
        }

    @property
    def warnings(self) -> list[str]:
        return [] if self.violations or self.affirmations else [NO_PHRASES_WARNING]


def _rule_from_row(row: tuple[Any, ...]) -> Rule:
    name, description, weight, violations, affirmations, enabled, created, updated = row
    return Rule(
        name,
        description,
        weight,
        tuple(json.loads(violations)),
        tuple(json.loads(affirmations)),
        bool(enabled),
        created,
        updated,
    )


def _phrases(field: str, value: Any) -> list[str]:
    phrases = validation.text_list(field, value, MAX_PHRASES, MAX_PHRASE_CHARS)
    for index, phrase in enumerate(phrases):
        try:
            Scorer([('check', 1.0, [phrase], [])], MAX_WEIGHT)
        except RuleError:
            raise InputError(
                f'{field}[{index}]',
                'no_words',
                f'{field}[{index}] has no words to match.',
            ) from None
    return phrases


def _checked_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the rule fields present in ``body`` (all optional here)."""
    checks: dict[str, Callable[[str, Any], Any]] = {
        'name': validation.slug,
        'description': lambda f, v: validation.text(f, v, MAX_DESCRIPTION_CHARS),
        'weight': lambda f, v: validation.number(f, v, 0.0, MAX_WEIGHT),
        'violations': _phrases,
        'affirmations': _phrases,
        'enabled': validation.boolean,
    }
    return {field: checks[field](field, value) for field, value in body.items()}


_SELECT = (
    'SELECT name, description, weight, violations, affirmations, enabled,'
    ' created_at, updated_at FROM rules'
)
_BUMP = (
    'UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)'
    " WHERE key = 'rules_version'"
)
_VERSION = "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rules_version'"


class Compiled(NamedTuple):
    """A rule set as one value, so a judgement never mixes two of them."""

    version: int
    scorer: Scorer
    # The highest score an action can reach: every enabled rule affirmed.
    max_score: float


class Conscience:
    """Rules and their evaluation; safe to use from many threads."""

    def __init__(
        self,
        db: Database,
        deny_weight: float = 8.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.deny_weight = deny_weight
        self._clock = clock
        self._swap = threading.Lock()
        self._compiled = Compiled(0, Scorer([], deny_weight), 0.0)
        self.reload()

    def reload(self, deny_weight: float | None = None) -> int:
        """Recompile from the database; returns the rules version now in force.

        Two writers can finish in either order; comparing versions under the
        lock means an older compilation never replaces a newer one.
        """
        weight = self.deny_weight if deny_weight is None else deny_weight
        version, rules = self.rules()
        enabled = [
            (r.name, r.weight, list(r.violations), list(r.affirmations))
            for r in rules
            if r.enabled
        ]
        compiled = Compiled(
            version, Scorer(enabled, weight), sum(rule[1] for rule in enabled)
        )
        with self._swap:
            if version >= self._compiled.version:
                self._compiled = compiled
                self.deny_weight = weight
            return self._compiled.version

    def evaluate(self, action: Any, deny_weight: float | None = None) -> dict[str, Any]:
        """Judge an action; the result names the rule set that judged it.

        ``deny_weight`` replaces ``conscience.deny_weight`` for this action
        (stricter judgement of someone trusted less).
        """
        validation.text('action', action, MAX_ACTION_CHARS)
        version, scorer, max_score = self._compiled  # one read: one rule set
        score, verdict, findings = scorer.evaluate(action, deny_weight=deny_weight)
        return {
            'action': action,
            'score': score,
            'verdict': verdict,
            'findings': [
                {
                    'rule': rule,
                    'polarity': polarity,
                    'phrase': phrase,
                    'start': start,
                    'end': end,
                    'negated': negated,
                }
                for rule, polarity, phrase, start, end, negated in findings
            ],
            'rules_version': version,
            'max_score': max_score,
        }

    def rules(self) -> tuple[int, list[Rule]]:
        """Every rule (enabled or not) and the version they make up together."""
        conn = self.db.connection()
        with conn:  # one snapshot for both reads
            version = self.version()
            rows = conn.execute(f'{_SELECT} ORDER BY name').fetchall()
        return version, [_rule_from_row(row) for row in rows]

    def version(self) -> int:
        """The version of the rule set in the database."""
        return int(self.db.connection().execute(_VERSION).get)

    def rule(self, name: str) -> Rule:
        row = (
            self.db.connection()
            .execute(f'{_SELECT} WHERE name = ?', (name,))
            .fetchall()
        )
        if not row:
            raise NotFoundError('rule_not_found', f'No rule is named {name!r}.')
        return _rule_from_row(row[0])

    def create_rule(self, body: Any) -> tuple[Rule, int]:
        """Add a rule; returns it and the new rules version.

        Raises:
            InputError: a field is missing, unknown or invalid.
            ConflictError: a rule of that name exists.
        """
        body = validation.require_object(body)
        validation.reject_unknown(body, RULE_FIELDS)
        validation.require_fields(body, ('name', 'description', 'weight'))
        fields = {
            'violations': [],
            'affirmations': [],
            'enabled': True,
            **_checked_fields(body),
        }
        now = iso_utc(self._clock())
        try:
            version = self._write(
                'INSERT INTO rules (name, description, weight, violations,'
                ' affirmations, enabled, created_at, updated_at)'
                ' VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    fields['name'],
                    fields['description'],
                    fields['weight'],
                    json.dumps(fields['violations']),
                    json.dumps(fields['affirmations']),
                    int(fields['enabled']),
                    now,
                    now,
                ),
            )
        except apsw.ConstraintError:
            raise ConflictError(
                'rule_exists', f'A rule named {fields["name"]!r} exists.'
            ) from None
        return self.rule(fields['name']), version

    def update_rule(self, name: str, body: Any) -> tuple[Rule, int]:
        """Change the fields given in ``body``; the others stay as they are."""
        body = validation.require_object(body)
        validation.reject_unknown(body, RULE_FIELDS)
        if 'name' in body and body['name'] != name:
            raise InputError(
                'name',
                'name_mismatch',
                'name in the body must match the rule being changed.',
            )
        fields = _checked_fields(body)
        fields.pop('name', None)
        if not fields:
            raise InputError('', 'empty', 'Give at least one field to change.')
        current = self.rule(name)
        merged = {**current.as_dict(), **fields}
        version = self._write(
            'UPDATE rules SET description = ?, weight = ?, violations = ?,'
            ' affirmations = ?, enabled = ?, updated_at = ? WHERE name = ?',
            (
                merged['description'],
                merged['weight'],
                json.dumps(merged['violations']),
                json.dumps(merged['affirmations']),
                int(merged['enabled']),
                iso_utc(self._clock()),
                name,
            ),
        )
        return self.rule(name), version

    def delete_rule(self, name: str) -> int:
        self.rule(name)
        return self._write('DELETE FROM rules WHERE name = ?', (name,))

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Apply one change and bump the version in one transaction, then swap."""
        with self.db.transaction() as conn:
            conn.execute(sql, params)
            conn.execute(_BUMP)
        return self.reload()
