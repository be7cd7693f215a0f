"""JSON Web Tokens, checked alike wherever they arrive.

Bearer tokens of the API and the tokens MQTT requests carry are verified
here: a token must be signed by a configured key *with that key's own
algorithm* (the token's ``alg`` header only picks among the configured keys,
so ``none``, or an HS256 token keyed with a public key, never verifies), and
must carry the claims its caller requires. Keys are Ed25519 (EdDSA), P-256
(ES256) or an HS256 secret of at least 32 bytes.
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

MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 8192
_PEM_BLOCK = re.compile(
    rb'-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----', re.DOTALL
)


class TrustedKey(NamedTuple):
    algorithm: str
    key: Any


class TokenRejectedError(Exception):
    """A token that proves nothing; ``reason`` says why, in one word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def algorithm_of(key: Any, what: str) -> str:
    """The one algorithm a key is used with, from its type.

    Raises:
        ConfigError: neither an Ed25519 nor a P-256 key.
    """
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return 'EdDSA'
    if isinstance(
        key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey
    ) and isinstance(key.curve, ec.SECP256R1):
        return 'ES256'
    raise ConfigError(f'{what}: only Ed25519 and P-256 keys are accepted')


def secret_key(secret: bytes, what: str) -> TrustedKey:
    """An HS256 key from a secret file's bytes (edge whitespace is not key).

    Raises:
        ConfigError: shorter than 32 bytes.
    """
    secret = secret.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f'{what}: the secret must be at least {MIN_SECRET_BYTES} bytes'
        )
    return TrustedKey('HS256', secret)


def public_keys(pem: bytes, what: str) -> list[TrustedKey]:
    """Every public key of a PEM file (several: keys can be rotated).

    Raises:
        ConfigError: no key in the file, or one that is not valid or of
            another type.
    """
    blocks = _PEM_BLOCK.findall(pem)
    if not blocks:
        raise ConfigError(f'{what}: no PEM public key in the file')
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError:
            raise ConfigError(f'{what}: a key is not valid') from None
        keys.append(TrustedKey(algorithm_of(key, what), key))
    return keys


def decode(
    token: str,
    keys: list[TrustedKey],
    audiences: list[str],
    leeway_s: float,
    required: tuple[str, ...],
) -> dict[str, Any]:
    """The claims of a token one of ``keys`` signed.

    Raises:
        TokenRejectedError: malformed, an algorithm no key has, no key's signature,
            expired, another audience, a required claim missing.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejectedError('malformed', 'The token is too long.')
    try:
        algorithm = jwt.get_unverified_header(token).get('alg')
    except jwt.InvalidTokenError:
        raise TokenRejectedError('malformed', 'The token is not a JWT.') from None
    candidates = [k.key for k in keys if k.algorithm == algorithm]
    if not candidates:
        raise TokenRejectedError(
            'algorithm_not_accepted',
            f'Tokens signed with {str(algorithm)[:16]!r} are not accepted.',
        )
    for key in candidates:
        try:
            return dict(
                jwt.decode(
                    token,
                    key,
                    algorithms=[str(algorithm)],
                    audience=audiences,
                    leeway=leeway_s,
                    options={'require': list(required)},
                )
            )
        except jwt.InvalidSignatureError:
            continue  # another of the keys may have signed it
        except jwt.ExpiredSignatureError:
            raise TokenRejectedError('expired', 'The token has expired.') from None
        except jwt.InvalidAudienceError:
            raise TokenRejectedError(
                'wrong_audience', 'The token is for another audience.'
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejectedError(
                'missing_claim', f'The token has no {exc.claim} claim.'
            ) from None
        except jwt.InvalidTokenError:
            raise TokenRejectedError('invalid', 'The token is not valid.') from None
    raise TokenRejectedError(
        'bad_signature', 'None of the trusted keys signed the token.'
    )


class VerifiedTokens:
    """Tokens whose signature was checked, trusted until they expire.

    A sender uses one token for many requests, and checking a signature is
    most of the cost of a small request; a token is trusted until its ``exp``
    (plus the leeway), as it would be if it were checked each time.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._known: dict[str, tuple[Any, float]] = {}

    def get(self, token: str) -> Any:
        """What was kept for ``token``, or None (unknown or expired)."""
        with self._lock:
            known = self._known.get(token)
        if known is None or time.time() >= known[1]:
            return None
        return known[0]

    def put(self, token: str, value: Any, until: float) -> None:
        with self._lock:
            self._known.pop(token, None)
            while len(self._known) >= self.size:
                del self._known[next(iter(self._known))]
            self._known[token] = (value, until)
