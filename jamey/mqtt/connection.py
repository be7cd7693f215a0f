"""How this device reaches the broker: TLS 1.3, its login, its backoff.

Read once at start from ``[mqtt]``: a setting that cannot work (no key for
``auth = "jwt"``, a secret file others can read) stops jameyd with a
message naming the key, rather than a daemon that retries a login forever.
"""

import random
import ssl
import time
from collections.abc import Mapping
from typing import NamedTuple

from jamey import config
from jamey.errors import ConfigError
from jamey.mqtt.tokens import DeviceSigner

# The broker password of auth = "jwt" lives this long; the client logs in
# again with a fresh one when 80% of it has passed.
TOKEN_LIFETIME_S = 900.0
TOKEN_REFRESH_AT = 0.8


class Backoff(NamedTuple):
    """Exponential backoff with jitter between reconnects: devices that lost
    one broker together must not come back at the same instant."""

    first_s: float = 1.0
    max_s: float = 60.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.first_s * 2 ** min(attempt, 32))
        return random.uniform(max(self.first_s, ceiling / 2), ceiling)  # noqa: S311


def tls_context(
    mqtt: config.MqttSettings, environ: Mapping[str, str]
) -> ssl.SSLContext:
    """TLS 1.3 only, the broker's certificate checked against ``ca_file``
    and ``host``; the client certificate when one is configured.

    Raises:
        ConfigError: a file that cannot be read or used.
    """
    try:
        context = ssl.create_default_context(cafile=mqtt.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f'mqtt.ca_file {mqtt.ca_file}: {exc}') from None
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if mqtt.cert_file:
        if not mqtt.key_file:
            raise ConfigError('mqtt.cert_file needs mqtt.key_file')
        config.read_secret(mqtt.key_file, environ)  # refused if others can read it
        try:
            context.load_cert_chain(
                mqtt.cert_file, config.secret_path(mqtt.key_file, environ)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f'mqtt.cert_file or mqtt.key_file cannot be used: {exc}'
            ) from None
    return context


class Login:
    """The user name and password of each connection (a fresh JWT each time
    for ``auth = "jwt"``)."""

    def __init__(self, mqtt: config.MqttSettings, environ: Mapping[str, str]) -> None:
        self.username = mqtt.username or mqtt.device_id
        self._password: str | None = None
        self._signer: DeviceSigner | None = None
        if mqtt.auth == 'jwt':
            if not mqtt.jwt_key_file:
                raise ConfigError('mqtt.auth = "jwt" needs mqtt.jwt_key_file')
            pem = config.read_secret(mqtt.jwt_key_file, environ)
            self._signer = DeviceSigner(pem, mqtt.device_id, TOKEN_LIFETIME_S)
        elif mqtt.auth == 'password':
            if not mqtt.password_file:
                raise ConfigError('mqtt.auth = "password" needs mqtt.password_file')
            secret = config.read_secret(mqtt.password_file, environ)
            try:
                self._password = secret.rstrip(b'\r\n').decode()
            except UnicodeDecodeError:
                raise ConfigError('mqtt.password_file is not UTF-8 text') from None
        elif not (mqtt.cert_file and mqtt.key_file):
            raise ConfigError(
                'mqtt.auth = "certificate" needs mqtt.cert_file and mqtt.key_file'
            )

    def credentials(self) -> tuple[str, str | None, float | None]:
        """User name, password, and when (monotonic) to log in again."""
        if self._signer is None:
            return self.username, self._password, None
        refresh = time.monotonic() + TOKEN_LIFETIME_S * TOKEN_REFRESH_AT
        return self.username, self._signer.token(), refresh
