//! The `inbox` table and its `brand_leases`: webhooks stored before they are
//! acknowledged, claimed a brand at a time, and finished.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::dead_letters::{DEAD_LETTER_SQL, resolve_dead_letters_sql};
use super::{
    Backend, Blob, ConnectionRow, DeadLetter, Delivery, Params, ROWS_PER_STATEMENT, Result, Store,
    StoreError, WriteTx, now_ms,
};

/// Attempts of one intake group commit that loses transaction conflicts.
const INTAKE_ATTEMPTS: u32 = 5;

pub struct NewWebhook<'a> {
    pub connection: &'a ConnectionRow,
    pub webhook_id: &'a str,
    pub topic: &'a str,
    pub api_version: Option<&'a str>,
    pub occurred_at: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub trace_id: &'a str,
    pub headers: &'a [(String, String)],
    /// Encoded by the caller (`Blob::encode`), before the write turn.
    pub body: &'a Blob,
    pub received_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    Duplicate(i64),
}

/// A stored webhook, as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: i64,
    pub connection_id: String,
    pub provider: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub webhook_id: String,
    pub topic: String,
    pub account: String,
    pub api_version: Option<String>,
    pub occurred_at: Option<String>,
    pub event_id: Option<String>,
    pub trace_id: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: i64,
    pub attempts: i64,
}

/// How a claimed row ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Published(Vec<Delivery>),
    Dead {
        deliveries: Vec<Delivery>,
        letter: DeadLetter,
    },
}

/// What one attempt at a row ran, kept with how it ended in
/// `inbox_attempts` (an operator's "where is my webhook"). What a caller
/// does not know stays None.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// The route that chose the transform; None: the provider's default.
    pub route_id: Option<i64>,
    /// The transform's name, or the reference that failed to load.
    pub transform: Option<String>,
    pub transform_digest: Option<String>,
}

/// The most of an attempt's error that is kept, in bytes: a guest's error
/// can quote whatever it printed, and every attempt of every row keeps one.
pub const ATTEMPT_ERROR_MAX: usize = 1024;

/// One `inbox_attempts` row, in `insert_attempts_sql`'s order.
#[derive(Debug)]
pub(super) struct AttemptRow<'a> {
    pub(super) inbox_id: i64,
    pub(super) attempt: i64,
    pub(super) outcome: &'static str,
    pub(super) reason_code: Option<&'a str>,
    pub(super) error: Option<&'a str>,
    pub(super) route_id: Option<i64>,
    pub(super) transform: Option<&'a str>,
    pub(super) transform_digest: Option<&'a str>,
}

impl<'a> AttemptRow<'a> {
    /// How a finished row's attempt ended. A dead letter's own transform
    /// names the one that failed when the attempt knows none.
    pub(super) fn finished(row: &InboxRow, outcome: &'a Outcome, tried: Option<&'a Tried>) -> Self {
        let letter = match outcome {
            Outcome::Published(_) => None,
            Outcome::Dead { letter, .. } => Some(letter),
        };
        Self::ended(row, letter, tried)
    }

    /// A finished row's attempt: dead-lettered with `letter`, else published.
    pub(super) fn ended(
        row: &InboxRow,
        letter: Option<&'a DeadLetter>,
        tried: Option<&'a Tried>,
    ) -> Self {
        let (name, reason_code, error) = match letter {
            None => ("published", None, None),
            Some(letter) => (
                "dead",
                Some(letter.reason_code.as_str()),
                Some(capped(&letter.reason)),
            ),
        };
        let transform = tried
            .and_then(|t| t.transform.as_deref())
            .or_else(|| letter.and_then(|l| l.transform.as_deref()));
        let transform_digest = tried
            .and_then(|t| t.transform_digest.as_deref())
            .or_else(|| letter.and_then(|l| l.transform_digest.as_deref()));
        AttemptRow {
            inbox_id: row.id,
            attempt: row.attempts,
            outcome: name,
            reason_code,
            error,
            route_id: tried.and_then(|t| t.route_id),
            transform,
            transform_digest,
        }
    }

