"""The conscience: weighted rules in SQLite, judged by the Rust scorer.

SQLite holds the rules and a ``rules_version`` that goes up with every
change, in the same transaction. The compiled scorer and the version it was
built from are held as one pair and replaced as one, so every evaluation is
judged by exactly one rule set and says which.

A rule is judged by its phrases and, where the sentence encoder is loaded,
by its examples and counterexamples: the text's embedding against theirs
(``jamey.meaning``, ``docs/conscience.md``). Where a guard model is
configured and those layers are unsure, its rulings decide the rules it was
asked about (``jamey.guard``).
"""

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import apsw

from jamey import checksums
from jamey import validation
from jamey._core import Scorer
from jamey.clock import iso_utc
from jamey.errors import ConflictError
from jamey.errors import InputError
from jamey.errors import ModelError
from jamey.errors import NotFoundError
from jamey.errors import RuleError
from jamey.guard import ON_FAILURE_DENY
from jamey.guard import ON_FAILURE_REVIEW
from jamey.guard import Category
from jamey.guard import Guard
from jamey.meaning import ExampleEmbeddings
from jamey.storage import Database

MAX_ACTION_CHARS = 10_000
MAX_DESCRIPTION_CHARS = 500
MAX_PHRASE_CHARS = 100
MAX_PHRASES = 200
MAX_WEIGHT = 100.0
MAX_EXAMPLE_CHARS = 500
MAX_EXAMPLES = 500
RULE_FIELDS = (
    'name',
    'description',
    'weight',
    'violations',
    'affirmations',
    'examples',
    'counterexamples',
    'enabled',
)
NO_PHRASES_WARNING = (
    'The rule has no phrases and no examples yet, so it matches nothing.'
)
LAYER_PHRASES = 'phrases'
LAYER_EXAMPLES = 'examples'
LAYER_GUARD = 'guard'


class Rule(NamedTuple):
    name: str
    description: str
    weight: float
    violations: tuple[str, ...]
    affirmations: tuple[str, ...]
    examples: tuple[str, ...]
    counterexamples: tuple[str, ...]
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
            'examples': list(self.examples),
            'counterexamples': list(self.counterexamples),
            'enabled': self.enabled,
            'created_at': self.created_at,
            'updated_at': self.updated_at,
        }

    @property
    def warnings(self) -> list[str]:
        judged = (
            self.violations
            or self.affirmations
            or self.examples
            or self.counterexamples
        )
        return [] if judged else [NO_PHRASES_WARNING]


