"""The API app through Falcon's test client, on a real database."""

import json
import logging
import math
import re
import time
from pathlib import Path

import falcon.testing
import pytest
from conftest import LEAKS
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from jamey import __version__
from jamey import storage
from jamey.access import Authenticator
from jamey.access import TokenStore
from jamey.api import create_app
from jamey.api.access import Policy
from jamey.api.app import Parts
from jamey.api.app import routes
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.health import Check
from jamey.health import HealthChecks
from jamey.health import Report
from jamey.health import Thresholds
from jamey.integrity import IntegrityCheck
from jamey.memory import MemoryStore
from jamey.soul import Soul


@pytest.fixture
def health(tmp_path: Path) -> HealthChecks:
    db = storage.Database(tmp_path / 'jamey.db')
    db.migrate()
    return HealthChecks(db, tmp_path, Thresholds(min_free_mb=1, max_rss_mb=4096))


def make_parts(health: HealthChecks) -> Parts:
    """Everything the app adapts, on one database; the socket's trust is admin."""
    tokens = TokenStore(health.db)
    return Parts(
        health,
        Conscience(health.db),
        MemoryStore(health.db, health.state_dir / 'index'),
        Soul(health.db),
        tokens,
        AuditLog(health.db, 1000),
        Policy(Authenticator(tokens, None)),
        max_body_bytes=2048,
    )


def make_app(health: HealthChecks) -> falcon.App:
    return create_app(make_parts(health))


@pytest.fixture
def client(health: HealthChecks) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(make_app(health))


def assert_problem(result: falcon.testing.Result, status: int, code: str) -> None:
    assert result.status_code == status
    assert result.headers['content-type'] == 'application/problem+json'
    body = result.json
    assert body['status'] == status
    assert body['code'] == code
    assert {'type', 'title', 'detail', 'request_id'} <= body.keys()
    assert not LEAKS.search(result.text), result.text


