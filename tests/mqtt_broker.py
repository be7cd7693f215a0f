"""A real Mosquitto for the MQTT tests: certificates made now, TLS 1.3 only,
a password file and an ACL, on a free loopback port; and a paho client that
plays the sibling device."""

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import paho.mqtt.client as paho
from certs import Authority
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from ports import free_port

HOST = '127.0.0.1'
PASSWORD = 'broker-password-of-tests'  # noqa: S105 - a test broker's
SECRET = b'fleet-secret-of-the-tests-0123456789abcdef'
USERS = ('tester', 'dev-a', 'dev-b')
# The client certificate's name: the user name on the certificate listener.
CLIENT_CN = 'dev-c'
# Devices may use their own topics, the fleet queue and reply topics; the
# tester (the sibling) may use everything.
ACL = """\
pattern readwrite jamey/%u/#
pattern read jamey/fleet/#
pattern write replies/#
user tester
topic readwrite #
"""


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, the broker's certificate (for 127.0.0.1) and a client's."""
    authority = Authority(directory, 'jamey test CA')
    server, server_key = authority.issue('server')
    client, client_key = authority.issue(CLIENT_CN, server=False)
    return {
        'ca': authority.cert_file,
        'server': server,
        'server_key': server_key,
        'client': client,
        'client_key': client_key,
    }


class Broker:
    """mosquitto on a free port; ``stop`` and ``start`` keep port and state."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.cert_port = free_port()
        self.pki = make_pki(directory)
        self.proc: subprocess.Popen[bytes] | None = None
        passwords = directory / 'passwords'
        passwords.write_text('')
        passwords.chmod(0o600)
        for user in USERS:
            subprocess.run(
                ['mosquitto_passwd', '-b', str(passwords), user, PASSWORD], check=True
            )
        (directory / 'acl').write_text(ACL)
        (directory / 'acl').chmod(0o600)
        self.config = directory / 'mosquitto.conf'
        self._write_config()

    def _write_config(self) -> None:
        directory, passwords = self.dir, self.dir / 'passwords'
        self.config.write_text(
            ('user root\n' if os.geteuid() == 0 else '')
            + f'persistence true\npersistence_location {directory}/\n'
            f'allow_anonymous false\npassword_file {passwords}\n'
            f'acl_file {directory / "acl"}\nset_tcp_nodelay true\n'
            'max_queued_messages 100000\nlog_dest stderr\nlog_type error\n'
            f'listener {self.port} {HOST}\ncafile {self.pki["ca"]}\n'
            f'certfile {self.pki["server"]}\nkeyfile {self.pki["server_key"]}\n'
            'tls_version tlsv1.3\n'
            f'listener {self.cert_port} {HOST}\ncafile {self.pki["ca"]}\n'
            f'certfile {self.pki["server"]}\nkeyfile {self.pki["server_key"]}\n'
            'tls_version tlsv1.3\nrequire_certificate true\n'
            'use_identity_as_username true\n'
        )

    def start(self) -> 'Broker':
        """Run mosquitto until it listens. Before its first start the ports
        may be taken between choosing and binding; then new ones are chosen.
        A restart keeps its ports, which the clients already hold."""
        first = self.proc is None and not (self.dir / 'mosquitto.log').exists()
        for _ in range(5):
            if self._run():
                return self
            if not first or 'Address already in use' not in self.log():
                break
            self.port, self.cert_port = free_port(), free_port()
            self._write_config()
        raise AssertionError(f'mosquitto did not listen: {self.log()}')

    def _run(self) -> bool:
        with (self.dir / 'mosquitto.log').open('ab') as log:
            self.proc = subprocess.Popen(
                ['mosquitto', '-c', str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.port), 0.2),
            ):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        return (self.dir / 'mosquitto.log').read_text(errors='replace')

    def jameyd_env(self, device_id: str) -> dict[str, str]:
        """What a jameyd needs to reach this broker as ``device_id``."""
        password = self.dir / f'{device_id}.password'
        if not password.exists():
            password.write_text(PASSWORD)
            password.chmod(0o600)
        secret = self.dir / 'fleet.secret'
        if not secret.exists():
            secret.write_bytes(SECRET)
            secret.chmod(0o600)
        return {
            'JAMEY_MQTT_ENABLED': 'true',
            'JAMEY_MQTT_HOST': HOST,
            'JAMEY_MQTT_PORT': str(self.port),
            'JAMEY_MQTT_CA_FILE': str(self.pki['ca']),
            'JAMEY_MQTT_AUTH': 'password',
            'JAMEY_MQTT_USERNAME': device_id,
            'JAMEY_MQTT_PASSWORD_FILE': str(password),
            'JAMEY_MQTT_DEVICE_ID': device_id,
            'JAMEY_MQTT_TRUST_SECRET_FILE': str(secret),
        }


