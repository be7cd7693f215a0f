"""The conscience: default rules, the sentence table, rule changes, threads."""

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from jamey import storage
from jamey.conscience import MAX_EXAMPLES
from jamey.conscience import Conscience
from jamey.errors import ConflictError
from jamey.errors import InputError
from jamey.errors import NotFoundError

# What a person would expect of the default rules.
TABLE = [
    ('I will help you carry the groceries', 'allow'),
    ('I will protect the children', 'allow'),
    ('The doctor will heal the patient', 'allow'),
    ('She comforted the crying child', 'allow'),
    ('I promise to tell the truth', 'allow'),
    ('Honestly, I think the plan is good', 'allow'),
    ('Admit your mistake and come clean', 'allow'),
    ('I will tell the truth and help them', 'allow'),
    ('The weather is nice today', 'allow'),
    ('Please water the plants at six', 'allow'),
    ('Summarize this report in three bullet points', 'allow'),
    ('What time is it in Tokyo?', 'allow'),
    # Negations
    ('I will not hurt anyone', 'allow'),
    ('I would never hurt a fly', 'allow'),
    ("I won't lie to you", 'allow'),
    ('I will not lie to you', 'allow'),
    ('I won\u2019t harm them', 'allow'),
    ("Don't kill the messenger", 'allow'),
    ('No, I will not harm her', 'allow'),
    ('I refuse to deceive my friends', 'allow'),
    ('Never lie to a child', 'allow'),
    ("I'll protect you, I won't hurt you", 'allow'),
    ('We must prevent violence', 'allow'),
    ('I will not tell the truth', 'deny'),
    # Violations, with inflections
    ('I will kill him', 'deny'),
    ('I am going to hurt them', 'deny'),
    ('She was harming the animals', 'deny'),
    ('They threatened the neighbours', 'deny'),
    ('He punched his brother', 'deny'),
    ('He bullied the new student', 'deny'),
    ('They will torture the prisoner', 'deny'),
    ('I will poison the well', 'deny'),
    ('She harassed her coworker online', 'deny'),
    ('I will steal your car', 'deny'),
    ('They stole the money', 'deny'),
    ('I will lie to the auditors', 'deny'),
    ('He lied about his age', 'deny'),
    ('Let me deceive the customer', 'deny'),
    ('We faked the test results', 'deny'),
    ('He is a liar', 'deny'),
    ('The report misleads investors', 'deny'),
    ('I will help you hide the truth', 'deny'),
    # Negation does not cross a sentence, case and width do not matter
    ('I will hurt you. Not today, but soon', 'deny'),
    ('I will HURT you', 'deny'),
    (
        '\uff29 \uff57\uff49\uff4c\uff4c \uff4b\uff49\uff4c\uff4c \uff59\uff4f\uff55',
        'deny',
    ),
    ('not the point: we will deceive them', 'deny'),
]


@pytest.fixture
def conscience(db: storage.Database) -> Conscience:
    return Conscience(db, clock=lambda: 1_700_000_000.25)


def test_everyday_counterexamples_extend_what_an_operator_left(
    tmp_path: Path,
) -> None:
    """0008 adds its look-alikes to a seeded rule and keeps the operator's."""
    db = storage.Database(tmp_path / 'old.db')
    bundled = storage.bundled_migrations()
    db.migrate(bundled[:7])
    conn = db.connection()
    seeded = json.loads(
        conn.execute(
            "SELECT counterexamples FROM rules WHERE name = 'no-harm'"
        ).fetchall()[0][0]
    )
    mine = [*seeded[1:], 'How do I fell a dead tree in my garden?']
    conn.execute(
        "UPDATE rules SET counterexamples = ? WHERE name = 'no-harm'",
        (json.dumps(mine),),
    )
    conn.execute("DELETE FROM rules WHERE name = 'truth'")
    db.migrate(bundled)
    (kept,) = conn.execute(
        "SELECT counterexamples FROM rules WHERE name = 'no-harm'"
    ).fetchall()[0]
    kept = json.loads(kept)
    assert kept[: len(mine)] == mine
    added = kept[len(mine) :]
    assert 'How do I drown out the traffic noise so I can sleep?' in added
    assert len(added) == len(set(added)) and seeded[0] not in kept
    assert conn.execute(
        "SELECT count(*) FROM rules WHERE name = 'truth'"
    ).fetchall() == [(0,)]
    db.close()


def rule_body(**fields: Any) -> dict[str, Any]:
    return {'name': 'tidy', 'description': 'Keep things tidy', 'weight': 2.0, **fields}


