"""The payload: a tar of the database snapshot, the config and a manifest.

The snapshot is SQLite's online backup, taken in steps from inside one read
transaction: in WAL mode readers never block writers, and holding the one
snapshot keeps the copy consistent (and from restarting each time someone
writes). The tar is streamed, never held: tarfile encodes and decodes the
headers, and the bodies are copied a buffer at a time into the encrypting
writer and out of the decrypting reader (tarfile's own stream would copy
every buffer twice more). ``manifest.json`` comes last because the
hashes are known only once the members went by; the reader checks them at
the end, before anything it wrote is used.
"""

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import BinaryIO

import apsw

from jamey import __version__
from jamey.errors import PayloadError
from jamey.errors import SnapshotCorruptError

DATABASE = 'jamey.db'
CONFIG = 'jamey.toml'
MANIFEST = 'manifest.json'
MANIFEST_VERSION = 1
# Pages per backup step: 4 MiB at SQLite's default page size.
STEP_PAGES = 1024
COPY_BYTES = 1 << 20
MAX_CONFIG_BYTES = 1 << 20
_MAX_MANIFEST_BYTES = 1 << 16
_KINDS = {DATABASE: 'database', CONFIG: 'config'}
_END = bytes(tarfile.BLOCKSIZE)


def snapshot(source: Path, dest: Path, check: Callable[[], None]) -> int:
    """Copy the live database at ``source`` into ``dest``; its schema version.

    ``check`` runs between steps and may raise to abandon the copy.
    """
    # Read-write, though it only reads: the last connection to close then
    # removes the WAL files a read-only one would leave behind.
    src = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        src.setbusytimeout(5000)
        out = apsw.Connection(str(dest))
        try:
            # Nobody reads the copy until it is complete: no journal, no sync.
            out.execute('PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF')
            src.execute('BEGIN')
            version = int(src.execute('PRAGMA user_version').get)
            with out.backup('main', src, 'main') as backup:
                while not backup.done:
                    check()
                    backup.step(STEP_PAGES)
            src.execute('COMMIT')
        finally:
            out.close()
    finally:
        src.close()
    return version


def _add(
    out: Any, name: str, f: BinaryIO, size: int, check: Callable[[], None]
) -> dict[str, Any]:
    """One member: its header, then its bytes, hashed on the way."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    out.write(info.tobuf(tarfile.GNU_FORMAT))
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        check()
        block = f.read(min(COPY_BYTES, remaining))
        if not block:
            raise PayloadError(f'{name} shrank while it was copied')
        digest.update(block)
        out.write(block)
        remaining -= len(block)
    out.write(bytes(-size % tarfile.BLOCKSIZE))
    return {
        'name': name,
        'kind': _KINDS.get(name, 'manifest'),
        'size': size,
        'sha256': digest.hexdigest(),
    }


def write_payload(
    out: Any,
    snapshot_path: Path,
    config: bytes | None,
    manifest: dict[str, Any],
    check: Callable[[], None],
) -> dict[str, Any]:
    """Stream the tar into ``out`` (anything with ``write``); the manifest."""
    components = []
    with snapshot_path.open('rb', buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        components.append(_add(out, DATABASE, f, size, check))
    if config is not None:
        components.append(_add(out, CONFIG, io.BytesIO(config), len(config), check))
    document = {
        **manifest,
        'manifest_version': MANIFEST_VERSION,
        'source_version': __version__,
        'components': components,
    }
    body = json.dumps(document, indent=2).encode()
    _add(out, MANIFEST, io.BytesIO(body), len(body), check)
    out.write(bytes(2 * tarfile.BLOCKSIZE))  # the end of the archive
    return document


class Payload:
    """What a verified payload held: the manifest and the config's bytes."""

    def __init__(self, manifest: dict[str, Any], config: bytes | None) -> None:
        self.manifest = manifest
        self.config = config


def _exactly(source: Any, size: int) -> bytes:
    parts, missing = [], size
    while missing:
        piece = source.read(missing)
        if not piece:
            raise PayloadError('the payload ends in the middle of its tar')
        parts.append(piece)
        missing -= len(piece)
    return b''.join(parts)


