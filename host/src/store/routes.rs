//! The `routes`, `route_history`, `shadow_stats` and `shadow_samples`
//! tables: which transform serves which webhooks, who changed that, and how
//! shadow runs compare.

use serde::{Deserialize, Serialize};

use super::{Result, Store, now_ms};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RouteRow {
    pub id: i64,
    pub provider: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub topic_pattern: String,
    pub transform: String,
    pub config: String,
    pub limits: Option<String>,
    /// Runs beside `transform` on the same webhooks, unpublished.
    #[sqlx(default)]
    pub shadow_transform: Option<String>,
}

/// The outcome of one shadow run, for the counters and the sample.
#[derive(Debug, Clone)]
pub struct ShadowRun {
    pub primary_transform: String,
    pub shadow_transform: String,
    pub inbox_id: i64,
    pub topic: String,
    /// None when both produced the same events.
    pub difference: Option<(String, String)>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ShadowStats {
    pub primary_transform: String,
    pub shadow_transform: String,
    pub runs: i64,
    pub differences: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ShadowSample {
    pub id: i64,
    pub primary_transform: String,
    pub shadow_transform: String,
    pub inbox_id: i64,
    pub topic: String,
    pub primary_output: String,
    pub shadow_output: String,
    pub created_at: i64,
}

/// How many differing runs are kept per (primary, shadow) pair.
const SHADOW_SAMPLES_KEPT: i64 = 50;

impl Store {
    /// Creates or replaces the route for this exact scope and pattern, and
    /// records the change (who, when, from what, to what) in the same
    /// transaction.
    pub async fn set_route(&self, route: &RouteRow, actor: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let old: Option<RouteRow> = sqlx::query_as(
            "SELECT id, provider, workspace_id, brand_id, topic_pattern, transform, config, limits,
                shadow_transform
             FROM routes
             WHERE provider = $1 AND workspace_id = $2 AND brand_id = $3 AND topic_pattern = $4",
        )
        .bind(&route.provider)
        .bind(&route.workspace_id)
        .bind(&route.brand_id)
        .bind(&route.topic_pattern)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO routes (provider, workspace_id, brand_id, topic_pattern, transform,
                config, limits, shadow_transform, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (provider, workspace_id, brand_id, topic_pattern) DO UPDATE SET
                transform = excluded.transform, config = excluded.config,
                limits = excluded.limits, shadow_transform = excluded.shadow_transform",
        )
        .bind(&route.provider)
        .bind(&route.workspace_id)
        .bind(&route.brand_id)
        .bind(&route.topic_pattern)
        .bind(&route.transform)
        .bind(&route.config)
        .bind(&route.limits)
        .bind(&route.shadow_transform)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO route_history (provider, workspace_id, brand_id, topic_pattern,
                old_transform, new_transform, old_config, new_config, old_limits, new_limits,
                old_shadow, new_shadow, actor, changed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&route.provider)
        .bind(&route.workspace_id)
        .bind(&route.brand_id)
        .bind(&route.topic_pattern)
        .bind(old.as_ref().map(|o| &o.transform))
        .bind(&route.transform)
        .bind(old.as_ref().map(|o| &o.config))
        .bind(&route.config)
        .bind(old.as_ref().and_then(|o| o.limits.as_ref()))
        .bind(&route.limits)
        .bind(old.as_ref().and_then(|o| o.shadow_transform.as_ref()))
        .bind(&route.shadow_transform)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes whenever any route or any workspace's ceilings change:
    /// replicas poll this cheap value and reload both only when it moved.
    /// Both terms only ever grow, so their sum grows with either.
    pub async fn routes_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM route_history)
                + (SELECT COALESCE(MAX(revision), 0) FROM workspace_ceilings)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Adds shadow runs to the counters and keeps a bounded sample of the
    /// differing ones.
    pub async fn record_shadow_runs(&self, runs: &[ShadowRun]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        for run in runs {
            sqlx::query(
                "INSERT INTO shadow_stats (primary_transform, shadow_transform, runs, differences,
                    updated_at)
                 VALUES ($1, $2, 1, $3, $4)
                 ON CONFLICT (primary_transform, shadow_transform) DO UPDATE SET
                    runs = shadow_stats.runs + 1,
                    differences = shadow_stats.differences + excluded.differences,
                    updated_at = excluded.updated_at",
            )
            .bind(&run.primary_transform)
            .bind(&run.shadow_transform)
            .bind(run.difference.is_some() as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let Some((primary, shadow)) = &run.difference else {
                continue;
            };
            let kept: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM shadow_samples
                 WHERE primary_transform = $1 AND shadow_transform = $2",
            )
            .bind(&run.primary_transform)
            .bind(&run.shadow_transform)
            .fetch_one(&mut *tx)
            .await?;
            if kept < SHADOW_SAMPLES_KEPT {
                sqlx::query(
                    "INSERT INTO shadow_samples (primary_transform, shadow_transform, inbox_id,
                        topic, primary_output, shadow_output, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&run.primary_transform)
                .bind(&run.shadow_transform)
                .bind(run.inbox_id)
                .bind(&run.topic)
                .bind(primary)
                .bind(shadow)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn shadow_stats(&self) -> Result<Vec<ShadowStats>> {
        Ok(sqlx::query_as(
            "SELECT primary_transform, shadow_transform, runs, differences, updated_at
             FROM shadow_stats ORDER BY updated_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn shadow_samples(&self, limit: i64) -> Result<Vec<ShadowSample>> {
        Ok(sqlx::query_as(
            "SELECT id, primary_transform, shadow_transform, inbox_id, topic, primary_output,
                shadow_output, created_at
             FROM shadow_samples ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Route changes, newest first.
    pub async fn route_history(&self, limit: i64) -> Result<Vec<RouteChange>> {
        Ok(sqlx::query_as(
            "SELECT id, provider, workspace_id, brand_id, topic_pattern, old_transform,
                new_transform, old_config, new_config, old_limits, new_limits, old_shadow,
                new_shadow, actor, changed_at
             FROM route_history ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn routes(&self) -> Result<Vec<RouteRow>> {
        Ok(sqlx::query_as(
            "SELECT id, provider, workspace_id, brand_id, topic_pattern, transform, config, limits,
                shadow_transform
             FROM routes ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RouteChange {
    pub id: i64,
    pub provider: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub topic_pattern: String,
    pub old_transform: Option<String>,
    pub new_transform: Option<String>,
    pub old_config: Option<String>,
    pub new_config: Option<String>,
    pub old_limits: Option<String>,
    pub new_limits: Option<String>,
    pub old_shadow: Option<String>,
    pub new_shadow: Option<String>,
    pub actor: String,
    pub changed_at: i64,
}
