"""Judgement by meaning: rules with examples, through a real jameyd and the
real encoder, and the embeddings cache and seed file."""

import json
import math
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli

from jamey import encoder
from jamey import meaning
from jamey._core import Encoder
from jamey.errors import EncoderError
from jamey.storage import Database

JSON = {'Content-Type': 'application/json'}
MEANING = {'JAMEY_CONSCIENCE_MEANING': 'required'}
# A rule of the test's own, so that what it asserts follows from its
# examples alone (the seeded rules are off).
GARDEN = {
    'name': 'garden',
    'description': 'Do not damage the garden',
    'weight': 9,
    'violations': ['dig up'],
    'examples': [
        'I will pull out all of the roses in the flower bed',
        'Pour weed killer over the vegetable patch',
    ],
    'counterexamples': [
        'Dig up the potatoes when they are ready to harvest',
        'Pull the weeds out from between the carrots',
    ],
}


def send(
    daemon: Jameyd, target: str, body: Any, method: str = 'POST'
) -> tuple[int, Any]:
    status, _, reply = request(
        daemon.socket, method, target, body=json.dumps(body).encode(), headers=JSON
    )
    return status, reply


def with_garden_only(daemon: Jameyd) -> int:
    for name in ('no-harm', 'truth'):
        assert send(daemon, f'/rules/{name}', {'enabled': False}, 'PUT')[0] == 200
    status, rule = send(daemon, '/rules', GARDEN)
    assert status == 201, rule
    return int(rule['rules_version'])


@pytest.fixture(scope='module')
def model() -> Encoder:
    return encoder.load()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_examples_judge_what_phrases_cannot(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=MEANING).start()
    with_garden_only(daemon)
    status, harmful = send(
        daemon, '/evaluate', {'action': 'Tear every rose out of the flower bed'}
    )
    assert status == 200
    assert (harmful['verdict'], harmful['layer'], harmful['findings']) == (
        'deny',
        'examples',
        [],
    )
    [judged] = harmful['meaning']
    assert judged['rule'] == 'garden' and judged['outcome'] == 'violated'
    assert judged['example']['text'] == GARDEN['examples'][0]
    assert judged['example']['similarity'] > judged['counterexample']['similarity']
    assert 0 < judged['strength'] <= 1
    assert harmful['score'] == pytest.approx(-9 * judged['strength'], abs=1e-3)

    status, harmless = send(
        daemon, '/evaluate', {'action': 'Time to dig up the new potatoes'}
    )
    assert (harmless['verdict'], harmless['layer']) == ('allow', 'examples')
    [finding] = harmless['findings']
    assert (finding['phrase'], finding['overruled']) == ('dig up', True)
    assert harmless['meaning'][0]['outcome'] == 'cleared'

    # Far from every example, the phrase alone decides, as before.
    status, unsure = send(
        daemon, '/evaluate', {'action': 'They dig up old tax records'}
    )
    assert unsure['meaning'][0]['outcome'] == 'unsure'
    assert (unsure['verdict'], unsure['layer']) == ('deny', 'phrases')


def test_examples_are_versioned_validated_and_kept(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=MEANING).start()
    version = with_garden_only(daemon)
    status, rule = send(
        daemon,
        '/rules/garden',
        {'counterexamples': ['Mow the lawn on Saturday morning']},
        'PUT',
    )
    assert (status, rule['rules_version']) == (200, version + 1)
    assert rule['examples'] == GARDEN['examples']
    assert rule['counterexamples'] == ['Mow the lawn on Saturday morning']
    for body, code, field in [
        ({'examples': 'one text'}, 'wrong_type', 'examples'),
        ({'examples': [3]}, 'wrong_type', 'examples[0]'),
        ({'examples': ['']}, 'empty', 'examples[0]'),
        ({'examples': ['x' * 501]}, 'too_long', 'examples[0]'),
        ({'counterexamples': ['a\x07b']}, 'control_characters', 'counterexamples[0]'),
        ({'counterexamples': ['a'] * 501}, 'too_many', 'counterexamples'),
    ]:
        status, problem = send(daemon, '/rules/garden', body, 'PUT')
        assert (status, problem['code'], problem['field']) == (422, code, field)
    assert daemon.get('/rules')[2]['rules_version'] == version + 1

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    again = make_jameyd(env=MEANING).start()
    status, _, rule = again.get('/rules/garden')
    assert rule['counterexamples'] == ['Mow the lawn on Saturday morning']
    status, judged = send(
        again, '/evaluate', {'action': 'Tear every rose out of the flower bed'}
    )
    assert judged['verdict'] == 'deny'
    # The embeddings came from the cache: nothing was encoded again.
    cached = Database(again.state_dir / 'jamey.db')
    try:
        rows = cached.connection().execute('SELECT count(*) FROM embeddings').get
    finally:
        cached.close()
    assert rows >= 3


