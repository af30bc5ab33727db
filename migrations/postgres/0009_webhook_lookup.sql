-- "Where is my webhook" (`GET /admin/v1/webhooks`): newest first within a
-- connection or a workspace, read backwards along these. Both grow at their
-- right edge (ids only increase), so intake adds an appended entry to each,
-- not a leaf of random keys. A delivery id alone is looked up through the
-- unique (connection_id, webhook_id) key, one probe per connection: no index
-- on the platforms' random ids is added to intake's path.
CREATE INDEX inbox_connection_newest ON inbox (connection_id, id);
CREATE INDEX inbox_workspace_newest ON inbox (workspace_id, id);

-- Every attempt the dispatcher recorded at a webhook, written in the
-- transaction that records its outcome (published, dead) or gives it back
-- for a retry: which route and transform version ran, and how it ended.
-- `attempt` is the inbox row's attempt count at the time (a replay keeps
-- counting). An attempt cut short by a crash leaves no row here. No
-- foreign key: one lookup less per write; whoever deletes inbox rows
-- deletes theirs here too.
CREATE TABLE inbox_attempts (
    inbox_id         BIGINT NOT NULL,
    attempt          BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    -- published | dead | retry
    outcome          TEXT NOT NULL,
    reason_code      TEXT,
    -- capped (store::inbox::ATTEMPT_ERROR_MAX)
    error            TEXT,
    route_id         BIGINT,
    transform        TEXT,
    transform_digest TEXT,
    PRIMARY KEY (inbox_id, attempt)
);

-- Dead letters by when they were made, for the time filters of their list
-- and replay.
CREATE INDEX dead_letters_created ON dead_letters (created_at);
