"""The payload: a tar of the database snapshot, the config and a manifest.

The snapshot is SQLite's online backup, taken in steps from inside one read
transaction: in WAL mode readers never block writers, and holding the one
snapshot keeps the copy consistent (and from restarting each time someone
writes). The tar is streamed, never held: members are copied a buffer at a
time into the encrypting writer. ``manifest.json`` comes last because the
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


class _Hashing:
    """A reader that hashes what passes and lets ``check`` interrupt."""

    def __init__(self, f: BinaryIO, check: Callable[[], None]) -> None:
        self._f = f
        self._check = check
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        self._check()
        data = self._f.read(size)
        self.hash.update(data)
        return data


def _add(
    tar: tarfile.TarFile, name: str, f: BinaryIO, size: int, check: Callable[[], None]
) -> dict[str, Any]:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    reader = _Hashing(f, check)
    tar.addfile(info, reader)
    return {
        'name': name,
        'kind': _KINDS.get(name, 'manifest'),
        'size': size,
        'sha256': reader.hash.hexdigest(),
    }


def write_payload(
    out: Any,
    snapshot_path: Path,
    config: bytes | None,
    manifest: dict[str, Any],
    check: Callable[[], None],
) -> dict[str, Any]:
    """Stream the tar into ``out`` (anything with ``write``); the manifest."""
    with tarfile.open(
        fileobj=out, mode='w|', format=tarfile.PAX_FORMAT, bufsize=COPY_BYTES
    ) as tar:
        tar.copybufsize = COPY_BYTES  # type: ignore[attr-defined]
        components = []
        with snapshot_path.open('rb') as f:
            size = os.fstat(f.fileno()).st_size
            components.append(_add(tar, DATABASE, f, size, check))
        if config is not None:
            components.append(_add(tar, CONFIG, io.BytesIO(config), len(config), check))
        document = {
            **manifest,
            'manifest_version': MANIFEST_VERSION,
            'source_version': __version__,
            'components': components,
        }
        body = json.dumps(document, indent=2).encode()
        _add(tar, MANIFEST, io.BytesIO(body), len(body), check)
    return document


class Payload:
    """What a verified payload held: the manifest and the config's bytes."""

    def __init__(self, manifest: dict[str, Any], config: bytes | None) -> None:
        self.manifest = manifest
        self.config = config


def _copy(src: BinaryIO, dest: BinaryIO | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while block := src.read(COPY_BYTES):
        digest.update(block)
        size += len(block)
        if dest is not None:
            dest.write(block)
    return size, digest.hexdigest()


def read_payload(source: Any, database_out: BinaryIO) -> Payload:
    """Read the tar from ``source``: the snapshot into ``database_out``, and
    every member checked against the manifest.

    Raises:
        PayloadError: an unexpected member, a size or hash that disagrees, a
            manifest that is missing or malformed.
    """
    seen: dict[str, tuple[int, str]] = {}
    config: bytes | None = None
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=source, mode='r|') as tar:
            for member in tar:
                if member.name in seen or member.name not in (*_KINDS, MANIFEST):
                    raise PayloadError(
                        f'unexpected member {member.name!r} in the payload'
                    )
                if not member.isreg():
                    raise PayloadError(f'member {member.name!r} is not a file')
                f = tar.extractfile(member)
                assert f is not None
                if member.name == DATABASE:
                    seen[DATABASE] = _copy(f, database_out)  # type: ignore[arg-type]
                    continue
                limit = (
                    MAX_CONFIG_BYTES if member.name == CONFIG else _MAX_MANIFEST_BYTES
                )
                if member.size > limit:
                    raise PayloadError(f'member {member.name!r} is too large')
                data = f.read()
                seen[member.name] = (len(data), hashlib.sha256(data).hexdigest())
                if member.name == CONFIG:
                    config = data
                else:
                    manifest = _parse_manifest(data)
    except tarfile.TarError as exc:
        raise PayloadError(f'the payload is not a readable tar: {exc}') from None
    if manifest is None:
        raise PayloadError('the payload has no manifest')
    _match(manifest, seen)
    return Payload(manifest, config)


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
