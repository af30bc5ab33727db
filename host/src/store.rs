//! Where everything durable lives: connections, the inbox, the embedded event
//! log, dead letters and routes, behind one type so that callers never write
//! SQL. SQLite (WAL) is the embedded default; PostgreSQL serves many
//! replicas. Both run the same SQL through sqlx's `Any` driver (`$n`
//! placeholders, which SQLite also understands); the few statements whose
//! dialects differ go through `Backend`.
//!
//! Invariant: an inbox row is written and committed (fsync'd, `synchronous =
//! FULL`) before the webhook is acknowledged, and leaves `pending` only in the
//! same transaction that records its outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Executor, Row};
use tokio::sync::Notify;
use uuid::Uuid;

pub use blob::Blob;
pub use ceilings::CeilingRow;

use crate::pipeline::publish::Delivery;

pub mod blob;
pub mod ceilings;
mod checkpoint;
pub mod oauth;
mod secrets;
mod writer;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// From the connections of SQLite's own threads (`writer`,
    /// `checkpoint`).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start a database thread: {0}")]
    Thread(std::io::Error),
    #[error("creating the database file {0}: {1}")]
    CreateFile(std::path::PathBuf, std::io::Error),
    /// Opened with [`Open::Existing`] and there is no such SQLite file.
    #[error("no database file at {0}")]
    NoDatabase(std::path::PathBuf),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The group commit this write was part of failed (the cause was
    /// logged once for the whole group).
    #[error("the write's group commit failed: {0}")]
    Batch(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The database gave up on the transaction to break a conflict with
    /// another one (PostgreSQL's deadlock_detected, serialization_failure),
    /// and rolled it back: trying it again is safe, and may well succeed.
    pub fn is_transaction_conflict(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// Attempts of one intake group commit that loses transaction conflicts.
const INTAKE_ATTEMPTS: u32 = 5;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Bumped whenever this process takes a connection out of service
    /// (uninstall, redaction), so that caches of connections in the same
    /// process (the inbox's) drop what they hold at once.
    connections_changed: Arc<AtomicU64>,
    /// SQLite only: see `WriteTurn`.
    write_turn: Option<Arc<WriteTurn>>,
    /// SQLite file databases: where `insert_webhooks`, the claim and the
    /// dispatcher's recording (`log_and_finish`, `finish`) run (see `writer`).
    writer: Option<Arc<writer::Writer>>,
    /// SQLite file databases: copies the WAL back (see `checkpoint`).
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

/// SQLite has one writer at a time. This process's writers take turns here
/// before `BEGIN IMMEDIATE`: SQLite makes a writer that finds the lock taken
/// sleep in its busy handler (1 ms, then 2, 5, 10 … up to 100 ms), long
/// after the lock is free again, whereas this hands the turn over the moment
/// the last writer commits. Other processes (the CLI) still meet the busy
/// handler, which is fine for them.
///
/// Intake goes first: a request is waiting for its group's commit to answer
/// Shopify, while the dispatcher's writes only move work along. Other
/// writers therefore let waiting intake groups pass, for at most
/// `YIELD_AT_MOST`, so that a sustained burst slows the dispatcher but can
/// not stop it.
#[derive(Debug, Default)]
struct WriteTurn {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Intake groups waiting for (or holding) the turn.
    intake: AtomicUsize,
    /// Signalled whenever an intake group gives the turn back.
    given_back: Notify,
}

const YIELD_AT_MOST: Duration = Duration::from_millis(20);

/// A turn held. The guard goes first, then (for intake) the mark, so a
/// writer that gave way finds the turn free when it is told.
struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _intake: Option<IntakeMark>,
}

/// Counts an intake group as waiting or holding from creation to drop, so
/// that a cancelled wait does not leave the count behind.
struct IntakeMark(Arc<WriteTurn>);

impl IntakeMark {
    fn new(turn: &Arc<WriteTurn>) -> Self {
        turn.intake.fetch_add(1, Ordering::AcqRel);
        Self(turn.clone())
    }
}

impl Drop for IntakeMark {
    fn drop(&mut self) {
        self.0.intake.fetch_sub(1, Ordering::AcqRel);
        self.0.given_back.notify_waiters();
    }
}

impl WriteTurn {
    async fn intake(self: &Arc<Self>) -> Turn {
        let mark = IntakeMark::new(self);
        Turn {
            _guard: self.lock.clone().lock_owned().await,
            _intake: Some(mark),
        }
    }

    /// `intake`, for the SQLite writer's own thread (not a tokio task, so it
    /// may block).
    fn intake_blocking(self: &Arc<Self>) -> Turn {
        let mark = IntakeMark::new(self);
        Turn {
            _guard: self.lock.clone().blocking_lock_owned(),
            _intake: Some(mark),
        }
    }

    /// `other`, for SQLite's own threads (not tokio tasks, so they may
    /// block). Intake has nothing to wait for there: the writer thread runs
    /// every group queued before the dispatcher's jobs, and the checkpoint
    /// thread takes the turn only for its short final copy.
    fn other_blocking(&self) -> Turn {
        Turn {
            _guard: self.lock.clone().blocking_lock_owned(),
            _intake: None,
        }
    }

    async fn other(&self) -> Turn {
        let deadline = tokio::time::Instant::now() + YIELD_AT_MOST;
        loop {
            let given_back = self.given_back.notified();
            tokio::pin!(given_back);
            // Registered before looking, so a hand-back in between is seen.
            given_back.as_mut().enable();
            let late = tokio::time::Instant::now() >= deadline;
            if late || self.intake.load(Ordering::Acquire) == 0 {
                let guard = self.lock.clone().lock_owned().await;
                // An intake group may have queued up meanwhile: let it pass.
                if late || self.intake.load(Ordering::Acquire) == 0 {
                    return Turn {
                        _guard: guard,
                        _intake: None,
                    };
                }
                drop(guard);
                continue;
            }
            let _ = tokio::time::timeout_at(deadline, given_back).await;
        }
    }
}

/// A write transaction and, on SQLite, this process's write turn, held
/// until it commits or is dropped (the transaction drops first).
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<Turn>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// A connection as stored; secrets are still vault ciphertexts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectionRow {
    pub id: String,
    pub provider: String,
    pub shop_domain: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub secure_path_identifier: String,
    pub webhook_secret: String,
    pub previous_webhook_secret: Option<String>,
    /// When the previous secret stops verifying (epoch ms); without it, it
    /// does not verify at all.
    pub previous_webhook_secret_expires_at: Option<i64>,
    pub status: String,
    pub created_at: i64,
}

pub struct NewWebhook<'a> {
    pub connection: &'a ConnectionRow,
    pub webhook_id: &'a str,
    pub topic: &'a str,
    pub api_version: Option<&'a str>,
    pub triggered_at: Option<&'a str>,
    pub shopify_event_id: Option<&'a str>,
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
    pub shop_domain: String,
    pub api_version: Option<String>,
    pub triggered_at: Option<String>,
    pub shopify_event_id: Option<String>,
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

/// One record of the embedded event log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event_id: String,
    pub topic: String,
    pub key: String,
    pub headers: String,
    pub payload: String,
    pub created_at: i64,
}

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

