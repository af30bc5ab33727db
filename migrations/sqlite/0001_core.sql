-- Core path: connections, the durable inbox, the embedded event log, dead
-- letters, and the transform registry/routes that the dispatcher reads.
-- Times are unix epoch milliseconds (INTEGER) so that SQLite and PostgreSQL
-- compare them the same way.

CREATE TABLE connections (
    id                      TEXT PRIMARY KEY,
    provider                TEXT NOT NULL,
    shop_domain             TEXT NOT NULL,
    workspace_id            TEXT NOT NULL,
    brand_id                TEXT NOT NULL,
    secure_path_identifier  TEXT NOT NULL UNIQUE,
    -- vault ciphertexts (see host/src/vault.rs); AAD binds them to this row
    webhook_secret          TEXT NOT NULL,
    previous_webhook_secret TEXT,
    status                  TEXT NOT NULL DEFAULT 'active',
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    UNIQUE (provider, shop_domain, brand_id)
);

CREATE TABLE inbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id    TEXT NOT NULL REFERENCES connections (id),
    provider         TEXT NOT NULL,
    workspace_id     TEXT NOT NULL,
    brand_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    topic            TEXT NOT NULL,
    shop_domain      TEXT NOT NULL,
    api_version      TEXT,
    triggered_at     TEXT,
    shopify_event_id TEXT,
    trace_id         TEXT NOT NULL,
    headers          TEXT NOT NULL,
    body             BLOB NOT NULL,
    received_at      INTEGER NOT NULL,
    -- pending -> published | dead
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    claimed_until    INTEGER,
    last_error       TEXT,
    finished_at      INTEGER,
    deliveries       TEXT,
    UNIQUE (connection_id, webhook_id)
);
CREATE INDEX inbox_pending ON inbox (next_attempt_at, id) WHERE status = 'pending';

-- The embedded event log: the sink when no Kafka is configured.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    key        TEXT NOT NULL,
    headers    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE dead_letters (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox_id         INTEGER NOT NULL UNIQUE REFERENCES inbox (id),
    connection_id    TEXT NOT NULL,
    workspace_id     TEXT NOT NULL,
    brand_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    reason_code      TEXT NOT NULL,
    reason           TEXT NOT NULL,
    transform        TEXT,
    transform_digest TEXT,
    created_at       INTEGER NOT NULL
);

-- Uploaded transform components, immutable, keyed by sha256 of their bytes.
CREATE TABLE transforms (
    digest     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    component  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- (provider, workspace?, brand?, topic pattern) -> transform. '' means "any".
-- `transform` is a digest from `transforms`, or `builtin:<name>`.
CREATE TABLE routes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    provider      TEXT NOT NULL,
    workspace_id  TEXT NOT NULL DEFAULT '',
    brand_id      TEXT NOT NULL DEFAULT '',
    topic_pattern TEXT NOT NULL,
    transform     TEXT NOT NULL,
    config        TEXT NOT NULL DEFAULT '{}',
    limits        TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (provider, workspace_id, brand_id, topic_pattern)
);
