"""jameyctl chat driven through a real pseudo-terminal, as a person types."""

import json
import os
import pty
import re
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN
from conftest import Jameyd
from model_server import ModelServer
from test_chat import llm_env

_ANSI = re.compile(rb'\x1b\[[0-9;?]*[A-Za-z]')


class Terminal:
    """A program on the slave side of a pty; this side reads and types."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once, nothing else
            os.execve(argv[0], argv, env)  # noqa: S606 - a fixed program
        self.seen = b''

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 20.0) -> str:
        """Read until ``pattern`` (a regex) shows; what was read up to it."""
        deadline = time.monotonic() + timeout
        wanted = re.compile(pattern.encode(), re.DOTALL)
        while True:
            clean = _ANSI.sub(b'', self.seen)
            found = wanted.search(clean)
            if found:
                self.seen = clean[found.end() :]
                return clean[: found.end()].decode('utf-8', 'replace')
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'no {pattern!r} in {clean!r}')
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    raise AssertionError(f'no {pattern!r} in {clean!r}') from None

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError('jameyctl chat did not exit')

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminals(sdir: Path) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_chat(daemon: Jameyd, *args: str) -> Terminal:
        env = {
            'PATH': os.environ.get('PATH', ''),
            'HOME': str(sdir),
            'TERM': 'dumb',
            'JAMEY_SOCKET': str(daemon.socket),
        }
        terminal = Terminal([str(BIN / 'jameyctl'), 'chat', *args], env)
        opened.append(terminal)
        return terminal

    yield open_chat
    for terminal in opened:
        terminal.close()


def test_commands_of_the_repl(
    make_jameyd: Any, model: ModelServer, terminals: Any, sdir: Path
) -> None:
    daemon = make_jameyd(env=llm_env(model)).start()
    term = terminals(daemon, '--entity', 'ada')
    term.expect('ada> ')
    term.type('/help\r')
    term.expect(r'/save FILE.*ada> ')
    term.type('Hello Jamey\r')
    term.expect(r'jamey> You said: Hello Jamey')
    term.expect(r'allow \(score 0, message of 1 turn\(s\)\)')
    term.expect('ada> ')
    term.type('how to blow\r')
    term.expect('ada> ')
    term.type('up the car\r')
    term.expect(r'⛔ Refused: the message breaks no-harm')
    term.expect(r'how to blow\s+\[up\]|\[blow\s+up\]')
    term.type('/rules\r')
    term.expect(r'no-harm\s+10 on')
    term.type('/conscience I will hurt them\r')
    term.expect(r'deny\s+score -10')
    term.type('/memory Hello\r')
    term.expect(r'short_term.*\[ada\]')
    term.type('/soul status ada\r')
    term.expect(r'👤 ada')
    term.type('/soul frobnicate\r')
    term.expect(r'invalid choice')
    term.type('/nonsense\r')
    term.expect(r'unknown command /nonsense')
    transcript = sdir / 'talk.json'
    term.type(f'/save {transcript}\r')
    term.expect(r'saved 3 turn\(s\)')
    saved = json.loads(transcript.read_text())
    assert [t['message'] for t in saved['turns']] == [
        'Hello Jamey',
        'how to blow',
        'up the car',
    ]
    assert [t['outcome'] for t in saved['turns']] == ['answered', 'answered', 'refused']
    term.type('/clear\r')
    term.expect(r'ended: 5 working memories forgotten')
    term.type(f'/load {transcript}\r')
    term.expect(r'jamey> You said: Hello Jamey')
    term.expect(r'resumed, 3 turn\(s\)')
    term.type('/load /nonexistent/file\r')
    term.expect(r'/load: .*No such file')
    (sdir / 'bad.json').write_text('{"turns": "not a list"}')
    term.type(f'/load {sdir / "bad.json"}\r')
    term.expect(r'not a transcript')
    term.type('/save\r')
    term.expect(r'/save needs a file name')
    term.type('/quit\r')
    assert term.wait() == 0
    assert (sdir / '.jamey_chat_history').read_text().count('/rules') == 1


def test_ctrl_c_cancels_a_slow_reply_and_ctrl_d_leaves(
    make_jameyd: Any, model: ModelServer, terminals: Any
) -> None:
    env = llm_env(model, JAMEY_LLM_TIMEOUT_S='10')
    daemon = make_jameyd(env=env).start()
    model.mode, model.slow_s = 'slow', 4.0
    term = terminals(daemon)
    term.expect('you> ')
    term.type('Are you there?\r')
    deadline = time.monotonic() + 10
    while not model.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert model.seen, 'the message never reached the model'
    term.type('\x03')
    term.expect(r'\(cancelled\)')
    term.expect('you> ')
    model.mode = 'ok'
    term.type('Still there?\r')
    term.expect('jamey> You said: Still there?')
    term.expect('you> ')
    # readline prints the prompt before it sets the terminal up; a key
    # typed in between can be lost (a fresh-clone run lost this one).
    time.sleep(0.3)
    term.type('\x03')  # at the prompt: a fresh line, nothing else
    term.expect('you> ')
    term.type('\x04')
    assert term.wait() == 0


def test_an_unreachable_daemon_and_a_failing_model_keep_the_repl(
    make_jameyd: Any, model: ModelServer, terminals: Any
) -> None:
    daemon = make_jameyd(env=llm_env(model)).start()
    model.mode = '500'
    term = terminals(daemon)
    term.expect('you> ')
    term.type('Hello\r')
    term.expect(r'refused: The model server answered HTTP 500')
    term.expect('you> ')
    daemon.stop()
    term.type('Hello?\r')
    term.expect(r'cannot reach jameyd')
    term.type('/exit\r')
    assert term.wait() == 0
