"""``GET /metrics``: Prometheus text, from a registry of this app's own.

Request metrics are labelled by route template, method and status only, never
by anything a client chose (a raw path would let anyone create series without
end). Gauges of the capabilities are read when scraped, not kept up to date.
"""

import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import ClassVar

import falcon
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from jamey.audit import AuditLog
from jamey.guard import Guard
from jamey.health import rss_bytes
from jamey.memory import MemoryStore

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def written_bytes() -> int:
    """Bytes this process caused to be written to storage (SD-card wear)."""
    try:
        with open('/proc/self/io', 'rb') as f:
            for line in f:
                if line.startswith(b'write_bytes:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# A source of extra gauges: name, help, value (None: not known now).
Gauge = tuple[str, str, Callable[[], float | None]]


class _Capabilities(Collector):
    """Reads the daemon's parts at scrape time."""

    def __init__(
        self,
        memories: MemoryStore,
        audit: AuditLog,
        extra: list[Gauge],
        guard: Guard | None,
    ) -> None:
        self.memories = memories
        self.audit = audit
        self.extra = extra
        self.guard = guard

    def collect(self) -> Iterator[Any]:
        evaluations = CounterMetricFamily(
            'jamey_evaluations', 'Decisions of the conscience', labels=['verdict']
        )
        for verdict, count in self.audit.counts().items():
            evaluations.add_metric([verdict], count)
        yield evaluations
        if self.guard is not None:
            answers = CounterMetricFamily(
                'jamey_guard_answers',
                'What the guard model ruled when asked (failed: no ruling)',
                labels=['outcome'],
            )
            for outcome, count in self.guard.outcomes().items():
                answers.add_metric([outcome], count)
            yield answers
        yield GaugeMetricFamily(
            'jamey_memory_documents',
            'Memories in the search index',
            value=self.memories.index_documents(),
        )
        yield GaugeMetricFamily(
            'jamey_memory_index_lag',
            'Stored memories not yet searchable',
            value=self.memories.lag(),
        )
        yield GaugeMetricFamily(
            'jamey_resident_memory_bytes', 'Resident memory', value=rss_bytes()
        )
        yield CounterMetricFamily(
            'jamey_disk_written_bytes',
            'Bytes written to storage by the daemon (/proc/self/io)',
            value=written_bytes(),
        )
        for name, help_text, read in self.extra:
            value = read()
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=value)


class Metrics:
    """Middleware that counts and times every request by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            'jamey_http_requests',
            'HTTP requests answered',
            ['route', 'method', 'status'],
            registry=registry,
        )
        self.latency = Histogram(
            'jamey_http_request_duration_seconds',
            'Time to answer an HTTP request',
            ['route'],
            buckets=_BUCKETS,
            registry=registry,
        )

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        route = req.uri_template or '(none)'
        method = req.method if req.method in falcon.COMBINED_METHODS else 'OTHER'
        self.requests.labels(route, method, str(resp.status_code)).inc()
        self.latency.labels(route).observe(
            time.perf_counter() - req.context.metrics_started
        )


class MetricsResource:
    """``GET /metrics``."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Metrics in the Prometheus text format',
            'operationId': 'getMetrics',
            'responses': {
                '200': {
                    'description': 'Prometheus text exposition',
                    'content': {'text/plain': {'schema': {'type': 'string'}}},
                }
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = generate_latest(self.registry)
        resp.content_type = CONTENT_TYPE_LATEST


def registry(
    memories: MemoryStore,
    audit: AuditLog,
    extra: list[Gauge],
    guard: Guard | None = None,
) -> CollectorRegistry:
    """A registry for one app, with the capabilities' gauges in it."""
    result = CollectorRegistry()
    result.register(_Capabilities(memories, audit, extra, guard))
    return result
