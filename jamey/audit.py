"""The audit log: every decision of the conscience, who asked, under which rules.

It keeps the SHA-256 of the action, never its text: whoever holds an action
can prove it was judged (and how), but the log itself reveals nothing of what
was asked. It is bounded (the oldest entries go first) and is written in the
caller's transaction, so a decision acknowledged to a client is on record.
"""

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from jamey.clock import iso_utc
from jamey.ids import new_ids
from jamey.storage import Database

VERDICTS = ('allow', 'review', 'deny')
MAX_PAGE = 1000
# Pruning runs once in this many records: a DELETE per decision would double
# the write cost of every evaluation for nothing.
_PRUNE_EVERY = 100


class AuditLog:
    """Appends decisions and reads them back, newest first."""

    def __init__(
        self,
        db: Database,
        max_entries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._since_prune = 0

    def record(
        self, principal: str, verdict: str, rules_version: int, action: str
    ) -> str:
        """Write one decision; returns its ``decision_id``."""
        now_ms = int(self._clock() * 1000)
        decision_id = new_ids(1, now_ms)[0]
        digest = hashlib.sha256(action.encode()).hexdigest()
        with self.db.transaction() as conn:
            conn.execute(
                'INSERT INTO audit_log (decision_id, decided_ms, principal, verdict,'
                ' rules_version, action_sha256) VALUES (?, ?, ?, ?, ?, ?)',
                (decision_id, now_ms, principal, verdict, rules_version, digest),
            )
            if self._due_for_pruning():
                conn.execute(
                    'DELETE FROM audit_log WHERE seq <= '
                    '(SELECT MAX(seq) FROM audit_log) - ?',
                    (self.max_entries,),
                )
            self.db.after_commit(lambda: self._count(verdict))
        return decision_id

    def _due_for_pruning(self) -> bool:
        with self._lock:
            self._since_prune += 1
            if self._since_prune < _PRUNE_EVERY:
                return False
            self._since_prune = 0
            return True

    def _count(self, verdict: str) -> None:
        with self._lock:
            self._counts[verdict] += 1

    def counts(self) -> dict[str, int]:
        """Decisions recorded since this process started, by verdict."""
        with self._lock:
            return {verdict: self._counts[verdict] for verdict in VERDICTS}

    def entries(
        self, limit: int, before: int | None = None, decision_id: str | None = None
    ) -> dict[str, Any]:
        """A page of entries, newest first; ``next_before`` continues it."""
        rows = self.db.connection().execute(
            'SELECT seq, decision_id, decided_ms, principal, verdict, rules_version,'
            ' action_sha256 FROM audit_log'
            ' WHERE (?1 IS NULL OR seq < ?1) AND (?2 IS NULL OR decision_id = ?2)'
            ' ORDER BY seq DESC LIMIT ?3',
            (before, decision_id, limit),
        )
        entries = [
            {
                'seq': seq,
                'decision_id': did,
                'decided_at': iso_utc(ms / 1000),
                'principal': principal,
                'verdict': verdict,
                'rules_version': version,
                'action_sha256': digest,
            }
            for seq, did, ms, principal, verdict, version, digest in rows
        ]
        more = len(entries) == limit and entries[-1]['seq'] > 1
        return {
            'entries': entries,
            'next_before': entries[-1]['seq'] if more else None,
        }
