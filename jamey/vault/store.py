"""The vault's operations: create, list, verify, restore, prune, rekey.

A backup appears under its final name ``<id>.jvault`` only once it is
complete, fsynced and read back: it is written to a hidden temporary name,
renamed, and the directory fsynced. A crash or a full disk leaves at most a
temporary file, which the next run removes and nothing ever lists.
"""

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import NamedTuple

import apsw

from jamey.clock import iso_utc
from jamey.errors import BackupCancelledError
from jamey.errors import BackupNotFoundError
from jamey.errors import ForeignBackupError
from jamey.errors import PayloadError
from jamey.errors import PrivateKeyRequiredError
from jamey.errors import UnsafeDirectoryError
from jamey.errors import VaultBusyError
from jamey.errors import VaultConfigError
from jamey.errors import VaultError
from jamey.errors import VaultSpaceError
from jamey.storage import DATABASE_NAME
from jamey.storage import StateLock
from jamey.storage import bundled_migrations
from jamey.storage import private_directory
from jamey.storage import refuse_if_others_write
from jamey.vault import archive
from jamey.vault.format import PREFIX_BYTES
from jamey.vault.format import ChunkFile
from jamey.vault.format import ChunkReader
from jamey.vault.format import ChunkWriter
from jamey.vault.format import Header
from jamey.vault.format import check_header_mac
from jamey.vault.format import read_header
from jamey.vault.format import seal_header
from jamey.vault.keys import MODE_NAMES
from jamey.vault.keys import Keyring
from jamey.vault.keys import derive
from jamey.vault.keys import mode_fields

SUFFIX = '.jvault'
_TEMP = '.tmp'
_LOCK_NAME = '.vault.lock'
_COPY_BYTES = 1 << 20
# After a failed scheduled backup, the next try waits at most this long.
RETRY_S = 600.0
log = logging.getLogger('jamey.vault')


class Policy(NamedTuple):
    """restic-style retention; all zero keeps everything."""

    keep_last: int
    keep_daily: int
    keep_weekly: int


DEFAULT_POLICY = Policy(3, 7, 4)


class Backup(NamedTuple):
    """A finished backup, as its header describes it."""

    header: Header
    path: Path
    size: int

    @property
    def id(self) -> str:
        return self.header.id

    @property
    def created_s(self) -> float:
        return self.header.created_ms / 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'created_at': iso_utc(self.created_s),
            'size_bytes': self.size,
            'key_mode': MODE_NAMES.get(self.header.mode, 'unknown'),
            'key_id': self.header.key_id.hex(),
            'cipher': self.header.cipher,
        }


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_file(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, 'wb', buffering=0)


def _fsync_file(path: Path) -> None:
    with path.open('rb') as f:
        os.fsync(f.fileno())


