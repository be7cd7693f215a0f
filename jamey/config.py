"""Settings: embedded defaults, then a TOML file, then ``JAMEY_<SECTION>_<KEY>``.

Every setting is declared once, below, as a field of a frozen dataclass; the
loader, the validation, the environment overrides and the documentation check
of ``etc/jamey.toml`` all read the same declarations. Validation is strict
because a daemon that guesses what an operator meant is worse than one that
refuses to start and says why (``jameyd`` exits 78, EX_CONFIG).
"""

import dataclasses
import math
import os
import re
import stat
import tomllib
import typing
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import NamedTuple

from jamey.errors import ConfigError
from jamey.errors import CredentialUnavailableError
from jamey.errors import SecretError

ENV_PREFIX = 'JAMEY_'
# JAMEY_* variables that are not settings; any other JAMEY_ name must be one.
NON_SETTING_ENV = frozenset({'JAMEY_CONFIG', 'JAMEY_SOCKET', 'JAMEY_TOKEN'})
_TRUE = frozenset({'1', 'true', 'yes', 'on'})
_FALSE = frozenset({'0', 'false', 'no', 'off'})


class Option(NamedTuple):
    """How one setting is checked, documented and defaulted."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # Reloaded on SIGHUP; the others need a restart.
    live: bool = False
    # systemd hands these directories to the unit; they beat the embedded default.
    systemd_dir: str | None = None
    systemd_name: str = ''
    check: Callable[[Any], str | None] | None = None
    # An empty string (or list) means "not set" rather than a mistake.
    optional: bool = False


def setting(default: Any, help: str, **option: Any) -> Any:
    """Declare a setting: its embedded default and how it is validated."""
    return dataclasses.field(
        default=default, metadata={'option': Option(help=help, **option)}
    )


def _octal_mode(value: str) -> str | None:
    """Socket modes are octal strings; others must get nothing (they'd be admin)."""
    try:
        mode = int(value, 8)
    except ValueError:
        return 'must be an octal file mode such as "0660"'
    if not 0 <= mode <= 0o777:
        return 'must be between 0000 and 0777'
    if mode & 0o007:
        return 'must not grant access to others (the socket is trusted)'
    if mode & 384 != 384:
        return 'must give the owner read and write access'
    return None


def _origins(values: tuple[str, ...]) -> str | None:
    """An origin is scheme://host[:port], exactly as a browser sends it."""
    for origin in values:
        if not re.fullmatch(r'https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?', origin):
            return f'{origin!r} is not an origin such as "https://example.org"'
    return None


def _host_port(value: str) -> str | None:
    """``host:port`` (IPv6 in brackets), with a port a server can bind."""
    host, sep, port = value.rpartition(':')
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return 'must be host:port, for example "0.0.0.0:8443" or "[::]:8443"'
    return None


@dataclass(frozen=True, repr=False)
class StorageSettings:
    state_dir: Path = setting(
        Path('var/lib'),
        'Directory of the database and the lock (mode 0700)',
        systemd_dir='STATE_DIRECTORY',
    )
    synchronous: str = setting(
        'full',
        'SQLite synchronous level; full survives power loss',
        choices=('off', 'normal', 'full', 'extra'),
    )
    busy_timeout_ms: int = setting(
        5000, 'How long a writer waits for a lock (ms)', minimum=0, maximum=600_000
    )
    start_check: str = setting(
        'quick',
        "SQLite's check of the database at start: quick (PRAGMA quick_check),"
        ' full (integrity_check) or off; a damaged database is refused',
        choices=('quick', 'full', 'off'),
    )
    start_check_budget_s: float = setting(
        10.0,
        'Longest the start-up check may take; past it the start goes on'
        ' unchecked, and says so',
        minimum=0.1,
        maximum=3600.0,
    )
    full_check_interval_hours: float = setting(
        24.0,
        "Hours between full checks of the database (SQLite's integrity_check"
        " and every row's checksum, on a thread of their own); 0 runs them"
        ' only when asked (POST /storage/check, jameyctl storage check)',
        minimum=0.0,
        maximum=8760.0,
    )


@dataclass(frozen=True, repr=False)
class ApiSettings:
    socket: Path = setting(
        Path('var/run/jamey.sock'),
        'Unix socket of the API and of jameyctl',
        systemd_dir='RUNTIME_DIRECTORY',
        systemd_name='jamey.sock',
    )
    socket_mode: str = setting(
        '0660',
        'File mode of the socket (who can open it is trusted)',
        check=_octal_mode,
    )
    max_body_bytes: int = setting(
        1_048_576,
        'Largest request body; larger gets 413',
        minimum=1024,
        maximum=64 * 1_048_576,
    )
    threads: int = setting(
        2,
        'Request worker threads (see docs: more is slower on 2 cores)',
        minimum=1,
        maximum=64,
    )
    connection_limit: int = setting(
        64, 'Open connections before new ones wait', minimum=1, maximum=10_000
    )
    max_header_bytes: int = setting(
        16_384,
        'Largest request head (request line and headers); larger gets 431',
        minimum=1024,
        maximum=1_048_576,
    )
    request_timeout_s: float = setting(
        30.0,
        'A request still running after this gets 503; one still arriving on the'
        ' socket, 408 (s)',
        minimum=0.1,
        maximum=3600.0,
        live=True,
    )
    rate_limit_per_s: float = setting(
        50.0,
        'Requests per second each principal may make on average (0: no limit)',
        minimum=0.0,
        maximum=1_000_000.0,
        live=True,
    )
    rate_limit_burst: int = setting(
        100,
        'Requests a principal may make at once before the rate applies',
        minimum=1,
        maximum=1_000_000,
        live=True,
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        'Browser origins allowed to call the API (none by default)',
        check=_origins,
        optional=True,
        live=True,
    )
    unix_role: str = setting(
        'admin',
        'Scope of whoever opens the Unix socket without a token',
        choices=('read', 'write', 'admin'),
        live=True,
    )
    unix_requires_token: bool = setting(
        False, 'Require a token on the Unix socket too', live=True
    )


@dataclass(frozen=True, repr=False)
class TlsSettings:
    listen: str = setting(
        '',
        'host:port of the TLS listener (empty: no TLS listener)',
        check=_host_port,
        optional=True,
    )
    cert_file: str = setting(
        '', 'Certificate chain (PEM) of the TLS listener', optional=True, live=True
    )
    key_file: str = setting(
        '',
        'Private key (PEM) of the TLS listener; a secret file',
        optional=True,
        live=True,
    )
    client_ca: str = setting(
        '',
        'CA bundle (PEM): when set, clients must present a certificate it signed',
        optional=True,
        live=True,
    )
    threads: int = setting(4, 'TLS worker threads', minimum=1, maximum=64)
    connection_limit: int = setting(
        64,
        'Open TLS connections; beyond, a new one replaces the oldest not in use',
        minimum=1,
        maximum=10_000,
    )
    connections_per_peer: int = setting(
        16,
        'Open TLS connections from one address; beyond, its oldest not in use closes',
        minimum=1,
        maximum=10_000,
    )
    handshake_timeout_s: float = setting(
        5.0,
        'Seconds a client has to complete the TLS handshake',
        minimum=0.1,
        maximum=60,
    )
    read_timeout_s: float = setting(
        10.0,
        'Seconds a request has to arrive in full (head and body) from its first'
        ' byte; one later is answered 408 and its connection closed',
        minimum=0.1,
        maximum=600,
    )
    idle_timeout_s: float = setting(
        60.0,
        'Seconds a kept-alive TLS connection may wait for its next request',
        minimum=1,
        maximum=3600,
    )


@dataclass(frozen=True, repr=False)
class AuthSettings:
    jwt_algorithm: str = setting(
        'EdDSA',
        'The one algorithm accepted for JWT bearer tokens',
        choices=('EdDSA', 'ES256', 'HS256'),
        live=True,
    )
    jwt_key_file: str = setting(
        '',
        'Public keys (PEM) of EdDSA/ES256, or a secret file for HS256 (empty: no JWT)',
        optional=True,
        live=True,
    )
    jwt_audience: str = setting(
        'jamey', 'The aud a JWT must name to be accepted here', live=True
    )
    jwt_scope_claim: str = setting(
        'scope', "The claim holding a JWT's scope (read, write or admin)", live=True
    )
    jwt_leeway_s: int = setting(
        30, 'Clock skew allowed when checking exp and nbf (s)', minimum=0, maximum=600
    )
    audit_max_entries: int = setting(
        100_000,
        'Audit log entries kept (oldest removed first)',
        minimum=100,
        maximum=100_000_000,
        live=True,
    )


@dataclass(frozen=True, repr=False)
class HealthSettings:
    min_free_mb: int = setting(
        64,
        'Free space in state_dir below which health fails (MiB)',
        minimum=0,
        maximum=10_000_000,
        live=True,
    )
    max_rss_mb: int = setting(
        256,
        'Resident memory above which health is degraded (MiB)',
        minimum=16,
        maximum=1_000_000,
        live=True,
    )


def _http_url(value: str) -> str | None:
    """The model's base URL: http or https, a host, no query or fragment."""
    if not re.fullmatch(r'https?://[^\s/?#]+(/[^\s?#]*)?', value):
        return 'must be an http:// or https:// URL such as "http://127.0.0.1:8080/v1"'
    return None


@dataclass(frozen=True, repr=False)
class GuardSettings:
    base_url: str = setting(
        '',
        'OpenAI-compatible completions server of a guard model (empty: no guard)',
        check=_http_url,
        optional=True,
        live=True,
    )
    model: str = setting('', 'Model name sent to the server', optional=True, live=True)
    format: str = setting(
        'llama-guard',
        "The guard model's prompt and answer: llama-guard (Llama Guard 3) or"
        ' shieldgemma',
        choices=('llama-guard', 'shieldgemma'),
        live=True,
    )
    api_key_file: str = setting(
        '', 'Bearer key of the server; a secret file', optional=True, live=True
    )
    timeout_s: float = setting(
        3.0,
        'Longest wait for the guard on one evaluation (s)',
        minimum=0.05,
        maximum=60.0,
        live=True,
    )
    when: str = setting(
        'unsure',
        'When the guard is asked: unsure (every review, and meaning near the'
        ' threshold), review (review verdicts only) or always',
        choices=('unsure', 'review', 'always'),
        live=True,
    )
    band: float = setting(
        0.1,
        'Unsure (when = unsure) unless some nearest example or counterexample'
        ' is at least this far above conscience.example_threshold',
        minimum=0.0,
        maximum=0.5,
        live=True,
    )
    on_failure: str = setting(
        'review',
        'The verdict when the guard fails or answers out of format: review,'
        ' deny, or layers (what phrases and examples decided)',
        choices=('review', 'deny', 'layers'),
        live=True,
    )


@dataclass(frozen=True, repr=False)
class ConscienceSettings:
    deny_weight: float = setting(
        8.0,
        'A net-violated rule at least this heavy denies; lighter ones ask review',
        minimum=0.001,
        maximum=100.0,
        live=True,
    )
    meaning: str = setting(
        'required',
        "Judge by the rules' examples with the sentence encoder: required"
        ' (no start without the model), optional (phrases alone and health'
        ' degraded without it) or off',
        choices=('required', 'optional', 'off'),
    )
    example_threshold: float = setting(
        0.475,
        'Similarity a nearest example or counterexample must pass to judge',
        minimum=0.05,
        maximum=1.0,
        live=True,
    )
    model_file: str = setting(
        '',
        "The sentence encoder's model archive (empty: the installed model package's)",
        optional=True,
    )
    encoder_threads: int = setting(
        1, 'Threads that compute one embedding', minimum=1, maximum=16
    )
    guard: GuardSettings = dataclasses.field(default_factory=GuardSettings)


def _ttl(default: int, layer: str) -> Any:
    """The age at which a layer's memories expire; the same for every layer."""
    return setting(
        default,
        f'Age at which {layer} memories expire (s; 0 keeps them)',
        minimum=0,
        maximum=10**10,
        live=True,
    )


@dataclass(frozen=True, repr=False)
class MemorySettings:
    commit_interval_ms: int = setting(
        1000,
        'Longest wait before stored memories are searchable (ms)',
        minimum=10,
        maximum=60_000,
    )
    writer_mb: int = setting(
        15,
        'Memory budget of the index writer (MiB; tantivy needs 15)',
        minimum=15,
        maximum=1024,
    )
    consistent_timeout_s: float = setting(
        5.0,
        'How long ?consistent=true waits for the index (s)',
        minimum=0.1,
        maximum=60.0,
    )
    retention_interval_s: int = setting(
        60,
        'How often expired memories are removed (s)',
        minimum=1,
        maximum=86_400,
    )
    short_term_ttl_s: int = _ttl(86_400, 'short-term')
    working_ttl_s: int = _ttl(3_600, 'working')
    long_term_ttl_s: int = _ttl(0, 'long-term')
    episodic_ttl_s: int = _ttl(0, 'episodic')
    semantic_ttl_s: int = _ttl(0, 'semantic')
    max_items: int = setting(
        0,
        'Most memories kept per layer, oldest removed first (0: no limit)',
        minimum=0,
        maximum=10**9,
        live=True,
    )


@dataclass(frozen=True, repr=False)
class SoulSettings:
    auto_create: bool = setting(
        True,
        'Evaluations, memories and emotions for an unknown entity create it',
        live=True,
    )
    default_trust: float = setting(
        0.5, 'Trust of a new entity', minimum=0.0, maximum=1.0, live=True
    )
    low_trust: float = setting(
        0.3,
        'Entities trusted less are judged more strictly',
        minimum=0.0,
        maximum=1.0,
        live=True,
    )
    low_trust_factor: float = setting(
        0.5,
        'The deny weight for a low-trust entity is scaled by this',
        minimum=0.01,
        maximum=1.0,
        live=True,
    )
    decay_interval: int = setting(
        3600,
        'How often trust decay is written back (s; reads always include it)',
        minimum=1,
        maximum=86_400 * 7,
    )
    prune: bool = setting(
        False, 'Remove entities whose trust decays below prune_threshold', live=True
    )
    prune_threshold: float = setting(
        0.1,
        'Trust below which entities are pruned',
        minimum=0.0,
        maximum=1.0,
        live=True,
    )
    max_emotions: int = setting(
        100,
        'Emotions kept per entity (the latest of each emotion always stays)',
        minimum=5,
        maximum=100_000,
        live=True,
    )


_KEY_SOURCES = ('key_file', 'passphrase_file', 'recipient_file')


@dataclass(frozen=True, repr=False)
class VaultSettings:
    dir: str = setting(
        '',
        'Directory of the backups (empty: vault/ in storage.state_dir)',
        optional=True,
    )
    key_file: str = setting(
        '', 'A 32-byte key; a secret file or systemd credential', optional=True
    )
    passphrase_file: str = setting(
        '', 'A passphrase (stretched by scrypt); a secret file', optional=True
    )
    recipient_file: str = setting(
        '',
        'An X25519 public key: backups only its private key can read',
        optional=True,
    )
    cipher: str = setting(
        'aes-256-gcm',
        'AEAD of the chunks (chacha20-poly1305 for CPUs without AES instructions)',
        choices=('aes-256-gcm', 'chacha20-poly1305'),
    )
    interval_hours: float = setting(
        24.0,
        'Hours between scheduled backups, when a key is set (0: none)',
        minimum=0.0,
        maximum=8760.0,
    )
    keep_last: int = setting(
        3, 'Prune keeps the newest this many', minimum=0, maximum=100_000
    )
    keep_daily: int = setting(
        7,
        'Prune keeps the newest of each of this many days',
        minimum=0,
        maximum=100_000,
    )
    keep_weekly: int = setting(
        4,
        'Prune keeps the newest of each of this many weeks',
        minimum=0,
        maximum=100_000,
    )
    mirror_dirs: tuple[str, ...] = setting(
        (), 'Directories that get a copy of each backup', optional=True
    )

    def __post_init__(self) -> None:
        named = [name for name in _KEY_SOURCES if getattr(self, name)]
        if len(named) > 1:
            raise ConfigError(
                f'vault.{" and vault.".join(named)} are all set: set one key'
                ' source at most'
            )


def _mqtt_name(value: str) -> str | None:
    """A device id or prefix is one topic level: no wildcards, no separator."""
    if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}', value):
        return 'must be 1-64 letters, digits, dots, dashes or underscores'
    return None


