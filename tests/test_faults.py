"""Faults of storage against a real jameyd: full disks, a held database."""

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli
from conftest import small_disk
from test_memory_api import search
from test_memory_api import store
from test_soul_api import call

from jamey.memory import INDEX_DIR


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s file system."""
    filler = directory / 'filler'
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b'\0' * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler


def index_check(daemon: Jameyd) -> dict[str, Any]:
    status, health = call(daemon, 'GET', '/health/detailed')
    assert status in (200, 503)
    return dict(health['checks']['memory_index'])


def wait_until(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.1)


def test_the_index_recovers_after_a_full_disk_and_loses_nothing(
    make_jameyd: Any, sdir: Path
) -> None:
    state = sdir / 'state'
    state.mkdir(mode=0o700)
    with small_disk(state / INDEX_DIR, '3m') as index_dir:
        daemon = make_jameyd(
            env={
                'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50',
                'JAMEY_MEMORY_CONSISTENT_TIMEOUT_S': '1',
            }
        ).start()
        try:
            before = [
                store(daemon, {'content': f'garden note {i}', 'layer': 'episodic'})[1][
                    'id'
                ]
                for i in range(5)
            ]
            assert (
                len(search(daemon, q='garden', consistent='true')[1]['memories']) == 5
            )

            filler = fill(index_dir)
            during = []
            for i in range(20):
                status, kept = store(
                    daemon,
                    {'content': f'garden entry {i} ' + 'x' * 2000, 'layer': 'episodic'},
                )
                assert status == 201, kept  # SQLite is on another disk: acknowledged
                during.append(kept['id'])
            wait_until(lambda: index_check(daemon)['status'] == 'degraded')
            check = index_check(daemon)
            assert check['error'] == 'No space left on device'
            assert check['failing_since']
            assert check['lag'] > 0
            # Nothing claims to be searchable that is not.
            status, problem = search(daemon, q='garden', consistent='true')
            assert (status, problem['code']) == (503, 'index_behind')
            found = search(daemon, q='garden', limit='100')[1]['memories']
            assert {m['id'] for m in found} == set(before)
            # A rebuild fails clearly and leaves the index as it was.
            status, problem = call(daemon, 'POST', '/memories/reindex')
            assert (status, problem['code']) == (503, 'index_unavailable')
            assert str(index_dir) not in problem['detail']
            found = search(daemon, q='garden', limit='100')[1]['memories']
            assert {m['id'] for m in found} == set(before)
            events = [line.get('event') for line in daemon.log_lines()]
            assert 'memory.index_write_failed' in events

            filler.unlink()
            status, found = search(daemon, q='garden', consistent='true', limit='100')
            assert status == 200, found
            assert {m['id'] for m in found['memories']} == {*before, *during}
            wait_until(lambda: index_check(daemon)['status'] == 'ok')
            assert index_check(daemon)['documents'] == 25
            status, stats = call(daemon, 'POST', '/memories/reindex')
            assert status == 200, stats
            assert stats['index_documents'] == 25
            found = search(daemon, q='garden', limit='100')[1]['memories']
            assert len(found) == 25
            assert 'memory.index_recovered' in [
                line.get('event') for line in daemon.log_lines()
            ]
        finally:
            daemon.stop()


def test_an_index_that_cannot_be_created_at_start_opens_once_there_is_room(
    make_jameyd: Any, sdir: Path
) -> None:
    """A full disk under a new index is no damage: the daemon starts, takes
    memories, says search is unavailable, and indexes them all later."""
    state = sdir / 'state'
    state.mkdir(mode=0o700)
    with small_disk(state / INDEX_DIR, '3m') as index_dir:
        filler = fill(index_dir)
        daemon = make_jameyd(env={'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}).start()
        try:
            check = index_check(daemon)
            assert (check['status'], check['error']) == (
                'degraded',
                'No space left on device',
            )
            kept = [
                store(daemon, {'content': f'garden note {i}', 'layer': 'episodic'})
                for i in range(5)
            ]
            assert {status for status, _ in kept} == {201}
            status, problem = search(daemon, q='garden')
            assert (status, problem['code']) == (503, 'index_unavailable')
            status, problem = call(daemon, 'POST', '/memories/reindex')
            assert (status, problem['code']) == (503, 'index_unavailable')

            filler.unlink()
            wait_until(lambda: index_check(daemon)['status'] == 'ok')
            status, found = search(daemon, q='garden', consistent='true', limit='100')
            assert status == 200, found
            assert {m['id'] for m in found['memories']} == {m['id'] for _, m in kept}
            events = [line.get('event') for line in daemon.log_lines()]
            assert 'memory.index_unreadable' not in events
            assert 'memory.index_recovered' in events
        finally:
            daemon.stop()


def test_a_database_held_by_another_writer_answers_storage_busy(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd(env={'JAMEY_STORAGE_BUSY_TIMEOUT_MS': '200'}).start()
    holder = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    holder.execute('BEGIN EXCLUSIVE')
    try:
        status, headers, problem = request(
            daemon.socket,
            'POST',
            '/memories',
            json.dumps({'content': 'held up', 'layer': 'working'}).encode(),
            {'Content-Type': 'application/json'},
        )
        assert (status, problem['code']) == (503, 'storage_busy')
        assert headers['retry-after'] == '1'
    finally:
        holder.execute('ROLLBACK')
        holder.close()
    assert store(daemon, {'content': 'let through', 'layer': 'working'})[0] == 201
    assert 'storage.busy' in [line.get('event') for line in daemon.log_lines()]


def test_a_full_disk_under_the_database_answers_no_space_and_loses_nothing(
    make_jameyd: Any, sdir: Path
) -> None:
    with small_disk(sdir / 'state', '24m') as state:
        daemon = make_jameyd(env={'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}).start()
        try:
            kept = [
                store(daemon, {'content': f'before {i}', 'layer': 'episodic'})[1]['id']
                for i in range(10)
            ]
            filler = fill(state)
            refused = 0
            for i in range(50):
                body = {'content': f'during {i} ' + 'x' * 4000, 'layer': 'episodic'}
                status, answer = store(daemon, body)
                if status == 201:
                    kept.append(answer['id'])  # a page still had room
                else:
                    assert (status, answer['code']) == (507, 'no_space'), answer
                    refused += 1
            assert refused > 0
            status, problem = call(daemon, 'POST', '/evaluate', {'action': 'I help'})
            assert (status, problem['code']) == (507, 'no_space')
            assert daemon.proc is not None and daemon.proc.poll() is None
            filler.unlink()
            status, found = search(
                daemon, q='before during', limit='100', consistent='true'
            )
            assert status == 200, found
            assert {m['id'] for m in found['memories']} == set(kept)
            assert store(daemon, {'content': 'after', 'layer': 'episodic'})[0] == 201
            status, _ = call(daemon, 'POST', '/evaluate', {'action': 'I help'})
            assert status == 200
            for memory_id in kept:
                assert daemon.get(f'/memories/{memory_id}')[0] == 200
            events = {line.get('event') for line in daemon.log_lines()}
            assert 'storage.write_failed' in events
            assert 'http.unhandled' not in events
        finally:
            daemon.stop()


def damage(path: Path, page: int, page_size: int = 4096) -> None:
    """Overwrite one page of a database file with noise."""
    with path.open('r+b') as f:
        f.seek(page * page_size)
        f.write(os.urandom(page_size))


def filled_and_stopped(make_jameyd: Any) -> Path:
    daemon = make_jameyd().start()
    for i in range(300):
        body = {'content': f'note {i} ' + 'y' * 1500, 'layer': 'semantic'}
        assert store(daemon, body)[0] == 201
    daemon.stop()
    assert daemon.wait() == 0
    database = daemon.state_dir / 'jamey.db'
    assert not (daemon.state_dir / 'jamey.db-wal').exists() or (
        (daemon.state_dir / 'jamey.db-wal').stat().st_size == 0
    )
    return database


def test_a_database_damaged_in_the_middle_is_refused_at_start(
    make_jameyd: Any,
) -> None:
    database = filled_and_stopped(make_jameyd)
    damage(database, database.stat().st_size // 4096 // 2)
    daemon = make_jameyd().start(wait_ready=False)
    assert daemon.wait() == 65
    text = daemon.log_text()
    assert 'is damaged' in text
    assert 'jameyctl vault restore' in text
    assert 'daemon.crashed' not in text


@pytest.mark.parametrize('table', ['meta', 'rules', 'sqlite_schema'])
def test_a_damaged_table_is_refused_with_65_not_70(
    make_jameyd: Any, table: str
) -> None:
    database = filled_and_stopped(make_jameyd)
    reader = apsw.Connection(str(database))
    root = (
        1
        if table == 'sqlite_schema'
        else int(
            reader.execute(
                'SELECT rootpage FROM sqlite_schema WHERE name = ?', (table,)
            ).get
        )
    )
    reader.close()
    damage(database, root - 1)
    daemon = make_jameyd().start(wait_ready=False)
    assert daemon.wait() == 65
    assert 'daemon.crashed' not in daemon.log_text()


def test_the_start_check_can_be_turned_off(make_jameyd: Any) -> None:
    daemon = make_jameyd(env={'JAMEY_STORAGE_START_CHECK': 'off'}).start()
    events = [line.get('event') for line in daemon.log_lines()]
    assert 'storage.checked' not in events
    daemon.stop()
    checked = make_jameyd(env={'JAMEY_STORAGE_START_CHECK': 'full'}).start()
    found = [
        line for line in checked.log_lines() if line.get('event') == 'storage.checked'
    ]
    assert found[0]['check'] == 'full'


def flip_bit(path: Path, text: bytes) -> None:
    """Flip the lowest bit of the first byte of ``text`` in a file, where
    SQLite keeps a row's value: the page stays sound to SQLite. Every copy
    is flipped (a page freed by an earlier write may hold one)."""
    data = bytearray(path.read_bytes())
    at = data.find(text)
    assert at >= 0
    while at >= 0:
        data[at] ^= 1
        at = data.find(text, at + 1)
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_memory_is_refused_found_and_mended(
    make_jameyd: Any, sdir: Path
) -> None:
    env = {'WATCHDOG_USEC': '600000', 'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}
    daemon = make_jameyd(env=env).start()
    kept = [
        store(daemon, {'content': f'orchard row {i} apples', 'layer': 'episodic'})[1]
        for i in range(20)
    ]
    status, victim = store(
        daemon,
        {
            'content': 'Alice keeps the spare key under the blue pot',
            'layer': 'semantic',
        },
    )
    assert status == 201
    daemon.stop()
    assert daemon.wait() == 0
    flip_bit(daemon.state_dir / 'jamey.db', b'under the blue pot')

    daemon = make_jameyd(env=env).start()  # quick_check sees sound pages
    notify = daemon.notify
    assert notify is not None
    status, _, problem = daemon.get(f'/memories/{victim["id"]}')
    assert (status, problem['code']) == (500, 'storage_damaged')
    assert f'memories/{victim["id"]} is damaged' in problem['detail']
    status, found = search(daemon, q='spare key blue pot', consistent='true')
    assert (status, found['code']) == (500, 'storage_damaged')
    for memory in kept:
        assert daemon.get(f'/memories/{memory["id"]}')[0] == 200
    status, found = search(daemon, q='orchard apples', limit='50')
    assert status == 200 and len(found['memories']) == 20

    status, health = call(daemon, 'GET', '/health/detailed')
    assert status == 503
    integrity = health['checks']['integrity']
    assert integrity['status'] == 'failing'
    assert integrity['critical'] and integrity['external']
    assert integrity['damaged_rows'] == [f'memories/{victim["id"]}']
    since = time.monotonic()
    notify.collect(1.5)
    assert notify.times_of('WATCHDOG', since), 'a restart cannot mend it: pings go on'

    # The full check finds it too, through jameyctl as an operator runs it.
    socket_env = {'JAMEY_SOCKET': str(daemon.socket)}
    checked = run_cli('storage', 'check', env=socket_env)
    assert checked.returncode == 1, checked
    assert f'damaged row: memories/{victim["id"]}' in checked.stdout
    assert 'jameyctl vault restore' in checked.stdout
    status, state = call(daemon, 'GET', '/storage/check')
    assert status == 200 and state['running'] is False
    assert state['last']['damaged_rows'] == [f'memories/{victim["id"]}']
    assert state['last']['problems'] == []

    # Deleting the damaged memory mends it: the next check clears health.
    assert call(daemon, 'DELETE', f'/memories/{victim["id"]}')[0] == 204
    checked = run_cli('storage', 'check', '--json', env=socket_env)
    assert checked.returncode == 0, checked
    assert json.loads(checked.stdout)['last']['status'] == 'ok'
    status, health = call(daemon, 'GET', '/health/detailed')
    assert status == 200, health
    assert health['checks']['integrity']['damaged_rows'] == []
    status, found = search(daemon, q='orchard apples', limit='50')
    assert {m['id'] for m in found['memories']} == {m['id'] for m in kept}
    events = {line.get('event') for line in daemon.log_lines()}
    assert {'storage.row_damaged', 'storage.full_check_damaged'} <= events
    assert 'http.unhandled' not in events


def test_a_flipped_bit_in_a_rule_stops_the_start_with_65(make_jameyd: Any) -> None:
    daemon = make_jameyd().start()
    daemon.stop()
    assert daemon.wait() == 0
    flip_bit(daemon.state_dir / 'jamey.db', b'Be honest and truthful')
    daemon = make_jameyd().start(wait_ready=False)
    assert daemon.wait() == 65
    text = daemon.log_text()
    assert 'rules/truth is damaged' in text
    assert 'daemon.crashed' not in text
