-- The ceilings an operator sets per workspace: the most its routes and dry
-- runs may ask for, and what every call of its webhooks is clamped to. A
-- NULL column keeps the configured default (`[ceilings]`). `revision` grows
-- with every change across all rows (written one at a time, under the
-- serial lock), so replicas notice a change by polling its maximum, as they
-- poll the route history.
CREATE TABLE workspace_ceilings (
    workspace_id TEXT PRIMARY KEY,
    cpu_ms       INTEGER,
    memory_bytes INTEGER,
    max_events   INTEGER,
    output_bytes INTEGER,
    revision     INTEGER NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);
