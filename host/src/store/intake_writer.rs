//! SQLite's intake writer: one thread with its own connection that writes
//! each group commit from BEGIN to COMMIT without leaving the thread.
//!
//! Through sqlx, every statement of a transaction is a round trip to the
//! connection's worker thread and back to a tokio task; on two busy cores
//! each hop waits to be scheduled, and the database's single write lock is
//! held all the while. Profiled under load, a 16-row group held the lock
//! about 1.8 ms, four fifths of it in hops (BEGIN alone 0.3 ms), against
//! about 0.6 ms for the same work done in one thread (BENCHMARKS.md, "The
//! intake writer"). Here a group costs two hops (the job in, the answer out),
//! neither inside the lock.
//!
//! Only the intake's INSERT runs here; everything else stays on sqlx. The
//! statements are the same (`insert_webhooks_sql`), so both paths store the
//! same rows, and PostgreSQL (which commits in parallel and has no such
//! lock) keeps the sqlx path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use super::{Backend, Inserted, NewWebhook, Result, StoreError, WriteTurn};

/// Where the intake's group commits go on a SQLite file database.
#[derive(Debug)]
pub(super) struct IntakeWriter {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
struct Job {
    rows: Vec<Row>,
    done: tokio::sync::oneshot::Sender<Result<Vec<Inserted>>>,
}

/// One webhook's values for `insert_webhooks_sql`, owned so that they can
/// cross to the writer's thread.
#[derive(Debug)]
struct Row(Vec<Value>);

impl IntakeWriter {
    /// Opens the writer's connection to the database file at `path` (already
    /// migrated) and starts its thread. The thread ends when the last
    /// `Store` clone holding this writer is dropped.
    pub(super) fn open(path: &Path, pragmas: &str, turn: Arc<WriteTurn>) -> Result<Self> {
        let conn = Connection::open(path)?;
        // As the pool's connections.
        conn.execute_batch(pragmas)?;
        // One statement per power-of-two chunk size, and the duplicate lookup.
        conn.set_prepared_statement_cache_capacity(32);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-intake".into())
            .spawn(move || {
                let mut conn = conn;
                for job in queue {
                    let result = write(&mut conn, &turn, &job.rows);
                    // The caller may have gone away; nothing then waits.
                    let _ = job.done.send(result);
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self { jobs })
    }

    /// `Store::insert_webhooks`, on the writer's thread.
    pub(super) async fn insert(&self, batch: &[NewWebhook<'_>]) -> Result<Vec<Inserted>> {
        let rows = batch.iter().map(Row::of).collect();
        let (done, answer) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Batch("the SQLite intake writer stopped".into());
        self.jobs.send(Job { rows, done }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
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
