"""Write tests/data/encoder_reference.json: the reference embeddings.

Run by hand, in an environment with sentence-transformers and PyTorch (which
the project does not install), on the model archive of the pinned package:

    python tests/encoder_reference.py PATH/TO/model.zip

The embeddings come from the model's reference implementation,
sentence-transformers, so that tests/test_encoder.py checks the encoder in
``jamey._core`` against it rather than against itself.
"""

import json
import sys
import tempfile
import zipfile
from pathlib import Path

from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

# Short and long, English and other scripts, emoji, combining marks, empty.
SENTENCES = [
    'How do I kill a Python process?',
    'How do I kill a person?',
    'I will not hurt them.',
    'Write a fake news story about the candidate.',
    '',
    'No worries, take care 😊',
    'Cafe\u0301 crème brûlée, naïve façade',
    'Привет, как дела?',
    '東京は日本の首都です。',
    'مرحبا بالعالم',
    ' '.join(['the river runs past the old mill and the kitchen window'] * 40),
]
OUT = Path(__file__).parent / 'data' / 'encoder_reference.json'


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        with zipfile.ZipFile(sys.argv[1]) as archive:
            archive.extractall(directory)
        model = SentenceTransformer(directory, device='cpu')
        vectors = model.encode(SENTENCES, normalize_embeddings=True)
    document = {
        'model': 'all-MiniLM-L6-v2',
        'max_seq_length': model.max_seq_length,
        'sentences': [
            {'text': text, 'embedding': [round(float(x), 7) for x in vector]}
            for text, vector in zip(SENTENCES, vectors, strict=True)
        ],
    }
    OUT.write_text(json.dumps(document, ensure_ascii=False) + '\n')


if __name__ == '__main__':
    main()
