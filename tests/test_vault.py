"""The vault on real SQLite files: format, tampering, keys, operations."""

import io
import itertools
import json
import os
import stat
import threading
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import apsw
import pytest

from jamey import config
from jamey import storage
from jamey.errors import AppendedError
from jamey.errors import BackupNotFoundError
from jamey.errors import ChunksReorderedError
from jamey.errors import ChunkTamperedError
from jamey.errors import ConfigError
from jamey.errors import ForeignBackupError
from jamey.errors import HeaderDamagedError
from jamey.errors import HeaderTamperedError
from jamey.errors import NotABackupError
from jamey.errors import PayloadError
from jamey.errors import PrivateKeyRequiredError
from jamey.errors import SecretError
from jamey.errors import SnapshotCorruptError
from jamey.errors import StateLockedError
from jamey.errors import TruncatedError
from jamey.errors import VaultBusyError
from jamey.errors import VaultConfigError
from jamey.errors import VaultError
from jamey.errors import WrongKeyError
from jamey.vault import Policy
from jamey.vault import Vault
from jamey.vault import archive
from jamey.vault import keyring
from jamey.vault import keys
from jamey.vault.format import SEALED
from jamey.vault.format import read_header
from jamey.vault.keys import FileKey
from jamey.vault.keys import Passphrase
from jamey.vault.keys import Recipient
from jamey.vault.store import Backup
from jamey.vault.store import retained


def make_database(path: Path, rows: int = 300) -> Path:
    """A migrated database with a table of incompressible rows (many chunks)."""
    storage.private_directory(path.parent)
    db = storage.Database(path)
    db.migrate()
    conn = db.connection()
    with conn:
        conn.execute('CREATE TABLE filler (n INTEGER PRIMARY KEY, data BLOB)')
        conn.executemany(
            'INSERT INTO filler (data) VALUES (?)',
            [(os.urandom(1000),) for _ in range(rows)],
        )
    db.close()
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return make_database(tmp_path / 'state' / 'jamey.db')


@pytest.fixture
def key() -> FileKey:
    return FileKey(os.urandom(32))


def make_vault(tmp_path: Path, ring: keys.Keyring | None, **kw: object) -> Vault:
    return Vault(tmp_path / 'vault', ring, **kw)  # type: ignore[arg-type]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def header_size(backup: Backup) -> int:
    return len(backup.header.raw)


