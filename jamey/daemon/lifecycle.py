"""The daemon's life: start in order, serve, watch itself, reload, stop cleanly.

Start: lock the state directory, open and migrate the database, build the
app, listen, then ``READY=1``. One main loop turns the listener and, when
systemd asks for a watchdog, pings it at half the interval, only while the
critical health checks pass. SIGHUP reloads what can change live and
recompiles the rules; SIGTERM and SIGINT stop accepting, let requests in
flight finish within the grace period, close storage and remove the socket.
"""

import logging
import signal
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from jamey import __version__
from jamey import config
from jamey import logs
from jamey.access import Authenticator
from jamey.access import JwtSettings
from jamey.access import JwtVerifier
from jamey.access import Scope
from jamey.access import TokenStore
from jamey.access import load_jwt_keys
from jamey.api import create_app
from jamey.api.access import Policy
from jamey.api.app import Parts
from jamey.api.metrics import Gauge
from jamey.audit import AuditLog
from jamey.chat import Chat
from jamey.chat import ChatSettings
from jamey.conscience import Conscience
from jamey.daemon.listener import UnixListener
from jamey.daemon.systemd import Notifier
from jamey.daemon.systemd import watchdog_interval
from jamey.errors import ConfigError
from jamey.errors import EncoderError
from jamey.errors import RuleError
from jamey.errors import StorageError
from jamey.guard import open_guard
from jamey.health import FAILING
from jamey.health import HealthChecks
from jamey.health import Thresholds
from jamey.integrity import IntegrityCheck
from jamey.meaning import ExampleEmbeddings
from jamey.memory import INDEX_DIR
from jamey.memory import LAYERS
from jamey.memory import MemoryStore
from jamey.memory import Retention
from jamey.model import open_backend
from jamey.soul import Soul
from jamey.soul import SoulSettings
from jamey.storage import DATABASE_NAME
from jamey.storage import Database
from jamey.storage import StartCheck
from jamey.storage import StateLock
from jamey.storage import private_directory
from jamey.vault import Vault
from jamey.vault import open_vault

if TYPE_CHECKING:
    from jamey.daemon.tls import TlsListener
    from jamey.mqtt import Bridge

log = logging.getLogger('jamey.daemon')
# With no watchdog, the loop still wakes now and then so waitress can close
# idle connections; rarely, because low-power devices sleep between events.
IDLE_WAKE_S = 60.0
# While the start takes long (a memory index rebuilt), each report asks
# systemd for this much more time, and they come at most this often.
START_EXTENSION_S = 60
START_REPORT_S = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _thresholds(settings: config.Settings) -> Thresholds:
    return Thresholds(settings.health.min_free_mb, settings.health.max_rss_mb)


def _soul_settings(settings: config.Settings) -> SoulSettings:
    soul = settings.soul
    return SoulSettings(
        auto_create=soul.auto_create,
        default_trust=soul.default_trust,
        low_trust=soul.low_trust,
        low_trust_factor=soul.low_trust_factor,
        prune=soul.prune,
        prune_threshold=soul.prune_threshold,
        max_emotions=soul.max_emotions,
        decay_interval_s=soul.decay_interval,
    )


def _example_embeddings(
    settings: config.ConscienceSettings, db: Database
) -> tuple[ExampleEmbeddings | None, str | None]:
    """The examples' embeddings with the encoder loaded, per ``conscience.meaning``;
    and, when the model is optional and missing, why.

    Raises:
        EncoderError: the model is required and cannot be loaded.
    """
    if settings.meaning == 'off':
        return None, None
    # Imported here: a device with meaning off never loads the encoder.
    from jamey import encoder  # noqa: PLC0415

    started = time.perf_counter()
    try:
        model = encoder.load(
            Path(settings.model_file) if settings.model_file else None,
            threads=settings.encoder_threads,
        )
    except EncoderError as exc:
        if settings.meaning == 'required':
            raise
        log.error('conscience.model_unavailable', extra={'error': str(exc)})
        return None, str(exc)
    log.info(
        'conscience.model_loaded',
        extra={
            'model': encoder.MODEL_ID,
            'load_s': round(time.perf_counter() - started, 3),
        },
    )
    return ExampleEmbeddings(db, model, encoder.MODEL_ID), None


def _retention(settings: config.Settings) -> Retention:
    memory = settings.memory
    ttl = {layer: getattr(memory, f'{layer}_ttl_s') for layer in LAYERS}
    return Retention(ttl, memory.max_items)


def _chat_settings(settings: config.Settings) -> ChatSettings:
    return ChatSettings(
        settings.chat.context_turns,
        settings.chat.recall_limit,
        settings.chat.recall_context,
        settings.llm.system_prompt,
    )


