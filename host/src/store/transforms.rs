//! The `transforms` and `transform_owners` tables: stored components by
//! digest, and which workspaces uploaded them.

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, now_ms};

impl Store {
    /// Stores a component under its digest; storing the same bytes twice is a
    /// no-op (versions are immutable).
    pub async fn put_transform(&self, digest: &str, name: &str, component: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO transforms (digest, name, component, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(name)
        .bind(component)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (name, component bytes) of a stored transform.
    pub async fn transform_component(&self, digest: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT name, component FROM transforms WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("name")?, r.try_get("component")?)))
            .transpose()
    }

    /// Stored transform versions (without their bytes), newest first.
    pub async fn transforms(&self) -> Result<Vec<TransformInfo>> {
        Ok(sqlx::query_as(
            "SELECT digest, name, CAST(length(component) AS BIGINT) AS size, created_at
             FROM transforms ORDER BY created_at DESC, digest",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stored versions a workspace uploaded, newest first, under the name it
    /// gave them.
    pub async fn workspace_transforms(&self, workspace: &str) -> Result<Vec<TransformInfo>> {
        Ok(sqlx::query_as(
            "SELECT t.digest, o.name, CAST(length(t.component) AS BIGINT) AS size, o.created_at
             FROM transform_owners o JOIN transforms t ON t.digest = o.digest
             WHERE o.workspace_id = $1 ORDER BY o.created_at DESC, t.digest",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The workspaces that uploaded a version (none: an operator did).
    pub async fn transform_owners(&self, digest: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT workspace_id FROM transform_owners WHERE digest = $1 ORDER BY workspace_id",
        )
        .bind(digest)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TransformInfo {
    pub digest: String,
    pub name: String,
    pub size: i64,
    pub created_at: i64,
}
