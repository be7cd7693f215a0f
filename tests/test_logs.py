"""Log lines: JSON for machines, text for people, request ids, no traces."""

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jamey import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    yield buffer
    logging.getLogger().handlers.clear()


def test_json_lines_carry_fields_and_request_id(stream: io.StringIO) -> None:
    logs.configure('info', 'json', stream)
    token = logs.request_id.set('rid-7')
    try:
        logging.getLogger('jamey.test').info('thing.done', extra={'count': 3})
    finally:
        logs.request_id.reset(token)
    logging.getLogger('jamey.test').debug('hidden')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line['event'] == 'thing.done'
    assert line['level'] == 'info'
    assert line['count'] == 3
    assert line['request_id'] == 'rid-7'
    assert line['time'].endswith('Z')


def test_exceptions_keep_their_class_not_their_trace(stream: io.StringIO) -> None:
    logs.configure('info', 'json', stream)
    try:
        raise ValueError('/secret/path')
    except ValueError:
        logging.getLogger('jamey.test').exception('it.broke')
    line = json.loads(stream.getvalue())
    assert line['exception'] == 'ValueError'
    assert '/secret/path' not in stream.getvalue()
    assert 'trace' not in line


@pytest.mark.parametrize('fmt', ['json', 'text'])
def test_debug_level_adds_the_trace_to_any_exception(
    stream: io.StringIO, fmt: str
) -> None:
    logs.configure('debug', fmt, stream)
    try:
        raise ValueError('boom')
    except ValueError:
        logging.getLogger('jamey.test').exception('it.broke')
    text = stream.getvalue()
    assert 'Traceback' in text
    assert 'ValueError: boom' in text
    if fmt == 'json':
        line = json.loads(text)
        assert (line['level'], line['exception']) == ('error', 'ValueError')
        assert line['trace'].startswith('Traceback')
    logs.set_level('info')
    try:
        raise ValueError('boom')
    except ValueError:
        logging.getLogger('jamey.test').exception('it.broke.again')
    assert 'Traceback' not in stream.getvalue().split('it.broke.again')[1]


def test_text_format_and_auto(stream: io.StringIO) -> None:
    logs.configure('info', 'auto', stream)  # not a terminal: JSON
    logging.getLogger('x').info('a.b')
    assert json.loads(stream.getvalue())['event'] == 'a.b'
    text = io.StringIO()
    logs.configure('info', 'text', text)
    logging.getLogger('x').warning('c.d', extra={'k': 'v'})
    assert text.getvalue().split()[1:] == ['warning', 'c.d', 'k=v']


def test_set_level_changes_what_is_logged(stream: io.StringIO) -> None:
    logs.configure('warning', 'json', stream)
    logging.getLogger('x').info('quiet')
    logs.set_level('debug')
    logging.getLogger('x').debug('loud')
    assert [json.loads(x)['event'] for x in stream.getvalue().splitlines()] == ['loud']


def _stat_of(path: Path) -> str:
    info = os.stat(path)
    return f'{info.st_dev}:{info.st_ino}'


def test_on_the_journal_each_line_starts_with_its_priority(tmp_path: Path) -> None:
    path = tmp_path / 'journal'
    with path.open('w') as journal:
        logs.configure('debug', 'json', journal, journal_stream=_stat_of(path))
        log = logging.getLogger('jamey.test')
        for level in ('debug', 'info', 'warning', 'error', 'critical'):
            getattr(log, level)(f'at.{level}')
        log.log(25, 'between.info.and.warning')
    logging.getLogger().handlers.clear()
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ['<7>', '<6>', '<4>', '<3>', '<2>', '<6>']
    assert [json.loads(line[3:])['event'] for line in lines][:2] == [
        'at.debug',
        'at.info',
    ]


@pytest.mark.parametrize('journal_stream', [None, '', 'x:y', '1:2', 'other'])
def test_elsewhere_no_priority_prefix(
    tmp_path: Path, journal_stream: str | None
) -> None:
    path = tmp_path / 'log'
    other = tmp_path / 'other'
    other.write_text('')
    if journal_stream == 'other':
        journal_stream = _stat_of(other)
    with path.open('w') as out:
        logs.configure('info', 'json', out, journal_stream=journal_stream)
        logging.getLogger('jamey.test').error('it.failed')
    logging.getLogger().handlers.clear()
    assert json.loads(path.read_text())['event'] == 'it.failed'
    assert not logs.on_journal(io.StringIO(), _stat_of(path))