def _durable(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def check_id(backup_id: str) -> str:
    """A backup id is a UUID; anything else names no file (and no path)."""
    try:
        return str(uuid.UUID(backup_id))
    except (ValueError, TypeError, AttributeError):
        raise BackupNotFoundError(f'{backup_id!r} is not a backup id') from None


class Unreadable(NamedTuple):
    """A file named like a backup that does not list as one: its name (never
    its path), a stable ``code`` and what it means; ``error`` is what the
    system said, with the path, for the log only."""

    file: str
    code: str
    detail: str
    error: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {'file': self.file, 'code': self.code, 'detail': self.detail}


def _unreadable(path: Path, exc: VaultError | OSError) -> Unreadable:
    if isinstance(exc, VaultError):
        return Unreadable(path.name, exc.code, str(exc))
    symbol = errno.errorcode.get(exc.errno or 0, 'an error')
    return Unreadable(
        path.name, 'os_error', f'The file cannot be read ({symbol}).', str(exc)
    )


def scan(directory: Path) -> tuple[list[Backup], list[Unreadable]]:
    """The backups in ``directory``, oldest first, and the files named like
    backups whose headers cannot be read (with why)."""
    backups, unreadable = [], []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            if path.suffix != SUFFIX or path.name.startswith('.'):
                continue
            try:
                with path.open('rb') as f:
                    header = read_header(f, mode_fields)
                    size = os.fstat(f.fileno()).st_size
            except (VaultError, OSError) as exc:
                unreadable.append(_unreadable(path, exc))
                continue
            if path.name == header.id + SUFFIX:
                backups.append(Backup(header, path, size))
            else:
                unreadable.append(
                    Unreadable(
                        path.name,
                        'misnamed',
                        f'The header names backup {header.id}.',
                    )
                )
    backups.sort(key=lambda b: (b.header.created_ms, b.id))
    return backups, sorted(unreadable)


def retained(backups: list[Backup], policy: Policy) -> set[str]:
    """The ids kept: the newest ``keep_last``, and the newest of each of the
    latest ``keep_daily`` days and ``keep_weekly`` ISO weeks (UTC)."""
    if not any(policy):
        return {b.id for b in backups}
    newest_first = sorted(backups, key=lambda b: b.header.created_ms, reverse=True)
    keep = {b.id for b in newest_first[: policy.keep_last]}
    buckets: tuple[tuple[int, Callable[[datetime], object]], ...] = (
        (policy.keep_daily, lambda d: d.date()),
        (policy.keep_weekly, lambda d: d.isocalendar()[:2]),
    )
    for count, bucket in buckets:
        seen: set[Any] = set()
        for backup in newest_first:
            key = bucket(datetime.fromtimestamp(backup.created_s, UTC))
            if key not in seen and len(seen) < count:
                seen.add(key)
                keep.add(backup.id)
    return keep


class Vault:
    """One vault directory, its key, retention and mirrors."""

    def __init__(
        self,
        directory: Path,
        keyring: Keyring | None,
        cipher: str = 'aes-256-gcm',
        policy: Policy = DEFAULT_POLICY,
        mirrors: tuple[Path, ...] = (),
        config_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        device: str = 'jamey',
    ) -> None:
        self.directory = directory
        # The device's id (mqtt.device_id): each backup's manifest names it,
        # and a restore here refuses another device's unless told to.
        self.device = device
        self.keyring = keyring
        self.cipher = cipher
        self.policy = policy
        self.mirrors = mirrors
        self.config_file = config_file
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_at: float | None = None

    # -- reading ---------------------------------------------------------

    def backups(self) -> tuple[list[Backup], list[Unreadable]]:
        return scan(self.directory)

    def find(self, backup_id: str) -> Backup:
        wanted = check_id(backup_id)
        for backup in self.backups()[0]:
            if backup.id == wanted:
                return backup
        raise BackupNotFoundError(f'no backup {wanted} in the vault')

    def newest(self) -> Backup | None:
        backups = self.backups()[0]
        return backups[-1] if backups else None

    def _require_key(self, keyring: Keyring | None = None) -> Keyring:
        keyring = keyring or self.keyring
        if keyring is None:
            raise VaultConfigError(
                'no vault key is configured: set vault.key_file,'
                ' vault.passphrase_file or vault.recipient_file'
            )
        return keyring

    def _open(self, f: BinaryIO, keyring: Keyring | None) -> tuple[Header, ChunkReader]:
        """Header checked, key matched, MAC verified: the chunk reader."""
        header, key, size = self._unseal(f, keyring)
        return header, ChunkReader(f, header, key, size)

    def _unseal(
        self, f: BinaryIO, keyring: Keyring | None
    ) -> tuple[Header, bytes, int]:
        """Header checked, key matched, MAC verified: the payload key, and
        the file's size."""
        header = read_header(f, mode_fields)
        master = self._require_key(keyring).unseal(
            header.mode, header.key_id, header.fields
        )
        check_header_mac(header, derive(master, header.backup_id, 'header'))
        size = os.fstat(f.fileno()).st_size
        return header, derive(master, header.backup_id, 'payload'), size

    def _decrypt(
        self, backup: Backup, out: Path, keyring: Keyring | None
    ) -> dict[str, Any]:
        """Decrypt and check all of ``backup``; the snapshot lands in ``out``."""
        with backup.path.open('rb') as f, _private_file(out) as dest:
            _, reader = self._open(f, keyring)
            payload = archive.read_payload(reader, dest)
            reader.drain()
        version = archive.check_database(out)
        return _report(backup, reader, payload, version)

    def verify(self, backup_id: str, keyring: Keyring | None = None) -> dict[str, Any]:
        """Decrypt everything, check every hash and the snapshot's integrity.

        Nothing is written: SQLite checks the snapshot where it lies in the
        backup, opening chunks as it reads pages, while a second thread
        reads every chunk in order and checks the hashes (the two overlap).
        When both fail, the in-order reader's finding is the one reported:
        it names how a chunk was damaged.

        Raises:
            VaultError: the subclass names what is wrong with the backup.
        """
        backup = self.find(backup_id)
        with backup.path.open('rb') as f:
            header, key, size = self._unseal(f, keyring)
            reader = ChunkReader(f, header, key, size)
            chunks = ChunkFile(f.fileno(), header, key, size)
            with ThreadPoolExecutor(1, 'jamey-vault-verify') as pool:
                in_order = pool.submit(_read_in_order, reader)
                try:
                    version: int | VaultError = archive.check_snapshot_in_backup(chunks)
                except VaultError as exc:
                    version = exc
                payload = in_order.result()
        if isinstance(version, VaultError):
            raise version
        report = _report(backup, reader, payload, version)
        report.pop('config')
        return report

    # -- writing ---------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer per vault, across threads and processes (flock)."""
        private_directory(self.directory)
        fd = os.open(
            self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise VaultBusyError(
                    'another backup, prune or rekey is running on this vault'
                ) from None
            yield
        finally:
            os.close(fd)

    def _check(self) -> None:
        if self._stop.is_set():
            raise BackupCancelledError('jameyd is stopping: the backup was abandoned')

    def create(self, database: Path) -> Backup:
        """Snapshot the live database at ``database`` into a new backup.

        Raises:
            VaultConfigError: no key is configured.
            VaultBusyError: another backup is being made.
            VaultSpaceError: the disk filled up (nothing is left behind).
        """
        keyring = self._require_key()
        with self._locked():
            _clear_temps(self.directory)
            header, key = self._new_header(
                keyring, uuid.uuid4().bytes, int(self._clock() * 1000)
            )
            backup = self._write(database, header, key)
        log.info('vault.created', extra={'backup': backup.id, 'bytes': backup.size})
        self._mirror(backup)
        return backup

    def _write(self, database: Path, header: Header, key: bytes) -> Backup:
        final = self.directory / f'{header.id}{SUFFIX}'
        temp = self.directory / f'.{header.id}{SUFFIX}{_TEMP}'
        config = self._config_bytes()
        manifest = {'backup_id': header.id, 'device': self.device}
        try:
            _seal_file(
                temp,
                header,
                key,
                lambda w: archive.write_payload(
                    w, database, config, manifest, self._check
                ),
            )
            _install(temp, final)
        except (OSError, apsw.FullError) as exc:
            if isinstance(exc, apsw.FullError) or exc.errno in (
                errno.ENOSPC,
                errno.EDQUOT,
            ):
                raise VaultSpaceError(
                    'the disk of the vault is full; no backup was made'
                ) from None
            raise
        finally:
            _remove(temp)
        return Backup(header, final, final.stat().st_size)

    def _config_bytes(self) -> bytes | None:
        if self.config_file is None:
            return None
        try:
            with self.config_file.open('rb') as f:
                data = f.read(archive.MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise VaultError(
                f'cannot read the config file to back it up: {exc.strerror}'
            ) from None
        if len(data) > archive.MAX_CONFIG_BYTES:
            raise VaultError('the config file is larger than 1 MiB')
        return data

    def _new_header(
        self, keyring: Keyring, backup_id: bytes, created_ms: int
    ) -> tuple[Header, bytes]:
        """A sealed header for ``backup_id`` under ``keyring``; the payload key."""
        sealing = keyring.seal()
        header = Header(
            self.cipher,
            keyring.mode,
            backup_id,
            created_ms,
            sealing.key_id,
            os.urandom(PREFIX_BYTES),
            sealing.fields,
        )
        mac_key = derive(sealing.master, backup_id, 'header')
        return seal_header(header, mac_key), derive(
            sealing.master, backup_id, 'payload'
        )

    def _mirror(self, backup: Backup) -> None:
        """Copy a finished backup to each mirror; a mirror that fails (an
        unplugged disk, or one that other users may write in) is logged,
        never fails the backup."""
        for mirror in self.mirrors:
            try:
                _copy_atomically(backup.path, mirror)
                _prune_dir(mirror, self.policy)
            except (OSError, VaultError, UnsafeDirectoryError) as exc:
                log.warning(
                    'vault.mirror_failed',
                    extra={'mirror': str(mirror), 'error': str(exc)},
                )

    def prune(self) -> list[str]:
        """Apply the retention rules here and in every mirror; removed ids."""
        with self._locked():
            removed = _prune_dir(self.directory, self.policy)
        for mirror in self.mirrors:
            with contextlib.suppress(OSError):
                _prune_dir(mirror, self.policy)
        return removed

    def restore(
        self,
        backup_id: str,
        state_dir: Path,
        derived: tuple[Path, ...] = (),
        config_target: Path | None = None,
        keyring: Keyring | None = None,
        from_device: str | None = None,
    ) -> dict[str, Any]:
        """Replace the database by a backup's snapshot, with jameyd stopped.

        The backup is decrypted and checked in full into a temporary file
        first; only then is the current database (and its WAL) moved aside
        and the snapshot renamed into place. ``derived`` (the search index)
        is removed, to be rebuilt from the restored database at the next
        start. A backup another device made (the same key can be shared by
        a fleet) is restored only when ``from_device`` names that device;
        one made before backups named their device is restored as this
        device's.

        Raises:
            StateLockedError: jameyd is running on ``state_dir``.
            ForeignBackupError: another device made it; nothing was changed.
            VaultError: the backup is not sound; nothing was changed.
        """
        backup = self.find(backup_id)
        lock = StateLock(private_directory(state_dir))
        try:
            return self._restore_locked(
                backup, state_dir, derived, config_target, keyring, from_device
            )
        finally:
            lock.release()

    def _restore_locked(
        self,
        backup: Backup,
        state_dir: Path,
        derived: tuple[Path, ...],
        config_target: Path | None,
        keyring: Keyring | None,
        from_device: str | None,
    ) -> dict[str, Any]:
        temp = state_dir / f'.restore-{backup.id}{_TEMP}'
        try:
            report = self._decrypt(backup, temp, keyring)
            _refuse_newer(report['schema_version'])
            self._refuse_foreign(report['device'], from_device)
            _fsync_file(temp)
            database = state_dir / DATABASE_NAME
            stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self._clock()))
            aside = _set_aside(database, f'before-restore-{stamp}')
            temp.rename(database)
            fsync_dir(state_dir)
        finally:
            _remove(temp)
        for path in derived:
            shutil.rmtree(path, ignore_errors=True)
        config = report.pop('config')
        report['previous_database'] = str(aside) if aside else None
        report['config_restored'] = None
        if config is not None and config_target is not None:
            report['previous_config'] = _replace_file(config_target, config, stamp)
            report['config_restored'] = str(config_target)
        return report

    def _refuse_foreign(self, origin: str | None, from_device: str | None) -> None:
        if origin is None or origin in (self.device, from_device):
            return
        raise ForeignBackupError(
            f'the backup was made by device {origin!r}, and this is {self.device!r}:'
            f" restoring it replaces this device's state and config with that"
            f" device's; to do so, pass --from-device {origin}"
        )

    def rekey(self, new: Keyring, old: Keyring | None = None) -> list[dict[str, str]]:
        """Re-encrypt every backup (here and in the mirrors) to ``new``.

        Each file is replaced atomically once its new copy is complete and
        read back; backups ``new`` already opens are skipped, so a rekey cut
        short is finished by running it again.
        """
        results = []
        with self._locked():
            for directory in (self.directory, *self.mirrors):
                for backup in scan(directory)[0]:
                    status = self._rekey_one(backup, new, old)
                    results.append(
                        {'id': backup.id, 'dir': str(directory), 'status': status}
                    )
        return results

    def _rekey_one(self, backup: Backup, new: Keyring, old: Keyring | None) -> str:
        with backup.path.open('rb') as f:
            try:
                self._open(f, new)
            except PrivateKeyRequiredError:
                return 'already'  # made for the new recipient already
            except VaultError:
                f.seek(0)
            else:
                return 'already'
            old_header, reader = self._open(f, old)
            header, key = self._new_header(
                new, old_header.backup_id, old_header.created_ms
            )
            temp = backup.path.with_name(f'.{backup.path.name}{_TEMP}')
            try:
                _seal_file(temp, header, key, lambda w: _pour(reader, w))
                _install(temp, backup.path)
            finally:
                _remove(temp)
        return 'rekeyed'

    # -- schedule --------------------------------------------------------

    def start(self, database: Path, interval_s: float) -> None:
        """Back up every ``interval_s`` (counted from the newest backup) in a
        thread of its own, pruning after each.

        Raises:
            UnsafeDirectoryError: the vault directory belongs to another user,
                or a mirror there now may be written by other users (refused
                now, not at the first backup hours later; a mirror not there
                yet, an unplugged disk, is checked at each backup).
        """
        private_directory(self.directory)
        for mirror in self.mirrors:
            if mirror.is_dir():
                refuse_if_others_write(mirror, 'the vault mirror')
        self._thread = threading.Thread(
            target=self._run,
            args=(database, interval_s),
            name='jamey-vault',
            daemon=True,
        )
        self._thread.start()

    def _next_in(self, interval_s: float) -> float:
        newest = self.newest()
        due = newest.created_s + interval_s if newest else 0.0
        if self._failed_at is not None:
            due = max(due, self._failed_at + min(interval_s, RETRY_S))
        return max(0.0, due - self._clock())

    def _run(self, database: Path, interval_s: float) -> None:
        while not self._stop.wait(self._next_in(interval_s)):
            try:
                self.create(database)
                self.prune()
                self._failed_at = None
            except BackupCancelledError:
                log.info('vault.backup_abandoned', extra={'reason': 'stopping'})
                return
            except (VaultError, OSError, apsw.Error) as exc:
                self._failed_at = self._clock()
                log.error('vault.backup_failed', extra={'error': str(exc)})

    def stop(self) -> None:
        """Stop the schedule; a backup in progress gives up and cleans up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _read_in_order(reader: ChunkReader) -> archive.Payload:
    """Every chunk in order, every member against the manifest."""
    payload = archive.read_payload(reader, None)
    reader.drain()
    return payload


def _report(
    backup: Backup, reader: ChunkReader, payload: archive.Payload, version: int
) -> dict[str, Any]:
    return {
        'id': backup.id,
        'ok': True,
        'chunks': reader.count,
        'schema_version': version,
        'source_version': payload.manifest.get('source_version'),
        'device': _device(payload.manifest),
        'components': payload.manifest['components'],
        'config': payload.config,
    }


def _device(manifest: dict[str, Any]) -> str | None:
    """The device a manifest names; None for one made before they did."""
    device = manifest.get('device')
    if device is not None and not isinstance(device, str):
        raise PayloadError('the manifest names its device wrongly')
    return device


def _seal_file(
    path: Path, header: Header, key: bytes, fill: Callable[[ChunkWriter], object]
) -> None:
    """Write ``header``, then whatever ``fill`` writes, sealed; fsynced and
    read back."""
    with _private_file(path) as out:
        out.write(header.raw)
        writer = ChunkWriter(out, header, key)
        fill(writer)
        writer.close()
        _while_flushing(out, lambda: _read_back(path, header, key))


def _while_flushing(f: BinaryIO, work: Callable[[], None]) -> None:
    """Run ``work`` while ``f`` is fsynced on another thread; both must
    succeed. A gigabyte's fsync and read-back take a quarter second each,
    and neither needs the other."""
    with ThreadPoolExecutor(1, 'jamey-vault-fsync') as pool:
        flushed = pool.submit(_durable, f)
        work()
        flushed.result()


def _pour(reader: ChunkReader, writer: ChunkWriter) -> None:
    while block := reader.read(_COPY_BYTES):
        writer.write(block)


def _read_back(path: Path, header: Header, key: bytes) -> None:
    """What the file system returns must open: every chunk authenticates
    where it lies, up to the one marked last (the tags prove the bytes are
    the ones sealed; no second hash is needed)."""
    with path.open('rb') as f:
        if read_header(f, mode_fields).raw != header.raw:
            raise VaultError('the backup read back has another header')
        ChunkReader(f, header, key, os.fstat(f.fileno()).st_size).drain()


def _install(temp: Path, final: Path) -> None:
    """Give the finished file its name, durably."""
    temp.rename(final)
    fsync_dir(final.parent)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _clear_temps(directory: Path) -> None:
    """What a crashed or cancelled run left (hidden temporary names only)."""
    for path in directory.glob(f'.*{_TEMP}*'):
        _remove(path)


def _prune_dir(directory: Path, policy: Policy) -> list[str]:
    backups = scan(directory)[0]
    keep = retained(backups, policy)
    removed = [b.id for b in backups if b.id not in keep]
    for backup in backups:
        if backup.id not in keep:
            _remove(backup.path)
    if removed:
        fsync_dir(directory)
        log.info('vault.pruned', extra={'dir': str(directory), 'removed': removed})
    return removed


def _copy_atomically(source: Path, directory: Path) -> Path:
    if not directory.is_dir():
        raise VaultError(f'mirror directory {directory} does not exist')
    refuse_if_others_write(directory, 'the vault mirror')
    final = directory / source.name
    temp = directory / f'.{source.name}{_TEMP}'
    try:
        with source.open('rb') as src, _private_file(temp) as dest:
            shutil.copyfileobj(src, dest, _COPY_BYTES)
            _durable(dest)
        temp.rename(final)
        fsync_dir(directory)
    finally:
        _remove(temp)
    return final


def _refuse_newer(schema_version: int) -> None:
    """jameyd would refuse to start on it: better to change nothing."""
    known = len(bundled_migrations())
    if schema_version > known:
        raise VaultError(
            f'the backup holds schema version {schema_version}, newer than this'
            f' jamey knows ({known}): restore it with the newer version'
        )


def _set_aside(path: Path, tag: str) -> Path | None:
    """Move a database and its WAL and shared memory to ``<name>.<tag>``."""
    if not path.exists():
        return None
    aside = path.with_name(f'{path.name}.{tag}')
    for suffix in ('-wal', '-shm', ''):
        current = path.with_name(path.name + suffix)
        if current.exists():
            current.rename(aside.with_name(aside.name + suffix))
    return aside


def _replace_file(path: Path, data: bytes, stamp: str) -> str | None:
    """Write ``data`` at ``path`` atomically, the old file kept aside."""
    temp = path.with_name(f'.{path.name}{_TEMP}')
    try:
        with _private_file(temp) as f:
            f.write(data)
            _durable(f)
        aside = None
        if path.exists():
            aside = path.with_name(f'{path.name}.before-restore-{stamp}')
            os.link(path, aside)
        temp.rename(path)
        fsync_dir(path.parent)
    finally:
        _remove(temp)
    return str(aside) if aside else None
