//! OAuth states, access/refresh tokens, webhook registrations (issue 4).

use serde::Serialize;

use super::{ConnectionRow, Result, Store, now_ms};

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
    pub shop_domain: String,
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
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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

const REGISTRATION_COLUMNS: &str = "connection_id, topic, address, status, shopify_webhook_id,
    attempts, last_error, next_attempt_at, created_at, updated_at";

impl Store {
    // ---- states ------------------------------------------------------------

    /// Stores a fresh state, and drops states that expired a while ago.
    pub async fn insert_oauth_state(&self, row: &OAuthStateRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < ?")
            .bind(row.created_at - 24 * 3600 * 1000)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, provider, workspace_id, brand_id, user_id,
                shop_domain, created_at, expires_at, used_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
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

    /// Marks the state used if it exists, is unused and unexpired at `now`.
    /// One write transaction: of concurrent callbacks with the same state,
    /// exactly one gets `Consumed`.
    pub async fn consume_oauth_state(&self, state_hash: &str, now: i64) -> Result<StateUse> {
        let mut tx = self.write_tx().await?;
        let row: Option<OAuthStateRow> = sqlx::query_as(
            "SELECT state_hash, provider, workspace_id, brand_id, user_id, shop_domain,
                created_at, expires_at, used_at
             FROM oauth_states WHERE state_hash = ?",
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
            "UPDATE oauth_states SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
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
            "SELECT {} FROM connections WHERE id = ?",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Inserts the connection, or updates the one with the same id (same
    /// provider, shop and brand). Answers false, writing nothing, when another
    /// row holds (provider, shop, brand): the caller's ciphertexts are bound
    /// to an id that lost a race, so it must read again and retry.
    pub async fn upsert_oauth_connection(&self, w: &OAuthConnectionWrite) -> Result<bool> {
        let now = now_ms();
        let r = &w.row;
        let done = sqlx::query(
            "INSERT INTO connections (id, provider, shop_domain, workspace_id, brand_id,
                secure_path_identifier, webhook_secret, previous_webhook_secret, status,
                created_at, updated_at, auth_method, access_token, access_token_expires_at,
                refresh_token, refresh_token_expires_at, scopes, installed_by, installed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'oauth', ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, shop_domain, brand_id) DO UPDATE SET
                workspace_id = excluded.workspace_id,
                secure_path_identifier = excluded.secure_path_identifier,
                webhook_secret = excluded.webhook_secret,
                previous_webhook_secret = excluded.previous_webhook_secret,
                status = excluded.status,
                updated_at = excluded.updated_at,
                auth_method = 'oauth',
                access_token = excluded.access_token,
                access_token_expires_at = excluded.access_token_expires_at,
                refresh_token = excluded.refresh_token,
                refresh_token_expires_at = excluded.refresh_token_expires_at,
                scopes = excluded.scopes,
                installed_by = excluded.installed_by,
                installed_at = excluded.installed_at
             WHERE connections.id = excluded.id",
        )
        .bind(&r.id)
        .bind(&r.provider)
        .bind(&r.shop_domain)
        .bind(&r.workspace_id)
        .bind(&r.brand_id)
        .bind(&r.secure_path_identifier)
        .bind(&r.webhook_secret)
        .bind(&r.previous_webhook_secret)
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The token columns of a connection (still ciphertexts).
    pub async fn connection_tokens(&self, id: &str) -> Result<Option<ConnectionTokens>> {
        Ok(sqlx::query_as(
            "SELECT id, shop_domain, workspace_id, brand_id, secure_path_identifier, status,
                auth_method, access_token, access_token_expires_at, refresh_token,
                refresh_token_expires_at, scopes
             FROM connections WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    // ---- webhook registrations ---------------------------------------------

    /// Puts every topic of the connection (back) to `pending` at `address`,
    /// due now. Topics no longer configured are left as they are.
    pub async fn reset_webhook_registrations(
        &self,
        connection_id: &str,
        topics: &[String],
        address: &str,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for topic in topics {
            sqlx::query(
                "INSERT INTO webhook_registrations (connection_id, topic, address, status,
                    attempts, next_attempt_at, created_at, updated_at)
                 VALUES (?, ?, ?, 'pending', 0, 0, ?, ?)
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

    /// Registrations not yet done whose time has come, oldest first.
    pub async fn due_webhook_registrations(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<WebhookRegistrationRow>> {
        let sql = format!(
            "SELECT {REGISTRATION_COLUMNS} FROM webhook_registrations
             WHERE status != 'registered' AND next_attempt_at <= ?
             ORDER BY next_attempt_at, connection_id, topic LIMIT ?"
        );
        Ok(sqlx::query_as(&sql)
            .bind(now)
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
             SET status = ?, shopify_webhook_id = COALESCE(?, shopify_webhook_id),
                 last_error = ?, attempts = attempts + ?, next_attempt_at = ?, updated_at = ?
             WHERE connection_id = ? AND topic = ? AND address = ?",
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
             WHERE connection_id = ? ORDER BY topic"
        );
        Ok(sqlx::query_as(&sql)
            .bind(connection_id)
            .fetch_all(&self.pool)
            .await?)
    }
}
