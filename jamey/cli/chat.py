"""``jameyctl chat``: talk to Jamey in a REPL, with jameyctl's commands at hand.

Lines are messages for ``POST /chat``; lines starting with ``/`` are
commands. The commands that mirror jameyctl (``/rules``, ``/memory``,
``/conscience``, ``/soul``) are parsed by the same parsers and run by the same
functions as ``jameyctl rules list``, ``memory search``, ``evaluate`` and
``soul``. Ctrl-C abandons the request in flight (jameyd still finishes the
turn, so it is remembered) and the REPL goes on; Ctrl-D leaves.
"""

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jamey.cli import conscience
from jamey.cli import memory
from jamey.cli import soul
from jamey.cli.client import Client
from jamey.cli.client import DaemonUnreachableError
from jamey.cli.conscience import marked
from jamey.cli.output import EX_OK
from jamey.cli.output import refused

# A turn waits for the model: far longer than other commands.
TURN_TIMEOUT_S = 120.0
HISTORY_FILE = '.jamey_chat_history'
HISTORY_LINES = 1000
TRANSCRIPT_FORMAT = 'jamey-chat-transcript/1'
HELP = """\
Type a message to talk; commands start with /:
  /help                 this text
  /exit, /quit          leave (so does Ctrl-D)
  /clear                end the session: forget its working memory
  /rules                the conscience rules
  /memory [QUERY]       search memory (or list the newest)
  /conscience TEXT      judge TEXT without saying it
  /soul ACTION ...      as jameyctl soul (upsert, record, status, decay, delete)
  /save FILE            write the conversation to FILE
  /load FILE            show a saved conversation and carry on its session
Ctrl-C cancels a reply that is taking too long."""


def _commands() -> argparse.ArgumentParser:
    """jameyctl's own parsers for the commands it shares with the REPL."""
    parser = argparse.ArgumentParser(prog='/', add_help=False, exit_on_error=False)
    commands = parser.add_subparsers(dest='command', required=True)
    conscience.register(commands)
    memory.register(commands)
    soul.register(commands)
    return parser


def _history(path: Path | None, save: bool) -> None:
    """Line editing and history come with readline where Python has it."""
    try:
        import readline  # noqa: PLC0415 - only an interactive REPL needs it
    except ImportError:
        return
    if path is None:
        return
    try:
        if save:
            readline.set_history_length(HISTORY_LINES)
            readline.write_history_file(path)
        elif path.exists():
            readline.read_history_file(path)
    except OSError as exc:
        print(f'jameyctl: history {path}: {exc.strerror}', file=sys.stderr)


def _turn_text(doc: dict[str, Any]) -> str:
    """What a person reads of a turn: the reply or why none, the verdict,
    what was recalled."""
    evaluation = doc['judged']['evaluation']
    lines = []
    if doc['reply'] is not None:
        lines.append(f'jamey> {doc["reply"]}')
    else:
        lines.append(f'⛔ {doc["explanation"]}')
    if doc['outcome'] == 'refused':
        lines.append(f'   {marked(evaluation["action"], evaluation["findings"])}')
    scope = doc['judged']['scope']
    lines.append(
        f'⚖ {evaluation["verdict"]} (score {evaluation["score"]:g}, {scope}'
        f' of {doc["judged"]["turns"]} turn(s)); decision {evaluation["decision_id"]}'
    )
    if 'emotion' in evaluation:
        emotion = evaluation['emotion']
        lines.append(
            f'{emotion["emoji"]} {doc["entity"]}: {emotion["name"]},'
            f' trust {evaluation["trust"]:.3f}'
        )
    lines += [f'🧠 {m["content"][:120]}' for m in doc['recalled']]
    return '\n'.join(lines)


