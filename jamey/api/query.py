"""Reading query strings strictly: one way in for every resource."""

import falcon

from jamey.errors import InputError

# More digits than this is beyond every limit and offset, and far from the
# 4,300 digits past which Python refuses to read an integer at all.
_MAX_DIGITS = 9


def params(req: falcon.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each given once and each one ``allowed``."""
    unknown = sorted(set(req.params) - set(allowed))
    if unknown:
        raise InputError(
            unknown[0], 'unknown_field', f'Unknown parameter {unknown[0]!r}.'
        )
    found = {}
    for name, value in req.params.items():
        if not isinstance(value, str):
            raise InputError(name, 'wrong_type', f'{name} must be given once.')
        found[name] = value
    return found


def whole(found: dict[str, str], name: str, default: int) -> int:
    """A whole number, or ``default`` when the parameter is absent."""
    raw = found.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise InputError(name, 'wrong_type', f'{name} must be a whole number.')
    if len(raw) > _MAX_DIGITS:
        raise InputError(name, 'out_of_range', f'{name} is far too large.')
    return int(raw)


def flag(found: dict[str, str], name: str) -> bool:
    """true/1 or false/0; absent is false."""
    raw = found.get(name, 'false')
    if raw not in ('true', 'false', '1', '0'):
        raise InputError(name, 'wrong_type', f'{name} must be true or false.')
    return raw in ('true', '1')
