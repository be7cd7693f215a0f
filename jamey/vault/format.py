"""The backup file: an authenticated header, then a STREAM of AEAD chunks.

Format version 1 is described byte by byte in docs/vault-format.md. The
payload is cut into 64 KiB chunks, each sealed on its own with a nonce of
``prefix || counter || last-flag`` and the whole header as associated data,
so a chunk that moved, was cut off, was added or came from another backup
fails where it lies, and the reader can say which of those it was. The last
chunk is padded to full size: every file is its header plus a whole number of
sealed chunks, so even a cut inside a chunk is named as truncation.
"""

import hashlib
import hmac
import os
import struct
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jamey.errors import AppendedError
from jamey.errors import ChunksReorderedError
from jamey.errors import ChunkTamperedError
from jamey.errors import HeaderDamagedError
from jamey.errors import HeaderTamperedError
from jamey.errors import NotABackupError
from jamey.errors import TruncatedError

MAGIC = b'JAMEYVLT'
VERSION = 1
CHUNK_LOG2 = 16
CHUNK = 1 << CHUNK_LOG2
TAG = 16
SEALED = CHUNK + TAG
PREFIX_BYTES = 7
DIGEST = 32  # the header's MAC and its checksum are SHA-256 sized
CIPHERS = {'aes-256-gcm': 1, 'chacha20-poly1305': 2}
_CIPHER_NAMES = {code: name for name, code in CIPHERS.items()}
# magic, version, cipher, key mode, chunk size (log2), header length,
# backup id, created (ms), key id, nonce prefix.
_FIXED = struct.Struct('>8sBBBBH16sQ8s7s')
MAX_HEADER = 1024
# Chunks counted past the end when looking for where a misplaced one belongs.
_REORDER_SLACK = 64

AEAD = AESGCM | ChaCha20Poly1305


@dataclass(frozen=True)
class Header:
    """What a header says; ``raw`` is it as written (the chunks' associated data)."""

    cipher: str
    mode: int
    backup_id: bytes
    created_ms: int
    key_id: bytes
    nonce_prefix: bytes
    fields: bytes
    raw: bytes = b''

    @property
    def id(self) -> str:
        return str(uuid.UUID(bytes=self.backup_id))

    def body(self) -> bytes:
        """Every field, before the MAC and the checksum."""
        length = _FIXED.size + len(self.fields) + 2 * DIGEST
        return (
            _FIXED.pack(
                MAGIC,
                VERSION,
                CIPHERS[self.cipher],
                self.mode,
                CHUNK_LOG2,
                length,
                self.backup_id,
                self.created_ms,
                self.key_id,
                self.nonce_prefix,
            )
            + self.fields
        )


def header_mac(body: bytes, mac_key: bytes) -> bytes:
    return hmac.digest(mac_key, body, 'sha256')


def seal_header(header: Header, mac_key: bytes) -> Header:
    """The header with its MAC (needs the key) and checksum (does not)."""
    body = header.body()
    signed = body + header_mac(body, mac_key)
    raw = signed + hashlib.sha256(signed).digest()
    return Header(**{**header.__dict__, 'raw': raw})


def check_header_mac(header: Header, mac_key: bytes) -> None:
    """The checksum held, so a MAC that fails means someone rewrote both."""
    body_end = len(header.raw) - 2 * DIGEST
    expected = header_mac(header.raw[:body_end], mac_key)
    if not hmac.compare_digest(expected, header.raw[body_end : body_end + DIGEST]):
        raise HeaderTamperedError(
            f'the header of backup {header.id} fails its authentication: it was'
            ' altered (its checksum was recomputed to hide it)'
        )


