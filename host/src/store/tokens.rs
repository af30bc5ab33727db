//! The `api_tokens` table: admin API tokens, kept as hashes.

use serde::Serialize;

use super::{Result, Store, now_ms};

/// An admin API token as stored; the token itself is never kept, only its
/// sha256.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    /// `operator` or `workspace`.
    pub kind: String,
    pub workspace_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub async fn insert_api_token(&self, row: &ApiTokenRow, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, kind, workspace_id, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.workspace_id)
        .bind(token_hash)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (not revoked) token with this hash.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, kind, workspace_id, created_at, revoked_at
             FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every token ever created, revoked ones included, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, kind, workspace_id, created_at, revoked_at
             FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any token was ever created. Revoked ones count: revoking the
    /// last token must not reopen the unauthenticated loopback default.
    pub async fn any_api_tokens(&self) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens LIMIT 1) t",
        )
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// Whether an operator could sign in with a stored token: one of kind
    /// `operator` that is not revoked.
    pub async fn any_live_operator_token(&self) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens
              WHERE kind = 'operator' AND revoked_at IS NULL LIMIT 1) t",
        )
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// Returns false when there was no live token with that id.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
