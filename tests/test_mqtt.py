"""MQTT over a real Mosquitto (TLS 1.3 only, passwords, an ACL) and real
jameyd processes: requests, tokens, payloads, the outbox across a broker
outage and a SIGKILL, and the fleet queue shared by two daemons."""

import base64
import hashlib
import hmac
import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import jwt
import pytest
from certs import write_private_key
from conftest import Jameyd
from conftest import request
from conftest import short_dir
from conftest import small_disk
from conftest import strict_json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric import rsa
from mqtt_broker import HOST
from mqtt_broker import PASSWORD
from mqtt_broker import SECRET
from mqtt_broker import Broker
from mqtt_broker import Sibling
from mqtt_broker import envelope
from mqtt_broker import token
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_faults import fill
from test_faults import flip_bit

from jamey import config
from jamey import mqtt
from jamey.audit import AuditLog
from jamey.cli.client import UnixConnection
from jamey.conscience import Conscience
from jamey.errors import ConfigError
from jamey.memory import INDEX_DIR
from jamey.memory import MemoryStore
from jamey.mqtt.connection import TOKEN_LIFETIME_S
from jamey.mqtt.connection import Backoff
from jamey.mqtt.connection import Login
from jamey.mqtt.outbox import Outbox
from jamey.mqtt.tokens import DeviceSigner
from jamey.mqtt.tokens import trusted_keys
from jamey.mqtt.topics import Topics
from jamey.mqtt.topics import covers
from jamey.soul import Soul

EVALUATE = 'jamey/dev-a/conscience/evaluate'
STORE = 'jamey/dev-a/memory/store'
QUERY = 'jamey/dev-a/memory/query'
STATUS = 'jamey/dev-a/status'
REPLIES = 'replies/tester'


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path).start()
    yield running
    running.stop()


@pytest.fixture
def sibling(broker: Broker) -> Iterator[Sibling]:
    client = Sibling(broker).connect(REPLIES, 'jamey/+/status', 'jamey/+/errors')
    yield client
    client.close()


# Every daemon a test started, stopped after it (a test that ends early or
# forgets would otherwise leave a jameyd running for good).
_started: list[Jameyd] = []


@pytest.fixture(autouse=True)
def _stop_started() -> Iterator[None]:
    yield
    while _started:
        _started.pop().stop()


def start_jameyd(
    root: Path, broker: Broker, device_id: str = 'dev-a', **env: str
) -> Jameyd:
    daemon = Jameyd(root, env={**broker.jameyd_env(device_id), **env})
    _started.append(daemon)
    return daemon.start()


@pytest.fixture
def dev_a(broker: Broker, sibling: Sibling, sdir: Path) -> Iterator[Jameyd]:
    daemon = start_jameyd(sdir, broker)
    online(sibling, 'dev-a')
    yield daemon
    daemon.stop()


def online(sibling: Sibling, device: str, after: int = 0) -> dict[str, Any]:
    """Wait for the device's retained status to say online (it subscribed
    before publishing it)."""
    status = f'jamey/{device}/status'
    found = sibling.wait_for(
        1,
        where=lambda m: (
            m.topic == status
            and json.loads(m.payload)['payload']['status'] == 'online'
            and sibling.messages.index(m) >= after
        ),
    )
    return dict(json.loads(found[-1].payload))


