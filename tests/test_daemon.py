"""jameyd as systemd runs it: readiness, signals, watchdog, reload, shutdown."""

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import stat
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import SECURITY_HEADERS
from conftest import Jameyd
from conftest import raw_exchange

ROOT = Path(__file__).resolve().parent.parent
HUGE_DISK_MB = 10_000_000  # 10 TB free: no test machine has it
SLOW_HEAD = b'GET /health HTTP/1.1\r\nHost: jamey\r\nContent-Length: 10\r\n\r\n'


def test_ready_then_serves_over_the_socket(jameyd: Jameyd) -> None:
    assert jameyd.notify is not None
    ready = jameyd.notify.wait_for('READY', '1')
    assert 'serving on' in ready['STATUS']
    status, headers, body = jameyd.get('/')
    assert status == 200
    assert body['name'] == 'jamey'
    assert headers['x-request-id']
    assert 'server' not in headers  # no server banner
    status, _, body = jameyd.get('/health/detailed')
    assert status == 200
    assert body['checks']['database']['status'] == 'ok'
    assert body['checks']['version']['status'] == 'ok'


def test_state_files_are_private(jameyd: Jameyd) -> None:
    assert jameyd.state_dir.stat().st_mode & 0o777 == 0o700
    assert (jameyd.state_dir / 'jamey.db').stat().st_mode & 0o777 == 0o600
    assert jameyd.socket.stat().st_mode & 0o777 == 0o660


def test_sigterm_lets_a_slow_request_finish(make_jameyd: Any) -> None:
    daemon = make_jameyd().start()
    assert daemon.notify is not None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(str(daemon.socket))
    # A slow client: headers and half of the body now, the rest after SIGTERM.
    client.sendall(
        b'GET /health HTTP/1.1\r\nHost: jamey\r\nContent-Length: 10\r\n\r\n12345'
    )
    time.sleep(0.3)
    daemon.signal(signal.SIGTERM)
    daemon.notify.wait_for('STOPPING', '1')
    time.sleep(0.2)
    assert not daemon.socket.exists(), 'the socket must stop accepting at once'
    client.sendall(b'67890')
    reply = b''
    while b'"ok"' not in reply:
        chunk = client.recv(4096)
        if not chunk:
            break
        reply += chunk
    client.close()
    assert reply.startswith(b'HTTP/1.1 200 OK'), reply
    assert daemon.wait() == 0
    assert not daemon.socket.exists()
    events = [line['event'] for line in daemon.log_lines()]
    assert events[-2:] == ['daemon.stopping', 'daemon.stopped']


def test_grace_period_bounds_a_client_that_never_finishes(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'JAMEY_DAEMON_SHUTDOWN_GRACE_S': '1'}).start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(daemon.socket))
    client.sendall(
        b'GET /health HTTP/1.1\r\nHost: jamey\r\nContent-Length: 10\r\n\r\n1'
    )
    time.sleep(0.3)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    assert time.monotonic() - started < 10
    assert 'daemon.grace_expired' in [line['event'] for line in daemon.log_lines()]
    client.close()


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_idle_stop_is_clean(make_jameyd: Any, signum: int) -> None:
    daemon = make_jameyd().start()
    daemon.signal(signum)
    assert daemon.wait() == 0
    assert not daemon.socket.exists()
    # The lock is released: a new daemon starts on the same state directory.
    again = make_jameyd().start()
    assert again.get('/health')[0] == 200


def _events(daemon: Jameyd, event: str) -> list[dict[str, Any]]:
    return [line for line in daemon.log_lines() if line['event'] == event]


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_watchdog_pings_at_half_the_interval_while_healthy(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'WATCHDOG_USEC': '1000000'})
    daemon.start()
    assert daemon.notify is not None
    since = time.monotonic()
    daemon.notify.collect(3.2)
    pings = daemon.notify.times_of('WATCHDOG', since)
    assert 4 <= len(pings) <= 9, pings
    gaps = _gaps(pings)
    assert max(gaps) < 1.0, 'a gap as long as the interval gets the daemon killed'
    assert 0.35 <= statistics.median(gaps) <= 0.65


