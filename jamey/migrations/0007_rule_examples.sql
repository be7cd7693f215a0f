-- Judgement by meaning: each rule's examples (texts that violate it) and
-- counterexamples (look-alikes that do not), JSON arrays of strings like the
-- phrase lists, and the cache of their sentence embeddings, keyed by the
-- model that computed one and the SHA-256 of its text.
ALTER TABLE rules ADD COLUMN examples TEXT NOT NULL DEFAULT '[]'
    CHECK (json_type(examples) = 'array');
ALTER TABLE rules ADD COLUMN counterexamples TEXT NOT NULL DEFAULT '[]'
    CHECK (json_type(counterexamples) = 'array');

CREATE TABLE embeddings (
    model   TEXT NOT NULL,
    digest  BLOB NOT NULL,
    vector  BLOB NOT NULL,
    PRIMARY KEY (model, digest)
) STRICT, WITHOUT ROWID;
