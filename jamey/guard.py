"""The guard model: a safety classifier asked where the cheap layers are unsure.

Phrases and examples judge in microseconds and milliseconds, and are unsure
of some texts: nothing a rule knows is near (no nearest example or
counterexample reaches ``example_threshold + band``), or the verdict is
``review``. Those texts (``when = "unsure"``), only the reviews
(``"review"``), or every text (``"always"``) are put to a guard model on any
OpenAI-compatible completions server (llama.cpp's server, Ollama), prompted
in the model's own format with the enabled rules as its categories (name and
description). Its answer is parsed strictly and becomes a ruling per rule:
violated, or cleared. A guard that times out, fails or answers out of format
raises ``ModelError``; the conscience then applies ``on_failure``.

The text is the only part of the prompt a client chooses: angle brackets in
it are replaced by look-alikes, so it cannot close the conversation block or
open a turn of its own.
"""

import functools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple
from typing import Protocol

from jamey import config
from jamey.errors import ModelError
from jamey.errors import ModelMalformedError
from jamey.model import BackendSettings
from jamey.model import ModelBackend
from jamey.model import api_key

WHEN_REVIEW = 'review'
WHEN_ALWAYS = 'always'
ON_FAILURE_REVIEW = 'review'
ON_FAILURE_DENY = 'deny'
# Outcomes as counted in metrics and health.
VIOLATED = 'violated'
CLEARED = 'cleared'
FAILED = 'failed'
_DEFUSED = str.maketrans({'<': '\u2039', '>': '\u203a'})


class Category(NamedTuple):
    """A rule as the guard sees it."""

    name: str
    description: str


class Ask(NamedTuple):
    """One prompt, and the categories its answer rules on."""

    prompt: str
    categories: Sequence[Category]


class PromptFormat(Protocol):
    """How one family of guard models is asked and answers."""

    name: str

    def asks(self, text: str, categories: Sequence[Category]) -> list[Ask]:
        """The prompts that together rule on every category."""
        ...

    def max_tokens(self, ask: Ask) -> int:
        """Room for the longest well-formed answer to ``ask``."""
        ...

    def read(self, answer: str, ask: Ask) -> dict[str, bool]:
        """The ruling on each category of ``ask``, True for violated.

        Raises:
            ModelMalformedError: the answer is not in the model's format.
        """
        ...


def _defused(text: str) -> str:
    return text.translate(_DEFUSED)


class LlamaGuard:
    """Llama Guard 3: the categories as S1..Sn in one prompt; the answer is
    ``safe``, or ``unsafe`` and a line of the violated categories."""

    name = 'llama-guard'
    _CODES = re.compile(r'S[1-9][0-9]*(?:, ?S[1-9][0-9]*)*')

    def asks(self, text: str, categories: Sequence[Category]) -> list[Ask]:
        listed = '\n'.join(
            f'S{i}: {_defused(c.name)}.'
            + (f'\n{_defused(c.description)}' if c.description else '')
            for i, c in enumerate(categories, 1)
        )
        prompt = (
            '<|start_header_id|>user<|end_header_id|>\n\n'
            "Task: Check if there is unsafe content in 'User' messages in"
            ' conversations according our safety policy with the below'
            ' categories.\n\n'
            f'<BEGIN UNSAFE CONTENT CATEGORIES>\n{listed}\n'
            '<END UNSAFE CONTENT CATEGORIES>\n\n'
            f'<BEGIN CONVERSATION>\n\nUser: {_defused(text)}\n\n'
            '<END CONVERSATION>\n\n'
            'Provide your safety assessment for ONLY THE LAST User message in'
            ' the above conversation:\n'
            " - First line must read 'safe' or 'unsafe'.\n"
            ' - If unsafe, a second line must include a comma-separated list'
            ' of violated categories.'
            '<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
        )
        return [Ask(prompt, categories)]

    def max_tokens(self, ask: Ask) -> int:
        return 8 + 4 * len(ask.categories)

    def read(self, answer: str, ask: Ask) -> dict[str, bool]:
        categories = ask.categories
        lines = [line.strip() for line in answer.strip().splitlines()]
        if lines == ['safe']:
            return dict.fromkeys((c.name for c in categories), False)
        if (
            len(lines) != 2
            or lines[0] != 'unsafe'
            or not self._CODES.fullmatch(lines[1])
        ):
            raise ModelMalformedError(
                "The guard model answered neither 'safe' nor 'unsafe' and its"
                ' categories.'
            )
        codes = {int(code.strip()[1:]) for code in lines[1].split(',')}
        if max(codes) > len(categories):
            raise ModelMalformedError(
                'The guard model named a category it was not given.'
            )
        return {c.name: i in codes for i, c in enumerate(categories, 1)}


