"""A model server: any OpenAI-compatible server, over the stdlib.

Chat asks ``<base_url>/chat/completions`` (``complete``); the guard model
asks ``<base_url>/completions`` with a prompt in its own format
(``complete_text``). One POST per try. A try is bounded by the settings'
``timeout_s`` and by the caller's deadline, whichever comes first: a
timer shuts the socket at that moment, so a server that trickles its answer
byte by byte cannot hold a request past it. Network errors, 429 and 5xx are
tried again after an exponential backoff with full jitter (``Retry-After`` is
honoured when it fits before the deadline); anything else fails at once. The
outcome of the last call is kept for the health check.
"""

import http.client
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import NamedTuple
from typing import TypeVar
from urllib.parse import urlsplit

from jamey import config
from jamey import validation
from jamey.clock import iso_utc
from jamey.errors import ConfigError
from jamey.errors import ModelError
from jamey.errors import ModelMalformedError
from jamey.errors import ModelReplyTooLargeError
from jamey.errors import ModelTimeoutError

log = logging.getLogger('jamey.model')
# JSON may spell a character as \uXXXX\uXXXX (12 bytes); the rest is envelope.
_BYTES_PER_CHAR = 12
_ENVELOPE_BYTES = 65_536
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
Answer = TypeVar('Answer')


class BackendSettings(NamedTuple):
    """How to reach one server; ``section`` names its settings and its log
    events (``llm.retry``, ``guard.failed``)."""

    base_url: str
    model: str = ''
    api_key: str = ''
    timeout_s: float = 20.0
    retries: int = 2
    backoff_s: float = 0.5
    max_reply_chars: int = 4000
    section: str = 'llm'


class _RetryError(Exception):
    """One try failed in a way another try may not."""

    def __init__(self, error: ModelError, wait_s: float = 0.0) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_s = wait_s


def _retry_after(response: http.client.HTTPResponse) -> float:
    """A Retry-After in seconds (the date form is rare from model servers)."""
    value = response.getheader('Retry-After', '')
    return float(value) if value.isdigit() else 0.0


# What one kind of completion holds its text in: choices[0] then these keys.
_CHAT = ('message', 'content')
_TEXT = ('text',)


def _reply_text(document: Any, keys: tuple[str, ...]) -> str:
    """``choices[0].<keys>`` of a completion, or why not."""
    try:
        content = document['choices'][0]
        for key in keys:
            content = content[key]
    except (KeyError, IndexError, TypeError):
        where = '.'.join(('choices[0]', *keys))
        raise ModelMalformedError(
            f'The model answered without a completion (no {where}).'
        ) from None
    if not isinstance(content, str):
        raise ModelMalformedError('The model answered without text.')
    return content