    /// A row given back for a retry after `error` (the sink's).
    pub(super) fn retry(row: &InboxRow, error: &'a str, tried: Option<&'a Tried>) -> Self {
        AttemptRow {
            inbox_id: row.id,
            attempt: row.attempts,
            outcome: "retry",
            reason_code: Some("transient"),
            error: Some(capped(error)),
            route_id: tried.and_then(|t| t.route_id),
            transform: tried.and_then(|t| t.transform.as_deref()),
            transform_digest: tried.and_then(|t| t.transform_digest.as_deref()),
        }
    }
}

/// `text` cut to `ATTEMPT_ERROR_MAX` bytes on a character boundary.
fn capped(text: &str) -> &str {
    &text[..text.floor_char_boundary(ATTEMPT_ERROR_MAX)]
}

/// Inserts `n` attempts: binds inbox id, attempt, at, outcome, reason code,
/// error, route id, transform, digest per row. An attempt recorded before
/// (not expected: a failed transaction records nothing) is kept as it was.
pub(super) fn insert_attempts_sql(backend: Backend, n: usize) -> String {
    format!(
        "INSERT INTO inbox_attempts (inbox_id, attempt, at, outcome, reason_code, error,
            route_id, transform, transform_digest)
         VALUES {} ON CONFLICT (inbox_id, attempt) DO NOTHING",
        Params::new(backend).values(n, 9)
    )
}

impl Store {
    /// Stores a webhook durably: when this returns `Ok`, the row is
    /// committed. A webhook id seen before on the same connection is not
    /// stored again.
    pub async fn insert_webhook(&self, w: &NewWebhook<'_>) -> Result<Inserted> {
        let mut out = self.insert_webhooks(std::slice::from_ref(w)).await?;
        Ok(out.pop().expect("one outcome per webhook"))
    }