def test_watchdog_for_another_pid_is_ignored(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'WATCHDOG_USEC': '200000', 'WATCHDOG_PID': '1'})
    daemon.start()
    assert daemon.notify is not None
    daemon.notify.collect(1.0)
    assert daemon.notify.times_of('WATCHDOG') == []


def _write_config(path: Path, min_free_mb: int, level: str = 'info') -> None:
    path.write_text(
        f'[health]\nmin_free_mb = {min_free_mb}\n[log]\nlevel = "{level}"\n'
    )


def test_a_full_disk_fails_health_but_keeps_the_watchdog(
    make_jameyd: Any, sdir: Path
) -> None:
    """A restart cannot free space: pinging on keeps systemd from a restart
    loop while reads still work; health says failing all the while."""
    config = sdir / 'jamey.toml'
    _write_config(config, 1)
    daemon = make_jameyd(env={'WATCHDOG_USEC': '600000', 'JAMEY_CONFIG': str(config)})
    daemon.start()
    notify = daemon.notify
    assert notify is not None
    notify.collect(1.0)
    assert notify.times_of('WATCHDOG'), 'healthy daemons ping'

    mark = len(notify.messages)
    _write_config(config, HUGE_DISK_MB)
    daemon.reload()
    failing = 'serving on ' + str(daemon.socket) + '; health failing'
    notify.wait_for('STATUS', failing, after=mark)
    status, _, body = daemon.get('/health/detailed')
    assert status == 503
    assert body['status'] == 'failing'
    disk = body['checks']['disk']
    assert (disk['status'], disk['critical'], disk['external']) == (
        'failing',
        True,
        True,
    )
    since = time.monotonic()
    notify.collect(1.5)
    assert notify.times_of('WATCHDOG', since), 'pings go on while the disk is full'

    mark = len(notify.messages)
    _write_config(config, 1)
    daemon.reload()
    notify.wait_for(
        'STATUS', 'serving on ' + str(daemon.socket) + '; health ok', after=mark
    )
    assert daemon.get('/health/detailed')[0] == 200


def test_pings_stop_while_another_process_holds_the_write_lock(
    make_jameyd: Any,
) -> None:
    """Reads still pass, writes cannot: the write probe sees it, the watchdog
    stops so systemd restarts a wedged daemon, and all resumes once free."""
    daemon = make_jameyd(
        env={'WATCHDOG_USEC': '600000', 'JAMEY_STORAGE_BUSY_TIMEOUT_MS': '100'}
    ).start()
    notify = daemon.notify
    assert notify is not None
    status, _, body = daemon.get('/health/detailed')
    assert status == 200
    database = body['checks']['database']
    assert database['write_lock_ms'] >= 0 and database['external'] is False
    serving = 'serving on ' + str(daemon.socket) + '; health '
    mark = len(notify.messages)
    holder = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    holder.execute('BEGIN EXCLUSIVE')
    try:
        notify.wait_for('STATUS', serving + 'failing', after=mark)
        since = time.monotonic()
        notify.collect(1.5)
        assert notify.times_of('WATCHDOG', since) == [], 'no pings while wedged'
        status, _, body = daemon.get('/health/detailed')
        assert status == 503
        database = body['checks']['database']
        assert (database['status'], database['error']) == ('failing', 'BusyError')
        mark = len(notify.messages)
    finally:
        holder.execute('ROLLBACK')
        holder.close()
    notify.wait_for('STATUS', serving + 'ok', after=mark)
    since = time.monotonic()
    notify.collect(1.5)
    assert notify.times_of('WATCHDOG', since), 'pings resume once writes can'
    assert daemon.get('/health/detailed')[0] == 200


def test_sighup_reloads_the_log_level(make_jameyd: Any, sdir: Path) -> None:
    config = sdir / 'jamey.toml'
    _write_config(config, 1, level='info')
    daemon = make_jameyd(env={'JAMEY_CONFIG': str(config)}).start()
    notify = daemon.notify
    assert notify is not None
    daemon.get('/health')
    assert 'http.request' not in [line['event'] for line in daemon.log_lines()]

    _write_config(config, 1, level='debug')
    daemon.reload()
    reloading = notify.wait_for('RELOADING', '1')
    usec = int(reloading['MONOTONIC_USEC'])
    assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 30
    daemon.get('/health')
    events = _events(daemon, 'http.request')
    assert events, 'debug level logs each request'
    assert events[-1]['route'] == '/health'
    assert events[-1]['request_id']