def _device_id(value: str) -> str | None:
    """``fleet`` is the topic level of the shared work queue."""
    if value == 'fleet':
        return 'must not be "fleet" (the topic level of the fleet queue)'
    return _mqtt_name(value)


@dataclass(frozen=True, repr=False)
class MqttSettings:
    enabled: bool = setting(False, 'Connect to an MQTT broker')
    host: str = setting('localhost', 'Host name of the broker (checked by TLS)')
    port: int = setting(8883, 'TLS port of the broker', minimum=1, maximum=65535)
    ca_file: str = setting(
        '',
        'CA bundle (PEM) that signed the broker (empty: the system CAs)',
        optional=True,
    )
    cert_file: str = setting(
        '', 'Client certificate (PEM) presented to the broker', optional=True
    )
    key_file: str = setting(
        '', 'Private key (PEM) of the client certificate; a secret file', optional=True
    )
    auth: str = setting(
        'jwt',
        'How the broker knows this device',
        choices=('jwt', 'password', 'certificate'),
    )
    username: str = setting(
        '', 'Broker user name (empty: the device id)', optional=True
    )
    password_file: str = setting(
        '', 'Broker password (auth = password); a secret file', optional=True
    )
    jwt_key_file: str = setting(
        '',
        'Device key (PEM, Ed25519 or P-256) that signs the broker JWT; a secret file',
        optional=True,
    )
    device_id: str = setting(
        'jamey',
        'Client id, JWT subject and topic level of this device',
        check=_device_id,
    )
    prefix: str = setting('jamey', 'First topic level of the fleet', check=_mqtt_name)
    trust_secret_file: str = setting(
        '', 'HS256 secret of the fleet for request tokens; a secret file', optional=True
    )
    trust_keys_file: str = setting(
        '',
        'Public keys (PEM, Ed25519 or P-256) of the fleet for request tokens',
        optional=True,
    )
    bind_tokens: bool = setting(
        True,
        'A request token must name its message (claim message_id) and expire'
        ' within 10 minutes, so a captured one cannot carry another request',
    )
    heartbeat_s: int = setting(
        60, 'Interval of the heartbeat (s; 0: none)', minimum=0, maximum=86_400
    )


