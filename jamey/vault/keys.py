"""The three ways to key a backup: a key file, a passphrase, a recipient.

Each turns into a *master* secret per backup, from which HKDF derives the
payload key and the header's MAC key (salted with the backup id, so no two
backups share a key even under one key file). A key id (8 bytes, derived, not
the key) in the header tells a wrong key from damage before anything is
decrypted.

Recipient mode is for devices that may be stolen: the device holds only an
X25519 public key; each backup gets a random master wrapped (RFC 3394) to
that recipient under an ephemeral key exchange, and only the private key,
kept elsewhere, can unwrap it again.
"""

import os
import secrets
from pathlib import Path
from typing import NamedTuple
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from jamey.errors import HeaderTamperedError
from jamey.errors import PrivateKeyRequiredError
from jamey.errors import VaultConfigError
from jamey.errors import WrongKeyError

KEY_BYTES = 32
KEY_ID_BYTES = 8
MODE_KEY = 1
MODE_PASSPHRASE = 2
MODE_RECIPIENT = 3
MODE_NAMES = {
    MODE_KEY: 'key',
    MODE_PASSPHRASE: 'passphrase',
    MODE_RECIPIENT: 'recipient',
}
SALT_BYTES = 16
# scrypt: 2**15 x 8 x 128 bytes = 32 MiB for a moment, ~0.1 s on a Pi 4.
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
# What a header may ask of scrypt before it is refused as hostile (1 GiB).
_SCRYPT_MAX_BYTES = 1 << 30
_WRAPPED_BYTES = KEY_BYTES + 8
FIELD_BYTES = {
    MODE_KEY: 0,
    MODE_PASSPHRASE: 3 + SALT_BYTES,
    MODE_RECIPIENT: KEY_BYTES + _WRAPPED_BYTES,
}
_LABEL = b'jamey-vault/1 '


def mode_fields(mode: int) -> int:
    """Bytes of mode-specific header fields; -1 (never a length) if unknown."""
    return FIELD_BYTES.get(mode, -1)