/// Whether opening a SQLite database may create its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// The server's way: a missing file becomes a new, empty database.
    CreateIfMissing,
    /// The way of commands that work on a database a server owns: a missing
    /// file is [`StoreError::NoDatabase`], so that a command run in the
    /// wrong directory cannot quietly start a second, empty database.
    Existing,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 16).await
    }

    /// As `connect`, with at most `max_connections` pooled connections.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        Self::open(url, max_connections, Open::CreateIfMissing).await
    }

    /// Opens and migrates the database, creating a SQLite file only when
    /// `open` says so (PostgreSQL databases are never created).
    pub async fn open(url: &str, max_connections: u32, open: Open) -> Result<Self> {
        let (backend, url, file) = resolve_url(url, open)?;
        let pragmas = sqlite_pragmas(file.is_some());
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    // SQLite has one writer at a time; more connections only
                    // queue on its lock.
                    .max_connections(max_connections.min(8))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute(pragmas).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .connect(&url)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let write_turn: Option<Arc<WriteTurn>> = (backend == Backend::Sqlite).then(Arc::default);
        let (writer, checkpointer) = match (&write_turn, &file) {
            (Some(turn), Some(file)) => (
                Some(Arc::new(writer::Writer::open(file, pragmas, turn.clone())?)),
                Some(Arc::new(checkpoint::Checkpointer::start(
                    file,
                    turn.clone(),
                )?)),
            ),
            _ => (None, None),
        };
        Ok(Self {
            pool,
            backend,
            connections_changed: Arc::default(),
            write_turn,
            writer,
            _checkpointer: checkpointer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Changes whenever this process changed a connection's status in a way
    /// that caches of connections must see at once (see `inbox`).
    pub fn connections_generation(&self) -> u64 {
        self.connections_changed.load(Ordering::Acquire)
    }

    pub(crate) fn note_connections_changed(&self) {
        self.connections_changed.fetch_add(1, Ordering::AcqRel);
    }

    /// A transaction for writes whose correctness rests on row locks alone
    /// (conditional updates, upserts). SQLite cannot upgrade a reading
    /// transaction to a writing one while another connection writes (it
    /// fails at once with SQLITE_BUSY instead of waiting), so on SQLite it
    /// takes the write lock from its first statement.
    async fn write_tx(&self) -> Result<WriteTx> {
        self.begin_write(false).await
    }

    /// A write transaction, taking the intake's turn or another's.
    async fn begin_write(&self, intake: bool) -> Result<WriteTx> {
        // The connection first, then the turn: a pool checkout and its
        // liveness ping need not hold up every other writer. (Writers that
        // wait hold a connection each; the one holding the turn has its
        // own, so the pool cannot run dry under it.)
        let conn = self.pool.acquire().await?;
        let turn = match &self.write_turn {
            Some(turn) if intake => Some(turn.intake().await),
            Some(turn) => Some(turn.other().await),
            None => None,
        };
        let begin = match self.backend {
            Backend::Sqlite => Some("BEGIN IMMEDIATE".into()),
            Backend::Postgres => None,
        };
        // `Pool::begin_with` would check the connection out after the
        // turn; this is the same call on one already checked out.
        let tx = sqlx::Transaction::begin(conn, begin).await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// This process's turn to write (SQLite; nothing to wait for on
    /// PostgreSQL): for writes outside `write_tx` on the hot path.
    async fn write_turn(&self) -> Option<Turn> {
        match &self.write_turn {
            Some(turn) => Some(turn.other().await),
            None => None,
        }
    }

    /// A transaction that runs alone among all `serial_tx` transactions of
    /// every replica: for the rare read-then-write transactions (OAuth
    /// states, lifecycle effects, route changes, the event log's sequence)
    /// whose reads must not change under them. SQLite gives this with any
    /// write transaction; on PostgreSQL one transaction-scoped advisory lock
    /// stands for SQLite's database lock.
    async fn serial_tx(&self) -> Result<WriteTx> {
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7305412960014437169)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// SQL for the text of a top-level JSON field of a TEXT column.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ---- connections -------------------------------------------------------

    /// Inserts a connection. The caller encrypts the secret with the row id it
    /// passes here, so the ciphertext is bound to this row.
    pub async fn insert_connection(&self, row: &ConnectionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO connections (id, provider, shop_domain, workspace_id, brand_id,
                secure_path_identifier, webhook_secret, previous_webhook_secret,
                previous_webhook_secret_expires_at, status, created_at, updated_at,
                webhook_secret_owner, webhook_secret_since)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'tenant', $13)",
        )
        .bind(&row.id)
        .bind(&row.provider)
        .bind(&row.shop_domain)
        .bind(&row.workspace_id)
        .bind(&row.brand_id)
        .bind(&row.secure_path_identifier)
        .bind(&row.webhook_secret)
        .bind(&row.previous_webhook_secret)
        .bind(row.previous_webhook_secret_expires_at)
        .bind(&row.status)
        .bind(row.created_at)
        .bind(row.created_at)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the webhook secret with one the tenant chose and keeps the
    /// old one as `previous` until `previous_expires_at`, so that webhooks
    /// signed before the rotation still verify for a while. Both values are
    /// ciphertexts bound to their own column; the previous secret keeps the
    /// owner the current one had.
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        current: &str,
        previous: &str,
        previous_expires_at: i64,
    ) -> Result<()> {
        let now = now_ms();
        // Every SET expression reads the row as it was before the UPDATE.
        sqlx::query(
            "UPDATE connections
             SET webhook_secret = $1, previous_webhook_secret = $2,
                 previous_webhook_secret_owner = webhook_secret_owner,
                 previous_webhook_secret_expires_at = $3,
                 webhook_secret_owner = 'tenant', webhook_secret_since = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(current)
        .bind(previous)
        .bind(previous_expires_at)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    const CONNECTION_COLUMNS: &str = "id, provider, shop_domain, workspace_id, brand_id,
        secure_path_identifier, webhook_secret, previous_webhook_secret,
        previous_webhook_secret_expires_at, status, created_at";

    pub async fn connection_by_path(&self, identifier: &str) -> Result<Option<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE secure_path_identifier = $1",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn connection_for_shop(
        &self,
        provider: &str,
        shop_domain: &str,
        brand_id: &str,
    ) -> Result<Option<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE provider = $1 AND shop_domain = $2 AND brand_id = $3",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(provider)
            .bind(shop_domain)
            .bind(brand_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_connections(&self) -> Result<Vec<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections ORDER BY created_at",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql).fetch_all(&self.pool).await?)
    }

    /// Every connection of a brand with this provider, newest first.
    pub async fn connections_for_brand(
        &self,
        provider: &str,
        brand_id: &str,
    ) -> Result<Vec<ConnectionRow>> {
        let sql = format!(
            "SELECT {} FROM connections WHERE provider = $1 AND brand_id = $2
             ORDER BY created_at DESC, id DESC",
            Self::CONNECTION_COLUMNS
        );
        Ok(sqlx::query_as(&sql)
            .bind(provider)
            .bind(brand_id)
            .fetch_all(&self.pool)
            .await?)
    }

    // ---- inbox -------------------------------------------------------------

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
                    .bind(&w.connection.shop_domain)
                    .bind(w.api_version)
                    .bind(w.triggered_at)
                    .bind(w.shopify_event_id)
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

    /// Gives claimed rows back for a later attempt (a transient failure).
    pub async fn release(&self, ids: &[i64], retry_at: i64, error: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for id in ids {
            sqlx::query(
                "UPDATE inbox SET claimed_until = NULL, next_attempt_at = $1, last_error = $2
                 WHERE id = $3 AND status = 'pending'",
            )
            .bind(retry_at)
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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
        if let Some(writer) = &self.writer {
            return writer.finish(outcomes, now_ms()).await;
        }
        let mut tx = self.write_tx().await?;
        self.finish_in(&mut tx, outcomes).await?;
        tx.commit().await
    }

    /// `finish` inside a transaction of the caller's (the event-log sink's,
    /// so that appending and recording commit together).
    pub(crate) async fn finish_in(
        &self,
        tx: &mut WriteTx,
        outcomes: &[(&InboxRow, Outcome)],
    ) -> Result<()> {
        let now = now_ms();
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

    /// Closes the pool: every later query fails. For an orderly end, and for
    /// tests of what callers see when the database is gone.
    pub async fn close(&self) {
        self.pool.close().await;
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

    // ---- embedded event log ------------------------------------------------

    /// Appends records to the event log and records the outcomes of the rows
    /// they came from, in one transaction: both commit or neither does (a
    /// retry). With `owner`, that replica's brand leases are given back in
    /// it too (the batch is recorded, so its brands may go to anyone).
    /// Returns each record's place in the log, in order. An event id
    /// already logged (a retry after a crash) is not appended twice; its
    /// first place is returned.
    pub async fn log_and_finish(
        &self,
        records: &[crate::pipeline::publish::Record],
        rows: &[Logged<'_>],
        owner: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        // Compressed and serialised before the write turn is taken.
        let log = LogRecords::encode(records)?;
        let now = now_ms();
        if let Some(writer) = &self.writer {
            let seqs = writer.log_and_finish(&log, rows, now, owner).await?;
            return Ok(log.deliveries(&seqs));
        }
        let mut tx = self.serial_tx().await?;
        let deliveries = self.append_events(&mut tx, &log, now).await?;
        let outcomes: Vec<_> = rows
            .iter()
            .map(|r| (r.row, r.outcome(&deliveries)))
            .collect();
        self.finish_in(&mut tx, &outcomes).await?;
        if let Some(owner) = owner {
            sqlx::query(RELEASE_LEASES_SQL)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(deliveries)
    }

    /// `log_and_finish`'s append, through sqlx.
    async fn append_events(
        &self,
        tx: &mut WriteTx,
        log: &LogRecords<'_>,
        now: i64,
    ) -> Result<Vec<Delivery>> {
        let mut seqs: std::collections::HashMap<String, i64> =
            std::collections::HashMap::with_capacity(log.rows.len());
        for chunk in log.rows.chunks(ROWS_PER_STATEMENT) {
            let sql = append_events_sql(self.backend, chunk.len());
            let mut q = sqlx::query(&sql);
            for row in chunk {
                let (text, zstd) = row.payload_columns();
                q = q
                    .bind(row.event_id.as_str())
                    .bind(&row.record.topic)
                    .bind(&row.record.key)
                    .bind(row.headers.as_str())
                    .bind(text)
                    .bind(zstd)
                    .bind(row.workspace_id)
                    .bind(now);
            }
            for r in q.fetch_all(&mut **tx).await? {
                seqs.insert(r.try_get(1)?, r.try_get(0)?);
            }
        }
        let mut out = Vec::with_capacity(log.rows.len());
        for row in &log.rows {
            let seq = match seqs.get(&row.event_id) {
                Some(&seq) => seq,
                None => {
                    sqlx::query_scalar(LOGGED_SEQ_SQL)
                        .bind(row.event_id.as_str())
                        .fetch_one(&mut **tx)
                        .await?
                }
            };
            out.push(seq);
        }
        Ok(log.deliveries(&out))
    }

    /// Events after `after_seq`, oldest first.
    pub async fn events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<LoggedEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(logged_event_from)
        .collect()
    }

    /// The newest `limit` events, oldest first.
    pub async fn events_tail(&self, limit: i64) -> Result<Vec<LoggedEvent>> {
        self.events_tail_in(None, limit).await
    }

    /// The newest `limit` events, oldest first: of one workspace, or of all.
    pub async fn events_tail_in(
        &self,
        workspace: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let filter = if workspace.is_some() {
            "WHERE workspace_id = $2"
        } else {
            ""
        };
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events {filter} ORDER BY seq DESC LIMIT $1");
        let mut query = sqlx::query(&sql).bind(limit);
        if let Some(workspace) = workspace {
            query = query.bind(workspace);
        }
        let mut events = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(logged_event_from)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    // ---- dead letters ------------------------------------------------------

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

    // ---- transforms and routes ---------------------------------------------

    /// Stores a component under its digest; storing the same bytes twice is a
    /// no-op (versions are immutable).
    pub async fn put_transform(&self, digest: &str, name: &str, component: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO transforms (digest, name, component, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(name)
        .bind(component)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (name, component bytes) of a stored transform.
    pub async fn transform_component(&self, digest: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT name, component FROM transforms WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("name")?, r.try_get("component")?)))
            .transpose()
    }

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

    /// Stored transform versions (without their bytes), newest first.
    pub async fn transforms(&self) -> Result<Vec<TransformInfo>> {
        Ok(sqlx::query_as(
            "SELECT digest, name, CAST(length(component) AS BIGINT) AS size, created_at
             FROM transforms ORDER BY created_at DESC, digest",
        )
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TransformInfo {
    pub digest: String,
    pub name: String,
    pub size: i64,
    pub created_at: i64,
}

/// Rows per multi-row statement at most (an INSERT's VALUES, an IN list):
/// at 15 parameters a row (the inbox's INSERT, the widest) this stays far
/// below SQLite's 32,766 and PostgreSQL's 65,535 parameters per statement.
const ROWS_PER_STATEMENT: usize = 256;

/// The claim leases the brands of the oldest due rows (a window wide enough
/// that a few busy brands leased elsewhere do not starve the rest): binds
/// owner, lease end, now, window.
const CLAIM_BRANDS_SQL: &str = "INSERT INTO brand_leases (brand_id, owner, lease_until)
     SELECT DISTINCT w.brand_id, $1, $2 FROM (
        SELECT i.brand_id FROM inbox i
        WHERE i.status = 'pending' AND i.next_attempt_at <= $3
          AND NOT EXISTS (SELECT 1 FROM brand_leases l
             WHERE l.brand_id = i.brand_id AND l.owner != $1 AND l.lease_until >= $3)
        ORDER BY i.id LIMIT $4) w
     WHERE true
     ON CONFLICT (brand_id) DO UPDATE SET owner = excluded.owner,
        lease_until = excluded.lease_until
     WHERE brand_leases.owner = excluded.owner OR brand_leases.lease_until < $3";

/// The pending rows of the brands leased to the owner: binds owner, now,
/// limit. Gives (id, brand, next attempt) for [`claimable`].
const CLAIM_CANDIDATES_SQL: &str = "SELECT i.id, i.brand_id, i.next_attempt_at FROM inbox i
     JOIN brand_leases l ON l.brand_id = i.brand_id
     WHERE l.owner = $1 AND l.lease_until >= $2 AND i.status = 'pending'
     ORDER BY i.id LIMIT $3";

/// Marks `n` rows claimed: binds the lease end, then the ids.
fn claim_rows_sql(backend: Backend, n: usize) -> String {
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
fn claimable(candidates: impl IntoIterator<Item = (i64, String, i64)>, now: i64) -> Vec<i64> {
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

/// The id of a webhook stored before, by the inbox's unique key.
const STORED_WEBHOOK_ID_SQL: &str =
    "SELECT id FROM inbox WHERE connection_id = $1 AND webhook_id = $2";

/// Appends `n` records to the event log: binds event id, topic, key,
/// headers, payload (text), payload (zstd), workspace, created at, per row.
/// Rows take their sequence numbers in VALUES order, which keeps a batch's
/// order in the log; an event id logged before (a retry after a crash)
/// returns nothing and keeps its first place (`LOGGED_SEQ_SQL`).
fn append_events_sql(backend: Backend, n: usize) -> String {
    format!(
        "INSERT INTO events (event_id, topic, key, headers, payload, payload_zstd,
            workspace_id, created_at)
         VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING seq, event_id",
        Params::new(backend).values(n, 8)
    )
}

/// Gives back every brand lease of an owner: binds the owner.
const RELEASE_LEASES_SQL: &str = "DELETE FROM brand_leases WHERE owner = $1";

/// Where an event id was logged first.
const LOGGED_SEQ_SQL: &str = "SELECT seq FROM events WHERE event_id = $1";

/// A replayed dead letter that now succeeds is resolved: binds now, then
/// the `n` inbox ids.
fn resolve_dead_letters_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    format!(
        "UPDATE dead_letters SET resolved_at = {}
         WHERE resolved_at IS NULL AND inbox_id IN ({})",
        p.p(),
        p.list(n)
    )
}

/// Marks `n` rows published: binds now, then (id, deliveries as JSON) per row.
fn finish_published_sql(backend: Backend, n: usize) -> String {
    let mut p = Params::new(backend);
    format!(
        "UPDATE inbox SET status = 'published', finished_at = {},
            deliveries = v.column2, claimed_until = NULL
         FROM (VALUES {}) AS v WHERE inbox.id = v.column1",
        p.p(),
        p.values(n, 2)
    )
}

/// A row's dead letter (a replayed one is reopened): binds inbox id,
/// connection, workspace, brand, topic, webhook id, reason code, reason,
/// transform, its digest, now.
const DEAD_LETTER_SQL: &str = "INSERT INTO dead_letters (inbox_id, connection_id, workspace_id,
        brand_id, topic, webhook_id, reason_code, reason, transform, transform_digest, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (inbox_id) DO UPDATE SET reason_code = excluded.reason_code,
        reason = excluded.reason, transform = excluded.transform,
        transform_digest = excluded.transform_digest,
        created_at = excluded.created_at, resolved_at = NULL";

/// Marks a row dead: binds now, deliveries as JSON, id.
const FINISH_DEAD_SQL: &str = "UPDATE inbox SET status = 'dead', finished_at = $1,
        deliveries = $2, claimed_until = NULL
     WHERE id = $3";

/// Matches a batch's keys (connection id, webhook id), in order, to the rows
/// its INSERT returned (`inserted`, by key): the first occurrence of a key
/// is `New` if it was inserted; a later one in the same batch is a
/// `Duplicate` of it; `None` is a key stored before the batch, whose id the
/// caller looks up.
fn match_inserted<'a>(
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
fn insert_webhooks_sql(backend: Backend, n: usize, with_id: bool) -> &'static str {
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
                     webhook_id, topic, shop_domain, api_version, triggered_at, \
                     shopify_event_id, trace_id, headers, body, body_encoding, received_at) \
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

/// Parameter placeholders in the order they appear in a statement:
/// anonymous `?` on SQLite, `$1`, `$2`, … on PostgreSQL. sqlx's SQLite
/// driver looks each numbered name up again through a linear list, which
/// made binding a few hundred `$n` parameters cost more than the insert
/// itself; statements with many parameters use this instead.
struct Params {
    backend: Backend,
    next: usize,
}

impl Params {
    fn new(backend: Backend) -> Self {
        Self { backend, next: 1 }
    }

    /// The next placeholder.
    fn p(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        match self.backend {
            Backend::Sqlite => "?".into(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// `count` placeholders separated by commas.
    fn list(&mut self, count: usize) -> String {
        (0..count).map(|_| self.p()).collect::<Vec<_>>().join(", ")
    }

    /// `rows` parenthesised tuples of `cols` placeholders.
    fn values(&mut self, rows: usize, cols: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(cols)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every column `InboxRow` has, for `inbox_row_from`.
const INBOX_COLUMNS: &str = "id, connection_id, provider, workspace_id, brand_id, webhook_id,
    topic, shop_domain, api_version, triggered_at, shopify_event_id, trace_id, headers, body,
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
        shop_domain: r.try_get("shop_domain")?,
        api_version: r.try_get("api_version")?,
        triggered_at: r.try_get("triggered_at")?,
        shopify_event_id: r.try_get("shopify_event_id")?,
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

/// Every column `LoggedEvent` is made from, for `logged_event_from`.
const EVENT_COLUMNS: &str = "seq, event_id, topic, key, headers, payload, payload_zstd, created_at";

fn logged_event_from(r: &AnyRow) -> Result<LoggedEvent> {
    let payload = match r.try_get::<Option<Vec<u8>>, _>("payload_zstd")? {
        Some(frame) => String::from_utf8(Blob::decode(blob::Encoding::Zstd.as_str(), frame)?)
            .map_err(|e| StoreError::Corrupt(format!("event payload is not UTF-8: {e}")))?,
        None => r.try_get("payload")?,
    };
    Ok(LoggedEvent {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        topic: r.try_get("topic")?,
        key: r.try_get("key")?,
        headers: r.try_get("headers")?,
        payload,
        created_at: r.try_get("created_at")?,
    })
}

/// A claimed row's share of `Store::log_and_finish`: the records of the
/// batch that are its (its events, or its dead-letter copy) and, for a row
/// dead-lettered, why. A row without a letter is published.
pub struct Logged<'a> {
    pub row: &'a InboxRow,
    pub records: std::ops::Range<usize>,
    pub letter: Option<&'a DeadLetter>,
}

impl Logged<'_> {
    /// The row's outcome, given where the batch's records were logged.
    fn outcome(&self, deliveries: &[Delivery]) -> Outcome {
        let deliveries = deliveries[self.records.clone()].to_vec();
        match self.letter {
            Some(letter) => Outcome::Dead {
                deliveries,
                letter: letter.clone(),
            },
            None => Outcome::Published(deliveries),
        }
    }
}

/// Records made ready for the event log before the write turn is taken:
/// payloads compressed and headers serialised, so that the transaction
/// itself only moves bytes.
struct LogRecords<'a> {
    rows: Vec<LogRow<'a>>,
}

struct LogRow<'a> {
    record: &'a crate::pipeline::publish::Record,
    event_id: String,
    headers: String,
    payload: Blob,
    workspace_id: Option<&'a str>,
}

impl<'a> LogRecords<'a> {
    fn encode(records: &'a [crate::pipeline::publish::Record]) -> Result<Self> {
        let rows = records
            .iter()
            .map(|r| {
                // Readers get the payload back as text.
                std::str::from_utf8(&r.payload)
                    .map_err(|e| StoreError::Corrupt(format!("event payload is not UTF-8: {e}")))?;
                Ok(LogRow {
                    record: r,
                    event_id: r.event_id.to_string(),
                    headers: serde_json::to_string(&r.headers).expect("headers serialise"),
                    payload: Blob::encode(&r.payload),
                    workspace_id: r
                        .headers
                        .iter()
                        .find(|(k, _)| k == "workspace_id")
                        .map(|(_, v)| v.as_str()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { rows })
    }

    /// The records' places in the log, from their sequence numbers.
    fn deliveries(&self, seqs: &[i64]) -> Vec<Delivery> {
        self.rows
            .iter()
            .zip(seqs)
            .map(|(row, &offset)| Delivery {
                topic: row.record.topic.clone(),
                partition: 0,
                offset,
            })
            .collect()
    }
}

impl LogRow<'_> {
    /// The payload as the `payload` (text) and `payload_zstd` columns hold it.
    fn payload_columns(&self) -> (&str, Option<&[u8]>) {
        match self.payload.encoding {
            // Checked to be UTF-8 when the rows were made.
            blob::Encoding::Identity => (
                std::str::from_utf8(&self.payload.bytes).unwrap_or_default(),
                None,
            ),
            blob::Encoding::Zstd => ("", Some(self.payload.bytes.as_slice())),
        }
    }
}

/// What every SQLite connection of the gateway sets. FULL: a webhook we
/// acknowledged must survive power loss, not only a process crash. With
/// `checkpointer`, WAL checkpoints are that thread's job alone, and a WAL
/// that starts over is cut back to 64 MiB (`store::checkpoint`).
///
/// 2 KiB pages (for a database this creates; an existing one keeps its
/// own): the WAL logs every page a commit touches in full, and most of an
/// intake commit's pages are leaves of the unique key that a random
/// webhook id lands on alone. Halving them cut the WAL per stored webhook
/// from 14 KB to 8 KB; 1 KiB spread each row over more pages and was
/// slower (BENCHMARKS.md). It must come before `journal_mode`, which
/// writes the first page.
fn sqlite_pragmas(checkpointer: bool) -> &'static str {
    if checkpointer {
        "PRAGMA page_size = 2048;
         PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;
         PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = 67108864;"
    } else {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;
         PRAGMA foreign_keys = ON;"
    }
}

/// Creates a new SQLite database file readable by its owner alone. It holds
/// webhook bodies (customers' data) and hashed tokens, and SQLite gives its
/// WAL and shared-memory files the database file's own mode, so they follow.
/// An existing file is left as its operator set it.
fn create_private(file: &std::path::Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::CreateFile(file.to_path_buf(), e)),
    }
}

/// sqlx opens an existing SQLite file only, unless told it may create one
/// (`mode=rwc`); an explicit `mode=` in the URL is kept.
fn sqlite_url(url: &str, mode: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode={mode}")
    } else {
        format!("{url}?mode={mode}")
    }
}

/// The backend of `url`, the URL sqlx is given, and the SQLite file (which
/// is created, owner-only, when `open` allows and it is missing).
fn resolve_url(url: &str, open: Open) -> Result<(Backend, String, Option<std::path::PathBuf>)> {
    sqlx::any::install_default_drivers();
    let (backend, url) = if url.starts_with("sqlite:") {
        let mode = match open {
            Open::CreateIfMissing => "rwc",
            Open::Existing => "rw",
        };
        (Backend::Sqlite, sqlite_url(url, mode))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        (Backend::Postgres, url.to_string())
    } else {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    };
    // A SQLite file the gateway's own threads can open too.
    let file = match backend {
        Backend::Sqlite => writer::file_of(&url),
        Backend::Postgres => None,
    };
    if let Some(file) = &file {
        match open {
            Open::CreateIfMissing => create_private(file)?,
            Open::Existing if !file.exists() => return Err(StoreError::NoDatabase(file.clone())),
            Open::Existing => {}
        }
    }
    Ok((backend, url, file))
}

/// Connects once to an existing database and runs `SELECT 1`: nothing is
/// created or migrated (`config check`).
pub async fn probe(url: &str) -> Result<Backend> {
    use sqlx::Connection;
    let (backend, url, _) = resolve_url(url, Open::Existing)?;
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    conn.close().await?;
    Ok(backend)
}

/// A fresh random identifier for a connection's webhook URL: 128 bits, so it
/// cannot be guessed, and URL-safe.
pub fn new_path_identifier() -> String {
    Uuid::new_v4().simple().to_string()
}

// ---- admin API: tokens, transform ownership, workspace-scoped reads ---------

/// An admin API token as stored; the token itself is never kept, only its
/// sha256.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    /// `operator` or `workspace`.
    pub kind: String,
    pub workspace_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    pub async fn insert_api_token(&self, row: &ApiTokenRow, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, kind, workspace_id, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.workspace_id)
        .bind(token_hash)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (not revoked) token with this hash.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, kind, workspace_id, created_at, revoked_at
             FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every token ever created, revoked ones included, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, kind, workspace_id, created_at, revoked_at
             FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any token was ever created. Revoked ones count: revoking the
    /// last token must not reopen the unauthenticated loopback default.
    pub async fn any_api_tokens(&self) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens LIMIT 1) t",
        )
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// Whether an operator could sign in with a stored token: one of kind
    /// `operator` that is not revoked.
    pub async fn any_live_operator_token(&self) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM (SELECT 1 FROM api_tokens
              WHERE kind = 'operator' AND revoked_at IS NULL LIMIT 1) t",
        )
        .fetch_one(&self.pool)
        .await?
            > 0)
    }

    /// Returns false when there was no live token with that id.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stored versions a workspace uploaded, newest first, under the name it
    /// gave them.
    pub async fn workspace_transforms(&self, workspace: &str) -> Result<Vec<TransformInfo>> {
        Ok(sqlx::query_as(
            "SELECT t.digest, o.name, CAST(length(t.component) AS BIGINT) AS size, o.created_at
             FROM transform_owners o JOIN transforms t ON t.digest = o.digest
             WHERE o.workspace_id = $1 ORDER BY o.created_at DESC, t.digest",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The workspaces that uploaded a version (none: an operator did).
    pub async fn transform_owners(&self, digest: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT workspace_id FROM transform_owners WHERE digest = $1 ORDER BY workspace_id",
        )
        .bind(digest)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Events of one workspace after `after_seq`, oldest first. The column
    /// is the envelope's `workspace_id`, which is the host's own (a
    /// transform cannot set it), so it is safe to filter on.
    pub async fn workspace_events_after(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND workspace_id = $2
             ORDER BY seq LIMIT $3"
        ))
        .bind(after_seq)
        .bind(workspace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(logged_event_from)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_sqlite_database_has_2_kib_pages() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("pages.db").display());
        let store = Store::connect(&url).await.unwrap();
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(page_size, 2048);
    }

    /// The database holds customers' data: a new one, and the WAL and
    /// shared-memory files SQLite makes beside it, are the owner's alone,
    /// whatever the umask (the default 022 would make them world-readable).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_and_its_wal_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("private.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // A write, so the WAL certainly exists.
        store.put_transform("00", "t", b"x").await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", db.display());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
        }
    }
}
