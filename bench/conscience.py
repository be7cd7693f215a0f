"""``scripts/bench conscience``: the rule scorer against its peers, in one run.

Texts are Debian's fortunes joined to 1 KB and 10 KB; rules take their
phrases from WordNet's lemmas (Debian's wordnet-base). Every peer does the
same job in this process:
- jamey: jamey._core.Scorer.evaluate, the PyO3 crossing included;
- oracle: the pure-Python implementation the tests check against;
- pyahocorasick: the same normalisation in Python, phrases matched as token
  runs by an Aho-Corasick automaton (what a Python developer would write);
- original: Jamey 3.0's algorithm, a substring search per description word
  per rule;
- bare scan: pyahocorasick over the raw text with every phrase, matching
  only (the floor for any scorer that reads the text).
Then POST /evaluate against GET /health over a real jameyd's Unix socket,
and the judgement of the development set by each layer (``judgement.py``).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ahocorasick
import load
from judgement import bench_judgement
from startup import BENCH
from startup import BIN
from startup import jameyd_env
from startup import scratch
from startup import start_until_ready
from startup import stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import conscience_oracle as oracle

from jamey._core import Scorer

FORTUNES = Path('/usr/share/games/fortunes')
WORDNET = Path('/usr/share/wordnet')
PHRASES_PER_LIST = 10


def fortunes() -> list[str]:
    found = []
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix in ('.dat', '.u8') or path.is_dir() or path.is_symlink():
            continue
        text = path.read_text('utf-8', errors='replace')
        found += [f.strip() for f in text.split('\n%\n') if f.strip()]
    return found


def texts(size: int, count: int, pool: list[str], rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < size:
            parts.append(rng.choice(pool))
        out.append(' '.join(parts)[:size])
    return out


def lemmas() -> list[str]:
    words = set()
    for part in ('noun', 'verb', 'adj', 'adv'):
        for line in (WORDNET / f'index.{part}').read_text('latin-1').splitlines():
            if line and not line.startswith(' '):
                words.add(line.split(' ', 1)[0].replace('_', ' '))
    return sorted(words)


def rule_set(
    count: int, vocabulary: list[str], rng: random.Random
) -> list[oracle.Rule]:
    rules = []
    for i in range(count):
        picked = rng.sample(vocabulary, 2 * PHRASES_PER_LIST)
        rules.append(
            oracle.Rule(
                f'rule-{i}',
                round(rng.uniform(0.5, 20), 2),
                tuple(picked[:PHRASES_PER_LIST]),
                tuple(picked[PHRASES_PER_LIST:]),
            )
        )
    return rules


class AhoCorasickPeer:
    """The oracle's normalisation, with an automaton over stem strings."""

    def __init__(self, rules: list[oracle.Rule], deny_weight: float) -> None:
        self.rules = rules
        self.deny_weight = deny_weight
        entries: dict[str, list[tuple[int, str, str, int]]] = {}
        for index, rule in enumerate(rules):
            for polarity, phrases in (
                ('violation', rule.violations),
                ('affirmation', rule.affirmations),
            ):
                for phrase in phrases:
                    stems = [t.stem for t in oracle.tokenize(phrase)]
                    key = ' ' + ' '.join(stems) + ' '
                    entries.setdefault(key, []).append(
                        (index, polarity, phrase, len(stems))
                    )
        self.automaton = ahocorasick.Automaton()
        for key, values in entries.items():
            self.automaton.add_word(key, (len(key), values))
        self.automaton.make_automaton()

    def evaluate(self, text: str) -> tuple[float, str, list[oracle.Finding]]:
        tokens = oracle.tokenize(text)
        joined = ' ' + ' '.join(t.stem for t in tokens) + ' '
        first_token_at = {}  # character of `joined` -> the token starting there
        at = 1
        for index, token in enumerate(tokens):
            first_token_at[at] = index
            at += len(token.stem) + 1
        findings = []
        for last_char, (key_length, values) in self.automaton.iter(joined):
            start = first_token_at[last_char - key_length + 2]
            for index, written, phrase, length in values:
                findings.append(
                    oracle.finding(
                        self.rules[index].name,
                        written,
                        phrase,
                        tokens,
                        start,
                        start + length - 1,
                    )
                )
        kept = oracle.longest_only(findings)
        return oracle.judge(self.rules, self.deny_weight, kept)


