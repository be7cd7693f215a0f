"""schemathesis against the OpenAPI document of a real jameyd, over its
socket and over TLS with an admin token.

Every operation gets generated requests, valid and not; every answer must
match the document, and none may be a 5xx. The daemon's own limits (413 for
an oversized body) are declared as acceptable rejections here, instead of
widening the API. ``scripts/bench api --fuzz`` runs the same with more
examples (``JAMEY_FUZZ_EXAMPLES``).
"""

import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import urllib3
from conftest import Jameyd
from conftest import check_no_leak
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from requests.adapters import HTTPAdapter
from schemathesis.checks import CHECKS
from test_access import start_site

EXAMPLES_PER_OPERATION = int(os.environ.get('JAMEY_FUZZ_EXAMPLES', '150'))
BASE_URL = 'http://jamey'


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__('localhost', timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(self.socket_path)
        self.sock = sock


class _UnixPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, path: str) -> None:
        super().__init__('localhost', timeout=30)
        self.socket_path = path

    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self.socket_path, 30)


class UnixAdapter(HTTPAdapter):
    """requests over a Unix socket, whatever host the URL names."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.pool = _UnixPool(str(path))

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


@pytest.fixture
def unix_session(sdir: Path) -> Iterator[requests.Session]:
    daemon = Jameyd(sdir).start()
    try:
        with requests.Session() as s:
            s.mount(BASE_URL, UnixAdapter(daemon.socket))
            yield s
    finally:
        daemon.stop()


def fuzz(session: requests.Session, base_url: str, ca: Path | None = None) -> list[int]:
    """Every operation's generated requests through ``session`` (trusting the
    CA ``ca`` over TLS); their statuses."""
    document = session.get(f'{base_url}/openapi.json', timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url, tls_verify=str(ca) if ca else None)
    # A generated body past api.max_body_bytes is rightly refused with 413.
    schema.config.checks.negative_data_rejection.expected_statuses.append('413')
    # What JSON Schema cannot say: a phrase must hold a word, an entity name
    # is NFC without '/' or edge spaces. Such bodies get 422 with the field
    # and the reason, which the suites of each capability check one by one.
    schema.config.checks.positive_data_acceptance.expected_statuses.append('422')
    sent: list[int] = []

    def exercise(operation: Any) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(session=session)
            sent.append(response.status_code)
            check_no_leak(
                response.status_code,
                {'content-type': response.headers.get('content-type', '')},
                response.content,
            )
            case.validate_response(response, checks=CHECKS.get_all())

        check()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        exercise(operation)
    # Shown with pytest -s (scripts/bench api --fuzz).
    print(
        f'{base_url}: {len(sent)} requests, {len(operations)} operations,'
        f' statuses {dict(sorted(Counter(sent).items()))}'
    )
    return sent


def test_generated_requests_conform_and_never_fail(
    unix_session: requests.Session,
) -> None:
    sent = fuzz(unix_session, BASE_URL)
    assert len(sent) >= 2000, len(sent)
    assert all(status < 500 for status in sent)


def test_generated_requests_over_tls_with_a_token(sdir: Path, make_jameyd: Any) -> None:
    site = start_site(sdir, make_jameyd)
    token = site.token('fuzzer', 'admin')['token']
    with requests.Session() as session:
        # Not the machine's CA bundle (REQUESTS_CA_BUNDLE would win): the test CA.
        session.trust_env = False
        session.verify = str(site.ca.cert_file)
        session.headers['Authorization'] = f'Bearer {token}'
        sent = fuzz(session, f'https://localhost:{site.tls.port}', site.ca.cert_file)
    assert len(sent) >= 3000, len(sent)
    assert all(status < 500 for status in sent)
