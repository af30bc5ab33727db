//! SQLite's writer thread: one thread with its own connection that runs the
//! intake's group commits and the dispatcher's claims from BEGIN to COMMIT
//! without leaving the thread.
//!
//! Through sqlx, every statement of a transaction is a round trip to the
//! connection's worker thread and back to a tokio task; on two busy cores
//! each hop waits to be scheduled, and the database's single write lock is
//! held all the while. Profiled under load, a 16-row group held the lock
//! about 1.8 ms, four fifths of it in hops (BEGIN alone 0.3 ms), against
//! about 0.6 ms for the same work done in one thread (BENCHMARKS.md). Here a
//! transaction costs two hops (the job in, the answer out), neither inside
//! the lock.
//!
//! The statements are the store's own (`insert_webhooks_sql`, the claim's
//! `CLAIM_*` and `claim_rows_sql`), so both paths write the same rows, and
//! PostgreSQL (which commits in parallel and has no such lock) keeps the
//! sqlx path. The dispatcher's recording transaction (event-log append and
//! outcomes) still goes through sqlx. Jobs run in arrival order, except that
//! intake groups already queued run before a claim, as `WriteTurn::other`
//! lets intake go first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use super::{Backend, Inserted, NewWebhook, Result, StoreError, WriteTurn};

/// Where the intake's group commits go on a SQLite file database.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
enum Job {
    Insert {
        rows: Vec<Row>,
        done: tokio::sync::oneshot::Sender<Result<Vec<Inserted>>>,
    },
    Claim {
        claim: Claim,
        done: tokio::sync::oneshot::Sender<Result<Vec<i64>>>,
    },
}

/// `Store::claim`'s transaction, by value.
#[derive(Debug)]
struct Claim {
    owner: String,
    now: i64,
    until: i64,
    limit: i64,
}

/// One webhook's values for `insert_webhooks_sql`, owned so that they can
/// cross to the writer's thread.
#[derive(Debug)]
struct Row(Vec<Value>);

impl Writer {
    /// Opens the writer's connection to the database file at `path` (already
    /// migrated) and starts its thread. The thread ends when the last
    /// `Store` clone holding this writer is dropped.
    pub(super) fn open(path: &Path, pragmas: &str, turn: Arc<WriteTurn>) -> Result<Self> {
        let conn = Connection::open(path)?;
        // As the pool's connections.
        conn.execute_batch(pragmas)?;
        // One insert per power-of-two chunk size, the duplicate lookup, the
        // claim's two statements and its update per batch size (up to the
        // dispatcher's batch, 64 by default).
        conn.set_prepared_statement_cache_capacity(128);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    let Job::Claim { claim, done } = job else {
                        run(&mut conn, &turn, job);
                        continue;
                    };
                    // Intake goes first, as `WriteTurn::other` lets it: the
                    // groups already queued are written before the claim.
                    let mut later = Vec::new();
                    while let Ok(next) = queue.try_recv() {
                        match next {
                            Job::Insert { .. } => run(&mut conn, &turn, next),
                            Job::Claim { .. } => later.push(next),
                        }
                    }
                    run(&mut conn, &turn, Job::Claim { claim, done });
                    for job in later {
                        run(&mut conn, &turn, job);
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self { jobs })
    }

    /// `Store::insert_webhooks`, on the writer's thread.
    pub(super) async fn insert(&self, batch: &[NewWebhook<'_>]) -> Result<Vec<Inserted>> {
        let rows = batch.iter().map(Row::of).collect();
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Insert { rows, done })?;
        answer.await.map_err(|_| stopped())?
    }

