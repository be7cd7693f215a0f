"""The OpenAPI 3.1 document, generated from the route table.

Each resource class declares its operations (``spec``) and the schemas they
reference (``schemas``); a route added to the table is documented, or the
build fails, so the document cannot drift from what is served.
"""

import json
from typing import Any
from typing import ClassVar

import falcon

from jamey import __version__
from jamey.api.access import Route
from jamey.api.access import required_scope

PROBLEM_SCHEMA = {
    'type': 'object',
    'required': ['type', 'title', 'status', 'detail', 'code'],
    'properties': {
        'type': {'type': 'string'},
        'title': {'type': 'string'},
        'status': {'type': 'integer', 'minimum': 400, 'maximum': 599},
        'detail': {'type': 'string'},
        'code': {'type': 'string', 'pattern': '^[a-z][a-z0-9_]*$'},
        'request_id': {'type': 'string'},
    },
}
_PROBLEM_RESPONSE = {
    'description': 'An error, as RFC 9457 problem details',
    'content': {
        'application/problem+json': {'schema': {'$ref': '#/components/schemas/Problem'}}
    },
}


# What validation.text accepts: something besides spaces, no control characters.
_TEXT_PATTERN = (
    '^[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029]*'
    '[^\\s\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]'
    '[^\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$'
)


def text(max_chars: int) -> dict[str, Any]:
    """A string field as ``validation.text`` checks it."""
    return {
        'type': 'string',
        'minLength': 1,
        'maxLength': max_chars,
        'pattern': _TEXT_PATTERN,
    }


def ref(name: str) -> dict[str, Any]:
    """A reference to a schema in ``components``."""
    return {'$ref': f'#/components/schemas/{name}'}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A response whose body is JSON of ``schema``."""
    return {
        'description': description,
        'content': {'application/json': {'schema': schema}},
    }


def query_parameter(
    name: str, schema: dict[str, Any], description: str
) -> dict[str, Any]:
    """An optional query parameter."""
    return {
        'name': name,
        'in': 'query',
        'required': False,
        'schema': schema,
        'description': description,
    }


_SECURITY: list[dict[str, list[str]]] = [{}, {'bearer': []}]
_METHODS = frozenset({'get', 'put', 'post', 'delete', 'patch', 'head', 'options'})


def build_document(routes: dict[str, Route]) -> dict[str, Any]:
    """Assemble paths and components from each resource's declarations.

    Each operation names the scope it needs (``x-scope``); a bearer token is
    optional in the document because the Unix socket trusts its callers.
    """
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {'Problem': PROBLEM_SCHEMA}
    for path, route in routes.items():
        spec = route.resource.spec
        operations = {}
        for key, value in spec.items():
            if key in _METHODS:
                scope = required_scope(route, key.upper())
                value = {  # noqa: PLW2901
                    **value,
                    'responses': {**value['responses'], 'default': _PROBLEM_RESPONSE},
                    'security': _SECURITY if scope else [],
                    'x-scope': scope.label if scope else 'none',
                }
            operations[key] = value
        paths[path] = operations
        schemas.update(route.resource.schemas)
    return {
        'openapi': '3.1.0',
        'info': {
            'title': 'Jamey',
            'version': __version__,
            'description': 'The API of jameyd, the Jamey guardian daemon.',
        },
        'paths': paths,
        'components': {
            'schemas': schemas,
            'securitySchemes': {
                'bearer': {
                    'type': 'http',
                    'scheme': 'bearer',
                    'description': 'An API token (jamey_...) or a JWT',
                }
            },
        },
    }


class OpenApi:
    """``GET /openapi.json``."""

    spec: ClassVar[dict[str, Any]] = {
        'get': {
            'summary': 'This document',
            'operationId': 'getOpenApi',
            'responses': {
                '200': {
                    'description': 'The OpenAPI 3.1 document',
                    'content': {'application/json': {'schema': {'type': 'object'}}},
                }
            },
        }
    }
    schemas: ClassVar[dict[str, Any]] = {}

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(
            document, separators=(',', ':'), allow_nan=False
        ).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.body
        resp.content_type = falcon.MEDIA_JSON