def test_round_trip_and_listing_from_headers(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    listed, unreadable = vault.backups()
    assert ([b.id for b in listed], unreadable) == ([backup.id], [])
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert (backup.path.stat().st_size - header_size(backup)) % SEALED == 0
    report = vault.verify(backup.id)
    assert report['ok'] and report['chunks'] >= 5
    assert report['schema_version'] == len(storage.bundled_migrations())
    names = [c['name'] for c in report['components']]
    assert names == ['jamey.db.layout', 'jamey.db.pages', 'jamey.db.page1']
    # Listing needs no key: a vault without one still lists.
    assert [b.id for b in make_vault(tmp_path, None).backups()[0]] == [backup.id]
    # Nothing but the backup and the lock is left in the directory.
    assert sorted(p.name for p in vault.directory.iterdir()) == [
        '.vault.lock',
        f'{backup.id}.jvault',
    ]


@pytest.mark.parametrize('cipher', ['aes-256-gcm', 'chacha20-poly1305'])
def test_both_ciphers(
    tmp_path: Path, database: Path, key: FileKey, cipher: str
) -> None:
    vault = make_vault(tmp_path, key, cipher=cipher)
    backup = vault.create(database)
    assert backup.header.cipher == cipher
    assert vault.verify(backup.id)['ok']


def test_flipped_bit_in_the_header(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    flip(backup.path, 30)  # in the created time
    unreadable = make_vault(tmp_path, key).backups()[1][0]
    assert (unreadable.file, unreadable.code) == (
        f'{backup.id}.jvault',
        'header_damaged',
    )
    with pytest.raises(BackupNotFoundError):
        vault.verify(backup.id)
    with backup.path.open('rb') as f, pytest.raises(HeaderDamagedError, match='sum'):
        read_header(f, keys.mode_fields)


def test_header_rewritten_with_its_checksum_fails_its_mac(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    import hashlib

    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    data = bytearray(backup.path.read_bytes())
    size = header_size(backup)
    data[30] ^= 1
    data[size - 32 : size] = hashlib.sha256(data[: size - 32]).digest()
    backup.path.write_bytes(bytes(data))
    with pytest.raises(HeaderTamperedError, match='altered'):
        vault.verify(backup.id)


@pytest.mark.parametrize('where', ['middle', 'last'])
def test_flipped_bit_in_a_chunk(
    tmp_path: Path, database: Path, key: FileKey, where: str
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    count = (backup.size - header_size(backup)) // SEALED
    index = count // 2 if where == 'middle' else count - 1
    flip(backup.path, header_size(backup) + index * SEALED + 100)
    with pytest.raises(
        ChunkTamperedError, match=f'chunk {index + 1} of {count} fails authentication'
    ):
        vault.verify(backup.id)


@pytest.mark.parametrize('cut', [1, SEALED, SEALED * 2 + 7])
def test_truncated_file(tmp_path: Path, database: Path, key: FileKey, cut: int) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    with backup.path.open('r+b') as f:
        f.truncate(backup.size - cut)
    with pytest.raises(TruncatedError, match='truncated'):
        vault.verify(backup.id)


def test_truncated_inside_the_header(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    with backup.path.open('r+b') as f:
        f.truncate(40)
    unreadable = vault.backups()[1][0]
    assert (unreadable.code, 'ends inside its header' in unreadable.detail) == (
        'truncated',
        True,
    )


@pytest.mark.parametrize('extra', ['chunk', 'bytes'])
def test_appended_data(
    tmp_path: Path, database: Path, key: FileKey, extra: str
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    data = backup.path.read_bytes()
    start = header_size(backup)
    tail = data[start : start + SEALED] if extra == 'chunk' else b'more'
    backup.path.write_bytes(data + tail)
    with pytest.raises(AppendedError, match='appended'):
        vault.verify(backup.id)


def test_two_chunks_swapped(tmp_path: Path, database: Path, key: FileKey) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    data = bytearray(backup.path.read_bytes())
    a = header_size(backup) + 2 * SEALED
    b = a + SEALED
    data[a:b], data[b : b + SEALED] = data[b : b + SEALED], data[a:b]
    backup.path.write_bytes(bytes(data))
    with pytest.raises(ChunksReorderedError, match=r'chunk 3 of \d+ is chunk 4'):
        vault.verify(backup.id)


def test_chunk_from_another_backup(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    first = vault.create(database)
    second = vault.create(database)
    data = bytearray(first.path.read_bytes())
    other = second.path.read_bytes()
    at = header_size(first) + 2 * SEALED
    data[at : at + SEALED] = other[at : at + SEALED]
    first.path.write_bytes(bytes(data))
    with pytest.raises(ChunkTamperedError, match=r'chunk 3 .*another backup'):
        vault.verify(first.id)
    assert vault.verify(second.id)['ok']


def test_wrong_key_is_not_corruption(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    backup = make_vault(tmp_path, key).create(database)
    other = make_vault(tmp_path, FileKey(os.urandom(32)))
    with pytest.raises(WrongKeyError, match='made with a different key'):
        other.verify(backup.id)
    by_passphrase = make_vault(tmp_path, Passphrase(b'secret words'))
    with pytest.raises(WrongKeyError, match='different key: a key, and this vault'):
        by_passphrase.verify(backup.id)


def test_wrong_passphrase(tmp_path: Path, database: Path) -> None:
    vault = make_vault(tmp_path, Passphrase(b'correct horse battery'))
    backup = vault.create(database)
    assert backup.header.mode == keys.MODE_PASSPHRASE
    assert vault.verify(backup.id)['ok']
    wrong = make_vault(tmp_path, Passphrase(b'correct horse battery!'))
    with pytest.raises(WrongKeyError, match='made with a different passphrase'):
        wrong.verify(backup.id)


def test_recipient_mode(tmp_path: Path, database: Path) -> None:
    private_path = tmp_path / 'recipient.key'
    keys.generate(private_path, recipient=True)
    public = keys.parse_key((tmp_path / 'recipient.key.pub').read_bytes(), 'pub')
    device = make_vault(tmp_path, Recipient(public))
    backup = device.create(database)
    # The device that made it cannot read it back.
    with pytest.raises(PrivateKeyRequiredError, match='private key'):
        device.verify(backup.id)
    private = keys.parse_key(private_path.read_bytes(), 'private')
    assert device.verify(backup.id, Recipient.from_private(private))['ok']
    stranger = Recipient.from_private(os.urandom(32))
    with pytest.raises(WrongKeyError, match='different recipient key'):
        device.verify(backup.id, stranger)


def test_recipient_wrapped_key_altered(tmp_path: Path, database: Path) -> None:
    import hashlib

    owner = Recipient.from_private(os.urandom(32))
    vault = make_vault(tmp_path, owner)
    backup = vault.create(database)
    data = bytearray(backup.path.read_bytes())
    size = header_size(backup)
    data[size - 64 - 5] ^= 1  # in the wrapped key
    data[size - 32 : size] = hashlib.sha256(data[: size - 32]).digest()
    backup.path.write_bytes(bytes(data))
    with pytest.raises(HeaderTamperedError, match='does not unwrap'):
        vault.verify(backup.id)


def test_not_a_backup(tmp_path: Path, key: FileKey) -> None:
    vault = make_vault(tmp_path, key)
    vault.directory.mkdir()
    (vault.directory / 'notes.jvault').write_bytes(b'hello, world' * 10)
    (vault.directory / 'empty.jvault').write_bytes(b'')
    backups, unreadable = vault.backups()
    assert backups == []
    assert [(u.file, u.code) for u in unreadable] == [
        ('empty.jvault', 'not_a_backup'),
        ('notes.jvault', 'not_a_backup'),
    ]
    notes = vault.directory / 'notes.jvault'
    with notes.open('rb') as f, pytest.raises(NotABackupError):
        read_header(f, keys.mode_fields)
    for hostile in ('../etc/passwd', '', 'x' * 5000, '0' * 32 + '/..'):
        with pytest.raises(BackupNotFoundError):
            vault.verify(hostile)


def test_keygen_writes_private_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    written = keys.generate(tmp_path / 'vault.key', recipient=False)
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [0o600]
    assert len(keys.parse_key(written[0].read_bytes(), 'key')) == 32
    with pytest.raises(FileExistsError):
        keys.generate(tmp_path / 'vault.key', recipient=False)
    pair = keys.generate(tmp_path / 'id', recipient=True)
    assert [p.name for p in pair] == ['id', 'id.pub']
    assert {stat.S_IMODE(p.stat().st_mode) for p in pair} == {0o600}


@pytest.mark.parametrize(
    'content', [b'', b'short', b'z' * 64, b'\xff' * 31, b'ab' * 33]
)
def test_malformed_key_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / 'bad.key'
    path.write_bytes(content)
    path.chmod(0o600)
    settings = config.VaultSettings(key_file=str(path))
    with pytest.raises(VaultConfigError, match='32 bytes'):
        keyring(settings, {})


def test_key_sources_from_settings(tmp_path: Path) -> None:
    path = tmp_path / 'k'
    keys.generate(path, recipient=False)
    assert isinstance(keyring(config.VaultSettings(key_file=str(path)), {}), FileKey)
    assert keyring(config.VaultSettings(), {}) is None
    phrase = tmp_path / 'phrase'
    phrase.write_bytes(b'words\n')
    phrase.chmod(0o644)
    with pytest.raises(SecretError, match='chmod 600'):
        keyring(config.VaultSettings(passphrase_file=str(phrase)), {})
    phrase.chmod(0o600)
    ring = keyring(config.VaultSettings(passphrase_file=str(phrase)), {})
    assert isinstance(ring, Passphrase)
    phrase.write_bytes(b'\n')
    with pytest.raises(ConfigError, match='empty'):
        keyring(config.VaultSettings(passphrase_file=str(phrase)), {})
    # A bare name is a systemd credential.
    creds = {'CREDENTIALS_DIRECTORY': str(tmp_path)}
    assert isinstance(keyring(config.VaultSettings(key_file='k'), creds), FileKey)


def test_one_key_source_at_most(tmp_path: Path) -> None:
    toml = tmp_path / 'jamey.toml'
    toml.write_text('[vault]\nkey_file = "a"\nrecipient_file = "b"\n')
    with pytest.raises(ConfigError, match=r'vault\.key_file and vault\.recipient_file'):
        config.load(toml, {})


def test_no_key_refuses_to_create(tmp_path: Path, database: Path) -> None:
    with pytest.raises(VaultConfigError, match='no vault key'):
        make_vault(tmp_path, None).create(database)


def test_restore_replaces_the_database_and_keeps_the_old_aside(
    tmp_path: Path, key: FileKey
) -> None:
    state = tmp_path / 'state'
    database = make_database(state / 'jamey.db', rows=50)
    conf = tmp_path / 'jamey.toml'
    conf.write_text('[log]\nlevel = "debug"\n')
    vault = make_vault(tmp_path, key, config_file=conf)
    backup = vault.create(database)
    conn = apsw.Connection(str(database))
    conn.execute('DELETE FROM filler WHERE n > 10')
    conn.close()
    conf.write_text('[log]\nlevel = "error"\n')
    index = state / 'index'
    index.mkdir()
    report = vault.restore(backup.id, state, (index,), conf)
    conn = apsw.Connection(str(database))
    assert conn.execute('SELECT count(*) FROM filler').get == 50
    conn.close()
    assert conf.read_text() == '[log]\nlevel = "debug"\n'
    assert Path(report['previous_config']).read_text() == '[log]\nlevel = "error"\n'
    previous = apsw.Connection(report['previous_database'])
    assert previous.execute('SELECT count(*) FROM filler').get == 10
    assert not index.exists()


def test_restore_refuses_while_the_state_directory_is_locked(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    lock = storage.StateLock(database.parent)
    try:
        with pytest.raises(StateLockedError, match='in use by jameyd'):
            vault.restore(backup.id, database.parent)
    finally:
        lock.release()


def test_restore_of_a_damaged_backup_changes_nothing(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    before = database.read_bytes()
    flip(backup.path, backup.size - 100)
    with pytest.raises(ChunkTamperedError):
        vault.restore(backup.id, database.parent)
    assert database.read_bytes() == before
    assert sorted(p.name for p in database.parent.iterdir()) == [
        'jamey.db',
        'jamey.lock',
    ]


def test_restore_refuses_another_devices_backup_unless_told(
    tmp_path: Path, key: FileKey
) -> None:
    """A fleet may share one key: a backup of dev-b restores on dev-a only
    with --from-device dev-b, and nothing changes before that."""
    database = make_database(tmp_path / 'b' / 'jamey.db', rows=5)
    conf = tmp_path / 'jamey.toml'
    conf.write_text('[mqtt]\ndevice_id = "dev-b"\n')
    made = make_vault(tmp_path, key, device='dev-b', config_file=conf).create(database)
    here = make_vault(tmp_path, key, device='dev-a')
    assert here.verify(made.id)['device'] == 'dev-b'
    state = tmp_path / 'a'
    own = make_database(state / 'jamey.db', rows=1)
    before = own.read_bytes()
    mine = tmp_path / 'dev-a.toml'
    mine.write_text('[mqtt]\ndevice_id = "dev-a"\n')
    with pytest.raises(
        ForeignBackupError, match=r"device 'dev-b'.*--from-device dev-b"
    ):
        here.restore(made.id, state, (), mine)
    with pytest.raises(ForeignBackupError):
        here.restore(made.id, state, (), mine, from_device='dev-c')
    assert own.read_bytes() == before
    assert mine.read_text() == '[mqtt]\ndevice_id = "dev-a"\n'
    assert sorted(p.name for p in state.iterdir()) == ['jamey.db', 'jamey.lock']
    report = here.restore(made.id, state, (), mine, from_device='dev-b')
    assert report['device'] == 'dev-b'
    assert mine.read_text() == '[mqtt]\ndevice_id = "dev-b"\n'
    # The device that made it restores it without being told.
    own_vault = make_vault(tmp_path, key, device='dev-b')
    assert own_vault.restore(made.id, state)['device'] == 'dev-b'


def test_a_backup_made_before_backups_named_their_device_restores(
    tmp_path: Path, database: Path, key: FileKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = archive.write_payload

    def unnamed(out: Any, source: Path, config: Any, manifest: Any, check: Any) -> Any:
        return write(out, source, config, {'backup_id': manifest['backup_id']}, check)

    monkeypatch.setattr(archive, 'write_payload', unnamed)
    made = make_vault(tmp_path, key, device='dev-b').create(database)
    monkeypatch.undo()
    here = make_vault(tmp_path, key, device='dev-a')
    report = here.restore(made.id, tmp_path / 'a')
    assert report['device'] is None


def test_restore_refuses_a_newer_schema(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    conn = apsw.Connection(str(database))
    conn.execute('PRAGMA user_version = 999')
    conn.close()
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    with pytest.raises(VaultError, match='schema version 999, newer'):
        vault.restore(backup.id, tmp_path / 'elsewhere')
    assert not (tmp_path / 'elsewhere' / 'jamey.db').exists()


def test_payload_checked_against_its_manifest(
    tmp_path: Path, database: Path, key: FileKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jamey.vault import archive

    vault = make_vault(tmp_path, key)
    real = vault.create(database)
    # A manifest whose hash disagrees, sealed as if it were genuine.
    monkeypatch.setattr(archive, '_add', _lying_add(archive._add))
    forged = vault.create(database)
    assert vault.verify(real.id)['ok']
    with pytest.raises(PayloadError, match='does not match its size and SHA-256'):
        vault.verify(forged.id)


def _lying_add(add):  # type: ignore[no-untyped-def]
    def lying(tar, name, f, size, check):  # type: ignore[no-untyped-def]
        if name == 'manifest.json':
            import io
            import json

            document = json.loads(f.read())
            document['components'][0]['sha256'] = '0' * 64
            body = json.dumps(document).encode()
            return add(tar, name, io.BytesIO(body), len(body), check)
        return add(tar, name, f, size, check)

    return lying


def test_one_writer_at_a_time(tmp_path: Path, database: Path, key: FileKey) -> None:
    vault = make_vault(tmp_path, key)
    with vault._locked(), pytest.raises(VaultBusyError):
        vault.create(database)


def backup_at(when: datetime) -> Backup:
    from jamey.vault.format import Header

    header = Header(
        'aes-256-gcm',
        1,
        os.urandom(16),
        int(when.timestamp() * 1000),
        b'k' * 8,
        b'p' * 7,
        b'',
    )
    return Backup(header, Path('x'), 0)


def test_retention_rules() -> None:
    days = [datetime(2026, 11, d, h, tzinfo=UTC) for d in range(1, 29) for h in (3, 15)]
    backups = [backup_at(d) for d in days]
    by_id = {b.id: b for b in backups}

    def kept(policy: Policy) -> list[str]:
        return sorted(
            datetime.fromtimestamp(by_id[i].created_s, UTC).strftime('%d %H')
            for i in retained(backups, policy)
        )

    assert kept(Policy(2, 0, 0)) == ['28 03', '28 15']
    assert kept(Policy(0, 3, 0)) == ['26 15', '27 15', '28 15']
    # ISO weeks end on Sundays: the 1st, 8th, 15th, 22nd of November 2026.
    assert kept(Policy(0, 0, 3)) == ['15 15', '22 15', '28 15']
    assert kept(Policy(1, 2, 2)) == ['22 15', '27 15', '28 15']
    assert len(kept(Policy(0, 0, 0))) == len(backups)


def test_prune_and_mirrors(tmp_path: Path, database: Path, key: FileKey) -> None:
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    missing = tmp_path / 'unplugged'
    clock = iter(range(1_800_000_000, 1_900_000_000, 86_400 * 8))
    vault = Vault(
        tmp_path / 'vault',
        key,
        policy=Policy(2, 0, 0),
        mirrors=(mirror, missing),
        clock=lambda: float(next(clock)),
    )
    made = [vault.create(database).id for _ in range(4)]
    assert sorted(p.stem for p in mirror.glob('*.jvault')) == sorted(made[-2:])
    assert vault.prune() == made[:2]
    assert [b.id for b in vault.backups()[0]] == made[2:]
    assert not missing.exists()


def test_a_mirror_others_may_write_gets_no_copy(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    """Made unsafe after the start (a disk mounted with the wrong mode): the
    backup is made, the mirror is skipped, and that is logged."""
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    vault = Vault(tmp_path / 'vault', key, mirrors=(mirror,))
    mirror.chmod(0o777)
    made = vault.create(database)
    assert [b.id for b in vault.backups()[0]] == [made.id]
    assert list(mirror.iterdir()) == []
    mirror.chmod(0o755)
    again = vault.create(database)
    assert [p.stem for p in mirror.glob('*.jvault')] == [again.id]


def test_rekey_is_atomic_and_resumable(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    vault = make_vault(tmp_path, key)
    made = [vault.create(database).id for _ in range(2)]
    new = Passphrase(b'new words')
    first = make_vault(tmp_path, key)
    results = first.rekey(new)
    assert [r['status'] for r in results] == ['rekeyed', 'rekeyed']
    again = make_vault(tmp_path, key).rekey(new)
    assert [r['status'] for r in again] == ['already', 'already']
    with pytest.raises(WrongKeyError):
        vault.verify(made[0])
    rekeyed = make_vault(tmp_path, new)
    assert all(rekeyed.verify(i)['ok'] for i in made)
    assert [b.id for b in rekeyed.backups()[0]] == made


def _counted(database: Path) -> apsw.Connection:
    """A counter table and its total, kept equal by every commit."""
    conn = apsw.Connection(str(database))
    conn.setbusytimeout(5000)
    conn.execute(
        'CREATE TABLE counter (n INTEGER PRIMARY KEY);'
        ' CREATE TABLE total (id INTEGER PRIMARY KEY, n INTEGER);'
        ' INSERT INTO total VALUES (1, 0)'
    )
    return conn


def _count(conn: apsw.Connection, n: int) -> None:
    with conn:
        conn.execute('INSERT INTO counter VALUES (?)', (n,))
        conn.execute('UPDATE total SET n = ?', (n,))


def _restored_total(vault: Vault, backup: Backup, tmp_path: Path) -> int:
    restored = tmp_path / 'restored'
    vault.restore(backup.id, restored)
    check = apsw.Connection(str(restored / 'jamey.db'))
    count, top = check.execute('SELECT count(*), max(n) FROM counter').get
    total = check.execute('SELECT n FROM total').get
    assert check.execute('PRAGMA integrity_check').get == 'ok'
    assert count == top == total
    return int(total)


def test_writes_continue_during_a_backup(tmp_path: Path, key: FileKey) -> None:
    """A writer keeps committing; the snapshot is one consistent moment."""
    database = make_database(tmp_path / 'state' / 'jamey.db', rows=3000)
    _counted(database).close()
    stop = threading.Event()
    written = []

    def write() -> None:
        writer = apsw.Connection(str(database))
        writer.setbusytimeout(5000)
        n = 0
        while not stop.is_set():
            n += 1
            _count(writer, n)
            written.append(n)
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while len(written) < 20:
            pass
        vault = make_vault(tmp_path, key)
        backup = vault.create(database)
        during = len(written)
    finally:
        stop.set()
        thread.join()
    assert during > 20
    assert 0 < _restored_total(vault, backup, tmp_path) <= len(written)


def test_a_quiet_database_is_read_from_its_file_while_others_write(
    tmp_path: Path, key: FileKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the WAL emptied first, the snapshot is the database file, read
    directly: commits and checkpoints meanwhile must not reach it."""
    database = make_database(tmp_path / 'state' / 'jamey.db', rows=3000)
    conn = _counted(database)
    for n in range(1, 11):
        _count(conn, n)
    read_pages = archive._read_pages
    read_from_file = []

    def meanwhile(*args: Any) -> Any:
        read_from_file.append(True)
        for n in range(11, 211):  # into the WAL only
            _count(conn, n)
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        conn.setbusytimeout(100)
        with pytest.raises(apsw.BusyError):
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        return read_pages(*args)

    monkeypatch.setattr(archive, '_read_pages', meanwhile)
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    assert read_from_file
    assert _restored_total(vault, backup, tmp_path) == 10


def test_a_wal_that_cannot_be_emptied_is_copied_by_sqlite(
    tmp_path: Path, key: FileKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader on an older moment keeps the WAL from being emptied: the
    backup goes through SQLite's copy instead, of the newest moment."""
    database = make_database(tmp_path / 'state' / 'jamey.db', rows=3000)
    conn = _counted(database)
    _count(conn, 1)
    reader = apsw.Connection(str(database))
    reader.execute('BEGIN')
    assert reader.execute('SELECT n FROM total').get == 1
    for n in range(2, 6):
        _count(conn, n)
    monkeypatch.setattr(
        archive, '_read_pages', lambda *a: pytest.fail('read from the file')
    )
    vault = make_vault(tmp_path, key)
    backup = vault.create(database)
    reader.execute('COMMIT')
    assert _restored_total(vault, backup, tmp_path) == 5


def test_leftovers_are_cleared(tmp_path: Path, database: Path, key: FileKey) -> None:
    vault = make_vault(tmp_path, key)
    vault.directory.mkdir()
    backup_id = '0123abcd-0000-4000-8000-000000000000'
    crashed = [
        vault.directory / f'.{backup_id}.jvault.tmp',
        vault.directory / f'.{backup_id}.db.tmp',
        # An earlier version's verify wrote a scratch copy.
        vault.directory / f'.verify-{backup_id}-4194305.tmp',
        vault.directory / f'.verify-{backup_id}-4194305.tmp-wal',
    ]
    for path in crashed:
        path.write_bytes(b'partial')
    made = vault.create(database)
    assert sorted(p.name for p in vault.directory.iterdir()) == sorted(
        ['.vault.lock', f'{made.id}.jvault']
    )


def test_verify_writes_nothing(tmp_path: Path, database: Path, key: FileKey) -> None:
    vault = make_vault(tmp_path, key)
    made = vault.create(database)

    def files() -> dict[Path, tuple[int, int]]:
        return {
            p: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob('*')
        }

    before = files()
    assert vault.verify(made.id)['ok']
    assert files() == before


def test_a_damaged_snapshot_fails_its_integrity_check(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    """Sealed and hashed as it was, but the database itself was damaged:
    verify finds it where it lies in the backup, restore before it replaces
    anything."""
    page_size = apsw.Connection(str(database)).execute('PRAGMA page_size').get
    rows_root = (
        apsw.Connection(str(database))
        .execute("SELECT rootpage FROM sqlite_schema WHERE name = 'filler'")
        .get
    )
    with database.open('r+b') as f:  # the table's root page: its cell pointers
        f.seek((rows_root - 1) * page_size + 12)
        f.write(b'\xff' * 64)
    vault = make_vault(tmp_path, key)
    made = vault.create(database)
    damaged = 'malformed|integrity check'
    with pytest.raises(SnapshotCorruptError, match=damaged):
        vault.verify(made.id)
    state = make_database(tmp_path / 'other' / 'jamey.db')
    before = state.read_bytes()
    with pytest.raises(SnapshotCorruptError, match=damaged):
        vault.restore(made.id, state.parent)
    assert state.read_bytes() == before


@pytest.mark.parametrize('page_size', [512, 65536])
def test_verify_reads_snapshots_of_any_page_size(
    tmp_path: Path, key: FileKey, page_size: int
) -> None:
    """Pages that straddle chunks (512: many in one; 64 KiB: each across
    two) read back whole where they lie."""
    path = tmp_path / 'state' / 'jamey.db'
    storage.private_directory(path.parent)
    conn = apsw.Connection(str(path))
    conn.execute(f'PRAGMA page_size = {page_size}')
    conn.close()
    make_database(path, rows=500)
    vault = make_vault(tmp_path, key)
    report = vault.verify(vault.create(path).id)
    assert report['ok']
    assert report['schema_version'] == len(storage.bundled_migrations())


def test_health_reports_the_age_of_the_newest_backup(
    tmp_path: Path, database: Path, key: FileKey
) -> None:
    import time

    from jamey.health import DEGRADED
    from jamey.health import OK
    from jamey.health import HealthChecks
    from jamey.health import Thresholds

    db = storage.Database(database)
    thresholds = Thresholds(min_free_mb=0, max_rss_mb=100_000)

    def vault_check(vault: Vault, interval_s: float, uptime_s: float = 0.0) -> Any:
        # Started at 0; every later reading of the clock is uptime_s.
        ticks = itertools.chain([0.0], itertools.repeat(uptime_s))
        health = HealthChecks(
            db,
            tmp_path,
            thresholds,
            clock=lambda: next(ticks),
            vault=vault,
            backup_interval_s=interval_s,
        )
        return next(c for c in health.run().checks if c.name == 'vault')

    empty = make_vault(tmp_path / 'none', key)
    assert vault_check(empty, 3600).status == OK  # the first one is due now
    assert vault_check(empty, 3600, uptime_s=7201).status == DEGRADED
    three_hours_ago = make_vault(tmp_path, key, clock=lambda: time.time() - 3 * 3600)
    made = three_hours_ago.create(database)
    check = vault_check(make_vault(tmp_path, None), 3600)
    assert (check.status, check.detail['newest']) == (DEGRADED, made.id)
    assert 3 * 3600 - 60 < check.detail['age_s'] < 3 * 3600 + 60
    assert vault_check(make_vault(tmp_path, None), 2 * 3600).status == OK
    db.close()


def _payload(*members: tuple[str, bytes]) -> io.BytesIO:
    """A payload tar with these members (no manifest unless given)."""
    from jamey.vault import archive

    out = io.BytesIO()
    for name, data in members:
        archive._add(out, name, io.BytesIO(data), len(data), lambda: None)
    out.write(bytes(1024))
    out.seek(0)
    return out


LAYOUT_4K = json.dumps({'page_size': 4096, 'page_count': 3}).encode()


@pytest.mark.parametrize(
    ('members', 'message'),
    [
        ([('jamey.db.pages', bytes(8192))], 'pages come before its layout'),
        ([('jamey.db.layout', b'{"page_size": 4096}')], 'layout is malformed'),
        ([('jamey.db.layout', b'[1, 2]')], 'layout is malformed'),
        (
            [('jamey.db.layout', b'{"page_size": 1000, "page_count": 3}')],
            'layout is malformed',
        ),
        (
            [('jamey.db.layout', LAYOUT_4K), ('jamey.db.pages', bytes(4096))],
            'jamey.db.pages does not have the size its layout says',
        ),
        (
            [('jamey.db.layout', LAYOUT_4K), ('jamey.db.page1', bytes(512))],
            'jamey.db.page1 does not have the size its layout says',
        ),
        ([('jamey.db.layout', bytes(70_000))], "'jamey.db.layout' is too large"),
        ([('jamey.db', bytes(512))], "unexpected member 'jamey.db'"),
        ([('jamey.db.layout', LAYOUT_4K)], 'the payload has no manifest'),
    ],
)
def test_the_snapshot_members_are_checked(
    tmp_path: Path, members: list[tuple[str, bytes]], message: str
) -> None:
    from jamey.vault import archive

    with (
        (tmp_path / 'out.db').open('w+b') as out,
        pytest.raises(PayloadError, match=message),
    ):
        archive.read_payload(_payload(*members), out)


def test_page_one_is_put_back_in_front(tmp_path: Path, database: Path) -> None:
    """The snapshot streams pages 2..N, then page 1; restored, it is whole."""
    from jamey.vault import archive

    stream = io.BytesIO()
    manifest = archive.write_payload(stream, database, None, {}, lambda: None)
    layout = manifest['components'][0]
    assert layout['name'] == 'jamey.db.layout'
    stream.seek(0)
    restored = tmp_path / 'restored.db'
    with restored.open('w+b') as out:
        archive.read_payload(stream, out)
    assert archive.check_database(restored) == manifest['schema_version']
    original = apsw.Connection(str(database))
    copy = apsw.Connection(str(restored))
    query = 'SELECT n, data FROM filler ORDER BY n'
    rows = list(original.execute(query))
    assert len(rows) == 300
    assert list(copy.execute(query)) == rows
