-- Retention and redaction (issue 19 §3).

-- When a finished webhook's body and headers were replaced by the tombstone
-- (`{}`, `[]`): by retention (`retention.inbox_bodies`) or a redaction. The
-- row itself stays as long as dedup needs its (connection, webhook id) key.
ALTER TABLE inbox ADD COLUMN body_purged_at INTEGER;

-- The pruner's ways in, oldest finished first. Only published rows: dead
-- rows go with their dead letters, and pending ones are never pruned, so
-- intake's inserts (pending) add no entry to either.
CREATE INDEX inbox_published_finished ON inbox (finished_at) WHERE status = 'published';
CREATE INDEX inbox_bodies_kept ON inbox (finished_at)
    WHERE status = 'published' AND body_purged_at IS NULL;

-- What an `integration.*` event says beyond the connection (JSON), e.g. the
-- customer and orders of `integration.customer_redacted`.
ALTER TABLE integration_events ADD COLUMN detail TEXT;
