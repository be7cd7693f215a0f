"""``jameyctl storage check``: the full check of the database, through the
daemon (which keeps serving while it runs)."""

import argparse
import sys
import time
from typing import Any

from jamey.cli.client import Client
from jamey.cli.output import EX_OK
from jamey.cli.output import EX_REFUSED
from jamey.cli.output import emit
from jamey.cli.output import refused

# How often the state is asked for while a check runs.
POLL_S = 0.5


def _finding_text(state: dict[str, Any]) -> str:
    last = state['last']
    if last is None:
        return 'no full check has finished yet'
    lines = [
        f'{last["status"]}: checked at {last["started_at"]} in {last["seconds"]} s'
    ]
    lines += [f'  problem: {p}' for p in last['problems']]
    lines += [f'  damaged row: {r}' for r in last['damaged_rows']]
    if last['status'] != 'ok':
        lines.append(
            '  remedy: delete the damaged rows, or restore the newest backup'
            ' (jameyctl vault restore)'
        )
    return '\n'.join(lines)


def cmd_check(args: argparse.Namespace, client: Client) -> int:
    """Ask for a check and, unless ``--no-wait``, wait for its finding;
    damage exits 1."""
    reply = client.request('POST', '/storage/check')
    if reply.status != 202 or not isinstance(reply.document, dict):
        return refused(args, reply)
    before = reply.document['last']
    deadline = time.monotonic() + args.wait
    state = reply.document
    while not args.no_wait and state['running']:
        if time.monotonic() > deadline:
            print(
                f'jameyctl: the check still runs after {args.wait:g} s;'
                ' see jameyctl storage status',
                file=sys.stderr,
            )
            return EX_REFUSED
        time.sleep(POLL_S)
        reply = client.request('GET', '/storage/check')
        if reply.status != 200 or not isinstance(reply.document, dict):
            return refused(args, reply)
        state = reply.document
    if args.no_wait:
        emit(args, state, 'asked for; jameyctl storage status shows the finding')
        return EX_OK
    last = state['last']
    if last is None or last == before:
        print(
            'jameyctl: the check did not finish; the daemon log says why',
            file=sys.stderr,
        )
        return EX_REFUSED
    emit(args, state, _finding_text(state))
    return EX_OK if last['status'] == 'ok' else EX_REFUSED


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    """The last finding; damage exits 1."""
    reply = client.request('GET', '/storage/check')
    if reply.status != 200 or not isinstance(reply.document, dict):
        return refused(args, reply)
    state = reply.document
    running = ' (a check runs now)' if state['running'] else ''
    emit(args, state, _finding_text(state) + running)
    last = state['last']
    return EX_REFUSED if last is not None and last['status'] != 'ok' else EX_OK


def register(commands: Any) -> None:
    storage = commands.add_parser('storage', help='the database')
    actions = storage.add_subparsers(dest='action', required=True, metavar='ACTION')
    check = actions.add_parser(
        'check',
        help="full check: SQLite's integrity_check and every row's checksum",
    )
    check.add_argument(
        '--wait',
        type=float,
        default=3600.0,
        metavar='SECONDS',
        help='longest to wait for the finding (default 3600)',
    )
    check.add_argument('--no-wait', action='store_true', help='only ask for the check')
    check.set_defaults(run=cmd_check)
    actions.add_parser('status', help='the last full check').set_defaults(
        run=cmd_status
    )
