"""JWTs: the ones requests carry (checked here), and the one this device
presents to the broker as its password (signed here).

A request's token must be signed by a fleet key with that key's own
algorithm (the token's ``alg`` header only picks among the configured keys,
so ``none`` or an HS256 token signed with a public key never verifies), must
not be expired, must name this device or the fleet as its audience, and its
``permissions`` claim (MQTT topic filters) must cover the topic it came on.
"""

import re
import threading
import time
from typing import Any
from typing import NamedTuple

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519

from jamey.errors import ConfigError
from jamey.errors import RefusedError
from jamey.mqtt.topics import covers

MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 8192
MAX_PERMISSIONS = 64
CACHED_TOKENS = 256
_PEM_BLOCK = re.compile(
    rb'-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----', re.DOTALL
)


class TrustedKey(NamedTuple):
    algorithm: str
    key: Any


def _algorithm(key: Any, what: str) -> str:
    """The one algorithm a key is used with, from its type."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return 'EdDSA'
    if isinstance(
        key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey
    ) and isinstance(key.curve, ec.SECP256R1):
        return 'ES256'
    raise ConfigError(f'{what}: only Ed25519 and P-256 keys are accepted')


def trusted_keys(secret: bytes | None, pem: bytes | None) -> list[TrustedKey]:
    """The fleet's keys, from the secret file's bytes and the PEM file's.

    Raises:
        ConfigError: a secret shorter than 32 bytes, a PEM file without keys
            or with a key of another type, or neither given.
    """
    keys: list[TrustedKey] = []
    if secret is not None:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f'mqtt.trust_secret_file: the secret must be at least'
                f' {MIN_SECRET_BYTES} bytes'
            )
        keys.append(TrustedKey('HS256', secret))
    if pem is not None:
        blocks = _PEM_BLOCK.findall(pem)
        if not blocks:
            raise ConfigError('mqtt.trust_keys_file: no PEM public key in the file')
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block)
            except ValueError:
                raise ConfigError('mqtt.trust_keys_file: a key is not valid') from None
            keys.append(TrustedKey(_algorithm(key, 'mqtt.trust_keys_file'), key))
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
        self, keys: list[TrustedKey], audiences: list[str], leeway_s: float
    ) -> None:
        self.keys = keys
        self.audiences = audiences
        self.leeway_s = leeway_s
        # A sibling sends many requests with one token: its signature is
        # checked once (that is most of the cost of a request), and the
        # token is trusted until its exp, like one checked each time.
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

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
        with self._lock:
            known = self._verified.get(token)
        if known is not None and time.time() < known['exp'] + self.leeway_s:
            return known
        claims = self._verify(token)
        with self._lock:
            if len(self._verified) >= CACHED_TOKENS:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(token).get('alg')
        except jwt.InvalidTokenError:
            raise _invalid('malformed', 'The token is not a JWT.') from None
        candidates = [k.key for k in self.keys if k.algorithm == algorithm]
        if not candidates:
            raise _invalid(
                'algorithm_not_accepted',
                f'Tokens signed with {str(algorithm)[:16]!r} are not accepted.',
            )
        return self._decode(token, str(algorithm), candidates)

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if authorization is None:
            raise _invalid('missing', 'The request carries no token.')
        scheme, _, token = authorization.partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            raise _invalid('malformed', 'authorization must be "Bearer <token>".')
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid('malformed', 'The token is too long.')
        return token.strip()

    def _decode(self, token: str, algorithm: str, keys: list[Any]) -> dict[str, Any]:
        for key in keys:
            try:
                return dict(
                    jwt.decode(
                        token,
                        key,
                        algorithms=[algorithm],
                        audience=self.audiences,
                        leeway=self.leeway_s,
                        options={'require': ['exp', 'aud']},
                    )
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the fleet may have signed it
            except jwt.ExpiredSignatureError:
                raise _invalid('expired', 'The token has expired.') from None
            except jwt.InvalidAudienceError:
                raise _invalid(
                    'wrong_audience', 'The token is not meant for this device.'
                ) from None
            except jwt.MissingRequiredClaimError as exc:
                raise _invalid(
                    'missing_claim', f'The token has no {exc.claim} claim.'
                ) from None
            except jwt.InvalidTokenError:
                raise _invalid('invalid', 'The token is not valid.') from None
        raise _invalid('bad_signature', 'No fleet key signed the token.')

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
        self.algorithm = _algorithm(self.key, 'mqtt.jwt_key_file')
        self.client_id = client_id
        self.lifetime_s = lifetime_s

    def token(self) -> str:
        now = int(time.time())
        claims = {'sub': self.client_id, 'iat': now, 'exp': now + int(self.lifetime_s)}
        return jwt.encode(claims, self.key, algorithm=self.algorithm)
