-- Tenants sharing a shop (issue 16, points 4 and 5); SQLite's 0010 says why
-- each column exists.
ALTER TABLE connections ADD COLUMN webhook_secret_owner TEXT NOT NULL DEFAULT 'tenant'
    CHECK (webhook_secret_owner IN ('tenant', 'app'));
ALTER TABLE connections ADD COLUMN webhook_secret_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN previous_webhook_secret_owner TEXT
    CHECK (previous_webhook_secret_owner IN ('tenant', 'app'));
ALTER TABLE connections ADD COLUMN previous_webhook_secret_expires_at BIGINT;

UPDATE connections SET webhook_secret_since = updated_at;
UPDATE connections SET webhook_secret_owner = 'app'
WHERE auth_method = 'oauth' AND previous_webhook_secret IS NULL;
UPDATE connections
SET previous_webhook_secret_expires_at = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT + 86400000
WHERE previous_webhook_secret IS NOT NULL;

CREATE TABLE webhook_addresses (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, address)
);
INSERT INTO webhook_addresses (connection_id, address, created_at)
SELECT connection_id, address, MIN(created_at) FROM webhook_registrations
GROUP BY connection_id, address;
