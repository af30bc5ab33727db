-- Token refresh and the lifecycle webhooks (issue 4, items 5 and 6).

-- One refresh per connection at a time, across replicas: a lease claimed by
-- one conditional UPDATE (`refresh_lease_until` in the past or NULL) and
-- released after. `refresh_started_at` is set with the lease and cleared by
-- the transaction that records the outcome, so a lease found expired with it
-- still set is a refresh whose process died in the middle (see refresh.rs).
ALTER TABLE connections ADD COLUMN refresh_lease_until INTEGER;
ALTER TABLE connections ADD COLUMN refresh_lease_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_started_at INTEGER;
-- Failures in a row; the next try is due at `next_refresh_at` (NULL: never
-- again by itself, after a refusal that only a reconnect can mend).
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN next_refresh_at INTEGER DEFAULT 0;
ALTER TABLE connections ADD COLUMN last_refresh_error TEXT;
ALTER TABLE connections ADD COLUMN refreshed_at INTEGER;
-- When the connection went `refresh_failed`, and whether its
-- `integration.error` event still has to reach the sink (published at least
-- once, with an event id derived from this time).
ALTER TABLE connections ADD COLUMN refresh_failed_at INTEGER;
ALTER TABLE connections ADD COLUMN integration_error_pending INTEGER NOT NULL DEFAULT 0;

CREATE INDEX connections_refresh_due ON connections (access_token_expires_at)
    WHERE refresh_token IS NOT NULL;

-- The effect of a lifecycle webhook (app/uninstalled, shop/redact, …) is
-- applied after its event is published; `lifecycle_applied_at` says it was,
-- so that an effect a crash cut off is applied by the next sweep. Rows that
-- finished before this migration are taken as handled.
ALTER TABLE inbox ADD COLUMN lifecycle_applied_at INTEGER;
UPDATE inbox SET lifecycle_applied_at = COALESCE(finished_at, received_at) WHERE status != 'pending';
CREATE INDEX inbox_lifecycle_due ON inbox (id)
    WHERE lifecycle_applied_at IS NULL AND status = 'published'
      AND topic IN ('app/uninstalled', 'shop/redact', 'customers/redact', 'customers/data_request');
