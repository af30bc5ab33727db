-- The connection API (issue 19 §1).

-- Paused intake: webhooks are still verified, stored and answered 2xx, but
-- the dispatcher claims none of the connection's rows until it is resumed
-- (the claim skips them), so nothing is lost however long the pause lasts.
ALTER TABLE connections ADD COLUMN paused_at INTEGER;
ALTER TABLE connections ADD COLUMN paused_by TEXT;
-- When intake last stored a webhook of the connection: set by the inbox's
-- group commit (to the second), so "last webhook received" is one row read,
-- not a scan.
ALTER TABLE connections ADD COLUMN last_webhook_at INTEGER;

-- The `integration.*` events (connected, disconnected, redacted, paused,
-- resumed, token_refreshed), written in the transaction that changes the
-- connection and published from here (an outbox): a crash between the change
-- and the publish leaves the row pending, so the event is still sent. The
-- connection's names are copied at the change, as the event tells of it.
CREATE TABLE integration_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    account       TEXT NOT NULL,
    workspace_id  TEXT NOT NULL,
    brand_id      TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    actor         TEXT,
    created_at    INTEGER NOT NULL,
    published_at  INTEGER
);
CREATE INDEX integration_events_pending ON integration_events (id) WHERE published_at IS NULL;
