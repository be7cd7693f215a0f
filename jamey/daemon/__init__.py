"""``jameyd``: the daemon's entry point and its exit codes.

Exit codes follow sysexits(3), so systemd's ``RestartPreventExitStatus=``
can tell a fault a restart may cure from one it cannot:
0 stopped cleanly, 65 database unusable or migration failed, 70 a bug,
75 the state directory or socket is in use, 78 configuration error.
"""

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from jamey import __version__
from jamey import config
from jamey import heap
from jamey import logs
from jamey.errors import ConfigError
from jamey.errors import EncoderError
from jamey.errors import StateLockedError
from jamey.errors import StorageError
from jamey.storage import DATABASE_NAME
from jamey.storage import StartCheck

EX_OK = 0
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78
log = logging.getLogger('jamey.daemon')


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='jameyd', description='The Jamey guardian daemon.'
    )
    parser.add_argument(
        '--config',
        type=Path,
        metavar='FILE',
        help='settings file (default: $JAMEY_CONFIG, then'
        ' $CONFIGURATION_DIRECTORY/jamey.toml)',
    )
    parser.add_argument('--version', action='version', version=f'jameyd {__version__}')
    return parser.parse_args(argv)


def _absolute(settings: config.Settings) -> config.Settings:
    """Pin relative paths to the directory jameyd started in."""
    storage = dataclasses.replace(
        settings.storage, state_dir=settings.storage.state_dir.absolute()
    )
    api = dataclasses.replace(settings.api, socket=settings.api.socket.absolute())
    return dataclasses.replace(settings, storage=storage, api=api)


def _early_error(message: str, journal_stream: str | None) -> None:
    """An error before logging is set up: plain lines on stderr, each filed as
    an error when stderr is the journal (``$JOURNAL_STREAM``)."""
    on_journal = logs.on_journal(sys.stderr, journal_stream)
    prefix = f'<{logs.priority(logging.ERROR)}>' if on_journal else ''
    for line in f'jameyd: {message}'.splitlines():
        print(prefix + line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    os.umask(0o077)
    heap.limit_arenas(dict(os.environ))
    environ = dict(os.environ)
    config_file = config.config_path(args.config, environ)
    try:
        settings = _absolute(config.load(config_file, environ))
    except ConfigError as exc:
        _early_error(f'configuration error:\n{exc}', environ.get('JOURNAL_STREAM'))
        return EX_CONFIG
    logs.configure(
        settings.log.level,
        settings.log.format,
        journal_stream=environ.get('JOURNAL_STREAM'),
    )

    storage = settings.storage
    # Begun before the daemon's modules import, which it overlaps.
    check = (
        None
        if storage.start_check == 'off'
        else StartCheck(
            storage.state_dir / DATABASE_NAME,
            storage.start_check == 'full',
            storage.start_check_budget_s,
        )
    )

    from jamey.daemon.lifecycle import Daemon  # noqa: PLC0415 - after config is sane
    from jamey.daemon.listener import ListenerError  # noqa: PLC0415

    daemon = Daemon(settings, config_file, environ, start_check=check)
    try:
        daemon.start()
        return daemon.run()
    except (StateLockedError, ListenerError) as exc:
        log.error('daemon.start_failed', extra={'error': str(exc)})
        return EX_TEMPFAIL
    except StorageError as exc:
        log.error('daemon.start_failed', extra={'error': str(exc)})
        return EX_DATAERR
    except (ConfigError, EncoderError) as exc:  # a secret file, the model
        log.error('daemon.start_failed', extra={'error': str(exc)})
        return EX_CONFIG
    except Exception as exc:
        log.exception('daemon.crashed', extra={'error': str(exc)})
        return EX_SOFTWARE
    finally:
        daemon.close()
