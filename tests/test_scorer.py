"""jamey._core.Scorer against the pure-Python oracle, on generated input."""

import pytest
from conscience_oracle import Rule
from conscience_oracle import evaluate as oracle_evaluate
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from jamey._core import Scorer
from jamey.errors import RuleError

VOCABULARY = [
    'harm',
    'harming',
    'harmed',
    'harmless',
    'hurt',
    'hurts',
    'kill',
    'killing',
    'lie',
    'lying',
    'lies',
    'liar',
    'truth',
    'truthful',
    'honest',
    'help',
    'helpful',
    'protect',
    'protecting',
    'deceive',
    'deceived',
    'not',
    'never',
    "don't",
    'don’t',
    "won't",
    'no',
    'without',
    'I',
    'you',
    'them',
    'will',
    'the',
    'a',
    'cannot',
    'Ärger',
    'STRASSE',
    'straße',
    'ﬁre',
    'fire',
    'Ｈａｒｍ',
    'naïve',
    'naı̈ve',
    'שלום',
    'سلام',
    '😡',
    'e\u0301',
    'Σίσυφος',
    'ΣΊΣΥΦΟΣ',
    'ǅemal',
    '½',
    '१२३',
    'x' * 300,
    'refused',
    'stop',
    'against',
    'Avoiding',
]
SEPARATORS = [
    ' ',
    '  ',
    ', ',
    '. ',
    '! ',
    '? ',
    '; ',
    '\n',
    '\t',
    '—',
    "'",
    '-',
    ' 😊 ',
    '\u200f',
    '\u0301',
]


# Characters this Python's Unicode tables know (not Cn): both sides agree on
# those; characters assigned after Python 3.11's Unicode 14 may not.
known = st.characters(exclude_categories=['Cn', 'Cs'])
noise = st.text(known, min_size=1, max_size=12)
vocabulary = st.sampled_from(VOCABULARY)
word = st.one_of(vocabulary, vocabulary, vocabulary, noise)
text = st.lists(st.tuples(word, st.sampled_from(SEPARATORS)), max_size=40).map(
    lambda parts: ''.join(w + s for w, s in parts)
)
phrase = st.lists(st.sampled_from(VOCABULARY[:28]), min_size=1, max_size=3).map(
    ' '.join
)


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        Rule(
            name=f'rule-{i}',
            weight=draw(st.floats(min_value=0.001, max_value=100.0)),
            violations=tuple(draw(st.lists(phrase, max_size=5))),
            affirmations=tuple(draw(st.lists(phrase, max_size=5))),
        )
        for i in range(count)
    ]


def rust_evaluate(rules: list[Rule], deny_weight: float, text: str) -> tuple:
    scorer = Scorer(
        [(r.name, r.weight, list(r.violations), list(r.affirmations)) for r in rules],
        deny_weight,
    )
    first = scorer.evaluate(text)
    assert scorer.evaluate(text) == first, 'a warm scorer judges the same'
    assert first[3] == [], 'without examples nothing is judged by meaning'
    return first[:3]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=rule_sets(), deny_weight=st.floats(min_value=0.5, max_value=100.0), text=text
)
def test_rust_agrees_with_the_oracle(
    rules: list[Rule], deny_weight: float, text: str
) -> None:
    result = rust_evaluate(rules, deny_weight, text)
    event(f'verdict {result[1]}, findings: {min(len(result[2]), 3)}')
    assert result == oracle_evaluate(rules, deny_weight, text)


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets(), text=st.text(known, max_size=200))
def test_arbitrary_unicode_agrees_too(rules: list[Rule], text: str) -> None:
    assert rust_evaluate(rules, 8.0, text) == oracle_evaluate(rules, 8.0, text)


def test_offsets_are_python_string_indices() -> None:
    sentence = '😡😡 Ｈａｒｍ and e\u0301 harmed'
    scorer = Scorer([('no-harm', 10.0, ['harm'], [])], 8.0)
    _, _, findings, _ = scorer.evaluate(sentence)
    assert [sentence[f[3] : f[4]] for f in findings] == ['Ｈａｒｍ', 'harmed']


