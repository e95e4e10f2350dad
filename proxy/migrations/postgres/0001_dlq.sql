-- Events Kafka did not acknowledge in time, kept until the retry scheduler delivers them.
-- Shared by every proxy of a deployment; rows are claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE dlq_events (
    seq              BIGSERIAL PRIMARY KEY,
    event_id         TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    record_key       BYTEA,
    record_value     BYTEA,
    headers          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'parked')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_ms  BIGINT  NOT NULL,
    created_ms       BIGINT  NOT NULL,
    claimed_until_ms BIGINT  NOT NULL DEFAULT 0,
    UNIQUE (topic, event_id)
);

CREATE INDEX dlq_events_due ON dlq_events (state, next_attempt_ms);
