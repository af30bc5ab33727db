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
//!
//! This file holds `Store` itself: connecting and migrating, the write
//! transactions and their turns, and `Params`. Each table family has a file
//! of its own, an `impl Store` block beside its row types (`connections`,
//! `inbox`, `events`, `dead_letters`, `routes`, `transforms`, `tokens`,
//! `oauth`, `ceilings`, `secrets`); the row types are re-exported here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use tokio::sync::Notify;

pub use blob::Blob;
pub use ceilings::CeilingRow;

pub mod blob;
pub mod ceilings;
mod checkpoint;
mod connections;
mod dead_letters;
mod events;
mod inbox;
pub mod oauth;
pub mod retention;
mod routes;
pub mod secrets;
mod tokens;
mod transforms;
mod webhooks;
mod writer;

pub use connections::{
    Changed, ConnectionDetail, ConnectionRow, IntegrationEventRow, new_path_identifier,
};
pub use dead_letters::{DeadLetter, DeadLetterFilter, DeadLetterOf, DeadLetterRow, Replayed};
pub use events::{Delivery, Logged, LoggedEvent, Record};
pub use inbox::{ATTEMPT_ERROR_MAX, InboxRow, Inserted, NewWebhook, Outcome, Tried};
pub use routes::{RouteChange, RouteRow, ShadowRun, ShadowSample, ShadowStats};
pub use tokens::ApiTokenRow;
pub use transforms::TransformInfo;
pub use webhooks::{AttemptRecord, StoredWebhook, WebhookFilter, WebhookSummary};

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
    /// Woken after a commit that added an `integration.*` event, so that
    /// its publisher sends it now rather than at its next poll.
    integration_events_added: Arc<tokio::sync::Notify>,
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
            integration_events_added: Arc::default(),
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

    /// Closes the pool: every later query fails. For an orderly end, and for
    /// tests of what callers see when the database is gone.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Rows per multi-row statement at most (an INSERT's VALUES, an IN list):
/// at 15 parameters a row (the inbox's INSERT, the widest) this stays far
/// below SQLite's 32,766 and PostgreSQL's 65,535 parameters per statement.
const ROWS_PER_STATEMENT: usize = 256;

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

    /// The store sits below everything else: it names no other module of
    /// the crate, so that nothing it does can loop back into a caller.
    #[test]
    fn the_store_imports_no_other_module_of_the_crate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store");
        // Spelled in two halves so that this file does not match itself.
        let (needle, own) = (concat!("crate", "::"), concat!("crate", "::store"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let outside = line
                    .match_indices(needle)
                    .any(|(at, _)| !line[at..].starts_with(own));
                assert!(!outside, "{}:{}: {line}", path.display(), n + 1);
            }
        }
    }
}