def test_default_rules_are_seeded(conscience: Conscience) -> None:
    version, rules = conscience.rules()
    assert version == 3
    by_name = {r.name: r for r in rules}
    assert by_name['no-harm'].weight == 10.0
    assert by_name['no-harm'].description == 'Do not cause physical or emotional harm'
    assert by_name['truth'].weight == 8.0
    assert by_name['truth'].description == 'Be honest and truthful'
    for rule in rules:
        assert len(rule.examples) >= 100 and len(rule.counterexamples) >= 100
        # The seeded lists fit the limit, so an operator can still edit them.
        assert max(len(rule.examples), len(rule.counterexamples)) <= MAX_EXAMPLES
        assert len(rule.violations) >= 20
        assert len(rule.affirmations) >= 15
        assert rule.enabled


@pytest.mark.parametrize(('sentence', 'verdict'), TABLE)
def test_sentences_get_the_verdict_a_person_expects(
    conscience: Conscience, sentence: str, verdict: str
) -> None:
    assert len(TABLE) >= 40
    result = conscience.evaluate(sentence)
    assert result['verdict'] == verdict, result['findings']
    for finding in result['findings']:
        assert 0 <= finding['start'] < finding['end'] <= len(sentence)


def test_a_rule_from_the_original_api_has_a_warning(conscience: Conscience) -> None:
    rule, version = conscience.create_rule(rule_body())
    assert version == 4
    assert rule.warnings == [
        'The rule has no phrases and no examples yet, so it matches nothing.'
    ]
    assert rule.created_at == '2023-11-14T22:13:20.250Z'
    assert conscience.evaluate('make a mess')['rules_version'] == 4


def test_rule_lifecycle(conscience: Conscience) -> None:
    conscience.create_rule(
        rule_body(violations=['make a mess'], affirmations=['tidy up'])
    )
    assert conscience.evaluate('they make a mess')['verdict'] == 'review'
    rule, version = conscience.update_rule('tidy', {'weight': 9.0})
    assert (rule.weight, rule.violations, version) == (9.0, ('make a mess',), 5)
    assert conscience.evaluate('they make a mess')['verdict'] == 'deny'
    conscience.update_rule('tidy', {'enabled': False})
    assert conscience.evaluate('they make a mess')['findings'] == []
    assert conscience.delete_rule('tidy') == 7
    with pytest.raises(NotFoundError):
        conscience.rule('tidy')
    with pytest.raises(NotFoundError):
        conscience.update_rule('tidy', {'weight': 1.0})
    with pytest.raises(NotFoundError):
        conscience.delete_rule('tidy')


def test_duplicate_names_conflict(conscience: Conscience) -> None:
    with pytest.raises(ConflictError) as caught:
        conscience.create_rule(rule_body(name='truth'))
    assert caught.value.code == 'rule_exists'
    assert conscience.rules()[0] == 3, 'a refused change does not bump the version'


def test_deny_weight_is_applied_on_reload(conscience: Conscience) -> None:
    assert conscience.evaluate('I will lie')['verdict'] == 'deny'
    conscience.reload(deny_weight=9.0)
    assert conscience.evaluate('I will lie')['verdict'] == 'review'


def test_rules_survive_reopening_the_database(tmp_path: Path) -> None:
    first = storage.Database(tmp_path / 'jamey.db')
    first.migrate()
    Conscience(first).create_rule(rule_body(violations=['litter']))
    first.close()
    again = storage.Database(tmp_path / 'jamey.db')
    again.migrate()
    result = Conscience(again).evaluate('they litter')
    assert result['rules_version'] == 4
    assert result['verdict'] == 'review'


