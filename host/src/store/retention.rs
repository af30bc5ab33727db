//! What is kept, and for how long: the pruner's batched deletes (finished
//! inbox rows and their attempts, the event log, dead letters), the
//! tombstoning of old bodies, and the redactions that purge one customer's
//! or one shop's stored data.
//!
//! Every step here is one short write transaction over at most `batch` rows,
//! so that on SQLite (one writer) intake's group commits never wait behind a
//! long delete: the caller loops, and between steps the write turn goes back
//! to whoever queued for it. Each step is idempotent, so replicas may prune
//! the same database side by side.
//!
//! A tombstone is body `{}` and headers `[]` (`body_purged_at` set): the row
//! keeps its ids, topic, times and deliveries, which dedup, event ids and the
//! webhook lookup rest on.

use sqlx::Row;

use super::oauth::LIFECYCLE_TOPICS_SQL;
use super::{Delivery, Params, Result, Store, now_ms};

/// The body a purged webhook keeps.
pub const TOMBSTONE_BODY: &[u8] = b"{}";
/// The payload a purged event-log record keeps.
pub const TOMBSTONE_PAYLOAD: &str = "{}";

/// Where each kind of row stops being kept, as epoch-ms instants: rows
/// finished (made, resolved) before it go. `None`: kept for ever. The
/// caller has already applied the dedup floor to `inbox`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Published inbox rows (with their attempts).
    pub inbox: Option<i64>,
    /// Bodies and headers of published inbox rows.
    pub inbox_bodies: Option<i64>,
    /// Event-log records, by when they were appended.
    pub events: Option<i64>,
    /// Unresolved dead letters (and their inbox rows), by when they were made.
    pub dead_letters: Option<i64>,
    /// Dead letters a replay resolved, by when it did.
    pub resolved_dead_letters: Option<i64>,
}

/// Rows pruned (or that a dry run would prune), per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Inbox rows deleted (published ones, and dead ones with their letters).
    pub inbox: u64,
    /// Inbox bodies replaced by the tombstone.
    pub inbox_bodies: u64,
    pub inbox_attempts: u64,
    pub events: u64,
    pub dead_letters: u64,
}

impl Pruned {
    pub fn add(&mut self, other: &Pruned) {
        self.inbox += other.inbox;
        self.inbox_bodies += other.inbox_bodies;
        self.inbox_attempts += other.inbox_attempts;
        self.events += other.events;
        self.dead_letters += other.dead_letters;
    }

    pub fn total(&self) -> u64 {
        self.inbox + self.inbox_bodies + self.inbox_attempts + self.events + self.dead_letters
    }

    /// (table label, rows) for the metric, in a fixed order.
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("inbox", self.inbox),
            ("inbox_bodies", self.inbox_bodies),
            ("inbox_attempts", self.inbox_attempts),
            ("events", self.events),
            ("dead_letters", self.dead_letters),
        ]
    }
}

/// One step of the pruner: which table it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    InboxBodies,
    Inbox,
    Events,
    DeadLetters,
}

impl Step {
    pub const ALL: [Step; 4] = [
        Step::DeadLetters,
        Step::Inbox,
        Step::InboxBodies,
        Step::Events,
    ];
}

/// What a redaction purged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Inbox rows whose body and headers became the tombstone.
    pub inbox: u64,
    /// Event-log records whose payload became the tombstone.
    pub events: u64,
    /// Dead letters whose reason text was cleared.
    pub dead_letters: u64,
}

/// `off` (None) as an instant no row is older than.
fn or_never(cutoff: Option<i64>) -> i64 {
    cutoff.unwrap_or(i64::MIN)
}

const DEAD_LETTERS_DUE: &str = "FROM dead_letters d JOIN inbox i ON i.id = d.inbox_id
     WHERE i.status != 'pending'
       AND ((d.resolved_at IS NULL AND d.created_at < $1)
         OR (d.resolved_at IS NOT NULL AND d.resolved_at < $2))";

