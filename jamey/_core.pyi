"""The native core of Jamey (Rust, built with PyO3)."""

from os import PathLike
from typing import final

__all__ = ['Encoder', 'MemoryIndex', 'Scorer', '__version__', 'version']

__version__: str

def version() -> str:
    """The version of the native extension.

    The daemon compares it with the Python package's version, so a
    half-upgraded install is reported rather than guessed at.
    """

@final
class Encoder:
    """A sentence encoder (BERT, mean pooling, unit length).

    Args:
        weights: the model's safetensors file.
        config: the model's ``config.json``.
        tokenizer: the model's ``tokenizer.json``.
        max_tokens: texts are cut at this many tokens.
        threads: threads that compute an encoding.

    Raises:
        EncoderError: the configuration, weights or tokenizer do not load.
    """

    def __new__(
        cls,
        weights: bytes,
        config: str,
        tokenizer: bytes,
        max_tokens: int = 256,
        threads: int = 1,
    ) -> Encoder: ...
    @property
    def dim(self) -> int:
        """Length of every embedding."""
    @property
    def max_tokens(self) -> int:
        """The most tokens of a text the model sees; the rest is cut."""
    def tokens(self, text: str) -> list[str]:
        """The tokens the model sees for ``text``, special ones included."""
    def encode(self, texts: list[str]) -> list[list[float]]:
        """Unit-length embeddings of ``texts``, in order, computed as one batch
        with the GIL released."""

@final
class Scorer:
    """A compiled, immutable rule set.

    Args:
        rules: ``(name, weight, violations, affirmations)`` for each enabled
            rule, in a stable order (scores are summed in that order).
        deny_weight: a net-violated rule at least this heavy denies.
        examples: ``(examples, counterexamples)`` embeddings for each rule,
            in the order of ``rules`` (unit vectors, all of one length).
        threshold: the similarity a nearest example or counterexample must
            pass to judge; required with ``examples``.

    Raises:
        RuleError: a weight is not a finite number above 0, a phrase has no
            words, an embedding is not finite or not of the others' length,
            or the threshold is not in (0, 1].
    """

    def __new__(
        cls,
        rules: list[tuple[str, float, list[str], list[str]]],
        deny_weight: float,
        *,
        examples: list[tuple[list[list[float]], list[list[float]]]] | None = None,
        threshold: float | None = None,
    ) -> Scorer: ...
    def evaluate(
        self,
        text: str,
        *,
        deny_weight: float | None = None,
        embedding: list[float] | None = None,
        rulings: dict[str, bool] | None = None,
    ) -> tuple[
        float,
        str,
        list[tuple[str, str, str, int, int, bool]],
        list[
            tuple[str, str, float, tuple[int, float] | None, tuple[int, float] | None]
        ],
    ]:
        """Judge ``text``; returns ``(score, verdict, findings, meanings)``.

        Each finding is ``(rule, polarity, phrase, start, end, negated)``
        with character offsets into ``text``. Each meaning is ``(rule,
        outcome, strength, example, counterexample)`` for a rule with
        examples or counterexamples: the outcome is ``violated``,
        ``cleared`` or ``unsure``; example and counterexample are the
        nearest one's ``(index, similarity)``. ``embedding`` is the text's,
        from the encoder that embedded the examples; without it (or without
        examples) the phrases judge alone and ``meanings`` is empty.
        ``rulings`` are a guard model's answers by rule name (``True``:
        violated); they decide the rules they name over phrases and examples
        and are not among ``meanings`` (ValueError for a name that is no
        enabled rule). ``deny_weight`` overrides the scorer's own for this
        text (ValueError unless finite and above 0). The GIL is released
        while scoring a text of 4 KiB or more (shorter ones take less time
        than handing the GIL over).
        """

@final
class MemoryIndex:
    """The one tantivy index of every memory layer.

    Args:
        path: the index directory (created if missing).
        writer_bytes: the writer's memory budget (at least 15 MB).

    Raises:
        MemoryIndexError: the index cannot be opened (corrupt, locked).
    """

    def __new__(cls, path: str | PathLike[str], writer_bytes: int) -> MemoryIndex: ...
    def add(self, memories: list[tuple[str, str, str | None, int, str]]) -> None:
        """Add ``(id, layer, entity, timestamp_ms, content)``; ids are new."""
    def delete(self, ids: list[str]) -> None:
        """Remove memories by id; effective at the next commit."""
    def clear(self) -> None:
        """Remove every document; effective at the next commit."""
    def commit(self, sequence: int) -> None:
        """Make the changes durable and searchable, recording ``sequence``."""
    @property
    def committed_sequence(self) -> int:
        """The journal sequence of the last commit (0 for a new index)."""
    def damaged_files(self) -> list[str]:
        """Files whose checksum does not match (a truncated or damaged index)."""
    @property
    def doc_count(self) -> int:
        """Documents searchable now."""
    def search(
        self,
        query: str,
        *,
        all_words: bool = False,
        layer: str | None = None,
        entity: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 10,
    ) -> list[tuple[str, float]]:
        """Best matches as ``(id, score)``, best first; bad syntax never raises.

        The words of ``query`` are alternatives ranked by BM25, its English
        stopwords left out while other words remain; ``all_words`` requires
        every word instead.
        """
