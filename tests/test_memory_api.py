"""/memories over the real socket of a real jameyd, SIGKILL included."""

import http.client
import itertools
import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.parse
from typing import Any

import apsw
import pytest
from conftest import Jameyd
from conftest import request
from conftest import run_cli

from jamey import checksums

JSON = {'Content-Type': 'application/json'}
FAST = {'JAMEY_MEMORY_COMMIT_INTERVAL_MS': '50'}


def store(daemon: Jameyd, body: Any) -> tuple[int, Any]:
    status, _, document = request(
        daemon.socket, 'POST', '/memories', body=json.dumps(body).encode(), headers=JSON
    )
    return status, document


def search(daemon: Jameyd, **params: str) -> tuple[int, Any]:
    status, _, document = daemon.get('/memories?' + urllib.parse.urlencode(params))
    return status, document


def test_store_and_find(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=FAST).start()
    status, kept = store(
        daemon,
        {
            'content': 'Ana planted tomatoes',
            'layer': 'episodic',
            'entity': 'ana',
            'metadata': {'mood': 'sunny'},
        },
    )
    assert status == 201
    status, result = search(daemon, q='tomato', consistent='true')
    assert status == 200
    assert [m['id'] for m in result['memories']] == [kept['id']]
    assert result['memories'][0]['metadata'] == {'mood': 'sunny'}
    assert daemon.get(f'/memories/{kept["id"]}')[2]['content'] == 'Ana planted tomatoes'
    assert request(daemon.socket, 'DELETE', f'/memories/{kept["id"]}')[0] == 204
    assert search(daemon, q='tomato', consistent='true')[1]['memories'] == []
    status, _, problem = daemon.get(f'/memories/{kept["id"]}')
    assert (status, problem['code']) == (404, 'memory_not_found')


