"""Logging: one JSON object per line on stderr, or readable text on a terminal.

Call sites log an event name and fields (``log.info('db.migrated', extra=
{'version': 3})``); the request id of the request being served is added to
every line by the formatter, so a problem reported to a user (who sees only
the id) can be found in the journal.

When stderr is the journal, each line starts with its syslog priority
(``<3>`` for an error, as sd-daemon(3) describes): journald takes the prefix
off and files the line under that priority, so ``journalctl -p err`` finds
the errors and the stored message is still the bare JSON object.
"""

import contextvars
import itertools
import json
import logging
import os
import sys
from typing import IO

from jamey.clock import iso_utc

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    'request_id', default=None
)
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id made here: a random per-process prefix and a counter.

    Unique across restarts, ordered within one, and cheap. (``uuid4`` reads
    the kernel's random source, and that call releases the GIL mid-request:
    on two cores the worker then waits for the main loop to hand it back,
    which costs a quarter of the throughput of a small request.)
    """
    return f'{_ID_PREFIX}{next(_ID_COUNTER):016x}'


# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord('', 0, '', 0, '', None, None))) | {
    'message',
    'asctime',
    'taskName',
}
LEVELS = {
    'debug': logging.DEBUG,
    'info': logging.INFO,
    'warning': logging.WARNING,
    'error': logging.ERROR,
}
# sd-daemon(3): SD_CRIT, SD_ERR, SD_WARNING, SD_INFO; anything lower is SD_DEBUG.
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7


def priority(levelno: int) -> int:
    """The syslog priority of a record's level; a level between two named
    ones takes the less severe one's."""
    return next((p for level, p in _PRIORITIES if levelno >= level), _DEBUG_PRIORITY)


def _tracing() -> bool:
    """Stack traces are written only while the configured level is debug."""
    return logging.getLogger().getEffectiveLevel() <= logging.DEBUG


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        k: v for k, v in vars(record).items() if k not in _STANDARD
    }
    rid = request_id.get()
    if rid is not None:
        fields.setdefault('request_id', rid)
    if record.exc_info and record.exc_info[0] is not None:
        fields['exception'] = record.exc_info[0].__name__
    return fields


class JsonFormatter(logging.Formatter):
    """Lines for the journal and log shippers.

    Stack traces are kept out of the line on purpose (they leak paths and
    values); the exception's class name is kept, and while the configured
    level is debug, any line with an exception has its trace as a separate
    field.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            'time': iso_utc(record.created),
            'level': record.levelname.lower(),
            'event': record.getMessage(),
            'logger': record.name,
        }
        line.update(_fields(record))
        if record.exc_info and _tracing():
            line['trace'] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Lines for a person at a terminal (at debug level, traces below them)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = ' '.join(f'{k}={v}' for k, v in _fields(record).items())
        text = (
            f'{iso_utc(record.created)} {record.levelname.lower():7} '
            f'{record.getMessage()} {fields}'
        ).rstrip()
        if record.exc_info and _tracing():
            text += '\n' + self.formatException(record.exc_info)
        return text


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each after its syslog priority (``<N>``)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f'<{priority(record.levelno)}>{self._inner.format(record)}'


def on_journal(stream: IO[str], journal_stream: str | None) -> bool:
    """Whether ``stream`` is the journal.

    systemd sets ``$JOURNAL_STREAM`` to ``device:inode`` of the stream it
    connected to the journal; a stderr redirected elsewhere (the variable is
    inherited) is another file and gets no prefixes.
    """
    device, _, inode = (journal_stream or '').partition(':')
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file behind it (io.UnsupportedOperation)
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def configure(
    level: str,
    fmt: str,
    stream: IO[str] | None = None,
    journal_stream: str | None = None,
) -> None:
    """Route every logger (ours, waitress's, apsw's) to one handler on stderr.

    ``journal_stream`` is ``$JOURNAL_STREAM``, from systemd.
    """
    stream = stream or sys.stderr
    if fmt == 'auto':
        fmt = 'text' if stream.isatty() else 'json'
    formatter: logging.Formatter = JsonFormatter() if fmt == 'json' else TextFormatter()
    if on_journal(stream, journal_stream):
        formatter = JournalFormatter(formatter)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS[level])