@pytest.mark.parametrize('weight', [0.0, -1.0, float('nan'), float('inf')])
def test_bad_weights_raise_rule_error(weight: float) -> None:
    with pytest.raises(RuleError, match='weight'):
        Scorer([('x', weight, ['a'], [])], 8.0)


def test_a_phrase_without_words_raises_rule_error() -> None:
    with pytest.raises(RuleError, match='has no words'):
        Scorer([('x', 1.0, ['...'], [])], 8.0)


def test_empty_rule_set_and_empty_text() -> None:
    assert Scorer([], 8.0).evaluate('anything') == (0.0, 'allow', [], [])
    assert Scorer([('x', 1.0, ['a'], [])], 8.0).evaluate('') == (0.0, 'allow', [], [])


@pytest.mark.parametrize('weight', [0.0, -1.0, float('nan'), float('inf')])
def test_a_deny_weight_override_must_be_a_positive_number(weight: float) -> None:
    scorer = Scorer([('tidy', 5.0, ['mess'], [])], 8.0)
    with pytest.raises(ValueError, match='deny_weight'):
        scorer.evaluate('a mess', deny_weight=weight)


def test_a_deny_weight_override_changes_only_the_verdict() -> None:
    scorer = Scorer([('tidy', 5.0, ['mess'], [])], 8.0)
    usual = scorer.evaluate('a mess')
    strict = scorer.evaluate('a mess', deny_weight=5.0)
    assert (usual[1], strict[1]) == ('review', 'deny')
    assert (usual[0], usual[2]) == (strict[0], strict[2])


def _unit(x: float, y: float) -> list[float]:
    norm = (x * x + y * y) ** 0.5
    return [x / norm, y / norm]


def _scorer_with_examples() -> Scorer:
    """``no-harm`` with one example along x and one counterexample along y."""
    return Scorer(
        [('no-harm', 10.0, ['kill'], []), ('tidy', 2.0, ['mess'], [])],
        8.0,
        examples=[([_unit(1, 0)], [_unit(0, 1)]), ([], [])],
        threshold=0.5,
    )


def test_examples_violate_clear_or_leave_it_to_the_phrases() -> None:
    scorer = _scorer_with_examples()
    score, verdict, findings, meanings = scorer.evaluate(
        'no phrase here', embedding=_unit(1, 0.1)
    )
    assert verdict == 'deny' and findings == []
    [(rule, outcome, strength, example, counterexample)] = meanings
    assert (rule, outcome, example[0], counterexample[0]) == (
        'no-harm',
        'violated',
        0,
        0,
    )
    assert 0 < strength <= 1 and score == -10.0 * strength
    _, verdict, findings, meanings = scorer.evaluate(
        'kill the process', embedding=_unit(0.1, 1)
    )
    assert verdict == 'allow' and len(findings) == 1
    assert meanings[0][1] == 'cleared'
    # Nothing near: the phrase decides, as without examples.
    far = scorer.evaluate('kill the process', embedding=_unit(-1, -1))
    assert far[:3] == scorer.evaluate('kill the process')[:3]
    assert far[3][0][1] == 'unsure'


def test_examples_are_checked_when_compiled() -> None:
    rules = [('no-harm', 10.0, ['kill'], [])]
    with pytest.raises(RuleError, match='values where the others have'):
        Scorer(rules, 8.0, examples=[([[1.0, 0.0], [1.0]], [])], threshold=0.5)
    with pytest.raises(RuleError, match='not finite'):
        Scorer(rules, 8.0, examples=[([[float('nan'), 0.0]], [])], threshold=0.5)
    for threshold in (0.0, 1.5, float('nan')):
        with pytest.raises(RuleError, match='threshold'):
            Scorer(rules, 8.0, examples=[([], [])], threshold=threshold)
    with pytest.raises(RuleError, match='for 2 rules'):
        Scorer(rules, 8.0, examples=[([], []), ([], [])], threshold=0.5)
    with pytest.raises(ValueError, match='together'):
        Scorer(rules, 8.0, examples=[([], [])])
    with pytest.raises(ValueError, match='values where the others have'):
        _scorer_with_examples().evaluate('x', embedding=[1.0, 0.0, 0.0])
