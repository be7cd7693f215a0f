"""``jameyctl token``: create, list, revoke API tokens (admin)."""

import argparse
import re
from typing import Any
from urllib.parse import quote

from jamey.cli.client import Client
from jamey.cli.output import answered

_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}
_DURATION = re.compile(r'([0-9]{1,6})([smhdw])')


def duration(text: str) -> int:
    """``90d``, ``12h``, ``1w2d``: a lifetime in seconds."""
    parts = _DURATION.findall(text)
    if not parts or ''.join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a duration such as 30m, 12h, 90d or 1w2d'
        )
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _token_line(token: dict[str, Any]) -> str:
    state = (
        'active' if token['active'] else 'revoked' if token['revoked_at'] else 'expired'
    )
    expires = token['expires_at'] or 'never'
    used = token['last_used_at'] or 'never'
    return (
        f'{token["id"]}  {token["name"]}  {token["scope"]}  {state}'
        f'  expires {expires}  last used {used}'
    )


def _created_text(doc: dict[str, Any]) -> str:
    return '\n'.join(
        [
            _token_line(doc),
            '',
            doc['token'],
            '',
            'This is the only time the token is shown; keep it somewhere safe.',
        ]
    )


def cmd_create(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, Any] = {'name': args.name, 'scope': args.scope}
    if args.expires is not None:
        body['expires_in_s'] = args.expires
    return answered(args, client.request('POST', '/tokens', body), 201, _created_text)


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    def text(doc: dict[str, Any]) -> str:
        return '\n'.join(map(_token_line, doc['tokens'])) or '(no tokens)'

    return answered(args, client.request('GET', '/tokens'), 200, text)


def cmd_revoke(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('DELETE', f'/tokens/{quote(args.id, safe="")}')
    return answered(args, reply, 200, _token_line)


def register(commands: Any) -> None:
    token = commands.add_parser('token', help='API tokens (admin)')
    actions = token.add_subparsers(dest='action', required=True, metavar='ACTION')
    create = actions.add_parser('create', help='create a token; shown only once')
    create.add_argument('name')
    create.add_argument('--scope', choices=('read', 'write', 'admin'), required=True)
    create.add_argument(
        '--expires', type=duration, metavar='DURATION', help='e.g. 12h, 90d, 1w'
    )
    create.set_defaults(run=cmd_create)
    actions.add_parser('list', help='every token').set_defaults(run=cmd_list)
    revoke = actions.add_parser('revoke', help='revoke a token at once')
    revoke.add_argument('id')
    revoke.set_defaults(run=cmd_revoke)
