//! The `connections` table: one shop linked to one workspace and brand, with
//! its secrets as vault ciphertexts.

use uuid::Uuid;

use super::{Result, Store, now_ms};

/// A connection as stored; secrets are still vault ciphertexts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub secure_path_identifier: String,
    pub webhook_secret: String,
    pub previous_webhook_secret: Option<String>,
    /// When the previous secret stops verifying (epoch ms); without it, it
    /// does not verify at all.
    pub previous_webhook_secret_expires_at: Option<i64>,
    pub status: String,
    pub created_at: i64,
    /// The provider's non-secret settings, JSON text; None: it needs none.
    pub settings: Option<String>,
}

impl Store {
    /// Inserts a connection. The caller encrypts the secret with the row id it
    /// passes here, so the ciphertext is bound to this row.
    /// Its `integration.connected` event is written in the same transaction.
    pub async fn insert_connection(&self, row: &ConnectionRow) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO connections (id, provider, account, workspace_id, brand_id,
                secure_path_identifier, webhook_secret, previous_webhook_secret,
                previous_webhook_secret_expires_at, status, created_at, updated_at,
                webhook_secret_owner, webhook_secret_since, settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'tenant', $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.provider)
        .bind(&row.account)
        .bind(&row.workspace_id)
        .bind(&row.brand_id)
        .bind(&row.secure_path_identifier)
        .bind(&row.webhook_secret)
        .bind(&row.previous_webhook_secret)
        .bind(row.previous_webhook_secret_expires_at)
        .bind(&row.status)
        .bind(row.created_at)
        .bind(row.created_at)
        .bind(row.created_at)
        .bind(&row.settings)
        .execute(&mut *tx)
        .await?;
        add_integration_event(
            &mut tx,
            &row.id,
            "connected",
            Some("connected by hand"),
            None,
            row.created_at,
        )
        .await?;
        tx.commit().await?;
        self.note_integration_event();
        Ok(())
    }

    /// Replaces the webhook secret with one the tenant chose and keeps the
    /// old one as `previous` until `previous_expires_at`, so that webhooks
    /// signed before the rotation still verify for a while. Both values are
    /// ciphertexts bound to their own column; the previous secret keeps the
    /// owner the current one had.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        current: &str,
        previous: &str,
        previous_expires_at: i64,
    ) -> Result<()> {
        let now = now_ms();
        // Every SET expression reads the row as it was before the UPDATE.
        sqlx::query(
            "UPDATE connections
             SET webhook_secret = $1, previous_webhook_secret = $2,
                 previous_webhook_secret_owner = webhook_secret_owner,
                 previous_webhook_secret_expires_at = $3,
                 webhook_secret_owner = 'tenant', webhook_secret_since = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(current)
        .bind(previous)
        .bind(previous_expires_at)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        // This process's intake verifies with the new secret at once (other
        // replicas within their cache's lifetime).
        self.note_connections_changed();
        Ok(())
    }

    /// Replaces a connection's settings (JSON text; None: none).
    pub async fn set_connection_settings(&self, id: &str, settings: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE connections SET settings = $1, updated_at = $2 WHERE id = $3")
            .bind(settings)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.note_connections_changed();
        Ok(())
    }

    /// Sets a connection's API credential (a ciphertext bound to the row and
    /// the access-token purpose) for a connection made by hand: it does not
    /// expire and is not refreshed.
    pub async fn set_api_credentials(&self, id: &str, ciphertext: &str) -> Result<()> {
        sqlx::query(
            "UPDATE connections SET access_token = $1, access_token_expires_at = NULL,
                 updated_at = $2 WHERE id = $3",
        )
        .bind(ciphertext)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) const CONNECTION_COLUMNS: &str = "id, provider, account, workspace_id, brand_id,
        secure_path_identifier, webhook_secret, previous_webhook_secret,
        previous_webhook_secret_expires_at, status, created_at, settings";

    pub async fn connection_by_path(&self, identifier: &str) -> Result<Option<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE secure_path_identifier = $1",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn connection_for_shop(
        &self,
        provider: &str,
        account: &str,
        brand_id: &str,
    ) -> Result<Option<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE provider = $1 AND account = $2 AND brand_id = $3",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(provider)
            .bind(account)
            .bind(brand_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_connections(&self) -> Result<Vec<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections ORDER BY created_at",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    /// Every connection of a brand with this provider, newest first.
    pub async fn connections_for_brand(
        &self,
        provider: &str,
        brand_id: &str,
    ) -> Result<Vec<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE provider = $1 AND brand_id = $2
             ORDER BY created_at DESC, id DESC",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(provider)
            .bind(brand_id)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// A fresh random identifier for a connection's webhook URL: 128 bits, so it
/// cannot be guessed, and URL-safe.
pub fn new_path_identifier() -> String {
    Uuid::new_v4().simple().to_string()
}

// ---- the connection API ------------------------------------------------------

/// Everything the connection API tells about one connection, without any
/// secret or token: only whether tokens are held, and when they expire.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionDetail {
    pub id: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub secure_path_identifier: String,
    pub status: String,
    pub created_at: i64,
    pub auth_method: Option<String>,
    pub scopes: Option<String>,
    pub has_access_token: i64,
    pub has_refresh_token: i64,
    pub access_token_expires_at: Option<i64>,
    pub refreshed_at: Option<i64>,
    pub last_refresh_error: Option<String>,
    pub refresh_failures: i64,
    pub installed_by: Option<String>,
    pub installed_at: Option<i64>,
    pub paused_at: Option<i64>,
    pub paused_by: Option<String>,
    pub last_webhook_at: Option<i64>,
}

