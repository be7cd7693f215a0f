"""Who gets in, how often, for how long: the API's access middleware.

Every route declares the least scope it needs once, in the route table
(``Route``): reads need its floor, changes at least ``write``. The middleware
here applies that to every request on every listener, so a route added later
inherits authentication, rate limits, CORS and the security headers.
"""

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from typing import NamedTuple

import falcon
from falcon.routing import CompiledRouter

from jamey.access import Authenticator
from jamey.access import AuthError
from jamey.access import Principal
from jamey.access import Scope
from jamey.api.problems import Problem
from jamey.api.problems import answer

log = logging.getLogger('jamey.api')
READS = frozenset({'GET', 'HEAD', 'OPTIONS'})
# The listener a request came in on, set by the listener's WSGI wrapper.
LISTENER_KEY = 'jamey.listener'
ARRIVED_KEY = 'jamey.arrived'
UNIX = 'unix'
TLS = 'tls'
# What every answer carries, the app's and the HTTP servers' own alike: no
# sniffing, framing, fetching, referrer or caching (see docs/security.md).
SECURITY_HEADERS = (
    ('X-Content-Type-Options', 'nosniff'),
    ('X-Frame-Options', 'DENY'),
    ('Content-Security-Policy', "default-src 'none'"),
    ('Referrer-Policy', 'no-referrer'),
    ('Cache-Control', 'no-store'),
)
_CORS_METHODS = 'GET, POST, PUT, DELETE'
_CORS_HEADERS = 'Authorization, Content-Type, X-Request-ID'
_BUCKETS_KEPT = 10_000
# Where Access leaves the route it found: (path, what the router found).
_FOUND = 'found_route'


class Route(NamedTuple):
    """A path's resource and the least scope its reads need.

    ``floor=None`` makes reads public (liveness probes need no token);
    changes always need at least ``write``.
    """

    resource: Any
    floor: Scope | None = Scope.READ


def required_scope(route: Route | None, method: str) -> Scope | None:
    """The scope a method of a route needs (an unknown path needs ``read``)."""
    if route is None:
        return Scope.READ
    if method in READS:
        return route.floor
    return max(route.floor or Scope.WRITE, Scope.WRITE)


@dataclass
class Policy:
    """The live settings of access; the daemon replaces fields on SIGHUP."""

    authenticator: Authenticator
    unix_role: Scope = Scope.ADMIN
    unix_requires_token: bool = False
    rate_per_s: float = 50.0
    burst: int = 100
    cors_origins: frozenset[str] = frozenset()
    request_timeout_s: float = 30.0


class RateLimiter:
    """A token bucket per principal (and per address for the anonymous)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, rate: float, burst: int, now: float) -> float:
        """0 if a request may go ahead now, else the seconds until it may."""
        if rate <= 0:
            return 0.0
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > _BUCKETS_KEPT:
                self._buckets.popitem(last=False)
        return wait


def _bearer(req: falcon.Request) -> str | None:
    header = req.get_header('Authorization')
    if header is None:
        return None
    scheme, _, token = header.partition(' ')
    if scheme.lower() != 'bearer' or not token.strip():
        raise AuthError('invalid_token', 'Send credentials as "Bearer TOKEN".')
    return token.strip()


def _unauthorized(code: str, detail: str) -> Problem:
    return Problem(
        401, code, detail, headers={'WWW-Authenticate': 'Bearer realm="jamey"'}
    )


def preflight(req: falcon.Request) -> bool:
    """Whether a request is a browser's CORS preflight (sent without credentials)."""
    return (
        req.method == 'OPTIONS'
        and req.get_header('Origin') is not None
        and req.get_header('Access-Control-Request-Method') is not None
    )


class RoutedOnce(CompiledRouter):
    """Falcon's router, looking a request's path up once.

    Access finds the route before routing (to authorise by it); Falcon's own
    lookup of the same path then takes what Access found.
    """

    def find(
        self, uri: str, req: falcon.Request | None = None
    ) -> tuple[object, dict[str, Any], dict[str, Any], str | None] | None:
        found = None if req is None else req.context.get(_FOUND)
        if found is not None and found[0] == uri:
            return found[1]  # type: ignore[no-any-return]
        result = super().find(uri, req)
        if req is not None:
            req.context[_FOUND] = (uri, result)
        return result


