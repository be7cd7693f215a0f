"""Who may do what: scopes, principals, API tokens and sibling devices' JWTs.

Three scopes, ordered: ``read`` < ``write`` < ``admin``. A principal is whoever
a request speaks for: the Unix socket's trusted role, an API token, or a JWT
signed by a key the operator configured. Tokens are 32 random bytes shown
once; the database keeps only their SHA-256, so a copy of the database (or a
backup) yields no usable token.
"""

import enum
import hashlib
import hmac
import os
import threading
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple

from jamey import validation
from jamey.clock import iso_utc
from jamey.errors import ConfigError
from jamey.errors import ConflictError
from jamey.errors import InputError
from jamey.errors import NotFoundError
from jamey.storage import Database

if TYPE_CHECKING:
    from jamey.jwts import TrustedKey

TOKEN_PREFIX = 'jamey_'  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_CHARS = 4096
MAX_TOKEN_NAME_CHARS = 64
# A token's last use is written back at most this often: a write (and an
# fsync) per request would cost more than the request.
LAST_USED_EVERY_MS = 60_000
_JWT_CACHE_SIZE = 1024


class Scope(enum.IntEnum):
    """What a principal may do; each scope includes the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, field: str, value: Any) -> 'Scope':
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise InputError(
            field, 'invalid_scope', f'{field} must be read, write or admin.'
        )


class Principal(NamedTuple):
    """Whom a request speaks for; ``name`` is what logs and the audit show."""

    name: str
    scope: Scope
    kind: str  # unix, token, jwt


class AuthError(Exception):
    """Credentials that prove nothing; ``code`` says which way they failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class _Known(NamedTuple):
    """A token as the authenticator needs it, cached in memory."""

    name: str
    scope: Scope
    digest: bytes
    expires_ms: int | None
    revoked: bool