class Repl:
    """One conversation: its session, its transcript, its commands."""

    def __init__(self, args: argparse.Namespace, client: Client) -> None:
        self.args = args
        self.client = Client(
            client.path, max(client.timeout, TURN_TIMEOUT_S), client.token
        )
        self.entity: str | None = args.entity
        self.session: str | None = args.session
        self.transcript: list[dict[str, Any]] = []
        self.parser = _commands()
        self.handlers: dict[str, Callable[[str], int | None]] = {
            '/help': lambda _: print(HELP),
            '/exit': self._leave,
            '/quit': self._leave,
            '/clear': self._clear,
            '/rules': lambda _: self._jameyctl(['rules', 'list']),
            '/memory': lambda rest: self._jameyctl(
                # What was just said is searchable too.
                ['memory', 'search', '--consistent', *([rest] if rest else [])]
            ),
            '/conscience': self._conscience,
            '/soul': lambda rest: self._jameyctl(['soul', *shlex.split(rest)]),
            '/save': self._save,
            '/load': self._load,
        }

    def run(self) -> int:
        while True:
            try:  # the prompt names who talks, which /load can change
                line = input(f'{self.entity or "you"}> ').strip()
            except EOFError:
                print()
                return EX_OK
            except KeyboardInterrupt:
                print()
                continue
            if not line:
                continue
            try:
                code = self._line(line)
            except KeyboardInterrupt:
                print('\n(cancelled)')
                continue
            except DaemonUnreachableError as exc:
                print(f'jameyctl: {exc}', file=sys.stderr)
                continue
            if code is not None:
                return code

    def _line(self, line: str) -> int | None:
        if not line.startswith('/'):
            self._say(line)
            return None
        name, _, rest = line.partition(' ')
        handler = self.handlers.get(name)
        if handler is None:
            print(f'unknown command {name}; /help lists them', file=sys.stderr)
            return None
        try:
            return handler(rest.strip())
        except ValueError as exc:  # shlex: unbalanced quotes
            print(f'{name}: {exc}', file=sys.stderr)
            return None

    def _leave(self, rest: str) -> int:
        return EX_OK

    def _say(self, message: str) -> None:
        body: dict[str, Any] = {'message': message}
        if self.entity is not None:
            body['entity'] = self.entity
        if self.session is not None:
            body['session'] = self.session
        reply = self.client.request('POST', '/chat', body)
        if reply.status != 200:
            refused(self.args, reply)
            return
        doc = reply.document
        self.session = doc['session']
        self.transcript.append(
            {
                'turn': doc['turn'],
                'message': message,
                'outcome': doc['outcome'],
                'reply': doc['reply'],
                'explanation': doc['explanation'],
            }
        )
        self._show(doc, _turn_text(doc))

    def _show(self, doc: Any, human: str) -> None:
        print(json.dumps(doc, ensure_ascii=False) if self.args.json else human)

    def _jameyctl(self, argv: list[str]) -> None:
        try:
            parsed = self.parser.parse_args(argv)
        except (argparse.ArgumentError, SystemExit) as exc:
            if isinstance(exc, argparse.ArgumentError):
                print(f'/{argv[0]}: {exc}', file=sys.stderr)
            return
        parsed.json = self.args.json
        parsed.run(parsed, self.client)

    def _conscience(self, rest: str) -> None:
        if not rest:
            print('/conscience needs the text to judge', file=sys.stderr)
            return
        entity = ['--entity', self.entity] if self.entity else []
        self._jameyctl(['evaluate', rest, *entity])

    def _clear(self, rest: str) -> None:
        if self.session is None:
            print('(no session yet)')
            return
        reply = self.client.request(
            'DELETE', f'/chat/sessions/{quote(self.session, safe="")}'
        )
        if reply.status != 200:
            refused(self.args, reply)
            return
        self._show(
            reply.document,
            f'session {self.session} ended: {reply.document["forgotten"]}'
            ' working memories forgotten',
        )
        self.session = None
        self.transcript = []

    def _save(self, rest: str) -> None:
        if not rest:
            print('/save needs a file name', file=sys.stderr)
            return
        document = {
            'format': TRANSCRIPT_FORMAT,
            'session': self.session,
            'entity': self.entity,
            'turns': self.transcript,
        }
        path = Path(os.path.expanduser(rest))
        try:
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + '\n')
        except OSError as exc:
            print(f'/save: {path}: {exc.strerror}', file=sys.stderr)
            return
        print(f'saved {len(self.transcript)} turn(s) to {path}')

    def _load(self, rest: str) -> None:
        if not rest:
            print('/load needs a file name', file=sys.stderr)
            return
        path = Path(os.path.expanduser(rest))
        try:
            document = _transcript(path.read_text())
        except OSError as exc:
            print(f'/load: {path}: {exc.strerror}', file=sys.stderr)
            return
        except ValueError as exc:
            print(f'/load: {path}: {exc}', file=sys.stderr)
            return
        self.session, self.entity = document['session'], document['entity']
        self.transcript = document['turns']
        for turn in self.transcript:
            print(f'{self.entity or "you"}> {turn["message"]}')
            if turn.get('reply'):
                print(f'jamey> {turn["reply"]}')
            else:
                print(f'⛔ {turn.get("explanation")}')
        print(f'(session {self.session} resumed, {len(self.transcript)} turn(s))')


def _transcript(text: str) -> dict[str, Any]:
    """A saved transcript, checked enough to resume from.

    Raises:
        ValueError: not a transcript this version wrote.
    """
    document = json.loads(text)
    if not isinstance(document, dict) or document.get('format') != TRANSCRIPT_FORMAT:
        raise ValueError(f'not a transcript ({TRANSCRIPT_FORMAT})')
    turns = document.get('turns')
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and isinstance(t.get('message'), str) for t in turns
    ):
        raise ValueError('its turns are not a list of messages')
    for key in ('session', 'entity'):
        if document.get(key) is not None and not isinstance(document[key], str):
            raise ValueError(f'its {key} is not a string')
    return document


def cmd_chat(args: argparse.Namespace, client: Client) -> int:
    home = os.environ.get('HOME')
    history = Path(home) / HISTORY_FILE if home else None
    _history(history, save=False)
    try:
        return Repl(args, client).run()
    finally:
        _history(history, save=True)


def register(commands: Any) -> None:
    chat = commands.add_parser('chat', help='talk to Jamey (a REPL; /help inside)')
    chat.add_argument('--entity', metavar='NAME', help='who is talking')
    chat.add_argument('--session', metavar='ID', help='carry on this session')
    chat.set_defaults(run=cmd_chat)
