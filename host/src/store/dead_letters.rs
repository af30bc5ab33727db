//! The `dead_letters` table: webhooks that could not become events, and their
//! replay.

use serde::{Deserialize, Serialize};

use super::{Backend, Params, Result, Store, now_ms};

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason_code: String,
    pub reason: String,
    pub transform: Option<String>,
    pub transform_digest: Option<String>,
}

/// What a replay did: the dead letters sent back to the inbox, or, when
/// some asked for belong to another workspace, those (and nothing replayed).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: Vec<i64>,
    pub foreign: Vec<i64>,
}

/// Which dead letters a list or a replay takes, beyond its workspace: every
/// filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// The letter's `reason_code` (trap, invalid_output, …).
    pub reason_code: Option<String>,
    /// Dead-lettered at or after, epoch ms.
    pub since: Option<i64>,
    /// Dead-lettered before, epoch ms.
    pub until: Option<i64>,
}

impl DeadLetterFilter {
    fn matches(&self, reason_code: &str, created_at: i64) -> bool {
        self.reason_code.as_deref().is_none_or(|r| r == reason_code)
            && self.since.is_none_or(|t| created_at >= t)
            && self.until.is_none_or(|t| created_at < t)
    }
}

/// A webhook's dead letter, resolved or not.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetterOf {
    pub id: i64,
    pub reason_code: String,
    pub reason: String,
    pub transform: Option<String>,
    pub transform_digest: Option<String>,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
    /// A replay that then succeeded.
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetterRow {
    pub id: i64,
    pub inbox_id: i64,
    pub connection_id: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub topic: String,
    pub webhook_id: String,
    pub reason_code: String,
    pub reason: String,
    pub transform: Option<String>,
    pub transform_digest: Option<String>,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
}