@dataclass(frozen=True, repr=False)
class LogSettings:
    level: str = setting(
        'info',
        'Least severe level logged',
        choices=('debug', 'info', 'warning', 'error'),
        live=True,
    )
    format: str = setting(
        'auto',
        'json, text, or auto (text on a terminal, else json)',
        choices=('auto', 'json', 'text'),
    )


@dataclass(frozen=True, repr=False)
class DaemonSettings:
    shutdown_grace_s: float = setting(
        10.0,
        'How long in-flight requests may finish after SIGTERM (s)',
        minimum=0.0,
        maximum=300.0,
    )


@dataclass(frozen=True, repr=False)
class LlmSettings:
    base_url: str = setting(
        '',
        'OpenAI-compatible chat-completions server (empty: no model)',
        check=_http_url,
        optional=True,
    )
    model: str = setting('', 'Model name sent to the server', optional=True)
    api_key_file: str = setting(
        '', 'Bearer key of the server; a secret file', optional=True
    )
    timeout_s: float = setting(
        20.0, 'Longest wait for one model call (s)', minimum=0.1, maximum=600.0
    )
    retries: int = setting(
        2,
        'Further tries after a failed call (429, 5xx, network)',
        minimum=0,
        maximum=10,
    )
    backoff_s: float = setting(
        0.5,
        'First wait between tries, doubled each time, with jitter (s)',
        minimum=0.0,
        maximum=60.0,
    )
    max_reply_chars: int = setting(
        4000, 'Longest reply accepted from the model', minimum=1, maximum=5000
    )
    system_prompt: str = setting(
        'You are Jamey, a careful guardian. Answer briefly and honestly.',
        'What the model is told before the conversation',
    )


