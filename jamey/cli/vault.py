"""``jameyctl vault``: backup through the daemon; the rest works offline.

``list``, ``verify``, ``restore``, ``prune``, ``rekey`` and ``keygen`` read
the same settings jameyd reads (``--config``, ``$JAMEY_CONFIG``, ...) and
work on the files directly, so a device whose daemon is stopped (or whose
database is lost) can still be restored. ``list`` and ``prune`` read only
the backups' headers and need no key.
"""

import argparse
import sys
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from typing import NamedTuple

from jamey import config
from jamey import vault
from jamey.cli.client import Client
from jamey.cli.output import EX_CONFIG
from jamey.cli.output import EX_OK
from jamey.cli.output import EX_REFUSED
from jamey.cli.output import EX_USAGE
from jamey.cli.output import answered
from jamey.cli.output import emit
from jamey.errors import ConfigError
from jamey.errors import CredentialUnavailableError
from jamey.errors import StateLockedError
from jamey.errors import VaultError
from jamey.memory import INDEX_DIR
from jamey.vault import keys
from jamey.vault.keys import Keyring

Offline = Callable[[argparse.Namespace, Mapping[str, str]], int]


class Context(NamedTuple):
    """What an offline command works with: the settings as jameyd reads them."""

    environ: Mapping[str, str]
    settings: config.Settings
    vault: vault.Vault
    config_file: Path | None


def _size(count: int) -> str:
    value = float(count)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if value < 1024 or unit == 'GiB':
            return f'{value:.1f} {unit}' if unit != 'B' else f'{count} B'
        value /= 1024
    raise AssertionError('unreachable')


def backup_line(backup: dict[str, Any]) -> str:
    return (
        f'{backup["id"]}  {backup["created_at"]}  {_size(backup["size_bytes"])}'
        f'  {backup["key_mode"]} {backup["key_id"]}  {backup["cipher"]}'
    )