    /// Stores webhooks durably in one transaction (group commit: one fsync
    /// for the lot), one outcome per webhook in order. When this returns
    /// `Ok`, every row is committed; on `Err`, none is.
    pub async fn insert_webhooks(&self, batch: &[NewWebhook<'_>]) -> Result<Vec<Inserted>> {
        // An explicit transaction also because a RETURNING row can reach us
        // before an implicit transaction commits (PostgreSQL commits at the
        // protocol's Sync, SQLite when the statement is reset): a crash of
        // the database in between would have had us acknowledge a webhook
        // it never kept. The reliability harness caught exactly that on a
        // PostgreSQL restart.
        if let Some(writer) = &self.writer {
            // One thread and one connection write, BEGIN IMMEDIATE to
            // COMMIT: no other transaction's locks to wait on, in any order.
            return writer.insert(batch).await;
        }
        // Rows in one key order, whichever group they are in. A webhook
        // delivered twice at once (a Shopify retry over a slow first
        // delivery, a replay) lands in two groups committing side by side,
        // and an insert that meets the other group's uncommitted copy waits
        // for that group to end: in arrival order, two groups sharing two
        // ids could each wait for the other (PostgreSQL's "deadlock
        // detected", failing a whole group of other merchants' webhooks).
        // In one order, whoever waits holds no key the other needs yet.
        // The inbox ids still follow arrival order (the dispatcher's order
        // within a brand): on PostgreSQL they are drawn from the sequence
        // first, in arrival order, and written explicitly (`preallocate`).
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| (batch[i].connection.id.as_str(), batch[i].webhook_id));
        let mut attempt = 1;
        loop {
            match self.insert_webhooks_in(batch, &order).await {
                // Rolled back whole, so nothing of it is kept: safe to redo.
                // Not expected with the order above, but a lock cycle with
                // some other writer must not cost anyone an acknowledgement.
                Err(e) if attempt < INTAKE_ATTEMPTS && e.is_transaction_conflict() => {
                    tracing::warn!(error = %e, attempt, webhooks = batch.len(),
                        "inbox group lost a transaction conflict; trying it again");
                    tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// One attempt of `insert_webhooks` through sqlx, inserting in `order`
    /// (indexes into the batch, sorted by key); outcomes in the batch's order.
    async fn insert_webhooks_in(
        &self,
        batch: &[NewWebhook<'_>],
        order: &[usize],
    ) -> Result<Vec<Inserted>> {
        let mut tx = self.begin_write(true).await?;
        // Ids in arrival order, whatever order the rows are written in. A
        // row that turns out a duplicate leaves a gap, as a sequence may.
        let preallocated: Option<Vec<i64>> = match self.backend {
            Backend::Postgres => {
                let mut ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('inbox', 'id'))
                     FROM generate_series(1, $1)",
                )
                .bind(batch.len() as i64)
                .fetch_all(&mut *tx)
                .await?;
                ids.sort_unstable();
                Some(ids)
            }
            // SQLite writes one transaction at a time: no lock cycle to
            // avoid, and its rowids follow the statement's order.
            Backend::Sqlite => None,
        };
        let order: Vec<usize> = match preallocated {
            Some(_) => order.to_vec(),
            None => (0..batch.len()).collect(),
        };
        // Multi-row statements: one round trip to the database per chunk
        // instead of per webhook. Chunks are powers of two so that only a
        // handful of distinct statements are ever prepared and cached.
        // (connection id, webhook id) of every row inserted, and its id.
        let mut ids: std::collections::HashMap<(String, String), i64> =
            std::collections::HashMap::with_capacity(batch.len());
        let mut rest = &order[..];
        while !rest.is_empty() {
            let n = 1usize << rest.len().min(ROWS_PER_STATEMENT).ilog2();
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q = sqlx::query(insert_webhooks_sql(self.backend, n, preallocated.is_some()));
            for &i in chunk {
                let w = &batch[i];
                if let Some(ids) = &preallocated {
                    q = q.bind(ids[i]);
                }
                q = q
                    .bind(&w.connection.id)
                    .bind(&w.connection.provider)
                    .bind(&w.connection.workspace_id)
                    .bind(&w.connection.brand_id)
                    .bind(w.webhook_id)
                    .bind(w.topic)
                    .bind(&w.connection.account)
                    .bind(w.api_version)
                    .bind(w.occurred_at)
                    .bind(w.event_id)
                    .bind(w.trace_id)
                    .bind(serde_json::to_string(w.headers).expect("headers serialise"))
                    .bind(&w.body.bytes)
                    .bind(w.body.encoding.as_str())
                    .bind(w.received_at);
            }
            // Only rows actually inserted come back, in no promised order:
            // matched to the batch by their key below.
            for r in q.fetch_all(&mut *tx).await? {
                ids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let keys = batch
            .iter()
            .map(|w| (w.connection.id.as_str(), w.webhook_id));
        for (w, m) in batch.iter().zip(match_inserted(keys, &ids)) {
            out.push(match m {
                Some(inserted) => inserted,
                None => Inserted::Duplicate(
                    sqlx::query_scalar(STORED_WEBHOOK_ID_SQL)
                        .bind(&w.connection.id)
                        .bind(w.webhook_id)
                        .fetch_one(&mut *tx)
                        .await?,
                ),
            });
        }
        let last = last_webhooks(
            batch
                .iter()
                .map(|w| (w.connection.id.as_str(), w.received_at)),
        );
        for (connection, at) in last {
            sqlx::query(NOTE_LAST_WEBHOOK_SQL)
                .bind(at)
                .bind(connection)
                .bind(at - LAST_WEBHOOK_GRAIN_MS)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Claims up to `limit` due rows for `owner`, oldest first, a brand at a
    /// time: the owner first takes (or renews) a lease on each brand with due
    /// work that no live lease of another owner holds, then claims a prefix
    /// of those brands' pending rows. One brand's rows are therefore only
    /// ever in one replica's hands, which is what keeps them in order across
    /// replicas. A lease that is not renewed in time (the replica died)
    /// expires and the brand goes to whoever claims next: at-least-once,
    /// never lost. The owner gives its leases back with `release_leases`
    /// once the batch is recorded.
    pub async fn claim(&self, owner: &str, limit: i64, lease: Duration) -> Result<Vec<InboxRow>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let ids = match &self.writer {
            Some(writer) => writer.claim(owner, now, until, limit).await?,
            None => self.claim_ids(owner, now, until, limit).await?,
        };
        // Read after the commit, outside the write turn: the rows are ours
        // (leased brands, claimed), and reading some hundred kilobytes of
        // bodies inside the transaction would keep intake waiting for it.
        let mut claimed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut p = Params::new(self.backend);
            let sql = format!(
                "SELECT {INBOX_COLUMNS} FROM inbox WHERE id IN ({})",
                p.list(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                claimed.push(inbox_row_from(&r)?);
            }
        }
        // IN gives no order; the dispatcher relies on id order.
        claimed.sort_by_key(|r| r.id);
        Ok(claimed)
    }

    /// The claim's transaction through sqlx: leases the brands, picks and
    /// marks the rows, and returns their ids.
    async fn claim_ids(&self, owner: &str, now: i64, until: i64, limit: i64) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        sqlx::query(CLAIM_BRANDS_SQL)
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(limit.saturating_mul(4))
            .execute(&mut *tx)
            .await?;
        let candidates: Vec<(i64, String, i64)> = sqlx::query_as(CLAIM_CANDIDATES_SQL)
            .bind(owner)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let ids = claimable(candidates, now);
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = claim_rows_sql(self.backend, chunk.len());
            let mut q = sqlx::query(&sql).bind(until);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Extends every brand lease `owner` holds: the heartbeat of a batch
    /// that takes longer than a lease (a slow broker).
    pub async fn renew_leases(&self, owner: &str, lease: Duration) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE brand_leases SET lease_until = $1 WHERE owner = $2")
            .bind(now_ms() + lease.as_millis() as i64)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    }

    /// Gives back every brand lease `owner` holds, once its batch is
    /// recorded, so that any replica may take those brands next.
    pub async fn release_leases(&self, owner: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let _turn = self.write_turn().await;
        sqlx::query(RELEASE_LEASES_SQL)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Gives claimed rows back for a later attempt (a transient failure),
    /// keeping each attempt (what it ran, and the error) in the same
    /// transaction.
    pub async fn release(
        &self,
        rows: &[(&InboxRow, Option<&Tried>)],
        retry_at: i64,
        error: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (row, _) in rows {
            sqlx::query(
                "UPDATE inbox SET claimed_until = NULL, next_attempt_at = $1, last_error = $2
                 WHERE id = $3 AND status = 'pending'",
            )
            .bind(retry_at)
            .bind(error)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        }
        let attempts: Vec<AttemptRow> = rows
            .iter()
            .map(|(row, tried)| AttemptRow::retry(row, error, *tried))
            .collect();
        self.insert_attempts(&mut tx, &attempts, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts attempts inside a transaction of the caller's: one statement
    /// per chunk of rows.
    pub(super) async fn insert_attempts(
        &self,
        tx: &mut WriteTx,
        attempts: &[AttemptRow<'_>],
        now: i64,
    ) -> Result<()> {
        let mut rest = attempts;
        while !rest.is_empty() {
            let n = 1usize << rest.len().min(ROWS_PER_STATEMENT).ilog2();
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let sql = insert_attempts_sql(self.backend, n);
            let mut q = sqlx::query(&sql);
            for a in chunk {
                q = q
                    .bind(a.inbox_id)
                    .bind(a.attempt)
                    .bind(now)
                    .bind(a.outcome)
                    .bind(a.reason_code)
                    .bind(a.error)
                    .bind(a.route_id)
                    .bind(a.transform)
                    .bind(a.transform_digest);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Gives claimed rows back untried, due at once, their attempt not
    /// counted: the rows a batch had no memory budget left for.
    pub async fn defer(&self, ids: &[i64]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut p = Params::new(self.backend);
            let sql = format!(
                "UPDATE inbox SET claimed_until = NULL, attempts = attempts - 1
                 WHERE status = 'pending' AND id IN ({})",
                p.list(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records how claimed rows ended, all in one transaction.
    pub async fn finish(&self, outcomes: &[(&InboxRow, Outcome)]) -> Result<()> {
        self.finish_tried(outcomes, &[]).await
    }

    /// `finish`, with what each row's attempt ran (`tried[i]` is
    /// `outcomes[i]`'s; missing ones are unknown), kept in the same
    /// transaction.
    pub async fn finish_tried(
        &self,
        outcomes: &[(&InboxRow, Outcome)],
        tried: &[Tried],
    ) -> Result<()> {
        if let Some(writer) = &self.writer {
            return writer.finish(outcomes, tried, now_ms()).await;
        }
        let mut tx = self.write_tx().await?;
        self.finish_in(&mut tx, outcomes, tried).await?;
        tx.commit().await
    }

    /// `finish_tried` inside a transaction of the caller's (the event-log
    /// sink's, so that appending and recording commit together).
    pub(crate) async fn finish_in(
        &self,
        tx: &mut WriteTx,
        outcomes: &[(&InboxRow, Outcome)],
        tried: &[Tried],
    ) -> Result<()> {
        let now = now_ms();
        let attempts: Vec<AttemptRow> = outcomes
            .iter()
            .enumerate()
            .map(|(i, (row, outcome))| AttemptRow::finished(row, outcome, tried.get(i)))
            .collect();
        self.insert_attempts(tx, &attempts, now).await?;
        // Published rows, the common case, take two statements per chunk
        // whatever their number; dead letters (rare) one row at a time.
        let published: Vec<(i64, String)> = outcomes
            .iter()
            .filter_map(|(row, outcome)| match outcome {
                Outcome::Published(d) => Some((
                    row.id,
                    serde_json::to_string(d).expect("deliveries serialise"),
                )),
                Outcome::Dead { .. } => None,
            })
            .collect();
        for chunk in published.chunks(ROWS_PER_STATEMENT) {
            let sql = resolve_dead_letters_sql(self.backend, chunk.len());
            let mut q = sqlx::query(&sql).bind(now);
            for (id, _) in chunk {
                q = q.bind(id);
            }
            q.execute(&mut **tx).await?;
            let sql = finish_published_sql(self.backend, chunk.len());
            let mut q = sqlx::query(&sql).bind(now);
            for (id, deliveries) in chunk {
                q = q.bind(id).bind(deliveries);
            }
            q.execute(&mut **tx).await?;
        }
        for (row, outcome) in outcomes {
            let Outcome::Dead { deliveries, letter } = outcome else {
                continue;
            };
            sqlx::query(DEAD_LETTER_SQL)
                .bind(row.id)
                .bind(&row.connection_id)
                .bind(&row.workspace_id)
                .bind(&row.brand_id)
                .bind(&row.topic)
                .bind(&row.webhook_id)
                .bind(&letter.reason_code)
                .bind(&letter.reason)
                .bind(&letter.transform)
                .bind(&letter.transform_digest)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            sqlx::query(FINISH_DEAD_SQL)
                .bind(now)
                .bind(serde_json::to_string(deliveries).expect("deliveries serialise"))
                .bind(row.id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Puts finished rows back in the queue, to be processed again with the
    /// same event ids (a replay). Returns how many rows were requeued.
    pub async fn requeue(&self, ids: &[i64]) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let mut n = 0;
        for id in ids {
            n += sqlx::query(
                "UPDATE inbox SET status = 'pending', next_attempt_at = 0, claimed_until = NULL,
                    finished_at = NULL
                 WHERE id = $1 AND status != 'pending'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    /// How many rows wait to be published, and when the oldest of them was
    /// received (None: none waits): the backlog behind `/ready` and metrics.
    pub async fn backlog(&self) -> Result<(i64, Option<i64>)> {
        // The oldest by id rather than MIN(received_at): the pending index
        // answers it without reading the whole backlog.
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM inbox WHERE status = 'pending'),
                    (SELECT received_at FROM inbox WHERE status = 'pending' ORDER BY id LIMIT 1)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// When the oldest pending webhook was received; None with no backlog.
    /// One row by the pending index, whatever the backlog's size.
    pub async fn oldest_pending_received_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT received_at FROM inbox WHERE status = 'pending' ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Where a webhook stands, by its webhook id on any connection: inbox
    /// id, status, attempts, last error and deliveries (JSON). For operators
    /// and the reliability harness's account of a missing webhook.
    pub async fn webhook_state(
        &self,
        webhook_id: &str,
    ) -> Result<Option<(i64, String, i64, Option<String>, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT id, status, attempts, last_error, deliveries FROM inbox WHERE webhook_id = $1",
        )
        .bind(webhook_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Rows still waiting to be published.
    pub async fn pending_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// One stored webhook by id, whatever its status.
    pub async fn inbox_row(&self, id: i64) -> Result<Option<InboxRow>> {
        let sql = format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        inbox_row_from(&r).map(Some)
    }
}

/// The claim leases the brands of the oldest due rows (a window wide enough
/// that a few busy brands leased elsewhere do not starve the rest): binds
/// owner, lease end, now, window.
pub(super) const CLAIM_BRANDS_SQL: &str = "INSERT INTO brand_leases (brand_id, owner, lease_until)
     SELECT DISTINCT w.brand_id, $1, $2 FROM (
        SELECT i.brand_id FROM inbox i
        WHERE i.status = 'pending' AND i.next_attempt_at <= $3
          AND NOT EXISTS (SELECT 1 FROM brand_leases l
             WHERE l.brand_id = i.brand_id AND l.owner != $1 AND l.lease_until >= $3)
          AND NOT EXISTS (SELECT 1 FROM connections c
             WHERE c.id = i.connection_id AND c.paused_at IS NOT NULL)
        ORDER BY i.id LIMIT $4) w
     WHERE true
     ON CONFLICT (brand_id) DO UPDATE SET owner = excluded.owner,
        lease_until = excluded.lease_until
     WHERE brand_leases.owner = excluded.owner OR brand_leases.lease_until < $3";

/// The pending rows of the brands leased to the owner: binds owner, now,
/// limit. Rows of a paused connection are held: skipped (not a block on
/// their brand, whose other connections go on), and since every row of that
/// connection is skipped alike, its own rows keep their order. Gives (id, brand, next attempt) for [`claimable`].
pub(super) const CLAIM_CANDIDATES_SQL: &str =
    "SELECT i.id, i.brand_id, i.next_attempt_at FROM inbox i
     JOIN brand_leases l ON l.brand_id = i.brand_id
     WHERE l.owner = $1 AND l.lease_until >= $2 AND i.status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM connections c
          WHERE c.id = i.connection_id AND c.paused_at IS NOT NULL)
     ORDER BY i.id LIMIT $3";

/// Marks `n` rows claimed: binds the lease end, then the ids.
pub(super) fn claim_rows_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    format!(
        "UPDATE inbox SET claimed_until = {}, attempts = attempts + 1 WHERE id IN ({})",
        p.p(),
        p.list(n)
    )
}

/// The candidates a claim takes, in id order: per brand, only the rows
/// before its first one still backing off, since a later row must not
/// overtake an earlier one that is waiting.
pub(super) fn claimable(
    candidates: impl IntoIterator<Item = (i64, String, i64)>,
    now: i64,
) -> Vec<i64> {
    let mut blocked = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for (id, brand, next_attempt_at) in candidates {
        if blocked.contains(&brand) {
            continue;
        }
        if next_attempt_at > now {
            blocked.insert(brand);
            continue;
        }
        ids.push(id);
    }
    ids
}

/// Notes when a connection last received a webhook, in intake's group
/// commit: binds the time, the connection, the time less [`LAST_WEBHOOK_GRAIN_MS`].
/// To the second, not the millisecond: a row written at most once a second
/// per connection, so a busy shop's concurrent groups (PostgreSQL's
/// writers commit in parallel) seldom wait on its row lock, and SQLite's WAL
/// takes one more page a second, not one per commit.
pub(super) const NOTE_LAST_WEBHOOK_SQL: &str = "UPDATE connections SET last_webhook_at = $1
     WHERE id = $2 AND (last_webhook_at IS NULL OR last_webhook_at < $3)";

/// How stale `connections.last_webhook_at` may be (see [`NOTE_LAST_WEBHOOK_SQL`]).
pub(super) const LAST_WEBHOOK_GRAIN_MS: i64 = 1000;

/// Each connection of a group with its newest receive time, in connection
/// id order: two groups committing side by side on PostgreSQL then lock
/// connection rows in one order, and neither waits for the other in a cycle.
pub(super) fn last_webhooks<'a>(
    rows: impl IntoIterator<Item = (&'a str, i64)>,
) -> std::collections::BTreeMap<&'a str, i64> {
    let mut last = std::collections::BTreeMap::new();
    for (connection, at) in rows {
        let e = last.entry(connection).or_insert(at);
        *e = (*e).max(at);
    }
    last
}

/// The id of a webhook stored before, by the inbox's unique key.
pub(super) const STORED_WEBHOOK_ID_SQL: &str =
    "SELECT id FROM inbox WHERE connection_id = $1 AND webhook_id = $2";

/// Gives back every brand lease of an owner: binds the owner.
pub(super) const RELEASE_LEASES_SQL: &str = "DELETE FROM brand_leases WHERE owner = $1";

/// Marks `n` rows published: binds now, then (id, deliveries as JSON) per row.
pub(super) fn finish_published_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    format!(
        "UPDATE inbox SET status = 'published', finished_at = {},
            deliveries = v.column2, claimed_until = NULL
         FROM (VALUES {}) AS v WHERE inbox.id = v.column1",
        p.p(),
        p.values(n, 2)
    )
}

/// Marks a row dead: binds now, deliveries as JSON, id.
pub(super) const FINISH_DEAD_SQL: &str = "UPDATE inbox SET status = 'dead', finished_at = $1,
        deliveries = $2, claimed_until = NULL
     WHERE id = $3";

/// Matches a batch's keys (connection id, webhook id), in order, to the rows
/// its INSERT returned (`inserted`, by key): the first occurrence of a key
/// is `New` if it was inserted; a later one in the same batch is a
/// `Duplicate` of it; `None` is a key stored before the batch, whose id the
/// caller looks up.
pub(super) fn match_inserted<'a>(
    keys: impl Iterator<Item = (&'a str, &'a str)>,
    inserted: &std::collections::HashMap<(String, String), i64>,
) -> Vec<Option<Inserted>> {
    let mut seen = std::collections::HashSet::new();
    keys.map(|key| {
        let first = seen.insert(key);
        let id = inserted.get(&(key.0.to_owned(), key.1.to_owned())).copied();
        match id {
            Some(id) if first => Some(Inserted::New(id)),
            Some(id) => Some(Inserted::Duplicate(id)),
            None => None,
        }
    })
    .collect()
}

/// The INSERT for `n` webhooks (`n` a power of two up to
/// `ROWS_PER_STATEMENT`), built once per size and backend.
/// `with_id`: the statement also names each row's inbox id (drawn from the
/// sequence beforehand, so that ids follow arrival order whatever order the
/// rows are written in).
pub(super) fn insert_webhooks_sql(backend: Backend, n: usize, with_id: bool) -> &'static str {
    static SQL: [[std::sync::OnceLock<Vec<String>>; 2]; 2] = [
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()],
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()],
    ];
    let all = SQL[backend as usize][with_id as usize].get_or_init(|| {
        let (id, columns) = if with_id { ("id, ", 16) } else { ("", 15) };
        (0..=ROWS_PER_STATEMENT.ilog2())
            .map(|k| {
                format!(
                    "INSERT INTO inbox ({id}connection_id, provider, workspace_id, brand_id, \
                     webhook_id, topic, account, api_version, occurred_at, \
                     event_id, trace_id, headers, body, body_encoding, received_at) \
                     VALUES {} \
                     ON CONFLICT (connection_id, webhook_id) DO NOTHING \
                     RETURNING id, connection_id, webhook_id",
                    Params::new(backend).values(1 << k, columns)
                )
            })
            .collect()
    });
    &all[n.ilog2() as usize]
}

/// Every column `InboxRow` has, for `inbox_row_from`.
const INBOX_COLUMNS: &str = "id, connection_id, provider, workspace_id, brand_id, webhook_id,
    topic, account, api_version, occurred_at, event_id, trace_id, headers, body,
    body_encoding, received_at, attempts";

/// An inbox row as the dispatcher sees it, from a query that selected
/// `INBOX_COLUMNS`.
fn inbox_row_from(r: &AnyRow) -> Result<InboxRow> {
    let headers: String = r.try_get("headers")?;
    let headers = serde_json::from_str(&headers)
        .map_err(|e| StoreError::Corrupt(format!("inbox headers: {e}")))?;
    Ok(InboxRow {
        id: r.try_get("id")?,
        connection_id: r.try_get("connection_id")?,
        provider: r.try_get("provider")?,
        workspace_id: r.try_get("workspace_id")?,
        brand_id: r.try_get("brand_id")?,
        webhook_id: r.try_get("webhook_id")?,
        topic: r.try_get("topic")?,
        account: r.try_get("account")?,
        api_version: r.try_get("api_version")?,
        occurred_at: r.try_get("occurred_at")?,
        event_id: r.try_get("event_id")?,
        trace_id: r.try_get("trace_id")?,
        headers,
        body: Blob::decode(
            &r.try_get::<String, _>("body_encoding")?,
            r.try_get("body")?,
        )?,
        received_at: r.try_get("received_at")?,
        attempts: r.try_get("attempts")?,
    })
}