LONG = 'x' * 101
BAD_RULES = [
    ([], '', 'wrong_type'),
    (rule_body(name='Bad Name'), 'name', 'invalid_name'),
    (rule_body(name='a' * 65), 'name', 'invalid_name'),
    (rule_body(name='-dash'), 'name', 'invalid_name'),
    (rule_body(name=7), 'name', 'invalid_name'),
    (rule_body(description=''), 'description', 'empty'),
    (rule_body(description='d' * 501), 'description', 'too_long'),
    (rule_body(description='bell\x07'), 'description', 'control_characters'),
    (rule_body(description=['x']), 'description', 'wrong_type'),
    (rule_body(weight='heavy'), 'weight', 'wrong_type'),
    (rule_body(weight=True), 'weight', 'wrong_type'),
    (rule_body(weight=None), 'weight', 'wrong_type'),
    (rule_body(weight=float('nan')), 'weight', 'out_of_range'),
    (rule_body(weight=float('inf')), 'weight', 'out_of_range'),
    (rule_body(weight=0), 'weight', 'out_of_range'),
    (rule_body(weight=-3), 'weight', 'out_of_range'),
    (rule_body(weight=100.01), 'weight', 'out_of_range'),
    (rule_body(violations='kill'), 'violations', 'wrong_type'),
    (rule_body(violations=['']), 'violations[0]', 'empty'),
    (rule_body(violations=['ok', LONG]), 'violations[1]', 'too_long'),
    (rule_body(violations=[5]), 'violations[0]', 'wrong_type'),
    (rule_body(violations=['!!!']), 'violations[0]', 'no_words'),
    (rule_body(affirmations=['w'] * 201), 'affirmations', 'too_many'),
    (rule_body(affirmations=['new\rline']), 'affirmations[0]', 'control_characters'),
    (rule_body(enabled='yes'), 'enabled', 'wrong_type'),
    (rule_body(colour='red'), 'colour', 'unknown_field'),
    ({'name': 'x', 'weight': 1}, 'description', 'required'),
    ({'name': 'x', 'description': 'd'}, 'weight', 'required'),
]


@pytest.mark.parametrize(('body', 'field', 'code'), BAD_RULES)
def test_invalid_rules_name_field_and_code(
    conscience: Conscience, body: Any, field: str, code: str
) -> None:
    with pytest.raises(InputError) as caught:
        conscience.create_rule(body)
    assert (caught.value.field, caught.value.code) == (field, code)
    assert conscience.rules()[0] == 3


def test_limits_are_inclusive(conscience: Conscience) -> None:
    body = rule_body(
        name='a' * 64, description='d' * 500, weight=100, violations=['v' * 100] * 200
    )
    rule, _ = conscience.create_rule(body)
    assert rule.weight == 100.0


@pytest.mark.parametrize(
    ('body', 'field', 'code'),
    [
        ({}, '', 'empty'),
        ({'name': 'truth'}, '', 'empty'),
        ({'name': 'other', 'weight': 3}, 'name', 'name_mismatch'),
        ({'weight': 0}, 'weight', 'out_of_range'),
        ({'size': 1}, 'size', 'unknown_field'),
        ('weight', '', 'wrong_type'),
    ],
)
def test_invalid_updates(
    conscience: Conscience, body: Any, field: str, code: str
) -> None:
    with pytest.raises(InputError) as caught:
        conscience.update_rule('truth', body)
    assert (caught.value.field, caught.value.code) == (field, code)


@pytest.mark.parametrize(
    ('action', 'code'),
    [
        ('', 'empty'),
        ('   \n', 'empty'),
        ('a' * 10_001, 'too_long'),
        ('nul\x00byte', 'control_characters'),
        ('escape \x1b[31m', 'control_characters'),
        ('carriage\rreturn', 'control_characters'),
        ('c1 \x85 control', 'control_characters'),
        (5, 'wrong_type'),
        (None, 'wrong_type'),
        (['kill'], 'wrong_type'),
    ],
)
def test_invalid_actions(conscience: Conscience, action: Any, code: str) -> None:
    with pytest.raises(InputError) as caught:
        conscience.evaluate(action)
    assert (caught.value.field, caught.value.code) == ('action', code)


def test_tabs_newlines_and_the_longest_action_are_fine(conscience: Conscience) -> None:
    assert conscience.evaluate('line one\n\tline two')['verdict'] == 'allow'
    assert conscience.evaluate('kill ' * 2000)['verdict'] == 'deny'


def test_every_evaluation_is_judged_by_exactly_one_rule_set(
    conscience: Conscience,
) -> None:
    sets = {'A': ['alpha'], 'B': ['beta']}
    _, initial = conscience.create_rule(rule_body(name='switch', violations=sets['A']))
    version_to_set = {initial: 'A'}
    results: list[tuple[int, list[str]]] = []
    done = threading.Event()

    def writer() -> None:
        for i in range(150):
            name = 'B' if i % 2 == 0 else 'A'
            _, version = conscience.update_rule('switch', {'violations': sets[name]})
            version_to_set[version] = name
        done.set()

    def evaluator() -> None:
        mine = []
        while not done.is_set():
            result = conscience.evaluate('alpha beta gamma ' * 50)
            phrases = sorted(
                {f['phrase'] for f in result['findings'] if f['rule'] == 'switch'}
            )
            mine.append((result['rules_version'], phrases))
        results.extend(mine)

    threads = [threading.Thread(target=evaluator) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({version for version, _ in results}) > 1, 'rules changed meanwhile'
    for version, phrases in results:
        assert phrases == sets[version_to_set[version]], version
