-- The five-layer memory. SQLite is the truth; the search index is derived.
--
-- Every insert and delete writes a journal row in the same transaction; the
-- indexer applies the journal and records the last sequence it committed,
-- so a crash at any point loses nothing and is repaired at the next start.
CREATE TABLE memories (
    id          TEXT PRIMARY KEY,
    layer       TEXT NOT NULL CHECK (layer IN
                    ('short_term', 'long_term', 'working', 'episodic', 'semantic')),
    content     TEXT NOT NULL,
    entity      TEXT,
    created_ms  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    metadata    TEXT CHECK (metadata IS NULL OR json_type(metadata) = 'object')
) STRICT;

CREATE INDEX memories_by_time ON memories (created_ms);
CREATE INDEX memories_by_layer ON memories (layer, created_ms);
CREATE INDEX memories_by_entity ON memories (entity, created_ms) WHERE entity IS NOT NULL;

CREATE TABLE memory_journal (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    memory_id  TEXT NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('add', 'delete'))
) STRICT;
