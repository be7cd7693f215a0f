"""``jameyctl soul``: upsert, record, status, decay, delete."""

import argparse
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

from jamey.cli.client import Client
from jamey.cli.output import answered

NO_EMOTION = '😶'


def _path(name: str, tail: str = '') -> str:
    return f'/soul/entities/{quote(name, safe="")}{tail}'


def _dominant(entity: dict[str, Any]) -> tuple[str, str]:
    dominant = entity.get('dominant_emotion')
    if not dominant:
        return NO_EMOTION, 'none yet'
    return dominant['emoji'], dominant['name']


def entity_text(entity: dict[str, Any]) -> str:
    """One entity as the original printed it: emoji first, a fact a line."""
    emoji, dominant = _dominant(entity)
    last = entity['last_interaction'] or 'never'
    emotions = ', '.join(f'{k} {v:.2f}' for k, v in entity['emotions'].items())
    return '\n'.join(
        [
            f'👤 {entity["name"]}',
            f'  🤝 trust         {entity["trust"]:.3f}',
            f'  💞 empathy       {entity["empathy"]:.3f}'
            f' ({entity["empathy_description"]})',
            f'  {emoji} dominant      {dominant}'
            + (f' [{emotions}]' if emotions else ''),
            f'  ⏳ decay rate    {entity["decay_rate"]:g} per hour',
            f'  🔁 interactions  {entity["interaction_count"]} (last {last})',
            f'  🧠 memories      {entity["linked_memories"]}',
        ]
    )


def _page_text(page: dict[str, Any]) -> str:
    if not page['entities']:
        return '(no entities)'
    lines = []
    for entity in page['entities']:
        emoji, _ = _dominant(entity)
        lines.append(
            f'{emoji} {entity["name"]}  trust {entity["trust"]:.3f}'
            f'  empathy {entity["empathy"]:.3f} ({entity["empathy_description"]})'
            f'  {entity["interaction_count"]} interactions'
        )
    shown = page['offset'] + len(page['entities'])
    if shown < page['total']:
        lines.append(f'({shown} of {page["total"]}; --offset {shown} for more)')
    return '\n'.join(lines)


def cmd_upsert(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('PUT', _path(args.name), {'trust': args.trust})
    expected = 201 if reply.status == 201 else 200
    return answered(args, reply, expected, entity_text)


def cmd_record(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, Any] = {'emotion': args.emotion, 'source': 'manual'}
    if args.intensity is not None:
        body['intensity'] = args.intensity
    reply = client.request('POST', _path(args.name, '/emotions'), body)
    return answered(args, reply, 201, entity_text)


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    if args.name is not None:
        return answered(args, client.request('GET', _path(args.name)), 200, entity_text)
    query = urlencode(
        {
            'sort': args.sort,
            'order': args.order,
            'limit': args.limit,
            'offset': args.offset,
        }
    )
    reply = client.request('GET', f'/soul/entities?{query}')
    return answered(args, reply, 200, _page_text)


def cmd_decay(args: argparse.Namespace, client: Client) -> int:
    def text(doc: dict[str, Any]) -> str:
        pruned = ', '.join(doc['pruned']) or 'none'
        return f'⏳ decayed {doc["decayed"]} entities; pruned: {pruned}'

    return answered(args, client.request('POST', '/soul/decay'), 200, text)


def cmd_delete(args: argparse.Namespace, client: Client) -> int:
    query = '?forget_memories=true' if args.forget_memories else ''
    reply = client.request('DELETE', _path(args.name) + query)

    def text(doc: dict[str, Any]) -> str:
        return (
            f'🗑 deleted {doc["name"]}: {doc["emotions"]} emotions,'
            f' {doc["links"]} memory links, {doc["memories_forgotten"]} memories'
            ' forgotten'
        )

    return answered(args, reply, 200, text)


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'{text} is not from 0 to 1')
    return value


def register(commands: Any) -> None:
    soul = commands.add_parser('soul', help='entities, trust and emotions')
    actions = soul.add_subparsers(dest='action', required=True, metavar='ACTION')
    upsert = actions.add_parser('upsert', help='create an entity or set its trust')
    upsert.add_argument('name')
    upsert.add_argument('trust', type=_unit, help='from 0 to 1')
    upsert.set_defaults(run=cmd_upsert)
    record = actions.add_parser('record', help='record an emotion about an entity')
    record.add_argument('name')
    record.add_argument(
        'emotion',
        help='joy, sadness, anger, neutral, love; happy, sad, angry; or 😊 😢 😡 😐 😍',
    )
    record.add_argument('--intensity', type=_unit, help='from 0 to 1')
    record.set_defaults(run=cmd_record)
    status = actions.add_parser('status', help='one entity, or a page of them')
    status.add_argument('name', nargs='?')
    status.add_argument(
        '--sort',
        choices=('trust', 'last_interaction', 'name'),
        default='last_interaction',
    )
    status.add_argument('--order', choices=('asc', 'desc'), default='desc')
    status.add_argument('--limit', type=int, default=20)
    status.add_argument('--offset', type=int, default=0)
    status.set_defaults(run=cmd_status)
    actions.add_parser('decay', help='apply trust decay now').set_defaults(
        run=cmd_decay
    )
    delete = actions.add_parser('delete', help='remove an entity')
    delete.add_argument('name')
    delete.add_argument(
        '--forget-memories', action='store_true', help='forget its memories too'
    )
    delete.set_defaults(run=cmd_delete)