class ModelBackend:
    """A completions client with retries, and what its last calls did."""

    def __init__(
        self,
        settings: BackendSettings,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = urlsplit(settings.base_url)
        self.settings = settings
        self._https = url.scheme == 'https'
        self._host = url.netloc
        self._base = url.path.rstrip('/')
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.failures = 0
        self.last_error: str | None = None
        self.last_failure_at: str | None = None
        self.last_success_at: str | None = None

    @property
    def model(self) -> str:
        return self.settings.model or 'default'

    def complete(self, messages: list[dict[str, str]], deadline: float) -> str:
        """The model's reply to ``messages``, by ``deadline`` (perf_counter).

        Raises:
            ModelError: each way the model can fail has its subclass.
        """
        body = {'messages': messages}
        return self._call('/chat/completions', body, _CHAT, deadline, str)

    def complete_text(
        self,
        prompt: str,
        max_tokens: int,
        deadline: float,
        read: Callable[[str], Answer],
    ) -> Answer:
        """``read`` of the model's continuation of ``prompt`` (at most
        ``max_tokens``, greedy), by ``deadline``: for a model with a prompt
        format of its own. A reply ``read`` refuses counts as a failed call.

        Raises:
            ModelError: each way the model can fail has its subclass; ``read``
                raises ``ModelMalformedError`` for a reply out of format.
        """
        body = {'prompt': prompt, 'max_tokens': max_tokens, 'temperature': 0}
        return self._call('/completions', body, _TEXT, deadline, read)

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        keys: tuple[str, ...],
        deadline: float,
        read: Callable[[str], Answer],
    ) -> Answer:
        body = {**body, 'stream': False}
        if self.settings.model:
            body['model'] = self.settings.model
        request = _Request(
            self._base + path, json.dumps(body, ensure_ascii=False).encode(), keys
        )
        try:
            answer = read(self._with_retries(request, deadline))
        except ModelError as exc:
            self._note(exc)
            raise
        self._note(None)
        return answer

    def _with_retries(self, request: '_Request', deadline: float) -> str:
        attempt = 0
        while True:
            try:
                return self._attempt(request, deadline)
            except _RetryError as retry:
                backoff = self.settings.backoff_s * 2**attempt
                wait = max(random.uniform(0, backoff), retry.wait_s)  # noqa: S311
                if attempt >= self.settings.retries or (
                    self._clock() + wait >= deadline
                ):
                    raise retry.error from None
                attempt += 1
                log.info(
                    f'{self.settings.section}.retry',
                    extra={'code': retry.error.code, 'try': attempt},
                )
                self._sleep(wait)

    def _attempt(self, request: '_Request', deadline: float) -> str:
        left = deadline - self._clock()
        if left <= 0:
            raise ModelTimeoutError('The request ran out of time before the model.')
        timeout = min(self.settings.timeout_s, left)
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, timeout=timeout)
        # The socket's timeout bounds each read; the timer bounds the whole try.
        fired = threading.Event()
        timer = threading.Timer(timeout, _abort, (conn, fired))
        timer.start()
        try:
            return self._exchange(conn, request, fired)
        except TimeoutError:
            raise self._timed_out(timeout, left) from None
        except (OSError, http.client.HTTPException):
            if fired.is_set():
                raise self._timed_out(timeout, left) from None
            raise _RetryError(
                ModelError('The model server cannot be reached.')
            ) from None
        finally:
            timer.cancel()
            conn.close()

    def _timed_out(self, timeout: float, left: float) -> Exception:
        error = ModelTimeoutError(f'The model did not answer within {timeout:g} s.')
        # Time is left only when the try's own timeout was the shorter one.
        return _RetryError(error) if timeout < left else error

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        request: '_Request',
        fired: threading.Event,
    ) -> str:
        headers = {'Content-Type': 'application/json', 'Accept': 'application/json'}
        if self.settings.api_key:
            headers['Authorization'] = f'Bearer {self.settings.api_key}'
        conn.request('POST', request.path, body=request.payload, headers=headers)
        response = conn.getresponse()
        limit = self.settings.max_reply_chars * _BYTES_PER_CHAR + _ENVELOPE_BYTES
        data = response.read(limit + 1)
        if fired.is_set():  # what was read is cut short, not the answer
            raise TimeoutError
        if response.status in _RETRY_STATUSES:
            error = ModelError(f'The model server answered HTTP {response.status}.')
            raise _RetryError(error, _retry_after(response))
        if response.status != 200:
            raise ModelError(f'The model server answered HTTP {response.status}.')
        if len(data) > limit:
            raise self._too_large()
        return self._checked(data, request.keys)

    def _checked(self, data: bytes, keys: tuple[str, ...]) -> str:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ModelMalformedError('The model answered with invalid JSON.') from None
        text = validation.without_control(_reply_text(document, keys)).strip()
        if not text:
            raise ModelMalformedError('The model answered with an empty reply.')
        if len(text) > self.settings.max_reply_chars:
            raise self._too_large()
        return text

    def _too_large(self) -> ModelReplyTooLargeError:
        return ModelReplyTooLargeError(
            f'The model replied with more than {self.settings.max_reply_chars}'
            ' characters.'
        )

    def _note(self, error: ModelError | None) -> None:
        now = iso_utc(time.time())
        with self._lock:
            if error is None:
                self.failures, self.last_success_at = 0, now
                return
            self.failures += 1
            self.last_error, self.last_failure_at = error.code, now
        log.warning(
            f'{self.settings.section}.failed',
            extra={'code': error.code, 'failures': self.failures},
        )

    def health(self) -> dict[str, Any]:
        """What the health check shows: degraded while the last call failed."""
        with self._lock:
            return {
                'model': self.model,
                'consecutive_failures': self.failures,
                'last_error': self.last_error,
                'last_failure_at': self.last_failure_at,
                'last_success_at': self.last_success_at,
            }


class _Request(NamedTuple):
    """One call: where, what, and where its answer holds the text."""

    path: str
    payload: bytes
    keys: tuple[str, ...]


def _abort(conn: http.client.HTTPConnection, fired: threading.Event) -> None:
    """End a try that ran out of time, whatever it is waiting for."""
    fired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return


def api_key(setting: str, path: str, environ: Mapping[str, str]) -> str:
    """The bearer key in the secret file ``path`` (empty: no key), read now.

    Raises:
        ConfigError: the file cannot be read, or holds no key.
    """
    if not path:
        return ''
    try:
        raw = config.read_secret(path, environ)
    except ConfigError as exc:
        raise type(exc)(f'{setting}: {exc}') from None
    key = raw.decode('utf-8', 'replace').strip()
    if not key or not key.isascii() or not key.isprintable() or ' ' in key:
        raise ConfigError(f'{setting} = {path!r}: the file must hold one key')
    return key


def open_backend(
    settings: config.LlmSettings, environ: Mapping[str, str]
) -> ModelBackend | None:
    """Chat's backend as the settings describe it; None without a URL.

    Raises:
        ConfigError: the key file cannot be read, or holds no key.
    """
    if not settings.base_url:
        return None
    return ModelBackend(
        BackendSettings(
            settings.base_url,
            settings.model,
            api_key('llm.api_key_file', settings.api_key_file, environ),
            settings.timeout_s,
            settings.retries,
            settings.backoff_s,
            settings.max_reply_chars,
        )
    )
