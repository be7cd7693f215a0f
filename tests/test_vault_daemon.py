"""The vault with a real jameyd: schedule, API, restore, crashes, a full disk."""

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli
from conftest import small_disk
from openapi_spec_validator import validate
from test_soul_api import call

from jamey import cli
from jamey.vault import Vault
from jamey.vault import keys
from jamey.vault.keys import FileKey

FAST = {'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}


def key_file(root: Path) -> Path:
    path = root / 'vault.key'
    if not path.exists():
        keys.generate(path, recipient=False)
    return path


def vault_env(root: Path, interval_hours: str = '0', **extra: str) -> dict[str, str]:
    return {
        **FAST,
        'JAMEY_VAULT_KEY_FILE': str(key_file(root)),
        'JAMEY_VAULT_INTERVAL_HOURS': interval_hours,
        **extra,
    }


def local_vault(daemon: Jameyd) -> Vault:
    raw = key_file(daemon.root).read_bytes()
    return Vault(daemon.state_dir / 'vault', FileKey(keys.parse_key(raw, 'key')))


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


def fill(daemon: Jameyd, megabytes: int) -> None:
    """Incompressible rows written beside the daemon, so a backup takes a while."""
    conn = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    conn.setbusytimeout(5000)
    with conn:
        conn.execute('CREATE TABLE IF NOT EXISTS filler (data BLOB)')
        conn.execute(
            'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n'
            ' WHERE i < ?) INSERT INTO filler SELECT randomblob(4000) FROM n',
            (megabytes * 256,),
        )
    conn.close()


def test_scheduled_backup_health_and_clean_stop(make_jameyd: Any, sdir: Path) -> None:
    daemon = make_jameyd(env=vault_env(sdir, interval_hours='1')).start()
    wait_until(lambda: call(daemon, 'GET', '/vault/backups')[1]['backups'])
    status, health = call(daemon, 'GET', '/health/detailed')
    assert status == 200
    check = health['checks']['vault']
    assert (check['status'], check['interval_s']) == ('ok', 3600)
    assert check['age_s'] < 60
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    directory = daemon.state_dir / 'vault'
    assert [p for p in directory.iterdir() if p.name.endswith('.tmp')] == []


def test_unreadable_files_are_named_without_paths(make_jameyd: Any, sdir: Path) -> None:
    """Each file named like a backup that does not list as one: its name, a
    stable code; what the system said (with the path) only in the log."""
    daemon = make_jameyd(env=vault_env(sdir)).start()
    made = call(daemon, 'POST', '/vault/backups')[1]
    directory = daemon.state_dir / 'vault'
    (directory / 'notes.jvault').write_bytes(b'hello, world')
    (directory / 'folder.jvault').mkdir()
    misnamed = directory / f'{"0" * 8}-0000-7000-8000-{"0" * 12}.jvault'
    misnamed.write_bytes((directory / f'{made["id"]}.jvault').read_bytes())
    expected = [
        {
            'file': misnamed.name,
            'code': 'misnamed',
            'detail': f'The header names backup {made["id"]}.',
        },
        {
            'file': 'folder.jvault',
            'code': 'os_error',
            'detail': 'The file cannot be read (EISDIR).',
        },
        {
            'file': 'notes.jvault',
            'code': 'not_a_backup',
            'detail': 'not a Jamey backup (no JAMEYVLT magic)',
        },
    ]
    status, listed = call(daemon, 'GET', '/vault/backups')
    assert (status, listed['unreadable']) == (200, expected)
    assert str(sdir) not in json.dumps(listed)
    logged = [e for e in daemon.log_lines() if e['event'] == 'vault.unreadable']
    assert [(e['file'], str(directory) in e['error']) for e in logged] == [
        ('folder.jvault', True)
    ]
    env = {'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir)}
    offline = run_cli('--json', 'vault', 'list', env=env)
    assert json.loads(offline.stdout)['unreadable'] == expected
    human = run_cli('vault', 'list', env=env)
    assert (
        'unreadable: folder.jvault: The file cannot be read (EISDIR). (os_error)'
        in (human.stdout)
    )
    assert str(sdir) not in offline.stdout + human.stdout + human.stderr


def test_the_api(make_jameyd: Any, sdir: Path) -> None:
    daemon = make_jameyd(env=vault_env(sdir)).start()
    assert call(daemon, 'GET', '/vault/backups') == (
        200,
        {'backups': [], 'unreadable': []},
    )
    status, made = call(daemon, 'POST', '/vault/backups')
    assert status == 201
    assert (made['key_mode'], made['cipher']) == ('key', 'aes-256-gcm')
    status, listed = call(daemon, 'GET', '/vault/backups')
    assert [b['id'] for b in listed['backups']] == [made['id']]
    status, report = call(daemon, 'POST', f'/vault/backups/{made["id"]}/verify')
    assert (status, report['ok']) == (200, True)
    assert report['components'][1]['name'] == 'jamey.db.pages'
    # A damaged backup is a finding, not an error of the API.
    path = daemon.state_dir / 'vault' / f'{made["id"]}.jvault'
    with path.open('r+b') as f:
        f.truncate(path.stat().st_size - 10)
    status, report = call(daemon, 'POST', f'/vault/backups/{made["id"]}/verify')
    assert (status, report['ok'], report['code']) == (200, False, 'truncated')
    # No schedule, no vault check.
    assert 'vault' not in call(daemon, 'GET', '/health/detailed')[1]['checks']
    document = daemon.get('/openapi.json')[2]
    validate(document)
    assert set(document['paths']['/vault/backups']) == {'get', 'post'}
    verify = document['paths']['/vault/backups/{id}/verify']
    assert verify['post']['operationId'] == 'verifyBackup'
    assert 'Verification' in document['components']['schemas']


@pytest.mark.parametrize(
    ('method', 'target', 'body', 'status', 'code'),
    [
        ('POST', '/vault/backups/nope/verify', None, 404, 'backup_not_found'),
        (
            'POST',
            '/vault/backups/00000000-0000-4000-8000-000000000000/verify',
            None,
            404,
            'backup_not_found',
        ),
        ('POST', '/vault/backups/..%2F..%2Fjamey.db/verify', None, 404, 'not_found'),
        ('POST', '/vault/backups', {'label': 'x'}, 422, 'unknown_field'),
        ('POST', '/vault/backups', [], 422, 'wrong_type'),
        ('GET', '/vault/backups?all=1', None, 422, 'unknown_field'),
        ('DELETE', '/vault/backups', None, 405, 'method_not_allowed'),
    ],
)
def test_bad_requests(
    make_jameyd: Any,
    sdir: Path,
    method: str,
    target: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    daemon = make_jameyd(env=vault_env(sdir)).start()
    raw = None if body is None else json.dumps(body).encode()
    headers = {'Content-Type': 'application/json'} if raw else {}
    got, sent, problem = request(daemon.socket, method, target, raw, headers)
    assert (got, problem['code']) == (status, code)
    assert sent['content-type'] == 'application/problem+json'


def test_without_a_key(jameyd: Jameyd) -> None:
    status, problem = call(jameyd, 'POST', '/vault/backups')
    assert (status, problem['code']) == (409, 'vault_not_configured')
    assert 'vault.key_file' in problem['detail']
    assert call(jameyd, 'GET', '/vault/backups')[0] == 200


def test_a_key_file_others_can_read_stops_the_start(
    make_jameyd: Any, sdir: Path
) -> None:
    env = vault_env(sdir)
    Path(env['JAMEY_VAULT_KEY_FILE']).chmod(0o644)
    daemon = make_jameyd(env=env).start(wait_ready=False)
    assert daemon.wait() == 78
    assert 'chmod 600' in daemon.log_text()


def tables(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    dump = {
        name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall())  # noqa: S608
        for name in names
    }
    dump['user_version'] = [(conn.execute('PRAGMA user_version').get,)]
    conn.close()
    return dump


def populate(daemon: Jameyd) -> None:
    rule = {
        'name': 'tidy',
        'description': 'Leave things tidy',
        'weight': 5,
        'violations': ['make a mess'],
    }
    assert call(daemon, 'POST', '/rules', rule)[0] == 201
    for text in ('the heron waits by the weir', 'copper kettles sing at dawn'):
        body = {'content': text, 'layer': 'long_term', 'entity': 'ada'}
        assert call(daemon, 'POST', '/memories', body)[0] == 201
    assert call(daemon, 'PUT', '/soul/entities/ada', {'trust': 0.8})[0] == 200
    emotion = {'emotion': 'joy'}
    assert call(daemon, 'POST', '/soul/entities/ada/emotions', emotion)[0] == 201
    assert call(daemon, 'POST', '/evaluate', {'action': 'I will make a mess'})[0] == 200


def test_round_trip_through_an_offline_restore(make_jameyd: Any, sdir: Path) -> None:
    conf = sdir / 'jamey.toml'
    conf.write_text(
        f'# the device\n[vault]\nkey_file = "{key_file(sdir)}"\ninterval_hours = 0.0\n'
    )
    env = {**FAST, 'JAMEY_CONFIG': str(conf)}
    daemon = make_jameyd(env=env).start()
    populate(daemon)
    daemon.stop()
    before = tables(daemon.state_dir / 'jamey.db')
    assert before['memories'] and before['rules'] and before['entities']
    daemon = make_jameyd(env=env).start()
    status, made = call(daemon, 'POST', '/vault/backups')
    assert status == 201
    assert call(daemon, 'DELETE', '/rules/tidy')[0] == 204
    body = {'content': 'written after the backup', 'layer': 'working'}
    assert call(daemon, 'POST', '/memories', body)[0] == 201
    cli_env = {
        'JAMEY_CONFIG': str(conf),
        'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir),
    }
    running = run_cli('vault', 'restore', made['id'], '--yes', env=cli_env)
    assert running.returncode == 1
    assert 'in use by jameyd' in running.stderr
    daemon.stop()
    conf.write_text(conf.read_text() + '# changed after the backup\n')
    unconfirmed = run_cli('vault', 'restore', made['id'], env=cli_env)
    assert (unconfirmed.returncode, '--yes' in unconfirmed.stderr) == (2, True)
    verified = run_cli('--json', 'vault', 'verify', made['id'], env=cli_env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)['ok'] is True
    restored = run_cli('--json', 'vault', 'restore', made['id'], '--yes', env=cli_env)
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    after = tables(daemon.state_dir / 'jamey.db')
    assert after == before
    assert conf.read_text().startswith('# the device\n')
    assert 'changed after' not in conf.read_text()
    assert Path(report['previous_database']).exists()
    assert not (daemon.state_dir / 'index').exists()
    daemon = make_jameyd(env=env).start()
    status, found = call(daemon, 'GET', '/memories?q=heron&consistent=true')
    assert status == 200
    assert [m['content'] for m in found['memories']] == ['the heron waits by the weir']
    status, health = call(daemon, 'GET', '/health/detailed')
    assert 'index rebuilt' in health['checks']['memory_index']['warning']


def test_jameyctl_restores_another_devices_backup_only_with_from_device(
    make_jameyd: Any, sdir: Path
) -> None:
    """dev-b's backup in a vault dev-a shares (one key, one mirror disk)."""
    shared = sdir / 'shared-vault'
    env = vault_env(sdir, JAMEY_VAULT_DIR=str(shared))
    daemon = make_jameyd(env={**env, 'JAMEY_MQTT_DEVICE_ID': 'dev-b'}).start()
    status, made = call(daemon, 'POST', '/vault/backups')
    assert status == 201
    daemon.stop()
    cli_env = {
        **env,
        'JAMEY_MQTT_DEVICE_ID': 'dev-a',
        'JAMEY_STORAGE_STATE_DIR': str(sdir / 'dev-a'),
    }
    verified = run_cli('--json', 'vault', 'verify', made['id'], env=cli_env)
    assert json.loads(verified.stdout)['device'] == 'dev-b'
    refused = run_cli('--json', 'vault', 'restore', made['id'], '--yes', env=cli_env)
    assert refused.returncode == 1
    problem = json.loads(refused.stdout)
    assert (problem['ok'], problem['code']) == (False, 'foreign_backup')
    assert '--from-device dev-b' in problem['detail']
    assert not (sdir / 'dev-a' / 'jamey.db').exists()
    restored = run_cli(
        'vault', 'restore', made['id'], '--yes', '--from-device', 'dev-b', env=cli_env
    )
    assert restored.returncode == 0, restored.stderr
    assert 'made by device dev-b' in restored.stdout
    assert tables(sdir / 'dev-a' / 'jamey.db') == tables(daemon.state_dir / 'jamey.db')


def test_writes_continue_during_a_backup(make_jameyd: Any, sdir: Path) -> None:
    """The daemon keeps serving writes while it backs up; the snapshot holds
    a counter table and its total as of one moment."""
    daemon = make_jameyd(env=vault_env(sdir)).start()
    # Enough that the backup outlasts several store round trips (it reads
    # about 400 MB a second here: 48 MB gave a quarter of a second, and once
    # no store fitted inside it).
    fill(daemon, 192)
    conn = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    conn.setbusytimeout(5000)
    conn.execute(
        'CREATE TABLE counter (n INTEGER PRIMARY KEY);'
        ' CREATE TABLE total (id INTEGER PRIMARY KEY, n INTEGER);'
        ' INSERT INTO total VALUES (1, 0)'
    )
    done = threading.Event()
    counted: list[int] = []
    stored: list[tuple[float, float]] = []

    def count() -> None:
        n = 0
        while not done.is_set():
            n += 1
            with conn:
                conn.execute('INSERT INTO counter VALUES (?)', (n,))
                conn.execute('UPDATE total SET n = ?', (n,))
            counted.append(n)
            time.sleep(0.001)  # a hot loop would starve the daemon's writer

    def store() -> None:
        while not done.is_set():
            body = {'content': f'during {len(stored)}', 'layer': 'working'}
            started = time.monotonic()
            assert call(daemon, 'POST', '/memories', body)[0] == 201
            stored.append((started, time.monotonic()))

    workers = [threading.Thread(target=count), threading.Thread(target=store)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(counted) > 10 and len(stored) > 2)
        began = time.monotonic()
        status, made = call(daemon, 'POST', '/vault/backups')
        ended = time.monotonic()
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert status == 201
    during = [s for s in stored if began < s[0] and s[1] < ended]
    assert during, f'no memory was stored in the {ended - began:.2f} s of the backup'
    restored = sdir / 'restored'
    local_vault(daemon).restore(made['id'], restored)
    check = apsw.Connection(str(restored / 'jamey.db'))
    rows, top = check.execute('SELECT count(*), max(n) FROM counter').get
    assert rows == top == check.execute('SELECT n FROM total').get
    assert 10 < rows <= len(counted)


def test_sigkill_during_a_backup(make_jameyd: Any, sdir: Path) -> None:
    daemon = make_jameyd(env=vault_env(sdir)).start()
    fill(daemon, 40)
    directory = daemon.state_dir / 'vault'
    poster = threading.Thread(target=_post_quietly, args=(daemon,))
    poster.start()
    wait_until(lambda: directory.exists() and any(directory.glob('.*.tmp')), 30)
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    poster.join()
    assert local_vault(daemon).backups() == ([], [])
    daemon = make_jameyd(env=vault_env(sdir)).start()
    assert call(daemon, 'GET', '/vault/backups')[1]['backups'] == []
    assert call(daemon, 'GET', '/health/detailed')[0] == 200
    status, made = call(daemon, 'POST', '/vault/backups')
    assert status == 201
    assert sorted(p.name for p in directory.iterdir()) == [
        '.vault.lock',
        f'{made["id"]}.jvault',
    ]


def test_sigterm_during_a_scheduled_backup(make_jameyd: Any, sdir: Path) -> None:
    """The schedule's first backup starts at once; SIGTERM abandons it
    cleanly: exit 0, nothing listed, nothing left behind."""
    daemon = make_jameyd(env=vault_env(sdir)).start()
    fill(daemon, 40)
    daemon.stop()
    daemon = make_jameyd(env=vault_env(sdir, interval_hours='1')).start()
    directory = daemon.state_dir / 'vault'
    wait_until(lambda: directory.exists() and any(directory.glob('.*.tmp')), 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    backups = local_vault(daemon).backups()[0]
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith('.tmp')]
    assert leftovers == []
    if backups:  # it may have finished just before the signal
        assert 'vault.created' in daemon.log_text()
    else:
        assert 'vault.backup_abandoned' in daemon.log_text()


def _post_quietly(daemon: Jameyd) -> None:
    """POST a backup; the daemon dies under it, so no answer is expected."""
    with contextlib.suppress(OSError, ValueError):
        call(daemon, 'POST', '/vault/backups')


def test_a_full_disk(make_jameyd: Any, sdir: Path) -> None:
    with small_disk(sdir / 'vault', '8m') as directory:
        filler = directory / 'filler'
        filler.write_bytes(os.urandom(7 * 1024 * 1024))
        daemon = make_jameyd(
            env=vault_env(sdir, JAMEY_VAULT_DIR=str(directory))
        ).start()
        fill(daemon, 2)
        status, problem = call(daemon, 'POST', '/vault/backups')
        assert (status, problem['code']) == (507, 'no_space')
        assert call(daemon, 'GET', '/vault/backups')[1] == {
            'backups': [],
            'unreadable': [],
        }
        assert sorted(p.name for p in directory.iterdir()) == ['.vault.lock', 'filler']
        assert call(daemon, 'GET', '/health/detailed')[0] == 200
        filler.unlink()
        status, made = call(daemon, 'POST', '/vault/backups')
        assert status == 201
        assert call(daemon, 'POST', f'/vault/backups/{made["id"]}/verify')[1]['ok']
        daemon.stop()


def test_cli(make_jameyd: Any, sdir: Path) -> None:
    daemon = make_jameyd(env=vault_env(sdir)).start()
    env = {
        'JAMEY_SOCKET': str(daemon.socket),
        'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir),
        'JAMEY_VAULT_KEY_FILE': str(key_file(sdir)),
    }
    made = run_cli('--json', 'vault', 'backup', env=env)
    assert made.returncode == 0, made.stderr
    backup_id = json.loads(made.stdout)['id']
    listed = run_cli('vault', 'list', env=env)
    assert backup_id in listed.stdout
    assert run_cli('vault', 'verify', backup_id, env=env).returncode == 0
    missing = run_cli('vault', 'verify', 'nope', env=env)
    assert (missing.returncode, 'not a backup id' in missing.stderr) == (1, True)
    new_key = sdir / 'new.key'
    assert run_cli('vault', 'keygen', str(new_key)).returncode == 0
    again = run_cli('vault', 'keygen', str(new_key))
    assert (again.returncode, 'exists' in again.stderr) == (1, True)
    rekeyed = run_cli('vault', 'rekey', '--new-key-file', str(new_key), env=env)
    assert rekeyed.returncode == 0, rekeyed.stderr
    old = run_cli('--json', 'vault', 'verify', backup_id, env=env)
    assert (old.returncode, json.loads(old.stdout)['code']) == (1, 'wrong_key')
    new_env = {**env, 'JAMEY_VAULT_KEY_FILE': str(new_key)}
    assert run_cli('vault', 'verify', backup_id, env=new_env).returncode == 0
    pruned = run_cli('--json', 'vault', 'prune', env=new_env)
    assert json.loads(pruned.stdout) == {'removed': []}
    both = run_cli(
        'vault', 'list', env={**new_env, 'JAMEY_VAULT_PASSPHRASE_FILE': str(new_key)}
    )
    assert (both.returncode, 'one key source' in both.stderr) == (78, True)
    not_a_key = sdir / 'not-a.key'
    not_a_key.write_text('hello\n')
    not_a_key.chmod(0o600)
    bad = run_cli(
        '--json',
        'vault',
        'verify',
        backup_id,
        env={**env, 'JAMEY_VAULT_KEY_FILE': str(not_a_key)},
    )
    assert (bad.returncode, json.loads(bad.stdout)['code']) == (
        78,
        'vault_not_configured',
    )


def test_cli_recipient_mode(make_jameyd: Any, sdir: Path) -> None:
    identity = sdir / 'identity'
    written = run_cli('vault', 'keygen', '--recipient', str(identity))
    assert written.returncode == 0, written.stderr
    env = {
        **FAST,
        'JAMEY_VAULT_RECIPIENT_FILE': str(sdir / 'identity.pub'),
        'JAMEY_VAULT_INTERVAL_HOURS': '0',
    }
    daemon = make_jameyd(env=env).start()
    status, made = call(daemon, 'POST', '/vault/backups')
    assert (status, made['key_mode']) == (201, 'recipient')
    status, report = call(daemon, 'POST', f'/vault/backups/{made["id"]}/verify')
    assert (report['ok'], report['code']) == (False, 'private_key_required')
    daemon.stop()
    cli_env = {**env, 'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir)}
    blind = run_cli('vault', 'verify', made['id'], env=cli_env)
    assert (blind.returncode, 'private key' in blind.stderr) == (1, True)
    seeing = run_cli(
        'vault',
        'restore',
        made['id'],
        '--yes',
        '--private-key',
        str(identity),
        env=cli_env,
    )
    assert seeing.returncode == 0, seeing.stderr


def test_a_credential_key_outside_the_service(make_jameyd: Any, sdir: Path) -> None:
    """The key as a systemd credential: list and prune read only the headers
    and need no key; verify, where there are no credentials, says what to
    give instead."""
    creds = sdir / 'credentials'
    creds.mkdir(mode=0o700)
    keys.generate(creds / 'vault.key', recipient=False)
    conf = sdir / 'jamey.toml'
    conf.write_text('[vault]\nkey_file = "vault.key"\ninterval_hours = 0.0\n')
    daemon = make_jameyd(
        env={**FAST, 'JAMEY_CONFIG': str(conf), 'CREDENTIALS_DIRECTORY': str(creds)}
    ).start()
    made = [call(daemon, 'POST', '/vault/backups')[1]['id'] for _ in range(2)]
    daemon.stop()
    offline = ('--config', str(conf))
    env = {'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir)}
    listed = run_cli('--json', 'vault', 'list', *offline, env=env, cwd=sdir)
    assert listed.returncode == 0, listed.stderr
    assert [b['id'] for b in json.loads(listed.stdout)['backups']] == made
    verify = run_cli('vault', 'verify', made[1], *offline, env=env, cwd=sdir)
    assert verify.returncode == 78
    assert "vault.key_file = 'vault.key' names a systemd credential" in verify.stderr
    assert 'credentials exist only inside a service' in verify.stderr
    assert 'JAMEY_VAULT_KEY_FILE=/etc/jamey/vault.key' in verify.stderr
    assert 'recipient mode, give --private-key FILE' in verify.stderr
    coded = run_cli('--json', 'vault', 'verify', made[1], *offline, env=env, cwd=sdir)
    assert json.loads(coded.stdout)['code'] == 'credential_unavailable'
    with_file = {**env, 'JAMEY_VAULT_KEY_FILE': str(creds / 'vault.key')}
    verified = run_cli('vault', 'verify', made[1], *offline, env=with_file, cwd=sdir)
    assert verified.returncode == 0, verified.stderr
    keep_one = {
        **env,
        'JAMEY_VAULT_KEEP_LAST': '1',
        'JAMEY_VAULT_KEEP_DAILY': '0',
        'JAMEY_VAULT_KEEP_WEEKLY': '0',
    }
    pruned = run_cli('--json', 'vault', 'prune', *offline, env=keep_one, cwd=sdir)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {'removed': [made[0]]}


def test_a_credential_recipient_key_and_the_private_key(
    make_jameyd: Any, sdir: Path
) -> None:
    """Recipient mode with the public key as a credential: outside the
    service --private-key is all verify needs."""
    creds = sdir / 'credentials'
    creds.mkdir(mode=0o700)
    identity = sdir / 'identity'
    keys.generate(identity, recipient=True)
    (sdir / 'identity.pub').rename(creds / 'vault.pub')
    env = {
        **FAST,
        'JAMEY_VAULT_RECIPIENT_FILE': 'vault.pub',
        'JAMEY_VAULT_INTERVAL_HOURS': '0',
    }
    daemon = make_jameyd(env={**env, 'CREDENTIALS_DIRECTORY': str(creds)}).start()
    status, made = call(daemon, 'POST', '/vault/backups')
    assert status == 201
    daemon.stop()
    cli_env = {**env, 'JAMEY_STORAGE_STATE_DIR': str(daemon.state_dir)}
    verify = ('vault', 'verify', made['id'])
    blind = run_cli(*verify, env=cli_env, cwd=sdir)
    assert blind.returncode == 78
    assert '--private-key FILE' in blind.stderr
    seeing = run_cli(*verify, '--private-key', str(identity), env=cli_env, cwd=sdir)
    assert seeing.returncode == 0, seeing.stderr


def test_offline_commands_find_the_installed_layout(
    make_jameyd: Any,
    sdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run from / with nothing naming the files (no --config, no systemd
    variables): the unit's configuration and state directories, as a layout
    under a temporary root; a development tree keeps its own."""
    etc, lib = sdir / 'etc' / 'jamey', sdir / 'var' / 'lib' / 'jamey'
    creds = sdir / 'credentials'
    for path in (etc, lib, creds):
        path.mkdir(mode=0o700, parents=True)
    keys.generate(creds / 'vault.key', recipient=False)
    (etc / 'jamey.toml').write_text(
        '[vault]\nkey_file = "vault.key"\ninterval_hours = 0.0\n'
    )
    daemon = make_jameyd(
        env={
            **FAST,
            'CONFIGURATION_DIRECTORY': str(etc),
            'STATE_DIRECTORY': str(lib),
            'CREDENTIALS_DIRECTORY': str(creds),
        }
    )
    del daemon.env['JAMEY_STORAGE_STATE_DIR']
    daemon.start()
    made = [call(daemon, 'POST', '/vault/backups')[1]['id'] for _ in range(2)]
    daemon.stop()
    for name in list(os.environ):
        if name.startswith('JAMEY_') or name.endswith('_DIRECTORY'):
            monkeypatch.delenv(name)
    root = sdir / 'root'
    (root / 'var' / 'lib').mkdir(parents=True)
    (root / 'var' / 'run').mkdir()
    monkeypatch.chdir(root)
    layout = cli.Layout(config_dir=etc, state_dir=lib)

    assert cli.main(['--json', 'vault', 'list'], layout) == 0
    assert [b['id'] for b in json.loads(capsys.readouterr().out)['backups']] == made
    assert cli.main(['vault', 'verify', made[1]], layout) == 78
    assert 'JAMEY_VAULT_KEY_FILE=' in capsys.readouterr().err
    monkeypatch.setenv('JAMEY_VAULT_KEY_FILE', str(creds / 'vault.key'))
    assert cli.main(['vault', 'verify', made[1]], layout) == 0
    assert '✅' in capsys.readouterr().out
    assert cli.main(['--json', 'config', 'check'], layout) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked['file'] == str(etc / 'jamey.toml')
    assert checked['settings']['storage']['state_dir'] == str(lib)

    (root / 'var' / 'lib' / 'jamey.lock').write_text('')
    assert cli.main(['vault', 'list'], layout) == 0
    assert capsys.readouterr().out == '(no backups in var/lib/vault)\n'