def test_a_question_is_a_query_and_match_all_requires_every_word(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd(env=FAST).start()
    texts = [
        'Alice likes green tea in the morning',
        'Bob drinks his coffee black',
        'What does it matter? Nobody knows',
        'The garden gate sticks',
    ]
    ids = [store(daemon, {'content': t, 'layer': 'episodic'})[1]['id'] for t in texts]
    status, found = search(
        daemon, q='What does Alice like to drink in the morning?', consistent='true'
    )
    assert status == 200
    ranked = [m['id'] for m in found['memories']]
    assert ranked[0] == ids[0]
    assert set(ranked) == {ids[0], ids[1]}  # "drink", not "what" or "does"
    scores = [m['score'] for m in found['memories']]
    assert scores == sorted(scores, reverse=True)
    assert search(daemon, q='Alice coffee', match='all')[1]['memories'] == []
    both = search(daemon, q='green tea', match='all')[1]['memories']
    assert [m['id'] for m in both] == [ids[0]]
    either = search(daemon, q='green tea', match='any')[1]['memories']
    assert [m['id'] for m in either] == [ids[0]]
    # Syntax is read as before: a required and an excluded word.
    assert [m['id'] for m in search(daemon, q='+coffee -tea')[1]['memories']] == [
        ids[1]
    ]
    assert search(daemon, q='drinks -coffee')[1]['memories'] == []
    result = run_cli(
        '--socket', str(daemon.socket), 'memory', 'search', 'Alice coffee', '--all'
    )
    assert (result.returncode, result.stdout.strip()) == (0, '(nothing found)')
    result = run_cli('--socket', str(daemon.socket), 'memory', 'search', 'Alice coffee')
    assert texts[0] in result.stdout
    assert texts[1] in result.stdout


def test_context_brings_the_neighbours_of_each_hit_in_its_group(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd(env=FAST).start()

    def keep(content: str, **fields: Any) -> str:
        body = {'content': content, 'layer': 'episodic', 'entity': 'ana', **fields}
        status, kept = store(daemon, body)
        assert status == 201, kept
        return str(kept['id'])

    first = keep('Ana: shall we go out tonight?')
    keep('Bo: the kettle is on', entity='bo')  # another entity
    keep('Ana: I left my keys', layer='semantic')  # another layer
    asked = keep('Bo: where to?')
    hit = keep('Ana: the pottery class downtown')
    answer = keep('Bo: the one on Elm street?')
    later = keep('Ana: yes, with the blue door')
    other = keep('Ana: pottery again next week', metadata={'session': 's-2'})

    status, found = search(daemon, q='pottery class', context='1', consistent='true')
    assert status == 200
    shown = [(m['id'], m['context_of']) for m in found['memories']]
    assert shown == [(asked, hit), (hit, None), (answer, hit), (other, None)]
    assert [m['score'] is None for m in found['memories']] == [True, False, True, False]
    # Two on each side, and a memory shown once even when it neighbours two hits.
    status, found = search(daemon, q='pottery Elm', context='2', match='any')
    ids = [m['id'] for m in found['memories']]
    assert len(ids) == len(set(ids))
    assert {first, asked, hit, answer, later, other} == set(ids)
    # A deleted memory is nobody's neighbour.
    assert request(daemon.socket, 'DELETE', f'/memories/{asked}')[0] == 204
    status, found = search(daemon, q='pottery class', context='1', consistent='true')
    assert [m['id'] for m in found['memories']][:3] == [first, hit, answer]
    shown = run_cli(
        '--socket',
        str(daemon.socket),
        'memory',
        'search',
        'pottery class',
        '--context',
        '1',
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count('(context)') == 2
    # Without context, hits alone.
    status, found = search(daemon, q='pottery class')
    assert [m['context_of'] for m in found['memories']] == [None, None]


@pytest.mark.parametrize(
    ('target', 'field', 'code'),
    [
        ('/memories?q=tea&context=6', 'context', 'out_of_range'),
        ('/memories?q=tea&context=one', 'context', 'wrong_type'),
        ('/memories?q=tea&match=some', 'match', 'unknown_match'),
        ('/memories?q=tea&match=any&match=all', 'match', 'wrong_type'),
        ('/memories?layer=dreams', 'layer', 'unknown_layer'),
        ('/memories?limit=abc', 'limit', 'wrong_type'),
        ('/memories?limit=500', 'limit', 'out_of_range'),
        ('/memories?limit=' + '9' * 5000, 'limit', 'out_of_range'),
        ('/memories?since=yesterday', 'since', 'invalid_time'),
        ('/memories?until=2026-01-01T00:00:00', 'until', 'invalid_time'),
        ('/memories?colour=red', 'colour', 'unknown_field'),
        ('/memories?q=a&q=b', 'q', 'wrong_type'),
        ('/memories?consistent=maybe', 'consistent', 'wrong_type'),
        ('/memories/not-a-uuid', 'id', 'invalid_id'),
    ],
)
def test_bad_queries_name_the_field(
    jameyd: Jameyd, target: str, field: str, code: str
) -> None:
    status, _, problem = jameyd.get(target)
    assert (status, problem['field'], problem['code']) == (422, field, code)


@pytest.mark.parametrize(
    'query',
    [
        '"unbalanced',
        'content:x',
        'layer:episodic',
        'AND OR NOT',
        '((',
        '*',
        '-',
        '\U0001f600',
        'a' * 10_000,
    ],
)
def test_query_garbage_is_never_a_server_error(jameyd: Jameyd, query: str) -> None:
    store(jameyd, {'content': 'plain words', 'layer': 'working'})
    status, _ = search(jameyd, q=query)
    assert status == 200


def test_nul_in_a_query_is_refused_cleanly(jameyd: Jameyd) -> None:
    status, _, problem = jameyd.get('/memories?q=a%00b')
    assert (status, problem['code']) == (422, 'control_characters')


@pytest.mark.parametrize(
    ('body', 'field', 'code'),
    [
        ({'content': 'x', 'layer': 'dreams'}, 'layer', 'unknown_layer'),
        ({'content': 'x' * 10_001, 'layer': 'working'}, 'content', 'too_long'),
        ({'layer': 'working'}, 'content', 'required'),
        (
            {'content': 'x', 'layer': 'working', 'metadata': 'k=v'},
            'metadata',
            'wrong_type',
        ),
        ({'content': 'x', 'layer': 'working', 'id': 'mine'}, 'id', 'unknown_field'),
    ],
)
def test_bad_memories_name_the_field(
    jameyd: Jameyd, body: Any, field: str, code: str
) -> None:
    status, problem = store(jameyd, body)
    assert (status, problem['field'], problem['code']) == (422, field, code)


_WORKING = b'"content": "x", "layer": "working"'


@pytest.mark.parametrize(
    ('raw', 'status', 'code', 'field'),
    [
        # More digits than Python reads an integer from.
        (
            b'{' + _WORKING + b', "metadata": {"n": ' + b'7' * 4301 + b'}}',
            400,
            'invalid_json',
            '',
        ),
        # Beyond a double: read as infinity, which no answer can carry.
        (
            b'{' + _WORKING + b', "metadata": {"v": 1e400}}',
            422,
            'out_of_range',
            'metadata.v',
        ),
        (
            b'{' + _WORKING + b', "metadata": {"v": [0, -1e400]}}',
            422,
            'out_of_range',
            'metadata.v[1]',
        ),
        # A lone surrogate is no character: nothing can encode it.
        (
            b'{"content": "x\\ud800", "layer": "working"}',
            422,
            'invalid_text',
            'content',
        ),
        (
            b'{' + _WORKING + b', "metadata": {"\\udc00": 1}}',
            422,
            'invalid_text',
            'metadata',
        ),
        (
            b'{' + _WORKING + b', "entity": "\\uDBFF"}',
            422,
            'invalid_text',
            'entity',
        ),
    ],
)
def test_what_json_or_python_cannot_carry_is_refused(
    jameyd: Jameyd, raw: bytes, status: int, code: str, field: str
) -> None:
    answer, _, problem = request(
        jameyd.socket, 'POST', '/memories', body=raw, headers=JSON
    )
    assert (answer, problem['code'], problem.get('field')) == (status, code, field)
    assert search(jameyd)[1]['memories'] == []


def test_an_escaped_surrogate_pair_is_one_character(jameyd: Jameyd) -> None:
    raw = b'{"content": "\\ud83c\\udf45 ripe", "layer": "working"}'
    status, _, kept = request(
        jameyd.socket, 'POST', '/memories', body=raw, headers=JSON
    )
    assert (status, kept['content']) == (201, '\U0001f345 ripe')


def test_infinity_stored_by_an_earlier_version_reads_as_null(
    make_jameyd: Any,
) -> None:
    daemon = make_jameyd().start()
    _, kept = store(
        daemon, {'content': 'x', 'layer': 'semantic', 'metadata': {'v': 1, 'w': 'w'}}
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    conn = apsw.Connection(str(daemon.state_dir / 'jamey.db'))
    checksums.register(conn)  # the row stays sound: only its metadata is old
    conn.execute('UPDATE memories SET metadata = \'{"v": Infinity, "w": "w"}\'')
    conn.close()
    again = make_jameyd().start()
    status, _, found = again.get(f'/memories/{kept["id"]}')
    assert (status, found['metadata']) == (200, {'v': None, 'w': 'w'})


def test_acknowledged_memories_survive_sigkill(make_jameyd: Any) -> None:
    """SIGKILL at random moments under concurrent stores; STRESS_KILLS=200
    makes it a stress run."""
    rng = random.Random(20261125)
    acknowledged: dict[int, set[str]] = {}
    for round_number in range(int(os.environ.get('STRESS_KILLS', '20'))):
        daemon = make_jameyd(env=FAST).start()
        acked: set[str] = set()
        stop = threading.Event()

        def writer(
            daemon: Jameyd = daemon,
            acked: set[str] = acked,
            stop: threading.Event = stop,
            tag: str = f'round{round_number}x',
        ) -> None:
            while not stop.is_set() and len(acked) < 90:
                try:
                    status, kept = store(
                        daemon, {'content': f'{tag} note', 'layer': 'episodic'}
                    )
                except (OSError, http.client.HTTPException):
                    return  # killed mid-request: not acknowledged
                if status == 201:
                    acked.add(kept['id'])

        threads = [threading.Thread(target=writer) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.05, 0.5))
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        stop.set()
        for thread in threads:
            thread.join()
        acknowledged[round_number] = acked

    daemon = make_jameyd(env=FAST).start()
    total = 0
    for round_number, acked in acknowledged.items():
        status, result = search(
            daemon, q=f'round{round_number}x', limit='100', consistent='true'
        )
        assert status == 200
        ids = [m['id'] for m in result['memories']]
        assert len(ids) == len(set(ids)), 'no memory twice'
        assert acked <= set(ids), f'round {round_number} lost acknowledged memories'
        total += len(ids)
    stats = daemon.get('/memories/stats')[2]
    assert stats['index_documents'] == stats['total'] == total
    assert sum(len(a) for a in acknowledged.values()) > 100, 'the writers did work'


def test_index_deleted_while_stopped_is_rebuilt(make_jameyd: Any) -> None:
    daemon = make_jameyd(env=FAST).start()
    for n in range(30):
        store(daemon, {'content': f'garden note {n}', 'layer': 'semantic'})
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    shutil.rmtree(daemon.state_dir / 'index')
    again = make_jameyd(env=FAST).start()
    assert again.notify is not None
    before_ready = list(
        itertools.takewhile(lambda m: m[1].get('READY') != '1', again.notify.messages)
    )
    extended = [f for _, f in before_ready if 'EXTEND_TIMEOUT_USEC' in f]
    assert extended, 'a rebuild at start asks systemd for more time'
    assert int(extended[0]['EXTEND_TIMEOUT_USEC']) >= 30_000_000
    assert extended[0]['STATUS'] == 'starting: 30 memories indexed'
    status, result = search(again, q='garden', limit='100', consistent='true')
    assert status == 200
    assert len(result['memories']) == 30
    check = again.get('/health/detailed')[2]['checks']['memory_index']
    assert 'rebuilt' in check['warning']
    assert any(line['event'] == 'memory.index_rebuilt' for line in again.log_lines())


def test_jameyctl_memory(jameyd: Jameyd) -> None:
    socket = ['--socket', str(jameyd.socket)]
    result = run_cli(
        *socket,
        'memory',
        'store',
        'Bo painted the fence',
        '--layer',
        'episodic',
        '--entity',
        'bo',
    )
    assert result.returncode == 0, result.stderr
    memory_id = result.stdout.split()[0]
    result = run_cli(*socket, 'memory', 'search', 'painting', '--consistent')
    assert memory_id in result.stdout
    assert 'Bo painted the fence' in result.stdout
    result = run_cli(*socket, '--json', 'memory', 'stats')
    assert json.loads(result.stdout)['layers']['episodic'] == 1
    assert run_cli(*socket, 'memory', 'get', memory_id).returncode == 0
    assert run_cli(*socket, 'memory', 'reindex').returncode == 0
    assert run_cli(*socket, 'memory', 'forget', memory_id).returncode == 0
    result = run_cli(*socket, 'memory', 'get', memory_id)
    assert result.returncode == 1
    assert run_cli(*socket, 'memory', 'store', 'x', '--layer', 'dreams').returncode == 1
    assert run_cli(*socket, 'memory', 'store', 'x', '--metadata', '[').returncode == 2