/// Published rows due at `$1`. A lifecycle webhook whose effect is still
/// due (a crash came between its publish and the effect) keeps its row and
/// body until it is applied: `customers/redact` reads its body to know whom
/// to purge.
fn inbox_due() -> String {
    format!(
        "FROM inbox WHERE status = 'published' AND finished_at < $1
           AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.inbox_id = inbox.id)
           AND {}",
        effect_applied()
    )
}

/// Published bodies due at `$1` (see `inbox_due`).
fn bodies_due() -> String {
    format!(
        "FROM inbox WHERE status = 'published' AND body_purged_at IS NULL AND finished_at < $1
           AND {}",
        effect_applied()
    )
}

fn effect_applied() -> String {
    format!("NOT (lifecycle_applied_at IS NULL AND topic IN {LIFECYCLE_TOPICS_SQL})")
}

impl Store {
    /// One batch of `step`: at most `batch` rows, one write transaction.
    /// Answers what it pruned; all zero means the step has nothing due.
    pub async fn prune_step(&self, step: Step, cutoffs: &Cutoffs, batch: i64) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        match step {
            Step::InboxBodies => {
                let Some(cutoff) = cutoffs.inbox_bodies else {
                    return Ok(pruned);
                };
                let mut tx = self.write_tx().await?;
                pruned.inbox_bodies = sqlx::query(&format!(
                    "UPDATE inbox SET body = $1, body_encoding = 'identity', headers = '[]',
                        body_purged_at = $2
                     WHERE id IN (SELECT id {} ORDER BY finished_at LIMIT $4)",
                    bodies_due().replace("$1", "$3")
                ))
                .bind(TOMBSTONE_BODY)
                .bind(now_ms())
                .bind(cutoff)
                .bind(batch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
            }
            Step::Inbox => {
                let Some(cutoff) = cutoffs.inbox else {
                    return Ok(pruned);
                };
                let mut tx = self.write_tx().await?;
                let inbox_due = inbox_due();
                let ids: Vec<i64> = sqlx::query_scalar(&format!(
                    "DELETE FROM inbox WHERE id IN (SELECT id {inbox_due} ORDER BY finished_at
                        LIMIT $2) RETURNING id"
                ))
                .bind(cutoff)
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                pruned.inbox = ids.len() as u64;
                pruned.inbox_attempts = self.delete_attempts(&mut tx, &ids).await?;
                tx.commit().await?;
            }
            Step::Events => {
                let Some(cutoff) = cutoffs.events else {
                    return Ok(pruned);
                };
                // The log's head only: `seq` grows with `created_at`, and a
                // filter over the whole table would read all of it whenever
                // nothing is due.
                let mut tx = self.write_tx().await?;
                pruned.events = sqlx::query(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq
                        LIMIT $1) AND created_at < $2",
                )
                .bind(batch)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
            }
            Step::DeadLetters => {
                if cutoffs.dead_letters.is_none() && cutoffs.resolved_dead_letters.is_none() {
                    return Ok(pruned);
                }
                let mut tx = self.write_tx().await?;
                let due: Vec<(i64, i64)> = sqlx::query_as(&format!(
                    "SELECT d.id, d.inbox_id {DEAD_LETTERS_DUE} ORDER BY d.id LIMIT $3"
                ))
                .bind(or_never(cutoffs.dead_letters))
                .bind(or_never(cutoffs.resolved_dead_letters))
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                if due.is_empty() {
                    return Ok(pruned);
                }
                let letters: Vec<i64> = due.iter().map(|d| d.0).collect();
                let rows: Vec<i64> = due.iter().map(|d| d.1).collect();
                pruned.dead_letters = self
                    .execute_ids(
                        &mut tx,
                        "DELETE FROM dead_letters WHERE id IN ({ids})",
                        &letters,
                    )
                    .await?;
                // A dead row has no other use than its letter; a replayed
                // and published one is left to the inbox's own window.
                let deleted: Vec<i64> = self
                    .fetch_ids(
                        &mut tx,
                        "DELETE FROM inbox WHERE status = 'dead' AND id IN ({ids}) RETURNING id",
                        &rows,
                    )
                    .await?;
                pruned.inbox = deleted.len() as u64;
                pruned.inbox_attempts = self.delete_attempts(&mut tx, &deleted).await?;
                tx.commit().await?;
            }
        }
        Ok(pruned)
    }

    async fn delete_attempts(&self, tx: &mut super::WriteTx, ids: &[i64]) -> Result<u64> {
        let mut deleted = 0;
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            deleted += self
                .execute_ids(
                    tx,
                    "DELETE FROM inbox_attempts WHERE inbox_id IN ({ids})",
                    chunk,
                )
                .await?;
        }
        Ok(deleted)
    }

    /// Runs `template`, whose only parameters are the `{ids}` list, over
    /// `ids` (a batch: far below either database's parameter limit).
    async fn execute_ids(
        &self,
        tx: &mut super::WriteTx,
        template: &str,
        ids: &[i64],
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let sql = template.replace("{ids}", &Params::new(self.backend).list(ids.len()));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.execute(&mut **tx).await?.rows_affected())
    }

    /// `execute_ids` for a statement that answers one column per row.
    async fn fetch_ids<T>(
        &self,
        tx: &mut super::WriteTx,
        template: &str,
        ids: &[i64],
    ) -> Result<Vec<T>>
    where
        T: Send + Unpin,
        (T,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = template.replace("{ids}", &Params::new(self.backend).list(ids.len()));
        let mut q = sqlx::query_scalar::<_, T>(&sql);
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(&mut **tx).await?)
    }

    /// What pruning at `cutoffs` would remove now, per table, removing
    /// nothing (`prune --dry-run`).
    pub async fn prune_counts(&self, cutoffs: &Cutoffs) -> Result<Pruned> {
        let count = |sql: String, binds: Vec<i64>| async move {
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_one(&self.pool).await.map(|n| n.max(0) as u64)
        };
        let (inbox, bodies, events) = (
            or_never(cutoffs.inbox),
            or_never(cutoffs.inbox_bodies),
            or_never(cutoffs.events),
        );
        let (letters, resolved) = (
            or_never(cutoffs.dead_letters),
            or_never(cutoffs.resolved_dead_letters),
        );
        let (inbox_due, bodies_due) = (inbox_due(), bodies_due());
        let dead_rows = "SELECT i.id FROM dead_letters d JOIN inbox i ON i.id = d.inbox_id
             WHERE i.status = 'dead'
               AND ((d.resolved_at IS NULL AND d.created_at < $1)
                 OR (d.resolved_at IS NOT NULL AND d.resolved_at < $2))";
        Ok(Pruned {
            dead_letters: count(
                format!("SELECT COUNT(*) {DEAD_LETTERS_DUE}"),
                vec![letters, resolved],
            )
            .await?,
            inbox: count(format!("SELECT COUNT(*) {inbox_due}"), vec![inbox]).await?
                + count(
                    format!("SELECT COUNT(*) FROM ({dead_rows}) AS t"),
                    vec![letters, resolved],
                )
                .await?,
            inbox_attempts: count(
                format!(
                    "SELECT COUNT(*) FROM inbox_attempts WHERE inbox_id IN (SELECT id {inbox_due})
                        OR inbox_id IN ({})",
                    dead_rows.replace("$2", "$3").replace("$1", "$2")
                ),
                vec![inbox, letters, resolved],
            )
            .await?,
            inbox_bodies: count(format!("SELECT COUNT(*) {bodies_due}"), vec![bodies]).await?,
            events: count(
                "SELECT COUNT(*) FROM events WHERE created_at < $1".into(),
                vec![events],
            )
            .await?,
        })
    }

    /// Rows per table now (for operators and the steady-size test).
    pub async fn table_sizes(&self) -> Result<Vec<(&'static str, i64)>> {
        let mut out = Vec::new();
        for table in ["inbox", "inbox_attempts", "events", "dead_letters"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await?;
            out.push((table, n));
        }
        Ok(out)
    }

    /// The SQLite database's size in pages (None on PostgreSQL): what the
    /// file would take, freed pages included.
    pub async fn sqlite_pages(&self) -> Result<Option<i64>> {
        if self.backend != super::Backend::Sqlite {
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&self.pool)
                .await?,
        ))
    }

    /// Finished webhooks of `connections` (ids above `after`, oldest first,
    /// at most `limit`) with their topic and body, for a redaction to read:
    /// the bodies are compressed, so no SQL can look into them. Rows already
    /// purged are skipped.
    pub async fn finished_bodies(
        &self,
        connections: &[String],
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>> {
        if connections.is_empty() {
            return Ok(Vec::new());
        }
        // Placeholders and binds in the statement's order: SQLite's `?`
        // are positional.
        let mut p = Params::new(self.backend);
        let a = p.p();
        let list = p.list(connections.len());
        let l = p.p();
        let sql = format!(
            "SELECT id, topic, body, body_encoding FROM inbox
             WHERE id > {a} AND status != 'pending' AND body_purged_at IS NULL
               AND connection_id IN ({list})
             ORDER BY id LIMIT {l}"
        );
        let mut q = sqlx::query(&sql).bind(after);
        for c in connections {
            q = q.bind(c);
        }
        let q = q.bind(limit);
        let mut out = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            let encoding: String = r.try_get(3)?;
            let body = super::Blob::decode(&encoding, r.try_get(2)?)?;
            out.push((r.try_get(0)?, r.try_get(1)?, body));
        }
        Ok(out)
    }

    /// The connections of an account (a shop) of `provider`, for a
    /// redaction's reach.
    pub async fn connections_of_account(
        &self,
        provider: &str,
        account: &str,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM connections WHERE provider = $1 AND account = $2 ORDER BY id",
        )
        .bind(provider)
        .bind(account)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces the bodies of inbox rows `ids` (finished ones) by the
    /// tombstone, the payloads of the event-log records they produced (also
    /// of rows already tombstoned), and the reason text of their dead
    /// letters, in one transaction per chunk. Idempotent.
    pub async fn purge_webhooks(&self, ids: &[i64]) -> Result<Purged> {
        let mut purged = Purged::default();
        if ids.is_empty() {
            return Ok(purged);
        }
        for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
            let now = now_ms();
            let mut tx = self.write_tx().await?;
            let mut p = Params::new(self.backend);
            let (body, at) = (p.p(), p.p());
            let sql = format!(
                "UPDATE inbox SET body = {body}, body_encoding = 'identity', headers = '[]',
                    body_purged_at = {at}
                 WHERE status != 'pending' AND body_purged_at IS NULL AND id IN ({})",
                p.list(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(TOMBSTONE_BODY).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            purged.inbox += q.execute(&mut *tx).await?.rows_affected();
            let deliveries: Vec<String> = self
                .fetch_ids(
                    &mut tx,
                    "SELECT deliveries FROM inbox WHERE deliveries IS NOT NULL AND id IN ({ids})",
                    chunk,
                )
                .await?;
            purged.events += purge_logged(&mut tx, &deliveries).await?;
            purged.dead_letters += self
                .execute_ids(
                    &mut tx,
                    "UPDATE dead_letters SET reason = '[redacted]'
                     WHERE reason != '[redacted]' AND inbox_id IN ({ids})",
                    chunk,
                )
                .await?;
            tx.commit().await?;
        }
        Ok(purged)
    }

    /// Every finished webhook of `connections` but `except` (the redaction
    /// webhook itself, whose event tells consumers to redact too), purged as
    /// by `purge_webhooks` (`shop/redact`'s reach into the event log), in
    /// batches of `batch`.
    pub async fn purge_connections(
        &self,
        connections: &[String],
        except: i64,
        batch: i64,
    ) -> Result<Purged> {
        let mut total = Purged::default();
        if connections.is_empty() {
            return Ok(total);
        }
        let mut after = 0;
        loop {
            let mut p = Params::new(self.backend);
            let a = p.p();
            let list = p.list(connections.len());
            let l = p.p();
            let sql = format!(
                "SELECT id FROM inbox WHERE id > {a} AND status != 'pending'
                   AND connection_id IN ({list}) ORDER BY id LIMIT {l}"
            );
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(after);
            for c in connections {
                q = q.bind(c);
            }
            let q = q.bind(batch);
            let ids = q.fetch_all(&self.pool).await?;
            let Some(&last) = ids.last() else {
                return Ok(total);
            };
            after = last;
            let ids: Vec<i64> = ids.into_iter().filter(|&id| id != except).collect();
            let purged = self.purge_webhooks(&ids).await?;
            total.inbox += purged.inbox;
            total.events += purged.events;
            total.dead_letters += purged.dead_letters;
        }
    }
}

