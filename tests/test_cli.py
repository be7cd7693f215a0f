"""jameyctl as an operator runs it, against a real daemon and against none."""

import json
from pathlib import Path
from typing import Any

from conftest import Jameyd
from conftest import run_cli


def test_status_and_health(jameyd: Jameyd) -> None:
    result = run_cli('--socket', str(jameyd.socket), 'status')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('jameyd 0.1.0 at ')
    assert ': ok (up ' in result.stdout
    result = run_cli('health', env={'JAMEY_SOCKET': str(jameyd.socket)})
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == 'ok'
    assert 'database   ok        (critical) latency_ms=' in result.stdout
    assert 'disk       ok        (critical, external) free_bytes=' in result.stdout
    assert 'external=' not in result.stdout


def test_json_output(jameyd: Jameyd) -> None:
    result = run_cli('--json', '--socket', str(jameyd.socket), 'health')
    document = json.loads(result.stdout)
    assert document['status'] == 'ok'
    assert document['checks']['disk']['critical'] is True


def test_unhealthy_daemon_exits_1(make_jameyd: Any, sdir: Path) -> None:
    config = sdir / 'jamey.toml'
    config.write_text('[health]\nmin_free_mb = 1\n')
    daemon = make_jameyd(env={'JAMEY_CONFIG': str(config)}).start()
    config.write_text('[health]\nmin_free_mb = 10000000\n')
    daemon.reload()
    for command in ('status', 'health'):
        result = run_cli('--socket', str(daemon.socket), command)
        assert result.returncode == 1, command
        assert 'failing' in result.stdout


def test_no_daemon_exits_69_naming_the_socket(sdir: Path) -> None:
    missing = sdir / 'absent.sock'
    result = run_cli('--socket', str(missing), 'status')
    assert result.returncode == 69
    assert str(missing) in result.stderr
    assert 'no such socket' in result.stderr
    assert 'Traceback' not in result.stderr


def test_a_dead_socket_file_exits_69(sdir: Path) -> None:
    import socket

    path = sdir / 'dead.sock'
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    result = run_cli('--socket', str(path), 'health')
    assert result.returncode == 69
    assert 'connection refused' in result.stderr


def test_development_tree_socket_is_the_default(jameyd: Jameyd, sdir: Path) -> None:
    tree = sdir / 'tree'
    (tree / 'var' / 'run').mkdir(parents=True)
    (tree / 'var' / 'run' / 'jamey.sock').symlink_to(jameyd.socket)
    result = run_cli('status', cwd=tree)
    assert result.returncode == 0, result.stderr


def test_outside_a_development_tree_the_system_socket(sdir: Path) -> None:
    """Run from / (as a unit or cron job is), ./var/run is the system's own:
    without a jamey.sock in it, the default is systemd's socket."""
    (sdir / 'var' / 'run').mkdir(parents=True)
    result = run_cli('status', cwd=sdir)
    assert result.returncode == 69
    assert 'cannot reach jameyd at /run/jamey/jamey.sock:' in result.stderr


def test_a_development_socket_without_a_daemon_is_the_one_tried(sdir: Path) -> None:
    import socket

    (sdir / 'var' / 'run').mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sdir / 'var' / 'run' / 'jamey.sock'))
    dead.close()
    result = run_cli('status', cwd=sdir)
    assert result.returncode == 69
    assert 'at var/run/jamey.sock: connection refused' in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli().returncode == 2
    assert run_cli('frobnicate').returncode == 2
    assert run_cli('config').returncode == 2
    assert run_cli('--timeout', 'x', 'status').returncode == 2


def test_config_check(sdir: Path) -> None:
    good = sdir / 'good.toml'
    good.write_text('[log]\nlevel = "debug"\n')
    result = run_cli('config', 'check', '--config', str(good))
    assert result.returncode == 0
    assert f'{good}: valid' in result.stdout
    assert 'level = "debug"' in result.stdout
    result = run_cli('--json', 'config', 'check', '--config', str(good))
    assert json.loads(result.stdout)['settings']['log']['level'] == 'debug'

    bad = sdir / 'bad.toml'
    bad.write_text('[log]\nlevle = "debug"\n[api]\nthreads = -1\n')
    result = run_cli('config', 'check', '--config', str(bad))
    assert result.returncode == 78
    assert 'did you mean log.level?' in result.stderr
    assert 'api.threads = -1' in result.stderr
    result = run_cli('--json', 'config', 'check', '--config', str(bad))
    assert len(json.loads(result.stdout)['errors']) == 2


def test_config_check_honours_the_environment(sdir: Path) -> None:
    result = run_cli('config', 'check', env={'JAMEY_API_THREADS': '0'})
    assert result.returncode == 78
    assert 'JAMEY_API_THREADS' in result.stderr
    result = run_cli('config', 'check', env={'JAMEY_CONFIG': str(sdir / 'none.toml')})
    assert result.returncode == 78
    assert 'cannot read config file' in result.stderr


def test_json_may_follow_the_command(jameyd: Jameyd) -> None:
    env = {'JAMEY_SOCKET': str(jameyd.socket)}
    after = run_cli('token', 'create', 'late', '--scope', 'read', '--json', env=env)
    assert after.returncode == 0, after.stderr
    assert {'id', 'token', 'scope'} <= json.loads(after.stdout).keys()
    listed = run_cli('token', 'list', '--json', env=env)
    assert [t['name'] for t in json.loads(listed.stdout)['tokens']] == ['late']
    human = run_cli('token', 'list', env=env)
    assert human.stdout.startswith(json.loads(after.stdout)['id'])
