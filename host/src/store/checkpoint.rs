//! WAL checkpoints on a thread of their own.
//!
//! By default SQLite copies the WAL back into the database file from inside
//! the COMMIT that pushes the WAL past 1,000 pages, so some unlucky
//! writer, usually the intake's group commit, does it while holding the
//! database's one write lock, then syncs the database file as well. A
//! PASSIVE checkpoint needs no write lock: run from this thread, it takes
//! that work out of every writer's critical section, and writers and it
//! proceed side by side. The gateway's connections therefore turn the
//! automatic checkpoint off (`PRAGMA wal_autocheckpoint = 0`).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::{Result, StoreError};

/// How often the WAL is copied back. At the intake's peak that is a few
/// MiB of WAL, about what SQLite's own threshold (1,000 pages) allows.
const EVERY: Duration = Duration::from_millis(100);

/// Stops its thread when dropped (with the last `Store` clone).
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    // Busy (another checkpoint, e.g. another process's)
                    // or failed: the next round tries again.
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_is_copied_back_without_any_writer_doing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (b BLOB);",
            )
            .unwrap();
        let blob = vec![7u8; 64 * 1024];
        for _ in 0..32 {
            writer
                .execute("INSERT INTO t VALUES (?1)", [&blob])
                .unwrap();
        }
        let db_size = || std::fs::metadata(&path).unwrap().len();
        // Two MiB written, all of it still in the WAL.
        assert!(db_size() < 1024 * 1024);
        let _checkpointer = Checkpointer::start(&path).unwrap();
        // A liveness bound, not a timing claim: a working checkpointer
        // copies 2 MiB within its first few rounds.
        for _ in 0..600 {
            if db_size() >= 2 * 1024 * 1024 {
                return;
            }
            std::thread::sleep(EVERY);
        }
        panic!("the WAL was never copied back");
    }
}