class TokenStore:
    """API tokens: created, listed, revoked, and checked on every request.

    Checks read an in-memory copy of the table (tokens change only through
    this object, in this process), so authentication costs a dictionary
    lookup and a hash, not a query.
    """

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, _Known] | None = None
        self._used: dict[str, int] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def create(
        self, name: Any, scope: Any, expires_in_s: Any = None
    ) -> tuple[dict[str, Any], str]:
        """A new token: its record and the token itself (shown only now).

        Raises:
            InputError: a bad name, scope or lifetime.
            ConflictError: an active token has this name.
        """
        label = validation.text('name', name, MAX_TOKEN_NAME_CHARS)
        level = Scope.parse('scope', scope)
        now = self._now_ms()
        expires_ms = None
        if expires_in_s is not None:
            seconds = validation.number(
                'expires_in_s', expires_in_s, 0, 10 * 365 * 86400
            )
            expires_ms = now + int(seconds * 1000)
        token_id = os.urandom(6).hex()
        secret = urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')
        token = f'{TOKEN_PREFIX}{token_id}_{secret}'
        with self.db.transaction() as conn:
            taken = conn.execute(
                'SELECT 1 FROM api_tokens WHERE name = ? AND revoked_ms IS NULL',
                (label,),
            ).get
            if taken:
                raise ConflictError(
                    'token_exists', f'An active token is named {label!r}.'
                )
            conn.execute(
                'INSERT INTO api_tokens (id, name, scope, secret_sha256, created_ms,'
                ' expires_ms) VALUES (?, ?, ?, ?, ?, ?)',
                (token_id, label, level.label, _digest(token), now, expires_ms),
            )
            self.db.after_commit(self._forget_cache)
        return self.get(token_id), token

    def list(self) -> list[dict[str, Any]]:
        """Every token, newest first, revoked ones included."""
        rows = self.db.connection().execute(
            'SELECT id, name, scope, created_ms, expires_ms, last_used_ms, revoked_ms'
            ' FROM api_tokens ORDER BY created_ms DESC, id'
        )
        return [self._record(row) for row in rows]

    def get(self, token_id: str) -> dict[str, Any]:
        conn = self.db.connection()
        row = conn.execute(
            'SELECT id, name, scope, created_ms, expires_ms, last_used_ms,'
            ' revoked_ms FROM api_tokens WHERE id = ?',
            (token_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError('token_not_found', f'No token has id {token_id!r}.')
        return self._record(row)

    def revoke(self, token_id: str) -> dict[str, Any]:
        """Revoke a token at once; revoking twice is not an error.

        Raises:
            NotFoundError: no token has this id.
        """
        with self.db.transaction() as conn:
            conn.execute(
                'UPDATE api_tokens SET revoked_ms = ?'
                ' WHERE id = ? AND revoked_ms IS NULL',
                (self._now_ms(), token_id),
            )
            self.db.after_commit(self._forget_cache)
        return self.get(token_id)

    def authenticate(self, token: str) -> Principal:
        """The principal a presented API token speaks for.

        Raises:
            AuthError: unknown, malformed, expired or revoked.
        """
        token_id = token[len(TOKEN_PREFIX) :].split('_', 1)[0]
        known = self._cache().get(token_id)
        if known is None or not hmac.compare_digest(known.digest, _digest(token)):
            raise AuthError('invalid_token', 'The token is not valid.')
        now = self._now_ms()
        if known.revoked:
            raise AuthError('token_revoked', 'The token has been revoked.')
        if known.expires_ms is not None and now >= known.expires_ms:
            raise AuthError('token_expired', 'The token has expired.')
        self._touch(token_id, now)
        return Principal(f'token:{known.name}', known.scope, 'token')

    def _touch(self, token_id: str, now: int) -> None:
        with self._lock:
            if now - self._used.get(token_id, 0) < LAST_USED_EVERY_MS:
                return
            self._used[token_id] = now
        with self.db.transaction() as conn:
            conn.execute(
                'UPDATE api_tokens SET last_used_ms = ? WHERE id = ?', (now, token_id)
            )

    def _cache(self) -> dict[str, _Known]:
        known = self._known
        if known is None:
            rows = self.db.connection().execute(
                'SELECT id, name, scope, secret_sha256, expires_ms, revoked_ms'
                ' FROM api_tokens'
            )
            known = {
                row[0]: _Known(
                    row[1], Scope[row[2].upper()], row[3], row[4], row[5] is not None
                )
                for row in rows
            }
            self._known = known
        return known

    def _forget_cache(self) -> None:
        self._known = None

    def _record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        token_id, name, scope, created, expires, used, revoked = row
        now = self._now_ms()
        return {
            'id': token_id,
            'name': name,
            'scope': scope,
            'created_at': iso_utc(created / 1000),
            'expires_at': None if expires is None else iso_utc(expires / 1000),
            'last_used_at': None if used is None else iso_utc(used / 1000),
            'revoked_at': None if revoked is None else iso_utc(revoked / 1000),
            'active': revoked is None and (expires is None or now < expires),
        }


class JwtSettings(NamedTuple):
    algorithm: str
    keys: 'list[TrustedKey]'  # of that algorithm: public keys, or the secret
    audience: str
    scope_claim: str
    leeway_s: int


def load_jwt_keys(
    algorithm: str, key_file: str, secret: Callable[[str], bytes]
) -> 'list[TrustedKey]':
    """The keys that verify JWTs: the public keys of a PEM file (several,
    for rotation), or (HS256) a secret file.

    Raises:
        ConfigError: the file is missing, unreadable, holds no key, or a key
            of another algorithm than ``auth.jwt_algorithm``.
    """
    from jamey import jwts  # noqa: PLC0415 - pyjwt costs start-up; load it where used

    if algorithm == 'HS256':
        return [jwts.secret_key(secret(key_file), 'auth.jwt_key_file')]
    try:
        pem = Path(key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f'cannot read auth.jwt_key_file {key_file}: {exc.strerror}'
        ) from None
    keys = jwts.public_keys(pem, 'auth.jwt_key_file')
    other = {k.algorithm for k in keys} - {algorithm}
    if other:
        raise ConfigError(
            f'auth.jwt_key_file holds {", ".join(sorted(other))} keys but'
            f' auth.jwt_algorithm is {algorithm}'
        )
    return keys


class JwtVerifier:
    """Bearer JWTs of sibling devices: the keys of one pinned algorithm,
    ``exp``, ``aud`` and ``sub`` required, the scope from a claim.

    Verified tokens are remembered until they expire, at most an hour (a
    signature check costs more than the rest of a small request); a changed
    key makes a new verifier, which forgets them.
    """

    def __init__(self, settings: JwtSettings, clock: Callable[[], float] = time.time):
        from jamey import jwts  # noqa: PLC0415 - pyjwt costs start-up; load it where used

        self.settings = settings
        self._clock = clock
        self._verified = jwts.VerifiedTokens(_JWT_CACHE_SIZE)

    def authenticate(self, token: str) -> Principal:
        """The principal of a valid JWT.

        Raises:
            AuthError: bad signature, algorithm, audience, expiry or scope.
        """
        known: Principal | None = self._verified.get(token)
        if known is not None:
            return known
        from jamey import jwts  # noqa: PLC0415 - loaded with the verifier already

        s = self.settings
        try:
            claims = jwts.decode(
                token, s.keys, [s.audience], s.leeway_s, ('exp', 'aud', 'sub')
            )
        except jwts.TokenRejectedError as exc:
            code = 'token_expired' if exc.reason == 'expired' else 'invalid_token'
            raise AuthError(code, str(exc)) from None
        scope = _highest_scope(claims.get(s.scope_claim))
        subject = claims['sub']
        if scope is None or not isinstance(subject, str) or not subject:
            raise AuthError('invalid_token', 'The JWT grants no known scope.')
        principal = Principal(f'jwt:{subject[:128]}', scope, 'jwt')
        until = min(float(claims['exp']) + s.leeway_s, self._clock() + 3600)
        self._verified.put(token, principal, until)
        return principal


def _highest_scope(claim: Any) -> Scope | None:
    """A scope claim is one scope, several separated by spaces (OAuth), or a
    list of them; the highest known one counts."""
    if isinstance(claim, str):
        words = claim.split()
    elif isinstance(claim, list) and all(isinstance(w, str) for w in claim):
        words = claim
    else:
        return None
    scopes = [Scope[w.upper()] for w in words if w.upper() in Scope.__members__]
    return max(scopes, default=None)


class Authenticator:
    """Turns a presented bearer token into a principal, whichever kind it is."""

    def __init__(self, tokens: TokenStore, jwts: JwtVerifier | None) -> None:
        self.tokens = tokens
        self.jwts = jwts

    def authenticate(self, bearer: str) -> Principal:
        """Raises AuthError for anything that is not a valid credential."""
        if len(bearer) > MAX_TOKEN_CHARS:
            raise AuthError('invalid_token', 'The token is not valid.')
        if bearer.startswith(TOKEN_PREFIX):
            return self.tokens.authenticate(bearer)
        if bearer.count('.') == 2 and self.jwts is not None:
            return self.jwts.authenticate(bearer)
        raise AuthError('invalid_token', 'The token is not valid.')