/// The columns of a [`ConnectionDetail`]: whether tokens are held, never
/// the tokens.
const DETAIL_COLUMNS: &str = "id, provider, account, workspace_id, brand_id,
    secure_path_identifier, status, created_at, auth_method, scopes,
    CAST(CASE WHEN access_token IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_access_token,
    CAST(CASE WHEN refresh_token IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_refresh_token,
    access_token_expires_at, refreshed_at, last_refresh_error, refresh_failures,
    installed_by, installed_at, paused_at, paused_by, last_webhook_at";

/// A pending `integration.*` event as its outbox row holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IntegrationEventRow {
    pub id: i64,
    pub connection_id: String,
    /// The type suffix's last word: `connected`, `disconnected`, …
    pub kind: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// The connection's status once the change was made.
    pub status: String,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub created_at: i64,
    /// What the event says beyond the connection, as JSON (e.g. the
    /// customer and orders of `customer_redacted`).
    pub detail: Option<String>,
}

/// What an action changed: false when the connection already was so (the
/// action is idempotent, and no event is written twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Missing,
    Unchanged,
    Changed,
}

/// Appends an `integration.*` event of connection `id` inside the caller's
/// transaction, with the connection's names and status as they are in it:
/// the change and its event commit together or not at all.
pub(super) async fn add_integration_event(
    tx: &mut super::WriteTx,
    id: &str,
    kind: &str,
    reason: Option<&str>,
    actor: Option<&str>,
    now: i64,
) -> Result<()> {
    add_integration_event_detail(tx, id, kind, reason, actor, None, now).await
}