impl Store {
    /// Dead letters not yet resolved by a successful replay, oldest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetterRow>> {
        Ok(sqlx::query_as(
            "SELECT id, inbox_id, connection_id, workspace_id, brand_id, topic, webhook_id,
                reason_code, reason, transform, transform_digest, created_at, replayed_at
             FROM dead_letters WHERE resolved_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sends unresolved dead letters back to the inbox as pending (they keep
    /// their inbox row, so their event ids): `ids`, or every one. With a
    /// workspace, the ownership check is made in the same transaction as
    /// the replay, so a letter that appears or changes between a caller's
    /// look and the replay is never replayed for the wrong workspace: when
    /// any of `ids` belongs to another workspace nothing is replayed, and
    /// those ids are answered in `foreign`.
    pub async fn replay_dead_letters(
        &self,
        ids: Option<&[i64]>,
        workspace: Option<&str>,
    ) -> Result<Replayed> {
        self.replay_dead_letters_matching(ids, workspace, &DeadLetterFilter::default())
            .await
    }

    /// `replay_dead_letters`, of the letters `filter` matches only (a
    /// foreign id is refused whether it matches or not).
    pub async fn replay_dead_letters_matching(
        &self,
        ids: Option<&[i64]>,
        workspace: Option<&str>,
        filter: &DeadLetterFilter,
    ) -> Result<Replayed> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let candidates: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, inbox_id, workspace_id, reason_code, created_at FROM dead_letters
             WHERE resolved_at IS NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let wanted = |id: i64| ids.is_none_or(|ids| ids.contains(&id));
        let foreign: Vec<i64> = match workspace {
            Some(own) => candidates
                .iter()
                .filter(|(id, _, ws, ..)| ids.is_some() && wanted(*id) && ws != own)
                .map(|(id, ..)| *id)
                .collect(),
            None => Vec::new(),
        };
        if !foreign.is_empty() {
            return Ok(Replayed {
                replayed: Vec::new(),
                foreign,
            });
        }
        let mut replayed = Vec::new();
        for (id, inbox_id, ws, reason_code, created_at) in candidates {
            if !wanted(id)
                || workspace.is_some_and(|own| own != ws)
                || !filter.matches(&reason_code, created_at)
            {
                continue;
            }
            sqlx::query(
                "UPDATE inbox SET status = 'pending', next_attempt_at = 0, claimed_until = NULL,
                    finished_at = NULL
                 WHERE id = $1 AND status = 'dead'",
            )
            .bind(inbox_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE dead_letters SET replayed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            replayed.push(id);
        }
        tx.commit().await?;
        Ok(Replayed {
            replayed,
            foreign: Vec::new(),
        })
    }

    /// Unresolved dead letters `filter` matches, of one workspace or of all,
    /// oldest first.
    pub async fn find_dead_letters(
        &self,
        workspace: Option<&str>,
        filter: &DeadLetterFilter,
        limit: i64,
    ) -> Result<Vec<DeadLetterRow>> {
        let mut p = Params::new(self.backend);
        let mut sql = String::from(
            "SELECT id, inbox_id, connection_id, workspace_id, brand_id, topic, webhook_id,
                reason_code, reason, transform, transform_digest, created_at, replayed_at
             FROM dead_letters WHERE resolved_at IS NULL",
        );
        if workspace.is_some() {
            sql += &format!(" AND workspace_id = {}", p.p());
        }
        if filter.reason_code.is_some() {
            sql += &format!(" AND reason_code = {}", p.p());
        }
        if filter.since.is_some() {
            sql += &format!(" AND created_at >= {}", p.p());
        }
        if filter.until.is_some() {
            sql += &format!(" AND created_at < {}", p.p());
        }
        sql += &format!(" ORDER BY id LIMIT {}", p.p());
        let mut q = sqlx::query_as(&sql);
        if let Some(ws) = workspace {
            q = q.bind(ws);
        }
        if let Some(reason) = &filter.reason_code {
            q = q.bind(reason.as_str());
        }
        for t in [filter.since, filter.until].into_iter().flatten() {
            q = q.bind(t);
        }
        Ok(q.bind(limit).fetch_all(&self.pool).await?)
    }

    /// The dead letter of a stored webhook, resolved or not.
    pub async fn dead_letter_of(&self, inbox_id: i64) -> Result<Option<DeadLetterOf>> {
        Ok(sqlx::query_as(
            "SELECT id, reason_code, reason, transform, transform_digest, created_at,
                replayed_at, resolved_at
             FROM dead_letters WHERE inbox_id = $1",
        )
        .bind(inbox_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Unresolved dead letters of one workspace, oldest first.
    pub async fn workspace_dead_letters(
        &self,
        workspace: &str,
        limit: i64,
    ) -> Result<Vec<DeadLetterRow>> {
        Ok(sqlx::query_as(
            "SELECT id, inbox_id, connection_id, workspace_id, brand_id, topic, webhook_id,
                reason_code, reason, transform, transform_digest, created_at, replayed_at
             FROM dead_letters WHERE resolved_at IS NULL AND workspace_id = $1
             ORDER BY id LIMIT $2",
        )
        .bind(workspace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A replayed dead letter that now succeeds is resolved: binds now, then
/// the `n` inbox ids.
pub(super) fn resolve_dead_letters_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    format!(
        "UPDATE dead_letters SET resolved_at = {}
         WHERE resolved_at IS NULL AND inbox_id IN ({})",
        p.p(),
        p.list(n)
    )
}

/// A row's dead letter (a replayed one is reopened): binds inbox id,
/// connection, workspace, brand, topic, webhook id, reason code, reason,
/// transform, its digest, now.
pub(super) const DEAD_LETTER_SQL: &str =
    "INSERT INTO dead_letters (inbox_id, connection_id, workspace_id,
        brand_id, topic, webhook_id, reason_code, reason, transform, transform_digest, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (inbox_id) DO UPDATE SET reason_code = excluded.reason_code,
        reason = excluded.reason, transform = excluded.transform,
        transform_digest = excluded.transform_digest,
        created_at = excluded.created_at, resolved_at = NULL";
