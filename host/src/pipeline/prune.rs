//! What is kept, and for how long? The retention windows (`[retention]`)
//! and the background pruner that applies them.
//!
//! The pruner works in small batches (`batch_size` rows, one short write
//! transaction each) and gives the write turn back between them, so intake's
//! group commits, which SQLite serialises with every other write, never
//! queue behind a long delete. Its deletes are idempotent: replicas sharing
//! a database may all run it.
//!
//! The dedup floor: a finished inbox row is what deduplicates a platform's
//! retries (the unique (connection, webhook id) key), so it is kept at least
//! `dedup_window` (48 h by default: how long platforms retry), whatever `inbox` says. Its
//! body may go sooner (`inbox_bodies`): the row then keeps ids, topic, times
//! and deliveries, which is all dedup, event ids and the webhook lookup
//! need. A separate slim dedup table would have cost intake a second unique
//! index insert per webhook; a body tombstone costs it nothing.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::retention::{Cutoffs, Pruned, Step};
use crate::store::{Store, StoreError, now_ms};

/// `[retention]`. `None`: kept for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Published inbox rows (and their attempts), after they finished.
    pub inbox: Option<Duration>,
    /// Their bodies and headers (replaced by `{}` / `[]`).
    pub inbox_bodies: Option<Duration>,
    /// The least time a finished row (its dedup key) is kept.
    pub dedup_window: Duration,
    /// Event-log records.
    pub events: Option<Duration>,
    /// Unresolved dead letters (with their webhooks), after they were made.
    pub dead_letters: Option<Duration>,
    /// Dead letters a replay resolved, after it did.
    pub resolved_dead_letters: Option<Duration>,
    /// How often the pruner looks for rows due; zero: no pruner.
    pub interval: Duration,
    /// Rows per transaction.
    pub batch_size: u32,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for RetentionConfig {
    /// The same as `config.default.toml`'s.
    fn default() -> Self {
        Self {
            inbox: Some(7 * DAY),
            inbox_bodies: Some(3 * DAY),
            dedup_window: 2 * DAY,
            events: Some(7 * DAY),
            dead_letters: Some(30 * DAY),
            resolved_dead_letters: Some(7 * DAY),
            interval: Duration::from_secs(60),
            batch_size: 500,
        }
    }
}

impl RetentionConfig {
    /// Nothing is ever pruned.
    pub fn keep_everything() -> Self {
        Self {
            inbox: None,
            inbox_bodies: None,
            events: None,
            dead_letters: None,
            resolved_dead_letters: None,
            ..Self::default()
        }
    }

    /// The instants before which each kind of row goes, at `now` (epoch ms).
    /// Inbox rows are kept at least `dedup_window`.
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        let before = |d: Option<Duration>| d.map(|d| now.saturating_sub(ms(d)));
        Cutoffs {
            inbox: before(self.inbox.map(|d| d.max(self.dedup_window))),
            inbox_bodies: before(self.inbox_bodies),
            events: before(self.events),
            dead_letters: before(self.dead_letters),
            resolved_dead_letters: before(self.resolved_dead_letters),
        }
    }

    /// Whether any window is set (else the pruner has nothing to do).
    pub fn prunes(&self) -> bool {
        self.inbox.is_some()
            || self.inbox_bodies.is_some()
            || self.events.is_some()
            || self.dead_letters.is_some()
            || self.resolved_dead_letters.is_some()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One full pass at `now`: every step, batch after batch, until nothing is
/// due. Counts what it removed into `ionflux_rows_pruned_total`.
pub async fn prune_once(
    store: &Store,
    cfg: &RetentionConfig,
    now: i64,
) -> Result<Pruned, StoreError> {
    let cutoffs = cfg.cutoffs(now);
    let batch = i64::from(cfg.batch_size.max(1));
    let mut total = Pruned::default();
    for step in Step::ALL {
        loop {
            let pruned = store.prune_step(step, &cutoffs, batch).await?;
            for (table, rows) in pruned.by_table() {
                crate::support::metrics::rows_pruned(table, rows);
            }
            total.add(&pruned);
            if pruned.total() == 0 {
                break;
            }
            // The write turn is free now: let intake's queued groups have it
            // before the next batch.
            tokio::task::yield_now().await;
        }
    }
    Ok(total)
}

/// What `prune_once` would remove at `now` (`prune --dry-run`).
pub async fn dry_run(store: &Store, cfg: &RetentionConfig, now: i64) -> Result<Pruned, StoreError> {
    store.prune_counts(&cfg.cutoffs(now)).await
}

/// The background pruner: a pass every `interval` until shutdown. Failures
/// are logged; the next pass tries again.
pub async fn run(store: Store, cfg: RetentionConfig, mut shutdown: watch::Receiver<bool>) {
    if !cfg.prunes() || cfg.interval.is_zero() {
        return;
    }
    loop {
        match prune_once(&store, &cfg, now_ms()).await {
            Ok(p) if p.total() > 0 => tracing::info!(
                inbox = p.inbox,
                inbox_bodies = p.inbox_bodies,
                inbox_attempts = p.inbox_attempts,
                events = p.events,
                dead_letters = p.dead_letters,
                "retention: rows pruned"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; retried at the next"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_window_is_a_floor_for_rows_not_bodies() {
        let cfg = RetentionConfig {
            inbox: Some(Duration::from_secs(60)),
            inbox_bodies: Some(Duration::from_secs(10)),
            dedup_window: Duration::from_secs(3600),
            ..RetentionConfig::keep_everything()
        };
        let c = cfg.cutoffs(10_000_000);
        assert_eq!(c.inbox, Some(10_000_000 - 3_600_000));
        assert_eq!(c.inbox_bodies, Some(10_000_000 - 10_000));
        assert_eq!(c.events, None);
    }
}
