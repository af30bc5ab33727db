//! SQLite's writer thread: one thread with its own connection that runs the
//! intake's group commits and the dispatcher's transactions from BEGIN to
//! COMMIT without leaving the thread.
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
//! The dispatcher's two transactions per batch run here too: the claim, and
//! the recording: the event-log append with the rows' outcomes and the
//! lease release (`Store::log_and_finish`), or with Kafka as the sink the
//! outcomes alone (`Store::finish`).
//!
//! The statements are the store's own (`insert_webhooks_sql`, the claim's
//! `CLAIM_*`, the event log's and the outcomes'), so both paths write the
//! same rows, and PostgreSQL (which commits in parallel and has no such
//! lock) keeps the sqlx path. Jobs run in arrival order, except that intake
//! groups already queued run before the dispatcher's, as `WriteTurn::other`
//! lets intake go first.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};

use super::events::LogRecords;
use super::inbox::{AttemptRow, Tried};
use super::{
    Backend, DeadLetter, Delivery, InboxRow, Inserted, Logged, NewWebhook, Outcome, Result,
    StoreError, WriteTurn,
};

/// Where the intake's group commits and the dispatcher's transactions go on
/// a SQLite file database.
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
    /// Answered with each event's sequence number.
    Record {
        recording: Recording,
        done: tokio::sync::oneshot::Sender<Result<Vec<i64>>>,
    },
}

/// The dispatcher's recording transaction, by value: `Store::log_and_finish`
/// (events, outcomes and lease release) or `Store::finish` (outcomes alone).
#[derive(Debug)]
struct Recording {
    /// Per event, `append_events_sql`'s values (the event id first, then
    /// the topic).
    events: Vec<Vec<Value>>,
    finish: Vec<Finish>,
    now: i64,
    /// Whose brand leases to give back with it.
    release: Option<String>,
}

/// One claimed row's outcome.
#[derive(Debug)]
struct Finish {
    id: i64,
    deliveries: Deliveries,
    /// `DEAD_LETTER_SQL`'s values, for a row dead-lettered.
    dead: Option<Vec<Value>>,
    /// `insert_attempts_sql`'s values but the time (the recording's).
    attempt: [Value; 8],
}

/// Where a row's records went.
#[derive(Debug)]
enum Deliveries {
    /// Its events in `Recording::events`, placed by this transaction.
    Logged(std::ops::Range<usize>),
    /// Delivered elsewhere (Kafka): as JSON.
    Known(String),
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
        // One insert, one event-log append and two outcome updates per
        // power-of-two chunk size, a few single-row statements, the claim's
        // two and its update per batch size (up to the dispatcher's batch,
        // 64 by default).
        conn.set_prepared_statement_cache_capacity(160);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    if let Job::Insert { .. } = job {
                        run(&mut conn, &turn, job);
                        continue;
                    }
                    // Intake goes first, as `WriteTurn::other` lets it: the
                    // groups already queued are written before the
                    // dispatcher's transaction.
                    let mut later = vec![job];
                    while let Ok(next) = queue.try_recv() {
                        match next {
                            Job::Insert { .. } => run(&mut conn, &turn, next),
                            _ => later.push(next),
                        }
                    }
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

    /// `Store::log_and_finish`'s transaction on the writer's thread: each
    /// event's sequence number.
    pub(super) async fn log_and_finish(
        &self,
        log: &LogRecords<'_>,
        rows: &[Logged<'_>],
        tried: &[Tried],
        now: i64,
        release: Option<&str>,
    ) -> Result<Vec<i64>> {
        let events = log
            .rows
            .iter()
            .map(|row| {
                let (text, zstd) = row.payload_columns();
                vec![
                    Value::Text(row.event_id.clone()),
                    Value::Text(row.record.topic.clone()),
                    Value::Text(row.record.key.clone()),
                    Value::Text(row.headers.clone()),
                    Value::Text(text.to_owned()),
                    zstd.map_or(Value::Null, |z| Value::Blob(z.to_vec())),
                    row.workspace_id
                        .map_or(Value::Null, |w| Value::Text(w.to_owned())),
                    Value::Integer(now),
                ]
            })
            .collect();
        let finish = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Finish::of(r, tried.get(i), now))
            .collect();
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Record {
            recording: Recording {
                events,
                finish,
                now,
                release: release.map(str::to_owned),
            },
            done,
        })?;
        answer.await.map_err(|_| stopped())?
    }

    /// `Store::finish`'s transaction on the writer's thread: the outcomes
    /// of rows whose records went elsewhere (Kafka).
    pub(super) async fn finish(
        &self,
        outcomes: &[(&InboxRow, Outcome)],
        tried: &[Tried],
        now: i64,
    ) -> Result<()> {
        let finish = outcomes
            .iter()
            .enumerate()
            .map(|(i, (row, outcome))| Finish::of_outcome(row, outcome, tried.get(i), now))
            .collect();
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Record {
            recording: Recording {
                events: Vec::new(),
                finish,
                now,
                release: None,
            },
            done,
        })?;
        answer.await.map_err(|_| stopped())?.map(drop)
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
        Job::Record { recording, done } => {
            let _ = done.send(record(conn, turn, &recording));
        }
    }
}