    /// `Store::claim`'s transaction on the writer's thread: the ids claimed.
    pub(super) async fn claim(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let claim = Claim {
            owner: owner.to_owned(),
            now,
            until,
            limit,
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Claim { claim, done })?;
        answer.await.map_err(|_| stopped())?
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Batch("the SQLite writer thread stopped".into())
}

/// Runs one job and answers it. The caller may have gone away; nothing
/// then waits for the answer.
fn run(conn: &mut Connection, turn: &Arc<WriteTurn>, job: Job) {
    match job {
        Job::Insert { rows, done } => {
            let _ = done.send(write(conn, turn, &rows));
        }
        Job::Claim { claim, done } => {
            let _ = done.send(claim_ids(conn, turn, &claim));
        }
    }
}

/// The claim's transaction (the statements of `Store::claim_ids`).
fn claim_ids(conn: &mut Connection, turn: &WriteTurn, c: &Claim) -> Result<Vec<i64>> {
    let _turn = turn.other_blocking();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(super::CLAIM_BRANDS_SQL)?
        .execute(rusqlite::params![
            c.owner,
            c.until,
            c.now,
            c.limit.saturating_mul(4)
        ])?;
    let candidates = tx
        .prepare_cached(super::CLAIM_CANDIDATES_SQL)?
        .query_map(rusqlite::params![c.owner, c.now, c.limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, String, i64)>>>()?;
    let ids = super::claimable(candidates, c.now);
    for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
        let mut stmt = tx.prepare_cached(&super::claim_rows_sql(Backend::Sqlite, chunk.len()))?;
        let params = std::iter::once(Value::Integer(c.until))
            .chain(chunk.iter().map(|id| Value::Integer(*id)));
        stmt.execute(params_from_iter(params))?;
    }
    tx.commit()?;
    Ok(ids)
}

impl Row {
    fn of(w: &NewWebhook<'_>) -> Self {
        let text = |s: &str| Value::Text(s.to_owned());
        let opt = |s: Option<&str>| s.map_or(Value::Null, text);
        Row(vec![
            text(&w.connection.id),
            text(&w.connection.provider),
            text(&w.connection.workspace_id),
            text(&w.connection.brand_id),
            text(w.webhook_id),
            text(w.topic),
            text(&w.connection.shop_domain),
            opt(w.api_version),
            opt(w.triggered_at),
            opt(w.shopify_event_id),
            text(w.trace_id),
            Value::Text(serde_json::to_string(w.headers).expect("headers serialise")),
            Value::Blob(w.body.bytes.clone()),
            text(w.body.encoding.as_str()),
            Value::Integer(w.received_at),
        ])
    }

    /// (connection id, webhook id): the inbox's unique key.
    fn key(&self) -> (&str, &str) {
        fn text(v: &Value) -> &str {
            match v {
                Value::Text(s) => s,
                _ => "",
            }
        }
        (text(&self.0[0]), text(&self.0[4]))
    }
}

/// One group commit, on the writer's thread.
fn write(conn: &mut Connection, turn: &Arc<WriteTurn>, rows: &[Row]) -> Result<Vec<Inserted>> {
    let _turn = turn.intake_blocking();
    // Dropped without commit on any error: rolled back, nothing kept.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ids: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
    let mut rest = rows;
    while !rest.is_empty() {
        let n = 1usize << rest.len().min(super::ROWS_PER_STATEMENT).ilog2();
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut stmt = tx.prepare_cached(super::insert_webhooks_sql(Backend::Sqlite, n))?;
        let mut returned = stmt.query(params_from_iter(chunk.iter().flat_map(|r| &r.0)))?;
        while let Some(r) = returned.next()? {
            ids.insert((r.get(1)?, r.get(2)?), r.get(0)?);
        }
    }
    let matched = super::match_inserted(rows.iter().map(Row::key), &ids);
    let mut out = Vec::with_capacity(rows.len());
    {
        let mut lookup = tx.prepare_cached(super::STORED_WEBHOOK_ID_SQL)?;
        for (row, m) in rows.iter().zip(matched) {
            out.push(match m {
                Some(inserted) => inserted,
                None => {
                    let (connection, webhook) = row.key();
                    Inserted::Duplicate(lookup.query_row([connection, webhook], |r| r.get(0))?)
                }
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Whether the database behind `url` is a file this writer can open
/// beside the pool (an in-memory database is private to one connection).
pub(super) fn file_of(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let name = path.to_string_lossy();
    (!name.is_empty() && !name.contains(":memory:") && !name.starts_with("file:"))
        .then(|| path.to_path_buf())
}
