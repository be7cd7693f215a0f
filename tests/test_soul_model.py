"""The soul's formulas against values worked out by hand."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jamey.soul import model
from jamey.soul.model import Emotion

J, S, A, N, L = (
    Emotion.JOY,
    Emotion.SADNESS,
    Emotion.ANGER,
    Emotion.NEUTRAL,
    Emotion.LOVE,
)


@pytest.mark.parametrize(
    ('intensities', 'expected'),
    [
        # No emotion, or none felt: neutral empathy.
        ({}, 0.5),
        ({J: 0.0}, 0.5),
        # One emotion: its weight mapped from -0.5..1.2 onto 0..1.
        ({J: 0.8}, (1.0 + 0.5) / 1.7),  # 0.882353
        ({L: 1.0}, 1.0),
        ({A: 0.1}, 0.0),
        ({N: 0.5}, (0.5 + 0.5) / 1.7),  # 0.588235
        ({S: 0.2}, (-0.3 + 0.5) / 1.7),  # 0.117647
        # Mixed: (0.8 x 1.0 + 0.2 x -0.3) / (0.8 + 0.2) = 0.74 -> 1.24 / 1.7
        ({J: 0.8, S: 0.2}, 1.24 / 1.7),
        # (1.0 x 1.2 + 1.0 x -0.5) / 2 = 0.35 -> 0.85 / 1.7 = 0.5
        ({L: 1.0, A: 1.0}, 0.5),
        # (0.5 x 0.5 + 0.5 x 1.0 + 0.5 x -0.5) / 1.5 = 1/3 -> (1/3 + 0.5) / 1.7
        ({N: 0.5, J: 0.5, A: 0.5}, (1 / 3 + 0.5) / 1.7),
    ],
)
def test_empathy(intensities: dict[Emotion, float], expected: float) -> None:
    assert model.empathy(intensities) == pytest.approx(expected)


@pytest.mark.parametrize(
    ('empathy', 'boost'),
    [
        (0.69, 0.0),
        (0.7, 0.0),
        (0.71, 0.005),  # (0.71 - 0.7) x 0.5
        (1.0, 0.15),
        (0.3, 0.0),
        (0.29, -0.003),  # (0.29 - 0.3) x 0.3
        (0.0, -0.09),
        (0.5, 0.0),
    ],
)
def test_trust_boost(empathy: float, boost: float) -> None:
    assert model.trust_boost(empathy) == pytest.approx(boost)


@pytest.mark.parametrize(
    ('empathy', 'rate'),
    [(0.71, 0.0005), (0.7, 0.001), (0.5, 0.001), (0.3, 0.001), (0.29, 0.002)],
)
def test_decay_rate(empathy: float, rate: float) -> None:
    assert model.decay_rate(empathy) == pytest.approx(rate)


@pytest.mark.parametrize(
    ('trust', 'rate', 'hours', 'expected'),
    [
        (0.5, 0.001, 0.5, 0.4995),  # 30 minutes
        (0.5, 0.0005, 0.5, 0.49975),
        (0.5, 0.001, 240.0, 0.26),  # 10 days
        (0.5, 0.002, 240.0, 0.02),
        (0.1, 0.002, 240.0, 0.0),  # clamped at 0
        (0.5, 0.001, -5.0, 0.5),  # a clock step back decays nothing
        (0.7, 0.001, 0.0, 0.7),
    ],
)
def test_decayed_trust(
    trust: float, rate: float, hours: float, expected: float
) -> None:
    assert model.decayed_trust(trust, rate, hours) == pytest.approx(expected)


@pytest.mark.parametrize(
    ('trust', 'empathy', 'expected'),
    [
        (0.95, 1.0, 1.0),  # clamped at 1
        (0.5, 0.71, 0.505),
        (0.5, 0.69, 0.5),
        (0.5, 0.29, 0.497),
        (0.05, 0.0, 0.0),  # clamped at 0
    ],
)
def test_boosted_trust(trust: float, empathy: float, expected: float) -> None:
    assert model.boosted_trust(trust, empathy) == pytest.approx(expected)


@pytest.mark.parametrize(
    ('text', 'emotion'),
    [
        ('joy', J),
        ('JOY', J),
        ('happy', J),
        ('😊', J),
        ('sad', S),
        ('😢', S),
        ('angry', A),
        ('😡', A),
        ('neutral', N),
        ('😐', N),
        ('love', L),
        ('😍', L),
        (' Love ', L),
        ('glee', None),
        ('', None),
        ('😊😊', None),
    ],
)
def test_parse_emotion(text: str, emotion: Emotion | None) -> None:
    assert model.parse_emotion(text) is emotion


@pytest.mark.parametrize(
    ('verdict', 'score', 'emotion', 'intensity'),
    [
        ('deny', -10.0, A, 10 / 18),
        ('review', -2.0, S, 2 / 18),
        ('allow', 18.0, L, 1.0),
        ('allow', 13.5, L, 0.75),  # exactly 75% of the maximum
        ('allow', 13.0, J, 13 / 18),
        ('allow', 8.0, J, 8 / 18),
        ('allow', 0.0, N, 0.5),  # no evidence: the default intensity
    ],
)
def test_verdict_emotions(
    verdict: str, score: float, emotion: Emotion, intensity: float
) -> None:
    felt = model.verdict_emotion(verdict, score, 18.0)
    assert felt is emotion
    assert model.verdict_intensity(felt, score, 18.0) == pytest.approx(intensity)


def test_dominant_and_descriptions() -> None:
    assert model.dominant({}) is None
    assert model.dominant({J: 0.8, A: 0.9}) is A
    assert model.dominant({J: 0.5, S: 0.5}) is J  # ties: the order of Emotion
    assert [model.empathy_description(e) for e in (0.9, 0.7, 0.5, 0.3, 0.1)] == [
        'very high',
        'high',
        'moderate',
        'low',
        'very low',
    ]


units = st.floats(min_value=0.0, max_value=1.0)


@given(
    trust=units,
    steps=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(list(Emotion)), units, max_size=5),
            st.floats(min_value=0.0, max_value=1e6),
            st.floats(min_value=0.0, max_value=0.01),
        ),
        max_size=20,
    ),
)
def test_trust_stays_in_unit_range(
    trust: float, steps: list[tuple[dict[Emotion, float], float, float]]
) -> None:
    for intensities, hours, rate in steps:
        empathy = model.empathy(intensities)
        assert 0.0 <= empathy <= 1.0
        trust = model.boosted_trust(trust, empathy)
        assert 0.0 <= trust <= 1.0
        trust = model.decayed_trust(trust, rate, hours)
        assert 0.0 <= trust <= 1.0