def cmd_backup(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('POST', '/vault/backups')
    return answered(
        args, reply, 201, lambda doc: f'💾 made and verified: {backup_line(doc)}'
    )


def _fail(args: argparse.Namespace, error: object, code: str, status: int) -> int:
    if args.json:
        emit(args, {'ok': False, 'code': code, 'detail': str(error)}, '')
    print(f'jameyctl: {error}', file=sys.stderr)
    return status


def offline(
    run: Callable[[argparse.Namespace, Context], int], key: bool = True
) -> Offline:
    """Load the settings as jameyd would, open the vault, run; map errors.

    ``key``: the command decrypts, so it reads the configured key, unless
    ``--private-key`` gives the one to use (without ``key``, none is read).
    """

    def wrapper(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
        path = config.config_path(args.config, environ)
        try:
            settings = config.load(path, environ)
            read_key = key and args.private_key is None
            store = vault.open_vault(settings, environ, path, read_key)
            return run(args, Context(environ, settings, store, path))
        except StateLockedError as exc:
            return _fail(args, f'{exc}: stop it first', 'daemon_running', EX_REFUSED)
        except CredentialUnavailableError as exc:
            hint = '; for backups made in recipient mode, give --private-key FILE'
            return _fail(args, f'{exc}{hint}', exc.code, EX_CONFIG)
        except ConfigError as exc:  # a key file without a key is one too
            code = getattr(exc, 'code', 'invalid_configuration')
            return _fail(args, exc, code, EX_CONFIG)
        except VaultError as exc:
            return _fail(args, exc, exc.code, EX_REFUSED)
        except OSError as exc:
            return _fail(args, exc, 'os_error', EX_REFUSED)

    return wrapper


def _private_key(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> Keyring | None:
    if args.private_key is None:
        return None
    # A file named on the command line is a file, never a credential name.
    return vault.private_keyring(args.private_key.absolute(), environ)


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    backups, unreadable = ctx.vault.backups()
    document = {
        'backups': [b.as_dict() for b in backups],
        'unreadable': [u.as_dict() for u in unreadable],
    }
    lines = [backup_line(b.as_dict()) for b in backups] or [
        f'(no backups in {ctx.vault.directory})'
    ]
    lines += [f'unreadable: {u.file}: {u.detail} ({u.code})' for u in unreadable]
    emit(args, document, '\n'.join(lines))
    return EX_OK


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    report = ctx.vault.verify(args.id, _private_key(args, ctx.environ))
    parts = ', '.join(f'{c["name"]} {_size(c["size"])}' for c in report['components'])
    emit(
        args,
        report,
        f'✅ {report["id"]}: {report["chunks"]} chunks authenticated, {parts},'
        f' integrity ok (schema {report["schema_version"]})',
    )
    return EX_OK


def cmd_restore(args: argparse.Namespace, ctx: Context) -> int:
    state_dir = ctx.settings.storage.state_dir
    if not args.yes:
        print(
            f'jameyctl: restore replaces the database in {state_dir} (the current'
            ' one is kept aside) and the config file; run again with --yes',
            file=sys.stderr,
        )
        return EX_USAGE
    report = ctx.vault.restore(
        args.id,
        state_dir,
        (state_dir / INDEX_DIR,),
        ctx.config_file,
        _private_key(args, ctx.environ),
        args.from_device,
    )
    lines = [f'♻️  restored {report["id"]} into {state_dir}']
    if report['device'] is not None and report['device'] != ctx.vault.device:
        lines.append(f'  made by device {report["device"]}')
    if report['previous_database']:
        lines.append(f'  previous database kept as {report["previous_database"]}')
    if report['config_restored']:
        lines.append(f'  config restored to {report["config_restored"]}')
    lines.append('  the search index is rebuilt when jameyd starts')
    emit(args, report, '\n'.join(lines))
    return EX_OK


def cmd_prune(args: argparse.Namespace, ctx: Context) -> int:
    removed = ctx.vault.prune()
    emit(
        args,
        {'removed': removed},
        '\n'.join(f'🗑 {i}' for i in removed) or '(nothing to prune)',
    )
    return EX_OK


def _new_keyring(args: argparse.Namespace, environ: Mapping[str, str]) -> Keyring:
    source = config.VaultSettings(
        key_file=_file(args.new_key_file),
        passphrase_file=_file(args.new_passphrase_file),
        recipient_file=_file(args.new_recipient_file),
    )
    ring = vault.keyring(source, environ)
    assert ring is not None  # argparse requires one of the three
    return ring


def _file(value: Path | None) -> str:
    """A file named on the command line, never a credential name ('' if none)."""
    return str(value.absolute()) if value else ''


def cmd_rekey(args: argparse.Namespace, ctx: Context) -> int:
    results = ctx.vault.rekey(
        _new_keyring(args, ctx.environ), _private_key(args, ctx.environ)
    )
    lines = [f'{r["status"]:8} {r["id"]}  {r["dir"]}' for r in results]
    lines.append('now point the [vault] key setting at the new key')
    emit(args, {'backups': results}, '\n'.join(lines))
    return EX_OK


def cmd_keygen(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        written = keys.generate(args.path, args.recipient)
    except OSError as exc:
        return _fail(args, exc, 'cannot_write', EX_REFUSED)
    emit(
        args,
        {'written': [str(p) for p in written]},
        '\n'.join(f'🔑 wrote {p} (mode 0600)' for p in written)
        + (
            f'\nput {written[-1]} on the device (vault.recipient_file);'
            f' keep {written[0]} elsewhere'
            if args.recipient
            else ''
        ),
    )
    return EX_OK


def _with_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--config',
        type=Path,
        metavar='FILE',
        help='settings file (default: as jameyd finds it)',
    )


def _with_private_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--private-key',
        type=Path,
        metavar='FILE',
        help='the recipient private key, for backups made in recipient mode',
    )


def register(commands: Any) -> None:
    group = commands.add_parser('vault', help='encrypted backups')
    actions = group.add_subparsers(dest='action', required=True, metavar='ACTION')
    actions.add_parser('backup', help='back up now (through jameyd)').set_defaults(
        run=cmd_backup
    )
    listing = actions.add_parser(
        'list', help='the backups, from their headers (offline, no key needed)'
    )
    _with_config(listing)
    listing.set_defaults(offline=offline(cmd_list, key=False))
    verify = actions.add_parser('verify', help='decrypt and check a backup (offline)')
    verify.add_argument('id')
    _with_config(verify)
    _with_private_key(verify)
    verify.set_defaults(offline=offline(cmd_verify))
    restore = actions.add_parser(
        'restore', help='replace the database by a backup (jameyd stopped)'
    )
    restore.add_argument('id')
    restore.add_argument('--yes', action='store_true', help='yes, replace it')
    restore.add_argument(
        '--from-device',
        metavar='DEVICE',
        help='restore a backup that device DEVICE made (its state and config'
        " replace this device's)",
    )
    _with_config(restore)
    _with_private_key(restore)
    restore.set_defaults(offline=offline(cmd_restore))
    prune = actions.add_parser(
        'prune', help='apply the retention rules (offline, no key needed)'
    )
    _with_config(prune)
    prune.set_defaults(offline=offline(cmd_prune, key=False))
    rekey = actions.add_parser('rekey', help='re-encrypt every backup to a new key')
    new = rekey.add_mutually_exclusive_group(required=True)
    new.add_argument('--new-key-file', type=Path, metavar='FILE')
    new.add_argument('--new-passphrase-file', type=Path, metavar='FILE')
    new.add_argument('--new-recipient-file', type=Path, metavar='FILE')
    _with_config(rekey)
    _with_private_key(rekey)
    rekey.set_defaults(offline=offline(cmd_rekey))
    keygen = actions.add_parser('keygen', help='write a new key file (mode 0600)')
    keygen.add_argument('path', type=Path)
    keygen.add_argument(
        '--recipient',
        action='store_true',
        help='write a private key at PATH and its public key at PATH.pub',
    )
    keygen.set_defaults(offline=cmd_keygen)