def read_header(f: BinaryIO, mode_fields: Callable[[int], int]) -> Header:
    """Parse and checksum a header; no key needed (``list`` reads only this).

    ``mode_fields(mode)`` is how many bytes of fields that key mode has.

    Raises:
        NotABackupError, TruncatedError, HeaderDamagedError.
    """
    fixed = f.read(_FIXED.size)
    if not fixed.startswith(MAGIC[: len(fixed)]) or not fixed:
        raise NotABackupError('not a Jamey backup (no JAMEYVLT magic)')
    if len(fixed) < _FIXED.size:
        raise TruncatedError('the file ends inside its header: truncated')
    _, version, cipher, mode, chunk_log2, length, *rest = _FIXED.unpack(fixed)
    if not _FIXED.size + 2 * DIGEST <= length <= MAX_HEADER:
        raise HeaderDamagedError(f'the header is damaged (a length of {length})')
    tail = f.read(length - _FIXED.size)
    if len(tail) < length - _FIXED.size:
        raise TruncatedError('the file ends inside its header: truncated')
    raw = fixed + tail
    if hashlib.sha256(raw[:-DIGEST]).digest() != raw[-DIGEST:]:
        raise HeaderDamagedError(
            'the header is damaged: its checksum does not match (bits changed on'
            ' disk or in transit)'
        )
    if version != VERSION:
        raise NotABackupError(
            f'format version {version}; this jamey reads version {VERSION}'
        )
    fields = tail[: -2 * DIGEST]
    if (
        cipher not in _CIPHER_NAMES
        or chunk_log2 != CHUNK_LOG2
        or len(fields) != mode_fields(mode)
    ):
        raise NotABackupError(
            'the header names a cipher, chunk size or key mode this jamey does not know'
        )
    backup_id, created_ms, key_id, prefix = rest
    return Header(
        _CIPHER_NAMES[cipher], mode, backup_id, created_ms, key_id, prefix, fields, raw
    )


def aead(cipher: str, key: bytes) -> AEAD:
    return AESGCM(key) if cipher == 'aes-256-gcm' else ChaCha20Poly1305(key)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, 'big') + (b'\x01' if last else b'\x00')


class ChunkWriter:
    """A file-like sink that seals what it is given, one chunk at a time.

    Only one chunk is ever held, whatever the size of the payload.
    """

    def __init__(self, out: BinaryIO, header: Header, key: bytes) -> None:
        self._out = out
        self._aead = aead(header.cipher, key)
        self._prefix = header.nonce_prefix
        self._aad = header.raw
        self._buffer = bytearray()
        self._counter = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast('B')
        size = len(view)
        # One chunk stays behind: only close() knows which one is the last.
        while view:
            if len(self._buffer) == CHUNK:
                self._seal(self._buffer, last=False)
                self._buffer = bytearray()
            if not self._buffer and len(view) > CHUNK:
                self._seal(view[:CHUNK], last=False)
                view = view[CHUNK:]
                continue
            take = CHUNK - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
        return size

    def _seal(self, plain: memoryview | bytearray, last: bool) -> None:
        if self._counter >= 1 << 32:
            raise OverflowError('a backup holds at most 2**32 chunks (256 TiB)')
        nonce = _nonce(self._prefix, self._counter, last)
        self._out.write(self._aead.encrypt(nonce, plain, self._aad))
        self._counter += 1

    def close(self) -> None:
        """Pad and seal the last chunk (every file is whole chunks)."""
        self._buffer += bytes(CHUNK - len(self._buffer))
        self._seal(self._buffer, last=True)
        self._buffer = bytearray()


class _Chunks:
    """The sealed chunks of one backup file: where each lies, how it opens."""

    def __init__(self, header: Header, key: bytes, size: int) -> None:
        self._aead = aead(header.cipher, key)
        self._prefix = header.nonce_prefix
        self._aad = header.raw
        self._start = len(header.raw)
        self.count, self._partial = divmod(size - self._start, SEALED)

    def _open(self, sealed: bytes, counter: int, last: bool) -> bytes | None:
        try:
            return self._aead.decrypt(
                _nonce(self._prefix, counter, last), sealed, self._aad
            )
        except InvalidTag:
            return None