def test_sighup_with_a_bad_file_keeps_running(make_jameyd: Any, sdir: Path) -> None:
    config = sdir / 'jamey.toml'
    _write_config(config, 1)
    daemon = make_jameyd(env={'JAMEY_CONFIG': str(config)}).start()
    notify = daemon.notify
    assert notify is not None
    config.write_text('[log]\nlevel = "loud"\n[storage\n')
    daemon.reload()
    assert daemon.get('/health')[0] == 200
    failed = [
        line for line in daemon.log_lines() if line['event'] == 'config.reload_failed'
    ]
    assert failed
    assert 'not valid TOML' in failed[0]['error']
    assert daemon.proc is not None
    assert daemon.proc.poll() is None


def test_restart_needed_keys_are_reported_not_applied(
    make_jameyd: Any, sdir: Path
) -> None:
    config = sdir / 'jamey.toml'
    _write_config(config, 1)
    daemon = make_jameyd(env={'JAMEY_CONFIG': str(config)}).start()
    config.write_text('[api]\nthreads = 7\n')
    daemon.reload()
    reloaded = [
        line for line in daemon.log_lines() if line['event'] == 'config.reloaded'
    ]
    assert reloaded[-1]['restart_needed'] == ['api.threads']


def test_second_daemon_on_the_same_state_is_refused(make_jameyd: Any) -> None:
    first = make_jameyd().start()
    assert first.proc is not None
    second = make_jameyd(env={'JAMEY_API_SOCKET': str(first.root / 'other.sock')})
    second.start(wait_ready=False)
    assert second.wait() == 75
    assert f'in use by jameyd pid {first.proc.pid}' in second.log_text()
    assert first.get('/health')[0] == 200


def test_a_live_socket_is_not_stolen(make_jameyd: Any, sdir: Path) -> None:
    first = make_jameyd().start()
    second = make_jameyd(env={'JAMEY_STORAGE_STATE_DIR': str(sdir / 'other')})
    second.start(wait_ready=False)
    assert second.wait() == 75
    assert 'is in use by another process' in second.log_text()
    assert first.get('/health')[0] == 200


def test_a_stale_socket_file_is_replaced(make_jameyd: Any) -> None:
    daemon = make_jameyd()
    daemon.socket.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(daemon.socket))
    stale.close()  # the file stays, nobody listens: what a SIGKILL leaves
    daemon.start()
    assert daemon.get('/health')[0] == 200


