"""``jameyctl evaluate`` and ``jameyctl rules``."""

import argparse
from typing import Any
from urllib.parse import quote

from jamey.cli.client import Client
from jamey.cli.output import answered


def marked(action: str, findings: list[dict[str, Any]]) -> str:
    """The action with every matched phrase in [brackets]."""
    spans = sorted({(f['start'], f['end']) for f in findings})
    out, at = [], 0
    for start, end in spans:
        if start < at:  # overlapping matches: mark the first only
            continue
        out += [action[at:start], '[', action[start:end], ']']
        at = end
    return ''.join([*out, action[at:]])


def _nearest(label: str, nearest: dict[str, Any] | None) -> str:
    if nearest is None:
        return f'{label} (none)'
    return f'{label} {nearest["similarity"]:.2f} "{nearest["text"]}"'


def _evaluation_text(doc: dict[str, Any]) -> str:
    lines = [
        f'{doc["verdict"]}  score {doc["score"]:g}  decided by {doc["layer"]}'
        f'  (rules version {doc["rules_version"]})',
        marked(doc['action'], doc['findings']),
    ]
    by = 'the guard model' if doc['layer'] == 'guard' else 'a counterexample'
    for f in doc['findings']:
        negated = ' (negated)' if f['negated'] else ''
        overruled = f' (overruled by {by})' if f['overruled'] else ''
        lines.append(
            f'  {f["rule"]:16} {f["polarity"]:11} "{f["phrase"]}"{negated}'
            f'{overruled}  chars {f["start"]}-{f["end"]}'
        )
    for m in doc['meaning']:
        if m['outcome'] == 'unsure':
            continue
        lines.append(
            f'  {m["rule"]:16} {m["outcome"]:11}'
            f' {_nearest("example", m["example"])},'
            f' {_nearest("counterexample", m["counterexample"])}'
        )
    guard = doc.get('guard')
    if guard is not None and guard['outcome'] == 'answered':
        violated = ', '.join(guard['violated']) or 'nothing'
        lines.append(f'  guard model: violated {violated} ({guard["latency_ms"]:g} ms)')
    elif guard is not None:
        lines.append(f'  guard model failed: {guard["error"]}')
    if doc.get('entity') is not None:
        emotion = doc['emotion']
        lines.append(
            f'{emotion["emoji"]} {doc["entity"]}: {emotion["name"]}'
            f' {emotion["intensity"]:.2f}, trust now {doc["trust"]:.3f}'
        )
        if doc.get('strictness'):
            lines.append(f'⚖ judged strictly: {doc["strictness"]["reason"]}')
    return '\n'.join(lines)


def cmd_evaluate(args: argparse.Namespace, client: Client) -> int:
    body = {'action': args.text}
    if args.entity is not None:
        body['entity'] = args.entity
    reply = client.request('POST', '/evaluate', body)
    return answered(args, reply, 200, _evaluation_text)


def _rule_text(rule: dict[str, Any]) -> str:
    state = 'enabled' if rule['enabled'] else 'disabled'
    lines = [
        f'{rule["name"]}  weight {rule["weight"]:g}  {state}',
        f'  {rule["description"]}',
        f'  violations:   {", ".join(rule["violations"]) or "(none)"}',
        f'  affirmations: {", ".join(rule["affirmations"]) or "(none)"}',
        f'  examples:        {len(rule["examples"])}',
        *(f'    - {text}' for text in rule['examples']),
        f'  counterexamples: {len(rule["counterexamples"])}',
        *(f'    - {text}' for text in rule['counterexamples']),
    ]
    lines += [f'  warning: {w}' for w in rule.get('warnings', [])]
    return '\n'.join(lines)


def _rules_text(doc: dict[str, Any]) -> str:
    rows = [f'rules version {doc["rules_version"]}']
    for r in doc['rules']:
        state = 'on' if r['enabled'] else 'off'
        rows.append(
            f'{r["name"]:24} {r["weight"]:>6g} {state:3}'
            f' {len(r["violations"]):>4}v {len(r["affirmations"]):>4}a'
            f' {len(r["examples"]):>4}e {len(r["counterexamples"]):>4}c'
            f'  {r["description"]}'
        )
    return '\n'.join(rows)


def cmd_rules_list(args: argparse.Namespace, client: Client) -> int:
    return answered(args, client.request('GET', '/rules'), 200, _rules_text)


def _path(name: str) -> str:
    return f'/rules/{quote(name, safe="")}'


def cmd_rules_show(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('GET', _path(args.name))
    return answered(args, reply, 200, _rule_text)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    fields = (
        'description',
        'weight',
        'violations',
        'affirmations',
        'examples',
        'counterexamples',
        'enabled',
    )
    for field in fields:
        value = getattr(args, field, None)
        if value is not None:
            body[field] = value
    return body


def cmd_rules_add(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('POST', '/rules', {'name': args.name, **_changes(args)})
    return answered(args, reply, 201, _rule_text)


def cmd_rules_update(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('PUT', _path(args.name), _changes(args))
    return answered(args, reply, 200, _rule_text)


def cmd_rules_remove(args: argparse.Namespace, client: Client) -> int:
    reply = client.request('DELETE', _path(args.name))
    return answered(args, reply, 204, lambda _: f'removed {args.name}')


def _rule_options(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument('name')
    parser.add_argument('--description', required=adding)
    parser.add_argument('--weight', type=float, required=adding)
    parser.add_argument(
        '--violation',
        dest='violations',
        action='append',
        metavar='PHRASE',
        help='repeat for each; replaces the list',
    )
    parser.add_argument(
        '--affirmation',
        dest='affirmations',
        action='append',
        metavar='PHRASE',
        help='repeat for each; replaces the list',
    )
    parser.add_argument(
        '--example',
        dest='examples',
        action='append',
        metavar='TEXT',
        help='a text that violates the rule; repeat for each; replaces the list',
    )
    parser.add_argument(
        '--counterexample',
        dest='counterexamples',
        action='append',
        metavar='TEXT',
        help='a look-alike that does not; repeat for each; replaces the list',
    )
    state = parser.add_mutually_exclusive_group()
    state.add_argument('--enable', dest='enabled', action='store_const', const=True)
    state.add_argument('--disable', dest='enabled', action='store_const', const=False)


def register(commands: Any) -> None:
    evaluate = commands.add_parser('evaluate', help='judge an action')
    evaluate.add_argument('text', help='the action, in words')
    evaluate.add_argument('--entity', metavar='NAME', help='who the action concerns')
    evaluate.set_defaults(run=cmd_evaluate)

    rules = commands.add_parser('rules', help='the conscience rules')
    actions = rules.add_subparsers(dest='action', required=True, metavar='ACTION')
    actions.add_parser('list', help='every rule').set_defaults(run=cmd_rules_list)
    show = actions.add_parser('show', help='one rule')
    show.add_argument('name')
    show.set_defaults(run=cmd_rules_show)
    add = actions.add_parser('add', help='add a rule')
    _rule_options(add, adding=True)
    add.set_defaults(run=cmd_rules_add)
    update = actions.add_parser('update', help='change a rule')
    _rule_options(update, adding=False)
    update.set_defaults(run=cmd_rules_update)
    remove = actions.add_parser('remove', help='remove a rule')
    remove.add_argument('name')
    remove.set_defaults(run=cmd_rules_remove)
