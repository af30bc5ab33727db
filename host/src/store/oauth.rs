//! OAuth states, access/refresh tokens, webhook registrations (issue 4).

use serde::{Deserialize, Serialize};

use super::{Blob, ConnectionRow, Result, Store, now_ms};

/// A stored install state; the state itself is never kept, only its sha256.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub state_hash: String,
    pub provider: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub user_id: String,
    pub shop_domain: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// What consuming a state found.
#[derive(Debug, Clone)]
pub enum StateUse {
    /// It was live and is now used: this caller, and only this one, owns it.
    Consumed(OAuthStateRow),
    Unknown,
    AlreadyUsed,
    Expired,
}

/// A connection installed by OAuth, as written: every secret is a vault
/// ciphertext bound to `row.id`.
#[derive(Debug, Clone)]
pub struct OAuthConnectionWrite {
    pub row: ConnectionRow,
    pub access_token: String,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    pub refresh_token_expires_at: Option<i64>,
    pub scopes: String,
    pub installed_by: String,
}

/// The token columns of a connection (ciphertexts).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionTokens {
    pub id: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub secure_path_identifier: String,
    pub status: String,
    pub auth_method: String,
    pub access_token: Option<String>,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    pub refresh_token_expires_at: Option<i64>,
    pub scopes: Option<String>,
}

/// One (connection, topic) subscription at Shopify and how it stands.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WebhookRegistrationRow {
    pub connection_id: String,
    pub topic: String,
    pub address: String,
    /// `pending`, `registered` or `failed`.
    pub status: String,
    pub shopify_webhook_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The end of one registration attempt for a topic.
#[derive(Debug, Clone)]
pub enum RegistrationOutcome {
    Registered { shopify_webhook_id: String },
    Failed { error: String, retry_at: i64 },
}

/// How long an expired state is kept, so that a late callback is told
/// `state_expired` rather than `invalid_state`.
pub const EXPIRED_STATE_GRACE_MS: i64 = 3600 * 1000;
/// At most this many expired states are deleted by one sweep: every
/// initiate sweeps, so the table stays bounded by the states of the last
/// `ttl + grace` without any one initiate paying for a large backlog.
pub const STATE_SWEEP_BATCH: i64 = 100;

const REGISTRATION_COLUMNS: &str = "connection_id, topic, address, status, shopify_webhook_id,
    attempts, last_error, next_attempt_at, created_at, updated_at";

impl Store {
    // ---- states ------------------------------------------------------------

