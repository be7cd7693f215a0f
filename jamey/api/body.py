"""Reading JSON request bodies strictly: one way in for every resource."""

import json
from typing import Any
from typing import NoReturn

import falcon

from jamey.errors import InputError


def _no_constants(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise InputError('', 'invalid_json', f'{name} is not valid JSON.')


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise InputError(key, 'duplicate_field', f'Field {key!r} appears twice.')
        document[key] = value
    return document


# One decoder for every request: building one per call costs more than
# parsing a small body.
_DECODER = json.JSONDecoder(
    parse_constant=_no_constants, object_pairs_hook=_unique_keys
)


def read_json(req: falcon.Request) -> Any:
    """The body as JSON: UTF-8, no duplicate keys, no NaN.

    Raises:
        falcon.HTTPUnsupportedMediaType: the body is not declared as JSON.
        InputError: the body is not valid JSON.
    """
    if req.content_type is None or req.content_type.split(';')[0].strip() != (
        falcon.MEDIA_JSON
    ):
        raise falcon.HTTPUnsupportedMediaType(
            description='Send the body as application/json.'
        )
    raw = req.bounded_stream.read()
    try:
        return _DECODER.decode(raw.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InputError('', 'invalid_json', 'The body is not valid JSON.') from None
