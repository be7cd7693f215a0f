"""Settings: defaults, file, environment, and every way they can be wrong."""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jamey import config
from jamey.errors import ConfigError
from jamey.errors import CredentialUnavailableError
from jamey.errors import SecretError

ROOT = Path(__file__).resolve().parent.parent


def load_text(
    tmp_path: Path, text: str, environ: dict[str, str] | None = None
) -> config.Settings:
    path = tmp_path / 'jamey.toml'
    path.write_text(text)
    return config.load(path, environ or {})


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, environ)
    return str(caught.value)


def test_embedded_defaults() -> None:
    settings = config.load(None, {})
    assert settings.storage.state_dir == Path('var/lib')
    assert settings.storage.synchronous == 'full'
    assert settings.api.socket == Path('var/run/jamey.sock')
    assert settings.api.socket_mode == '0660'
    assert settings.log.level == 'info'


def test_file_then_environment(tmp_path: Path) -> None:
    settings = load_text(
        tmp_path,
        '[storage]\nstate_dir = "/srv/a"\nsynchronous = "normal"\n'
        '[api]\nmax_body_bytes = 4096\n',
        {
            'JAMEY_STORAGE_STATE_DIR': '/srv/b',
            'JAMEY_API_SOCKET': '/tmp/j.sock',
            'JAMEY_DAEMON_SHUTDOWN_GRACE_S': '2.5',
            'JAMEY_CONFIG': 'ignored',
            'JAMEY_SOCKET': 'for jameyctl',
        },
    )
    assert settings.storage.state_dir == Path('/srv/b')  # env beats file
    assert settings.storage.synchronous == 'normal'  # file beats default
    assert settings.api.socket == Path('/tmp/j.sock')
    assert settings.api.max_body_bytes == 4096
    assert settings.daemon.shutdown_grace_s == 2.5


def test_systemd_directories_beat_embedded_defaults() -> None:
    settings = config.load(
        None,
        {'STATE_DIRECTORY': '/var/lib/jamey:/other', 'RUNTIME_DIRECTORY': '/run/jamey'},
    )
    assert settings.storage.state_dir == Path('/var/lib/jamey')
    assert settings.api.socket == Path('/run/jamey/jamey.sock')
    env = config.load(
        None, {'STATE_DIRECTORY': '/var/lib/jamey', 'JAMEY_STORAGE_STATE_DIR': '/x'}
    )
    assert env.storage.state_dir == Path('/x')


