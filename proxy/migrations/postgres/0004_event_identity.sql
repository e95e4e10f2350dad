-- An event's identity is (source, id), as CloudEvents defines it: two events that share an id
-- but not a source are two events and two rows. Existing rows are kept, with an empty source
-- (they were already unique by topic and id).
ALTER TABLE dlq_events ADD COLUMN event_source TEXT NOT NULL DEFAULT '';
ALTER TABLE dlq_events DROP CONSTRAINT dlq_events_topic_event_id_key;
ALTER TABLE dlq_events ADD CONSTRAINT dlq_events_identity UNIQUE (topic, event_source, event_id);
