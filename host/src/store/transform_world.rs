//! Which version of the transform contract each stored version implements
//! (issue 18): recorded at push, shown in the listings.

use std::collections::HashMap;

use super::{Result, Store};

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
