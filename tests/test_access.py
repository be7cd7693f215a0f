"""Access end to end: a real jameyd, its TLS listener, tokens, JWTs, limits."""

import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import falcon
import falcon.testing
import jwt
import pytest
from certs import Authority
from conftest import SECURITY_HEADERS
from conftest import Jameyd
from conftest import check_no_leak
from conftest import request
from conftest import run_cli
from conftest import strict_json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from ports import free_port

from jamey.access import AuthError
from jamey.access import JwtSettings
from jamey.access import JwtVerifier
from jamey.access import Principal
from jamey.access import Scope
from jamey.access import load_jwt_keys
from jamey.api.access import RoutedOnce
from jamey.errors import ConfigError
from jamey.jwts import TrustedKey

AUDIENCE = 'jamey-test-device'
# A stand-in for every path parameter: names nothing that exists.
PATH_VALUES = {
    '{name}': 'nobody-here',
    '{id}': '0190f0a0-0000-7000-8000-000000000000',
    '{session}': 'no-session',
}


@contextlib.contextmanager
def tls_socket(port: int, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to the listener, handshake done."""
    with (
        socket.create_connection(('127.0.0.1', port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname='localhost') as tls,
    ):
        yield tls


class Tls:
    """A client of the daemon's TLS listener that trusts the test CA."""

    def __init__(self, port: int, ca: Path, client: tuple[Path, Path] | None = None):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))
        if client is not None:
            self.context.load_cert_chain(*map(str, client))

    def request(
        self,
        method: str,
        target: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPSConnection(
            '127.0.0.1', self.port, context=self.context, timeout=10
        )
        sent = dict(headers or {})
        if token is not None:
            sent['Authorization'] = f'Bearer {token}'
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent['Content-Type'] = 'application/json'
        try:
            conn.request(method, target, body=payload, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        found = {k.lower(): v for k, v in resp.getheaders()}
        check_no_leak(resp.status, found, data)
        text = data.decode()
        document = (
            strict_json(data)
            if found.get('content-type', '').endswith('json')
            else text
        )
        return resp.status, found, document


class Site:
    """A running jameyd with a TLS listener, a JWT key and a CA."""

    def __init__(self, daemon: Jameyd, tls: Tls, ca: Authority, jwt_key: Any):
        self.daemon = daemon
        self.tls = tls
        self.ca = ca
        self.jwt_key = jwt_key

    def token(self, name: str, scope: str, **extra: Any) -> dict[str, Any]:
        status, _, doc = request(
            self.daemon.socket,
            'POST',
            '/tokens',
            json.dumps({'name': name, 'scope': scope, **extra}).encode(),
            {'Content-Type': 'application/json'},
        )
        assert status == 201, doc
        return doc  # type: ignore[no-any-return]

    def jwt(self, scope: str, key: Any = None, **claims: Any) -> str:
        payload = {
            'sub': 'sibling-7',
            'aud': AUDIENCE,
            'exp': int(time.time()) + 300,
            'scope': scope,
            **claims,
        }
        return jwt.encode(payload, key or self.jwt_key, algorithm='EdDSA')


def start_site(root: Path, make_jameyd: Any, env: dict[str, str] | None = None) -> Site:
    ca = Authority(root)
    cert, key = ca.issue('server')
    signing = ed25519.Ed25519PrivateKey.generate()
    public = root / 'fleet.pub'
    public.write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    vault_key = root / 'vault.key'
    vault_key.write_bytes(os.urandom(32))
    vault_key.chmod(0o600)
    port = free_port()
    daemon = make_jameyd(
        env={
            'JAMEY_VAULT_KEY_FILE': str(vault_key),
            'JAMEY_TLS_LISTEN': f'127.0.0.1:{port}',
            'JAMEY_TLS_CERT_FILE': str(cert),
            'JAMEY_TLS_KEY_FILE': str(key),
            'JAMEY_AUTH_JWT_KEY_FILE': str(public),
            'JAMEY_AUTH_JWT_AUDIENCE': AUDIENCE,
            'JAMEY_API_RATE_LIMIT_PER_S': '0',
            **(env or {}),
        }
    ).start()
    return Site(daemon, Tls(port, ca.cert_file), ca, signing)


@pytest.fixture
def site(sdir: Path, make_jameyd: Any) -> Iterator[Site]:
    yield start_site(sdir, make_jameyd)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, concrete path, scope) of every operation the daemon documents."""
    for template, ops in document['paths'].items():
        path = template
        for placeholder, value in PATH_VALUES.items():
            path = path.replace(placeholder, value)
        for method, op in ops.items():
            if method != 'parameters':
                yield method.upper(), path, op['x-scope']


SCOPES = {'none': 0, 'read': 1, 'write': 2, 'admin': 3}


def test_authorisation_matrix_over_tls(site: Site) -> None:
    """Every documented route x every kind of credential, over TLS."""
    read = site.token('reader', 'read')['token']
    write = site.token('writer', 'write')['token']
    admin = site.token('admin', 'admin')['token']
    revoked = site.token('revoked', 'admin')
    request(site.daemon.socket, 'DELETE', f'/tokens/{revoked["id"]}')
    expired = site.token('expired', 'admin', expires_in_s=0.2)['token']
    forged_key = ed25519.Ed25519PrivateKey.generate()
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    claims = json.dumps(
        {'sub': 'x', 'aud': AUDIENCE, 'exp': int(time.time()) + 300, 'scope': 'admin'}
    ).encode()
    alg_none = f'{header}.{jwt.utils.base64url_encode(claims).decode()}.'
    time.sleep(0.3)
    valid = {
        'read': read,
        'write': write,
        'admin': admin,
        'jwt-read': site.jwt('read'),
        'jwt-admin': site.jwt('admin'),
    }
    invalid = {
        'no credentials': None,
        'expired token': expired,
        'revoked token': revoked['token'],
        'forged JWT': site.jwt('admin', key=forged_key),
        'alg none': alg_none,
        'wrong audience': site.jwt('admin', aud='another-device'),
        'expired JWT': site.jwt('admin', exp=int(time.time()) - 3600),
        'garbage': 'jamey_0000_not-a-token',
    }
    status, _, document = site.tls.request('GET', '/openapi.json', admin)
    assert status == 200
    checked = 0
    for method, path, scope in operations(document):
        if (method, path) == ('DELETE', '/tokens/0190f0a0-0000-7000-8000-000000000000'):
            continue  # would be 404 for everyone; covered below with a real id
        body = {} if method in ('POST', 'PUT') else None
        for label, token in invalid.items():
            status, headers, doc = site.tls.request(method, path, token, body)
            if scope == 'none' and token is None:
                assert status == 200, (method, path, label)
            else:
                assert status == 401, (method, path, label, status, doc)
                assert headers['www-authenticate'].startswith('Bearer')
        for label, token in valid.items():
            status, _, doc = site.tls.request(method, path, token, body)
            held = SCOPES[label.removeprefix('jwt-')]
            if held >= SCOPES[scope]:
                assert status not in (401, 403), (method, path, label, status, doc)
            else:
                assert status == 403, (method, path, label, status)
                assert doc['code'] == 'forbidden'
            checked += 1
    assert checked > 100
    assert {
        '/vault/backups',
        '/vault/backups/{id}/verify',
        '/tokens',
        '/audit',
        '/storage/check',
        '/chat',
        '/chat/sessions/{session}',
    } <= set(document['paths'])
    # The routes added later inherit all this: /tokens/{id} with a real id.
    victim = site.token('victim', 'read')
    assert site.tls.request('DELETE', f'/tokens/{victim["id"]}', write)[0] == 403
    assert site.tls.request('DELETE', f'/tokens/{victim["id"]}', admin)[0] == 200
    assert site.tls.request('GET', '/memories/stats', victim['token'])[0] == 401


def test_tls_1_2_is_refused_and_1_3_works(site: Site) -> None:
    old = ssl.create_default_context(cafile=str(site.ca.cert_file))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError), tls_socket(site.tls.port, old):
        pass
    status, headers, _ = site.tls.request('GET', '/health')
    assert status == 200
    assert headers['server'] == 'jamey'  # no version to look up exploits for
    assert headers['x-content-type-options'] == 'nosniff'
    with tls_socket(site.tls.port, site.tls.context) as tls:
        assert tls.version() == 'TLSv1.3'


def test_client_certificate_required_when_configured(
    sdir: Path, make_jameyd: Any
) -> None:
    clients = Authority(sdir, 'Clients CA')
    good = clients.issue('operator', server=False)
    site = start_site(
        sdir, make_jameyd, {'JAMEY_TLS_CLIENT_CA': str(clients.cert_file)}
    )
    with pytest.raises((ssl.SSLError, ConnectionError)):
        site.tls.request('GET', '/health')
    stranger = Authority(sdir, 'Stranger CA').issue('stranger', server=False)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Tls(site.tls.port, site.ca.cert_file, stranger).request('GET', '/health')
    with_cert = Tls(site.tls.port, site.ca.cert_file, good)
    assert with_cert.request('GET', '/health')[0] == 200


def _served_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with tls_socket(port, context) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_certificates_reload_on_sighup_without_dropping_the_listener(
    site: Site,
) -> None:
    before = _served_certificate(site.tls.port, site.ca.cert_file)
    # An open keep-alive connection survives the reload.
    kept = http.client.HTTPSConnection(
        '127.0.0.1', site.tls.port, context=site.tls.context, timeout=10
    )
    kept.request('GET', '/health')
    assert kept.getresponse().read()
    cert, key = site.ca.issue('server')  # same files, a new certificate
    assert (cert, key) == (
        Path(site.daemon.env['JAMEY_TLS_CERT_FILE']),
        Path(site.daemon.env['JAMEY_TLS_KEY_FILE']),
    )
    site.daemon.reload()
    after = _served_certificate(site.tls.port, site.ca.cert_file)
    assert after != before
    kept.request('GET', '/health')
    assert kept.getresponse().status == 200
    kept.close()
    # A broken certificate file keeps the old one serving and says why.
    cert.write_text('not a certificate')
    site.daemon.reload()
    assert _served_certificate(site.tls.port, site.ca.cert_file) == after
    assert any(line['event'] == 'tls.reload_failed' for line in site.daemon.log_lines())


def test_tokens_through_jameyctl(site: Site) -> None:
    env = {'JAMEY_SOCKET': str(site.daemon.socket)}
    created = run_cli('--json', 'token', 'create', 'ci', '--scope', 'write', env=env)
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert {'id', 'token', 'name', 'scope', 'expires_at'} <= doc.keys()
    assert doc['token'].startswith('jamey_')
    human = run_cli(
        'token', 'create', 'short', '--scope', 'read', '--expires', '1h', env=env
    )
    assert 'only time the token is shown' in human.stdout
    assert site.tls.request('GET', '/rules', doc['token'])[0] == 200
    listing = run_cli('token', 'list', env=env)
    assert 'ci  write  active' in listing.stdout
    assert doc['token'] not in listing.stdout
    stored = site.daemon.state_dir / 'jamey.db'
    assert doc['token'].encode() not in stored.read_bytes()
    revoked = run_cli('token', 'revoke', doc['id'], env=env)
    assert revoked.returncode == 0 and 'revoked' in revoked.stdout
    status, _, problem = site.tls.request('GET', '/rules', doc['token'])
    assert (status, problem['code']) == (401, 'token_revoked')
    bad = run_cli('token', 'create', 'x', '--scope', 'root', env=env)
    assert bad.returncode == 2
    assert (
        run_cli(
            'token', 'create', 'x', '--scope', 'read', '--expires', '5 days', env=env
        ).returncode
        == 2
    )


def test_unix_socket_can_require_tokens(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(sdir, make_jameyd, {'JAMEY_API_UNIX_REQUIRES_TOKEN': 'true'})
    env = {'JAMEY_SOCKET': str(site.daemon.socket)}
    refused = run_cli('--json', 'memory', 'stats', env=env)
    assert refused.returncode == 1
    assert 'unauthenticated' in refused.stdout + refused.stderr
    # Liveness stays open; the way in is a token made by whoever holds one.
    assert request(site.daemon.socket, 'GET', '/health')[0] == 200
    admin = site.jwt('admin')
    answer = run_cli('memory', 'stats', env={**env, 'JAMEY_TOKEN': admin})
    assert answer.returncode == 0, answer.stderr


def test_an_unknown_path_is_refused_to_a_stranger_like_a_known_one(
    site: Site,
) -> None:
    """401 before 404: a stranger learns nothing of which paths exist."""
    for method, path in (
        ('GET', '/no-such-path'),
        ('POST', '/admin/../tokens'),
        ('GET', '/memories/stats/extra'),
        ('DELETE', '/'),
    ):
        status, headers, problem = site.tls.request(method, path)
        assert (status, problem['code']) == (401, 'unauthenticated'), (method, path)
        assert headers['www-authenticate'].startswith('Bearer')
    # A token that may read the OpenAPI document may learn a path is not there.
    status, _, problem = site.tls.request('GET', '/no-such-path', site.jwt('read'))
    assert (status, problem['code']) == (404, 'not_found')


def test_a_request_is_routed_once() -> None:
    """Falcon's lookup takes the route Access found for the same path."""
    router = RoutedOnce()
    router.add_route('/memories/{id}', object())
    req = falcon.testing.create_req(path='/memories/7')
    found = router.find('/memories/7', req)
    assert found is not None and found[2] == {'id': '7'}
    assert router.find('/memories/7', req) is found
    other = router.find('/memories/8', req)
    assert other is not None and other[2] == {'id': '8'}


def test_unknown_paths_and_refused_preflights_are_rate_limited(
    sdir: Path, make_jameyd: Any
) -> None:
    site = start_site(
        sdir,
        make_jameyd,
        {
            'JAMEY_API_RATE_LIMIT_PER_S': '0.5',
            'JAMEY_API_RATE_LIMIT_BURST': '5',
            'JAMEY_API_CORS_ORIGINS': 'https://console.example',
        },
    )
    statuses = [site.tls.request('GET', f'/probe-{n}')[0] for n in range(6)]
    assert statuses == [401] * 5 + [429]
    token = site.jwt('read')
    statuses = [site.tls.request('GET', f'/probe-{n}', token)[0] for n in range(6)]
    assert statuses == [404] * 5 + [429]
    # A browser's preflight carries no credentials: the address's bucket,
    # already empty, refuses it before CORS does.
    preflight = {
        'Origin': 'https://evil.example',
        'Access-Control-Request-Method': 'POST',
    }
    status, headers, problem = site.tls.request(
        'OPTIONS', '/evaluate', headers=preflight
    )
    assert (status, problem['code']) == (429, 'rate_limited')
    time.sleep(int(headers['retry-after']) + 0.1)
    status, _, problem = site.tls.request('OPTIONS', '/evaluate', headers=preflight)
    assert (status, problem['code']) == (403, 'origin_not_allowed')


def test_rate_limit_is_reached_and_recovers(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(
        sdir,
        make_jameyd,
        {'JAMEY_API_RATE_LIMIT_PER_S': '0.5', 'JAMEY_API_RATE_LIMIT_BURST': '5'},
    )
    token = site.token('busy', 'read')['token']  # over the socket: its own bucket
    statuses = [site.tls.request('GET', '/rules', token)[0] for _ in range(5)]
    assert statuses == [200] * 5
    status, headers, problem = site.tls.request('GET', '/rules', token)
    assert (status, problem['code']) == (429, 'rate_limited')
    wait = int(headers['retry-after'])
    assert 1 <= wait <= 2
    # Other principals have buckets of their own.
    assert site.tls.request('GET', '/rules', site.jwt('read'))[0] == 200
    time.sleep(wait)
    assert site.tls.request('GET', '/rules', token)[0] == 200
    # The socket's trusted role is not limited; a token on the socket is.
    assert {site.daemon.get('/rules')[0] for _ in range(20)} == {200}
    bearer = {'Authorization': f'Bearer {token}'}
    statuses = {site.daemon.get('/rules', headers=bearer)[0] for _ in range(8)}
    assert 429 in statuses


def test_cors_only_for_configured_origins(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(
        sdir, make_jameyd, {'JAMEY_API_CORS_ORIGINS': 'https://console.example'}
    )
    preflight = {
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type',
    }
    status, headers, _ = site.tls.request(
        'OPTIONS',
        '/evaluate',
        headers={'Origin': 'https://console.example', **preflight},
    )
    assert status == 204
    assert headers['access-control-allow-methods'] == 'GET, POST, PUT, DELETE'
    assert 'Authorization' in headers['access-control-allow-headers']
    status, headers, problem = site.tls.request(
        'OPTIONS', '/evaluate', headers={'Origin': 'https://evil.example', **preflight}
    )
    assert (status, problem['code']) == (403, 'origin_not_allowed')
    assert 'access-control-allow-origin' not in headers
    token = site.jwt('read')
    _, headers, _ = site.tls.request(
        'GET', '/rules', token, headers={'Origin': 'https://console.example'}
    )
    assert headers['access-control-allow-origin'] == 'https://console.example'
    assert headers['cache-control'] == 'no-store'
    _, headers, _ = site.tls.request(
        'GET', '/rules', token, headers={'Origin': 'https://evil.example'}
    )
    assert 'access-control-allow-origin' not in headers


def _raw_tls(site: Site, data: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes; return the status and problem document of the answer,
    checked to carry the headers every answer of the app carries."""
    with tls_socket(site.tls.port, site.tls.context) as tls:
        with contextlib.suppress(OSError):
            tls.sendall(data)
        reply = b''
        while chunk := tls.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b'\r\n\r\n')
    lines = head.decode().split('\r\n')[1:]
    headers = {k.lower(): v for k, v in (line.split(': ', 1) for line in lines)}
    assert headers['content-type'] == 'application/problem+json'
    status = int(head.split()[1])
    check_no_leak(status, headers, body)
    assert strict_json(body)['request_id'] == headers['x-request-id']
    _, app_headers, _ = site.tls.request('GET', '/health')
    assert {n: headers.get(n) for n in SECURITY_HEADERS} == {
        n: app_headers[n] for n in SECURITY_HEADERS
    }
    return status, strict_json(body)


def test_body_and_header_limits_over_tls(site: Site) -> None:
    token = site.jwt('write')
    status, problem = _raw_tls(
        site,
        b'POST /evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
        + f'Authorization: Bearer {token}\r\n'.encode()
        + b'Content-Length: 2000000\r\n\r\n{"action": "',
    )
    assert (status, problem['code']) == (413, 'body_too_large')
    status, problem = _raw_tls(
        site,
        b'GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: ' + b'y' * 40_000 + b'\r\n\r\n',
    )
    assert (status, problem['code']) == (431, 'headers_too_large')
    status, problem = _raw_tls(site, b'NONSENSE\r\n\r\n')
    assert (status, problem['code']) == (400, 'bad_request')
    assert site.tls.request('GET', '/health')[0] == 200


def test_request_deadline(sdir: Path, make_jameyd: Any) -> None:
    """A request stuck behind a slow one is refused once its time is up."""
    daemon = make_jameyd(
        env={
            'JAMEY_API_REQUEST_TIMEOUT_S': '0.5',
            'JAMEY_API_THREADS': '1',
            'JAMEY_STORAGE_BUSY_TIMEOUT_MS': '1500',
        }
    ).start()
    blocker = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    blocker.execute('BEGIN IMMEDIATE')  # the next write waits for this lock
    body = json.dumps({'content': 'a memory', 'layer': 'semantic'}).encode()
    slow: list[int] = []
    writer = threading.Thread(
        target=lambda: slow.append(
            request(
                daemon.socket,
                'POST',
                '/memories',
                body,
                {'Content-Type': 'application/json'},
            )[0]
        )
    )
    writer.start()
    time.sleep(0.2)
    status, _, problem = daemon.get('/rules')  # queued behind the writer
    writer.join()
    blocker.execute('ROLLBACK')
    assert (status, problem['code']) == (503, 'deadline_exceeded')
    assert slow[0] >= 500  # the lock outlived its wait
    events = [line['event'] for line in daemon.log_lines()]
    assert 'http.deadline_exceeded' in events
    assert daemon.get('/rules')[0] == 200


def test_audit_keeps_decisions_but_never_the_action(site: Site) -> None:
    action = 'I will quietly delete the backups of grandma'
    token = site.jwt('write')
    status, _, result = site.tls.request('POST', '/evaluate', token, {'action': action})
    assert status == 200
    decision = result['decision_id']
    status, _, page = site.tls.request(
        'GET', f'/audit?decision_id={decision}', site.jwt('admin')
    )
    assert status == 200
    [entry] = page['entries']
    assert entry['principal'] == 'jwt:sibling-7'
    assert entry['verdict'] == result['verdict']
    assert entry['rules_version'] == result['rules_version']
    assert entry['action_sha256'] == hashlib.sha256(action.encode()).hexdigest()
    assert site.tls.request('GET', '/audit', token)[0] == 403
    site.daemon.stop()
    assert 'grandma' not in site.daemon.log_text()
    database = (site.daemon.state_dir / 'jamey.db').read_bytes()
    wal = site.daemon.state_dir / 'jamey.db-wal'
    assert b'grandma' not in database + (wal.read_bytes() if wal.exists() else b'')


def test_metrics(site: Site) -> None:
    token = site.jwt('read')
    site.tls.request('GET', '/memories/0190f0a0-0000-7000-8000-00000000beef', token)
    site.tls.request('POST', '/evaluate', site.jwt('write'), {'action': 'I will help'})
    status, headers, text = site.tls.request('GET', '/metrics', token)
    assert status == 200
    assert headers['content-type'].startswith('text/plain')
    assert 'route="/memories/{id}"' in text
    assert 'beef' not in text  # no label from user input
    assert 'jamey_evaluations_total{verdict="allow"} 1.0' in text
    assert site.tls.request('POST', '/vault/backups', site.jwt('admin'))[0] == 201
    text = site.tls.request('GET', '/metrics', token)[2]
    [age] = [line for line in text.splitlines() if line.startswith('jamey_backup_age')]
    assert 0 <= float(age.split()[1]) < 60
    for name in (
        'jamey_http_request_duration_seconds_bucket',
        'jamey_memory_documents',
        'jamey_memory_index_lag',
        'jamey_resident_memory_bytes',
        'jamey_disk_written_bytes_total',
    ):
        assert name in text, name
    assert site.tls.request('GET', '/metrics')[0] == 401


@pytest.mark.parametrize(
    ('env', 'message'),
    [
        ({}, 'tls.listen needs tls.cert_file and tls.key_file'),
        ({'JAMEY_TLS_CERT_FILE': 'absent.pem', 'JAMEY_TLS_KEY_FILE': 'k'}, 'k'),
        ({'JAMEY_AUTH_JWT_ALGORITHM': 'RS256'}, 'must be one of EdDSA, ES256, HS256'),
    ],
)
def test_bad_access_settings_stop_the_start(
    make_jameyd: Any, env: dict[str, str], message: str
) -> None:
    daemon = make_jameyd(
        env={'JAMEY_TLS_LISTEN': f'127.0.0.1:{free_port()}', **env}, notify=False
    ).start(wait_ready=False)
    assert daemon.wait() == 78
    assert message in daemon.log_text()
    assert not daemon.socket.exists()


@pytest.mark.parametrize(
    ('claim', 'scope'),
    [
        ('read', Scope.READ),
        ('openid write', Scope.WRITE),
        ('read admin write', Scope.ADMIN),
        (['read', 'write'], Scope.WRITE),
        ('root', None),
        (3, None),
        ([1, 'admin'], None),
        (None, None),
    ],
)
def test_jwt_scope_claims(claim: Any, scope: Scope | None) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    verifier = JwtVerifier(
        JwtSettings(
            'EdDSA', [TrustedKey('EdDSA', key.public_key())], 'here', 'scope', 0
        )
    )
    claims = {'sub': 'peer', 'aud': 'here', 'exp': int(time.time()) + 60}
    if claim is not None:
        claims['scope'] = claim
    token = jwt.encode(claims, key, algorithm='EdDSA')
    if scope is None:
        with pytest.raises(AuthError, match='no known scope'):
            verifier.authenticate(token)
    else:
        assert verifier.authenticate(token) == Principal('jwt:peer', scope, 'jwt')


def test_jwt_algorithm_is_pinned_and_sub_required() -> None:
    secret = b's' * 64
    verifier = JwtVerifier(
        JwtSettings('HS256', [TrustedKey('HS256', secret)], 'here', 'scope', 0)
    )
    good = {'sub': 'peer', 'aud': 'here', 'exp': int(time.time()) + 60, 'scope': 'read'}
    assert verifier.authenticate(jwt.encode(good, secret, algorithm='HS256')).scope == (
        Scope.READ
    )
    for bad in (
        jwt.encode(good, secret, algorithm='HS384'),
        jwt.encode({**good, 'sub': ''}, secret, algorithm='HS256'),
        jwt.encode(
            {k: v for k, v in good.items() if k != 'sub'}, secret, algorithm='HS256'
        ),
        jwt.encode(
            {k: v for k, v in good.items() if k != 'exp'}, secret, algorithm='HS256'
        ),
        'not.a.jwt',
    ):
        with pytest.raises(AuthError) as refused:
            verifier.authenticate(bad)
        assert refused.value.code == 'invalid_token'


def _pem(*keys: Any) -> bytes:
    return b''.join(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in keys
    )


def test_jwt_keys_rotate_and_match_the_pinned_algorithm(tmp_path: Path) -> None:
    old, new = (
        ed25519.Ed25519PrivateKey.generate(),
        ed25519.Ed25519PrivateKey.generate(),
    )
    both = tmp_path / 'fleet.pem'
    both.write_bytes(_pem(old, new))
    keys = load_jwt_keys('EdDSA', str(both), lambda name: b'')
    verifier = JwtVerifier(JwtSettings('EdDSA', keys, 'here', 'scope', 0))
    claims = {
        'sub': 'peer',
        'aud': 'here',
        'exp': int(time.time()) + 60,
        'scope': 'read',
    }
    for key in (old, new):
        token = jwt.encode(claims, key, algorithm='EdDSA')
        assert verifier.authenticate(token).name == 'jwt:peer'
    stranger = jwt.encode(
        claims, ed25519.Ed25519PrivateKey.generate(), algorithm='EdDSA'
    )
    with pytest.raises(AuthError, match='None of the trusted keys'):
        verifier.authenticate(stranger)
    p256 = tmp_path / 'p256.pem'
    p256.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ConfigError, match=r'holds ES256 keys but auth\.jwt_algorithm'):
        load_jwt_keys('EdDSA', str(p256), lambda name: b'')
    assert load_jwt_keys('ES256', str(p256), lambda name: b'')[0].algorithm == 'ES256'
    with pytest.raises(ConfigError, match='at least 32 bytes'):
        load_jwt_keys('HS256', 'secret', lambda name: b'short')
    garbage = tmp_path / 'garbage.pem'
    garbage.write_bytes(b'not a key')
    with pytest.raises(ConfigError, match='no PEM public key'):
        load_jwt_keys('EdDSA', str(garbage), lambda name: b'')
    with pytest.raises(ConfigError, match=r'cannot read auth\.jwt_key_file'):
        load_jwt_keys('EdDSA', str(tmp_path / 'absent.pem'), lambda name: b'')
