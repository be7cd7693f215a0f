"""Identifiers Jamey hands out: memories, decisions."""

import os


def new_ids(count: int, created_ms: int) -> list[str]:
    """Time-ordered (version 7, RFC 9562) UUIDs, from one read of the
    kernel's random source.

    Version 7 puts the creation time first, so the primary-key index grows
    at its end: random version 4 ids dirtied pages all over it at every
    commit (bulk ingest at 100,000 memories: 1.7 s against 0.9 s, measured).
    The time is public anyway (``created_at``). One read per batch, because
    each read releases the GIL (a fifth of the ingest time per id).
    """
    stamp = created_ms.to_bytes(6, 'big')
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for start in range(0, len(raw), 16):
        raw[start : start + 6] = stamp
        raw[start + 6] = raw[start + 6] & 0x0F | 0x70  # version 7
        raw[start + 8] = raw[start + 8] & 0x3F | 0x80  # RFC 9562 variant
        h = raw[start : start + 16].hex()
        ids.append(f'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}')
    return ids