def _gauges(vault: Vault, bridge: 'Bridge | None') -> tuple[Gauge, ...]:
    """What /metrics reads of the vault and of MQTT when scraped."""

    def backup_age() -> float | None:
        newest = vault.newest()
        return None if newest is None else max(0.0, time.time() - newest.created_s)

    gauges: list[Gauge] = [
        (
            'jamey_backup_age_seconds',
            'Age of the newest backup (absent: none yet)',
            backup_age,
        )
    ]
    if bridge is not None:
        gauges += [
            (
                'jamey_mqtt_connected',
                'Whether the broker connection is up (1) or not (0)',
                lambda: float(bridge.state == 'connected'),
            ),
            (
                'jamey_mqtt_outbox_depth',
                'Messages waiting in the outbox for the broker',
                lambda: bridge.outbox.depth()[0],
            ),
            (
                'jamey_mqtt_outbox_oldest_seconds',
                'Age of the oldest message in the outbox (absent: empty)',
                lambda: bridge.outbox.depth()[1],
            ),
            (
                'jamey_mqtt_reconnects',
                'Connections to the broker after the first',
                lambda: bridge.reconnects,
            ),
        ]
    return tuple(gauges)


class Daemon:
    """One running jameyd; ``start`` then ``run`` (which returns the exit code)."""

    def __init__(
        self,
        settings: config.Settings,
        config_file: Path | None,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        start_check: StartCheck | None = None,
    ) -> None:
        self.settings = settings
        self._start_check = start_check
        self.config_file = config_file
        self.environ = environ
        self.notifier = Notifier(environ)
        self.watchdog_s = watchdog_interval(environ)
        self._clock = clock
        self._signals: list[int] = []
        self._last_status = ''
        self._lock: StateLock | None = None
        self._db: Database | None = None
        self._listener: UnixListener | None = None
        self._memories: MemoryStore | None = None
        self._soul: Soul | None = None
        self._tls: TlsListener | None = None
        self._vault: Vault | None = None
        self._mqtt: Bridge | None = None
        self._integrity: IntegrityCheck | None = None
        self._next_start_report = 0.0

    def start(self) -> None:
        """Bring every part up in dependency order, then tell systemd.

        Raises:
            StorageError: the state directory is locked, or the database
                cannot be opened or migrated.
            ListenerError: the socket cannot be served.
            ConfigError: ``[mqtt]`` names a key or file that cannot work.
        """
        storage = self.settings.storage
        state_dir = private_directory(storage.state_dir)
        self._lock = StateLock(state_dir)
        self._db = Database(
            state_dir / DATABASE_NAME, storage.synchronous, storage.busy_timeout_ms
        )
        if self._start_check is not None:
            self._check_database(storage)
        self._db.checkpoint_in_background()
        before, after = self._db.migrate()
        if before != after:
            log.info(
                'storage.migrated', extra={'from_version': before, 'to_version': after}
            )
        # The vault's key is read now: a bad key file stops the start (78).
        self._vault = open_vault(self.settings, self.environ, self.config_file)
        llm = open_backend(self.settings.llm, self.environ)
        conscience = self.settings.conscience
        guard = open_guard(conscience.guard, self.environ)
        embeddings, model_missing = _example_embeddings(conscience, self._db)
        self.conscience = Conscience(
            self._db,
            conscience.deny_weight,
            embeddings=embeddings,
            threshold=conscience.example_threshold,
            guard=guard,
        )
        memory = self.settings.memory
        soul = Soul(self._db, _soul_settings(self.settings))
        self._memories = MemoryStore(
            self._db,
            state_dir / INDEX_DIR,
            commit_interval_s=memory.commit_interval_ms / 1000,
            writer_bytes=memory.writer_mb * 1024 * 1024,
            retention=_retention(self.settings),
            retention_interval_s=memory.retention_interval_s,
            on_entity=soul.link,
        )
        soul.forget_memories = self._memories.forget_many
        self._memories.start(progress=self._still_starting)
        self._soul = soul
        soul.start()
        backup_interval_s = self._schedule_backups(self._vault, self._db.path)
        self._integrity = IntegrityCheck(
            self._db, storage.full_check_interval_hours * 3600
        )
        self._integrity.start()
        self._audit = AuditLog(self._db, self.settings.auth.audit_max_entries)
        if self.settings.mqtt.enabled:
            # paho and the JWT code load only on devices with a broker.
            from jamey import mqtt  # noqa: PLC0415

            self._mqtt = mqtt.bridge(
                self.settings,
                self.environ,
                self._db,
                self.conscience,
                soul,
                self._memories,
                self._audit,
            )
            self._mqtt.start()
        self.health = HealthChecks(
            self._db,
            state_dir,
            _thresholds(self.settings),
            clock=self._clock,
            memories=self._memories,
            vault=self._vault,
            backup_interval_s=backup_interval_s,
            mqtt=self._mqtt,
            llm=llm,
            guard=guard,
            model_missing=model_missing,
            integrity=self._integrity,
        )
        api = self.settings.api
        self._tokens = TokenStore(self._db)
        self._policy = Policy(Authenticator(self._tokens, None))
        self._apply_access()
        app = create_app(
            Parts(
                self.health,
                self.conscience,
                self._memories,
                soul,
                self._tokens,
                self._audit,
                self._policy,
                api.max_body_bytes,
                memory.consistent_timeout_s,
                gauges=_gauges(self._vault, self._mqtt),
                vault=self._vault,
                chat=Chat(
                    self.conscience,
                    soul,
                    self._audit,
                    self._memories,
                    llm,
                    _chat_settings(self.settings),
                ),
                integrity=self._integrity,
            )
        )
        self._listener = UnixListener(
            app,
            api.socket,
            api.socket_mode,
            api.threads,
            api.max_body_bytes,
            api.connection_limit,
            api.max_header_bytes,
            self._policy,
        )
        if self.settings.tls.listen:
            # ssl loads only where a TLS listener is configured.
            from jamey.daemon.tls import TlsListener  # noqa: PLC0415

            self._tls = TlsListener(
                app,
                self.settings.tls,
                self.environ,
                api.max_body_bytes,
                api.max_header_bytes,
            )
        signal.set_wakeup_fd(self._listener.wakeup_fd(), warn_on_full_buffer=False)
        for signum in (*_STOP_SIGNALS, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        log.info(
            'daemon.ready',
            extra={
                'version': __version__,
                'socket': str(api.socket),
                'tls': self.settings.tls.listen or None,
                'state_dir': str(state_dir),
                'watchdog_s': self.watchdog_s,
            },
        )
        self.notifier.notify('READY=1', self._status_line('ok'))

    def _schedule_backups(self, vault: Vault, database: Path) -> float:
        """Start scheduled backups when a key is set; their interval (0: none)."""
        interval_s = self.settings.vault.interval_hours * 3600
        if vault.keyring is None or interval_s <= 0:
            return 0.0
        vault.start(database, interval_s)
        return interval_s

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it: the main loop acts, outside any half-done I/O.
        self._signals.append(signum)

    def _status_line(self, health: str) -> str:
        self._last_status = health
        return f'STATUS=serving on {self.settings.api.socket}; health {health}'

    def run(self) -> int:
        """The main loop; returns the exit code once a stop signal arrived."""
        assert self._listener is not None, 'start() first'
        next_ping = self._clock()
        while True:
            timeout = IDLE_WAKE_S
            if self.watchdog_s is not None:
                timeout = max(0.0, next_ping - self._clock())
            self._listener.serve_once(timeout)
            while self._signals:
                signum = self._signals.pop(0)
                if signum in _STOP_SIGNALS:
                    return self.stop(signal.Signals(signum).name)
                self.reload()
            if self.watchdog_s is not None and self._clock() >= next_ping:
                self._watchdog_tick()
                next_ping = self._clock() + self.watchdog_s / 2

    def _check_database(self, storage: config.StorageSettings) -> None:
        """SQLite's check, begun by ``jameyd``, awaited before anything
        reads the database: a damaged one stops the start
        (StorageDamagedError, exit 65) instead of serving rows that are not
        what was stored."""
        assert self._db is not None
        assert self._start_check is not None
        finished, seconds = self._start_check.wait()
        log.info(
            'storage.checked' if finished else 'storage.check_unfinished',
            extra={'check': storage.start_check, 'seconds': round(seconds, 3)},
        )

    def _still_starting(self, indexed: int) -> None:
        """While the start indexes memories: more time from systemd (its
        default start timeout, 90 s, would kill a daemon rebuilding a large
        index, and the restart would begin the rebuild again), a watchdog
        ping, and what it is doing."""
        now = self._clock()
        if now < self._next_start_report:
            return
        self._next_start_report = now + START_REPORT_S
        ping = ['WATCHDOG=1'] if self.watchdog_s is not None else []
        self.notifier.notify(
            f'EXTEND_TIMEOUT_USEC={START_EXTENSION_S * 1_000_000}',
            *ping,
            f'STATUS=starting: {indexed} memories indexed',
        )

    def _watchdog_tick(self) -> None:
        report = self.health.run()
        if not report.wedged:
            self.notifier.notify('WATCHDOG=1')
        if report.status != self._last_status:
            level = logging.ERROR if report.status == FAILING else logging.INFO
            log.log(
                level,
                'health.changed',
                extra={'status': report.status, 'failing': report.failing},
            )
            self.notifier.notify(self._status_line(report.status))

    def reload(self) -> None:
        """Re-read the config file and apply what can change while running."""
        self.notifier.reloading()
        try:
            loaded = config.load(self.config_file, self.environ)
        except ConfigError as exc:
            log.error('config.reload_failed', extra={'error': str(exc)})
        else:
            guard = self.settings.conscience.guard
            self.settings, restart = config.merge_live(self.settings, loaded)
            logs.set_level(self.settings.log.level)
            if self.settings.conscience.guard != guard:
                self._replace_guard(guard)
            self.health.thresholds = _thresholds(self.settings)
            if self._memories is not None:
                self._memories.retention = _retention(self.settings)
            if self._soul is not None:
                self._soul.settings = _soul_settings(self.settings)
            self._apply_access()
            if self._tls is not None:
                self._tls.reload(self.settings.tls, self.environ)
            log.info('config.reloaded', extra={'restart_needed': restart})
        try:
            self.conscience.reload(
                self.settings.conscience.deny_weight,
                self.settings.conscience.example_threshold,
            )
        except (RuleError, StorageError) as exc:
            # The rules in force stay; a reload must never stop the daemon.
            log.error('rules.reload_failed', extra={'error': str(exc)})
        self.notifier.notify('READY=1', self._status_line(self._last_status))

    def _replace_guard(self, previous: config.GuardSettings) -> None:
        """Put changed guard settings in force (SIGHUP): a new client, its
        key read now. A key that cannot be read keeps the guard as it was,
        and says so in the log."""
        settings = self.settings.conscience.guard
        try:
            guard = open_guard(settings, self.environ)
        except ConfigError as exc:
            log.error('guard.reload_failed', extra={'error': str(exc)})
            conscience = replace(self.settings.conscience, guard=previous)
            self.settings = replace(self.settings, conscience=conscience)
            return
        self.conscience.guard = guard
        self.health.guard = guard
        log.info(
            'guard.reloaded',
            extra={'base_url': settings.base_url or None, 'when': settings.when},
        )

    def stop(self, reason: str = 'stop') -> int:
        """Stop accepting, finish what is in flight, release everything; exit 0."""
        self.notifier.notify('STOPPING=1')
        log.info('daemon.stopping', extra={'reason': reason})
        finished = True
        if self._listener is not None:
            self._listener.stop_accepting()
            finished = self._listener.drain(self.settings.daemon.shutdown_grace_s)
            signal.set_wakeup_fd(-1)
        if not finished:
            log.warning(
                'daemon.grace_expired',
                extra={'grace_s': self.settings.daemon.shutdown_grace_s},
            )
        if self._mqtt is not None:
            # Replies still in the outbox go out while the broker allows.
            self._mqtt.stop(self.settings.daemon.shutdown_grace_s)
            self._mqtt = None
        self.close()
        log.info('daemon.stopped')
        return 0

    def _apply_access(self) -> None:
        """Put the access settings in force (at start, and live on SIGHUP).

        A JWT key that cannot be loaded refuses JWTs (and says so in the
        log) rather than stopping the daemon: tokens keep working.
        """
        api, auth = self.settings.api, self.settings.auth
        policy = self._policy
        policy.unix_role = Scope[api.unix_role.upper()]
        policy.unix_requires_token = api.unix_requires_token
        policy.rate_per_s = api.rate_limit_per_s
        policy.burst = api.rate_limit_burst
        policy.cors_origins = frozenset(api.cors_origins)
        policy.request_timeout_s = api.request_timeout_s
        self._audit.max_entries = auth.audit_max_entries
        jwts = None
        if auth.jwt_key_file:
            try:
                keys = load_jwt_keys(
                    auth.jwt_algorithm,
                    auth.jwt_key_file,
                    lambda name: config.read_secret(name, self.environ),
                )
            except ConfigError as exc:
                log.error('auth.jwt_key_unusable', extra={'error': str(exc)})
            else:
                jwts = JwtVerifier(
                    JwtSettings(
                        auth.jwt_algorithm,
                        keys,
                        auth.jwt_audience,
                        auth.jwt_scope_claim,
                        auth.jwt_leeway_s,
                    )
                )
        policy.authenticator.jwts = jwts

    def close(self) -> None:
        """Release storage and the lock (also after a failed start)."""
        if self._tls is not None:
            self._tls.close()
            self._tls = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._mqtt is not None:
            self._mqtt.stop(0.0)
            self._mqtt = None
        if self._vault is not None:
            self._vault.stop()  # a backup in progress gives up cleanly
            self._vault = None
        if self._soul is not None:
            self._soul.stop()
            self._soul = None
        if self._integrity is not None:
            self._integrity.stop()  # a check under way is interrupted
            self._integrity = None
        if self._memories is not None:
            self._memories.stop()  # applies and commits what is journaled
            self._memories = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.notifier.close()
