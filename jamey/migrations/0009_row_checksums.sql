-- Row checksums (jamey/checksums.py): each row of the content that matters
-- carries the CRC-32 of its values, so a flipped bit is found when the row
-- is read or verified instead of being served. The triggers compute it on
-- every insert and update, whoever writes; jamey_checksum is the function
-- each connection of jameyd registers. A later migration that changes these
-- tables' columns replaces their triggers.

ALTER TABLE memories ADD COLUMN checksum INTEGER;
UPDATE memories SET checksum = jamey_checksum(
    CAST(id AS BLOB),
    CAST(layer AS BLOB),
    CAST(content AS BLOB),
    CAST(entity AS BLOB),
    created_ms,
    CAST(created_at AS BLOB),
    CAST(metadata AS BLOB)
);
CREATE TRIGGER memories_checksum_on_insert AFTER INSERT ON memories BEGIN
    UPDATE memories SET checksum = jamey_checksum(
        CAST(NEW.id AS BLOB),
        CAST(NEW.layer AS BLOB),
        CAST(NEW.content AS BLOB),
        CAST(NEW.entity AS BLOB),
        NEW.created_ms,
        CAST(NEW.created_at AS BLOB),
        CAST(NEW.metadata AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER memories_checksum_on_update AFTER UPDATE OF
    id, layer, content, entity, created_ms, created_at, metadata
ON memories BEGIN
    UPDATE memories SET checksum = jamey_checksum(
        CAST(NEW.id AS BLOB),
        CAST(NEW.layer AS BLOB),
        CAST(NEW.content AS BLOB),
        CAST(NEW.entity AS BLOB),
        NEW.created_ms,
        CAST(NEW.created_at AS BLOB),
        CAST(NEW.metadata AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;

ALTER TABLE rules ADD COLUMN checksum INTEGER;
UPDATE rules SET checksum = jamey_checksum(
    CAST(name AS BLOB),
    CAST(description AS BLOB),
    weight,
    CAST(violations AS BLOB),
    CAST(affirmations AS BLOB),
    enabled,
    CAST(created_at AS BLOB),
    CAST(updated_at AS BLOB),
    CAST(examples AS BLOB),
    CAST(counterexamples AS BLOB)
);
CREATE TRIGGER rules_checksum_on_insert AFTER INSERT ON rules BEGIN
    UPDATE rules SET checksum = jamey_checksum(
        CAST(NEW.name AS BLOB),
        CAST(NEW.description AS BLOB),
        NEW.weight,
        CAST(NEW.violations AS BLOB),
        CAST(NEW.affirmations AS BLOB),
        NEW.enabled,
        CAST(NEW.created_at AS BLOB),
        CAST(NEW.updated_at AS BLOB),
        CAST(NEW.examples AS BLOB),
        CAST(NEW.counterexamples AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER rules_checksum_on_update AFTER UPDATE OF
    name, description, weight, violations, affirmations, enabled,
    created_at, updated_at, examples, counterexamples
ON rules BEGIN
    UPDATE rules SET checksum = jamey_checksum(
        CAST(NEW.name AS BLOB),
        CAST(NEW.description AS BLOB),
        NEW.weight,
        CAST(NEW.violations AS BLOB),
        CAST(NEW.affirmations AS BLOB),
        NEW.enabled,
        CAST(NEW.created_at AS BLOB),
        CAST(NEW.updated_at AS BLOB),
        CAST(NEW.examples AS BLOB),
        CAST(NEW.counterexamples AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;

ALTER TABLE entities ADD COLUMN checksum INTEGER;
UPDATE entities SET checksum = jamey_checksum(
    CAST(name AS BLOB),
    trust,
    decay_rate,
    decayed_ms,
    CAST(created_at AS BLOB),
    last_interaction_ms,
    interaction_count
);
CREATE TRIGGER entities_checksum_on_insert AFTER INSERT ON entities BEGIN
    UPDATE entities SET checksum = jamey_checksum(
        CAST(NEW.name AS BLOB),
        NEW.trust,
        NEW.decay_rate,
        NEW.decayed_ms,
        CAST(NEW.created_at AS BLOB),
        NEW.last_interaction_ms,
        NEW.interaction_count
    )
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER entities_checksum_on_update AFTER UPDATE OF
    name, trust, decay_rate, decayed_ms, created_at,
    last_interaction_ms, interaction_count
ON entities BEGIN
    UPDATE entities SET checksum = jamey_checksum(
        CAST(NEW.name AS BLOB),
        NEW.trust,
        NEW.decay_rate,
        NEW.decayed_ms,
        CAST(NEW.created_at AS BLOB),
        NEW.last_interaction_ms,
        NEW.interaction_count
    )
    WHERE rowid = NEW.rowid;
END;

ALTER TABLE emotions ADD COLUMN checksum INTEGER;
UPDATE emotions SET checksum = jamey_checksum(
    id,
    CAST(entity AS BLOB),
    CAST(emotion AS BLOB),
    intensity,
    recorded_ms,
    CAST(source AS BLOB)
);
CREATE TRIGGER emotions_checksum_on_insert AFTER INSERT ON emotions BEGIN
    UPDATE emotions SET checksum = jamey_checksum(
        NEW.id,
        CAST(NEW.entity AS BLOB),
        CAST(NEW.emotion AS BLOB),
        NEW.intensity,
        NEW.recorded_ms,
        CAST(NEW.source AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER emotions_checksum_on_update AFTER UPDATE OF
    id, entity, emotion, intensity, recorded_ms, source
ON emotions BEGIN
    UPDATE emotions SET checksum = jamey_checksum(
        NEW.id,
        CAST(NEW.entity AS BLOB),
        CAST(NEW.emotion AS BLOB),
        NEW.intensity,
        NEW.recorded_ms,
        CAST(NEW.source AS BLOB)
    )
    WHERE rowid = NEW.rowid;
END;