def test_a_failing_migration_refuses_to_start_and_keeps_the_data(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd()
    daemon.state_dir.mkdir(mode=0o700)
    db = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    # A table in the way of migration 0001: the migration must fail whole.
    db.execute('CREATE TABLE meta (precious TEXT); INSERT INTO meta VALUES (42)')
    db.close()
    daemon.start(wait_ready=False)
    assert daemon.wait() == 65
    assert 'migration 0001_meta failed' in daemon.log_text()
    assert 'left at schema version 0' in daemon.log_text()
    db = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    assert db.execute('PRAGMA user_version').get == 0
    assert db.execute('SELECT precious FROM meta').get == '42'
    assert not daemon.socket.exists()


def header_fields(head: bytes) -> dict[str, str]:
    lines = head.decode().split('\r\n')[1:]
    return {k.lower(): v for k, v in (line.split(': ', 1) for line in lines)}


@pytest.mark.parametrize(
    ('head', 'status', 'code'),
    [
        # Declared too large: refused from the headers, before any body is read.
        (
            b'POST / HTTP/1.1\r\nHost: j\r\nContent-Length: 2000000\r\n\r\n',
            413,
            'body_too_large',
        ),
        (
            b'GET / HTTP/1.1\r\nHost: j\r\nContent-Length: lots\r\n\r\n',
            400,
            'bad_request',
        ),
        (
            b'GET / HTTP/1.1\r\nHost: j\r\nTransfer-Encoding: gzip\r\n\r\n',
            501,
            'not_implemented',
        ),
        # A head over api.max_header_bytes (16 KiB).
        (
            b'GET / HTTP/1.1\r\nHost: j\r\nX-Filler: ' + b'y' * 20_000 + b'\r\n\r\n',
            431,
            'headers_too_large',
        ),
    ],
)
def test_waitress_errors_are_problems_too(
    jameyd: Jameyd, head: bytes, status: int, code: str
) -> None:
    reply_head, body = raw_exchange(jameyd.socket, head)
    assert reply_head.split(b' ')[1] == str(status).encode()
    fields = header_fields(reply_head)
    assert fields['content-type'] == 'application/problem+json'
    assert body['code'] == code
    # An id to report, as in every answer of the app; a new one each time.
    assert body['request_id'] == fields['x-request-id']
    _, again = raw_exchange(jameyd.socket, head)
    assert again['request_id'] not in ('', body['request_id'])
    status, app_fields, _ = jameyd.get('/health')
    assert status == 200
    assert {n: fields.get(n) for n in SECURITY_HEADERS} == {
        n: app_fields[n] for n in SECURITY_HEADERS
    }


@pytest.mark.parametrize(
    'partial',
    [
        # A Content-Length longer than the body sent.
        b'POST /evaluate HTTP/1.1\r\nHost: j\r\nContent-Type: application/json\r\n'
        b'Content-Length: 100\r\n\r\n{"action": "hi"}',
        # A head that never ends.
        b'GET /health HTTP/1.1\r\nHost: j\r\nX-Slow: ',
    ],
)
def test_a_request_that_never_arrives_in_full_is_answered_408(
    make_jameyd: Any, partial: bytes
) -> None:
    daemon = make_jameyd(env={'JAMEY_API_REQUEST_TIMEOUT_S': '1'}).start()
    started = time.monotonic()
    reply_head, body = raw_exchange(daemon.socket, partial)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0
    assert reply_head.split(b' ')[1] == b'408'
    fields = header_fields(reply_head)
    assert (fields['content-type'], fields['connection']) == (
        'application/problem+json',
        'close',
    )
    assert set(SECURITY_HEADERS) <= fields.keys()
    assert body['code'] == 'request_timeout'
    assert body['request_id'] == fields['x-request-id']
    assert daemon.get('/health')[0] == 200


def test_logs_are_json_lines_with_request_ids(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'JAMEY_LOG_LEVEL': 'debug'}).start()
    daemon.get('/health', headers={'X-Request-ID': 'trace-me-42'})
    daemon.get('/nowhere')
    daemon.signal(signal.SIGTERM)
    daemon.wait()
    lines = daemon.log_lines()
    assert len(lines) == len(daemon.log_text().splitlines()), 'every line is JSON'
    for line in lines:
        assert {'time', 'level', 'event'} <= line.keys()
    requests = [line for line in lines if line['event'] == 'http.request']
    assert requests[0]['request_id'] == 'trace-me-42'
    assert requests[1]['status'] == 404
    assert requests[1]['route'] == '(none)'
    assert 'nowhere' not in daemon.log_text(), 'raw paths stay out of the log'


def test_config_error_exits_78_before_touching_state(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'JAMEY_API_THREADS': 'many'})
    daemon.start(wait_ready=False)
    assert daemon.wait() == 78
    assert 'api.threads' in daemon.log_text()
    assert "'many'" in daemon.log_text()
    assert not daemon.state_dir.exists()


def test_systemd_directories_are_the_defaults(make_jameyd: Any, sdir: Path) -> None:
    state, runtime, conf = sdir / 'sd-state', sdir / 'sd-run', sdir / 'sd-conf'
    for path in (state, runtime, conf):
        path.mkdir(mode=0o700)
    (conf / 'jamey.toml').write_text('[log]\nlevel = "debug"\n')
    daemon = make_jameyd(
        env={
            'STATE_DIRECTORY': str(state),
            'RUNTIME_DIRECTORY': str(runtime),
            'CONFIGURATION_DIRECTORY': str(conf),
        }
    )
    del daemon.env['JAMEY_STORAGE_STATE_DIR']
    del daemon.env['JAMEY_API_SOCKET']
    daemon.socket = runtime / 'jamey.sock'
    daemon.start()
    assert (state / 'jamey.db').exists()
    assert daemon.get('/health')[0] == 200
    assert any(line['level'] == 'debug' for line in daemon.log_lines())


