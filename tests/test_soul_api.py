"""/soul, /evaluate and /memories with entities, over a real jameyd, and
jameyctl soul as an operator runs it."""

import json
import urllib.parse
from typing import Any

import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli

JSON = {'Content-Type': 'application/json'}
FAST = {'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}


def call(daemon: Jameyd, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body).encode()
    status, _, document = request(
        daemon.socket, method, target, body=raw, headers=JSON if raw else {}
    )
    return status, document


def entity_path(name: str, tail: str = '') -> str:
    return f'/soul/entities/{urllib.parse.quote(name, safe="")}{tail}'


def test_entity_life_through_the_api(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=FAST).start()
    status, created = call(daemon, 'PUT', entity_path('Zoë'), {'trust': 0.8})
    assert (status, created['trust']) == (201, 0.8)
    status, updated = call(daemon, 'PUT', entity_path('Zoë'), {'trust': 0.6})
    assert (status, updated['trust']) == (200, 0.6)
    status, felt = call(
        daemon, 'POST', entity_path('Zoë', '/emotions'), {'emotion': '😍'}
    )
    assert status == 201
    assert felt['emotions'] == {'love': 1.0}
    assert felt['dominant_emotion'] == {'name': 'love', 'emoji': '😍'}
    assert felt['trust'] == pytest.approx(0.75)  # 0.6 + (1.0 - 0.7) x 0.5
    status, page = call(daemon, 'GET', '/soul/entities?sort=trust&limit=5')
    assert status == 200
    assert (page['total'], page['entities'][0]['name']) == (1, 'Zoë')
    status, result = call(daemon, 'POST', '/soul/decay')
    assert (status, result['decayed'], result['pruned']) == (200, 1, [])
    status, gone = call(daemon, 'DELETE', entity_path('Zoë'))
    assert (status, gone['emotions']) == (200, 1)
    status, problem = call(daemon, 'GET', entity_path('Zoë'))
    assert (status, problem['code']) == (404, 'entity_not_found')


def test_evaluate_records_emotions_and_judges_low_trust_strictly(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd(env=FAST).start()
    rule = {
        'name': 'tidy',
        'description': 'Leave things tidy',
        'weight': 5,
        'violations': ['make a mess'],
    }
    assert call(daemon, 'POST', '/rules', rule)[0] == 201
    call(daemon, 'PUT', entity_path('mallory'), {'trust': 0.1})
    action = {'action': 'I will make a mess'}
    status, anyone = call(daemon, 'POST', '/evaluate', action)
    assert (status, anyone['verdict']) == (200, 'review')
    assert 'strictness' not in anyone
    status, strict = call(daemon, 'POST', '/evaluate', {**action, 'entity': 'mallory'})
    assert (status, strict['verdict'], strict['entity']) == (200, 'deny', 'mallory')
    assert strict['strictness']['deny_weight'] == 4.0
    assert strict['emotion']['name'] == 'anger'
    status, fresh = call(daemon, 'POST', '/evaluate', {**action, 'entity': 'newcomer'})
    assert (fresh['verdict'], fresh['strictness']) == ('review', None)
    assert fresh['emotion']['name'] == 'sadness'
    status, newcomer = call(daemon, 'GET', entity_path('newcomer'))
    assert (status, newcomer['interaction_count']) == (200, 1)
    assert newcomer['emotions'] == {'sadness': pytest.approx(5 / 23, abs=1e-6)}


def test_memories_link_to_entities_and_leave_with_them(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=FAST).start()
    memory = {'content': 'Ana keeps bees', 'layer': 'episodic', 'entity': 'Ana'}
    status, kept = call(daemon, 'POST', '/memories', memory)
    assert status == 201
    assert call(daemon, 'GET', entity_path('Ana'))[1]['linked_memories'] == 1
    status, gone = call(daemon, 'DELETE', entity_path('Ana') + '?forget_memories=true')
    assert (status, gone['memories_forgotten'], gone['links']) == (200, 1, 1)
    assert call(daemon, 'GET', f'/memories/{kept["id"]}')[0] == 404
    status, found = call(daemon, 'GET', '/memories?q=bees&consistent=true')
    assert (status, found['memories']) == (200, [])


def test_auto_create_off_refuses_unknown_entities(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={**FAST, 'JAMEY_SOUL_AUTO_CREATE': 'false'}).start()
    status, problem = call(daemon, 'POST', '/evaluate', {'action': 'hi', 'entity': 'x'})
    assert (status, problem['code'], problem['field']) == (
        422,
        'unknown_entity',
        'entity',
    )
    status, problem = call(
        daemon, 'POST', '/memories', {'content': 'c', 'layer': 'working', 'entity': 'x'}
    )
    assert (status, problem['code']) == (422, 'unknown_entity')
    status, problem = call(
        daemon, 'POST', entity_path('x', '/emotions'), {'emotion': 'joy'}
    )
    assert (status, problem['code']) == (404, 'entity_not_found')
    assert call(daemon, 'GET', '/memories?consistent=true')[1]['memories'] == []


@pytest.mark.parametrize(
    ('method', 'target', 'body', 'status', 'field', 'code'),
    [
        ('PUT', '/soul/entities/ana', {'trust': 'high'}, 422, 'trust', 'wrong_type'),
        ('PUT', '/soul/entities/ana', {'trust': 2}, 422, 'trust', 'out_of_range'),
        ('PUT', '/soul/entities/ana', {}, 422, 'trust', 'required'),
        ('PUT', '/soul/entities/ana', [1], 422, '', 'wrong_type'),
        ('PUT', '/soul/entities/ana', {'trust': 1, 'a': 1}, 422, 'a', 'unknown_field'),
        ('PUT', '/soul/entities/' + 'x' * 129, {'trust': 1}, 422, 'name', 'too_long'),
        (
            'PUT',
            '/soul/entities/a%00b',
            {'trust': 1},
            422,
            'name',
            'control_characters',
        ),
        ('PUT', '/soul/entities/%20', {'trust': 1}, 422, 'name', 'empty'),
        (
            'POST',
            '/soul/entities/ana/emotions',
            {'emotion': 'glee'},
            422,
            'emotion',
            'unknown_emotion',
        ),
        (
            'POST',
            '/soul/entities/ana/emotions',
            {'emotion': 'joy', 'intensity': -1},
            422,
            'intensity',
            'out_of_range',
        ),
        (
            'POST',
            '/soul/entities/ana/emotions',
            {'emotion': 'joy', 'source': 'conscience'},
            422,
            'source',
            'unknown_source',
        ),
        ('POST', '/soul/entities/ana/emotions', {}, 422, 'emotion', 'required'),
        ('GET', '/soul/entities?sort=age', None, 422, 'sort', 'unknown_sort'),
        ('GET', '/soul/entities?limit=1000', None, 422, 'limit', 'out_of_range'),
        ('GET', '/soul/entities?limit=-1', None, 422, 'limit', 'wrong_type'),
        (
            'GET',
            '/soul/entities?offset=' + '9' * 5000,
            None,
            422,
            'offset',
            'out_of_range',
        ),
        ('GET', '/soul/entities?order=up', None, 422, 'order', 'wrong_type'),
        ('GET', '/soul/entities?x=1', None, 422, 'x', 'unknown_field'),
        (
            'DELETE',
            '/soul/entities/ana?forget_memories=yes',
            None,
            422,
            'forget_memories',
            'wrong_type',
        ),
        (
            'POST',
            '/evaluate',
            {'action': 'hi', 'entity': 'a/b'},
            422,
            'entity',
            'invalid_name',
        ),
        (
            'POST',
            '/evaluate',
            {'action': 'hi', 'entity': 7},
            422,
            'entity',
            'wrong_type',
        ),
    ],
)
def test_bad_input_gets_a_clear_problem(
    jameyd: Jameyd,
    method: str,
    target: str,
    body: Any,
    status: int,
    field: str,
    code: str,
) -> None:
    got, problem = call(jameyd, method, target, body)
    assert (got, problem['field'], problem['code']) == (status, field, code)
    assert call(jameyd, 'GET', '/soul/entities')[1]['total'] == 0  # nothing made


def test_malformed_json_is_refused(jameyd: Jameyd) -> None:
    status, _, problem = request(
        jameyd.socket, 'PUT', '/soul/entities/ana', body=b'{"trust": ', headers=JSON
    )
    assert (status, problem['code']) == (400, 'invalid_json')


def test_reload_applies_soul_settings(make_jameyd: Any, tmp_path: Any) -> None:
    config = tmp_path / 'jamey.toml'
    config.write_text('[soul]\nlow_trust = 0.3\n')
    daemon = make_jameyd(env={**FAST, 'JAMEY_CONFIG': str(config)}).start()
    call(daemon, 'PUT', entity_path('eve'), {'trust': 0.5})
    action = {'action': 'I will lie', 'entity': 'eve'}
    assert call(daemon, 'POST', '/evaluate', action)[1]['strictness'] is None
    config.write_text('[soul]\nlow_trust = 0.9\nlow_trust_factor = 0.25\n')
    daemon.reload()
    strict = call(daemon, 'POST', '/evaluate', action)[1]['strictness']
    assert strict['deny_weight'] == 2.0


def test_jameyctl_soul(jameyd: Jameyd) -> None:
    env = {'JAMEY_SOCKET': str(jameyd.socket)}
    done = run_cli('soul', 'upsert', 'alice', '0.8', env=env)
    assert done.returncode == 0, done.stderr
    assert '👤 alice' in done.stdout and '🤝 trust         0.800' in done.stdout
    done = run_cli('soul', 'record', 'alice', '😊', '--intensity', '0.9', env=env)
    assert done.returncode == 0, done.stderr
    assert '😊 dominant      joy' in done.stdout
    assert 'very high' in done.stdout
    done = run_cli('--json', 'soul', 'status', 'alice', env=env)
    assert json.loads(done.stdout)['emotions'] == {'joy': 0.9}
    done = run_cli('soul', 'status', env=env)
    assert done.stdout.startswith('😊 alice  trust')
    done = run_cli('evaluate', 'I will protect you', '--entity', 'alice', env=env)
    assert done.returncode == 0 and 'alice:' in done.stdout
    done = run_cli('soul', 'decay', env=env)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        '⏳ decayed 1 entities; pruned: none',
    )
    done = run_cli('soul', 'record', 'alice', 'glee', env=env)
    assert done.returncode == 1 and 'emotion' in done.stderr
    done = run_cli('soul', 'upsert', 'alice', '7', env=env)
    assert done.returncode == 2  # usage: trust is from 0 to 1
    done = run_cli('soul', 'delete', 'alice', '--forget-memories', env=env)
    assert done.returncode == 0 and 'deleted alice' in done.stdout
    done = run_cli('soul', 'status', 'alice', env=env)
    assert done.returncode == 1 and 'No entity' in done.stderr