    /// Stores a fresh state.
    pub async fn insert_oauth_state(&self, row: &OAuthStateRow) -> Result<()> {
        let mut tx = self.serial_tx().await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, provider, workspace_id, brand_id, user_id,
                shop_domain, created_at, expires_at, used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(&row.state_hash)
        .bind(&row.provider)
        .bind(&row.workspace_id)
        .bind(&row.brand_id)
        .bind(&row.user_id)
        .bind(&row.shop_domain)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes up to `limit` states that expired before `before`, oldest
    /// first; answers how many. Abandoned installs leave their states behind,
    /// so initiate calls this.
    pub async fn sweep_oauth_states(&self, before: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM oauth_states WHERE state_hash IN (
                SELECT state_hash FROM oauth_states WHERE expires_at < $1
                ORDER BY expires_at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The stored state of this hash, if any (tests and diagnostics).
    pub async fn oauth_state(&self, state_hash: &str) -> Result<Option<OAuthStateRow>> {
        Ok(sqlx::query_as(
            "SELECT state_hash, provider, workspace_id, brand_id, user_id, shop_domain,
                created_at, expires_at, used_at
             FROM oauth_states WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The workspace a brand belongs to: that of its oldest connection (the
    /// one that connected it first), on whichever platform. None when the
    /// brand has none.
    pub async fn brand_owner(&self, brand_id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT workspace_id FROM connections WHERE brand_id = $1
             ORDER BY created_at, id LIMIT 1",
        )
        .bind(brand_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(w,)| w))
    }

    /// Marks the state used if it exists, is unused and unexpired at `now`.
    /// One write transaction: of concurrent callbacks with the same state,
    /// exactly one gets `Consumed`.
    pub async fn consume_oauth_state(&self, state_hash: &str, now: i64) -> Result<StateUse> {
        let mut tx = self.serial_tx().await?;
        let row: Option<OAuthStateRow> = sqlx::query_as(
            "SELECT state_hash, provider, workspace_id, brand_id, user_id, shop_domain,
                created_at, expires_at, used_at
             FROM oauth_states WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut row) = row else {
            return Ok(StateUse::Unknown);
        };
        if row.used_at.is_some() {
            return Ok(StateUse::AlreadyUsed);
        }
        if row.expires_at <= now {
            return Ok(StateUse::Expired);
        }
        let updated = sqlx::query(
            "UPDATE oauth_states SET used_at = $1 WHERE state_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(state_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(StateUse::AlreadyUsed);
        }
        tx.commit().await?;
        row.used_at = Some(now);
        Ok(StateUse::Consumed(row))
    }

    // ---- connections installed by OAuth -------------------------------------

    pub async fn connection_by_id(&self, id: &str) -> Result<Option<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE id = $1",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Inserts the connection, or updates the one with the same id (same
    /// provider, shop and brand). Its webhook secret is the app's client
    /// secret (`webhook_secret_owner = 'app'`). Answers false, writing
    /// nothing, when another row holds (provider, shop, brand): the caller's
    /// ciphertexts are bound to an id that lost a race, so it must read again
    /// and retry.
    pub async fn upsert_oauth_connection(&self, w: &OAuthConnectionWrite) -> Result<bool> {
        let now = now_ms();
        let r = &w.row;
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO connections (id, provider, account, workspace_id, brand_id,
                secure_path_identifier, webhook_secret, previous_webhook_secret,
                previous_webhook_secret_expires_at, status,
                created_at, updated_at, auth_method, access_token, access_token_expires_at,
                refresh_token, refresh_token_expires_at, scopes, installed_by, installed_at,
                webhook_secret_owner, webhook_secret_since, previous_webhook_secret_owner,
                settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'oauth', $13, $14, $15,
                $16, $17, $18, $19, 'app', $20, NULL, $21)
             ON CONFLICT (provider, account, brand_id) DO UPDATE SET
                workspace_id = excluded.workspace_id,
                secure_path_identifier = excluded.secure_path_identifier,
                webhook_secret = excluded.webhook_secret,
                previous_webhook_secret = excluded.previous_webhook_secret,
                previous_webhook_secret_expires_at = excluded.previous_webhook_secret_expires_at,
                webhook_secret_owner = 'app',
                webhook_secret_since = excluded.webhook_secret_since,
                previous_webhook_secret_owner = NULL,
                status = excluded.status,
                updated_at = excluded.updated_at,
                auth_method = 'oauth',
                access_token = excluded.access_token,
                access_token_expires_at = excluded.access_token_expires_at,
                refresh_token = excluded.refresh_token,
                refresh_token_expires_at = excluded.refresh_token_expires_at,
                scopes = excluded.scopes,
                installed_by = excluded.installed_by,
                installed_at = excluded.installed_at,
                settings = excluded.settings
             WHERE connections.id = excluded.id",
        )
        .bind(&r.id)
        .bind(&r.provider)
        .bind(&r.account)
        .bind(&r.workspace_id)
        .bind(&r.brand_id)
        .bind(&r.secure_path_identifier)
        .bind(&r.webhook_secret)
        .bind(&r.previous_webhook_secret)
        .bind(r.previous_webhook_secret_expires_at)
        .bind(&r.status)
        .bind(r.created_at)
        .bind(now)
        .bind(&w.access_token)
        .bind(w.access_token_expires_at)
        .bind(&w.refresh_token)
        .bind(w.refresh_token_expires_at)
        .bind(&w.scopes)
        .bind(&w.installed_by)
        .bind(now)
        .bind(now)
        .bind(&r.settings)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            super::connections::add_integration_event(
                &mut tx,
                &r.id,
                "connected",
                Some("installed through the platform's OAuth"),
                Some(w.installed_by.as_str()),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if done == 1 {
            self.note_integration_event();
        }
        Ok(done == 1)
    }

    /// The token columns of a connection (still ciphertexts).
    pub async fn connection_tokens(&self, id: &str) -> Result<Option<ConnectionTokens>> {
        Ok(sqlx::query_as(
            "SELECT id, account, workspace_id, brand_id, secure_path_identifier, status,
                auth_method, access_token, access_token_expires_at, refresh_token,
                refresh_token_expires_at, scopes
             FROM connections WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    // ---- webhook registrations ---------------------------------------------

    /// Puts every topic of the connection (back) to `pending` at `address`,
    /// due now, and remembers `address` as one of the connection's (its
    /// subscriptions there are its own to move or delete later). Topics no
    /// longer configured are left as they are.
    pub async fn reset_webhook_registrations(
        &self,
        connection_id: &str,
        topics: &[String],
        address: &str,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        sqlx::query(
            "INSERT INTO webhook_addresses (connection_id, address, created_at)
             VALUES ($1, $2, $3) ON CONFLICT (connection_id, address) DO NOTHING",
        )
        .bind(connection_id)
        .bind(address)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for topic in topics {
            sqlx::query(
                "INSERT INTO webhook_registrations (connection_id, topic, address, status,
                    attempts, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, 'pending', 0, 0, $4, $5)
                 ON CONFLICT (connection_id, topic) DO UPDATE SET
                    address = excluded.address, status = 'pending', attempts = 0,
                    next_attempt_at = 0, last_error = NULL, updated_at = excluded.updated_at",
            )
            .bind(connection_id)
            .bind(topic)
            .bind(address)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every address the connection's webhooks have been registered at.
    pub async fn webhook_addresses(&self, connection_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT address FROM webhook_addresses WHERE connection_id = $1 ORDER BY created_at",
        )
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Registrations of `provider`'s connections not yet done whose time has
    /// come, oldest first.
    pub async fn due_webhook_registrations(
        &self,
        provider: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<WebhookRegistrationRow>> {
        let sql = format!(
            "SELECT {REGISTRATION_COLUMNS} FROM webhook_registrations
             WHERE status != 'registered' AND next_attempt_at <= $1
               AND connection_id IN (SELECT id FROM connections WHERE provider = $2)
             ORDER BY next_attempt_at, connection_id, topic LIMIT $3"
        );
        Ok(sqlx::query_as(&sql)
            .bind(now)
            .bind(provider)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records how an attempt at one topic ended, `attempts` more tries made.
    /// Only a row still at `address` is touched: a reconnect meanwhile reset it.
    pub async fn record_webhook_registration(
        &self,
        connection_id: &str,
        topic: &str,
        address: &str,
        attempts: i64,
        outcome: &RegistrationOutcome,
    ) -> Result<()> {
        let now = now_ms();
        let (status, webhook_id, error, next) = match outcome {
            RegistrationOutcome::Registered { shopify_webhook_id } => {
                ("registered", Some(shopify_webhook_id.as_str()), None, 0)
            }
            RegistrationOutcome::Failed { error, retry_at } => {
                ("failed", None, Some(error.as_str()), *retry_at)
            }
        };
        sqlx::query(
            "UPDATE webhook_registrations
             SET status = $1, shopify_webhook_id = COALESCE($2, shopify_webhook_id),
                 last_error = $3, attempts = attempts + $4, next_attempt_at = $5, updated_at = $6
             WHERE connection_id = $7 AND topic = $8 AND address = $9",
        )
        .bind(status)
        .bind(webhook_id)
        .bind(error)
        .bind(attempts)
        .bind(next)
        .bind(now)
        .bind(connection_id)
        .bind(topic)
        .bind(address)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every registration of a connection, by topic.
    pub async fn webhook_registrations(
        &self,
        connection_id: &str,
    ) -> Result<Vec<WebhookRegistrationRow>> {
        let sql = format!(
            "SELECT {REGISTRATION_COLUMNS} FROM webhook_registrations
             WHERE connection_id = $1 ORDER BY topic"
        );
        Ok(sqlx::query_as(&sql)
            .bind(connection_id)
            .fetch_all(&self.pool)
            .await?)
    }
}

// ---- token refresh (issue 4, item 5) ------------------------------------------

/// What the refresher needs of a connection (token columns are ciphertexts).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub status: String,
    pub access_token: Option<String>,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    pub refresh_token_expires_at: Option<i64>,
    pub refresh_failures: i64,
    pub refresh_started_at: Option<i64>,
    pub refresh_lease_until: Option<i64>,
    pub last_refresh_error: Option<String>,
    pub refresh_failed_at: Option<i64>,
    /// None: not retried by itself (a refusal only a reconnect mends).
    pub next_refresh_at: Option<i64>,
}

const REFRESH_COLUMNS: &str = "id, provider, account, workspace_id, brand_id, status,
    access_token, access_token_expires_at, refresh_token, refresh_token_expires_at,
    refresh_failures, refresh_started_at, refresh_lease_until, last_refresh_error,
    refresh_failed_at, next_refresh_at";

/// What claiming the refresh lease of a connection found.
#[derive(Debug, Clone)]
pub enum LeaseClaim {
    /// The caller holds the lease until the time it asked for. `row` is the
    /// connection as it stood when the lease was taken; its
    /// `refresh_started_at` is the previous holder's, set when that holder
    /// died in the middle of a refresh.
    Claimed(Box<RefreshRow>),
    /// Someone else holds it until then.
    Held(i64),
    Missing,
}

/// New tokens to store in place of the refresh token `old_refresh_token`.
#[derive(Debug, Clone)]
pub struct TokenSwap<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub old_refresh_token: &'a str,
    pub access_token: &'a str,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: &'a str,
    pub refresh_token_expires_at: Option<i64>,
    pub scopes: &'a str,
    pub now: i64,
}

/// A failed refresh to record.
#[derive(Debug, Clone)]
pub struct RefreshFailure<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub error: &'a str,
    /// Only a reconnect can mend it: `refresh_failed` at once, never retried.
    pub permanent: bool,
    /// Failures in a row after which the connection is `refresh_failed`.
    pub max_failures: i64,
    /// When to try again (ignored when permanent).
    pub retry_at: i64,
    pub now: i64,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRecorded {
    pub failures: i64,
    /// This failure turned the connection `refresh_failed`.
    pub became_failed: bool,
}

/// A connection whose `integration.error` event has yet to reach the sink.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IntegrationErrorRow {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub refresh_failed_at: i64,
    pub refresh_failures: i64,
    pub last_refresh_error: Option<String>,
}

// ---- lifecycle webhooks (issue 4, item 6) -----------------------------------------

/// The topics whose effects [`Store::due_lifecycle_rows`] finds, of every
/// platform; the same list as the partial index `inbox_lifecycle_due`
/// (sqlite 0014, postgres 0007).
pub const LIFECYCLE_TOPICS_SQL: &str = "('app/uninstalled', 'shop/redact', 'customers/redact', \
     'customers/data_request', 'seller_deauthorization', 'AppRemoved')";

/// A published lifecycle webhook whose effect is not applied yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LifecycleRow {
    pub id: i64,
    pub connection_id: String,
    pub provider: String,
    pub account: String,
    pub topic: String,
    pub received_at: i64,
}

/// The secrets of the connection a lifecycle webhook arrived at, as far as
/// `lifecycle::scope` needs them: whose they are and since when.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretOwners {
    /// `app` (the app's client secret) or `tenant`.
    pub webhook_secret_owner: String,
    pub webhook_secret_since: i64,
    /// 1 when a previous secret is kept.
    pub has_previous: i64,
    pub previous_webhook_secret_owner: Option<String>,
    pub previous_webhook_secret_expires_at: Option<i64>,
}

/// The connections a lifecycle webhook changes (see `lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleScope {
    /// Only the connection it arrived at.
    Connection,
    /// That connection and every connection of the shop that verified with
    /// the app's client secret when the webhook arrived.
    App,
}

/// What an uninstall or a redaction changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleApplied {
    /// Connections of the shop changed (tokens removed, status set).
    pub connections: u64,
    /// Inbox rows whose body and headers were purged.
    pub purged_webhooks: u64,
}

impl Store {
    /// A connection as the refresher sees it.
    pub async fn refresh_row(&self, id: &str) -> Result<Option<RefreshRow>> {
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM connections WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Takes the refresh lease of a connection for `owner` until `until`, if
    /// nobody holds it at `now`: one write transaction, so of concurrent
    /// claimants (in any process on this database) exactly one wins.
    pub async fn claim_refresh_lease(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<LeaseClaim> {
        let mut tx = self.serial_tx().await?;
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM connections WHERE id = $1");
        let row: Option<RefreshRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(LeaseClaim::Missing);
        };
        if let Some(held) = row.refresh_lease_until.filter(|t| *t >= now) {
            return Ok(LeaseClaim::Held(held));
        }
        let updated = sqlx::query(
            "UPDATE connections
             SET refresh_lease_until = $1, refresh_lease_owner = $2, refresh_started_at = $3
             WHERE id = $4 AND (refresh_lease_until IS NULL OR refresh_lease_until < $5)",
        )
        .bind(until)
        .bind(owner)
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            return Ok(LeaseClaim::Held(until));
        }
        tx.commit().await?;
        Ok(LeaseClaim::Claimed(Box::new(row)))
    }

    /// Gives the lease back (only if `owner` still holds it) and clears the
    /// in-flight mark.
    pub async fn release_refresh_lease(&self, id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE connections
             SET refresh_lease_until = NULL, refresh_lease_owner = NULL, refresh_started_at = NULL
             WHERE id = $1 AND refresh_lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Connections of `provider` whose access token expires before `before`
    /// and whose next try is due at `now`, with nobody refreshing them.
    pub async fn due_refreshes(
        &self,
        provider: &str,
        now: i64,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM connections
             WHERE provider = $5 AND refresh_token IS NOT NULL AND access_token IS NOT NULL
               AND status IN ('active', 'refresh_failed')
               AND access_token_expires_at IS NOT NULL AND access_token_expires_at < $1
               AND next_refresh_at IS NOT NULL AND next_refresh_at <= $2
               AND (refresh_lease_until IS NULL OR refresh_lease_until < $3)
             ORDER BY access_token_expires_at LIMIT $4",
        )
        .bind(before)
        .bind(now)
        .bind(now)
        .bind(limit)
        .bind(provider)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores the tokens of a refresh in one statement, only if the refresh
    /// token is still `old_refresh_token` (compare-and-swap): a reconnect or
    /// an uninstall meanwhile wins. Clears the failure count, puts a
    /// `refresh_failed` connection back to `active`, and releases `owner`'s
    /// lease. Answers whether the swap happened.
    pub async fn swap_refreshed_tokens(&self, s: &TokenSwap<'_>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE connections
             SET access_token = $1, access_token_expires_at = $2,
                 refresh_token = $3, refresh_token_expires_at = $4,
                 scopes = CASE WHEN $5 = '' THEN scopes ELSE $6 END,
                 status = CASE WHEN status = 'refresh_failed' THEN 'active' ELSE status END,
                 refresh_failures = 0, next_refresh_at = 0, last_refresh_error = NULL,
                 refresh_failed_at = NULL, integration_error_pending = 0,
                 refreshed_at = $7, updated_at = $8,
                 refresh_lease_until = CASE WHEN refresh_lease_owner = $9 THEN NULL
                     ELSE refresh_lease_until END,
                 refresh_started_at = CASE WHEN refresh_lease_owner = $10 THEN NULL
                     ELSE refresh_started_at END,
                 refresh_lease_owner = CASE WHEN refresh_lease_owner = $11 THEN NULL
                     ELSE refresh_lease_owner END
             WHERE id = $12 AND refresh_token = $13",
        )
        .bind(s.access_token)
        .bind(s.access_token_expires_at)
        .bind(s.refresh_token)
        .bind(s.refresh_token_expires_at)
        .bind(s.scopes)
        .bind(s.scopes)
        .bind(s.now)
        .bind(s.now)
        .bind(s.owner)
        .bind(s.owner)
        .bind(s.owner)
        .bind(s.id)
        .bind(s.old_refresh_token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            super::connections::add_integration_event(
                &mut tx,
                s.id,
                "token_refreshed",
                Some("the access token was refreshed"),
                Some("gateway"),
                s.now,
            )
            .await?;
        }
        tx.commit().await?;
        if done == 1 {
            self.note_integration_event();
        }
        Ok(done == 1)
    }

    /// Counts a failed refresh and releases the lease, if `owner` still
    /// holds it (None otherwise). An `active` connection becomes
    /// `refresh_failed` on a permanent failure or after `max_failures` in a
    /// row; that transition also marks its `integration.error` event due.
    pub async fn record_refresh_failure(
        &self,
        f: &RefreshFailure<'_>,
    ) -> Result<Option<FailureRecorded>> {
        let mut tx = self.serial_tx().await?;
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT status, refresh_failures FROM connections
             WHERE id = $1 AND refresh_lease_owner = $2",
        )
        .bind(f.id)
        .bind(f.owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((status, failures)) = row else {
            return Ok(None);
        };
        let failures = failures + 1;
        let became_failed =
            status == "active" && (f.permanent || failures >= f.max_failures.max(1));
        let next: Option<i64> = (!f.permanent).then_some(f.retry_at);
        sqlx::query(
            "UPDATE connections
             SET refresh_failures = $1, next_refresh_at = $2, last_refresh_error = $3,
                 status = CASE WHEN $4 THEN 'refresh_failed' ELSE status END,
                 refresh_failed_at = CASE WHEN $5 THEN $6 ELSE refresh_failed_at END,
                 integration_error_pending = CASE WHEN $7 THEN 1 ELSE integration_error_pending END,
                 refresh_lease_until = NULL, refresh_lease_owner = NULL, refresh_started_at = NULL,
                 updated_at = $8
             WHERE id = $9",
        )
        .bind(failures)
        .bind(next)
        .bind(f.error)
        .bind(became_failed)
        .bind(became_failed)
        .bind(f.now)
        .bind(became_failed)
        .bind(f.now)
        .bind(f.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(FailureRecorded {
            failures,
            became_failed,
        }))
    }

    /// Notes on the connection that a refresh was cut off (its process died
    /// between claiming the lease and recording the outcome), for operators.
    pub async fn note_interrupted_refresh(&self, id: &str, note: &str) -> Result<()> {
        sqlx::query("UPDATE connections SET last_refresh_error = $1 WHERE id = $2")
            .bind(note)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Connections whose `integration.error` event is still to be published.
    pub async fn pending_integration_errors(&self) -> Result<Vec<IntegrationErrorRow>> {
        Ok(sqlx::query_as(
            "SELECT id, provider, account, workspace_id, brand_id, refresh_failed_at,
                refresh_failures, last_refresh_error
             FROM connections
             WHERE integration_error_pending = 1 AND refresh_failed_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The sink has the event of the failure that began at `failed_at`.
    pub async fn integration_error_published(&self, id: &str, failed_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE connections SET integration_error_pending = 0
             WHERE id = $1 AND refresh_failed_at = $2",
        )
        .bind(id)
        .bind(failed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- lifecycle webhooks -----------------------------------------------------

    /// Published lifecycle webhooks of `provider` whose effect is still to
    /// be applied, oldest first.
    pub async fn due_lifecycle_rows(
        &self,
        provider: &str,
        limit: i64,
    ) -> Result<Vec<LifecycleRow>> {
        let sql = format!(
            "SELECT id, connection_id, provider, account, topic, received_at FROM inbox
             WHERE lifecycle_applied_at IS NULL AND status = 'published'
               AND topic IN {LIFECYCLE_TOPICS_SQL} AND provider = $1
             ORDER BY id LIMIT $2"
        );
        Ok(sqlx::query_as(&sql)
            .bind(provider)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records that a lifecycle webhook needs (or needed) nothing more.
    pub async fn mark_lifecycle_applied(&self, inbox_id: i64) -> Result<()> {
        sqlx::query("UPDATE inbox SET lifecycle_applied_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(inbox_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The secret owners of a connection (None: no such connection).
    pub async fn secret_owners(&self, connection_id: &str) -> Result<Option<SecretOwners>> {
        Ok(sqlx::query_as(
            "SELECT webhook_secret_owner, webhook_secret_since,
                CAST(CASE WHEN previous_webhook_secret IS NULL THEN 0 ELSE 1 END AS BIGINT)
                    AS has_previous,
                previous_webhook_secret_owner, previous_webhook_secret_expires_at
             FROM connections WHERE id = $1",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The connections of the webhook's shop within `scope`. For an
    /// uninstall, only those still connected and installed before the
    /// webhook arrived (a reinstall after it is not undone).
    pub(super) async fn lifecycle_targets(
        tx: &mut super::WriteTx,
        row: &LifecycleRow,
        scope: LifecycleScope,
        uninstall: bool,
    ) -> Result<Vec<String>> {
        let scope = match scope {
            LifecycleScope::Connection => "connection",
            LifecycleScope::App => "app",
        };
        Ok(sqlx::query_scalar(
            "SELECT id FROM connections
             WHERE provider = $1 AND account = $2
               AND ($3 OR (status NOT IN ('disconnected', 'redacted')
                    AND (installed_at IS NULL OR installed_at <= $4)))
               AND (id = $5 OR ($6 = 'app' AND (
                    (webhook_secret_owner = 'app' AND webhook_secret_since <= $7)
                    OR (previous_webhook_secret_owner = 'app'
                        AND previous_webhook_secret_expires_at > $8))))
             ORDER BY id",
        )
        .bind(&row.provider)
        .bind(&row.account)
        .bind(!uninstall)
        .bind(row.received_at)
        .bind(&row.connection_id)
        .bind(scope)
        .bind(row.received_at)
        .bind(row.received_at)
        .fetch_all(&mut **tx)
        .await?)
    }

    /// `app/uninstalled`: every connection in `scope` that was installed
    /// before the webhook arrived loses its tokens and becomes
    /// `disconnected` (a reinstall after it is left alone); its webhook
    /// subscriptions are forgotten (Shopify drops them on uninstall). One
    /// transaction with marking the webhook applied; repeating it changes
    /// nothing more.
    pub async fn apply_uninstall(
        &self,
        row: &LifecycleRow,
        scope: LifecycleScope,
    ) -> Result<LifecycleApplied> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let ids = Self::lifecycle_targets(&mut tx, row, scope, true).await?;
        let actor = format!("{}:{}", row.provider, row.topic);
        let mut events = 0;
        for id in &ids {
            let before: Option<String> =
                sqlx::query_scalar("SELECT status FROM connections WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query(&format!(
                "UPDATE connections SET status = 'disconnected', {CLEARED_TOKENS}, updated_at = $1
                 WHERE id = $2"
            ))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM webhook_registrations WHERE connection_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if before.is_some_and(|s| s != "disconnected") {
                super::connections::add_integration_event(
                    &mut tx,
                    id,
                    "disconnected",
                    Some(&format!("the platform's {} webhook", row.topic)),
                    Some(&actor),
                    now,
                )
                .await?;
                events += 1;
            }
        }
        sqlx::query("UPDATE inbox SET lifecycle_applied_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.note_connections_changed();
        if events > 0 {
            self.note_integration_event();
        }
        Ok(LifecycleApplied {
            connections: ids.len() as u64,
            purged_webhooks: 0,
        })
    }

    /// `shop/redact`: for every connection in `scope`, the tokens are
    /// removed, the status becomes `redacted`, and the stored webhooks that
    /// are finished (published or dead-lettered, this one included) keep
    /// only what dedup and audit need: their ids, topic and times; body
    /// becomes `{}` and headers `[]`. Webhooks still pending are left to be
    /// delivered. One transaction; idempotent.
    pub async fn apply_shop_redact(
        &self,
        row: &LifecycleRow,
        scope: LifecycleScope,
    ) -> Result<LifecycleApplied> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let ids = Self::lifecycle_targets(&mut tx, row, scope, false).await?;
        let mut applied = LifecycleApplied::default();
        let actor = format!("{}:{}", row.provider, row.topic);
        let mut events = 0;
        for id in &ids {
            let before: Option<String> =
                sqlx::query_scalar("SELECT status FROM connections WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            applied.connections += sqlx::query(&format!(
                "UPDATE connections SET status = 'redacted', {CLEARED_TOKENS}, updated_at = $1
                 WHERE id = $2 AND (status != 'redacted' OR access_token IS NOT NULL
                    OR refresh_token IS NOT NULL)"
            ))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if before.is_some_and(|s| s != "redacted") {
                super::connections::add_integration_event(
                    &mut tx,
                    id,
                    "redacted",
                    Some(&format!("the platform's {} webhook", row.topic)),
                    Some(&actor),
                    now,
                )
                .await?;
                events += 1;
            }
            sqlx::query("DELETE FROM webhook_registrations WHERE connection_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            applied.purged_webhooks += sqlx::query(
                "UPDATE inbox SET body = $1, body_encoding = 'identity', headers = '[]'
                 WHERE connection_id = $2 AND status != 'pending'
                   AND (body != $3 OR body_encoding != 'identity' OR headers != '[]')",
            )
            .bind(&b"{}"[..])
            .bind(id)
            .bind(&b"{}"[..])
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        sqlx::query("UPDATE inbox SET lifecycle_applied_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.note_connections_changed();
        if events > 0 {
            self.note_integration_event();
        }
        Ok(applied)
    }

    /// The body and headers of a stored webhook as they are now (for checks
    /// after a redaction).
    pub async fn inbox_body(&self, id: i64) -> Result<Option<(Vec<u8>, String)>> {
        let row: Option<(Vec<u8>, String, String)> =
            sqlx::query_as("SELECT body, body_encoding, headers FROM inbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(body, encoding, headers)| Ok((Blob::decode(&encoding, body)?, headers)))
            .transpose()
    }
}

/// The SET clause that forgets a connection's tokens and refresh state.
pub(super) const CLEARED_TOKENS: &str = "access_token = NULL, access_token_expires_at = NULL,
    refresh_token = NULL, refresh_token_expires_at = NULL, refresh_lease_until = NULL,
    refresh_lease_owner = NULL, refresh_started_at = NULL, next_refresh_at = NULL,
    integration_error_pending = 0";