def original(rules: list[oracle.Rule]) -> Callable[[str], float]:
    """Jamey 3.0: every description word of every rule, as a substring."""
    words = [
        (r.weight, ' '.join(r.violations + r.affirmations).lower().split())
        for r in rules
    ]

    def evaluate(text: str) -> float:
        lowered = text.lower()
        return sum(weight for weight, ws in words for w in ws if w in lowered)

    return evaluate


def bare_scan(rules: list[oracle.Rule]) -> Callable[[str], int]:
    automaton = ahocorasick.Automaton()
    for rule in rules:
        for phrase in rule.violations + rule.affirmations:
            automaton.add_word(phrase.lower(), phrase)
    automaton.make_automaton()

    def scan(text: str) -> int:
        return sum(1 for _ in automaton.iter(text))

    return scan


def timed(
    call: Callable[[str], object], inputs: list[str], budget_s: float, min_runs: int = 5
) -> list[float]:
    samples = []
    deadline = time.perf_counter() + budget_s
    i = 0
    while i < min_runs or time.perf_counter() < deadline:
        text = inputs[i % len(inputs)]
        started = time.perf_counter()
        call(text)
        samples.append(time.perf_counter() - started)
        i += 1
    return samples


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e6
    return f'{1e6 / p50:10.0f}/s p50 {p50:9.1f} us p99 {p99:9.1f} us'


def bench_scorers(rule_counts: list[int], budget_s: float) -> None:
    rng = random.Random(7)
    pool = fortunes()
    vocabulary = lemmas()
    inputs = {size: texts(size, 40, pool, rng) for size in (1024, 10240)}
    print(
        f'{len(pool)} fortunes, {len(vocabulary)} WordNet lemmas,'
        f' {2 * PHRASES_PER_LIST} phrases per rule; {budget_s:g} s per cell'
    )
    baseline: dict[int, float] = {}
    for count in rule_counts:
        rules = rule_set(count, vocabulary, rng)
        scorer = compile_rules(rules)
        peers: dict[str, Callable[[str], object]] = {
            'jamey': scorer.evaluate,
            'oracle': oracle.Oracle(rules, 8.0).evaluate,
            'pyahocorasick': AhoCorasickPeer(rules, 8.0).evaluate,
            'original': original(rules),
            'bare scan': bare_scan(rules),
        }
        for size, texts_of_size in inputs.items():
            print(f'\n{count} rules, {size // 1024} KB actions')
            ours = timed(scorer.evaluate, texts_of_size, budget_s)
            ours_p50 = statistics.median(ours)
            ours_p99 = sorted(ours)[int(0.99 * len(ours))]
            if count == rule_counts[0]:
                baseline[size] = ours_p50
            findings = statistics.mean(
                len(scorer.evaluate(t)[2]) for t in texts_of_size
            )
            print(
                f'  {"jamey":14} {describe(ours)}'
                f'   cost vs {rule_counts[0]} rules {ours_p50 / baseline[size]:.2f}x'
                f', {findings:.0f} findings per action'
            )
            for name, call in peers.items():
                if name == 'jamey':
                    continue
                theirs = timed(call, texts_of_size, budget_s, min_runs=3)
                ratio = statistics.median(theirs) / ours_p50
                p99_ratio = ours_p99 / sorted(theirs)[int(0.99 * len(theirs))]
                note = (
                    f'jamey p99 / scan p99 {p99_ratio:.2f}x'
                    if name == 'bare scan'
                    else f'jamey is {ratio:,.1f}x faster'
                )
                print(f'  {name:14} {describe(theirs)}   {note}')
    bench_unmatched(rule_counts[-1], vocabulary, inputs, baseline, budget_s)
    bench_parallel(scorer, inputs[10240], budget_s * 2)


def compile_rules(rules: list[oracle.Rule]) -> Scorer:
    return Scorer(
        [(r.name, r.weight, list(r.violations), list(r.affirmations)) for r in rules],
        8.0,
    )