@dataclass(frozen=True, repr=False)
class ChatSettings:
    context_turns: int = setting(
        4,
        'Recent user turns of a session judged together with a new message',
        minimum=1,
        maximum=50,
    )
    recall_limit: int = setting(
        5, 'Memories recalled for a message (0: none)', minimum=0, maximum=20
    )
    recall_context: int = setting(
        1,
        'Memories stored just before and after each recalled one that come'
        ' with it (0: none)',
        minimum=0,
        maximum=5,
    )


@dataclass(frozen=True, repr=False)
class Settings:
    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)
    tls: TlsSettings = dataclasses.field(default_factory=TlsSettings)
    auth: AuthSettings = dataclasses.field(default_factory=AuthSettings)
    health: HealthSettings = dataclasses.field(default_factory=HealthSettings)
    conscience: ConscienceSettings = dataclasses.field(
        default_factory=ConscienceSettings
    )
    memory: MemorySettings = dataclasses.field(default_factory=MemorySettings)
    soul: SoulSettings = dataclasses.field(default_factory=SoulSettings)
    vault: VaultSettings = dataclasses.field(default_factory=VaultSettings)
    mqtt: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    daemon: DaemonSettings = dataclasses.field(default_factory=DaemonSettings)
    llm: LlmSettings = dataclasses.field(default_factory=LlmSettings)
    chat: ChatSettings = dataclasses.field(default_factory=ChatSettings)