/// `add_integration_event`, with a `detail` (JSON text).
pub(super) async fn add_integration_event_detail(
    tx: &mut super::WriteTx,
    id: &str,
    kind: &str,
    reason: Option<&str>,
    actor: Option<&str>,
    detail: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_events (connection_id, kind, provider, account, workspace_id,
            brand_id, status, reason, actor, created_at, detail)
         SELECT id, $1, provider, account, workspace_id, brand_id, status, $2, $3, $4, $5
         FROM connections WHERE id = $6",
    )
    .bind(kind)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .bind(detail)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn connection_detail(&self, id: &str) -> Result<Option<ConnectionDetail>> {
        let sql = format!("SELECT {DETAIL_COLUMNS} FROM connections WHERE id = $1");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every connection's detail (of one workspace, or all), oldest first.
    pub async fn connection_details(
        &self,
        workspace: Option<&str>,
    ) -> Result<Vec<ConnectionDetail>> {
        let sql = format!(
            "SELECT {DETAIL_COLUMNS} FROM connections
             WHERE ($1 = '' OR workspace_id = $2) ORDER BY created_at, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(workspace.unwrap_or(""))
            .bind(workspace.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Disconnects by hand: the tokens are deleted and the status becomes
    /// `disconnected`, as an uninstall does; the webhook secret stays, so
    /// the compliance webhooks a platform still sends verify. A connection
    /// already `disconnected` or `redacted` is left as it is.
    pub async fn disconnect_connection(&self, id: &str, actor: &str) -> Result<Changed> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM connections WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Ok(Changed::Missing);
        };
        if matches!(status.as_str(), "disconnected" | "redacted") {
            return Ok(Changed::Unchanged);
        }
        sqlx::query(&format!(
            "UPDATE connections SET status = 'disconnected', {}, updated_at = $1 WHERE id = $2",
            super::oauth::CLEARED_TOKENS
        ))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM webhook_registrations WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_integration_event(
            &mut tx,
            id,
            "disconnected",
            Some("disconnected over the admin API"),
            Some(actor),
            now,
        )
        .await?;
        tx.commit().await?;
        self.note_connections_changed();
        self.note_integration_event();
        Ok(Changed::Changed)
    }

    /// Pauses (or resumes) the processing of the connection's webhooks:
    /// intake goes on storing them; the claim skips them while paused.
    pub async fn set_connection_paused(
        &self,
        id: &str,
        paused: bool,
        actor: &str,
    ) -> Result<Changed> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT paused_at FROM connections WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(paused_at) = exists else {
            return Ok(Changed::Missing);
        };
        if paused_at.is_some() == paused {
            return Ok(Changed::Unchanged);
        }
        let (at, by) = if paused {
            (Some(now), Some(actor))
        } else {
            (None, None)
        };
        sqlx::query(
            "UPDATE connections SET paused_at = $1, paused_by = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(at)
        .bind(by)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let (kind, reason) = if paused {
            (
                "paused",
                "intake paused over the admin API: webhooks are stored and held",
            )
        } else {
            (
                "resumed",
                "intake resumed over the admin API: held webhooks are delivered",
            )
        };
        add_integration_event(&mut tx, id, kind, Some(reason), Some(actor), now).await?;
        tx.commit().await?;
        self.note_integration_event();
        Ok(Changed::Changed)
    }

    /// Puts every webhook registration of the connection back to `pending`,
    /// due now, for its platform's registrar to make again. Answers how
    /// many there are (0: the gateway registers none for it).
    pub async fn redo_webhook_registrations(&self, id: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE webhook_registrations SET status = 'pending', attempts = 0,
                next_attempt_at = 0, last_error = NULL, updated_at = $1
             WHERE connection_id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Notes a connection made (by hand or by an install) in its own
    /// transaction; for writes that did not take one.
    pub async fn note_connected(&self, id: &str, reason: &str, actor: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        add_integration_event(
            &mut tx,
            id,
            "connected",
            Some(reason),
            Some(actor),
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        self.note_integration_event();
        Ok(())
    }

    /// The `integration.*` events still to be published, oldest first.
    pub async fn pending_integration_events(&self, limit: i64) -> Result<Vec<IntegrationEventRow>> {
        Ok(sqlx::query_as(
            "SELECT id, connection_id, kind, provider, account, workspace_id, brand_id, status,
                reason, actor, created_at, detail
             FROM integration_events WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The sink has the event.
    pub async fn integration_event_published(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE integration_events SET published_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Woken after an `integration.*` event is committed by this process.
    pub fn integration_events_added(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.integration_events_added.clone()
    }

    pub(super) fn note_integration_event(&self) {
        self.integration_events_added.notify_one();
    }
}