class Token(str):
    """A signed request token that can be signed again for one message: what
    a sibling does for each request (``mqtt.bind_tokens``). ``Sibling.request``
    binds it to the envelope it sends, unless the claims name a message."""

    claims: dict[str, Any]
    key: Any
    algorithm: str

    def bound(self, message_id: str) -> str:
        if 'message_id' in self.claims:
            return str(self)
        claims = {**self.claims, 'message_id': message_id}
        return jwt.encode(claims, self.key, algorithm=self.algorithm)


def token(
    aud: str = 'dev-a',
    permissions: Any = ('jamey/#',),
    exp_in: float = 300,
    key: Any = SECRET,
    algorithm: str = 'HS256',
    **claims: Any,
) -> Token:
    body = {
        'sub': 'sibling',
        'aud': aud,
        'exp': int(time.time() + exp_in),
        'permissions': list(permissions)
        if isinstance(permissions, tuple)
        else permissions,
        **claims,
    }
    signed = Token(jwt.encode(body, key, algorithm=algorithm))
    signed.claims, signed.key, signed.algorithm = body, key, algorithm
    return signed


def message_id_of(body: bytes) -> str | None:
    """The message_id of an envelope; None if it has none or is not one."""
    try:
        found = json.loads(body).get('message_id')
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str) else None


def envelope(payload: Any, message_id: str | None = None) -> bytes:
    return json.dumps(
        {'message_id': message_id or str(uuid.uuid4()), 'payload': payload}
    ).encode()


class Sibling:
    """A paho client as a sibling device: sends requests, collects what
    arrives on the topics it subscribed to."""

    def __init__(self, broker: Broker, client_id: str | None = None) -> None:
        self.broker = broker
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f'tester-{uuid.uuid4().hex[:8]}',
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.tls_set(ca_certs=str(broker.pki['ca']))
        self.client.username_pw_set('tester', PASSWORD)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.messages: list[paho.MQTTMessage] = []
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )

    def _on_message(
        self, client: Any, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def connect(self, *topics: str, clean: bool = True) -> 'Sibling':
        properties = Properties(PacketTypes.CONNECT)
        if not clean:
            properties.SessionExpiryInterval = 3600
        self.client.on_connect = lambda *a: self._resubscribe(topics)
        self.client.connect(
            HOST, self.broker.port, clean_start=clean, properties=properties
        )
        self.client.loop_start()
        if topics:
            assert self._subscribed.wait(10), 'no SUBACK'
        return self

    def _resubscribe(self, topics: tuple[str, ...]) -> None:
        if topics:
            self.client.subscribe([(t, 1) for t in topics])

    def request(
        self,
        topic: str,
        body: bytes,
        bearer: str | None = None,
        reply_to: str | None = 'replies/tester',
        correlation: bytes | None = None,
        extra: list[tuple[str, str]] = (),  # type: ignore[assignment]
        qos: int = 1,
    ) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        if reply_to is not None:
            properties.ResponseTopic = reply_to
        if correlation is not None:
            properties.CorrelationData = correlation
        users = list(extra)
        message_id = message_id_of(body)
        if isinstance(bearer, Token) and message_id is not None:
            bearer = bearer.bound(message_id)
        if bearer is not None:
            users.append(('authorization', f'Bearer {bearer}'))
        if users:
            properties.UserProperty = users
        info = self.client.publish(topic, body, qos=qos, properties=properties)
        if qos:
            info.wait_for_publish(10)

    def wait_for(
        self,
        count: int,
        timeout: float = 10.0,
        where: Callable[[Any], bool] | None = None,
    ) -> list[paho.MQTTMessage]:
        """At least ``count`` messages (matching ``where``), or an assertion."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [m for m in self.messages if where is None or where(m)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f'{len(found)} of {count} messages arrived')
                self._arrived.wait(remaining)

    def documents(self, topic: str | None = None) -> list[dict[str, Any]]:
        with self._arrived:
            return [
                json.loads(m.payload)
                for m in self.messages
                if topic is None or m.topic == topic
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
