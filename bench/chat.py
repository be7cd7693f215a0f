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
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from startup import BIN
from startup import jameyd_env
from startup import scratch
from startup import start_until_ready
from startup import stop

from jamey.cli.client import UnixConnection

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--turns', type=int, default=400)
    args = parser.parse_args()
    server = ThreadingHTTPServer(('127.0.0.1', 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with scratch() as root:
        env = jameyd_env(root, JAMEY_LLM_BASE_URL=f'http://127.0.0.1:{port}/v1')
        _, proc = start_until_ready([str(BIN / 'jameyd')], env, root)
        try:
            measure(root, port, args.turns)
        finally:
            stop(proc)
            server.shutdown()


def measure(root: Path, port: int, turns: int) -> None:
    jamey = UnixConnection(root / 'jamey.sock', 30)
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
    bare_s = statistics.median(timed(bare, turns))
    chat_s = statistics.median(timed(chat, turns))
    print(f'{turns} turns each, one client, median per turn')
    print(f'  bare model call            {bare_s * 1e3:8.3f} ms')
    print(f'  POST /chat around the same {chat_s * 1e3:8.3f} ms')
    print(f'  ratio                      {chat_s / bare_s:8.2f}x')
    print(f'  chat overhead              {(chat_s - bare_s) * 1e3:8.3f} ms')


if __name__ == '__main__':
    main()
