"""``jameyctl memory``: store, search, get, forget, stats, reindex."""

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

from jamey.cli.client import Client
from jamey.cli.output import EX_USAGE
from jamey.cli.output import answered


def _memory_text(memory: dict[str, Any]) -> str:
    who = f' [{memory["entity"]}]' if memory.get('entity') else ''
    score = memory.get('score')
    scored = f' score {score:.3f}' if isinstance(score, float) else ''
    if memory.get('context_of'):
        scored = ' (context)'
    return (
        f'{memory["id"]}  {memory["layer"]:10} {memory["created_at"]}{who}{scored}\n'
        f'  {memory["content"]}'
    )


def _list_text(doc: dict[str, Any]) -> str:
    return '\n'.join(_memory_text(m) for m in doc['memories']) or '(nothing found)'


def _stats_text(doc: dict[str, Any]) -> str:
    layers = ', '.join(f'{layer} {count}' for layer, count in doc['layers'].items())
    lines = [
        f'{doc["total"]} memories: {layers}',
        f'index: {doc["index_documents"]} documents, lag {doc["lag"]},'
        f' {doc["index_bytes"]} bytes; database {doc["database_bytes"]} bytes',
    ]
    if doc.get('rebuilt_at'):
        lines.append(f'index rebuilt at {doc["rebuilt_at"]}')
    return '\n'.join(lines)


def cmd_store(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, Any] = {'content': args.content, 'layer': args.layer}
    if args.entity is not None:
        body['entity'] = args.entity
    if args.metadata is not None:
        try:
            body['metadata'] = json.loads(args.metadata)
        except ValueError:
            print('jameyctl: --metadata must be a JSON object', file=sys.stderr)
            return EX_USAGE
    return answered(args, client.request('POST', '/memories', body), 201, _memory_text)


def cmd_search(args: argparse.Namespace, client: Client) -> int:
    params = {
        'q': args.query,
        'match': 'all' if args.all else None,
        'context': args.context,
        'layer': args.layer,
        'entity': args.entity,
        'since': args.since,
        'until': args.until,
        'limit': args.limit,
        'consistent': 'true' if args.consistent else None,
    }
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return answered(args, client.request('GET', f'/memories?{query}'), 200, _list_text)


def cmd_get(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('GET', f'/memories/{quote(args.id, safe="")}')
    return answered(args, reply, 200, _memory_text)


def cmd_forget(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('DELETE', f'/memories/{quote(args.id, safe="")}')
    return answered(args, reply, 204, lambda _: f'forgot {args.id}')


def cmd_stats(args: argparse.Namespace, client: Client) -> int:
    return answered(args, client.request('GET', '/memories/stats'), 200, _stats_text)


def cmd_reindex(args: argparse.Namespace, client: Client) -> int:
    return answered(args, client.request('POST', '/memories/reindex'), 200, _stats_text)


def register(commands: Any) -> None:
    memory = commands.add_parser('memory', help='the five-layer memory')
    actions = memory.add_subparsers(dest='action', required=True, metavar='ACTION')
    store = actions.add_parser('store', help='keep a memory')
    store.add_argument('content')
    store.add_argument('--layer', default='short_term')
    store.add_argument('--entity')
    store.add_argument('--metadata', metavar='JSON')
    store.set_defaults(run=cmd_store)
    search = actions.add_parser('search', help='search (or list the newest)')
    search.add_argument('query', nargs='?')
    search.add_argument(
        '--all',
        action='store_true',
        help='only memories with every word (default: any word, ranked)',
    )
    search.add_argument(
        '--context',
        type=int,
        metavar='N',
        help="each hit's N neighbours before and after it (0-5)",
    )
    search.add_argument('--layer')
    search.add_argument('--entity')
    search.add_argument('--since', metavar='TIME')
    search.add_argument('--until', metavar='TIME')
    search.add_argument('--limit', type=int)
    search.add_argument(
        '--consistent',
        action='store_true',
        help='wait until everything stored before is searchable',
    )
    search.set_defaults(run=cmd_search)
    for name, run, text in (
        ('get', cmd_get, 'one memory'),
        ('forget', cmd_forget, 'forget a memory'),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument('id')
        action.set_defaults(run=run)
    actions.add_parser('stats', help='counts, index, lag, sizes').set_defaults(
        run=cmd_stats
    )
    actions.add_parser(
        'reindex', help='rebuild the index from the database'
    ).set_defaults(run=cmd_reindex)
