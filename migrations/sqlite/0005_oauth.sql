-- Shopify OAuth install (issue 4): single-use states, the tokens of an
-- installed connection, and the webhook subscriptions made for it.

-- One row per `GET /integrations/shopify/auth/initiate`. Only the sha256 of
-- the state is kept, so a copy of the database cannot complete someone's
-- install. `used_at` is set exactly once, in the transaction that accepts the
-- callback.
CREATE TABLE oauth_states (
    state_hash   TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    brand_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    shop_domain  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

-- Tokens are vault ciphertexts bound to (connection id, purpose); expiries
-- are epoch milliseconds, NULL for a token that does not expire.
-- `auth_method` is 'manual' (connections add) or 'oauth'.
ALTER TABLE connections ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE connections ADD COLUMN access_token TEXT;
ALTER TABLE connections ADD COLUMN access_token_expires_at INTEGER;
ALTER TABLE connections ADD COLUMN refresh_token TEXT;
ALTER TABLE connections ADD COLUMN refresh_token_expires_at INTEGER;
ALTER TABLE connections ADD COLUMN scopes TEXT;
ALTER TABLE connections ADD COLUMN installed_by TEXT;
ALTER TABLE connections ADD COLUMN installed_at INTEGER;

-- One row per (connection, topic) the gateway subscribes to at Shopify.
-- pending: to do (again); registered: Shopify has it at `address`;
-- failed: the last run gave up, retried from `next_attempt_at`.
CREATE TABLE webhook_registrations (
    connection_id      TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    topic              TEXT NOT NULL,
    address            TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'registered', 'failed')),
    shopify_webhook_id TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    next_attempt_at    INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (connection_id, topic)
);
CREATE INDEX webhook_registrations_due ON webhook_registrations (next_attempt_at)
    WHERE status != 'registered';