def test_config_path_order(tmp_path: Path) -> None:
    (tmp_path / 'jamey.toml').write_text('')
    assert config.config_path(Path('/a.toml'), {'JAMEY_CONFIG': '/b'}) == Path(
        '/a.toml'
    )
    assert config.config_path(None, {'JAMEY_CONFIG': '/b'}) == Path('/b')
    systemd = {'CONFIGURATION_DIRECTORY': str(tmp_path)}
    assert config.config_path(None, systemd) == tmp_path / 'jamey.toml'
    assert config.config_path(None, {'CONFIGURATION_DIRECTORY': '/nonexistent'}) is None
    assert config.config_path(None, {}) is None


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('[api]\nthreads = "4"\n', "api.threads = '4'"),
        ('[api]\nthreads = 4.0\n', 'must be an integer, not float'),
        ('[api]\nthreads = true\n', 'must be an integer, not bool'),
        ('[log]\nlevel = 3\n', 'must be a string, not int'),
        ('[storage]\nstate_dir = 7\n', 'must be a path string, not int'),
        ('[daemon]\nshutdown_grace_s = "soon"\n', 'must be a number, not str'),
        ('[api]\nsocket = ["a"]\n', 'not list'),
    ],
)
def test_wrong_types_name_key_and_value(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('[api]\nthreads = 0\n', 'api.threads = 0 (in '),
        ('[api]\nthreads = 65\n', 'must be at most 64'),
        ('[api]\nmax_body_bytes = -1\n', 'must be at least 1024'),
        ('[daemon]\nshutdown_grace_s = nan\n', 'must be a finite number'),
        ('[daemon]\nshutdown_grace_s = inf\n', 'must be a finite number'),
        (
            '[storage]\nsynchronous = "fast"\n',
            'must be one of off, normal, full, extra',
        ),
        ('[log]\nlevel = "loud"\n', "log.level = 'loud'"),
        ('[api]\nsocket_mode = "0666"\n', 'must not grant access to others'),
        ('[api]\nsocket_mode = "rw"\n', 'octal file mode'),
        ('[api]\nsocket_mode = "0460"\n', 'owner read and write'),
        ('[api]\nsocket_mode = "17777"\n', 'between 0000 and 0777'),
        ('[storage]\nstate_dir = ""\n', 'non-empty path'),
        ('[api]\nsocket = "a\\u0000b"\n', 'without NUL'),
    ],
)
def test_out_of_range_values(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_unknown_keys_get_a_hint(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[storage]\nstat_dir = "/x"\n')
    assert 'unknown key storage.stat_dir' in message
    assert 'did you mean storage.state_dir?' in message
    message = error_of(tmp_path, '[storag]\nstate_dir = "/x"\n')
    assert 'unknown section [storag]' in message
    assert 'did you mean [storage]' in message.replace('storage?', '[storage]')
    message = error_of(tmp_path, '[api]\nzzz = 1\n')
    assert 'unknown key api.zzz' in message
    assert 'did you mean' not in message


def test_unknown_environment_variables_get_a_hint() -> None:
    with pytest.raises(ConfigError, match='did you mean JAMEY_API_SOCKET_MODE'):
        config.load(None, {'JAMEY_API_SOCKETMODE': '0600'})
    with pytest.raises(ConfigError, match='unknown environment variable JAMEY_X'):
        config.load(None, {'JAMEY_X': '1'})


@pytest.mark.parametrize(
    ('name', 'value', 'expected'),
    [
        ('JAMEY_API_THREADS', 'four', "api.threads = 'four' (from JAMEY_API_THREADS)"),
        ('JAMEY_API_THREADS', '', 'must be an integer'),
        ('JAMEY_DAEMON_SHUTDOWN_GRACE_S', 'NaN', 'finite'),
        ('JAMEY_STORAGE_SYNCHRONOUS', 'FULL', 'must be one of'),
        ('JAMEY_STORAGE_STATE_DIR', '', 'non-empty'),
    ],
)
def test_bad_environment_values(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(None, {name: value})
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        '[api]\nthreads = 0\nsocket_mode = "0777"\n',
        {'JAMEY_LOG_LEVEL': 'loud'},
    )
    assert len(message.splitlines()) == 3


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('[storage\n', 'is not valid TOML'),
        ('storage = 1\n', 'storage in'),
        (b'\xff\xfe'.decode('latin-1'), 'is not valid TOML'),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'cannot read config file .*No such file'):
        config.load(tmp_path / 'absent.toml', {})


def _sections(document: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    """A TOML document's tables by dotted name, each without its inner tables."""
    found: dict[str, Any] = {}
    for name, table in document.items():
        inner = {k: v for k, v in table.items() if isinstance(v, dict)}
        found[prefix + name] = {k: v for k, v in table.items() if k not in inner}
        found.update(_sections(inner, f'{prefix}{name}.'))
    return found


def _commented_settings(text: str) -> dict[str, dict[str, object]]:
    """The ``# key = value`` lines of a TOML text, by section, parsed."""
    found: dict[str, dict[str, object]] = {}
    section = ''
    for line in text.splitlines():
        if line.startswith('['):
            section = line.strip('[]')
        elif re.match(r'# [a-z_]+ = ', line):
            found.setdefault(section, {}).update(tomllib.loads(line[2:]))
    return found


def test_shipped_file_lists_every_setting_with_its_default() -> None:
    """Every setting is there with its default; those systemd hands the unit
    (its directories) only as a commented line, so they never override it."""
    shipped_text = (ROOT / 'etc' / 'jamey.toml').read_text()
    shipped = _sections(tomllib.loads(shipped_text))
    commented = _commented_settings(shipped_text)
    declared = config.keys()
    assert list(shipped) == list(declared)
    systemd_keys = []
    for section, keys in declared.items():
        listed = {**shipped[section], **commented.get(section, {})}
        assert sorted(listed) == sorted(keys), section
        for name, key in keys.items():
            default = str(key.default) if isinstance(key.default, Path) else key.default
            value = listed[name]
            value = tuple(value) if isinstance(value, list) else value
            assert value == default, key.dotted
            if key.option.systemd_dir:
                systemd_keys.append(key.dotted)
                assert name not in shipped[section], f'{key.dotted} must be a comment'
            else:
                assert name in shipped[section], f'{key.dotted} must be set'
    assert systemd_keys == ['storage.state_dir', 'api.socket']
    assert [f'{s}.{n}' for s, names in commented.items() for n in names] == (
        systemd_keys
    )
    lines = shipped_text.splitlines()
    for index, line in enumerate(lines):
        if re.match(r'# [a-z_]+ = ', line):
            above = ' '.join(lines[index - 3 : index])
            assert 'Under systemd' in above, f'no word on systemd above {line}'
            assert 'overrides that' in above, f'no word on overriding above {line}'
        elif '=' in line and not line.startswith('#'):
            assert lines[index - 1].startswith('# '), f'no comment above {line}'
    assert config.load(ROOT / 'etc' / 'jamey.toml', {}) == config.load(None, {})


def test_under_systemd_the_shipped_file_keeps_the_units_directories(
    tmp_path: Path,
) -> None:
    """Embedded defaults, systemd's directories, the file, then JAMEY_*."""
    conf = tmp_path / 'etc-jamey'
    conf.mkdir()
    (conf / 'jamey.toml').write_text((ROOT / 'etc' / 'jamey.toml').read_text())
    unit = {
        'STATE_DIRECTORY': '/var/lib/jamey',
        'RUNTIME_DIRECTORY': '/run/jamey',
        'CONFIGURATION_DIRECTORY': str(conf),
    }
    path = config.config_path(None, unit)
    assert path == conf / 'jamey.toml'
    settings = config.load(path, unit)
    assert settings.storage.state_dir == Path('/var/lib/jamey')
    assert settings.api.socket == Path('/run/jamey/jamey.sock')
    explicit = load_text(tmp_path, '[storage]\nstate_dir = "/srv/jamey"\n', unit)
    assert explicit.storage.state_dir == Path('/srv/jamey')
    assert explicit.api.socket == Path('/run/jamey/jamey.sock')
    env = load_text(
        tmp_path,
        '[storage]\nstate_dir = "/srv/jamey"\n',
        {**unit, 'JAMEY_STORAGE_STATE_DIR': '/data/jamey'},
    )
    assert env.storage.state_dir == Path('/data/jamey')


def test_merge_live_applies_only_live_keys() -> None:
    running = config.load(None, {})
    loaded = config.load(
        None,
        {
            'JAMEY_LOG_LEVEL': 'debug',
            'JAMEY_API_THREADS': '8',
            'JAMEY_HEALTH_MIN_FREE_MB': '1',
        },
    )
    merged, restart = config.merge_live(running, loaded)
    assert merged.log.level == 'debug'
    assert merged.health.min_free_mb == 1
    assert merged.api.threads == running.api.threads
    assert restart == ['api.threads']


def test_secret_files_must_be_private(tmp_path: Path) -> None:
    secret = tmp_path / 'key'
    secret.write_bytes(b'hunter2')
    secret.chmod(0o644)
    with pytest.raises(SecretError, match=r'mode 0644.*chmod 600'):
        config.read_secret(secret, {})
    secret.chmod(0o640)
    with pytest.raises(SecretError, match='mode 0640'):
        config.read_secret(secret, {})
    secret.chmod(0o600)
    assert config.read_secret(secret, {}) == b'hunter2'
    secret.chmod(0o400)
    assert config.read_secret(str(secret), {}) == b'hunter2'


def test_secrets_from_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / 'mqtt-password').write_bytes(b's3cret')
    (tmp_path / 'mqtt-password').chmod(0o400)
    environ = {'CREDENTIALS_DIRECTORY': str(tmp_path)}
    assert config.read_secret('mqtt-password', environ) == b's3cret'
    with pytest.raises(SecretError, match='cannot open secret file'):
        config.read_secret('absent', environ)


def test_a_credential_name_where_there_are_no_credentials(tmp_path: Path) -> None:
    """Outside the service (no $CREDENTIALS_DIRECTORY) the message says so,
    and which variable names the file instead."""
    with pytest.raises(CredentialUnavailableError) as caught:
        config.read_secret('mqtt-password', {}, 'mqtt.password_file')
    message = str(caught.value)
    assert message.startswith(
        "mqtt.password_file = 'mqtt-password' names a systemd credential, but"
        ' $CREDENTIALS_DIRECTORY is not set'
    )
    assert 'LoadCredential=mqtt-password:FILE' in message
    assert message.endswith('JAMEY_MQTT_PASSWORD_FILE=/etc/jamey/mqtt-password')
    with pytest.raises(CredentialUnavailableError, match=r'name the file itself$'):
        config.read_secret('mqtt-password', {})
    with pytest.raises(SecretError, match='cannot open secret file') as path_error:
        config.read_secret(tmp_path / 'absent', {}, 'mqtt.password_file')
    assert not isinstance(path_error.value, CredentialUnavailableError)


def test_secrets_refuse_symlinks_directories_and_missing_files(tmp_path: Path) -> None:
    target = tmp_path / 'real'
    target.write_bytes(b'x')
    target.chmod(0o600)
    (tmp_path / 'link').symlink_to(target)
    with pytest.raises(SecretError, match='cannot open'):
        config.read_secret(tmp_path / 'link', {})
    with pytest.raises(SecretError, match='not a regular file'):
        config.read_secret(tmp_path, {})
    with pytest.raises(SecretError, match='No such file'):
        config.read_secret(tmp_path / 'nothing', {})


def test_optional_settings_and_lists(tmp_path: Path) -> None:
    settings = config.load(None, {})
    assert settings.tls.listen == ''
    assert settings.api.cors_origins == ()
    loaded = load_text(
        tmp_path,
        '[api]\ncors_origins = ["https://a.example", "http://b.example:8080"]\n'
        '[tls]\nlisten = "[::1]:8443"\n',
    )
    assert loaded.api.cors_origins == ('https://a.example', 'http://b.example:8080')
    assert loaded.tls.listen == '[::1]:8443'
    from_env = config.load(
        None, {'JAMEY_API_CORS_ORIGINS': 'https://a.example, https://c.example'}
    )
    assert from_env.api.cors_origins == ('https://a.example', 'https://c.example')
    assert config.load(None, {'JAMEY_API_CORS_ORIGINS': ''}).api.cors_origins == ()


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('[api]\ncors_origins = "https://a.example"', 'must be a list of strings'),
        ('[api]\ncors_origins = [1]', 'must be a list of strings'),
        ('[api]\ncors_origins = ["*"]', "'\\*' is not an origin"),
        ('[api]\ncors_origins = ["https://a.example/path"]', 'is not an origin'),
        ('[api]\ncors_origins = [""]', 'non-empty string'),
        ('[api]\ncors_origins = ["https://a", "https://a"]', 'twice'),
        ('[tls]\nlisten = "8443"', 'must be host:port'),
        ('[tls]\nlisten = "host:99999"', 'must be host:port'),
        ('[tls]\nlisten = 8443', 'must be a string'),
    ],
)
def test_bad_lists_and_listen_addresses(
    tmp_path: Path, text: str, message: str
) -> None:
    assert re.search(message, error_of(tmp_path, text))


