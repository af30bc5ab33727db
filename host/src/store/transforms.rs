//! The `transforms` and `transform_owners` tables: stored components by
//! digest, and which workspaces uploaded them.

use std::collections::HashMap;

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

// Which version of the transform contract each stored version implements:
// recorded at push, shown in the listings.
impl Store {
    /// Records the world (`ionflux:transform@0.2.0`, ...) of a stored
    /// version. Idempotent, so pushing the same bytes again also repairs a
    /// version stored without it.
    pub async fn set_transform_world(&self, digest: &str, world: &str) -> Result<()> {
        sqlx::query("UPDATE transforms SET world = $2 WHERE digest = $1")
            .bind(digest)
            .bind(world)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Digest → world of every stored version whose world is recorded.
    pub async fn transform_worlds(&self) -> Result<HashMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT digest, world FROM transforms WHERE world IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_world_is_recorded_once_set_and_again_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("worlds.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.put_transform("aa", "a", b"x").await.unwrap();
        store.put_transform("bb", "b", b"y").await.unwrap();
        assert!(
            store.transform_worlds().await.unwrap().is_empty(),
            "stored without one"
        );
        for _ in 0..2 {
            store
                .set_transform_world("aa", "ionflux:transform@0.2.0")
                .await
                .unwrap();
        }
        // A digest that is not stored is not invented.
        store
            .set_transform_world("cc", "ionflux:transform@0.1.0")
            .await
            .unwrap();
        let worlds = store.transform_worlds().await.unwrap();
        assert_eq!(worlds.len(), 1, "{worlds:?}");
        assert_eq!(worlds["aa"], "ionflux:transform@0.2.0");
    }
}
