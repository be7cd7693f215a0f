-- Access: the API tokens operators hand out, and the audit log of the
-- conscience's decisions.
--
-- A token is shown once; only the SHA-256 of its secret part is kept (the
-- secret is 32 random bytes, so a fast hash is enough: nothing to guess).
-- Revoked tokens stay listed, so an operator sees what was cut off and when.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    scope          TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    secret_sha256  BLOB NOT NULL,
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER,
    last_used_ms   INTEGER,
    revoked_ms     INTEGER
) STRICT;

CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_ms IS NULL;

-- One row per decision: who asked, what was decided under which rules, and
-- the SHA-256 of the action (never its text). Bounded by auth.audit_max_entries.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    decision_id    TEXT NOT NULL UNIQUE,
    decided_ms     INTEGER NOT NULL,
    principal      TEXT NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('allow', 'review', 'deny')),
    rules_version  INTEGER NOT NULL,
    action_sha256  TEXT NOT NULL
) STRICT;
