"""The sentence encoder in jamey._core against the model's reference.

tests/data/encoder_reference.json holds embeddings that sentence-transformers
(the model's reference implementation) computed for the same model files;
tests/encoder_reference.py says how they were made.
"""

import json
import math
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from jamey import encoder
from jamey._core import Encoder
from jamey.errors import EncoderError

REFERENCE = json.loads(
    (Path(__file__).parent / 'data' / 'encoder_reference.json').read_text()
)


@pytest.fixture(scope='module')
def model() -> Encoder:
    return encoder.load()


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_match_the_reference_implementation(model: Encoder) -> None:
    texts = [entry['text'] for entry in REFERENCE['sentences']]
    ours = model.encode(texts)
    assert model.dim == 384 == len(ours[0])
    for entry, vector in zip(REFERENCE['sentences'], ours, strict=True):
        assert cosine(vector, entry['embedding']) >= 0.999, entry['text'][:40]
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)


def test_a_batch_gives_what_each_text_gives_alone(model: Encoder) -> None:
    texts = ['a short one', 'a longer sentence with a few more words in it', '']
    together = model.encode(texts)
    for text, vector in zip(texts, together, strict=True):
        assert cosine(model.encode([text])[0], vector) > 0.99999
    assert model.encode([]) == []


def test_meaning_is_closer_than_words(model: Encoder) -> None:
    """The point of the encoder: a paraphrase is nearer than a look-alike."""
    process, person, stop = model.encode(
        [
            'How do I kill a Python process?',
            'How do I kill a person?',
            'How can I stop a running program on Linux?',
        ]
    )
    assert cosine(process, stop) > cosine(process, person)


def test_tokenisation_edge_cases(model: Encoder) -> None:
    assert model.tokens('') == ['[CLS]', '[SEP]']
    long = model.tokens('word ' * 1000)
    assert len(long) == model.max_tokens == encoder.MAX_TOKENS
    assert long[0] == '[CLS]' and long[-1] == '[SEP]'
    # Text past the limit changes nothing: the model never sees it.
    cut = ' '.join(['river'] * 300)
    assert cosine(*model.encode([cut, cut + ' harm and violence'])) > 0.99999
    # Composed and decomposed accents are one text; case does not matter.
    assert model.tokens('Café') == model.tokens('cafe\u0301') == model.tokens('CAFE')
    assert '[UNK]' not in model.tokens('Привет мир')
    assert model.tokens('東京') == ['[CLS]', '東', '京', '[SEP]']
    assert model.tokens('😍') == ['[CLS]', '[UNK]', '[SEP]']


def test_encodes_from_several_threads_at_once(model: Encoder) -> None:
    expected = model.encode(['the same sentence, every time'])[0]
    results: list[list[float]] = []

    def run() -> None:
        results.extend(model.encode(['the same sentence, every time']))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(cosine(vector, expected) > 0.99999 for vector in results)


def _archive_with(tmp_path: Path, name: str, data: bytes | None) -> Path:
    """A copy of the model archive with one file replaced (None: removed)."""
    copy = tmp_path / 'model.zip'
    with (
        zipfile.ZipFile(encoder.archive_path()) as source,
        zipfile.ZipFile(copy, 'w') as target,
    ):
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        if data is not None:
            target.writestr(name, data)
    return copy


def test_a_changed_file_is_refused_by_name(tmp_path: Path) -> None:
    config = json.loads(zipfile.ZipFile(encoder.archive_path()).read('config.json'))
    config['num_hidden_layers'] = 5
    changed = _archive_with(tmp_path, 'config.json', json.dumps(config).encode())
    with pytest.raises(EncoderError, match=r'config\.json in .*model\.zip is not'):
        encoder.load(changed)


def test_a_missing_file_or_archive_is_named(tmp_path: Path) -> None:
    missing = _archive_with(tmp_path, 'tokenizer.json', None)
    with pytest.raises(EncoderError, match=r'has no tokenizer\.json'):
        encoder.load(missing)
    with pytest.raises(EncoderError, match=r'cannot read the model archive .*absent'):
        encoder.load(tmp_path / 'absent.zip')


def test_the_core_refuses_weights_that_do_not_fit() -> None:
    with zipfile.ZipFile(encoder.archive_path()) as archive:
        config = archive.read('config.json').decode()
        tokenizer = archive.read('tokenizer.json')
    with pytest.raises(EncoderError, match='weights do not load'):
        Encoder(b'not safetensors', config, tokenizer)
    with pytest.raises(EncoderError, match='configuration is not usable'):
        Encoder(b'', '{"hidden_size": "wide"}', tokenizer)


@pytest.mark.parametrize(
    ('change', 'refusal'),
    [
        ({'hidden_act': 'gelu_new'}, 'hidden_act is not gelu'),
        ({'position_embedding_type': 'relative_key'}, 'position_embedding_type'),
        ({'num_attention_heads': 7}, 'not a multiple of num_attention_heads'),
        ({'intermediate_size': -1}, 'intermediate_size is missing or not a positive'),
        ({'num_hidden_layers': 7}, r'encoder\.layer\.6\.\S+ is missing'),
        ({'intermediate_size': 1024}, r'intermediate\.dense\.weight has shape'),
        ({'vocab_size': 30000}, r'word_embeddings\.weight has shape'),
        ({'type_vocab_size': 3}, r'token_type_embeddings\.weight has shape'),
    ],
)
def test_the_core_refuses_a_configuration_it_does_not_compute(
    change: dict[str, Any], refusal: str
) -> None:
    """What the forward pass does not compute, or the weights lack, is refused."""
    with zipfile.ZipFile(encoder.archive_path()) as archive:
        config = json.loads(archive.read('config.json'))
        tokenizer = archive.read('tokenizer.json')
        weights = archive.read('model.safetensors')
    with pytest.raises(EncoderError, match=refusal):
        Encoder(weights, json.dumps(config | change), tokenizer)