def test_root_and_liveness(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get('/').json == {
        'name': 'jamey',
        'version': __version__,
        'status': 'ok',
    }
    result = client.simulate_get('/health')
    assert result.json == {'status': 'ok'}
    assert result.headers['content-type'] == 'application/json'
    assert client.simulate_get('/health/').status_code == 200


def test_detailed_health(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get('/health/detailed').json
    assert body['status'] == 'ok'
    assert body['version'] == __version__
    assert set(body['checks']) == {'database', 'integrity', 'disk', 'memory', 'version'}
    assert body['checks']['database']['critical'] is True
    assert body['checks']['memory']['critical'] is False
    assert body['checks']['memory']['rss_bytes'] > 1_000_000
    assert body['checks']['disk']['free_bytes'] > 0


def test_detailed_health_fails_when_the_disk_is_short(
    client: falcon.testing.TestClient, health: HealthChecks
) -> None:
    health.thresholds = Thresholds(min_free_mb=10_000_000_000, max_rss_mb=4096)
    result = client.simulate_get('/health/detailed')
    assert result.status_code == 503
    assert result.json['status'] == 'failing'
    assert result.json['checks']['disk']['status'] == 'failing'


def test_high_memory_is_degraded_not_failing(
    client: falcon.testing.TestClient, health: HealthChecks
) -> None:
    health.thresholds = Thresholds(min_free_mb=1, max_rss_mb=1)
    result = client.simulate_get('/health/detailed')
    assert result.status_code == 200
    assert result.json['status'] == 'degraded'


def test_a_broken_database_fails_health(
    client: falcon.testing.TestClient, health: HealthChecks
) -> None:
    health.db.close()
    result = client.simulate_get('/health/detailed')
    assert result.status_code == 503
    assert result.json['checks']['database'] == {
        'status': 'failing',
        'critical': True,
        'external': False,
        'error': 'StorageError',
    }


def test_openapi_is_valid_and_covers_every_route(
    client: falcon.testing.TestClient, health: HealthChecks
) -> None:
    document = client.simulate_get('/openapi.json').json
    validate(document)
    assert document['openapi'].startswith('3.1')
    assert set(document['paths']) == {
        *routes(make_parts(health), CollectorRegistry()),
        '/openapi.json',
    }
    for path, operations in document['paths'].items():
        for method, operation in operations.items():
            if method == 'parameters':
                continue
            assert operation['responses']['default']['content'][
                'application/problem+json'
            ], (path, method)


def test_unknown_route_and_method(client: falcon.testing.TestClient) -> None:
    assert_problem(client.simulate_get('/nope'), 404, 'not_found')
    result = client.simulate_delete('/health')
    assert_problem(result, 405, 'method_not_allowed')
    assert 'GET' in result.headers['allow']


def test_problems_ignore_accept(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get('/nope', headers={'Accept': 'text/html'})
    assert_problem(result, 404, 'not_found')


def test_declared_body_over_the_limit(client: falcon.testing.TestClient) -> None:
    result = client.simulate_post('/', body=b'x' * 4096)
    assert_problem(result, 413, 'body_too_large')
    assert '2048' in result.json['detail']


def test_request_ids_are_echoed_or_made(client: falcon.testing.TestClient) -> None:
    mine = client.simulate_get('/health', headers={'X-Request-ID': 'abc-123'})
    assert mine.headers['x-request-id'] == 'abc-123'
    made = client.simulate_get('/health')
    assert re.fullmatch(r'[0-9a-f]{32}', made.headers['x-request-id'])
    for hostile in ['a' * 129, 'id with spaces', '<script>', 'ü', '']:
        result = client.simulate_get('/health', headers={'X-Request-ID': hostile})
        assert re.fullmatch(r'[0-9a-f]{32}', result.headers['x-request-id']), hostile
    problem = client.simulate_get('/nope', headers={'X-Request-ID': 'find-me'})
    assert problem.json['request_id'] == 'find-me'


def test_a_bug_is_a_bare_500_and_a_logged_trace(
    health: HealthChecks, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError('secret detail from /var/lib/jamey SELECT * FROM meta')

    health.run = explode  # type: ignore[method-assign]
    client = falcon.testing.TestClient(make_app(health))
    with caplog.at_level(logging.ERROR):
        result = client.simulate_get(
            '/health/detailed', headers={'X-Request-ID': 'bug-1'}
        )
    assert_problem(result, 500, 'internal_error')
    assert 'secret' not in result.text
    record = next(r for r in caplog.records if r.getMessage() == 'http.unhandled')
    assert record.exc_info is not None
    assert record.route == '/health/detailed'  # type: ignore[attr-defined]
    assert json.loads(result.text)['request_id'] == 'bug-1'


def test_an_answer_json_cannot_carry_is_a_logged_500(
    health: HealthChecks, caplog: pytest.LogCaptureFixture
) -> None:
    """NaN in an answer is a bug: a problem, logged as the 500 it is."""
    broken = Report('ok', [Check('disk', 'ok', False, {'free_ratio': math.nan})])
    health.run = lambda: broken  # type: ignore[method-assign]
    client = falcon.testing.TestClient(make_app(health))
    with caplog.at_level(logging.INFO):
        result = client.simulate_get('/health/detailed')
    assert_problem(result, 500, 'internal_error')
    assert next(r for r in caplog.records if r.getMessage() == 'http.unhandled')
    logged = next(r for r in caplog.records if r.getMessage() == 'http.request')
    assert logged.status == 500  # type: ignore[attr-defined]
    assert result.headers['x-content-type-options'] == 'nosniff'


@pytest.mark.parametrize(
    ('body', 'status', 'code', 'field'),
    [
        ({'scope': 'read'}, 422, 'required', 'name'),
        ({'name': 'ci'}, 422, 'required', 'scope'),
        ({'name': 7, 'scope': 'read'}, 422, 'wrong_type', 'name'),
        ({'name': '', 'scope': 'read'}, 422, 'empty', 'name'),
        ({'name': 'x' * 65, 'scope': 'read'}, 422, 'too_long', 'name'),
        ({'name': 'a\x1bb', 'scope': 'read'}, 422, 'control_characters', 'name'),
        ({'name': 'ci', 'scope': 'root'}, 422, 'invalid_scope', 'scope'),
        ({'name': 'ci', 'scope': ['read']}, 422, 'invalid_scope', 'scope'),
        ({'name': 'ci', 'scope': 'read', 'expires_in_s': 0}, 422, 'out_of_range', None),
        (
            {'name': 'ci', 'scope': 'read', 'expires_in_s': 1e12},
            422,
            'out_of_range',
            None,
        ),
        (
            {'name': 'ci', 'scope': 'read', 'expires_in_s': '1h'},
            422,
            'wrong_type',
            None,
        ),
        ({'name': 'ci', 'scope': 'read', 'root': True}, 422, 'unknown_field', 'root'),
        ([1, 2], 422, 'wrong_type', None),
    ],
)
def test_token_requests_are_checked(
    client: falcon.testing.TestClient,
    body: object,
    status: int,
    code: str,
    field: str | None,
) -> None:
    result = client.simulate_post('/tokens', json=body)
    assert_problem(result, status, code)
    if field is not None:
        assert result.json['field'] == field
    assert client.simulate_get('/tokens').json == {'tokens': []}


def test_token_names_are_unique_among_active_tokens(
    client: falcon.testing.TestClient,
) -> None:
    first = client.simulate_post('/tokens', json={'name': 'ci', 'scope': 'read'})
    assert first.status_code == 201
    assert first.headers['location'] == f'/tokens/{first.json["id"]}'
    again = client.simulate_post('/tokens', json={'name': 'ci', 'scope': 'write'})
    assert_problem(again, 409, 'token_exists')
    assert client.simulate_delete(f'/tokens/{first.json["id"]}').json['active'] is False
    # Revoked, the name is free again; the old one stays listed.
    assert client.simulate_post('/tokens', json={'name': 'ci', 'scope': 'write'}).json
    names = [
        (t['name'], t['active']) for t in client.simulate_get('/tokens').json['tokens']
    ]
    assert sorted(names) == [('ci', False), ('ci', True)]
    assert_problem(client.simulate_delete('/tokens/nope'), 404, 'token_not_found')


def test_audit_pages_and_bad_queries(client: falcon.testing.TestClient) -> None:
    decisions = [
        client.simulate_post('/evaluate', json={'action': f'I will help {n}'}).json[
            'decision_id'
        ]
        for n in range(5)
    ]
    first = client.simulate_get('/audit', params={'limit': '2'}).json
    assert [e['decision_id'] for e in first['entries']] == decisions[:-3:-1]
    second = client.simulate_get(
        '/audit', params={'limit': '2', 'before': str(first['next_before'])}
    ).json
    assert [e['decision_id'] for e in second['entries']] == decisions[2:0:-1]
    last = client.simulate_get(
        '/audit', params={'limit': '2', 'before': str(second['next_before'])}
    ).json
    assert [e['decision_id'] for e in last['entries']] == decisions[:1]
    assert last['next_before'] is None
    only = client.simulate_get('/audit', params={'decision_id': decisions[3]}).json
    assert [e['decision_id'] for e in only['entries']] == [decisions[3]]
    assert only['entries'][0]['principal'] == 'unix'
    for params, code in (
        ({'limit': '0'}, 'out_of_range'),
        ({'limit': '1001'}, 'out_of_range'),
        ({'limit': 'ten'}, 'wrong_type'),
        ({'before': '-1'}, 'wrong_type'),
        ({'decision_id': 'a\x00b'}, 'control_characters'),
        ({'verdict': 'deny'}, 'unknown_field'),
    ):
        assert_problem(client.simulate_get('/audit', params=params), 422, code)


def test_reindex_answers_only_post(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get('/memories/reindex').status_code == 405


def test_the_full_check_is_asked_for_then_reported(health: HealthChecks) -> None:
    integrity = IntegrityCheck(health.db, 0)
    integrity.start()
    try:
        parts = make_parts(health)._replace(integrity=integrity)
        client = falcon.testing.TestClient(create_app(parts))
        idle = client.simulate_get('/storage/check')
        assert idle.json == {'running': False, 'interval_s': 0, 'last': None}
        asked = client.simulate_post('/storage/check')
        assert asked.status_code == 202
        assert asked.json['running'] is True
        deadline = time.monotonic() + 30
        while (state := client.simulate_get('/storage/check').json)['running']:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        last = state['last']
        assert (last['status'], last['problems'], last['damaged_rows']) == (
            'ok',
            [],
            [],
        )
        assert last['seconds'] >= 0
        assert_problem(
            client.simulate_get('/storage/check', params={'full': '1'}),
            422,
            'unknown_field',
        )
        assert client.simulate_delete('/storage/check').status_code == 405
    finally:
        integrity.stop()
