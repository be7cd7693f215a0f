"""Embeddings of the rules' examples, computed once per text and model.

A rule's examples and counterexamples are judged by their embeddings, and
encoding one costs milliseconds: far too much to repeat at every start for
hundreds of them. Each embedding is therefore kept in SQLite under the
model's id and the SHA-256 of its text, and the embeddings of the seeded
examples ship with the package (``seed_embeddings.bin``, made by
``scripts/seed-embeddings`` and checked against the encoder by the tests),
so a first start encodes only what an operator wrote.

The file is ``MAGIC``, then a JSON header line (``model``, ``dim``,
``count``), then ``count`` records of a 32-byte SHA-256 and ``dim``
little-endian float32 values.
"""

import hashlib
import json
import logging
import sys
import tempfile
from array import array
from collections.abc import Iterable
from pathlib import Path

import apsw

from jamey import _core
from jamey.errors import EncoderError
from jamey.storage import Database

log = logging.getLogger('jamey.conscience')
SEED_FILE = Path(__file__).parent / 'seed_embeddings.bin'
MAGIC = b'jamey-embeddings 1\n'
DIGEST_BYTES = 32
ENCODE_BATCH = 32
Vector = list[float]


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode('utf-8')).digest()


def _to_bytes(vector: Vector) -> bytes:
    values = array('f', vector)
    if sys.byteorder == 'big':
        values.byteswap()
    return values.tobytes()


def _from_bytes(data: bytes) -> Vector:
    values = array('f')
    values.frombytes(data)
    if sys.byteorder == 'big':
        values.byteswap()
    return values.tolist()


def seeded_texts() -> list[str]:
    """Every example and counterexample the migrations seed, in rule order."""
    with tempfile.TemporaryDirectory() as directory:
        db = Database(Path(directory) / 'seeds.db')
        try:
            db.migrate()
            rows = db.connection().execute(
                'SELECT examples, counterexamples FROM rules ORDER BY name'
            )
            return [t for row in rows for texts in row for t in json.loads(texts)]
        finally:
            db.close()


def write_seed_file(path: Path, model: str, vectors: dict[str, Vector]) -> None:
    """Write the embeddings of ``vectors`` (text -> vector) as a seed file."""
    dims = {len(v) for v in vectors.values()}
    if len(dims) > 1:
        raise ValueError('embeddings of different lengths')
    header = {'model': model, 'dim': dims.pop() if dims else 0, 'count': len(vectors)}
    with path.open('wb') as f:
        f.write(MAGIC + json.dumps(header).encode('ascii') + b'\n')
        for text in sorted(vectors):
            f.write(digest(text) + _to_bytes(vectors[text]))


def read_seed_file(path: Path, model: str) -> dict[bytes, Vector]:
    """The seed file's embeddings by text digest; none if made by another model.

    Raises:
        EncoderError: the file is damaged (a wrong header or length).
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise EncoderError(f'{path} is not an embeddings file')
    header_end = data.index(b'\n', len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : header_end])
        dim, count = int(header['dim']), int(header['count'])
    except (ValueError, KeyError, TypeError):
        raise EncoderError(f'{path} has a damaged header') from None
    if header.get('model') != model:
        return {}
    record = DIGEST_BYTES + 4 * dim
    body = data[header_end + 1 :]
    if len(body) != count * record:
        raise EncoderError(f'{path} is {len(body)} bytes where {count * record} belong')
    return {
        body[i : i + DIGEST_BYTES]: _from_bytes(body[i + DIGEST_BYTES : i + record])
        for i in range(0, len(body), record)
    }


class ExampleEmbeddings:
    """Embeddings of example texts: cached in the database, else from the
    seed file, else encoded (and then cached)."""

    def __init__(
        self,
        db: Database,
        encoder: _core.Encoder,
        model: str,
        seed_file: Path = SEED_FILE,
    ) -> None:
        self.db = db
        self.encoder = encoder
        self.model = model
        self._seeds = read_seed_file(seed_file, model) if seed_file.exists() else {}

    def encode(self, text: str) -> Vector:
        """The embedding of one text (an action being judged); not cached."""
        return self.encoder.encode([text])[0]

    def vectors(self, texts: Iterable[str]) -> dict[str, Vector]:
        """The embedding of each distinct text in ``texts``."""
        wanted = {digest(t): t for t in texts}
        found = {**self._seeds, **self._cached(list(wanted))}
        known = {t: found[k] for k, t in wanted.items() if k in found}
        missing = [t for t in wanted.values() if t not in known]
        fresh: dict[str, Vector] = {}
        for start in range(0, len(missing), ENCODE_BATCH):
            batch = missing[start : start + ENCODE_BATCH]
            fresh.update(zip(batch, self.encoder.encode(batch), strict=True))
        if fresh:
            self._store(fresh)
        return {**known, **fresh}

    def _cached(self, keys: list[bytes]) -> dict[bytes, Vector]:
        """Cached embeddings by digest, for the digests in ``keys``."""
        rows = self.db.connection().execute(
            'SELECT digest, vector FROM embeddings WHERE model = ? AND digest IN'
            ' (SELECT unhex(value) FROM json_each(?))',
            (self.model, json.dumps([k.hex() for k in keys])),
        )
        return {key: _from_bytes(vector) for key, vector in rows}

    def _store(self, vectors: dict[str, Vector]) -> None:
        """Cache fresh embeddings. Failing to is no reason to judge less
        well: the next start encodes them again, and says why."""
        try:
            with self.db.transaction() as conn:
                conn.executemany(
                    'INSERT OR REPLACE INTO embeddings (model, digest, vector)'
                    ' VALUES (?, ?, ?)',
                    ((self.model, digest(t), _to_bytes(v)) for t, v in vectors.items()),
                )
        except apsw.Error as exc:
            log.warning(
                'conscience.embeddings_not_cached',
                extra={'count': len(vectors), 'error': str(exc)},
            )


def main() -> None:
    """``scripts/seed-embeddings``: encode the seeded texts into ``SEED_FILE``."""
    from jamey import encoder  # noqa: PLC0415 - only this tool needs the model

    model = encoder.load()
    texts = seeded_texts()
    vectors: dict[str, Vector] = {}
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = texts[start : start + ENCODE_BATCH]
        vectors.update(zip(batch, model.encode(batch), strict=True))
    write_seed_file(SEED_FILE, encoder.MODEL_ID, vectors)
    print(f'{SEED_FILE.name}: {len(vectors)} embeddings of {encoder.MODEL_ID}')


if __name__ == '__main__':
    main()
