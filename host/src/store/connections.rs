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
    pub async fn insert_connection(&self, row: &ConnectionRow) -> Result<()> {
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
        .execute(&self.pool)
        .await?;
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
