-- Events Kafka did not acknowledge in time, kept until the retry scheduler delivers them.
CREATE TABLE dlq_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    record_key       BLOB,
    record_value     BLOB,
    headers          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'parked')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_ms  INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    claimed_until_ms INTEGER NOT NULL DEFAULT 0,
    UNIQUE (topic, event_id)
);

CREATE INDEX dlq_events_due ON dlq_events (state, next_attempt_ms);
