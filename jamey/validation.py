"""Checks shared by every input path (API, MQTT, CLI), each naming its field.

They raise InputError with a stable ``code`` so clients can branch on it
whichever way a request arrived.
"""

import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import NoReturn

from jamey.errors import InputError

# C0 and C1 control characters, DEL, and the Unicode line/paragraph
# separators; tab and newline are ordinary text.
_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]')
# Half of a UTF-16 surrogate pair: JSON's \ud800 escape decodes to one,
# but alone it is no character, and nothing can encode it (SQLite, a log
# line, an answer).
_SURROGATE = re.compile('[\ud800-\udfff]')
SLUG = re.compile(r'[a-z0-9][a-z0-9-]{0,63}')
MAX_ENTITY_CHARS = 128


def _no_constants(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise InputError('', 'invalid_json', f'{name} is not valid JSON.')


class _InfiniteError(Exception):
    """A number beyond a double's range, which Python reads as infinity."""


def _finite(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _InfiniteError
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            # The field is sent back, so it must be text (the message escapes).
            field = '' if _SURROGATE.search(key) else key
            raise InputError(field, 'duplicate_field', f'Field {key!r} appears twice.')
        document[key] = value
    return document


# One decoder for every request: building one per call costs more than
# parsing a small body. The second reads numbers as Python does, so that the
# place of one beyond range can be named.
_DECODER = json.JSONDecoder(
    parse_float=_finite, parse_constant=_no_constants, object_pairs_hook=_unique_keys
)
_AS_READ = json.JSONDecoder(
    parse_constant=_no_constants, object_pairs_hook=_unique_keys
)


def json_document(raw: bytes, inner: str | None = None) -> Any:
    """A request body or message as JSON: UTF-8, no duplicate keys, every
    number finite and every string text.

    A place inside the member ``inner`` is named from it, as the capability
    that reads that member names its fields (an MQTT message's payload).

    Raises:
        InputError: ``invalid_json`` (also for an integer of more than 4,300
            digits, which Python does not read), ``duplicate_field`` naming
            the key; ``out_of_range`` naming where a number beyond 1.8e308 is
            (JSON has no infinity to answer it with), ``invalid_text`` where
            a lone surrogate is.
    """
    try:
        text = raw.decode('utf-8')
        try:
            document = _DECODER.decode(text)
            # Strict UTF-8 holds no surrogates: only a \u escape brings one.
            suspect = '\\ud' in text or '\\uD' in text
        except _InfiniteError:
            document, suspect = _AS_READ.decode(text), True
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InputError('', 'invalid_json', 'The body is not valid JSON.') from None
    except ValueError:
        # What else int() refuses: more digits than Python converts.
        limit = sys.get_int_max_str_digits()
        raise InputError(
            '',
            'invalid_json',
            f'A number in the body is too long to read (over {limit} digits).',
        ) from None
    if suspect:
        _require_sound(document, inner)
    return document


def _require_sound(document: Any, inner: str | None) -> None:
    """Raise for a number of ``document`` that is not finite or a string or
    key that holds a lone surrogate, naming its place: ``weight``,
    ``metadata.note``, ``violations[2]`` (a key is named by its object)."""
    pending: list[tuple[str, Any]] = [('', document)]
    while pending:
        place, value = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise InputError(
                    place,
                    'invalid_text',
                    f'{place or "The body"} is not text: it holds a lone surrogate'
                    ' (\\ud800-\\udfff).',
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(
                    place,
                    'out_of_range',
                    f'{place or "The body"} is beyond 1.8e308, which JSON cannot'
                    ' carry back.',
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise InputError(
                        place,
                        'invalid_text',
                        f'A key in {place or "the body"} is not text: it holds a'
                        ' lone surrogate.',
                    )
                if place:
                    pending.append((f'{place}.{key}', item))
                else:
                    pending.append(('' if key == inner else key, item))
        elif isinstance(value, list):
            pending.extend((f'{place}[{i}]', item) for i, item in enumerate(value))


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InputError('', 'wrong_type', 'The body must be a JSON object.')
    return body


def reject_unknown(body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError(unknown[0], 'unknown_field', f'Unknown field {unknown[0]!r}.')


def require_fields(body: Mapping[str, Any], fields: Iterable[str]) -> None:
    """Each of ``fields`` is present (a null counts as present)."""
    for field in fields:
        if field not in body:
            raise InputError(field, 'required', f'{field} is required.')


def text(field: str, value: Any, max_chars: int, *, required: bool = True) -> str:
    """A string of 1..max_chars characters without control characters."""
    if not isinstance(value, str):
        raise InputError(field, 'wrong_type', f'{field} must be a string.')
    if required and not value.strip():
        raise InputError(field, 'empty', f'{field} must not be empty.')
    if len(value) > max_chars:
        raise InputError(
            field, 'too_long', f'{field} is longer than {max_chars} characters.'
        )
    if _CONTROL.search(value):
        raise InputError(
            field, 'control_characters', f'{field} contains control characters.'
        )
    return value


def without_control(value: str) -> str:
    """``value`` less the characters ``text`` refuses and lone surrogates: for
    text Jamey did not write itself (a model's reply), which must still be
    storable and safe to print on a terminal."""
    return _SURROGATE.sub('', _CONTROL.sub('', value))


def slug(field: str, value: Any) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise InputError(
            field,
            'invalid_name',
            f'{field} must match {SLUG.pattern} (lower-case letters, digits, dashes).',
        )
    return value


def number(field: str, value: Any, minimum_exclusive: float, maximum: float) -> float:
    # bool is an int in Python, never a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, 'wrong_type', f'{field} must be a number.')
    # Compared before it is converted: Python compares an integer of any
    # size with a float exactly (float() of a huge one overflows), and NaN
    # fails the comparison.
    if not minimum_exclusive < value <= maximum:
        raise InputError(
            field,
            'out_of_range',
            f'{field} must be above {minimum_exclusive:g} and at most {maximum:g}.',
        )
    return float(value)


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, 'wrong_type', f'{field} must be true or false.')
    return value


def text_list(field: str, value: Any, max_items: int, max_chars: int) -> list[str]:
    if not isinstance(value, list):
        raise InputError(field, 'wrong_type', f'{field} must be a list of strings.')
    if len(value) > max_items:
        raise InputError(
            field, 'too_many', f'{field} has more than {max_items} entries.'
        )
    return [text(f'{field}[{i}]', item, max_chars) for i, item in enumerate(value)]


def entity_name(field: str, value: Any) -> str:
    """An entity's name: 1..128 characters, no control characters and no
    ``/`` (names are a path segment of the API), in Unicode NFC, the form
    names are compared in."""
    name = unicodedata.normalize('NFC', text(field, value, MAX_ENTITY_CHARS))
    if '/' in name:
        raise InputError(field, 'invalid_name', f'{field} must not contain "/".')
    if name != name.strip():
        raise InputError(
            field, 'invalid_name', f'{field} must not start or end with spaces.'
        )
    if len(name) > MAX_ENTITY_CHARS:
        raise InputError(
            field, 'too_long', f'{field} is longer than {MAX_ENTITY_CHARS} characters.'
        )
    return name
