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
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let candidates: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT id, inbox_id, workspace_id FROM dead_letters
             WHERE resolved_at IS NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let wanted = |id: i64| ids.is_none_or(|ids| ids.contains(&id));
        let foreign: Vec<i64> = match workspace {
            Some(own) => candidates
                .iter()
                .filter(|(id, _, ws)| ids.is_some() && wanted(*id) && ws != own)
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
        for (id, inbox_id, ws) in candidates {
            if !wanted(id) || workspace.is_some_and(|own| own != ws) {
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
