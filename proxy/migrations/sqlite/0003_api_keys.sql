-- Per-service API keys of the publish endpoints. Only the SHA-256 of a key is kept: keys are
-- 256-bit random strings, so a fast hash is enough (a slow KDF would cost every request).
-- `previous_hash` is the secret before the last rotation, accepted until `previous_until_ms`.
CREATE TABLE api_keys (
    id                TEXT    PRIMARY KEY,
    service           TEXT    NOT NULL,
    label             TEXT    NOT NULL,
    key_hash          TEXT    NOT NULL UNIQUE,
    last4             TEXT    NOT NULL,
    previous_hash     TEXT,
    previous_until_ms INTEGER,
    created_ms        INTEGER NOT NULL,
    created_by        TEXT    NOT NULL,
    rotated_ms        INTEGER,
    revoked_ms        INTEGER
);
