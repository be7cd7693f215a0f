"""The native core of Jamey (Rust, built with PyO3)."""

from typing import final

__all__ = ['Scorer', '__version__', 'version']

__version__: str

def version() -> str:
    """The version of the native extension.

    The daemon compares it with the Python package's version, so a
    half-upgraded install is reported rather than guessed at.
    """

@final
class Scorer:
    """A compiled, immutable rule set.

    Args:
        rules: ``(name, weight, violations, affirmations)`` for each enabled
            rule, in a stable order (scores are summed in that order).
        deny_weight: a net-violated rule at least this heavy denies.

    Raises:
        RuleError: a weight is not a finite number above 0, or a phrase has
            no words.
    """

    def __new__(
        cls,
        rules: list[tuple[str, float, list[str], list[str]]],
        deny_weight: float,
    ) -> Scorer: ...
    def evaluate(
        self, text: str
    ) -> tuple[float, str, list[tuple[str, str, str, int, int, bool]]]:
        """Judge ``text``; returns ``(score, verdict, findings)``.

        Each finding is ``(rule, polarity, phrase, start, end, negated)``
        with character offsets into ``text``. The GIL is released while
        scoring a text of 4 KiB or more (shorter ones take less time than
        handing the GIL over).
        """
    @property
    def rule_count(self) -> int:
        """How many rules were compiled."""