class Key(NamedTuple):
    """One declared setting, as the loader walks them."""

    section: str
    name: str
    kind: type
    default: Any
    option: Option

    @property
    def dotted(self) -> str:
        return f'{self.section}.{self.name}'

    @property
    def env(self) -> str:
        section = self.section.upper().replace('.', '_')
        return f'{ENV_PREFIX}{section}_{self.name.upper()}'


def _tables(cls: type) -> list[tuple[str, type]]:
    """The fields of ``cls`` that are tables of settings, not settings."""
    hints = typing.get_type_hints(cls)
    return [
        (f.name, hints[f.name])
        for f in dataclasses.fields(cls)
        if 'option' not in f.metadata
    ]


def keys() -> dict[str, dict[str, Key]]:
    """Every declared setting, by section and name, in declaration order. A
    table inside a section (``[conscience.guard]``) is a section of its own,
    named with a dot, right after its parent."""
    sections: dict[str, dict[str, Key]] = {}

    def walk(section: str, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        sections[section] = {
            f.name: Key(
                section,
                f.name,
                typing.get_origin(hints[f.name]) or hints[f.name],
                f.default,
                f.metadata['option'],
            )
            for f in dataclasses.fields(cls)
            if 'option' in f.metadata
        }
        for name, table in _tables(cls):
            walk(f'{section}.{name}', table)

    for name, cls in _tables(Settings):
        walk(name, cls)
    return sections


def _build(values: dict[str, dict[str, Any]]) -> Settings:
    """Settings from every section's values, tables inside sections too."""

    def build(section: str, cls: type) -> Any:
        tables = {n: build(f'{section}.{n}', t) for n, t in _tables(cls)}
        return cls(**values[section], **tables)

    return Settings(**{name: build(name, cls) for name, cls in _tables(Settings)})


def _section(settings: Settings, section: str) -> Any:
    """The settings of one (dotted) section."""
    found: Any = settings
    for name in section.split('.'):
        found = getattr(found, name)
    return found


def config_path(cli_path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """Which file to read: --config, then JAMEY_CONFIG, then systemd's directory."""
    if cli_path is not None:
        return cli_path
    if environ.get('JAMEY_CONFIG'):
        return Path(environ['JAMEY_CONFIG'])
    if environ.get('CONFIGURATION_DIRECTORY'):
        candidate = Path(_first_dir(environ['CONFIGURATION_DIRECTORY'])) / 'jamey.toml'
        if candidate.exists():
            return candidate
    return None


def load(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Build validated settings from defaults, the file (if any) and environ.

    Raises:
        ConfigError: naming every bad key with its value and where it came
            from, all at once, so an operator fixes the file in one go.
    """
    declared = keys()
    values = {
        s: {k: _systemd_default(key, environ) for k, key in ks.items()}
        for s, ks in declared.items()
    }
    problems: list[str] = []
    if path is not None:
        _apply_file(path, declared, values, problems)
    _apply_environ(environ, declared, values, problems)
    if problems:
        raise ConfigError('\n'.join(problems))
    return _build(values)


def _first_dir(value: str) -> str:
    """systemd may pass several directories separated by ':'; ours is the first."""
    return value.split(':', 1)[0]


def _systemd_default(key: Key, environ: Mapping[str, str]) -> Any:
    directory = key.option.systemd_dir
    if directory and environ.get(directory):
        base = Path(_first_dir(environ[directory]))
        return base / key.option.systemd_name if key.option.systemd_name else base
    return key.default


def _apply_file(
    path: Path,
    declared: dict[str, dict[str, Key]],
    values: dict[str, dict[str, Any]],
    problems: list[str],
) -> None:
    try:
        with path.open('rb') as f:
            document = tomllib.load(f)
    except OSError as exc:
        problems.append(f'cannot read config file {path}: {exc.strerror}')
        return
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(f'config file {path} is not valid TOML: {exc}')
        return
    for section, table in document.items():
        _apply_table(path, section, table, declared, values, problems)


def _apply_table(
    path: Path,
    section: str,
    table: Any,
    declared: dict[str, dict[str, Key]],
    values: dict[str, dict[str, Any]],
    problems: list[str],
) -> None:
    if section not in declared:
        problems.append(
            f'unknown section [{section}] in {path}{_hint(section, declared)}'
        )
        return
    if not isinstance(table, dict):
        problems.append(f'{section} in {path} must be a table ([{section}])')
        return
    for name, raw in table.items():
        if f'{section}.{name}' in declared:
            _apply_table(path, f'{section}.{name}', raw, declared, values, problems)
            continue
        key = declared[section].get(name)
        if key is None:
            hint = _hint(name, declared[section], prefix=f'{section}.')
            problems.append(f'unknown key {section}.{name} in {path}{hint}')
            continue
        _store(key, raw, _from_toml(key, raw), f'in {path}', values, problems)


def _apply_environ(
    environ: Mapping[str, str],
    declared: dict[str, dict[str, Key]],
    values: dict[str, dict[str, Any]],
    problems: list[str],
) -> None:
    by_env = {key.env: key for ks in declared.values() for key in ks.values()}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        key = by_env.get(name)
        if key is None:
            problems.append(f'unknown environment variable {name}{_hint(name, by_env)}')
            continue
        raw = environ[name]
        _store(key, raw, _from_string(key, raw), f'from {name}', values, problems)


def _store(
    key: Key,
    raw: Any,
    converted: tuple[Any, str | None],
    origin: str,
    values: dict[str, dict[str, Any]],
    problems: list[str],
) -> None:
    value, error = converted
    if error is None:
        error = _validate(key, value)
    if error is not None:
        problems.append(f'{key.dotted} = {raw!r} ({origin}): {error}')
        return
    values[key.section][key.name] = value


def _hint(name: str, candidates: Mapping[str, Any], prefix: str = '') -> str:
    import difflib  # noqa: PLC0415 - only when something is wrong

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f'; did you mean {prefix}{close[0]}?' if close else ''


def _type_name(kind: type) -> str:
    return {
        Path: 'a path string',
        str: 'a string',
        int: 'an integer',
        float: 'a number',
        bool: 'true or false',
        tuple: 'a list of strings',
    }[kind]


def _path(raw: str) -> tuple[Path | None, str | None]:
    # Path('') is '.', which would silently mean "wherever jameyd started".
    if not raw or '\x00' in raw:
        return None, 'must be a non-empty path without NUL characters'
    return Path(raw), None


def _from_toml(key: Key, raw: Any) -> tuple[Any, str | None]:
    """TOML already has types: accept exactly the declared one (ints as floats)."""
    kind = key.kind
    if kind is Path and isinstance(raw, str):
        return _path(raw)
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw), None
    if kind in (str, bool) and type(raw) is kind:
        return raw, None
    if kind is int and type(raw) is int:
        return raw, None
    if kind is tuple and isinstance(raw, list) and all(isinstance(i, str) for i in raw):
        return tuple(raw), None
    return None, f'must be {_type_name(kind)}, not {type(raw).__name__}'


def _from_string(key: Key, raw: str) -> tuple[Any, str | None]:
    """Environment values are strings: parse them as the declared type."""
    kind = key.kind
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError(raw)
            return lowered in _TRUE, None
        if kind is Path:
            return _path(raw)
        if kind is tuple:
            return tuple(item.strip() for item in raw.split(',') if item.strip()), None
        return kind(raw.strip()) if kind in (int, float) else raw, None
    except ValueError:
        return None, f'must be {_type_name(kind)}'


def _validate(key: Key, value: Any) -> str | None:
    option = key.option
    if option.optional and value in ('', ()):
        return None
    error = _shape_error(value)
    if error is None and option.choices and value not in option.choices:
        error = f'must be one of {", ".join(option.choices)}'
    if error is None and option.minimum is not None and value < option.minimum:
        error = f'must be at least {option.minimum:g}'
    if error is None and option.maximum is not None and value > option.maximum:
        error = f'must be at most {option.maximum:g}'
    if error is None and option.check:
        error = option.check(value)
    return error


def _shape_error(value: Any) -> str | None:
    """What every value of its type must be, whatever the setting."""
    if isinstance(value, float) and not math.isfinite(value):
        return 'must be a finite number'
    texts = value if isinstance(value, tuple) else (value,)
    if any(isinstance(t, str) and ('\x00' in t or not t) for t in texts):
        return 'must be a non-empty string without NUL characters'
    if len(set(texts)) < len(texts):
        return 'must not list the same string twice'
    return None


def merge_live(running: Settings, loaded: Settings) -> tuple[Settings, list[str]]:
    """What a reload may apply: live keys from ``loaded``, the rest as running.

    Returns the settings now in force and the changed keys that wait for a
    restart (the state directory cannot move under an open database).
    """
    values: dict[str, dict[str, Any]] = {}
    restart: list[str] = []
    for section, ks in keys().items():
        old, new = _section(running, section), _section(loaded, section)
        values[section] = {}
        for name, key in ks.items():
            before, after = getattr(old, name), getattr(new, name)
            if before != after and not key.option.live:
                restart.append(key.dotted)
            values[section][name] = after if key.option.live else before
    return _build(values), restart


def as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """Settings as plain TOML-like data (paths as strings), for display: one
    entry per section, ``conscience.guard`` beside ``conscience``."""
    shown: dict[str, dict[str, Any]] = {}
    for section, ks in keys().items():
        values = _section(settings, section)
        shown[section] = {name: _plain(getattr(values, name)) for name in ks}
    return shown


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def secret_path(value: str | Path, environ: Mapping[str, str]) -> Path:
    """Where a secret setting points: a file, or a systemd credential by name."""
    credentials = environ.get('CREDENTIALS_DIRECTORY')
    if credentials and '/' not in str(value):
        return Path(credentials) / value
    return Path(value)


def read_secret(
    value: str | Path, environ: Mapping[str, str], setting: str = ''
) -> bytes:
    """Read a secret from a file that nobody but its owner can read.

    A bare name (no '/') is a systemd credential in ``$CREDENTIALS_DIRECTORY``.
    Secrets never come from the config file or the environment themselves:
    both end up in process listings, logs and backups. ``setting`` (such as
    ``vault.key_file``) is where ``value`` came from, for the messages.

    Raises:
        CredentialUnavailableError: a credential name that opens nothing,
            outside the service (the message says what to give instead).
        SecretError: the file is missing, not a regular file, or readable or
            writable by group or others (the message says how to fix it).
    """
    path = secret_path(value, environ)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        credential = '/' not in str(value) and not environ.get('CREDENTIALS_DIRECTORY')
        if credential and isinstance(exc, FileNotFoundError):
            raise CredentialUnavailableError(
                _outside_the_service(str(value), setting)
            ) from None
        raise SecretError(f'cannot open secret file {path}: {exc.strerror}') from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f'secret {path} is not a regular file')
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SecretError(
                f'secret file {path} has mode {mode:04o}: group or others can'
                f' access it; run chmod 600 {path}'
            )
        with os.fdopen(os.dup(fd), 'rb') as f:
            return f.read()
    finally:
        os.close(fd)


def _outside_the_service(name: str, setting: str) -> str:
    """Why a credential name opens nothing here, and what to give instead."""
    what = f'{setting} = {name!r}' if setting else repr(name)
    message = (
        f'{what} names a systemd credential, but $CREDENTIALS_DIRECTORY is not'
        ' set: credentials exist only inside a service whose unit loads them'
        f' (LoadCredential={name}:FILE); outside it, name the file itself'
    )
    if setting:
        section, _, key = setting.rpartition('.')
        message += f', e.g. {keys()[section][key].env}=/etc/jamey/{name}'
    return message
