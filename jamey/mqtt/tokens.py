"""JWTs: the ones requests carry (checked here), and the one this device
presents to the broker as its password (signed here).

A request's token must be signed by a fleet key (``jamey.jwts`` checks the
signature, the algorithm, ``exp`` and the audience: this device or the
fleet), and its ``permissions`` claim (MQTT topic filters) must cover the
topic it came on.
"""

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from jamey import jwts
from jamey.errors import ConfigError
from jamey.errors import RefusedError
from jamey.jwts import TrustedKey
from jamey.mqtt.outbox import REMEMBER_S
from jamey.mqtt.topics import covers

MAX_PERMISSIONS = 64
CACHED_TOKENS = 256


def trusted_keys(secret: bytes | None, pem: bytes | None) -> list[TrustedKey]:
    """The fleet's keys, from the secret file's bytes and the PEM file's.

    Raises:
        ConfigError: a secret shorter than 32 bytes, a PEM file without keys
            or with a key of another type, or neither given.
    """
    keys: list[TrustedKey] = []
    if secret is not None:
        keys.append(jwts.secret_key(secret, 'mqtt.trust_secret_file'))
    if pem is not None:
        keys += jwts.public_keys(pem, 'mqtt.trust_keys_file')
    if not keys:
        raise ConfigError(
            'mqtt.enabled needs mqtt.trust_secret_file or mqtt.trust_keys_file'
            ' (the keys that sign requests)'
        )
    return keys


def _invalid(reason: str, message: str) -> RefusedError:
    return RefusedError('invalid_token', reason, message)


class Verifier:
    """Checks the ``authorization`` of a request against the fleet keys."""

    def __init__(
        self,
        keys: list[TrustedKey],
        audiences: list[str],
        leeway_s: float,
        bind: bool = True,
    ) -> None:
        self.keys = keys
        self.audiences = audiences
        self.leeway_s = leeway_s
        self.bind = bind
        self._verified = jwts.VerifiedTokens(CACHED_TOKENS)

    def check_bound(self, claims: dict[str, Any], message_id: str) -> None:
        """With ``bind``, a token carries one message only: it names the
        message's id, and it expires before this device forgets that id (a
        redelivery within that time gets the first reply, never applied
        again), so a captured token cannot carry a request of its own.

        Raises:
            RefusedError: ``invalid_token`` with reason ``not_bound`` (no or
                another ``message_id`` claim) or ``too_long_lived``.
        """
        if not self.bind:
            return
        if claims.get('message_id') != message_id:
            raise _invalid(
                'not_bound',
                "The token must name this request's message_id in its"
                ' message_id claim.',
            )
        if float(claims['exp']) - time.time() > REMEMBER_S + self.leeway_s:
            raise _invalid(
                'too_long_lived',
                f'A request token may expire at most {REMEMBER_S} s from now.',
            )

    def claims(self, authorization: str | None, topic: str) -> dict[str, Any]:
        """The verified claims of a request that may use ``topic``.

        Raises:
            RefusedError: ``invalid_token`` (missing, malformed, bad
                signature, expired, wrong audience, ...) or ``forbidden``
                (the permissions do not cover the topic).
        """
        claims = self._claims(self._bearer(authorization))
        if not any(covers(p, topic) for p in self._permissions(claims)):
            raise RefusedError(
                'forbidden',
                'not_permitted',
                'The token does not permit requests on this topic.',
            )
        return claims

    def _claims(self, token: str) -> dict[str, Any]:
        known: dict[str, Any] | None = self._verified.get(token)
        if known is not None:
            return known
        try:
            claims = jwts.decode(
                token, self.keys, self.audiences, self.leeway_s, ('exp', 'aud')
            )
        except jwts.TokenRejectedError as exc:
            raise _invalid(exc.reason, str(exc)) from None
        self._verified.put(token, claims, float(claims['exp']) + self.leeway_s)
        return claims

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if authorization is None:
            raise _invalid('missing', 'The request carries no token.')
        scheme, _, token = authorization.partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            raise _invalid('malformed', 'authorization must be "Bearer <token>".')
        return token.strip()

    @staticmethod
    def _permissions(claims: dict[str, Any]) -> list[str]:
        permissions = claims.get('permissions')
        if (
            not isinstance(permissions, list)
            or len(permissions) > MAX_PERMISSIONS
            or not all(isinstance(p, str) for p in permissions)
        ):
            raise RefusedError(
                'forbidden',
                'no_permissions',
                'The token has no permissions claim (a list of topic filters).',
            )
        return permissions


class DeviceSigner:
    """Signs this device's broker password: ``sub`` = the client id, a short
    ``exp`` (what EMQX's JWT authentication checks)."""

    def __init__(self, pem: bytes, client_id: str, lifetime_s: float) -> None:
        try:
            self.key: Any = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                'mqtt.jwt_key_file: not an unencrypted PEM private key'
            ) from None
        self.algorithm = jwts.algorithm_of(self.key, 'mqtt.jwt_key_file')
        self.client_id = client_id
        self.lifetime_s = lifetime_s

    def token(self) -> str:
        now = int(time.time())
        claims = {'sub': self.client_id, 'iat': now, 'exp': now + int(self.lifetime_s)}
        return jwt.encode(claims, self.key, algorithm=self.algorithm)
