"""Liveness and health: what probes, operators and the watchdog look at."""

from typing import Any
from typing import ClassVar

import falcon

from jamey import __version__
from jamey.health import FAILING
from jamey.health import HealthChecks


def _ok_schema() -> dict[str, Any]:
    return {
        'type': 'object',
        'required': ['status'],
        'properties': {'status': {'type': 'string', 'const': 'ok'}},
    }


class Root:
    """``GET /``: what this is, for a person poking at the socket."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Name and version of the daemon',
            'operationId': 'getRoot',
            'responses': {
                '200': {
                    'description': 'The daemon answers',
                    'content': {
                        'application/json': {
                            'schema': {'$ref': '#/components/schemas/About'}
                        }
                    },
                }
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = {
        'About': {
            'type': 'object',
            'required': ['name', 'version', 'status'],
            'properties': {
                'name': {'type': 'string'},
                'version': {'type': 'string'},
                'status': {'type': 'string', 'const': 'ok'},
            },
        }
    }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {'name': 'jamey', 'version': __version__, 'status': 'ok'}


class Liveness:
    """``GET /health``: the process serves requests; nothing else is checked."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Liveness: the daemon answers requests',
            'operationId': 'getHealth',
            'responses': {
                '200': {
                    'description': 'Alive',
                    'content': {'application/json': {'schema': _ok_schema()}},
                }
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = {}
    _BODY = b'{"status": "ok"}'

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._BODY
        resp.content_type = falcon.MEDIA_JSON


class Detailed:
    """``GET /health/detailed``: every check; 503 when a critical one fails."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'Detailed health of the daemon and its dependencies',
            'operationId': 'getHealthDetailed',
            'responses': {
                '200': {
                    'description': 'Healthy or degraded',
                    'content': {
                        'application/json': {
                            'schema': {'$ref': '#/components/schemas/Health'}
                        }
                    },
                },
                '503': {
                    'description': 'A critical check fails',
                    'content': {
                        'application/json': {
                            'schema': {'$ref': '#/components/schemas/Health'}
                        }
                    },
                },
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = {
        'Health': {
            'type': 'object',
            'required': ['status', 'version', 'uptime_s', 'checks'],
            'properties': {
                'status': {'type': 'string', 'enum': ['ok', 'degraded', 'failing']},
                'version': {'type': 'string'},
                'uptime_s': {'type': 'number', 'minimum': 0},
                'checks': {
                    'type': 'object',
                    'additionalProperties': {
                        'type': 'object',
                        'required': ['status', 'critical'],
                        'properties': {
                            'status': {
                                'type': 'string',
                                'enum': ['ok', 'degraded', 'failing'],
                            },
                            'critical': {'type': 'boolean'},
                            'external': {
                                'type': 'boolean',
                                'description': 'The cause is outside the daemon'
                                ' (a full disk): failing, it does not stop the'
                                ' watchdog, since a restart cannot mend it',
                            },
                        },
                    },
                },
            },
        }
    }

    def __init__(self, health: HealthChecks) -> None:
        self.health = health

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self.health.run()
        resp.media = {
            'status': report.status,
            'version': __version__,
            'uptime_s': round(self.health.uptime_s(), 3),
            'checks': {
                c.name: {
                    'status': c.status,
                    'critical': c.critical,
                    'external': c.external,
                    **c.detail,
                }
                for c in report.checks
            },
        }
        if report.status == FAILING:
            resp.status = falcon.HTTP_503