/// Tombstones the event-log records at `deliveries` (each an inbox row's
/// JSON list): the log's place of a record is its sequence number, on
/// partition 0 of its topic. Records sent to Kafka are not ours to purge;
/// one whose topic and offset happen to match a log record's too is
/// purged (over-redacting, never under).
async fn purge_logged(tx: &mut super::WriteTx, deliveries: &[String]) -> Result<u64> {
    let mut purged = 0;
    for list in deliveries {
        let Ok(list) = serde_json::from_str::<Vec<Delivery>>(list) else {
            continue;
        };
        for d in list.iter().filter(|d| d.partition == 0) {
            purged += sqlx::query(
                "UPDATE events SET payload = $1, payload_zstd = NULL
                 WHERE seq = $2 AND topic = $3 AND (payload != $4 OR payload_zstd IS NOT NULL)",
            )
            .bind(TOMBSTONE_PAYLOAD)
            .bind(d.offset)
            .bind(&d.topic)
            .bind(TOMBSTONE_PAYLOAD)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
    }
    Ok(purged)
}

// ---- redactions ----------------------------------------------------------------

impl Store {
    /// The connections a redaction of `row` reaches: those `apply_shop_redact`
    /// would change (the one it arrived at, and with `App` scope every
    /// connection of the shop its secret verified for).
    pub async fn redaction_targets(
        &self,
        row: &super::oauth::LifecycleRow,
        scope: super::oauth::LifecycleScope,
    ) -> Result<Vec<String>> {
        // A read, in a transaction only because that is what the shared
        // query runs in; dropped without a commit.
        let mut tx = self.write_tx().await?;
        Self::lifecycle_targets(&mut tx, row, scope, false).await
    }

    /// `customers/redact`'s last step, once its purge is done: an
    /// `integration.customer_redacted` event per connection (telling
    /// consumers to purge the customer too; `detail` names the customer and
    /// the orders) and the webhook marked applied, in one transaction. A
    /// second call (another replica, a retry) finds it applied and adds
    /// nothing.
    pub async fn finish_customer_redact(
        &self,
        row: &super::oauth::LifecycleRow,
        connections: &[String],
        detail: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.serial_tx().await?;
        let applied: Option<Option<i64>> =
            sqlx::query_scalar("SELECT lifecycle_applied_at FROM inbox WHERE id = $1")
                .bind(row.id)
                .fetch_optional(&mut *tx)
                .await?;
        if !matches!(applied, Some(None)) {
            return Ok(false);
        }
        let actor = format!("{}:{}", row.provider, row.topic);
        let reason = format!("the platform's {} webhook", row.topic);
        for id in connections {
            super::connections::add_integration_event_detail(
                &mut tx,
                id,
                "customer_redacted",
                Some(&reason),
                Some(&actor),
                Some(detail),
                now,
            )
            .await?;
        }
        sqlx::query("UPDATE inbox SET lifecycle_applied_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !connections.is_empty() {
            self.note_integration_event();
        }
        Ok(true)
    }
}