def test_a_table_inside_a_section_is_a_section_of_its_own(tmp_path: Path) -> None:
    """``[conscience.guard]`` in the file, ``JAMEY_CONSCIENCE_GUARD_*`` in
    the environment, and each way to get it wrong named by its dotted key."""
    settings = load_text(
        tmp_path,
        '[conscience]\ndeny_weight = 5\n[conscience.guard]\n'
        'base_url = "http://127.0.0.1:8080/v1"\nwhen = "always"\n',
        {'JAMEY_CONSCIENCE_GUARD_TIMEOUT_S': '0.5'},
    )
    assert settings.conscience.deny_weight == 5.0
    guard = settings.conscience.guard
    assert (guard.base_url, guard.when, guard.timeout_s) == (
        'http://127.0.0.1:8080/v1',
        'always',
        0.5,
    )
    assert guard.format == 'llama-guard'
    inline = load_text(tmp_path, '[conscience]\nguard = { band = 0.1 }\n')
    assert inline.conscience.guard.band == 0.1
    assert 'conscience.guard.when = ' in error_of(
        tmp_path, '[conscience.guard]\nwhen = "sometimes"\n'
    )
    assert 'unknown key conscience.guard.base_ur ' in error_of(
        tmp_path, '[conscience.guard]\nbase_ur = "http://x/v1"\n'
    )
    assert 'did you mean conscience.guard.base_url?' in error_of(
        tmp_path, '[conscience.guard]\nbase_ur = "http://x/v1"\n'
    )
    assert 'conscience.guard in ' in error_of(tmp_path, '[conscience]\nguard = 1\n')
    assert 'must be an http:// or https:// URL' in error_of(
        tmp_path,
        '',
        {'JAMEY_CONSCIENCE_GUARD_BASE_URL': 'ftp://x'},
    )
    shown = config.as_dict(settings)
    assert shown['conscience.guard']['when'] == 'always'
    assert 'guard' not in shown['conscience']


def test_merge_live_keeps_a_table_inside_a_section() -> None:
    running = config.load(None, {})
    loaded = config.load(
        None,
        {
            'JAMEY_CONSCIENCE_DENY_WEIGHT': '3',
            'JAMEY_CONSCIENCE_GUARD_BASE_URL': 'http://127.0.0.1:1/v1',
        },
    )
    merged, restart = config.merge_live(running, loaded)
    assert merged.conscience.deny_weight == 3.0
    # The guard's table is live too, and comes through the merge whole.
    assert merged.conscience.guard == loaded.conscience.guard
    assert merged.conscience.guard.base_url == 'http://127.0.0.1:1/v1'
    assert restart == []
