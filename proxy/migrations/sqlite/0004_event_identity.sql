-- An event's identity is (source, id), as CloudEvents defines it: two events that share an id
-- but not a source are two events and two rows. SQLite cannot change a UNIQUE constraint in
-- place, so the table is rebuilt; every existing row is kept (with an empty source: those rows
-- were already unique by topic and id).
CREATE TABLE dlq_events_v4 (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT    NOT NULL,
    event_source     TEXT    NOT NULL DEFAULT '',
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
    UNIQUE (topic, event_source, event_id)
);

INSERT INTO dlq_events_v4 (seq, event_id, event_source, topic, record_key, record_value, headers,
                           state, attempts, last_error, next_attempt_ms, created_ms,
                           claimed_until_ms)
SELECT seq, event_id, '', topic, record_key, record_value, headers, state, attempts, last_error,
       next_attempt_ms, created_ms, claimed_until_ms
FROM dlq_events;

DROP TABLE dlq_events;
ALTER TABLE dlq_events_v4 RENAME TO dlq_events;
CREATE INDEX dlq_events_due ON dlq_events (state, next_attempt_ms);