def test_the_shipped_file_under_systemd_uses_the_units_directories(
    make_jameyd: Any, sdir: Path
) -> None:
    """As the unit starts it: --config the shipped file, the working directory
    holding var/lib and var/run (as / does), the directories from systemd."""
    state, runtime = sdir / 'sd-state', sdir / 'sd-run'
    for path in (state, runtime, sdir / 'var' / 'lib', sdir / 'var' / 'run'):
        path.mkdir(mode=0o700, parents=True)
    daemon = make_jameyd(
        env={'STATE_DIRECTORY': str(state), 'RUNTIME_DIRECTORY': str(runtime)},
        args=['--config', str(ROOT / 'etc' / 'jamey.toml')],
    )
    del daemon.env['JAMEY_STORAGE_STATE_DIR']
    del daemon.env['JAMEY_API_SOCKET']
    daemon.socket = runtime / 'jamey.sock'
    daemon.start()
    assert (state / 'jamey.db').is_file()
    assert daemon.socket.is_socket()
    assert daemon.get('/health')[0] == 200
    assert list((sdir / 'var' / 'lib').iterdir()) == []
    assert list((sdir / 'var' / 'run').iterdir()) == []


@pytest.mark.parametrize('level', ['info', 'debug'])
def test_a_crash_at_start_says_why(make_jameyd: Any, sdir: Path, level: str) -> None:
    """An unexpected error (a state directory under a regular file): the line
    names the error; only at debug level does it carry the trace."""
    blocker = sdir / 'a-file'
    blocker.write_text('')
    daemon = make_jameyd(
        env={
            'JAMEY_STORAGE_STATE_DIR': str(blocker / 'state'),
            'JAMEY_LOG_LEVEL': level,
        }
    )
    daemon.start(wait_ready=False)
    assert daemon.wait() == 70
    [crash] = _events(daemon, 'daemon.crashed')
    assert crash['level'] == 'error'
    assert crash['exception'] == 'NotADirectoryError'
    assert crash['error'] == f"[Errno 20] Not a directory: '{blocker / 'state'}'"
    if level == 'debug':
        assert crash['trace'].startswith('Traceback (most recent call last):')
        assert 'NotADirectoryError' in crash['trace']
    else:
        assert 'trace' not in crash
        assert 'Traceback' not in daemon.log_text()


def _dev_ino(info: os.stat_result) -> str:
    """A file as $JOURNAL_STREAM names it."""
    return f'{info.st_dev}:{info.st_ino}'


def _stderr_lines(read_end: int) -> list[str]:
    with os.fdopen(read_end) as stderr:
        return stderr.read().splitlines()


@pytest.mark.parametrize('journal', [True, False])
def test_on_the_journal_lines_carry_their_priority(
    make_jameyd: Any, sdir: Path, journal: bool
) -> None:
    """$JOURNAL_STREAM names stderr: each line starts <N>; names another
    file (stderr redirected by hand): plain JSON lines."""
    conf = sdir / 'jamey.toml'
    conf.write_text('')
    read_end, write_end = os.pipe()
    stream = _dev_ino(os.fstat(write_end) if journal else conf.stat())
    daemon = make_jameyd(env={'JAMEY_CONFIG': str(conf), 'JOURNAL_STREAM': stream})
    daemon.start(stderr=write_end)
    os.close(write_end)
    conf.write_text('[api]\nthreads = 0\n')
    daemon.reload()
    daemon.stop()
    lines = _stderr_lines(read_end)
    prefix = re.compile(r'<[0-7]>' if journal else '')
    events: dict[str, str] = {}
    for line in lines:
        found = prefix.match(line)
        assert found is not None, line
        events[json.loads(line[found.end() :])['event']] = found.group()
    assert {'daemon.ready', 'config.reload_failed', 'daemon.stopped'} <= events.keys()
    if journal:
        assert events['daemon.ready'] == events['daemon.stopped'] == '<6>'
        assert events['config.reload_failed'] == '<3>'
    else:
        assert set(events.values()) == {''}


