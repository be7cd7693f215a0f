"""Row checksums: a flipped bit in what Jamey remembers and judges by is
found, never served as if it were true.

SQLite checks the structure of its pages, not the values in them: a bit
flipped inside a memory's text passes ``integrity_check`` and would be
served. So each row of the tables in ``TABLES`` carries ``checksum``, the
CRC-32 of its values in column order (``row_checksum``). The database
computes it: triggers (migration 0009) call ``jamey_checksum`` on every
insert and update, so every writer keeps it right (the capabilities, the
migrations, the decay job's SQL alike), and a connection ``register``\\s the
function before it touches these tables. Reads select ``damaged_key(table)``
beside the row and refuse a row it names (``Database.verified``); the full
check and the vault's verify look at every row (``damaged_rows``).

CRC-32 finds every flipped bit and every burst of up to 32; it is no
defence against someone who can write the file, who can write the checksum
as well.
"""

import struct
import zlib
from typing import NamedTuple

import apsw

FUNCTION = 'jamey_checksum'


class Table(NamedTuple):
    """A checksummed table: its key, its columns in checksum order, and
    which of them hold text (handed to the function as their bytes, so a
    damaged one that is no longer UTF-8 is still checked, not a decode
    error)."""

    key: str
    columns: tuple[str, ...]
    texts: frozenset[str]

    def arguments(self, row: str = '') -> str:
        """The function's arguments over a row (``NEW.`` in a trigger)."""
        return ', '.join(
            f'CAST({row}{c} AS BLOB)' if c in self.texts else f'{row}{c}'
            for c in self.columns
        )


TABLES = {
    'memories': Table(
        'id',
        ('id', 'layer', 'content', 'entity', 'created_ms', 'created_at', 'metadata'),
        frozenset({'id', 'layer', 'content', 'entity', 'created_at', 'metadata'}),
    ),
    'rules': Table(
        'name',
        (
            'name',
            'description',
            'weight',
            'violations',
            'affirmations',
            'enabled',
            'created_at',
            'updated_at',
            'examples',
            'counterexamples',
        ),
        frozenset(
            {
                'name',
                'description',
                'violations',
                'affirmations',
                'created_at',
                'updated_at',
                'examples',
                'counterexamples',
            }
        ),
    ),
    'entities': Table(
        'name',
        (
            'name',
            'trust',
            'decay_rate',
            'decayed_ms',
            'created_at',
            'last_interaction_ms',
            'interaction_count',
        ),
        frozenset({'name', 'created_at'}),
    ),
    'emotions': Table(
        'id',
        ('id', 'entity', 'emotion', 'intensity', 'recorded_ms', 'source'),
        frozenset({'entity', 'emotion', 'source'}),
    ),
}
_REAL = struct.Struct('<d')
_LENGTH = struct.Struct('<I')


def row_checksum(*values: int | float | bytes | str | None) -> int:
    """CRC-32 of a row's values as SQLite holds them: each value's class
    letter (N, I, R, B), then an integer or a real as 8 bytes little-endian,
    bytes as their length in 4 bytes and themselves (the triggers hand texts
    over as their bytes; a text given as such is its UTF-8); a NULL is its
    letter alone."""
    parts = []
    for value in values:
        if value is None:
            parts.append(b'N')
        elif isinstance(value, int):
            parts.append(b'I' + value.to_bytes(8, 'little', signed=True))
        elif isinstance(value, float):
            parts.append(b'R' + _REAL.pack(value))
        else:
            data = value.encode() if isinstance(value, str) else bytes(value)
            parts.append(b'B' + _LENGTH.pack(len(data)) + data)
    return zlib.crc32(b''.join(parts))


def register(conn: apsw.Connection) -> None:
    """Give ``conn`` the function the checksum triggers call."""
    conn.create_scalar_function(FUNCTION, row_checksum, deterministic=True)


def damaged_key(table: str) -> str:
    """An SQL expression over a row of ``table``: NULL when its checksum
    holds, else its key as bytes (the checksum is computed again as the
    row is read)."""
    spec = TABLES[table]
    return (
        f'CASE WHEN checksum IS {FUNCTION}({spec.arguments()})'
        f' THEN NULL ELSE CAST({spec.key} AS BLOB) END'
    )


def name(table: str, key: object) -> str:
    """How a damaged row is named in messages and health: ``table/key``
    (``?`` where the key is not known)."""
    if key is None:
        shown = '?'
    elif isinstance(key, bytes):
        shown = key.decode('utf-8', 'replace')
    else:
        shown = str(key)
    return f'{table}/{shown}'


def damaged_rows(conn: apsw.Connection, limit: int) -> list[str]:
    """Every row whose checksum fails, named, up to ``limit``; tables of a
    schema without checksums (a backup of an older jameyd) are skipped."""
    found: list[str] = []
    for table in TABLES:
        has_checksum = conn.execute(
            "SELECT 1 FROM pragma_table_info(?) WHERE name = 'checksum'", (table,)
        ).fetchall()
        if not has_checksum or len(found) >= limit:
            continue
        rows = conn.execute(
            f'SELECT key FROM (SELECT {damaged_key(table)} AS key FROM {table})'  # noqa: S608 - constants only
            ' WHERE key IS NOT NULL LIMIT ?',
            (limit - len(found),),
        )
        found += [name(table, key) for (key,) in rows]
    return found