class Access:
    """Authenticates, rate-limits and authorises each request by its route.

    It runs before routing, on every request: a path that matches no route
    is refused like any other to a stranger (401, not 404) and counts against
    the rate limit, and so does a CORS preflight, which is then left to
    ``Cors`` unauthorised (browsers send it without credentials).
    """

    def __init__(
        self, policy: Policy, table: dict[str, Route], router: RoutedOnce
    ) -> None:
        self.policy = policy
        self.table = table
        self.router = router
        self.limiter = RateLimiter()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        policy = self.policy
        listener = req.env.get(LISTENER_KEY, UNIX)
        principal, failure = self._identify(req, listener)
        # The socket's trusted role is not limited: it may change the limits.
        trusted = principal is not None and principal.kind == UNIX
        key = principal.name if principal else f'anonymous:{req.remote_addr}'
        rate = 0.0 if trusted else policy.rate_per_s
        wait = self.limiter.take(key, rate, policy.burst, time.monotonic())
        if wait > 0:
            raise Problem(
                429,
                'rate_limited',
                'Too many requests; slow down.',
                headers={'Retry-After': str(max(1, math.ceil(wait)))},
            )
        req.context.principal = principal
        if failure is not None:
            raise _unauthorized(failure.code, str(failure))
        if preflight(req):
            return
        found = self.router.find(req.path, req)
        route = None if found is None else self.table.get(found[3] or '')
        needed = required_scope(route, req.method)
        if needed is None:
            return
        if principal is None:
            raise _unauthorized('unauthenticated', 'This needs a bearer token.')
        if principal.scope < needed:
            raise Problem(
                403, 'forbidden', f'This needs the {needed.label} scope or higher.'
            )

    def _identify(
        self, req: falcon.Request, listener: str
    ) -> tuple[Principal | None, AuthError | None]:
        policy = self.policy
        try:
            bearer = _bearer(req)
            if bearer is not None:
                return policy.authenticator.authenticate(bearer), None
        except AuthError as exc:
            log.info('auth.refused', extra={'code': exc.code, 'listener': listener})
            return None, exc
        if listener == UNIX and not policy.unix_requires_token:
            return Principal(UNIX, policy.unix_role, UNIX), None
        return None, None


class Cors:
    """CORS for the configured origins only, and the headers every answer has."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not preflight(req):
            return
        if req.get_header('Origin') not in self.policy.cors_origins:
            raise Problem(403, 'origin_not_allowed', 'This origin may not call here.')
        resp.set_header('Access-Control-Allow-Methods', _CORS_METHODS)
        resp.set_header('Access-Control-Allow-Headers', _CORS_HEADERS)
        resp.set_header('Access-Control-Max-Age', '600')
        resp.status = falcon.HTTP_204
        resp.complete = True

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        origin = req.get_header('Origin')
        if origin is not None and origin in self.policy.cors_origins:
            resp.set_header('Access-Control-Allow-Origin', origin)
            resp.set_header(
                'Access-Control-Expose-Headers', 'X-Request-ID, Retry-After'
            )
            resp.append_header('Vary', 'Origin')
        resp.set_headers(SECURITY_HEADERS)


class Deadline:
    """A request older than ``request_timeout_s`` is answered 503, not run.

    A request that waited in the queue past its deadline is refused before
    its handler starts; handlers that wait (a consistent search) wait no
    longer than the deadline; one that overran anyway is logged, and a read
    is answered 503 (a change already made is reported as it happened).
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        arrived = req.env.get(ARRIVED_KEY, req.context.started)
        req.context.deadline = arrived + self.policy.request_timeout_s
        if time.perf_counter() >= req.context.deadline:
            raise deadline_problem()

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: Any,
        req_succeeded: bool,
    ) -> None:
        deadline = getattr(req.context, 'deadline', None)
        if deadline is None or time.perf_counter() < deadline:
            return
        log.warning(
            'http.deadline_exceeded',
            extra={'route': req.uri_template or '(none)', 'method': req.method},
        )
        if req.method in READS and resp.status_code < 400:
            answer(resp, deadline_problem())


def deadline_problem() -> Problem:
    return Problem(503, 'deadline_exceeded', 'The request took too long; try again.')
