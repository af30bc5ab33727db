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
