"""Time as Jamey writes it: ISO 8601 in UTC, to the millisecond."""

import time


def iso_utc(seconds: float) -> str:
    """``2026-11-25T17:41:23.250Z`` for a Unix time."""
    stamp = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))
    return f'{stamp}.{int(seconds % 1 * 1000):03d}Z'
