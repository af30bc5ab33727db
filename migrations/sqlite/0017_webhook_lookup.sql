-- "Where is my webhook" (`GET /admin/v1/webhooks`): a connection's webhooks
-- newest first, read backwards along this index (a workspace's: its
-- connections', merged). It is one more entry per stored webhook on
-- intake's path; ids only increase, so a connection's entries land at the
-- end of its own range, and a group commit's webhooks of one connection
-- share a leaf. On SQLite (2 KiB pages, group commits of 32 webhooks of 10
-- to 1000 connections) it added 1.7 to 2.7 KB of WAL per webhook to 4.9 KB;
-- a workspace index beside it would have added as much again, so there is
-- none. A delivery id alone is looked up through the unique
-- (connection_id, webhook_id) key, one probe per connection: no index on the
-- platforms' random ids is added.
CREATE INDEX inbox_connection_newest ON inbox (connection_id, id);

-- Every attempt the dispatcher recorded at a webhook, written in the
-- transaction that records its outcome (published, dead) or gives it back
-- for a retry: which route and transform version ran, and how it ended.
-- `attempt` is the inbox row's attempt count at the time (a replay keeps
-- counting). An attempt cut short by a crash leaves no row here. No
-- foreign key: one lookup less per write; whoever deletes inbox rows
-- deletes theirs here too.
CREATE TABLE inbox_attempts (
    inbox_id         INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    -- published | dead | retry
    outcome          TEXT NOT NULL,
    reason_code      TEXT,
    -- capped (store::inbox::ATTEMPT_ERROR_MAX)
    error            TEXT,
    route_id         INTEGER,
    transform        TEXT,
    transform_digest TEXT,
    PRIMARY KEY (inbox_id, attempt)
) WITHOUT ROWID;

-- Dead letters by when they were made, for the time filters of their list
-- and replay.
CREATE INDEX dead_letters_created ON dead_letters (created_at);