def _rule_from_row(row: tuple[Any, ...]) -> Rule:
    name, description, weight, violations, affirmations, examples, counter = row[:7]
    enabled, created, updated = row[7:]
    return Rule(
        name,
        description,
        weight,
        tuple(json.loads(violations)),
        tuple(json.loads(affirmations)),
        tuple(json.loads(examples)),
        tuple(json.loads(counter)),
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


def _examples(field: str, value: Any) -> list[str]:
    return validation.text_list(field, value, MAX_EXAMPLES, MAX_EXAMPLE_CHARS)


def _checked_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the rule fields present in ``body`` (all optional here)."""
    checks: dict[str, Callable[[str, Any], Any]] = {
        'name': validation.slug,
        'description': lambda f, v: validation.text(f, v, MAX_DESCRIPTION_CHARS),
        'weight': lambda f, v: validation.number(f, v, 0.0, MAX_WEIGHT),
        'violations': _phrases,
        'affirmations': _phrases,
        'examples': _examples,
        'counterexamples': _examples,
        'enabled': validation.boolean,
    }
    return {field: checks[field](field, value) for field, value in body.items()}


_SELECT = (
    'SELECT name, description, weight, violations, affirmations, examples,'  # noqa: S608 - constants only
    ' counterexamples, enabled, created_at, updated_at,'
    f' {checksums.damaged_key("rules")} FROM rules'
)
_LISTS = ('violations', 'affirmations', 'examples', 'counterexamples')
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
    # The enabled rules by name, for naming examples by index; empty when
    # meaning is not judged.
    rules: dict[str, Rule]
    # The enabled rules as a guard model's categories.
    categories: tuple[Category, ...]


class Conscience:
    """Rules and their evaluation; safe to use from many threads.

    With ``embeddings`` (the sentence encoder loaded), rules are judged by
    their examples too; ``threshold`` is the similarity a nearest example or
    counterexample must pass for it to judge. With ``guard``, a guard model
    is asked where those layers are unsure.
    """

    def __init__(
        self,
        db: Database,
        deny_weight: float = 8.0,
        clock: Callable[[], float] = time.time,
        *,
        embeddings: ExampleEmbeddings | None = None,
        threshold: float = 1.0,
        guard: Guard | None = None,
    ) -> None:
        self.db = db
        self.deny_weight = deny_weight
        self.threshold = threshold
        self.embeddings = embeddings
        self.guard = guard
        self._clock = clock
        self._swap = threading.Lock()
        self._compiled = Compiled(0, Scorer([], deny_weight), 0.0, {}, ())
        self.reload()

    def reload(
        self, deny_weight: float | None = None, threshold: float | None = None
    ) -> int:
        """Recompile from the database; returns the rules version now in force.

        Two writers can finish in either order; comparing versions under the
        lock means an older compilation never replaces a newer one. Examples
        new to the cache are encoded here, outside every transaction.
        """
        weight = self.deny_weight if deny_weight is None else deny_weight
        bar = self.threshold if threshold is None else threshold
        version, rules = self.rules()
        enabled = tuple(r for r in rules if r.enabled)
        specs = [
            (r.name, r.weight, list(r.violations), list(r.affirmations))
            for r in enabled
        ]
        judged_by_meaning = self.embeddings is not None and any(
            r.examples or r.counterexamples for r in enabled
        )
        if self.embeddings is not None and judged_by_meaning:
            vectors = self.embeddings.vectors(
                t for r in enabled for t in (*r.examples, *r.counterexamples)
            )
            examples = [
                (
                    [vectors[t] for t in r.examples],
                    [vectors[t] for t in r.counterexamples],
                )
                for r in enabled
            ]
            scorer = Scorer(specs, weight, examples=examples, threshold=bar)
        else:
            scorer = Scorer(specs, weight)
        compiled = Compiled(
            version,
            scorer,
            sum(r.weight for r in enabled),
            {r.name: r for r in enabled} if judged_by_meaning else {},
            tuple(Category(r.name, r.description) for r in enabled),
        )
        with self._swap:
            if version >= self._compiled.version:
                self._compiled = compiled
                self.deny_weight = weight
                self.threshold = bar
            return self._compiled.version

    def evaluate(self, action: Any, deny_weight: float | None = None) -> dict[str, Any]:
        """Judge an action; the result names the rule set that judged it and
        the layer that decided (``phrases``, ``examples`` or ``guard``).

        ``deny_weight`` replaces ``conscience.deny_weight`` for this action
        (stricter judgement of someone trusted less).
        """
        validation.text('action', action, MAX_ACTION_CHARS)
        compiled = self._compiled  # one read: one rule set
        embedding = None
        if compiled.rules and self.embeddings is not None:
            embedding = self.embeddings.encode(action)
        score, verdict, findings, meanings = compiled.scorer.evaluate(
            action, deny_weight=deny_weight, embedding=embedding
        )
        outcomes = {rule: outcome for rule, outcome, *_ in meanings}
        layer = _layer(verdict, findings, outcomes)
        cleared = {rule for rule, outcome in outcomes.items() if outcome == 'cleared'}
        guard = None
        model = self.guard  # one read: a reload may replace it
        if model is not None and compiled.categories:
            similarities = (
                near[1] for m in meanings for near in m[3:] if near is not None
            )
            if model.wanted(verdict, similarities, self.threshold):
                guard, rulings = self._ask_guard(model, action, compiled)
                if rulings is not None:
                    score, verdict, findings, meanings = compiled.scorer.evaluate(
                        action,
                        deny_weight=deny_weight,
                        embedding=embedding,
                        rulings=rulings,
                    )
                    layer = LAYER_GUARD
                    cleared = {rule for rule, broken in rulings.items() if not broken}
                elif (failed := _failed_verdict(verdict, model)) != verdict:
                    verdict, layer = failed, LAYER_GUARD
        return {
            'action': action,
            'score': score,
            'verdict': verdict,
            'layer': layer,
            'findings': [
                {
                    'rule': rule,
                    'polarity': polarity,
                    'phrase': phrase,
                    'start': start,
                    'end': end,
                    'negated': negated,
                    'overruled': polarity == 'violation' and rule in cleared,
                }
                for rule, polarity, phrase, start, end, negated in findings
            ],
            'meaning': [
                {
                    'rule': rule,
                    'outcome': outcome,
                    'strength': round(strength, 4),
                    'example': _nearest(compiled.rules[rule].examples, example),
                    'counterexample': _nearest(
                        compiled.rules[rule].counterexamples, counterexample
                    ),
                }
                for rule, outcome, strength, example, counterexample in meanings
            ],
            'guard': guard,
            'rules_version': compiled.version,
            'max_score': compiled.max_score,
        }

    @staticmethod
    def _ask_guard(
        guard: Guard, action: str, compiled: Compiled
    ) -> tuple[dict[str, Any], dict[str, bool] | None]:
        """What the evaluation shows of the guard, and its rulings (None
        when it failed)."""
        started = time.perf_counter()
        rulings: dict[str, bool] | None = None
        try:
            rulings = guard.rule(action, compiled.categories)
        except ModelError as exc:
            shown: dict[str, Any] = {'outcome': 'failed', 'error': exc.code}
        else:
            violated = sorted(name for name, broken in rulings.items() if broken)
            shown = {'outcome': 'answered', 'violated': violated}
        shown['latency_ms'] = round((time.perf_counter() - started) * 1000, 1)
        return shown, rulings

    def rules(self) -> tuple[int, list[Rule]]:
        """Every rule (enabled or not) and the version they make up together."""
        conn = self.db.connection()
        with conn:  # one snapshot for both reads
            version = self.version()
            rows = self.db.read_rows('rules', f'{_SELECT} ORDER BY name')
        return version, [_rule_from_row(row) for row in rows]

    def version(self) -> int:
        """The version of the rule set in the database."""
        return int(self.db.connection().execute(_VERSION).get)

    def rule(self, name: str) -> Rule:
        row = self.db.read_rows('rules', f'{_SELECT} WHERE name = ?', (name,))
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
            'examples': [],
            'counterexamples': [],
            'enabled': True,
            **_checked_fields(body),
        }
        now = iso_utc(self._clock())
        try:
            version = self._write(
                'INSERT INTO rules (name, description, weight, violations,'
                ' affirmations, examples, counterexamples, enabled, created_at,'
                ' updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    fields['name'],
                    fields['description'],
                    fields['weight'],
                    *(json.dumps(fields[f]) for f in _LISTS),
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
            ' affirmations = ?, examples = ?, counterexamples = ?, enabled = ?,'
            ' updated_at = ? WHERE name = ?',
            (
                merged['description'],
                merged['weight'],
                *(json.dumps(merged[f]) for f in _LISTS),
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


def _failed_verdict(verdict: str, guard: Guard) -> str:
    """The verdict when the guard could not rule (``on_failure``): at least
    review, deny, or what the cheap layers said."""
    on_failure = guard.settings.on_failure
    if on_failure == ON_FAILURE_DENY:
        return 'deny'
    if on_failure == ON_FAILURE_REVIEW and verdict == 'allow':
        return 'review'
    return verdict


def broken_rules(evaluation: dict[str, Any]) -> list[str]:
    """The rules an evaluation found violated, sorted: by the guard model
    where it ruled (on every enabled rule), else by phrase or by meaning."""
    guard = evaluation['guard']
    if guard is not None and guard['outcome'] == 'answered':
        return list(guard['violated'])
    rules = {m['rule'] for m in evaluation['meaning'] if m['outcome'] == 'violated'}
    rules.update(
        f['rule']
        for f in evaluation['findings']
        if f['polarity'] == 'violation' and not f['overruled']
    )
    return sorted(rules)


def _nearest(texts: tuple[str, ...], found: tuple[int, float] | None) -> Any:
    """A nearest example or counterexample as the API shows it."""
    if found is None:
        return None
    index, similarity = found
    return {'text': texts[index], 'similarity': round(similarity, 4)}


def _layer(
    verdict: str,
    findings: list[tuple[str, str, str, int, int, bool]],
    outcomes: dict[str, str],
) -> str:
    """The layer that decided: ``examples`` where a rule was violated by
    meaning (for a verdict other than allow) or had its phrase violations
    overruled by a counterexample (for allow); ``phrases`` otherwise."""
    if verdict != 'allow':
        decided = any(o == 'violated' for o in outcomes.values())
    else:
        decided = any(
            polarity == 'violation' and outcomes.get(rule) == 'cleared'
            for rule, polarity, *_ in findings
        )
    return LAYER_EXAMPLES if decided else LAYER_PHRASES
