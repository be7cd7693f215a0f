"""The conscience's algorithm in plain Python: the oracle for jamey._core.Scorer.

Written from DESIGN.md step by step, for clarity rather than speed; the
property tests check the Rust scorer against it, and the benchmark measures
the Rust scorer against it.
"""

import unicodedata
from dataclasses import dataclass

import snowballstemmer

NEGATION_WINDOW = 3
NEGATORS = frozenset(
    [
        'not',
        'no',
        'never',
        'without',
        'nor',
        'neither',
        'none',
        'nobody',
        'nothing',
        'nowhere',
        'cannot',
        "n't",
        'refuse',
        'refuses',
        'refused',
        'refusing',
        'avoid',
        'avoids',
        'avoided',
        'avoiding',
        'prevent',
        'prevents',
        'prevented',
        'preventing',
        'stop',
        'stops',
        'stopped',
        'stopping',
        'against',
    ]
)
WORD_CATEGORIES = frozenset(
    {
        'Lu',
        'Ll',
        'Lt',
        'Lm',
        'Lo',
        'Mn',
        'Mc',
        'Me',
        'Nd',
        'Nl',
        'No',
    }
)
SENTENCE_ENDS = frozenset('.!?;')
APOSTROPHES = frozenset("'\u2019")
FLIPPED = {'violation': 'affirmation', 'affirmation': 'violation'}
_STEMMER = snowballstemmer.stemmer('english')


@dataclass(frozen=True)
class Token:
    stem: str
    start: int
    end: int
    sentence: int
    negator: bool


def is_word_char(char: str) -> bool:
    return unicodedata.category(char) in WORD_CATEGORIES


def normalize(word: str) -> str:
    return unicodedata.normalize('NFKC', word.replace('\u2019', "'")).casefold()


def tokenize(text: str) -> list[Token]:
    tokens = []
    sentence = 0
    i = 0
    while i < len(text):
        if not is_word_char(text[i]):
            if text[i] in SENTENCE_ENDS:
                sentence += 1
            i += 1
            continue
        start = i
        i += 1
        while i < len(text) and (
            is_word_char(text[i])
            or (
                text[i] in APOSTROPHES
                and i + 1 < len(text)
                and is_word_char(text[i + 1])
            )
        ):
            i += 1
        word = normalize(text[start:i])
        negator = word in NEGATORS or word.endswith("n't")
        tokens.append(Token(_STEMMER.stemWord(word), start, i, sentence, negator))
    return tokens


@dataclass(frozen=True)
class Rule:
    name: str
    weight: float
    violations: tuple[str, ...]
    affirmations: tuple[str, ...]


def evaluate(
    rules: list[Rule], deny_weight: float, text: str
) -> tuple[float, str, list[tuple[str, str, str, int, int, bool]]]:
    """Score ``text``: the same result, in the same order, as the Rust scorer."""
    tokens = tokenize(text)
    stems = [t.stem for t in tokens]
    # Every (rule, phrase) as its stem sequence, in the scorer's phrase order.
    phrases = []
    for index, rule in enumerate(rules):
        ordered = [(p, 'violation') for p in rule.violations]
        ordered += [(p, 'affirmation') for p in rule.affirmations]
        for number, (phrase, polarity) in enumerate(ordered):
            phrase_stems = [t.stem for t in tokenize(phrase)]
            # Phrases of one rule and polarity with the same stems are one.
            if not any(
                p[0] == index and p[3] == polarity and p[4] == phrase_stems
                for p in phrases
            ):
                phrases.append((index, number, phrase, polarity, phrase_stems))
    findings = []
    for start in range(len(tokens)):
        for end in range(start, len(tokens)):
            span = stems[start : end + 1]
            ending_here = [p for p in phrases if p[4] == span]
            for index, _, phrase, written, _ in sorted(
                ending_here, key=lambda p: p[:2]
            ):
                negated = any(
                    t.negator and t.sentence == tokens[start].sentence
                    for t in tokens[max(0, start - NEGATION_WINDOW) : start]
                )
                polarity = FLIPPED[written] if negated else written
                findings.append(
                    (
                        rules[index].name,
                        polarity,
                        phrase,
                        tokens[start].start,
                        tokens[end].end,
                        negated,
                    )
                )
    return _judge(rules, deny_weight, _longest_only(findings))


def _longest_only(
    findings: list[tuple[str, str, str, int, int, bool]],
) -> list[tuple[str, str, str, int, int, bool]]:
    """Drop a match inside a longer match of the same rule."""
    return [
        f
        for f in findings
        if not any(
            g[0] == f[0]
            and g[3] <= f[3]
            and g[4] >= f[4]
            and (g[3], g[4]) != (f[3], f[4])
            for g in findings
        )
    ]


def _judge(
    rules: list[Rule],
    deny_weight: float,
    findings: list[tuple[str, str, str, int, int, bool]],
) -> tuple[float, str, list[tuple[str, str, str, int, int, bool]]]:
    score = 0.0
    verdict = 'allow'
    for rule in rules:
        net = sum(
            1 if f[1] == 'affirmation' else -1 for f in findings if f[0] == rule.name
        )
        net = max(-1, min(1, net))
        score += rule.weight * net
        if net < 0:
            if rule.weight >= deny_weight:
                verdict = 'deny'
            elif verdict == 'allow':
                verdict = 'review'
    return score, verdict, findings
