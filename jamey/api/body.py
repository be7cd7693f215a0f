"""Reading JSON request bodies strictly: one way in for every resource."""

from typing import Any

import falcon

from jamey import validation


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
    return validation.json_document(req.bounded_stream.read())
