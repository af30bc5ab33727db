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
//!
//! A PASSIVE checkpoint alone never lets the WAL start over while writes go
//! on: SQLite rewinds the WAL only when a writer finds every frame copied
//! back, and under steady load a new commit always lands while the copy
//! runs. The WAL then grows for as long as the load lasts (1.7 GB in a
//! 12-second benchmark at the peak), and every read searches a longer WAL
//! index. So once the WAL holds `RESTART_AT` frames, this thread takes the
//! write turn, so that none of this process's writers commits meanwhile,
//! and checkpoints again: that copies back what the round before left
//! (little: it did the bulk beside the writers), and with every frame
//! copied the next commit starts the WAL from the top, unless a reader
//! that began earlier still reads from it (then a later round tries
//! again). A RESTART checkpoint would wait for such readers, but through
//! SQLite's busy handler, which sleeps 1, 2, 5 … ms: that lengthened the
//! acknowledgement tail. The WAL file is cut back to `journal_size_limit`
//! when it starts over.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::Connection;

use super::{Result, StoreError, WriteTurn};

/// How often the WAL is copied back. At the intake's peak that is a few
/// MiB of WAL, about what SQLite's own threshold (1,000 pages) allows.
const EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) after which the WAL is made to start over: 32 MiB at
/// the 2 KiB pages of the databases the gateway creates (64 MiB at 4 KiB),
/// a fraction of a second of the intake's peak.
const RESTART_AT: i64 = 16_384;

/// Stops its thread when dropped (with the last `Store` clone).
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path, turn: Arc<WriteTurn>) -> Result<Self> {
        Self::start_with(path, turn, RESTART_AT)
    }

    fn start_with(path: &Path, turn: Arc<WriteTurn>, restart_at: i64) -> Result<Self> {
        let conn = Connection::open(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    // Busy (another checkpoint, e.g. another process's)
                    // or failed: the next round tries again.
                    let frames = match checkpoint(&conn, "PASSIVE") {
                        Ok(frames) => frames,
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                            continue;
                        }
                    };
                    if frames >= restart_at {
                        let _turn = turn.other_blocking();
                        if let Err(e) = checkpoint(&conn, "PASSIVE") {
                            tracing::warn!(error = %e, "WAL restart failed");
                        }
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self { _stop: stop })
    }
}

/// Runs a checkpoint of the given mode; returns how many frames the WAL
/// held.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
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
        let _checkpointer = Checkpointer::start(&path, Arc::default()).unwrap();
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

    #[test]
    fn the_wal_starts_over_while_a_writer_keeps_committing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart.db");
        let writer = Connection::open(&path).unwrap();
        // Cut back to nothing when it starts over, so that is visible in
        // the file's size.
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA journal_size_limit = 0; CREATE TABLE t (b BLOB);",
            )
            .unwrap();
        let turn = Arc::<WriteTurn>::default();
        let _checkpointer = Checkpointer::start_with(&path, turn.clone(), 256).unwrap();
        let wal = dir.path().join("restart.db-wal");
        let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let blob = vec![7u8; 64 * 1024];
        let mut largest = 0;
        // Commits back to back, each in the write turn as the gateway's
        // writers take it: a bound on how long to look, not a timing claim.
        for _ in 0..4_000 {
            {
                let _turn = turn.other_blocking();
                writer
                    .execute("INSERT INTO t VALUES (?1)", [&blob])
                    .unwrap();
            }
            let size = wal_size();
            if size < largest {
                return;
            }
            largest = size;
        }
        panic!("the WAL grew to {largest} bytes and never started over");
    }
}
