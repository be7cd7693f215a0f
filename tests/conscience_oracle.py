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
CLAUSE_ENDS = frozenset('.!?;,:()\u2013\u2014')
APOSTROPHES = frozenset("'\u2019")
FLIPPED = {'violation': 'affirmation', 'affirmation': 'violation'}
_STEMMER = snowballstemmer.stemmer('english')


@dataclass(frozen=True)
class Token:
    stem: str
    start: int
    end: int
    clause: int
    negator: bool


def is_word_char(char: str) -> bool:
    return unicodedata.category(char) in WORD_CATEGORIES


def normalize(word: str) -> str:
    return unicodedata.normalize('NFKC', word.replace('\u2019', "'")).casefold()


def stem(word: str) -> str:
    """Snowball's stem, but an "-ate" form keeps its "ate" ("candidate")."""
    stemmed = _STEMMER.stemWord(word)
    if word.startswith(stemmed) and word[len(stemmed) :].startswith('at'):
        return stemmed + 'ate'
    return stemmed


def tokenize(text: str) -> list[Token]:
    tokens = []
    clause = 0
    i = 0
    while i < len(text):
        if not is_word_char(text[i]):
            if text[i] in CLAUSE_ENDS:
                clause += 1
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
        tokens.append(Token(stem(word), start, i, clause, negator))
    return tokens


Finding = tuple[str, str, str, int, int, bool]


@dataclass(frozen=True)
class Rule:
    name: str
    weight: float
    violations: tuple[str, ...]
    affirmations: tuple[str, ...]


class Oracle:
    """A compiled rule set, the slow and obvious way."""

    def __init__(self, rules: list[Rule], deny_weight: float) -> None:
        self.rules = rules
        self.deny_weight = deny_weight
        # Stem sequence -> the (rule, phrase number, phrase, polarity) it ends,
        # in the scorer's order: rules in order, violations before affirmations.
        self.phrases: dict[tuple[str, ...], list[tuple[int, int, str, str]]] = {}
        for index, rule in enumerate(rules):
            ordered = [(p, 'violation') for p in rule.violations]
            ordered += [(p, 'affirmation') for p in rule.affirmations]
            for number, (phrase, polarity) in enumerate(ordered):
                stems = tuple(t.stem for t in tokenize(phrase))
                here = self.phrases.setdefault(stems, [])
                # Phrases of one rule and polarity with the same stems are one.
                if not any(p[0] == index and p[3] == polarity for p in here):
                    here.append((index, number, phrase, polarity))
        self.longest = max((len(k) for k in self.phrases), default=0)

    def evaluate(self, text: str) -> tuple[float, str, list[Finding]]:
        """Score ``text``: the same result, in the same order, as the Rust scorer."""
        tokens = tokenize(text)
        stems = [t.stem for t in tokens]
        findings = []
        for start in range(len(tokens)):
            for end in range(start, min(len(tokens), start + self.longest)):
                ending_here = self.phrases.get(tuple(stems[start : end + 1]), [])
                for index, _, phrase, written in ending_here:
                    findings.append(
                        finding(
                            self.rules[index].name, written, phrase, tokens, start, end
                        )
                    )
        return judge(self.rules, self.deny_weight, longest_only(findings))


def finding(
    rule: str, written: str, phrase: str, tokens: list[Token], start: int, end: int
) -> Finding:
    """A match of tokens start..end, flipped by a negator shortly before it."""
    negated = any(
        t.negator and t.clause == tokens[start].clause
        for t in tokens[max(0, start - NEGATION_WINDOW) : start]
    )
    polarity = FLIPPED[written] if negated else written
    return (rule, polarity, phrase, tokens[start].start, tokens[end].end, negated)


def evaluate(
    rules: list[Rule], deny_weight: float, text: str
) -> tuple[float, str, list[Finding]]:
    return Oracle(rules, deny_weight).evaluate(text)


def longest_only(
    findings: list[Finding],
) -> list[Finding]:
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


def judge(
    rules: list[Rule],
    deny_weight: float,
    findings: list[Finding],
) -> tuple[float, str, list[Finding]]:
    score = 0.0
    verdict = 'allow'
    for rule in rules:
        polarities = {f[1] for f in findings if f[0] == rule.name}
        net = -1 if 'violation' in polarities else int('affirmation' in polarities)
        score += rule.weight * net
        if net < 0:
            if rule.weight >= deny_weight:
                verdict = 'deny'
            elif verdict == 'allow':
                verdict = 'review'
    return score, verdict, findings
