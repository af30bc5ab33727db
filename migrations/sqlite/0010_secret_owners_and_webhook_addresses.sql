-- Tenants sharing a shop (issue 16, points 4 and 5).

-- Whose secret verifies a connection's webhooks, so that a lifecycle webhook
-- changes only connections that the secret which signed it also verifies
-- (lifecycle.rs). `app`: the client secret of the Shopify app this gateway
-- installs as (set by an OAuth install); `tenant`: a secret the workspace
-- chose (`connections add`). `webhook_secret_since` is when the current
-- secret became current; before that moment plus the intake's cache time a
-- webhook may have been verified with what was current before.
ALTER TABLE connections ADD COLUMN webhook_secret_owner TEXT NOT NULL DEFAULT 'tenant'
    CHECK (webhook_secret_owner IN ('tenant', 'app'));
ALTER TABLE connections ADD COLUMN webhook_secret_since INTEGER NOT NULL DEFAULT 0;
-- The previous secret stops verifying at `previous_webhook_secret_expires_at`
-- (epoch ms; NULL: it does not verify at all).
ALTER TABLE connections ADD COLUMN previous_webhook_secret_owner TEXT
    CHECK (previous_webhook_secret_owner IN ('tenant', 'app'));
ALTER TABLE connections ADD COLUMN previous_webhook_secret_expires_at INTEGER;

-- Rows from before: the secret may have been current since the last update.
UPDATE connections SET webhook_secret_since = updated_at;
-- An OAuth connection with no previous secret holds the app's client secret
-- (`connections add` on it would have kept the client secret as previous).
-- One with a previous secret may have been rotated to a tenant's secret since
-- its install, so it stays `tenant` until it is installed again.
UPDATE connections SET webhook_secret_owner = 'app'
WHERE auth_method = 'oauth' AND previous_webhook_secret IS NULL;
-- Rotations made before this migration get the default window from now.
UPDATE connections
SET previous_webhook_secret_expires_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 86400000
WHERE previous_webhook_secret IS NOT NULL;

-- Every address a connection has had its webhooks sent to. Shopify lists an
-- app's subscriptions per shop, whichever connection made them; the
-- registrar adopts, moves or deletes only those at one of the connection's
-- own addresses, so that two brands of one shop never take each other's.
CREATE TABLE webhook_addresses (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, address)
);
INSERT INTO webhook_addresses (connection_id, address, created_at)
SELECT connection_id, address, MIN(created_at) FROM webhook_registrations
GROUP BY connection_id, address;