/// The claim's transaction (the statements of `Store::claim_ids`), committed
/// without its own fsync. A claim only leases and counts an attempt; if the
/// machine loses power before the next commit that syncs (intake's, the
/// recording's: the WAL is one sequence, so syncing a later commit makes
/// this one durable too), the rows are simply pending again, as after any
/// crash. The recording's commit keeps its fsync: an event-log sequence
/// number a reader has seen must never be given to another event.
fn claim_ids(conn: &mut Connection, turn: &WriteTurn, c: &Claim) -> Result<Vec<i64>> {
    let _turn = turn.other_blocking();
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    let claimed = claim_in(conn, c);
    // Every other transaction on this connection acknowledges webhooks or
    // records outcomes and events.
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    claimed
}

fn claim_in(conn: &mut Connection, c: &Claim) -> Result<Vec<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(super::inbox::CLAIM_BRANDS_SQL)?
        .execute(rusqlite::params![
            c.owner,
            c.until,
            c.now,
            c.limit.saturating_mul(4)
        ])?;
    let candidates = tx
        .prepare_cached(super::inbox::CLAIM_CANDIDATES_SQL)?
        .query_map(rusqlite::params![c.owner, c.now, c.limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, String, i64)>>>()?;
    let ids = super::inbox::claimable(candidates, c.now);
    for chunk in ids.chunks(super::ROWS_PER_STATEMENT) {
        let mut stmt =
            tx.prepare_cached(&super::inbox::claim_rows_sql(Backend::Sqlite, chunk.len()))?;
        let params = std::iter::once(Value::Integer(c.until))
            .chain(chunk.iter().map(|id| Value::Integer(*id)));
        stmt.execute(params_from_iter(params))?;
    }
    tx.commit()?;
    Ok(ids)
}

/// The event-log append, the rows' outcomes and the lease release (the
/// statements of `Store::append_events`, `Store::finish_in` and
/// `Store::release_leases`).
fn record(conn: &mut Connection, turn: &WriteTurn, rec: &Recording) -> Result<Vec<i64>> {
    let _turn = turn.other_blocking();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut seqs: HashMap<String, i64> = HashMap::with_capacity(rec.events.len());
    for (chunk, n) in pow2_chunks(&rec.events) {
        let mut stmt = tx.prepare_cached(&super::events::append_events_sql(Backend::Sqlite, n))?;
        let mut returned = stmt.query(params_from_iter(chunk.iter().flatten()))?;
        while let Some(r) = returned.next()? {
            seqs.insert(r.get(1)?, r.get(0)?);
        }
    }
    let mut out = Vec::with_capacity(rec.events.len());
    {
        let mut lookup = tx.prepare_cached(super::events::LOGGED_SEQ_SQL)?;
        for event in &rec.events {
            let id = text(&event[0]);
            out.push(match seqs.get(id) {
                Some(&seq) => seq,
                None => lookup.query_row([id], |r| r.get(0))?,
            });
        }
    }
    // What `Outcome`'s deliveries serialise to, from the event rows.
    let deliveries = |f: &Finish| match &f.deliveries {
        Deliveries::Known(json) => json.clone(),
        Deliveries::Logged(records) => {
            let d: Vec<Delivery> = records
                .clone()
                .map(|i| Delivery {
                    topic: text(&rec.events[i][1]).to_owned(),
                    partition: 0,
                    offset: out[i],
                })
                .collect();
            serde_json::to_string(&d).expect("deliveries serialise")
        }
    };
    let published: Vec<(i64, String)> = rec
        .finish
        .iter()
        .filter(|f| f.dead.is_none())
        .map(|f| (f.id, deliveries(f)))
        .collect();
    for (chunk, n) in pow2_chunks(&published) {
        let now = Value::Integer(rec.now);
        tx.prepare_cached(&super::dead_letters::resolve_dead_letters_sql(
            Backend::Sqlite,
            n,
        ))?
        .execute(params_from_iter(
            std::iter::once(now.clone()).chain(chunk.iter().map(|(id, _)| Value::Integer(*id))),
        ))?;
        tx.prepare_cached(&super::inbox::finish_published_sql(Backend::Sqlite, n))?
            .execute(params_from_iter(
                std::iter::once(now).chain(
                    chunk
                        .iter()
                        .flat_map(|(id, d)| [Value::Integer(*id), Value::Text(d.clone())]),
                ),
            ))?;
    }
    for f in &rec.finish {
        let Some(dead) = &f.dead else { continue };
        tx.prepare_cached(super::dead_letters::DEAD_LETTER_SQL)?
            .execute(params_from_iter(dead))?;
        tx.prepare_cached(super::inbox::FINISH_DEAD_SQL)?
            .execute(rusqlite::params![rec.now, deliveries(f), f.id])?;
    }
    let attempts: Vec<&[Value; 8]> = rec.finish.iter().map(|f| &f.attempt).collect();
    for (chunk, n) in pow2_chunks(&attempts) {
        let now = Value::Integer(rec.now);
        tx.prepare_cached(&super::inbox::insert_attempts_sql(Backend::Sqlite, n))?
            .execute(params_from_iter(chunk.iter().flat_map(|a| {
                // The columns' order: inbox id, attempt, then the time.
                a[..2].iter().chain([&now]).chain(&a[2..])
            })))?;
    }
    if let Some(owner) = &rec.release {
        tx.prepare_cached(super::inbox::RELEASE_LEASES_SQL)?
            .execute([owner])?;
    }
    tx.commit()?;
    Ok(out)
}