class ChunkFile(_Chunks):
    """The payload at any offset, for reading the snapshot where it lies.

    A chunk is opened when a read first needs it, and the last few are
    kept. One that fails to open is reported as tampered; the in-order
    reader that a verify runs beside this one names what exactly is wrong.
    """

    KEPT = 8

    def __init__(self, fd: int, header: Header, key: bytes, size: int) -> None:
        super().__init__(header, key, size)
        self._fd = fd
        self._kept: OrderedDict[int, bytes] = OrderedDict()

    def _chunk(self, index: int) -> bytes:
        plain = self._kept.get(index)
        if plain is not None:
            self._kept.move_to_end(index)
            return plain
        sealed = os.pread(self._fd, SEALED, self._start + index * SEALED)
        plain = self._open(sealed, index, index == self.count - 1)
        if plain is None:
            raise ChunkTamperedError(
                f'chunk {index + 1} of {self.count} fails authentication'
            )
        self._kept[index] = plain
        if len(self._kept) > self.KEPT:
            self._kept.popitem(last=False)
        return plain

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of the payload from ``offset`` (fewer at its end)."""
        index, within = divmod(offset, CHUNK)
        if within + size <= CHUNK and index < self.count:  # in one chunk
            return self._chunk(index)[within : within + size]
        parts = []
        while size > 0 and (index := offset // CHUNK) < self.count:
            within = offset - index * CHUNK
            piece = self._chunk(index)[within : within + size]
            parts.append(piece)
            offset += len(piece)
            size -= len(piece)
        return b''.join(parts)


class ChunkReader(_Chunks):
    """A file-like source that opens chunks as they are read.

    A chunk's bytes are handed out only once it authenticated, so nothing
    altered ever reaches the tar reader; ``drain`` reads to the end, where
    truncation and appended data show.
    """

    def __init__(self, f: BinaryIO, header: Header, key: bytes, size: int) -> None:
        super().__init__(header, key, size)
        self._f = f
        if self.count == 0:
            raise TruncatedError('the file ends before its first chunk: truncated')
        self._index = 0
        self._plain = b''
        self._offset = 0
        self._done = False

    def _next(self) -> bytes:
        index = self._index
        sealed = self._f.read(SEALED)
        if len(sealed) < SEALED:
            raise TruncatedError(f'the file ends inside chunk {index + 1}: truncated')
        last = index == self.count - 1 and not self._partial
        plain = self._open(sealed, index, last)
        if plain is None:
            self._diagnose(sealed, index, last)
        self._index += 1
        if last:
            self._done = True
        elif self._index == self.count:
            where = 'inside' if self._partial else 'after'
            raise TruncatedError(
                f'the file ends {where} chunk {self.count + bool(self._partial)},'
                ' before the chunk marked last: truncated'
            )
        assert plain is not None
        return plain

    def _diagnose(self, sealed: bytes, index: int, last: bool) -> None:
        """Name what went wrong with the chunk at ``index``; always raises."""
        position = f'chunk {index + 1} of {self.count}'
        if self._open(sealed, index, not last) is not None:
            if last:
                raise TruncatedError(
                    f'{position} is not marked last: the chunks after it were'
                    ' cut off (truncated)'
                )
            raise AppendedError(
                f'{position} is marked last, but data follows it: something was'
                ' appended'
            )
        for counter in range(self.count + _REORDER_SLACK):
            for flag in (False, True):
                if counter != index and self._open(sealed, counter, flag) is not None:
                    raise ChunksReorderedError(
                        f'{position} is chunk {counter + 1} of this backup: chunks'
                        ' were reordered or removed'
                    )
        raise ChunkTamperedError(
            f'{position} fails authentication: it was altered or damaged, or'
            ' comes from another backup'
        )

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self._read_all()
        while self._offset >= len(self._plain):
            if self._done:
                return b''
            self._plain, self._offset = self._next(), 0
        start = self._offset
        self._offset = min(len(self._plain), start + size)
        if start == 0 and self._offset == len(self._plain):
            return self._plain  # the whole chunk: no copy
        return self._plain[start : self._offset]

    def _read_all(self) -> bytes:
        parts = []
        while piece := self.read(CHUNK):
            parts.append(piece)
        return b''.join(parts)

    def drain(self) -> None:
        """Read (and authenticate) every chunk left, up to the last."""
        while not self._done:
            self._next()
        self._offset = len(self._plain)
