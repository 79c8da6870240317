-- Spawn templates and the idempotency keys of spawn requests.
--
-- Times are unix nanoseconds in UTC and durations are nanoseconds; NULL
-- stands for the zero time.Time. Env and metadata are JSON objects, and
-- setup is a JSON array of strings.

CREATE TABLE templates (
    name          TEXT    NOT NULL PRIMARY KEY,
    description   TEXT    NOT NULL,
    image         TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    runtime       TEXT    NOT NULL,
    memory_mb     INTEGER NOT NULL,
    vcpus         INTEGER NOT NULL,
    ttl           INTEGER NOT NULL,
    network       INTEGER NOT NULL CHECK (network IN (0, 1)),
    env           TEXT    NOT NULL,
    setup         TEXT    NOT NULL,
    setup_timeout INTEGER NOT NULL,
    metadata      TEXT    NOT NULL,
    created_at    INTEGER,
    updated_at    INTEGER
) STRICT;

-- An empty sandbox_id marks a claim whose spawn is still in progress.
CREATE TABLE idempotency_keys (
    key          TEXT    NOT NULL PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    sandbox_id   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
