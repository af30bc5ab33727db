//! Workspace ceilings, and what each workspace keeps uploaded: its quota's
//! usage and the deletion of versions nothing uses (issue 16).

use serde::{Deserialize, Serialize};

use super::{Result, RouteRow, Store, now_ms};

/// One workspace's ceilings as stored; a None column keeps the configured
/// default.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CeilingRow {
    pub workspace_id: String,
    pub cpu_ms: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub max_events: Option<i64>,
    pub output_bytes: Option<i64>,
    pub revision: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// The versions a workspace uploaded and their bytes together.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    sqlx::FromRow,
    Deserialize,
    utoipa::ToSchema,
)]
pub struct UploadUsage {
    pub transforms: i64,
    pub bytes: i64,
}

/// What storing a workspace's upload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedPut {
    /// Stored and owned (or owned already: the same bytes again).
    Stored,
    /// Not stored: the upload would take the workspace past its quota,
    /// which this is the usage of.
    OverQuota(UploadUsage),
}

/// What deleting a version found.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// No such version that the caller may delete.
    Unknown,
    /// Kept: these routes (the caller's, for a workspace) run it as primary
    /// or shadow.
    InUse(Vec<RouteRow>),
    /// Gone for the caller. `component` says whether its bytes went too
    /// (false when other workspaces own it, or routes outside the caller's
    /// workspace still run it).
    Removed { component: bool },
}

const CEILING_COLUMNS: &str = "workspace_id, cpu_ms, memory_bytes, max_events, output_bytes,
    revision, updated_by, updated_at";

impl Store {
    pub async fn workspace_ceilings(&self, workspace: &str) -> Result<Option<CeilingRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CEILING_COLUMNS} FROM workspace_ceilings WHERE workspace_id = $1"
        ))
        .bind(workspace)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn all_workspace_ceilings(&self) -> Result<Vec<CeilingRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CEILING_COLUMNS} FROM workspace_ceilings ORDER BY workspace_id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets a workspace's ceilings (cpu_ms, memory_bytes, max_events,
    /// output_bytes; None: the default). Every change takes a new, higher
    /// revision, which moves `routes_version` so that replicas reload.
    pub async fn set_workspace_ceilings(
        &self,
        workspace: &str,
        columns: [Option<i64>; 4],
        actor: &str,
    ) -> Result<CeilingRow> {
        let mut tx = self.serial_tx().await?;
        let revision: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) + 1 FROM workspace_ceilings")
                .fetch_one(&mut *tx)
                .await?;
        let [cpu_ms, memory_bytes, max_events, output_bytes] = columns;
        sqlx::query(
            "INSERT INTO workspace_ceilings (workspace_id, cpu_ms, memory_bytes, max_events,
                output_bytes, revision, updated_by, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (workspace_id) DO UPDATE SET cpu_ms = excluded.cpu_ms,
                memory_bytes = excluded.memory_bytes, max_events = excluded.max_events,
                output_bytes = excluded.output_bytes, revision = excluded.revision,
                updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(workspace)
        .bind(cpu_ms)
        .bind(memory_bytes)
        .bind(max_events)
        .bind(output_bytes)
        .bind(revision)
        .bind(actor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(self
            .workspace_ceilings(workspace)
            .await?
            .expect("written above"))
    }

    /// The versions a workspace owns and their bytes together.
    pub async fn upload_usage(&self, workspace: &str) -> Result<UploadUsage> {
        Ok(sqlx::query_as(USAGE_SQL)
            .bind(workspace)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Stores a workspace's upload and records it as the workspace's, unless
    /// that would take the workspace past `max_transforms` versions or
    /// `max_bytes` bytes. Checked and written in one serial transaction, so
    /// concurrent uploads cannot slip past the quota together. Bytes the
    /// workspace already owns are only renamed and cost nothing.
    pub async fn put_owned_transform(
        &self,
        digest: &str,
        name: &str,
        component: &[u8],
        workspace: &str,
        max_transforms: i64,
        max_bytes: i64,
    ) -> Result<OwnedPut> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let owned: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM transform_owners WHERE digest = $1 AND workspace_id = $2",
        )
        .bind(digest)
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await?;
        if owned.is_none() {
            let usage: UploadUsage = sqlx::query_as(USAGE_SQL)
                .bind(workspace)
                .fetch_one(&mut *tx)
                .await?;
            let size = i64::try_from(component.len()).unwrap_or(i64::MAX);
            if usage.transforms.saturating_add(1) > max_transforms
                || usage.bytes.saturating_add(size) > max_bytes
            {
                return Ok(OwnedPut::OverQuota(usage));
            }
            sqlx::query(
                "INSERT INTO transforms (digest, name, component, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(name)
            .bind(component)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO transform_owners (digest, workspace_id, name, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest, workspace_id) DO UPDATE SET name = excluded.name",
        )
        .bind(digest)
        .bind(workspace)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(OwnedPut::Stored)
    }

    /// Deletes a version for a workspace (its ownership; the bytes too when
    /// nobody else owns them and no route runs them) or, with None, for an
    /// operator (the version, whoever uploaded it). Refused while a route
    /// the caller can see runs it, as primary or shadow. One serial
    /// transaction, so a route change cannot slip in between the check and
    /// the delete of a route-setting replica that checks the same way.
    pub async fn delete_transform(&self, digest: &str, workspace: Option<&str>) -> Result<Deleted> {
        let mut tx = self.serial_tx().await?;
        let known: Option<i64> = match workspace {
            Some(ws) => {
                sqlx::query_scalar(
                    "SELECT CAST(1 AS BIGINT) FROM transform_owners WHERE digest = $1 AND workspace_id = $2",
                )
                .bind(digest)
                .bind(ws)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => {
                sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM transforms WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        if known.is_none() {
            return Ok(Deleted::Unknown);
        }
        let users: Vec<RouteRow> = sqlx::query_as(
            "SELECT id, provider, workspace_id, brand_id, topic_pattern, transform, config, limits,
                shadow_transform
             FROM routes WHERE transform = $1 OR shadow_transform = $1 ORDER BY id",
        )
        .bind(digest)
        .fetch_all(&mut *tx)
        .await?;
        let (visible, others): (Vec<RouteRow>, Vec<RouteRow>) = users
            .into_iter()
            .partition(|r| workspace.is_none_or(|ws| r.workspace_id == ws));
        if !visible.is_empty() {
            return Ok(Deleted::InUse(visible));
        }
        match workspace {
            Some(ws) => {
                sqlx::query("DELETE FROM transform_owners WHERE digest = $1 AND workspace_id = $2")
                    .bind(digest)
                    .bind(ws)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM transform_owners WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let owners: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM transform_owners WHERE digest = $1")
                .bind(digest)
                .fetch_one(&mut *tx)
                .await?;
        let component = owners == 0 && others.is_empty();
        if component {
            sqlx::query("DELETE FROM transforms WHERE digest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Deleted::Removed { component })
    }
}

/// PostgreSQL's SUM of BIGINT is NUMERIC: cast back for the `Any` driver.
const USAGE_SQL: &str = "SELECT CAST(COUNT(*) AS BIGINT) AS transforms,
        CAST(COALESCE(SUM(length(t.component)), 0) AS BIGINT) AS bytes
     FROM transform_owners o JOIN transforms t ON t.digest = o.digest
     WHERE o.workspace_id = $1";