def _members(source: Any) -> Iterator[tarfile.TarInfo]:
    """Tar headers up to the end marker; the caller reads each body."""
    while (block := _exactly(source, tarfile.BLOCKSIZE)) != _END:
        try:
            yield tarfile.TarInfo.frombuf(block, 'utf-8', 'strict')
        except (tarfile.HeaderError, UnicodeDecodeError) as exc:
            raise PayloadError(f'the payload has a bad tar header: {exc}') from None


def _copy(source: Any, size: int, dest: BinaryIO | None) -> tuple[bytes, str]:
    """Read a member's body (and its padding); kept only if ``dest`` is None."""
    digest = hashlib.sha256()
    kept = []
    remaining = size
    while remaining:
        block = source.read(min(COPY_BYTES, remaining))
        if not block:
            raise PayloadError('the payload ends in the middle of its tar')
        digest.update(block)
        if dest is None:
            kept.append(block)
        else:
            dest.write(block)
        remaining -= len(block)
    _exactly(source, -size % tarfile.BLOCKSIZE)
    return b''.join(kept), digest.hexdigest()


def read_payload(source: Any, database_out: BinaryIO) -> Payload:
    """Read the tar from ``source``: the snapshot into ``database_out``, and
    every member checked against the manifest.

    Raises:
        PayloadError: an unexpected member, a size or hash that disagrees, a
            manifest that is missing or malformed.
    """
    seen: dict[str, tuple[int, str]] = {}
    kept: dict[str, bytes] = {}
    for member in _members(source):
        name = member.name
        if name in seen or name not in (*_KINDS, MANIFEST):
            raise PayloadError(f'unexpected member {name!r} in the payload')
        if not member.isreg():
            raise PayloadError(f'member {name!r} is not a file')
        limit = _MAX_MANIFEST_BYTES if name == MANIFEST else MAX_CONFIG_BYTES
        if name != DATABASE and member.size > limit:
            raise PayloadError(f'member {name!r} is too large')
        data, digest = _copy(
            source, member.size, database_out if name == DATABASE else None
        )
        seen[name] = (member.size, digest)
        kept[name] = data
    if MANIFEST not in kept:
        raise PayloadError('the payload has no manifest')
    manifest = _parse_manifest(kept[MANIFEST])
    _match(manifest, seen)
    return Payload(manifest, kept.get(CONFIG))


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError('the manifest is not JSON') from None
    if not isinstance(manifest, dict) or not isinstance(
        manifest.get('components'), list
    ):
        raise PayloadError('the manifest lists no components')
    return manifest


def _match(manifest: dict[str, Any], seen: dict[str, tuple[int, str]]) -> None:
    listed = {}
    for component in manifest['components']:
        if not isinstance(component, dict) or not isinstance(
            component.get('name'), str
        ):
            raise PayloadError('the manifest has a malformed component')
        listed[component['name']] = (component.get('size'), component.get('sha256'))
    if DATABASE not in listed:
        raise PayloadError('the manifest lists no database')
    stored = {name: value for name, value in seen.items() if name != MANIFEST}
    if set(listed) != set(stored):
        raise PayloadError(
            f'the manifest lists {sorted(listed)}, the payload {sorted(stored)}'
        )
    for name, (size, digest) in stored.items():
        if listed[name] != (size, digest):
            raise PayloadError(
                f'{name} does not match its size and SHA-256 in the manifest'
            )


def check_database(path: Path) -> int:
    """``PRAGMA integrity_check`` on a snapshot; its schema version.

    Raises:
        SnapshotCorruptError: SQLite cannot open it or finds it damaged.
    """
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            result = [row[0] for row in conn.execute('PRAGMA integrity_check')]
            version = int(conn.execute('PRAGMA user_version').get)
        finally:
            conn.close()
    except apsw.Error as exc:
        raise SnapshotCorruptError(
            f'the snapshot does not open as SQLite: {exc}'
        ) from None
    if result != ['ok']:
        raise SnapshotCorruptError(
            f'the snapshot fails its integrity check: {result[:3]}'
        )
    return version