def test_a_configuration_error_on_the_journal_is_an_error(make_jameyd: Any) -> None:
    read_end, write_end = os.pipe()
    daemon = make_jameyd(
        env={
            'JAMEY_API_THREADS': 'many',
            'JOURNAL_STREAM': _dev_ino(os.fstat(write_end)),
        }
    )
    daemon.start(wait_ready=False, stderr=write_end)
    os.close(write_end)
    assert daemon.wait() == 78
    lines = _stderr_lines(read_end)
    assert lines[0] == '<3>jameyd: configuration error:'
    assert len(lines) > 1
    assert all(line.startswith('<3>') for line in lines)


def test_pid_in_lock_file_is_the_daemon(jameyd: Jameyd) -> None:
    assert jameyd.proc is not None
    assert (jameyd.state_dir / 'jamey.lock').read_text().strip() == str(jameyd.proc.pid)


# A user the test does not need to create: root may give files to any uid.
OTHER_UID = 4242
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason='giving a directory to another user needs root'
)


def _start_failed(daemon: Jameyd) -> dict[str, Any]:
    daemon.start(wait_ready=False)
    assert daemon.wait() == 78
    [failure] = _events(daemon, 'daemon.start_failed')
    return failure


@needs_root
@pytest.mark.parametrize('directory', ['state', 'vault'])
def test_a_directory_of_another_user_is_refused(
    make_jameyd: Any, sdir: Path, directory: str
) -> None:
    key = sdir / 'vault.key'
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    daemon = make_jameyd(
        env={'JAMEY_VAULT_DIR': str(sdir / 'vault'), 'JAMEY_VAULT_KEY_FILE': str(key)}
    )
    place = daemon.state_dir if directory == 'state' else sdir / 'vault'
    place.mkdir(mode=0o700)
    os.chown(place, OTHER_UID, OTHER_UID)
    failure = _start_failed(daemon)
    assert f'{place} belongs to uid {OTHER_UID}' in failure['error']
    assert place.stat().st_uid == OTHER_UID
    assert stat.S_IMODE(place.stat().st_mode) == 0o700


@pytest.mark.parametrize('owner', ['this user, mode 0777', 'another user'])
def test_a_vault_mirror_others_may_write_is_refused(
    make_jameyd: Any, sdir: Path, owner: str
) -> None:
    if owner == 'another user' and os.geteuid() != 0:
        pytest.skip('giving a directory to another user needs root')
    key = sdir / 'vault.key'
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    mirror = sdir / 'mirror'
    mirror.mkdir(mode=0o700)
    if owner == 'another user':
        os.chown(mirror, OTHER_UID, OTHER_UID)
    else:
        mirror.chmod(0o777)
    daemon = make_jameyd(
        env={
            'JAMEY_VAULT_KEY_FILE': str(key),
            'JAMEY_VAULT_MIRROR_DIRS': str(mirror),
        }
    )
    failure = _start_failed(daemon)
    assert f'the vault mirror {mirror}' in failure['error']
    assert 'may be written by other users' in failure['error']


def test_a_socket_directory_others_may_write_is_refused(
    make_jameyd: Any, sdir: Path
) -> None:
    """Whoever may write beside the socket could swap it for a symlink between
    the bind and the chmod: started again and again while a symlink to a
    private file is swapped in, jameyd refuses every start, and the file keeps
    its mode."""
    daemon = make_jameyd()
    daemon.socket.parent.mkdir()
    daemon.socket.parent.chmod(0o777)
    private = sdir / 'private'
    private.write_text('secret')
    private.chmod(0o600)
    swapping = threading.Event()

    def swap() -> None:
        while not swapping.is_set():
            with contextlib.suppress(OSError):
                daemon.socket.unlink()
            with contextlib.suppress(OSError):
                daemon.socket.symlink_to(private)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(12):
            failure = _start_failed(daemon)
            assert 'may be written by other users' in failure['error']
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
            daemon.log_path.write_text('')
    finally:
        swapping.set()
        swapper.join()
    daemon.socket.unlink(missing_ok=True)
    daemon.socket.parent.chmod(0o750)
    daemon.start()
    assert daemon.get('/health')[0] == 200