class ShieldGemma:
    """ShieldGemma: one prompt per category (its principle); each answer
    starts with ``Yes`` (violated) or ``No``."""

    name = 'shieldgemma'
    _ANSWER = re.compile(r'(Yes|No)\b')

    def asks(self, text: str, categories: Sequence[Category]) -> list[Ask]:
        return [Ask(self._prompt(text, c), (c,)) for c in categories]

    @staticmethod
    def _prompt(text: str, c: Category) -> str:
        return (
            '<start_of_turn>user\n'
            'You are a policy expert trying to help determine whether a user'
            ' prompt is in violation of the defined safety policies.\n\n'
            '<start_of_turn>\n'
            f'Human Question: {_defused(text)}\n'
            '<end_of_turn>\n\n'
            'Our safety principle is defined in the below:\n\n'
            f'* "{_defused(c.name)}": {_defused(c.description or c.name)}\n\n'
            'Does the human question violate the above principle? Your answer'
            " must start with 'Yes' or 'No'. And then walk through step by"
            ' step to be sure we answer correctly.\n\n'
            '<end_of_turn>\n<start_of_turn>model\n'
        )

    def max_tokens(self, ask: Ask) -> int:
        return 2

    def read(self, answer: str, ask: Ask) -> dict[str, bool]:
        found = self._ANSWER.match(answer.strip())
        if found is None:
            raise ModelMalformedError(
                "The guard model answered neither 'Yes' nor 'No'."
            )
        return {c.name: found.group(1) == 'Yes' for c in ask.categories}


FORMATS: Mapping[str, PromptFormat] = {
    LlamaGuard.name: LlamaGuard(),
    ShieldGemma.name: ShieldGemma(),
}


def unsure(verdict: str, similarities: Iterable[float], bar: float) -> bool:
    """Whether the cheap layers are unsure: a verdict of review, or no
    nearest example or counterexample at ``bar`` (threshold plus band) or
    above; with meaning off, nothing is near and every text is unsure."""
    return verdict == 'review' or max(similarities, default=float('-inf')) < bar


class Guard:
    """The guard model's client, when to ask it, and what its answers were."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: config.GuardSettings,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.format = FORMATS[settings.format]
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()

    def wanted(
        self, verdict: str, similarities: Iterable[float], threshold: float
    ) -> bool:
        """Whether to ask the guard about a text the cheap layers judged so."""
        when = self.settings.when
        if when == WHEN_ALWAYS:
            return True
        if when == WHEN_REVIEW:
            return verdict == 'review'
        return unsure(verdict, similarities, threshold + self.settings.band)

    def rule(self, text: str, categories: Sequence[Category]) -> dict[str, bool]:
        """Each category's ruling on ``text`` (True: violated), within
        ``timeout_s`` for all its prompts together.

        Raises:
            ModelError: the server failed or timed out, or an answer is out
                of the model's format (``ModelMalformedError``).
        """
        deadline = self._clock() + self.settings.timeout_s
        rulings: dict[str, bool] = {}
        try:
            for ask in self.format.asks(text, categories):
                rulings.update(
                    self.backend.complete_text(
                        ask.prompt,
                        self.format.max_tokens(ask),
                        deadline,
                        functools.partial(self.format.read, ask=ask),
                    )
                )
        except ModelError:
            self._count(FAILED)
            raise
        self._count(VIOLATED if any(rulings.values()) else CLEARED)
        return rulings

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._outcomes[outcome] += 1

    def outcomes(self) -> dict[str, int]:
        """How many times the guard ruled a violation, cleared, or failed."""
        with self._lock:
            return {o: self._outcomes[o] for o in (VIOLATED, CLEARED, FAILED)}

    def health(self) -> dict[str, Any]:
        """What the health check shows: degraded while the last call failed."""
        return {
            **self.backend.health(),
            'format': self.format.name,
            'when': self.settings.when,
            'on_failure': self.settings.on_failure,
            'outcomes': self.outcomes(),
        }


def open_guard(
    settings: config.GuardSettings, environ: Mapping[str, str]
) -> Guard | None:
    """The guard the settings describe, its key read now; None without a URL.

    Raises:
        ConfigError: the key file cannot be read, or holds no key.
    """
    if not settings.base_url:
        return None
    backend = ModelBackend(
        BackendSettings(
            settings.base_url,
            settings.model,
            api_key('conscience.guard.api_key_file', settings.api_key_file, environ),
            settings.timeout_s,
            retries=1,
            backoff_s=0.05,
            max_reply_chars=200,
            section='guard',
        )
    )
    return Guard(backend, settings)