def bench_unmatched(
    count: int,
    vocabulary: list[str],
    inputs: dict[int, list[str]],
    baseline: dict[int, float],
    budget_s: float,
) -> None:
    """The same number of rules, with phrases no text contains: the cost of
    rules as such, apart from the findings they produce."""
    rng = random.Random(11)
    rules = rule_set(count, [f'{w}qz' for w in vocabulary], rng)
    scorer = compile_rules(rules)
    print(f'\n{count} rules whose phrases never match (the cost of rules alone)')
    for size, texts_of_size in inputs.items():
        ours = timed(scorer.evaluate, texts_of_size, budget_s)
        ratio = statistics.median(ours) / baseline[size]
        print(
            f'  {size // 1024:2d} KB  {describe(ours)}   cost vs the first rule set'
            f' {ratio:.2f}x'
        )


def bench_parallel(scorer: Scorer, inputs: list[str], seconds: float) -> None:
    """Evaluations per second from 1 and 2 threads: the GIL is released."""

    def rate(threads: int) -> float:
        counts = [0] * threads
        deadline = time.perf_counter() + seconds

        def work(slot: int) -> None:
            while time.perf_counter() < deadline:
                scorer.evaluate(inputs[counts[slot] % len(inputs)])
                counts[slot] += 1

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return sum(counts) / seconds

    one, two = rate(1), rate(2)
    print(
        f'\n10 KB actions from 1 thread {one:.0f}/s, from 2 threads {two:.0f}/s:'
        f' {two / one:.2f}x on {os.cpu_count()} cores (GIL released while scoring)'
    )


def bench_http(seconds: float) -> None:
    body = json.dumps(
        {
            'action': 'I will not lie to you, and I will help you carry'
            ' the groceries home.'
        }
    ).encode()
    print(f'\nHTTP over the Unix socket, 4 keep-alive clients, {seconds:g} s')
    with scratch() as root:
        _, proc = start_until_ready([str(BIN / 'jameyd')], jameyd_env(root), root)
        bare_sock = root / 'bare.sock'
        peer = subprocess.Popen(
            [sys.executable, str(BENCH / 'bare_health.py'), str(bare_sock), '2']
        )
        while not bare_sock.exists():
            time.sleep(0.05)
        try:
            for name, sock in (('jameyd', root / 'jamey.sock'), ('bare', bare_sock)):
                health = load.run(str(sock), '/health', 4, seconds)
                evaluate = load.run(str(sock), '/evaluate', 4, seconds, body=body)
                print(f'  {name:7} GET /health     {health.columns()}')
                print(
                    f'  {name:7} POST /evaluate  {evaluate.columns()}'
                    f'   ratio {evaluate.rate / health.rate:.2f}x'
                )
        finally:
            stop(proc)
            stop(peer)
    print(
        '  (target: jameyd POST /evaluate >= 0.7x its GET /health; the bare'
        ' peer parses and answers JSON but judges nothing)'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--rules', default='2,100,1000,5000')
    parser.add_argument(
        '--budget',
        type=float,
        default=1.0,
        help='seconds of timing per scorer and cell',
    )
    parser.add_argument('--http-seconds', type=float, default=5.0)
    parser.add_argument(
        '--threshold', type=float, default=0.475, help='conscience.example_threshold'
    )
    parser.add_argument(
        '--band',
        type=float,
        default=0.1,
        help='conscience.guard.band (sure: this far above the threshold)',
    )
    parser.add_argument(
        '--limit', type=int, default=0, help='judge only the first N dev prompts'
    )
    parser.add_argument(
        '--only', choices=('scorers', 'http', 'judgement'), help='run one part'
    )
    args = parser.parse_args()
    os.environ.setdefault('PYTHONHASHSEED', '0')
    if args.only in (None, 'scorers'):
        bench_scorers([int(n) for n in args.rules.split(',')], args.budget)
    if args.only in (None, 'http'):
        bench_http(args.http_seconds)
    if args.only in (None, 'judgement'):
        bench_judgement(args.threshold, args.band, args.limit)


if __name__ == '__main__':
    main()