def derive(master: bytes, salt: bytes | None, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose``, bound to this format."""
    hkdf = HKDF(hashes.SHA256(), KEY_BYTES, salt, _LABEL + purpose.encode())
    return hkdf.derive(master)


def key_id(material: bytes) -> bytes:
    return derive(material, None, 'key id')[:KEY_ID_BYTES]


class Sealing(NamedTuple):
    """What a new backup gets from its key: the master, the id, the fields."""

    master: bytes
    key_id: bytes
    fields: bytes


class Keyring(Protocol):
    """A key source: seals new backups and opens existing ones."""

    mode: int

    def seal(self) -> Sealing: ...

    def unseal(self, mode: int, key_id: bytes, fields: bytes) -> bytes:
        """The master of a backup made with this key.

        Raises:
            WrongKeyError: it was made with another key (or another mode).
            HeaderTamperedError: the key matches but the fields do not open.
        """
        ...


def _mode_check(ours: int, theirs: int) -> None:
    if ours != theirs:
        name = MODE_NAMES.get(theirs, f'mode {theirs}')
        raise WrongKeyError(
            f'the backup was made with a different key: a {name}, and this'
            f' vault uses a {MODE_NAMES[ours]}'
        )


def _id_check(expected: bytes, found: bytes, what: str) -> None:
    if expected != found:
        raise WrongKeyError(
            f'the backup was made with a different {what} (key id {found.hex()};'
            f' this {what} has {expected.hex()})'
        )


class FileKey:
    """32 random bytes from a key file or a systemd credential."""

    mode = MODE_KEY

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.key_id = key_id(key)

    def seal(self) -> Sealing:
        return Sealing(self._key, self.key_id, b'')

    def unseal(self, mode: int, found_id: bytes, fields: bytes) -> bytes:
        _mode_check(self.mode, mode)
        _id_check(self.key_id, found_id, 'key')
        return self._key


class Passphrase:
    """A passphrase stretched by scrypt, with a fresh salt per backup."""

    mode = MODE_PASSPHRASE

    def __init__(self, passphrase: bytes) -> None:
        self._passphrase = passphrase

    def _stretch(self, fields: bytes) -> bytes:
        log2_n, r, p = fields[0], fields[1], fields[2]
        if not 10 <= log2_n <= 30 or 128 * r * p * (1 << log2_n) > _SCRYPT_MAX_BYTES:
            raise HeaderTamperedError(
                f'the header asks scrypt for 2**{log2_n} x {r} x {p}: refused'
            )
        kdf = Scrypt(salt=fields[3:], length=KEY_BYTES, n=1 << log2_n, r=r, p=p)
        return kdf.derive(self._passphrase)

    def seal(self) -> Sealing:
        fields = bytes([SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P]) + os.urandom(SALT_BYTES)
        master = self._stretch(fields)
        return Sealing(master, key_id(master), fields)

    def unseal(self, mode: int, found_id: bytes, fields: bytes) -> bytes:
        _mode_check(self.mode, mode)
        master = self._stretch(fields)
        _id_check(key_id(master), found_id, 'passphrase')
        return master


class Recipient:
    """An X25519 public key; with its private key, backups can be read too."""

    mode = MODE_RECIPIENT

    def __init__(self, public: bytes, private: X25519PrivateKey | None = None) -> None:
        self._public = X25519PublicKey.from_public_bytes(public)
        self._public_raw = public
        self._private = private
        self.key_id = key_id(public)

    @classmethod
    def from_private(cls, private: bytes) -> 'Recipient':
        key = X25519PrivateKey.from_private_bytes(private)
        return cls(raw_public(key.public_key()), key)

    def _wrap_key(self, shared: bytes, ephemeral: bytes) -> bytes:
        return derive(shared, ephemeral + self._public_raw, 'wrap')

    def seal(self) -> Sealing:
        master = secrets.token_bytes(KEY_BYTES)
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = raw_public(ephemeral.public_key())
        wrap_key = self._wrap_key(ephemeral.exchange(self._public), ephemeral_raw)
        wrapped = aes_key_wrap(wrap_key, master)
        return Sealing(master, self.key_id, ephemeral_raw + wrapped)

    def unseal(self, mode: int, found_id: bytes, fields: bytes) -> bytes:
        _mode_check(self.mode, mode)
        _id_check(self.key_id, found_id, 'recipient key')
        if self._private is None:
            raise PrivateKeyRequiredError(
                'the backup was made for a recipient: only its private key can'
                ' read it, and this device holds the public key alone (give the'
                ' private key with --private-key)'
            )
        ephemeral_raw = fields[:KEY_BYTES]
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        wrap_key = self._wrap_key(self._private.exchange(ephemeral), ephemeral_raw)
        try:
            return aes_key_unwrap(wrap_key, fields[KEY_BYTES:])
        except InvalidUnwrap:
            raise HeaderTamperedError(
                'the wrapped key in the header does not unwrap: it was altered'
            ) from None


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_key(raw: bytes, what: str) -> bytes:
    """32 bytes, as themselves or as 64 hex digits (what keygen writes)."""
    text = raw.strip()
    if len(raw) == KEY_BYTES:
        return raw
    try:
        key = bytes.fromhex(text.decode('ascii'))
    except (UnicodeDecodeError, ValueError):
        key = b''
    if len(key) != KEY_BYTES:
        raise VaultConfigError(
            f'{what} must hold 32 bytes, raw or as 64 hex digits'
            ' (jameyctl vault keygen writes one)'
        )
    return key


def write_new(path: Path, data: bytes) -> None:
    """Write a key file that did not exist, mode 0600, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate(path: Path, recipient: bool) -> list[Path]:
    """New key files: a key, or a private key at ``path`` and its public key
    at ``path.pub``; refuses to overwrite any file."""
    if not recipient:
        write_new(path, secrets.token_bytes(KEY_BYTES).hex().encode() + b'\n')
        return [path]
    public_path = path.with_name(path.name + '.pub')
    if public_path.exists():
        raise FileExistsError(f'{public_path} exists')
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    write_new(path, private_raw.hex().encode() + b'\n')
    write_new(public_path, raw_public(private.public_key()).hex().encode() + b'\n')
    return [path, public_path]
