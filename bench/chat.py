"""``scripts/bench chat``: what chat costs around the model call.

A chat-completions server in this process answers at once with a fixed
reply. The same messages go to it two ways, one client, one at a time:

- bare: a POST straight to the server on a new connection, as jameyd makes
  its model calls;
- chat: ``POST /chat`` to a real jameyd over its socket, with the server as
  its model: judging the message twice (alone and as the conversation),
  recalling memories, the model call, judging the reply, and one durable
  transaction of four memories (synchronous=FULL, as jameyd runs by default).

Each turn carries on one session, so the conversation judged and the
dialogue sent to the model grow to ``chat.context_turns`` as they do in use.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REPLY = json.dumps(
    {'choices': [{'message': {'role': 'assistant', 'content': 'Noted, thank you.'}}]}
).encode()
MESSAGES = [
    'The bees in the garden swarmed again this morning',
    'Should I call the beekeeper or wait until the evening?',
    'The neighbour says the swarm is on his fence now',
    'I will help him move it safely, with gloves and a box',
]


class Model(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this the body waits
        # for the client's delayed ACK on a kept-alive connection (40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers['Content-Length']))
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__('localhost', timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def post(conn: http.client.HTTPConnection, target: str, body: Any) -> Any:
    headers = {'Content-Type': 'application/json'}
    conn.request('POST', target, json.dumps(body), headers)
    response = conn.getresponse()
    document = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f'{target}: {response.status} {document}')
    return document


def timed(send: Any, turns: int) -> list[float]:
    samples = []
    for turn in range(turns):
        start = time.perf_counter()
        send(MESSAGES[turn % len(MESSAGES)])
        samples.append(time.perf_counter() - start)
    return samples


def start_jameyd(root: Path, model_url: str) -> subprocess.Popen[bytes]:
    sock = root / 'jamey.sock'
    env = {
        'PATH': os.environ.get('PATH', ''),
        'JAMEY_STORAGE_STATE_DIR': str(root / 'state'),
        'JAMEY_API_SOCKET': str(sock),
        'JAMEY_LLM_BASE_URL': model_url,
        'JAMEY_API_RATE_LIMIT_PER_S': '0',
        'JAMEY_LOG_LEVEL': 'warning',
    }
    proc = subprocess.Popen(
        [str(BIN / 'jameyd')], env=env, cwd=root, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError('jameyd did not start')
        time.sleep(0.05)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--turns', type=int, default=400)
    args = parser.parse_args()
    server = ThreadingHTTPServer(('127.0.0.1', 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    root = Path(tempfile.mkdtemp(prefix='jamey-bench-chat-'))
    proc = start_jameyd(root, f'http://127.0.0.1:{port}/v1')
    try:
        jamey = UnixHTTP(root / 'jamey.sock')
        session = post(jamey, '/chat', {'message': 'Hello'})['session']

        def bare(message: str) -> None:
            body = {'messages': [{'role': 'user', 'content': message}]}
            model = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
            post(model, '/v1/chat/completions', body)
            model.close()

        def chat(message: str) -> None:
            post(jamey, '/chat', {'message': message, 'session': session})

        for send in (bare, chat):  # warm both paths
            timed(send, 20)
        bare_s = statistics.median(timed(bare, args.turns))
        chat_s = statistics.median(timed(chat, args.turns))
        print(f'{args.turns} turns each, one client, median per turn')
        print(f'  bare model call            {bare_s * 1e3:8.3f} ms')
        print(f'  POST /chat around the same {chat_s * 1e3:8.3f} ms')
        print(f'  ratio                      {chat_s / bare_s:8.2f}x')
        print(f'  chat overhead              {(chat_s - bare_s) * 1e3:8.3f} ms')
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
