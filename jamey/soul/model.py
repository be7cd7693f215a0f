"""The Phase 4.6 mathematics of the soul, one named function per formula.

Pure functions of numbers: no storage, no clock. ``docs/soul.md`` gives the
same formulas in prose, and ``tests/test_soul_model.py`` checks each against
values computed by hand.
"""

import enum
import math
from collections.abc import Mapping


class Emotion(enum.Enum):
    """The five emotions, with their emoji."""

    JOY = 'joy'
    SADNESS = 'sadness'
    ANGER = 'anger'
    NEUTRAL = 'neutral'
    LOVE = 'love'

    @property
    def emoji(self) -> str:
        return _EMOJI[self]

    @property
    def default_intensity(self) -> float:
        """The intensity recorded when none is given."""
        return _DEFAULT_INTENSITY[self]

    @property
    def empathy_weight(self) -> float:
        return _EMPATHY_WEIGHT[self]


_EMOJI = {
    Emotion.JOY: '😊',
    Emotion.SADNESS: '😢',
    Emotion.ANGER: '😡',
    Emotion.NEUTRAL: '😐',
    Emotion.LOVE: '😍',
}
_DEFAULT_INTENSITY = {
    Emotion.JOY: 0.8,
    Emotion.SADNESS: 0.2,
    Emotion.ANGER: 0.1,
    Emotion.NEUTRAL: 0.5,
    Emotion.LOVE: 1.0,
}
_EMPATHY_WEIGHT = {
    Emotion.JOY: 1.0,
    Emotion.LOVE: 1.2,
    Emotion.NEUTRAL: 0.5,
    Emotion.SADNESS: -0.3,
    Emotion.ANGER: -0.5,
}
_LOWEST_WEIGHT = min(_EMPATHY_WEIGHT.values())
_HIGHEST_WEIGHT = max(_EMPATHY_WEIGHT.values())
_SYNONYMS = {'happy': Emotion.JOY, 'sad': Emotion.SADNESS, 'angry': Emotion.ANGER}

DEFAULT_TRUST = 0.5
NEUTRAL_EMPATHY = 0.5  # no emotion recorded yet, or all at intensity 0
HIGH_EMPATHY = 0.7
LOW_EMPATHY = 0.3
BOOST_FACTOR = 0.5
PENALTY_FACTOR = 0.3
BASE_DECAY_PER_HOUR = 0.001
LOVE_SHARE = 0.75  # of the highest possible score, for an allow to be Love


def parse_emotion(text: str) -> Emotion | None:
    """A name (any case), a synonym (happy, sad, angry) or the emoji."""
    word = text.strip().casefold()
    for emotion in Emotion:
        if word == emotion.value or text.strip() == emotion.emoji:
            return emotion
    return _SYNONYMS.get(word)


def clamp_unit(value: float) -> float:
    """Trust, empathy and intensities all live in 0..1."""
    return min(1.0, max(0.0, value))


def empathy(intensities: Mapping[Emotion, float]) -> float:
    """The intensity-weighted average of the emotions' empathy weights,
    mapped from the weights' range (-0.5..1.2) onto 0..1.

    ``intensities`` are the current ones (the latest per emotion).
    """
    total = sum(intensities.values())
    if total <= 0:
        return NEUTRAL_EMPATHY
    average = sum(e.empathy_weight * i for e, i in intensities.items()) / total
    return clamp_unit((average - _LOWEST_WEIGHT) / (_HIGHEST_WEIGHT - _LOWEST_WEIGHT))


def trust_boost(empathy_value: float) -> float:
    """Above 0.7: +(e - 0.7) x 0.5; below 0.3: (e - 0.3) x 0.3; else 0."""
    if empathy_value > HIGH_EMPATHY:
        return (empathy_value - HIGH_EMPATHY) * BOOST_FACTOR
    if empathy_value < LOW_EMPATHY:
        return (empathy_value - LOW_EMPATHY) * PENALTY_FACTOR
    return 0.0


def decay_rate(empathy_value: float) -> float:
    """Trust lost per hour: 0.001, halved above 0.7 empathy, doubled below 0.3."""
    if empathy_value > HIGH_EMPATHY:
        return BASE_DECAY_PER_HOUR * 0.5
    if empathy_value < LOW_EMPATHY:
        return BASE_DECAY_PER_HOUR * 2.0
    return BASE_DECAY_PER_HOUR


def decayed_trust(trust: float, rate_per_hour: float, elapsed_hours: float) -> float:
    """Trust after ``elapsed_hours`` (fractional) at ``rate_per_hour``."""
    return clamp_unit(trust - rate_per_hour * max(0.0, elapsed_hours))


def boosted_trust(trust: float, empathy_value: float) -> float:
    """Trust after an interaction, from the empathy it leaves."""
    return clamp_unit(trust + trust_boost(empathy_value))


def empathy_description(empathy_value: float) -> str:
    if empathy_value > 0.8:
        return 'very high'
    if empathy_value > 0.6:
        return 'high'
    if empathy_value > 0.4:
        return 'moderate'
    if empathy_value > 0.2:
        return 'low'
    return 'very low'


def dominant(intensities: Mapping[Emotion, float]) -> Emotion | None:
    """The emotion felt most strongly now (ties: the order of ``Emotion``)."""
    felt = [(i, -list(Emotion).index(e), e) for e, i in intensities.items() if i > 0]
    return max(felt)[2] if felt else None


def verdict_emotion(verdict: str, score: float, max_score: float) -> Emotion:
    """What judging an action makes Jamey feel about whoever asked.

    deny: Anger; review: Sadness; allow with a score of at least 75% of the
    highest possible: Love; allow above 0: Joy; anything else: Neutral.
    """
    if verdict == 'deny':
        return Emotion.ANGER
    if verdict == 'review':
        return Emotion.SADNESS
    if max_score > 0 and score >= LOVE_SHARE * max_score:
        return Emotion.LOVE
    if score > 0:
        return Emotion.JOY
    return Emotion.NEUTRAL


def verdict_intensity(emotion: Emotion, score: float, max_score: float) -> float:
    """How strongly: the share of the highest possible score the action
    reached (either way); an action with no evidence (score 0) records the
    emotion's default intensity."""
    if score == 0 or max_score <= 0 or not math.isfinite(score):
        return emotion.default_intensity
    return clamp_unit(abs(score) / max_score)
