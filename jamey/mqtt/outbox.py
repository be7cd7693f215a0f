"""The outbox: messages that must reach the broker, kept in SQLite.

``add`` joins the caller's transaction, so a reply exists exactly when the
change it reports does; rows leave only when the broker acknowledged them.
The answered requests live next to it: a redelivered request finds its
reply here instead of being applied twice.
"""

import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from jamey.storage import Database

# How long a request's message id is remembered; a QoS 1 redelivery comes
# within a reconnect, long before.
REMEMBER_S = 600
BATCH = 500


class Message(NamedTuple):
    id: int
    topic: str
    payload: bytes
    correlation: bytes | None


class Outbox:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def add(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        """Queue a message, in the caller's transaction (or its own)."""
        with self.db.transaction() as conn:
            conn.execute(
                'INSERT INTO mqtt_outbox (topic, payload, correlation, created_ms)'
                ' VALUES (?, ?, ?, ?)',
                (topic, payload, correlation, self._now_ms()),
            )

    def after(self, last_id: int) -> list[Message]:
        """The next messages to publish, oldest first."""
        rows: list[Any] = (
            self.db.connection()
            .execute(
                'SELECT id, topic, payload, correlation FROM mqtt_outbox'
                ' WHERE id > ? ORDER BY id LIMIT ?',
                (last_id, BATCH),
            )
            .fetchall()
        )
        return [Message(int(r[0]), str(r[1]), bytes(r[2]), r[3]) for r in rows]

    def remove(self, ids: list[int]) -> None:
        """Forget messages the broker acknowledged."""
        with self.db.transaction() as conn:
            conn.executemany(
                'DELETE FROM mqtt_outbox WHERE id = ?', [(i,) for i in ids]
            )

    def depth(self) -> tuple[int, float | None]:
        """Messages waiting, and the age of the oldest in seconds."""
        row: Any = (
            self.db.connection()
            .execute('SELECT count(*), min(created_ms) FROM mqtt_outbox')
            .fetchall()[0]
        )
        count, oldest = row
        age = None if oldest is None else max(0.0, (self._now_ms() - oldest) / 1000)
        return int(count), age

    def answered(self, subject: str, message_id: str) -> bytes | None:
        """The reply a request got, if it was answered in the last ten minutes."""
        rows: list[Any] = (
            self.db.connection()
            .execute(
                'SELECT reply FROM mqtt_requests WHERE subject = ? AND message_id = ?'
                ' AND received_ms >= ?',
                (subject, message_id, self._now_ms() - REMEMBER_S * 1000),
            )
            .fetchall()
        )
        return bytes(rows[0][0]) if rows else None

    def remember(self, subject: str, message_id: str, reply: bytes) -> None:
        """Note a request as answered, in the transaction that applied it."""
        with self.db.transaction() as conn:
            conn.execute(
                'INSERT OR REPLACE INTO mqtt_requests'
                ' (subject, message_id, received_ms, reply) VALUES (?, ?, ?, ?)',
                (subject, message_id, self._now_ms(), reply),
            )

    def forget_answered(self) -> int:
        """Drop requests older than ten minutes; returns how many."""
        with self.db.transaction() as conn:
            gone: list[Any] = conn.execute(
                'DELETE FROM mqtt_requests WHERE received_ms < ? RETURNING 1',
                (self._now_ms() - REMEMBER_S * 1000,),
            ).fetchall()
        return len(gone)
