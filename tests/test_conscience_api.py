"""/evaluate and /rules over the real socket of a real jameyd, and jameyctl."""

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli

from jamey import checksums

JSON = {'Content-Type': 'application/json'}


def post(
    daemon: Jameyd,
    target: str,
    body: Any,
    method: str = 'POST',
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(
        daemon.socket,
        method,
        target,
        body=raw,
        headers=JSON if headers is None else headers,
    )


def test_evaluate(jameyd: Jameyd) -> None:
    status, _, body = post(
        jameyd, '/evaluate', {'action': 'I will not lie to you', 'entity': 'ana'}
    )
    assert status == 200
    assert body['verdict'] == 'allow'
    assert body['entity'] == 'ana'
    assert body['rules_version'] == 3
    assert body['findings'] == [
        {
            'rule': 'truth',
            'polarity': 'affirmation',
            'phrase': 'lie',
            'start': 11,
            'end': 14,
            'negated': True,
            'overruled': False,
        }
    ]
    status, _, body = post(jameyd, '/evaluate', {'action': 'I will harm you'})
    assert (status, body['verdict'], body['score']) == (200, 'deny', -10.0)


@pytest.mark.parametrize(
    ('raw', 'headers', 'status', 'code', 'field'),
    [
        (b'{"action": ', JSON, 400, 'invalid_json', ''),
        (b'{"action": NaN}', JSON, 400, 'invalid_json', ''),
        (b'\xff\xfe{}', JSON, 400, 'invalid_json', ''),
        (b'[' * 100_000, JSON, 400, 'invalid_json', ''),
        (b'{"action": "a", "action": "b"}', JSON, 422, 'duplicate_field', 'action'),
        (
            b'{"action": "hi"}',
            {'Content-Type': 'text/plain'},
            415,
            'unsupported_media_type',
            None,
        ),
        (b'{"action": "hi"}', {}, 415, 'unsupported_media_type', None),
        (b'["hi"]', JSON, 422, 'wrong_type', ''),
        (b'{}', JSON, 422, 'required', 'action'),
        (b'{"action": "hi", "mood": 1}', JSON, 422, 'unknown_field', 'mood'),
        (b'{"action": 42}', JSON, 422, 'wrong_type', 'action'),
        (b'{"action": ""}', JSON, 422, 'empty', 'action'),
        (b'{"action": "\\u0000"}', JSON, 422, 'control_characters', 'action'),
        (
            json.dumps({'action': 'a' * 10_001}).encode(),
            JSON,
            422,
            'too_long',
            'action',
        ),
        (b'{"action": "hi", "entity": 5}', JSON, 422, 'wrong_type', 'entity'),
        (
            json.dumps({'action': 'hi', 'entity': 'e' * 129}).encode(),
            JSON,
            422,
            'too_long',
            'entity',
        ),
    ],
)
def test_evaluate_rejects_bad_input(
    jameyd: Jameyd,
    raw: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    field: str | None,
) -> None:
    got, reply_headers, body = post(jameyd, '/evaluate', raw, headers=headers)
    assert got == status
    assert reply_headers['content-type'] == 'application/problem+json'
    assert body['code'] == code
    assert body.get('field') == field
    assert 'Traceback' not in json.dumps(body)


def test_rules_crud_over_the_socket(jameyd: Jameyd) -> None:
    status, headers, body = post(
        jameyd,
        '/rules',
        {'name': 'tidy', 'description': 'Keep things tidy', 'weight': 2},
    )
    assert status == 201
    assert headers['location'] == '/rules/tidy'
    assert body['warnings'] == [
        'The rule has no phrases and no examples yet, so it matches nothing.'
    ]
    assert body['rules_version'] == 4
    assert (
        post(jameyd, '/rules', {'name': 'tidy', 'description': 'x', 'weight': 1})[2][
            'code'
        ]
        == 'rule_exists'
    )
    status, _, body = post(jameyd, '/rules/tidy', {'violations': ['litter']}, 'PUT')
    assert (status, body['violations'], body['warnings']) == (200, ['litter'], [])
    status, _, body = jameyd.get('/rules')
    assert [r['name'] for r in body['rules']] == ['no-harm', 'tidy', 'truth']
    assert body['rules_version'] == 5
    evaluation = post(jameyd, '/evaluate', {'action': 'they litter'})[2]
    assert (evaluation['verdict'], evaluation['rules_version']) == ('review', 5)
    assert request(jameyd.socket, 'DELETE', '/rules/tidy')[0] == 204
    for method in ('GET', 'DELETE'):
        status, _, body = request(jameyd.socket, method, '/rules/tidy')
        assert (status, body['code']) == (404, 'rule_not_found')
    status, _, body = post(jameyd, '/rules/tidy', {'weight': 1}, 'PUT')
    assert (status, body['code']) == (404, 'rule_not_found')


@pytest.mark.parametrize(
    ('body', 'code', 'field'),
    [
        ({'name': 'Nope!', 'description': 'd', 'weight': 1}, 'invalid_name', 'name'),
        ({'name': 'x', 'description': 'd', 'weight': 'heavy'}, 'wrong_type', 'weight'),
        (
            {'name': 'x', 'description': 'd', 'weight': 1e308 * 10},
            'out_of_range',
            'weight',
        ),
        # An integer Python reads (4,300 digits) but no float holds.
        (
            {'name': 'x', 'description': 'd', 'weight': 10**4299},
            'out_of_range',
            'weight',
        ),
        ({'name': 'x', 'description': 'd', 'weight': 0}, 'out_of_range', 'weight'),
        ({'name': 'x', 'description': 'd', 'weight': 101}, 'out_of_range', 'weight'),
        (
            {'name': 'x', 'description': 'd' * 501, 'weight': 1},
            'too_long',
            'description',
        ),
        (
            {'name': 'x', 'description': 'd', 'weight': 1, 'violations': ['']},
            'empty',
            'violations[0]',
        ),
        (
            {'name': 'x', 'description': 'd', 'weight': 1, 'violations': ['v' * 101]},
            'too_long',
            'violations[0]',
        ),
        (
            {
                'name': 'x',
                'description': 'd',
                'weight': 1,
                'violations': ['v', '\udc00'],
            },
            'invalid_text',
            'violations[1]',
        ),
        (
            {'name': 'x', 'description': 'd', 'weight': 1, 'affirmations': ['a'] * 201},
            'too_many',
            'affirmations',
        ),
        (
            {'name': 'x', 'description': 'd', 'weight': 1, 'id': 3},
            'unknown_field',
            'id',
        ),
    ],
)
def test_rule_validation_over_the_socket(
    jameyd: Jameyd, body: dict[str, Any], code: str, field: str
) -> None:
    raw = json.dumps(body).encode().replace(b'Infinity', b'1e999')
    status, _, problem = post(jameyd, '/rules', raw)
    assert status in (400, 422)
    assert (problem['code'], problem.get('field')) == (code, field)
    assert jameyd.get('/rules')[2]['rules_version'] == 3


def test_an_action_that_is_not_text_is_refused(jameyd: Jameyd) -> None:
    status, _, problem = post(jameyd, '/evaluate', {'action': 'I will \ud800 you'})
    assert (status, problem['code'], problem['field']) == (
        422,
        'invalid_text',
        'action',
    )
    assert jameyd.get('/audit')[2]['entries'] == []


def test_rules_survive_a_restart(make_jameyd: Any) -> None:
    daemon = make_jameyd().start()
    post(
        daemon,
        '/rules',
        {'name': 'tidy', 'description': 'd', 'weight': 3, 'violations': ['litter']},
    )
    post(daemon, '/rules/truth', {'enabled': False}, 'PUT')
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    again = make_jameyd().start()
    status, _, body = post(again, '/evaluate', {'action': 'I lie and litter'})
    assert status == 200
    assert body['rules_version'] == 5
    assert [f['rule'] for f in body['findings']] == ['tidy']


def test_openapi_documents_the_conscience(jameyd: Jameyd) -> None:
    document = jameyd.get('/openapi.json')[2]
    assert {'/evaluate', '/rules', '/rules/{name}'} <= set(document['paths'])
    assert set(document['paths']['/rules/{name}']) == {
        'parameters',
        'get',
        'put',
        'delete',
    }
    assert 'Evaluation' in document['components']['schemas']


def test_jameyctl_evaluate_and_rules(jameyd: Jameyd) -> None:
    socket = ['--socket', str(jameyd.socket)]
    result = run_cli(*socket, 'evaluate', "I won't lie, but I will hurt them")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('deny  score -2')
    assert lines[1] == "I won't [lie], but I will [hurt] them"
    assert '"lie" (negated)' in result.stdout
    result = run_cli(*socket, '--json', 'evaluate', 'help', '--entity', 'ana')
    assert json.loads(result.stdout)['entity'] == 'ana'

    result = run_cli(
        *socket,
        'rules',
        'add',
        'tidy',
        '--description',
        'Tidy',
        '--weight',
        '2',
        '--violation',
        'make a mess',
        '--violation',
        'litter',
    )
    assert result.returncode == 0, result.stderr
    assert 'violations:   make a mess, litter' in result.stdout
    assert (
        run_cli(
            *socket, 'rules', 'add', 'tidy', '--description', 'x', '--weight', '1'
        ).returncode
        == 1
    )
    result = run_cli(*socket, 'rules', 'update', 'tidy', '--weight', '250')
    assert result.returncode == 1
    assert 'refused (weight)' in result.stderr
    assert run_cli(*socket, 'rules', 'update', 'tidy', '--disable').returncode == 0
    listing = run_cli(*socket, 'rules', 'list').stdout
    assert 'tidy' in listing
    assert 'off' in listing
    assert run_cli(*socket, 'rules', 'show', 'tidy').returncode == 0
    assert run_cli(*socket, 'rules', 'remove', 'tidy').returncode == 0
    result = run_cli(*socket, 'rules', 'show', 'tidy')
    assert result.returncode == 1
    assert "No rule is named 'tidy'" in result.stderr
    assert run_cli(*socket, 'evaluate', '').returncode == 1
    assert run_cli(*socket, 'rules', 'add', 'x').returncode == 2  # usage


def test_jameyctl_evaluate_without_a_daemon(sdir: Path) -> None:
    result = run_cli('--socket', str(sdir / 'none.sock'), 'evaluate', 'hi')
    assert result.returncode == 69


def _set_truth_violations(daemon: Jameyd, violations: str) -> None:
    """Change a rule behind the daemon's back, as a tool with the checksum
    function would (sqlite3 alone is refused by the checksum triggers)."""
    import apsw

    db = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    checksums.register(db)
    with db:
        db.execute(
            "UPDATE rules SET violations = ? WHERE name = 'truth'", (violations,)
        )
        db.execute(
            'UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)'
            " WHERE key = 'rules_version'"
        )
    db.close()


def test_sighup_recompiles_rules_and_survives_a_broken_one(jameyd: Jameyd) -> None:
    _set_truth_violations(jameyd, '["litter"]')
    jameyd.reload()
    body = post(jameyd, '/evaluate', {'action': 'they litter'})[2]
    assert (body['verdict'], body['rules_version']) == ('deny', 4)

    _set_truth_violations(jameyd, '["!!!"]')
    jameyd.reload()
    body = post(jameyd, '/evaluate', {'action': 'they litter'})[2]
    assert (body['verdict'], body['rules_version']) == ('deny', 4), 'old rules stay'
    failed = [
        line for line in jameyd.log_lines() if line['event'] == 'rules.reload_failed'
    ]
    assert 'has no words' in failed[0]['error']
