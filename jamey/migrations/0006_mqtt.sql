-- MQTT: what must reach the broker, and the requests already answered.
--
-- Replies are written to the outbox in the transaction that makes the change
-- they report, and removed once the broker acknowledged them (PUBACK); rows
-- are published in id order, so a topic's messages keep their order across
-- broker outages and restarts.
CREATE TABLE mqtt_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    correlation  BLOB,
    created_ms   INTEGER NOT NULL
) STRICT;

-- A request redelivered (QoS 1) is answered with the reply it got, not
-- applied again. Kept for ten minutes.
CREATE TABLE mqtt_requests (
    subject      TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    reply        BLOB NOT NULL,
    PRIMARY KEY (subject, message_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX mqtt_requests_by_time ON mqtt_requests (received_ms);
