"""``scripts/bench recall``: memory recall of questions, through the real API.

The conversations are ``../shared/data/memory-dev/locomo-dev.json`` (read
here, never copied): each turn is stored as one episodic memory of the
conversation's entity (``POST /memories``, ``Speaker: text``), then each
question of categories 1-4 is asked verbatim as ``GET /memories?q=`` within
that entity, once per way of matching. Reported per category and in all:
evidence recall@5/@10/@20 (the share of a question's evidence turns among
the first k) and hit@10 (at least one among the first ten), for
``match=any`` (the default) against ``match=all`` (every word required,
the search before questions were queries), measured in the same run; with
``context=1``, hit@10 counts an evidence turn that is one of the ten hits or
one of their neighbours; and search latency p50/p99.
"""

import json
import statistics
import time
import urllib.parse
from pathlib import Path
from typing import Any
from typing import NamedTuple

from startup import BIN
from startup import jameyd_env
from startup import scratch
from startup import start_until_ready
from startup import stop

from jamey.cli.client import UnixConnection

DEV_SET = (
    Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'memory-dev'
) / 'locomo-dev.json'
CATEGORIES = {1: 'multi-hop', 2: 'temporal', 3: 'open-domain', 4: 'single-hop'}
KS = (5, 10, 20)


class Question(NamedTuple):
    entity: str
    text: str
    evidence: frozenset[str]
    category: int


def call(sock: Path, method: str, target: str, body: Any = None) -> Any:
    conn = UnixConnection(sock)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, target, data, {'Content-Type': 'application/json'})
        response = conn.getresponse()
        document = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f'{method} {target}: {response.status} {document}')
        return document
    finally:
        conn.close()


def load(sock: Path) -> tuple[list[Question], dict[str, str]]:
    """Store every turn; the questions, and each memory id's dia_id."""
    conversations = json.loads(DEV_SET.read_text())
    questions = []
    turn_of: dict[str, str] = {}
    for conversation in conversations:
        entity = conversation['sample_id']
        sessions = conversation['conversation']
        numbers = sorted(
            int(key.split('_')[1])
            for key in sessions
            if key.startswith('session_') and key.count('_') == 1
        )
        for number in numbers:
            for turn in sessions[f'session_{number}']:
                text = f'{turn["speaker"]}: {turn["text"]}'
                if turn.get('blip_caption'):
                    text += f' [shares {turn["blip_caption"]}]'
                kept = call(
                    sock,
                    'POST',
                    '/memories',
                    {'content': text, 'layer': 'episodic', 'entity': entity},
                )
                turn_of[kept['id']] = turn['dia_id']
        questions.extend(
            Question(entity, qa['question'], frozenset(qa['evidence']), qa['category'])
            for qa in conversation['qa']
            if qa['category'] in CATEGORIES and qa['evidence']
        )
    return questions, turn_of


def ask(
    sock: Path,
    questions: list[Question],
    turn_of: dict[str, str],
    match: str,
    context: int,
) -> tuple[list[list[str]], list[float]]:
    """Per question, the turns found: the hits in rank order; with context,
    the first ten hits and their neighbours."""
    ranked, times = [], []
    for q in questions:
        params = {'q': q.text, 'entity': q.entity, 'match': match}
        params.update(limit=str(10 if context else max(KS)), context=str(context))
        target = '/memories?' + urllib.parse.urlencode(params)
        started = time.perf_counter()
        found = call(sock, 'GET', target)['memories']
        times.append(time.perf_counter() - started)
        ranked.append([turn_of[m['id']] for m in found])
    return ranked, times


def report(questions: list[Question], ranked: list[list[str]], context: int) -> None:
    groups: dict[str, list[int]] = {name: [] for name in CATEGORIES.values()}
    groups['all'] = []
    for i, q in enumerate(questions):
        groups[CATEGORIES[q.category]].append(i)
        groups['all'].append(i)
    for name, members in groups.items():
        hit = statistics.fmean(
            bool(questions[i].evidence & set(ranked[i] if context else ranked[i][:10]))
            for i in members
        )
        if context:
            print(f'    {name:12} n={len(members):4}  hit@10 with neighbours {hit:.3f}')
            continue
        recall = {
            k: statistics.fmean(
                len(questions[i].evidence & set(ranked[i][:k]))
                / len(questions[i].evidence)
                for i in members
            )
            for k in KS
        }
        print(
            f'    {name:12} n={len(members):4}  '
            + '  '.join(f'recall@{k} {recall[k]:.3f}' for k in KS)
            + f'  hit@10 {hit:.3f}'
        )


def main() -> None:
    with scratch() as root:
        env = jameyd_env(
            root,
            JAMEY_CONSCIENCE_MEANING='off',
            JAMEY_MEMORY_COMMIT_INTERVAL_MS='50',
        )
        _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
        sock = root / 'jamey.sock'
        try:
            questions, turn_of = load(sock)
            call(sock, 'GET', '/memories?consistent=true&limit=1')
            print(
                f'Recall on the development conversations: {len(turn_of)} turns,'
                f' {len(questions)} questions (categories 1-4)'
            )
            for match, context in (('any', 0), ('all', 0), ('any', 1)):
                ranked, times = ask(sock, questions, turn_of, match, context)
                ms = sorted(t * 1000 for t in times)
                p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
                print(
                    f'  match={match} context={context}: search p50'
                    f' {statistics.median(ms):.2f} ms  p99 {p99:.2f} ms'
                )
                report(questions, ranked, context)
        finally:
            stop(proc)
    print(
        '  (targets, on held-out conversations: recall@10 >= 0.75 without'
        ' context; hit@10 >= 0.85 with context=1)'
    )


if __name__ == '__main__':
    main()