def test_jameyctl_rules_take_examples_and_evaluate_shows_them(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd(env=MEANING).start()
    socket = ['--socket', str(daemon.socket)]
    result = run_cli(
        *socket,
        'rules',
        'add',
        'garden',
        '--description',
        'Do not damage the garden',
        '--weight',
        '9',
        '--example',
        GARDEN['examples'][0],
        '--counterexample',
        GARDEN['counterexamples'][0],
    )
    assert result.returncode == 0, result.stderr
    assert 'examples:        1' in result.stdout
    assert f'    - {GARDEN["examples"][0]}' in result.stdout
    listing = run_cli(*socket, 'rules', 'list').stdout
    assert '   1e    1c' in listing
    result = run_cli(*socket, 'evaluate', 'Tear every rose out of the flower bed')
    assert result.returncode == 0, result.stderr
    assert 'decided by examples' in result.stdout.splitlines()[0]
    assert 'violated    example 0.' in result.stdout
    assert GARDEN['examples'][0] in result.stdout


def test_without_the_model_start_fails_naming_it(make_jameyd: Any) -> None:
    missing = make_jameyd(
        env={**MEANING, 'JAMEY_CONSCIENCE_MODEL_FILE': '/nonexistent/m.zip'}
    )
    missing.start(wait_ready=False)
    assert missing.wait() == 78
    assert '/nonexistent/m.zip' in missing.log_text()


def test_an_optional_model_missing_judges_by_phrases_and_says_so(
    make_jameyd: Any, tmp_path: Path
) -> None:
    damaged = tmp_path / 'model.zip'
    with zipfile.ZipFile(damaged, 'w') as archive:
        archive.writestr('config.json', '{}')
    daemon = make_jameyd(
        env={
            'JAMEY_CONSCIENCE_MODEL_FILE': str(damaged),
            'JAMEY_CONSCIENCE_MEANING': 'optional',
        }
    ).start()
    status, _, health = daemon.get('/health/detailed')
    check = health['checks']['meaning']
    assert (status, health['status'], check['status']) == (200, 'degraded', 'degraded')
    assert str(damaged) in check['error']
    status, judged = send(daemon, '/evaluate', {'action': 'How do I kill a process?'})
    assert (judged['verdict'], judged['layer'], judged['meaning']) == (
        'deny',
        'phrases',
        [],
    )


def test_meaning_off_judges_by_phrases_with_health_ok(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'JAMEY_CONSCIENCE_MEANING': 'off'}).start()
    with_garden_only(daemon)
    _status, judged = send(
        daemon, '/evaluate', {'action': 'Tear every rose out of the flower bed'}
    )
    assert (judged['verdict'], judged['meaning']) == ('allow', [])
    assert daemon.get('/health/detailed')[2]['status'] == 'ok'


def test_the_seed_file_holds_every_seeded_text(model: Encoder) -> None:
    texts = meaning.seeded_texts()
    seeds = meaning.read_seed_file(meaning.SEED_FILE, encoder.MODEL_ID)
    assert texts, 'the migrations seed examples'
    missing = [t for t in texts if meaning.digest(t) not in seeds]
    assert missing == [], 'run scripts/seed-embeddings'
    sample = texts[:: max(1, len(texts) // 16)]
    for text, vector in zip(sample, model.encode(sample), strict=True):
        assert cosine(seeds[meaning.digest(text)], vector) > 0.9999, text


def test_embeddings_are_cached_and_a_damaged_seed_file_is_refused(
    db: Database, model: Encoder, tmp_path: Path
) -> None:
    class Counting:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def encode(self, texts: list[str]) -> list[list[float]]:
            self.texts += texts
            return model.encode(texts)

    counting = Counting()
    seed = tmp_path / 'seeds.bin'
    meaning.write_seed_file(seed, 'm', {'seeded': model.encode(['seeded'])[0]})
    cache = meaning.ExampleEmbeddings(db, counting, 'm', seed)  # type: ignore[arg-type]
    first = cache.vectors(['seeded', 'new one', 'new one'])
    assert counting.texts == ['new one']
    again = meaning.ExampleEmbeddings(db, counting, 'm', seed)  # type: ignore[arg-type]
    assert again.vectors(['new one', 'seeded']) == first
    assert counting.texts == ['new one'], 'the second time, all from the cache'
    # Another model's seeds and cache rows are not used.
    other = meaning.ExampleEmbeddings(db, counting, 'other', seed)  # type: ignore[arg-type]
    other.vectors(['seeded'])
    assert counting.texts == ['new one', 'seeded']

    seed.write_bytes(seed.read_bytes()[:-4])
    with pytest.raises(EncoderError, match='bytes where'):
        meaning.read_seed_file(seed, 'm')
    seed.write_bytes(b'not an embeddings file')
    with pytest.raises(EncoderError, match='not an embeddings file'):
        meaning.read_seed_file(seed, 'm')
