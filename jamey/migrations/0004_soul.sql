-- The soul: entities, the history of what Jamey felt about them, and the
-- memories that concern them.
--
-- Names are stored in Unicode NFC (the code normalises before every use).
-- trust is the value at decayed_ms; decay accrues from there at decay_rate
-- per hour, and is written back by the decay job or the next interaction.
CREATE TABLE entities (
    name                 TEXT PRIMARY KEY,
    trust                REAL NOT NULL CHECK (trust BETWEEN 0 AND 1),
    decay_rate           REAL NOT NULL CHECK (decay_rate >= 0),
    decayed_ms           INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    last_interaction_ms  INTEGER,
    interaction_count    INTEGER NOT NULL DEFAULT 0 CHECK (interaction_count >= 0)
) STRICT;

CREATE INDEX entities_by_interaction ON entities (last_interaction_ms);

CREATE TABLE emotions (
    id           INTEGER PRIMARY KEY,
    entity       TEXT NOT NULL REFERENCES entities (name) ON DELETE CASCADE,
    emotion      TEXT NOT NULL CHECK (emotion IN ('joy', 'sadness', 'anger', 'neutral', 'love')),
    intensity    REAL NOT NULL CHECK (intensity BETWEEN 0 AND 1),
    recorded_ms  INTEGER NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('manual', 'conscience', 'api'))
) STRICT;

CREATE INDEX emotions_by_entity ON emotions (entity, emotion, id);

CREATE TABLE memory_links (
    entity     TEXT NOT NULL REFERENCES entities (name) ON DELETE CASCADE,
    memory_id  TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    PRIMARY KEY (entity, memory_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX memory_links_by_memory ON memory_links (memory_id);