impl Finish {
    fn of(r: &Logged<'_>, tried: Option<&Tried>, now: i64) -> Self {
        Finish {
            id: r.row.id,
            deliveries: Deliveries::Logged(r.records.clone()),
            dead: r
                .letter
                .map(|letter| dead_letter_values(r.row, letter, now)),
            attempt: attempt_values(&AttemptRow::ended(r.row, r.letter, tried)),
        }
    }

    fn of_outcome(row: &InboxRow, outcome: &Outcome, tried: Option<&Tried>, now: i64) -> Self {
        let (deliveries, letter) = match outcome {
            Outcome::Published(d) => (d, None),
            Outcome::Dead { deliveries, letter } => (deliveries, Some(letter)),
        };
        Finish {
            id: row.id,
            deliveries: Deliveries::Known(
                serde_json::to_string(deliveries).expect("deliveries serialise"),
            ),
            dead: letter.map(|letter| dead_letter_values(row, letter, now)),
            attempt: attempt_values(&AttemptRow::finished(row, outcome, tried)),
        }
    }
}

/// `insert_attempts_sql`'s values but the time.
fn attempt_values(a: &AttemptRow<'_>) -> [Value; 8] {
    let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.to_owned()));
    [
        Value::Integer(a.inbox_id),
        Value::Integer(a.attempt),
        Value::Text(a.outcome.to_owned()),
        text(a.reason_code),
        text(a.error),
        a.route_id.map_or(Value::Null, Value::Integer),
        text(a.transform),
        text(a.transform_digest),
    ]
}

/// `DEAD_LETTER_SQL`'s values.
fn dead_letter_values(row: &InboxRow, letter: &DeadLetter, now: i64) -> Vec<Value> {
    let text = |s: &str| Value::Text(s.to_owned());
    let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, text);
    vec![
        Value::Integer(row.id),
        text(&row.connection_id),
        text(&row.workspace_id),
        text(&row.brand_id),
        text(&row.topic),
        text(&row.webhook_id),
        text(&letter.reason_code),
        text(&letter.reason),
        opt(&letter.transform),
        opt(&letter.transform_digest),
        Value::Integer(now),
    ]
}

/// A slice in chunks of powers of two up to `ROWS_PER_STATEMENT`, each
/// with its length: few statement texts, so the connection's statement
/// cache keeps them all.
fn pow2_chunks<T>(mut rest: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = 1usize << rest.len().min(super::ROWS_PER_STATEMENT).ilog2();
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some((chunk, n))
    })
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        _ => "",
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
            text(&w.connection.account),
            opt(w.api_version),
            opt(w.occurred_at),
            opt(w.event_id),
            text(w.trace_id),
            Value::Text(serde_json::to_string(w.headers).expect("headers serialise")),
            Value::Blob(w.body.bytes.clone()),
            text(w.body.encoding.as_str()),
            Value::Integer(w.received_at),
        ])
    }

    /// (connection id, webhook id): the inbox's unique key.
    fn key(&self) -> (&str, &str) {
        (text(&self.0[0]), text(&self.0[4]))
    }
}

/// One group commit, on the writer's thread.
fn write(conn: &mut Connection, turn: &Arc<WriteTurn>, rows: &[Row]) -> Result<Vec<Inserted>> {
    let _turn = turn.intake_blocking();
    // Dropped without commit on any error: rolled back, nothing kept.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ids: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
    for (chunk, n) in pow2_chunks(rows) {
        let mut stmt =
            tx.prepare_cached(super::inbox::insert_webhooks_sql(Backend::Sqlite, n, false))?;
        let mut returned = stmt.query(params_from_iter(chunk.iter().flat_map(|r| &r.0)))?;
        while let Some(r) = returned.next()? {
            ids.insert((r.get(1)?, r.get(2)?), r.get(0)?);
        }
    }
    let matched = super::inbox::match_inserted(rows.iter().map(Row::key), &ids);
    let mut out = Vec::with_capacity(rows.len());
    {
        let mut lookup = tx.prepare_cached(super::inbox::STORED_WEBHOOK_ID_SQL)?;
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
    {
        let mut note = tx.prepare_cached(super::inbox::NOTE_LAST_WEBHOOK_SQL)?;
        let last = super::inbox::last_webhooks(rows.iter().map(|r| {
            let (connection, _) = r.key();
            let at = match r.0.get(14) {
                Some(Value::Integer(at)) => *at,
                _ => 0,
            };
            (connection, at)
        }));
        for (connection, at) in last {
            let stale = at - super::inbox::LAST_WEBHOOK_GRAIN_MS;
            note.execute(rusqlite::params![at, connection, stale])?;
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
