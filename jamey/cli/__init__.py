"""``jameyctl``: drive jameyd over its Unix socket.

Exit codes are a contract for scripts: 0 ok, 1 refused or unhealthy (the
daemon said no), 2 usage, 69 daemon unreachable, 78 invalid configuration
(``config check``).

Where nothing names jameyd's files, jameyctl finds them as a development
tree has them (the working directory where jameyd ran on its embedded
defaults) or else as the shipped unit puts them. A development tree is told
only by jameyd's own files in it, never by its directories: run from /,
./var/run and ./var/lib are the system's.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import NamedTuple

from jamey import __version__
from jamey import config
from jamey.cli import chat
from jamey.cli import conscience
from jamey.cli import memory
from jamey.cli import soul
from jamey.cli import storage
from jamey.cli import token
from jamey.cli import vault
from jamey.cli.client import Client
from jamey.cli.client import DaemonUnreachableError
from jamey.cli.output import EX_CONFIG
from jamey.cli.output import EX_OK
from jamey.cli.output import EX_REFUSED
from jamey.cli.output import EX_UNAVAILABLE
from jamey.cli.output import emit
from jamey.cli.output import refused
from jamey.errors import ConfigError
from jamey.storage import LOCK_NAME

# jameyd's embedded defaults: its socket and state in a development tree.
DEV_SOCKET = config.ApiSettings().socket
DEV_STATE_DIR = config.StorageSettings().state_dir
SYSTEM_SOCKET = Path('/run/jamey/jamey.sock')


class Layout(NamedTuple):
    """Where the shipped unit has systemd put jameyd's files:
    ConfigurationDirectory= and StateDirectory=, both ``jamey``."""

    config_dir: Path = Path('/etc/jamey')
    state_dir: Path = Path('/var/lib/jamey')


INSTALLED = Layout()


def offline_environ(environ: Mapping[str, str], layout: Layout) -> Mapping[str, str]:
    """The environment offline commands read the settings with.

    In a development tree (./var/lib holds jameyd's lock file) it is
    ``environ``. Elsewhere, ``layout`` stands in for what systemd gives the
    unit: ``$CONFIGURATION_DIRECTORY`` and ``$STATE_DIRECTORY``, each where
    it is unset, so the settings are the installed jameyd's (``--config``,
    ``$JAMEY_CONFIG``, the file and ``JAMEY_*`` still come first).
    """
    if (DEV_STATE_DIR / LOCK_NAME).is_file():
        return environ
    unit = {
        'CONFIGURATION_DIRECTORY': str(layout.config_dir),
        'STATE_DIRECTORY': str(layout.state_dir),
    }
    return {**environ, **{k: v for k, v in unit.items() if not environ.get(k)}}


def default_socket(environ: Mapping[str, str]) -> Path:
    """JAMEY_SOCKET, JAMEY_API_SOCKET, a development tree's, systemd's.

    The development socket (./var/run/jamey.sock) counts only when it is
    there: run from /, ./var/run is the system's own directory.
    """
    for name in ('JAMEY_SOCKET', 'JAMEY_API_SOCKET'):
        if environ.get(name):
            return Path(environ[name])
    return DEV_SOCKET if DEV_SOCKET.is_socket() else SYSTEM_SOCKET


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f'{days}d'] * bool(days) + [f'{hours}h'] * bool(hours or days)
    return ' '.join([*parts, f'{minutes}m', f'{secs}s'])


def _status_text(doc: dict[str, Any], path: Path) -> str:
    failing = [n for n, c in doc['checks'].items() if c['status'] != 'ok']
    return (
        f'jameyd {doc["version"]} at {path}: {doc["status"]}'
        f' (up {_duration(doc["uptime_s"])})'
        + (f'; not ok: {", ".join(failing)}' if failing else '')
    )


def _health_text(doc: dict[str, Any], path: Path) -> str:
    lines = [f'{doc["status"]}']
    for name, check in doc['checks'].items():
        facts = ', '.join(
            f'{k}={v}'
            for k, v in check.items()
            if k not in ('status', 'critical', 'external')
        )
        # .get: an older jameyd says nothing of external.
        marks = [m for m in ('critical', 'external') if check.get(m)]
        mark = f' ({", ".join(marks)})' if marks else ''
        lines.append(f'  {name:10} {check["status"]:9}{mark} {facts}'.rstrip())
    return '\n'.join(lines)


def _health_report(
    args: argparse.Namespace,
    client: Client,
    render: Callable[[dict[str, Any], Path], str],
) -> int:
    """Both status and health read /health/detailed; unhealthy exits 1."""
    reply = client.request('GET', '/health/detailed')
    doc = reply.document
    if not isinstance(doc, dict) or 'checks' not in doc:
        return refused(args, reply)
    emit(args, doc, render(doc, client.path))
    return EX_OK if reply.status == 200 else EX_REFUSED


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    return _health_report(args, client, _status_text)


def cmd_health(args: argparse.Namespace, client: Client) -> int:
    return _health_report(args, client, _health_text)


def cmd_config_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    path = config.config_path(args.config, environ)
    try:
        settings = config.load(path, environ)
    except ConfigError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        'valid': False,
                        'file': str(path) if path else None,
                        'errors': str(exc).splitlines(),
                    },
                    indent=2,
                )
            )
        print(f'jameyctl: invalid configuration:\n{exc}', file=sys.stderr)
        return EX_CONFIG
    values = config.as_dict(settings)
    source = str(path) if path else 'embedded defaults'
    human = [f'{source}: valid']
    for section, keys in values.items():
        human.append(f'[{section}]')
        human += [f'{k} = {json.dumps(v)}' for k, v in keys.items()]
    emit(
        args,
        {'valid': True, 'file': str(path) if path else None, 'settings': values},
        '\n'.join(human),
    )
    return EX_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='jameyctl', description='Drive jameyd.')
    parser.add_argument(
        '--socket',
        type=Path,
        metavar='PATH',
        help='socket of jameyd (default: $JAMEY_SOCKET, then $JAMEY_API_SOCKET,'
        f' then ./{DEV_SOCKET} if that socket exists, then {SYSTEM_SOCKET})',
    )
    parser.add_argument('--json', action='store_true', help='output for scripts')
    parser.add_argument('--timeout', type=float, default=10.0, metavar='SECONDS')
    parser.add_argument(
        '--version', action='version', version=f'jameyctl {__version__}'
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    commands.add_parser('status', help='is the daemon up, and how is it').set_defaults(
        run=cmd_status
    )
    commands.add_parser('health', help='every health check').set_defaults(
        run=cmd_health
    )
    config_cmd = commands.add_parser('config', help='the settings file')
    config_sub = config_cmd.add_subparsers(
        dest='action', required=True, metavar='ACTION'
    )
    check = config_sub.add_parser('check', help='validate settings without the daemon')
    check.add_argument(
        '--config',
        type=Path,
        metavar='FILE',
        help='file to check (default: as jameyd would find it)',
    )
    check.set_defaults(offline=cmd_config_check)
    conscience.register(commands)
    memory.register(commands)
    soul.register(commands)
    token.register(commands)
    vault.register(commands)
    storage.register(commands)
    chat.register(commands)
    _json_after_commands(parser)
    return parser


def _json_after_commands(parser: argparse.ArgumentParser) -> None:
    """``--json`` also after a command (``jameyctl token create x --json``):
    people put it where they think of it. Absent there, the global one holds."""
    # argparse has no public way to walk its subcommands.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument(
                    '--json',
                    action='store_true',
                    default=argparse.SUPPRESS,
                    help='output for scripts',
                )
                _json_after_commands(sub)


def main(argv: list[str] | None = None, layout: Layout = INSTALLED) -> int:
    """Run one command; ``layout`` is where an installed jameyd keeps its files."""
    args = _parser().parse_args(argv)
    environ = os.environ
    offline: Callable[[argparse.Namespace, Mapping[str, str]], int] | None = getattr(
        args, 'offline', None
    )
    if offline is not None:
        return offline(args, offline_environ(environ, layout))
    client = Client(
        args.socket or default_socket(environ),
        timeout=args.timeout,
        token=environ.get('JAMEY_TOKEN'),
    )
    try:
        return int(args.run(args, client))
    except DaemonUnreachableError as exc:
        print(f'jameyctl: {exc}', file=sys.stderr)
        return EX_UNAVAILABLE
    except BrokenPipeError:
        # Output piped into `head` and the like: the reader has what it wanted.
        sys.stderr.close()
        return EX_OK
