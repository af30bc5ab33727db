-- Transform operations: every route change is kept (who, when, from what,
-- to what), and dead letters remember when they were replayed and resolved.

CREATE TABLE route_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    provider       TEXT NOT NULL,
    workspace_id   TEXT NOT NULL,
    brand_id       TEXT NOT NULL,
    topic_pattern  TEXT NOT NULL,
    old_transform  TEXT,
    new_transform  TEXT,
    old_config     TEXT,
    new_config     TEXT,
    old_limits     TEXT,
    new_limits     TEXT,
    actor          TEXT NOT NULL,
    changed_at     INTEGER NOT NULL
);

ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;
ALTER TABLE dead_letters ADD COLUMN resolved_at INTEGER;
