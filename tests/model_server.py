"""A real HTTP server speaking OpenAI's completions protocol, for tests.

``/chat/completions`` answers as a chat model, ``/completions`` as a guard
model whose answer to a prompt is ``guard(prompt)``. ``mode`` says how it
answers the next requests; every request it gets is kept (its path, JSON
body and headers) so tests can see what jameyd sent.
"""

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

DENIED_REPLY = 'Sure: I will poison them and hurt them.'


def completion(content: Any) -> bytes:
    return json.dumps(
        {
            'id': 'chatcmpl-1',
            'object': 'chat.completion',
            'choices': [
                {
                    'index': 0,
                    'message': {'role': 'assistant', 'content': content},
                    'finish_reason': 'stop',
                }
            ],
        }
    ).encode()


def text_completion(text: Any) -> bytes:
    return json.dumps(
        {
            'id': 'cmpl-1',
            'object': 'text_completion',
            'choices': [{'index': 0, 'text': text, 'finish_reason': 'stop'}],
        }
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    server: 'ModelServer'

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get('Content-Length', '0'))
        body = json.loads(self.rfile.read(length))
        self.server.seen.append((self.path, dict(self.headers), body))
        mode = self.server.mode
        if mode == 'slow':
            time.sleep(self.server.slow_s)
        if mode == 'drip':
            self._drip()
            return
        status, headers, data = self._answer(mode, body)
        try:
            self.send_response(status)
            for name, value in {'Content-Type': 'application/json', **headers}.items():
                self.send_header(name, value)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            return  # the client gave up first

    def _drip(self) -> None:
        """A byte at a time, each well within any socket timeout."""
        try:
            self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n')
            for _ in range(1000):
                self.wfile.write(b' ')
                self.wfile.flush()
                time.sleep(self.server.slow_s / 1000)
        except OSError:
            return  # the client gave up, as it should

    def _answer(self, mode: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if self.path.endswith('/chat/completions'):
            wrap = completion
            said = f'You said: {body["messages"][-1]["content"]}'
        else:
            wrap = text_completion
            said = self.server.guard(body['prompt'])
        answers: dict[str, tuple[int, dict[str, str], bytes]] = {
            'ok': (200, {}, wrap(said)),
            'slow': (200, {}, wrap('late')),
            '500': (500, {}, b'{"error": "boom"}'),
            '429': (
                429,
                {'Retry-After': self.server.retry_after},
                b'{"error": "slow down"}',
            ),
            '401': (401, {}, b'{"error": "who are you"}'),
            'malformed': (200, {}, b'{"choices": [{"message": '),
            'not_text': (200, {}, wrap(42)),
            'no_choices': (200, {}, b'{"choices": []}'),
            'oversized': (200, {}, wrap('x' * 5000)),
            'deny': (200, {}, wrap(DENIED_REPLY)),
            'control': (200, {}, wrap('\x1b[31mred\x1b[0m\r\nline')),
            # JSON's \ud83d escape alone: half of a character.
            'surrogate': (200, {}, wrap('half \ud83d a pair')),
        }
        return answers[mode]


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(('127.0.0.1', 0), _Handler)
        self.mode = 'ok'
        self.slow_s = 3.0
        self.retry_after = '0'
        self.guard: Callable[[str], str] = lambda prompt: 'safe'
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}/v1'

    def close(self) -> None:
        self.shutdown()
        self.server_close()
