-- Sandbox records and the lifecycle event log.
--
-- Times are unix nanoseconds in UTC; NULL stands for the zero time.Time.
-- Env and metadata are JSON objects.

CREATE TABLE sandboxes (
    id           TEXT    NOT NULL PRIMARY KEY,
    state        TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    image        TEXT    NOT NULL,
    runtime      TEXT    NOT NULL,
    memory_mb    INTEGER NOT NULL,
    vcpus        INTEGER NOT NULL,
    network      INTEGER NOT NULL CHECK (network IN (0, 1)),
    owner_id     TEXT    NOT NULL,
    template     TEXT    NOT NULL,
    env          TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    error        TEXT    NOT NULL,
    created_at   INTEGER,
    updated_at   INTEGER,
    expires_at   INTEGER,
    destroyed_at INTEGER
) STRICT;

CREATE INDEX sandboxes_state ON sandboxes (state);
CREATE INDEX sandboxes_owner_id ON sandboxes (owner_id);
-- Matches the list order: newest first, ties broken by id.
CREATE INDEX sandboxes_created_at ON sandboxes (created_at, id);
CREATE INDEX sandboxes_expires_at ON sandboxes (expires_at);

-- AUTOINCREMENT keeps SQLite from reusing the sequence number of a deleted
-- row, so a client that resumes after a seq never misses or repeats an event
-- after pruning.
CREATE TABLE events (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    type       TEXT    NOT NULL,
    sandbox_id TEXT    NOT NULL,
    time       INTEGER NOT NULL,
    data       BLOB
) STRICT;

CREATE INDEX events_time ON events (time);
