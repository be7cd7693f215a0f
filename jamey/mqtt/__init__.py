"""MQTT with sibling devices: requests in, replies and status out.

``bridge`` builds the connection from ``[mqtt]``; the parts are the topics
and their permission filters (``topics``), request tokens and the device's
broker JWT (``tokens``), the message envelope (``envelope``), the outbox
(``outbox``), the request handlers over the capabilities (``handlers``) and
the client itself (``client``).
"""

from collections.abc import Mapping
from pathlib import Path

from jamey import config
from jamey.audit import AuditLog
from jamey.conscience import Conscience
from jamey.errors import ConfigError
from jamey.memory import MemoryStore
from jamey.mqtt.client import Bridge
from jamey.mqtt.connection import Login
from jamey.mqtt.connection import tls_context
from jamey.mqtt.handlers import handlers
from jamey.mqtt.tokens import Verifier
from jamey.mqtt.tokens import trusted_keys
from jamey.mqtt.topics import FLEET
from jamey.mqtt.topics import Topics
from jamey.soul import Soul
from jamey.storage import Database

__all__ = ['Bridge', 'bridge']


def _public_keys(value: str) -> bytes | None:
    """Public keys need no secrecy: any readable file will do."""
    if not value:
        return None
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f'cannot read mqtt.trust_keys_file {value}: {exc.strerror}'
        ) from None


def bridge(
    settings: config.Settings,
    environ: Mapping[str, str],
    db: Database,
    conscience: Conscience,
    soul: Soul,
    memories: MemoryStore,
    audit: AuditLog,
) -> Bridge:
    """The bridge ``[mqtt]`` describes, not yet started.

    Raises:
        ConfigError: a setting that cannot work (missing key or secret,
            unusable certificate, no fleet keys to check requests with).
    """
    mqtt = settings.mqtt
    secret = mqtt.trust_secret_file
    keys = trusted_keys(
        config.read_secret(secret, environ) if secret else None,
        _public_keys(mqtt.trust_keys_file),
    )
    audiences = [mqtt.device_id, f'{mqtt.prefix}/{FLEET}']
    return Bridge(
        host=mqtt.host,
        port=mqtt.port,
        client_id=mqtt.device_id,
        topics=Topics(mqtt.prefix, mqtt.device_id),
        tls=tls_context(mqtt, environ),
        login=Login(mqtt, environ),
        verifier=Verifier(
            keys, audiences, settings.auth.jwt_leeway_s, mqtt.bind_tokens
        ),
        db=db,
        handlers=handlers(conscience, soul, memories, audit),
        heartbeat_s=mqtt.heartbeat_s,
    )
