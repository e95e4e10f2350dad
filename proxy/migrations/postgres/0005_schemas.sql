-- JSON Schemas of event data per (service, type), in versions that never change once
-- registered. Removing a type's schemas marks its versions deleted, so a version number is
-- never given to two different schemas. Every change also bumps the `schemas` row of
-- `settings` (whose value holds the per-service policy for invalid events): proxies sharing
-- the store poll that version and reload.
CREATE TABLE event_schemas (
    service     TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    schema_json TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    deleted_ms  BIGINT,
    PRIMARY KEY (service, event_type, version)
);