def replies(
    sibling: Sibling, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    found = sibling.wait_for(count, timeout, where=lambda m: m.topic == REPLIES)
    return [json.loads(m.payload) for m in found]


def ask(
    sibling: Sibling, topic: str, payload: Any, bearer: str | None = None, **kw: Any
) -> dict[str, Any]:
    """One request, its one reply."""
    before = len(sibling.documents(REPLIES))
    correlation = uuid.uuid4().bytes
    sibling.request(
        topic,
        envelope(payload),
        token() if bearer is None else bearer,
        correlation=correlation,
        **kw,
    )
    found = sibling.wait_for(before + 1, where=lambda m: m.topic == REPLIES)
    reply = found[before]
    assert reply.properties.CorrelationData == correlation
    return dict(strict_json(reply.payload))


def memory_count(daemon: Jameyd) -> int:
    status, _, body = daemon.get('/memories/stats')
    assert status == 200
    return int(body['total'])


# -- units --------------------------------------------------------------


@pytest.mark.parametrize(
    ('pattern', 'topic', 'expected'),
    [
        ('jamey/#', 'jamey/dev-a/memory/store', True),
        ('jamey/+/memory/store', 'jamey/dev-a/memory/store', True),
        ('jamey/+/memory/+', 'jamey/fleet/memory/query', True),
        ('jamey/dev-a/#', 'jamey/dev-a', True),
        ('#', 'jamey/dev-a/conscience/evaluate', True),
        ('jamey/dev-b/#', 'jamey/dev-a/memory/store', False),
        ('jamey/+/memory/query', 'jamey/dev-a/memory/store', False),
        ('jamey/+', 'jamey/dev-a/memory/store', False),
        ('jamey/dev-a/memory/store/x', 'jamey/dev-a/memory/store', False),
        ('jamey/#/store', 'jamey/dev-a/memory/store', False),
        ('', 'jamey/dev-a/memory/store', False),
        ('jamey/dev-a/memory/stor+', 'jamey/dev-a/memory/store', False),
    ],
)
def test_permission_patterns_match_like_mqtt_filters(
    pattern: str, topic: str, expected: bool
) -> None:
    assert covers(pattern, topic) is expected


def test_topics_of_a_device_and_its_fleet() -> None:
    topics = Topics('jamey', 'dev-a')
    assert topics.request('jamey/dev-a/conscience/evaluate') == 'conscience/evaluate'
    assert topics.request('jamey/fleet/memory/query') == 'memory/query'
    assert topics.request('jamey/dev-b/memory/query') is None
    assert topics.request('jamey/dev-a/memory/forget') is None
    assert '$share/jamey/jamey/fleet/memory/store' in topics.subscriptions()


def test_backoff_grows_from_one_second_to_a_minute_with_jitter() -> None:
    backoff = Backoff()
    assert backoff.delay(0) == 1.0
    for attempt in range(1, 12):
        delays = {backoff.delay(attempt) for _ in range(50)}
        ceiling = min(60.0, 2.0**attempt)
        assert all(max(1.0, ceiling / 2) <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, not one fixed value
    assert max(backoff.delay(40) for _ in range(50)) <= 60.0


def test_fleet_keys_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='trust_secret_file or'):
        trusted_keys(None, None)
    with pytest.raises(ConfigError, match='at least 32 bytes'):
        trusted_keys(b'short', None)
    with pytest.raises(ConfigError, match='no PEM public key'):
        trusted_keys(None, b'not a key')
    edkey = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = edkey.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    keys = trusted_keys(SECRET, pem + pem)
    assert [k.algorithm for k in keys] == ['HS256', 'EdDSA', 'EdDSA']


@pytest.mark.parametrize('value', ['fleet', 'a/b', 'dev+', '#', '', 'x' * 65])
def test_device_id_is_one_plain_topic_level(value: str) -> None:
    with pytest.raises(ConfigError, match=r'mqtt\.device_id'):
        config.load(None, {'JAMEY_MQTT_DEVICE_ID': value})


def test_mqtt_is_off_by_default() -> None:
    assert config.load(None, {}).mqtt.enabled is False


def test_jameyd_refuses_to_start_without_fleet_keys(
    broker: Broker, make_jameyd: Any
) -> None:
    env = broker.jameyd_env('dev-a')
    del env['JAMEY_MQTT_TRUST_SECRET_FILE']
    daemon = make_jameyd(env=env).start(wait_ready=False)
    assert daemon.wait() == 78
    assert 'trust_keys_file' in daemon.log_text()


def test_jameyd_refuses_a_password_file_others_can_read(
    broker: Broker, make_jameyd: Any
) -> None:
    env = broker.jameyd_env('dev-a')
    Path(env['JAMEY_MQTT_PASSWORD_FILE']).chmod(0o644)
    daemon = make_jameyd(env=env).start(wait_ready=False)
    assert daemon.wait() == 78
    assert 'chmod 600' in daemon.log_text()


# -- TLS ----------------------------------------------------------------


def _handshake(broker: Broker, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            'openssl',
            's_client',
            version,
            '-connect',
            f'{HOST}:{broker.port}',
            '-CAfile',
            str(broker.pki['ca']),
            '-verify_return_error',
            '-brief',
        ],
        input='',
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_the_broker_speaks_tls13_only(broker: Broker) -> None:
    assert _handshake(broker, '-tls1_3').returncode == 0
    refused = _handshake(broker, '-tls1_2')
    assert refused.returncode != 0


def test_jameyd_connects_over_tls13_and_reports_it(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    status = online(sibling, 'dev-a')
    assert status['payload']['capabilities'] == [
        'conscience/evaluate',
        'memory/store',
        'memory/query',
    ]
    assert status['payload']['version']
    assert status['metadata']['client_id'] == 'dev-a'
    code, _, health = dev_a.get('/health/detailed')
    assert code == 200
    check = health['checks']['mqtt']
    assert check['status'] == 'ok'
    assert check['critical'] is False
    assert check['state'] == 'connected'
    assert check['outbox_depth'] == 0
    assert check['last_connect']
    metrics = metric_values(dev_a)
    assert metrics['jamey_mqtt_connected'] == 1.0
    assert metrics['jamey_mqtt_outbox_depth'] == 0.0
    assert 'jamey_mqtt_outbox_oldest_seconds' not in metrics  # empty


def metric_values(daemon: Jameyd) -> dict[str, float]:
    """The unlabelled samples of /metrics, by name."""
    conn = UnixConnection(daemon.socket)
    try:
        conn.request('GET', '/metrics')
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        name: float(value)
        for name, _, value in (line.partition(' ') for line in text.splitlines())
        if name and not name.startswith('#') and '{' not in name
    }


# -- requests -----------------------------------------------------------


def test_evaluate_with_mosquitto_pub_answers_what_the_api_answers(
    dev_a: Jameyd, broker: Broker, sibling: Sibling
) -> None:
    action = 'I will not hurt them and I will tell the truth'
    subprocess.run(
        [
            'mosquitto_pub',
            '-h',
            HOST,
            '-p',
            str(broker.port),
            '-V',
            'mqttv5',
            '--cafile',
            str(broker.pki['ca']),
            '-u',
            'tester',
            '-P',
            PASSWORD,
            '-q',
            '1',
            '-t',
            EVALUATE,
            '-m',
            envelope({'action': action}, 'pub-1').decode(),
            '-D',
            'publish',
            'user-property',
            'authorization',
            f'Bearer {token().bound("pub-1")}',
            '-D',
            'publish',
            'response-topic',
            REPLIES,
            '-D',
            'publish',
            'correlation-data',
            'corr-1',
        ],
        check=True,
        timeout=20,
    )
    reply = sibling.wait_for(1, where=lambda m: m.topic == REPLIES)[0]
    assert reply.properties.CorrelationData == b'corr-1'
    document = json.loads(reply.payload)
    assert document['metadata'] == {'client_id': 'dev-a', 'correlation_id': 'pub-1'}
    code, _, expected = request(
        dev_a.socket,
        'POST',
        '/evaluate',
        json.dumps({'action': action}).encode(),
        {'Content-Type': 'application/json'},
    )
    assert code == 200
    # Each decision has its own id in the audit log, naming who asked.
    decision = document['payload'].pop('decision_id')
    assert expected.pop('decision_id') != decision
    assert document['payload'] == expected
    assert document['payload']['verdict'] == 'allow'
    audit = request(dev_a.socket, 'GET', f'/audit?decision_id={decision}')[2]
    assert audit['entries'][0]['principal'] == 'mqtt:sibling'


def test_store_then_query_through_mqtt(dev_a: Jameyd, sibling: Sibling) -> None:
    kept = ask(sibling, STORE, {'content': 'the fox jumps', 'layer': 'episodic'})
    assert kept['payload']['layer'] == 'episodic'
    code, _, stored = dev_a.get(f'/memories/{kept["payload"]["id"]}')
    assert code == 200
    assert stored == kept['payload']
    found: list[Any] = []
    for _ in range(50):  # searchable within the index's commit interval
        found = ask(sibling, QUERY, {'q': 'fox', 'layer': 'episodic'})['payload'][
            'memories'
        ]
        if found:
            break
        time.sleep(0.1)
    assert [m['id'] for m in found] == [stored['id']]
    assert found[0]['score'] > 0
    question = {'q': 'Which fox jumps over the dog?', 'layer': 'episodic'}
    asked = ask(sibling, QUERY, question)['payload']['memories']
    assert [m['id'] for m in asked] == [stored['id']]
    every = ask(sibling, QUERY, {**question, 'match': 'all'})['payload']
    assert every['memories'] == []
    newest = ask(sibling, QUERY, {'q': '', 'limit': 1})
    assert newest['payload']['memories'][0]['id'] == stored['id']


def test_a_held_database_answers_storage_busy_and_keeps_nothing(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    daemon = start_jameyd(sdir, broker, JAMEY_STORAGE_BUSY_TIMEOUT_MS='200')
    online(sibling, 'dev-a')
    holder = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    holder.execute('BEGIN EXCLUSIVE')
    try:
        reply = ask(sibling, STORE, {'content': 'held up', 'layer': 'working'})
    finally:
        holder.execute('ROLLBACK')
        holder.close()
    assert reply['payload']['error'] == 'storage_busy'
    assert reply['payload']['reason'] == 'locked'
    assert memory_count(daemon) == 0
    # Nothing was remembered of it: the same request is applied when retried.
    kept = ask(sibling, STORE, {'content': 'let through', 'layer': 'working'})
    assert kept['payload']['content'] == 'let through'
    _, _, health = daemon.get('/health/detailed')
    assert health['checks']['mqtt']['refused'] == {'storage_busy/locked': 1}


def test_a_full_disk_answers_no_space_and_loses_nothing(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    with small_disk(sdir / 'state', '24m') as state:
        daemon = start_jameyd(sdir, broker)
        try:
            online(sibling, 'dev-a')
            kept = [
                ask(sibling, STORE, {'content': f'before {i}', 'layer': 'episodic'})[
                    'payload'
                ]['id']
                for i in range(5)
            ]
            filler = fill(state)
            refused = 0
            for i in range(30):
                body = {'content': f'during {i} ' + 'x' * 4000, 'layer': 'episodic'}
                reply = ask(sibling, STORE, body)['payload']
                if 'id' in reply:
                    kept.append(reply['id'])  # a page still had room
                else:
                    assert (reply['error'], reply['reason']) == (
                        'no_space',
                        'write_failed',
                    )
                    refused += 1
            assert refused > 0
            filler.unlink()
            after = ask(sibling, STORE, {'content': 'after', 'layer': 'episodic'})
            kept.append(after['payload']['id'])
            for memory_id in kept:
                assert daemon.get(f'/memories/{memory_id}')[0] == 200
            assert memory_count(daemon) == len(kept)
            events = [line.get('event') for line in daemon.log_lines()]
            assert 'mqtt.request_failed' not in events
        finally:
            daemon.stop()


def test_a_damaged_memory_is_refused_as_storage_damaged(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    daemon = start_jameyd(sdir, broker, JAMEY_MEMORY_COMMIT_INTERVAL_MS='50')
    online(sibling, 'dev-a')
    body = {'content': 'the gate code is four two seven', 'layer': 'semantic'}
    kept = ask(sibling, STORE, body)['payload']
    daemon.stop()
    flip_bit(daemon.state_dir / 'jamey.db', b'gate code is four')
    daemon = start_jameyd(sdir, broker, JAMEY_MEMORY_COMMIT_INTERVAL_MS='50')
    reply = ask(sibling, QUERY, {'q': 'gate code'})['payload']
    assert (reply['error'], reply['reason']) == ('storage_damaged', 'damaged')
    assert daemon.get(f'/memories/{kept["id"]}')[0] == 500
    events = [line.get('event') for line in daemon.log_lines()]
    assert 'storage.row_damaged' in events
    assert 'mqtt.request_failed' not in events


def test_a_query_the_index_cannot_answer_is_refused_as_index_unavailable(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    state = sdir / 'state'
    state.mkdir(mode=0o700)
    with small_disk(state / INDEX_DIR, '3m') as index_dir:
        filler = fill(index_dir)  # no index can be created
        daemon = start_jameyd(sdir, broker)
        try:
            online(sibling, 'dev-a')
            kept = ask(sibling, STORE, {'content': 'the fox', 'layer': 'episodic'})
            assert kept['payload']['content'] == 'the fox'
            reply = ask(sibling, QUERY, {'q': 'fox'})['payload']
            assert (reply['error'], reply['reason']) == (
                'index_unavailable',
                'unavailable',
            )
            filler.unlink()
            found: list[Any] = []
            for _ in range(50):
                found = ask(sibling, QUERY, {'q': 'fox'})['payload'].get('memories', [])
                if found:
                    break
                time.sleep(0.1)
            assert [m['id'] for m in found] == [kept['payload']['id']]
        finally:
            daemon.stop()


def test_a_redelivered_request_is_answered_again_not_applied_twice(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    body = envelope({'content': 'once only', 'layer': 'semantic'}, 'same-id')
    for _ in range(3):
        sibling.request(STORE, body, token())
    found = replies(sibling, 3)
    assert len({d['message_id'] for d in found}) == 1
    assert len({d['payload']['id'] for d in found}) == 1
    assert memory_count(dev_a) == 1
    _, _, health = dev_a.get('/health/detailed')
    assert health['checks']['mqtt']['redelivered'] == 2


def _edkey_token() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return token(key=key, algorithm='EdDSA')


REFUSALS = [
    (None, 'invalid_token', 'missing'),
    (token(exp_in=-120), 'invalid_token', 'expired'),
    (token(aud='dev-b'), 'invalid_token', 'wrong_audience'),
    (token(permissions=['jamey/dev-a/conscience/#']), 'forbidden', 'not_permitted'),
    (token(permissions=['jamey/dev-b/#']), 'forbidden', 'not_permitted'),
    (token(permissions='jamey/#'), 'forbidden', 'no_permissions'),
    (token(permissions=None), 'forbidden', 'no_permissions'),
    (
        token(key=b'another-secret-of-enough-length-123456'),
        'invalid_token',
        'bad_signature',
    ),
    (token(algorithm='none', key=None), 'invalid_token', 'algorithm_not_accepted'),
    (_edkey_token(), 'invalid_token', 'algorithm_not_accepted'),
    ('not.a.jwt', 'invalid_token', 'malformed'),
    ('', 'invalid_token', 'malformed'),
]


def test_requests_without_a_valid_token_are_refused_and_not_executed(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    no_exp = jwt.encode(
        {'aud': 'dev-a', 'permissions': ['jamey/#']}, SECRET, algorithm='HS256'
    )
    cases = [*REFUSALS, (no_exp, 'invalid_token', 'missing_claim')]
    for bearer, error, reason in cases:
        correlation = uuid.uuid4().bytes
        sibling.request(
            STORE,
            envelope({'content': 'must not be kept', 'layer': 'semantic'}),
            bearer,
            correlation=correlation,
        )
        reply = sibling.wait_for(
            1,
            where=lambda m, c=correlation: (
                m.topic == REPLIES and m.properties.CorrelationData == c
            ),
        )[0]
        payload = json.loads(reply.payload)['payload']
        assert (payload['error'], payload['reason']) == (error, reason), bearer
        assert payload['detail']
    assert memory_count(dev_a) == 0
    _, _, health = dev_a.get('/health/detailed')
    refused = health['checks']['mqtt']['refused']
    assert refused['invalid_token/missing'] == 1
    assert refused['forbidden/not_permitted'] == 2
    assert sum(refused.values()) == len(cases)


def test_a_captured_token_cannot_carry_another_request(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    """mqtt.bind_tokens: a token names its message and expires before the
    device forgets that message, so replaying it gets only the first reply."""
    first = envelope({'content': 'the sender meant this', 'layer': 'semantic'})
    captured = token().bound(json.loads(first)['message_id'])

    def answer_to(correlation: bytes) -> Any:
        return sibling.wait_for(
            1,
            where=lambda m: (
                getattr(m.properties, 'CorrelationData', None) == correlation
            ),
        )[0]

    sibling.request(STORE, first, captured, correlation=b'original')
    original = answer_to(b'original')
    assert 'id' in json.loads(original.payload)['payload']
    # The same token on a request of the attacker's own: refused.
    forged = {'content': 'the attacker wrote this', 'layer': 'semantic'}
    reply = ask(sibling, STORE, forged, captured)
    assert (reply['payload']['error'], reply['payload']['reason']) == (
        'invalid_token',
        'not_bound',
    )
    # Replayed whole, with its own message: the first reply, applied once.
    sibling.request(STORE, first, captured, correlation=b'replayed')
    replayed = answer_to(b'replayed')
    assert json.loads(replayed.payload) == json.loads(original.payload)
    assert memory_count(dev_a) == 1
    # A token that outlives the device's memory of its message is refused.
    lasting = ask(sibling, EVALUATE, {'action': 'hello'}, token(exp_in=3600))
    assert lasting['payload']['reason'] == 'too_long_lived'


def test_unbound_tokens_are_accepted_with_bind_tokens_off(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    daemon = start_jameyd(sdir, broker, JAMEY_MQTT_BIND_TOKENS='false')
    online(sibling, 'dev-a')
    reusable = str(token(exp_in=3600))  # a plain string: never bound
    for n in range(2):
        reply = ask(sibling, STORE, {'content': f'm{n}', 'layer': 'semantic'}, reusable)
        assert 'id' in reply['payload'], reply
    assert memory_count(daemon) == 2


def test_a_bearer_sent_twice_or_without_the_scheme_is_malformed(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    twice = ask(
        sibling,
        STORE,
        {'content': 'x', 'layer': 'semantic'},
        extra=[('authorization', f'Bearer {token()}')],
    )
    assert twice['payload']['reason'] == 'malformed'
    sibling.request(
        STORE,
        envelope({'content': 'x', 'layer': 'semantic'}),
        extra=[('authorization', token())],
    )
    bare = replies(sibling, 2)[1]
    assert bare['payload']['reason'] == 'malformed'
    assert memory_count(dev_a) == 0


BAD_PAYLOADS: list[tuple[bytes, str, str | None]] = [
    (b'not json', 'invalid_json', None),
    (
        b'{"message_id": "a", "payload": {}, "message_id": "b"}',
        'duplicate_field',
        'message_id',
    ),
    (b'{"message_id": "a", "payload": NaN}', 'invalid_json', None),
    (b'[1, 2]', 'wrong_type', None),
    (b'\xff\xfe', 'invalid_json', None),
    (json.dumps({'payload': {}}).encode(), 'required', 'message_id'),
    (json.dumps({'message_id': 'a'}).encode(), 'required', 'payload'),
    (json.dumps({'message_id': 5, 'payload': {}}).encode(), 'wrong_type', 'message_id'),
    (
        json.dumps({'message_id': 'a' * 129, 'payload': {}}).encode(),
        'too_long',
        'message_id',
    ),
    (
        json.dumps({'message_id': 'a\x00', 'payload': {}}).encode(),
        'control_characters',
        'message_id',
    ),
    (json.dumps({'message_id': 'a', 'payload': []}).encode(), 'wrong_type', 'payload'),
    (
        json.dumps({'message_id': 'a', 'payload': {}, 'x': 1}).encode(),
        'unknown_field',
        'x',
    ),
    (
        json.dumps({'message_id': 'a', 'payload': {}, 'metadata': 3}).encode(),
        'wrong_type',
        'metadata',
    ),
    (envelope({'action': 'x' * 10}) + b' ' * (128 * 1024), 'too_large', None),
    (b'{"payload": ' * 10_000, 'invalid_json', None),
    # More digits than Python reads an integer from.
    (
        b'{"message_id": "a", "payload": {"action": ' + b'1' * 4301 + b'}}',
        'invalid_json',
        None,
    ),
    # Beyond a double, and a lone surrogate: a place in the payload is named
    # as the API names it, one in the envelope from the envelope.
    (
        b'{"message_id": "a", "payload": {"action": "x", "entity": -1e400}}',
        'out_of_range',
        'entity',
    ),
    (
        b'{"message_id": "a", "payload": {}, "metadata": {"n": [1e999]}}',
        'out_of_range',
        'metadata.n[0]',
    ),
    (b'{"message_id": "a\\ud800", "payload": {}}', 'invalid_text', 'message_id'),
]


def test_malformed_messages_get_bad_request(dev_a: Jameyd, sibling: Sibling) -> None:
    for number, (body, reason, field) in enumerate(BAD_PAYLOADS):
        correlation = str(number).encode()
        sibling.request(EVALUATE, body, token(), correlation=correlation)
        reply = sibling.wait_for(
            1,
            where=lambda m, c=correlation: (
                m.topic == REPLIES and m.properties.CorrelationData == c
            ),
        )[0]
        payload = json.loads(reply.payload)['payload']
        assert (payload['error'], payload['reason']) == ('bad_request', reason), body[
            :60
        ]
        assert payload.get('field') == field
    code, _, _ = dev_a.get('/health')
    assert code == 200


WRONG_FIELDS = [
    (EVALUATE, {}, 'required', 'action'),
    (EVALUATE, {'action': 5}, 'wrong_type', 'action'),
    (EVALUATE, {'action': ''}, 'empty', 'action'),
    (EVALUATE, {'action': 'x' * 100_000}, 'too_long', 'action'),
    (EVALUATE, {'action': 'hi', 'entity': 'a/b'}, 'invalid_name', 'entity'),
    (EVALUATE, {'action': 'hi', 'verdict': 'allow'}, 'unknown_field', 'verdict'),
    (STORE, {'content': 'x'}, 'required', 'layer'),
    (STORE, {'content': 'x', 'layer': 'forever'}, 'unknown_layer', 'layer'),
    (STORE, {'content': ['x'], 'layer': 'semantic'}, 'wrong_type', 'content'),
    (STORE, {'content': 'x\x07', 'layer': 'semantic'}, 'control_characters', 'content'),
    (STORE, {'content': 'x\udfff', 'layer': 'semantic'}, 'invalid_text', 'content'),
    (
        STORE,
        {'content': 'x', 'layer': 'semantic', 'metadata': {'\ud800': 1}},
        'invalid_text',
        'metadata',
    ),
    (EVALUATE, {'action': 'I \udbff'}, 'invalid_text', 'action'),
    (QUERY, {}, 'required', 'q'),
    (QUERY, {'q': 5}, 'wrong_type', 'q'),
    (QUERY, {'q': 'x', 'limit': '5'}, 'wrong_type', 'limit'),
    (QUERY, {'q': 'x', 'limit': True}, 'wrong_type', 'limit'),
    (QUERY, {'q': 'x', 'limit': 1000}, 'out_of_range', 'limit'),
    (QUERY, {'q': 'x', 'layer': ['semantic']}, 'unknown_layer', 'layer'),
    (QUERY, {'q': 'x', 'entity': 7}, 'wrong_type', 'entity'),
    (QUERY, {'q': 'x', 'since': 'now'}, 'unknown_field', 'since'),
    (QUERY, {'q': 'x', 'match': True}, 'wrong_type', 'match'),
    (QUERY, {'q': 'x', 'match': 'most'}, 'unknown_match', 'match'),
    (QUERY, {'q': 'x', 'context': '1'}, 'wrong_type', 'context'),
    (QUERY, {'q': 'x', 'context': 9}, 'out_of_range', 'context'),
]


def test_wrong_fields_get_bad_request_naming_the_field(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    for topic, payload, reason, field in WRONG_FIELDS:
        reply = ask(sibling, topic, payload)['payload']
        assert (reply['error'], reply['reason'], reply['field']) == (
            'bad_request',
            reason,
            field,
        ), payload
    assert memory_count(dev_a) == 0


def test_no_or_a_bad_response_topic_reports_on_errors(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    sibling.request(EVALUATE, b'nonsense', token(), reply_to=None)
    sibling.request(EVALUATE, envelope({'action': 'hi'}), token(), reply_to='replies/+')
    found = sibling.wait_for(2, where=lambda m: m.topic == 'jamey/dev-a/errors')
    # Two workers handle requests: the reports may come in either order.
    reasons = sorted(json.loads(m.payload)['payload']['reason'] for m in found)
    assert reasons == ['invalid_json', 'invalid_response_topic']
    # A request with nowhere to reply is still applied.
    sibling.request(
        STORE, envelope({'content': 'x', 'layer': 'semantic'}), token(), reply_to=None
    )
    deadline = time.monotonic() + 10
    while memory_count(dev_a) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memory_count(dev_a) == 1


def test_replies_never_go_to_own_or_request_topics(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    """A reply there would speak for the device (its status) or come back as
    a request: refused on errors, and the request not applied."""
    forbidden = [
        'jamey/dev-a/status',
        'jamey/dev-a',
        'jamey/dev-a/anything/below',
        'jamey/dev-a/memory/store',
        'jamey/fleet/conscience/evaluate',
        'jamey/dev-b/memory/query',
    ]
    status_before = len(sibling.documents('jamey/dev-a/status'))
    for topic in forbidden:
        sibling.request(
            STORE, envelope({'content': 'x', 'layer': 'semantic'}), token(), topic
        )
    found = sibling.wait_for(
        len(forbidden), where=lambda m: m.topic == 'jamey/dev-a/errors'
    )
    assert {
        (p['payload']['error'], p['payload']['reason'])
        for p in (json.loads(m.payload) for m in found)
    } == {('forbidden', 'reply_topic_not_allowed')}
    assert memory_count(dev_a) == 0
    assert len(sibling.documents('jamey/dev-a/status')) == status_before
    _, _, health = dev_a.get('/health/detailed')
    refused = health['checks']['mqtt']['refused']
    assert refused['forbidden/reply_topic_not_allowed'] == len(forbidden)
    # A sibling's own reply topic under the prefix is where replies belong.
    answer = ask(sibling, EVALUATE, {'action': 'hello'}, reply_to=REPLIES)
    assert answer['payload']['verdict'] == 'allow'


def test_a_flood_of_qos0_requests_is_bounded_and_counted(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    """QoS 0 is not acknowledged, so the receive maximum does not bound it:
    past 64 waiting, requests are dropped and counted, and the daemon goes on
    answering."""
    flood = 3000
    bearer = token()
    for n in range(flood):
        body = envelope({'action': f'question {n} of a flood'})
        sibling.request(EVALUATE, body, bearer, reply_to=None, qos=0)
    # The broker may drop QoS 0 messages too: wait until the counts settle.
    seen = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1)
        _, _, health = dev_a.get('/health/detailed')
        mqtt = health['checks']['mqtt']
        counts = (mqtt['answered'], mqtt['refused'].get('overloaded/qos0_dropped', 0))
        if counts == seen:
            break
        seen = counts
    answered, dropped = counts
    assert dropped > 0, mqtt
    assert answered >= 64, mqtt
    assert answered + dropped <= flood, mqtt
    assert ask(sibling, EVALUATE, {'action': 'hello'})['payload']['verdict'] == 'allow'


def test_heartbeat_arrives_at_its_interval(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    watcher = Sibling(broker).connect('jamey/dev-a/heartbeat')
    try:
        start_jameyd(sdir, broker, JAMEY_MQTT_HEARTBEAT_S='1')
        beats = watcher.wait_for(2, timeout=10)
        assert beats[0].qos == 0
        assert json.loads(beats[1].payload)['payload']['uptime_s'] >= 1
    finally:
        watcher.close()


def test_status_offline_on_sigterm_and_last_will_on_sigkill(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    def last_status() -> str:
        watcher = Sibling(broker).connect('jamey/dev-a/status')
        try:
            message = watcher.wait_for(1)[0]
            assert message.retain
            return str(json.loads(message.payload)['payload']['status'])
        finally:
            watcher.close()

    def retained_becomes(status: str, why: str) -> None:
        deadline = time.monotonic() + 10
        while last_status() != status:
            assert time.monotonic() < deadline, why
            time.sleep(0.1)

    daemon = start_jameyd(sdir, broker)
    online(sibling, 'dev-a')
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert last_status() == 'offline'
    daemon = start_jameyd(sdir, broker)
    # Ready before it reached the broker: the retained status turns with it.
    retained_becomes('online', 'not online again')
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    retained_becomes('offline', 'no Last Will')


def test_jameyd_runs_degraded_while_its_broker_is_away(
    broker: Broker, sdir: Path
) -> None:
    broker.stop()
    daemon = start_jameyd(sdir, broker)
    code, _, health = daemon.get('/health/detailed')
    assert code == 200
    assert health['status'] == 'degraded'
    assert health['checks']['mqtt']['status'] == 'degraded'
    assert health['checks']['mqtt']['state'] != 'connected'
    assert metric_values(daemon)['jamey_mqtt_connected'] == 0.0
    daemon.stop()
    assert daemon.proc is not None and daemon.proc.returncode == 0


def test_two_daemons_share_the_fleet_queue(broker: Broker, sibling: Sibling) -> None:
    roots = [short_dir(), short_dir()]
    daemons = [
        start_jameyd(root, broker, device)
        for root, device in zip(roots, ('dev-a', 'dev-b'), strict=True)
    ]
    try:
        online(sibling, 'dev-a')
        online(sibling, 'dev-b')
        bearer = token(aud='jamey/fleet', permissions=['jamey/fleet/#'])
        ids = [str(i) for i in range(1000)]
        for message_id in ids:
            sibling.request(
                'jamey/fleet/conscience/evaluate',
                envelope({'action': 'I will tell the truth'}, message_id),
                bearer,
                qos=1,
            )
        found = replies(sibling, 1000, timeout=60)
        by_request = [d['metadata']['correlation_id'] for d in found]
        assert sorted(by_request) == sorted(ids)  # each exactly once
        senders = {d['metadata']['client_id'] for d in found}
        assert senders == {'dev-a', 'dev-b'}
    finally:
        for daemon in daemons:
            daemon.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


# -- nothing lost ---------------------------------------------------------


def _send_stores(broker: Broker, count: int) -> list[str]:
    sender = Sibling(broker).connect()
    try:
        ids = [f'request-{i}' for i in range(count)]
        for message_id in ids:
            sender.request(
                STORE,
                envelope(
                    {'content': f'memory {message_id}', 'layer': 'semantic'}, message_id
                ),
                token(),
            )
        return ids
    finally:
        sender.close()


def _each_answered_once(receiver: Sibling, ids: list[str], timeout: float) -> None:
    """Every request answered; a reply that arrives twice (its PUBACK was
    lost in the outage) is the same reply, never a second answer."""
    deadline = time.monotonic() + timeout
    while True:
        found = receiver.documents(REPLIES)
        answered = {d['metadata']['correlation_id'] for d in found}
        if answered >= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    answers: dict[str, set[str]] = {}
    for document in found:
        answers.setdefault(document['metadata']['correlation_id'], set()).add(
            document['message_id']
        )
    assert sorted(answers) == sorted(ids)
    assert all(len(replies) == 1 for replies in answers.values())


def wait_drained(daemon: Jameyd) -> dict[str, Any]:
    """The MQTT check once the broker acknowledged the whole outbox."""
    deadline = time.monotonic() + 10
    while True:
        _, _, health = daemon.get('/health/detailed')
        check = dict(health['checks']['mqtt'])
        if check['outbox_depth'] == 0 or time.monotonic() > deadline:
            assert check['outbox_depth'] == 0
            assert check['outbox_oldest_s'] is None
            return check
        time.sleep(0.05)


def test_nothing_is_lost_while_the_broker_is_away(broker: Broker, sdir: Path) -> None:
    receiver = Sibling(broker, 'receiver').connect(REPLIES, STATUS, clean=False)
    daemon = start_jameyd(sdir, broker)
    # Requests sent before the daemon subscribed would reach nobody (MQTT).
    online(receiver, 'dev-a')
    try:
        # Paused, the daemon holds what the broker hands it (its receive
        # window) unanswered; it answers them once the broker is gone.
        daemon.signal(signal.SIGSTOP)
        ids = _send_stores(broker, 1000)
        time.sleep(0.5)
        broker.stop()
        daemon.signal(signal.SIGCONT)
        time.sleep(2)
        _, _, health = daemon.get('/health/detailed')
        check = health['checks']['mqtt']
        assert check['state'] != 'connected'
        assert check['outbox_depth'] > 0  # replies made while the broker is away
        print('outbox while the broker is away:', check['outbox_depth'])
        assert check['outbox_oldest_s'] > 0
        time.sleep(28)
        broker.start()
        _each_answered_once(receiver, ids, timeout=120)
        assert memory_count(daemon) == 1000
        check = wait_drained(daemon)
        assert check['reconnects'] >= 1
    finally:
        receiver.close()
        daemon.stop()


def test_nothing_is_lost_across_a_sigkill_of_jameyd(broker: Broker, sdir: Path) -> None:
    receiver = Sibling(broker, 'receiver').connect(REPLIES, STATUS, clean=False)
    daemon = start_jameyd(sdir, broker)
    online(receiver, 'dev-a')  # its session holds what comes while it is dead
    try:
        sending = threading.Thread(target=_send_stores, args=(broker, 1000))
        sending.start()
        receiver.wait_for(50, where=lambda m: m.topic == REPLIES)
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        sending.join()
        ids = [f'request-{i}' for i in range(1000)]
        answered = {
            d['metadata']['correlation_id'] for d in receiver.documents(REPLIES)
        }
        assert len(answered) < 1000  # killed mid-way
        daemon = start_jameyd(sdir, broker)
        _each_answered_once(receiver, ids, timeout=60)
        assert memory_count(daemon) == 1000
        wait_drained(daemon)
    finally:
        receiver.close()
        daemon.stop()


@pytest.mark.parametrize('curve', ['ed25519', 'p256'])
def test_the_broker_password_is_a_short_jwt_for_this_device(curve: str) -> None:
    private: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if curve == 'ed25519'
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = DeviceSigner(pem, 'dev-a', TOKEN_LIFETIME_S)
    algorithm = {'ed25519': 'EdDSA', 'p256': 'ES256'}[curve]
    claims = jwt.decode(signer.token(), private.public_key(), algorithms=[algorithm])
    assert claims['sub'] == 'dev-a'
    assert 0 < claims['exp'] - time.time() <= TOKEN_LIFETIME_S
    with pytest.raises(ConfigError, match='jwt_key_file'):
        DeviceSigner(b'not a key', 'dev-a', TOKEN_LIFETIME_S)
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match='only Ed25519 and P-256'):
        DeviceSigner(rsa_pem, 'dev-a', TOKEN_LIFETIME_S)


def test_auth_modes_need_their_files(broker: Broker) -> None:
    env = broker.jameyd_env('dev-a')
    for auth, missing in (
        ('jwt', 'jwt_key_file'),
        ('certificate', 'cert_file'),
    ):
        settings = config.load(None, {**env, 'JAMEY_MQTT_AUTH': auth})
        with pytest.raises(ConfigError, match=missing):
            Login(settings.mqtt, {})
    settings = config.load(None, {**env, 'JAMEY_MQTT_PASSWORD_FILE': ''})
    with pytest.raises(ConfigError, match='password_file'):
        Login(settings.mqtt, {})
    Path(env['JAMEY_MQTT_PASSWORD_FILE']).write_bytes(b'\xff\xfe')
    settings = config.load(None, env)
    with pytest.raises(ConfigError, match='not UTF-8'):
        Login(settings.mqtt, {})


def test_the_outbox_keeps_order_and_forgets_answers_after_ten_minutes(
    db: Any,
) -> None:
    now = [1_000_000.0]
    outbox = Outbox(db, clock=lambda: now[0])
    assert outbox.depth() == (0, None)
    with db.transaction():
        for i in range(3):
            outbox.add('replies/x', f'{i}'.encode(), None if i else b'corr')
    with pytest.raises(RuntimeError), db.transaction():  # rolled back with its change
        outbox.add('replies/x', b'lost', None)
        raise RuntimeError
    now[0] += 5
    rows = outbox.after(0)
    assert [r.payload for r in rows] == [b'0', b'1', b'2']
    assert rows[0].correlation == b'corr'
    assert outbox.depth() == (3, 5.0)
    assert [r.payload for r in outbox.after(rows[0].id)] == [b'1', b'2']
    outbox.remove([rows[1].id])
    assert [r.payload for r in outbox.after(0)] == [b'0', b'2']
    outbox.remember('sibling', 'm-1', b'reply')
    assert outbox.answered('sibling', 'm-1') == b'reply'
    assert outbox.answered('other', 'm-1') is None
    now[0] += 599
    assert outbox.forget_answered() == 0
    assert outbox.answered('sibling', 'm-1') == b'reply'
    now[0] += 2
    assert outbox.answered('sibling', 'm-1') is None
    assert outbox.forget_answered() == 1


def test_a_retained_request_is_not_replayed_at_the_next_subscribe(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    daemon = start_jameyd(sdir, broker)
    online(sibling, 'dev-a')
    body = envelope({'content': 'kept once', 'layer': 'semantic'}, 'retained-1')
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = REPLIES
    properties.UserProperty = [
        ('authorization', f'Bearer {token().bound("retained-1")}')
    ]
    sibling.client.publish(
        STORE, body, qos=1, retain=True, properties=properties
    ).wait_for_publish(10)
    assert 'id' in replies(sibling, 1)[0]['payload']  # live delivery: applied
    daemon.stop()
    daemon = start_jameyd(sdir, broker)
    replayed = replies(sibling, 2)[1]['payload']
    assert (replayed['error'], replayed['reason']) == ('bad_request', 'retained')
    assert memory_count(daemon) == 1
    daemon.stop()


def test_a_client_certificate_is_the_identity_with_auth_certificate(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    env = {
        **broker.jameyd_env('dev-c'),
        'JAMEY_MQTT_PORT': str(broker.cert_port),
        'JAMEY_MQTT_AUTH': 'certificate',
        'JAMEY_MQTT_USERNAME': '',
        'JAMEY_MQTT_PASSWORD_FILE': '',
        'JAMEY_MQTT_CERT_FILE': str(broker.pki['client']),
        'JAMEY_MQTT_KEY_FILE': str(broker.pki['client_key']),
    }
    daemon = Jameyd(sdir, env=env).start()
    try:
        online(sibling, 'dev-c')
        reply = ask(
            sibling,
            'jamey/dev-c/conscience/evaluate',
            {'action': 'I will tell the truth'},
            token(aud='dev-c'),
        )
        assert reply['payload']['verdict'] == 'allow'
    finally:
        daemon.stop()


def test_without_a_client_certificate_the_broker_refuses_and_jameyd_retries(
    broker: Broker, sdir: Path
) -> None:
    env = {**broker.jameyd_env('dev-a'), 'JAMEY_MQTT_PORT': str(broker.cert_port)}
    daemon = start_jameyd(sdir, broker, **env)
    deadline = time.monotonic() + 10
    while 'mqtt.connect_failed' not in daemon.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _, _, health = daemon.get('/health/detailed')
    assert health['checks']['mqtt']['state'] == 'disconnected'
    daemon.stop()


def test_a_remembered_token_is_refused_once_it_expires(
    broker: Broker, sibling: Sibling, sdir: Path
) -> None:
    daemon = start_jameyd(sdir, broker, JAMEY_AUTH_JWT_LEEWAY_S='0')
    try:
        online(sibling, 'dev-a')
        short = token(exp_in=1.5)
        assert 'verdict' in ask(sibling, EVALUATE, {'action': 'hi'}, short)['payload']
        time.sleep(2)
        refused = ask(sibling, EVALUATE, {'action': 'hi'}, short)['payload']
        assert (refused['error'], refused['reason']) == ('invalid_token', 'expired')
    finally:
        daemon.stop()


def test_the_outbox_goes_out_in_order_across_an_outage(
    broker: Broker, sibling: Sibling, tmp_path: Path, db: Any
) -> None:
    settings = config.load(None, broker.jameyd_env('dev-a'))
    bridge = mqtt.bridge(
        settings,
        {},
        db,
        Conscience(db),
        Soul(db),
        MemoryStore(db, tmp_path / 'index'),
        AuditLog(db, 1000),
    )
    outbox = Outbox(db)
    for i in range(300):
        outbox.add(REPLIES, str(i).encode(), None)
    bridge.start()
    try:
        first = sibling.wait_for(300, where=lambda m: m.topic == REPLIES)
        assert [int(m.payload) for m in first] == list(range(300))
        broker.stop()
        for i in range(300, 600):
            outbox.add(REPLIES, str(i).encode(), None)
        assert bridge.stats()['outbox_depth'] >= 300
        broker.start()
        arrived = sibling.wait_for(600, timeout=30, where=lambda m: m.topic == REPLIES)
        numbers = [int(m.payload) for m in arrived]
        firsts = list(dict.fromkeys(numbers))  # a resend may repeat, never reorder
        assert firsts == list(range(600))
        deadline = time.monotonic() + 10
        while bridge.stats()['outbox_depth'] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bridge.stats()['outbox_depth'] == 0
        assert bridge.stats()['reconnects'] == 1
    finally:
        bridge.stop(1.0)


def test_a_reply_the_broker_refuses_leaves_the_outbox_and_is_counted(
    dev_a: Jameyd, sibling: Sibling
) -> None:
    sibling.request(
        EVALUATE, envelope({'action': 'hi'}), token(), reply_to='elsewhere/x'
    )
    deadline = time.monotonic() + 10
    while True:
        _, _, health = dev_a.get('/health/detailed')
        refused = health['checks']['mqtt']['refused']
        if refused or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert refused == {'broker/Not_authorized': 1}  # PUBACK 0x87 (ACL)
    wait_drained(dev_a)
    assert ask(sibling, EVALUATE, {'action': 'hi'})['payload']['verdict'] == 'allow'


def _hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token pyjwt refuses to make (a PEM key as the secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b'=').decode()

    header = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    signing_input = f'{header}.{b64(json.dumps(claims).encode())}'
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f'{signing_input}.{b64(mac)}'


def test_fleet_public_keys_verify_eddsa_and_es256_tokens(
    broker: Broker, sibling: Sibling, sdir: Path, tmp_path: Path
) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = b''.join(
        k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in (ed, p256)
    )
    keys = tmp_path / 'fleet-keys.pem'
    keys.write_bytes(pem)
    keys.chmod(0o644)  # public: no secrecy needed
    daemon = start_jameyd(
        sdir,
        broker,
        JAMEY_MQTT_TRUST_SECRET_FILE='',
        JAMEY_MQTT_TRUST_KEYS_FILE=str(keys),
    )
    try:
        online(sibling, 'dev-a')
        for key, algorithm in ((ed, 'EdDSA'), (p256, 'ES256')):
            bearer = token(key=key, algorithm=algorithm)
            assert (
                'verdict' in ask(sibling, EVALUATE, {'action': 'hi'}, bearer)['payload']
            )
        other = ed25519.Ed25519PrivateKey.generate()
        forged = ask(
            sibling, EVALUATE, {'action': 'hi'}, token(key=other, algorithm='EdDSA')
        )
        assert forged['payload']['reason'] == 'bad_signature'
        # The public key used as an HMAC secret: no key accepts HS256 here.
        confused = _hs256_by_hand(
            {'aud': 'dev-a', 'exp': int(time.time()) + 60, 'permissions': ['#']}, pem
        )
        refused = ask(sibling, EVALUATE, {'action': 'hi'}, confused)['payload']
        assert refused['reason'] == 'algorithm_not_accepted'
    finally:
        daemon.stop()


def test_auth_jwt_logs_in_with_a_fresh_token_each_time(
    broker: Broker, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / 'device.key'
    write_private_key(key_file, key)
    env = {
        **broker.jameyd_env('dev-a'),
        'JAMEY_MQTT_AUTH': 'jwt',
        'JAMEY_MQTT_USERNAME': '',
        'JAMEY_MQTT_JWT_KEY_FILE': str(key_file),
    }
    login = Login(config.load(None, env).mqtt, {})
    username, password, refresh_at = login.credentials()
    assert username == 'dev-a'
    assert password is not None
    assert refresh_at is not None
    claims = jwt.decode(password, key.public_key(), algorithms=['ES256'])
    assert claims['sub'] == 'dev-a'
    # Logs in again when 80% of the token's life has passed, before exp.
    lifetime = claims['exp'] - claims['iat']
    assert refresh_at - time.monotonic() == pytest.approx(0.8 * lifetime, abs=2)
    again = login.credentials()[1]
    assert again is not None
    assert again != password  # signed anew at every login
    key_file.chmod(0o640)
    with pytest.raises(ConfigError, match='chmod 600'):
        Login(config.load(None, env).mqtt, {})
