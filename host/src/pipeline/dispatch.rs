//! Moves stored webhooks out of the inbox: claim → route → transform →
//! publish → record the outcome.
//!
//! Invariants:
//! - A row leaves `pending` only after the sink confirmed every record it
//!   produced (or, for a dead letter, the dead-letter record), so a crash at
//!   any instant means a retry, never a loss.
//! - A retry rebuilds byte-identical records with the same `event_id`s.
//! - A transient sink failure (broker down) backs off and retries forever; it
//!   never turns into a dead letter. Only a verdict about the webhook itself
//!   (a trap, a limit, invalid output) does.
//! - Within one batch, records are handed to the sink in inbox order, so one
//!   brand's events keep the order in which they were received.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::pipeline::builtin;
use crate::pipeline::ceilings::{CeilingTable, TenantPolicy};
use crate::pipeline::event::{self, Topics, TransformId};
use crate::pipeline::provider::Providers;
use crate::pipeline::publish::{Delivery, PublishError, Record, Sink};
use crate::pipeline::route::{BUILTIN_PREFIX, DEFAULT_TRANSFORM, RouteTable};
use crate::pipeline::shadow;
use crate::pipeline::transform::{self, Limits, Runtime, Transform};
use crate::store::{self, DeadLetter, InboxRow, Logged, Outcome, ShadowRun, Store, Tried};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// false: the server takes webhooks in and leaves them pending in the
    /// inbox for a replica that publishes (an intake-only replica).
    pub enabled: bool,
    /// Rows claimed per round trip.
    pub batch_size: i64,
    /// Who this replica is in brand leases. Unique among live replicas; a
    /// replica restarted under the same name takes its own leases back at
    /// once instead of waiting for them to expire.
    pub replica: String,
    /// How long a brand lease lasts unless renewed: how long a dead
    /// replica's brands wait before another replica takes them over.
    pub lease: Duration,
    /// How often to look for work when nobody woke us (other replicas,
    /// retries coming due).
    pub idle_poll: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Transforms running at once; must not exceed the instance pool.
    pub concurrency: usize,
    /// How often replicas check whether the routing table changed. A change
    /// takes effect within this (plus one claim round trip).
    pub route_poll: Duration,
    pub limits: Limits,
    /// The most transform output one batch may hold, in bytes, counted at
    /// each row's worst case under its limits ([`reservation`]) before its
    /// transform runs. The rows past it wait for the next batch; the first
    /// row always runs (its own limits bound it).
    pub batch_bytes: usize,
    /// Every workspace's default ceilings and upload quota; the operator
    /// sets a workspace's own ceilings over the admin API.
    pub tenants: TenantPolicy,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 64,
            // Filled in at start from the host name and the listening port.
            replica: String::new(),
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(500),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            route_poll: Duration::from_millis(250),
            limits: Limits::default(),
            batch_bytes: DEFAULT_BATCH_BYTES,
            tenants: TenantPolicy::default(),
        }
    }
}

/// 64 rows at the default limits (1 MiB of output and 100 events, some
/// 1.3 MiB at worst) fit with room for their bodies, so an ordinary batch is
/// never cut; a batch of rows at the default ceilings (4 MiB and 1000
/// events) is cut after some 19 of them.
pub const DEFAULT_BATCH_BYTES: usize = 128 << 20;

pub struct Dispatcher {
    store: Store,
    sink: Arc<Sink>,
    runtime: Runtime,
    topics: Topics,
    cfg: DispatchConfig,
    wake: Arc<Notify>,
    permits: Arc<Semaphore>,
    transforms: Mutex<HashMap<String, Transform>>,
    routes: RwLock<Routes>,
    /// Each platform's default transform and after-publish work.
    providers: Providers,
}

/// The routing table and the workspaces' ceilings in force, the version
/// they were read at, and when that version was last checked.
struct Routes {
    table: Arc<RouteTable>,
    ceilings: Arc<CeilingTable>,
    version: i64,
    checked: Instant,
}

impl Routes {
    /// Replaces this table with `newer` unless `newer` was read at an older
    /// version. Two reloads can overlap (the poll and an admin change); the
    /// one that read first must not overwrite the other's newer table, or
    /// webhooks claimed next would run on a route already replaced.
    fn install(&mut self, newer: Routes) -> bool {
        if newer.version < self.version {
            return false;
        }
        *self = newer;
        true
    }
}

/// What one row turned into before publishing.
enum Verdict {
    Events(Vec<Record>),
    Dead(DeadLetter, Option<Record>),
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("built-in transform {0} failed to load: {1}")]
    Builtin(&'static str, transform::LoadError),
}

impl Dispatcher {
    pub fn new(
        store: Store,
        sink: Arc<Sink>,
        runtime: Runtime,
        topics: Topics,
        cfg: DispatchConfig,
        wake: Arc<Notify>,
    ) -> Result<Self, DispatchError> {
        let mut transforms = HashMap::new();
        for (name, bytes) in builtin::BUILTIN_COMPONENTS {
            let t = runtime
                .load(name, bytes)
                .map_err(|e| DispatchError::Builtin(name, e))?;
            transforms.insert(format!("{BUILTIN_PREFIX}{name}"), t);
        }
        let ceilings = Arc::new(CeilingTable::new(cfg.tenants.ceilings, &[]));
        Ok(Self {
            store,
            sink,
            runtime,
            topics,
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            wake,
            transforms: Mutex::new(transforms),
            routes: RwLock::new(Routes {
                table: Arc::default(),
                ceilings,
                version: -1,
                checked: Instant::now() - Duration::from_secs(3600),
            }),
            providers: Providers::default(),
        })
    }

    /// The registered platforms: their default transforms serve what no
    /// route covers, and their after-publish work runs once a batch is
    /// recorded. Without them every row falls back to
    /// [`DEFAULT_TRANSFORM`] and no such work runs.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.providers = providers;
        self
    }

    /// Runs until `shutdown` turns true, then finishes the batch in hand.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.cfg.min_backoff;
        while !*shutdown.borrow() {
            let delay = match self.step().await {
                Ok(0) => Some(self.cfg.idle_poll),
                Ok(_) => {
                    backoff = self.cfg.min_backoff;
                    None
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "dispatch failed; backing off");
                    let d = backoff;
                    backoff = (backoff * 2).min(self.cfg.max_backoff);
                    Some(d)
                }
            };
            if let Some(delay) = delay {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        info!("dispatcher stopped");
    }

    /// One claim-and-process round. Returns how many rows were claimed; an
    /// error means "back off", never "drop".
    pub async fn step(&self) -> Result<usize, StepError> {
        self.refresh_routes().await;
        let (replica, lease) = (&self.cfg.replica, self.cfg.lease);
        let rows = self
            .store
            .claim(replica, self.cfg.batch_size, lease)
            .await?;
        let n = rows.len();
        let mut released = false;
        if n > 0 {
            // The heartbeat keeps this batch's brands ours for as long as it
            // takes (a slow broker); it stops when the batch is recorded.
            let heartbeat = async {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    if let Err(e) = self.store.renew_leases(replica, lease).await {
                        warn!(error = %e, "brand leases not renewed");
                    }
                }
            };
            tokio::select! {
                done = self.process(rows) => released = done?,
                _ = heartbeat => unreachable!("the heartbeat never ends"),
            }
        }
        // Recorded (or released for a retry): the brands may go to anyone.
        if !released {
            self.store.release_leases(replica).await?;
        }
        Ok(n)
    }

    async fn refresh_routes(&self) {
        let (version, checked) = {
            let r = self.routes.read().unwrap();
            (r.version, r.checked)
        };
        if checked.elapsed() < self.cfg.route_poll {
            return;
        }
        match self.store.routes_version().await {
            Ok(v) if v == version => self.routes.write().unwrap().checked = Instant::now(),
            // Keep serving with the last good table rather than stopping.
            _ => {
                if let Err(e) = self.reload_routes().await {
                    warn!(error = %e, "routing table not refreshed");
                }
            }
        }
    }

    /// Re-reads the routing table and the workspaces' ceilings now.
    /// Webhooks claimed after this returns are routed by the new table; a
    /// batch already claimed finishes on the table it started with, so no
    /// webhook sees half of a change.
    pub async fn reload_routes(&self) -> Result<usize, String> {
        // Version first: the table read after it is at least that new.
        let version = self
            .store
            .routes_version()
            .await
            .map_err(|e| e.to_string())?;
        let rows = self.store.routes().await.map_err(|e| e.to_string())?;
        let ceilings = self
            .store
            .all_workspace_ceilings()
            .await
            .map_err(|e| e.to_string())?;
        let table = RouteTable::from_rows(&rows).map_err(|e| e.to_string())?;
        let ceilings = CeilingTable::new(self.cfg.tenants.ceilings, &ceilings);
        let n = table.len();
        let installed = self.routes.write().unwrap().install(Routes {
            table: Arc::new(table),
            ceilings: Arc::new(ceilings),
            version,
            checked: Instant::now(),
        });
        if !installed {
            return Ok(n);
        }
        // Compiled versions no route runs any more are let go: uploads can
        // be deleted and new ones made, and compiled code is megabytes. A
        // batch still running one holds its own handle; one routed to it
        // again compiles it again (from the disk cache, where there is one).
        let used: HashSet<&str> = rows
            .iter()
            .flat_map(|r| [Some(r.transform.as_str()), r.shadow_transform.as_deref()])
            .flatten()
            .collect();
        self.transforms.lock().unwrap().retain(|reference, _| {
            reference.starts_with(BUILTIN_PREFIX) || used.contains(reference.as_str())
        });
        info!(routes = n, version, "routing table loaded");
        Ok(n)
    }

    /// Returns whether the batch's brand leases were given back with it
    /// (the event log does so in its recording transaction).
    async fn process(&self, rows: Vec<InboxRow>) -> Result<bool, StepError> {
        let (table, ceilings) = {
            let routes = self.routes.read().unwrap();
            (routes.table.clone(), routes.ceilings.clone())
        };
        // What each row runs, under which limits: its route's, held to its
        // workspace's ceilings (whoever made the route).
        let mut plans: Vec<Plan> = rows
            .iter()
            .map(|row| {
                let route =
                    table.resolve(&row.provider, &row.workspace_id, &row.brand_id, &row.topic);
                let limits = match route {
                    Some(r) => r.limits.apply(&self.cfg.limits),
                    None => self.cfg.limits.clone(),
                };
                Plan {
                    route_id: route.map(|r| r.id),
                    reference: route.map_or_else(
                        || {
                            self.providers
                                .default_transform(&row.provider)
                                .unwrap_or(DEFAULT_TRANSFORM)
                                .to_string()
                        },
                        |r| r.transform.clone(),
                    ),
                    shadow: route.and_then(|r| r.shadow.clone()),
                    config: route.map_or_else(|| Arc::from("{}"), |r| r.config.clone()),
                    limits: ceilings.for_workspace(&row.workspace_id).clamp(&limits),
                }
            })
            .collect();
        let mut rows = rows;
        let keep = fitting(
            rows.iter()
                .zip(&plans)
                .map(|(row, plan)| reservation(row, &plan.limits, plan.shadow.is_some())),
            self.cfg.batch_bytes,
        );
        if keep < rows.len() {
            // Later rows in id order, so every brand still goes in order:
            // what is kept of it comes before what waits.
            let deferred: Vec<i64> = rows[keep..].iter().map(|r| r.id).collect();
            self.store.defer(&deferred).await?;
            debug!(
                kept = keep,
                deferred = deferred.len(),
                "batch cut to its memory budget"
            );
            rows.truncate(keep);
            plans.truncate(keep);
        }
        let rows: Vec<Arc<InboxRow>> = rows.into_iter().map(Arc::new).collect();
        // One span per row, open until its outcome is decided. The intake
        // request ran in another task (or process), so the stored trace_id is
        // what joins them: the request's span carries the same value.
        // For the collector the same value is the trace id itself.
        let row_spans: Vec<Span> = rows
            .iter()
            .map(|row| {
                let span = info_span!("dispatch.row", inbox_id = row.id, trace_id = %row.trace_id,
                    provider = %row.provider, topic = %row.topic, brand_id = %row.brand_id,
                    attempt = row.attempts, outcome = tracing::field::Empty);
                crate::support::telemetry::continue_trace(&span, &row.trace_id);
                span
            })
            .collect();

        // Transforms run concurrently on the blocking pool; results are
        // awaited in inbox order so that publishing keeps that order.
        let mut running = Vec::with_capacity(rows.len());
        // What each row's attempt ran, recorded with its outcome.
        let mut tried: Vec<Tried> = Vec::with_capacity(rows.len());
        for ((row, row_span), plan) in rows.iter().zip(&row_spans).zip(plans) {
            let Plan {
                route_id,
                reference,
                shadow: shadow_ref,
                config,
                limits,
            } = plan;
            let transform = match self.transform(&reference).await {
                Ok(t) => {
                    tried.push(Tried {
                        route_id,
                        transform: Some(t.name().into()),
                        transform_digest: Some(t.digest().into()),
                    });
                    t
                }
                Err(reason) => {
                    tried.push(Tried {
                        route_id,
                        transform: Some(reference.clone()),
                        transform_digest: None,
                    });
                    running.push(Err(DeadLetter {
                        reason_code: "transform_unavailable".into(),
                        reason,
                        transform: Some(reference),
                        transform_digest: None,
                    }));
                    continue;
                }
            };
            // A shadow that cannot load is skipped: it must never affect the
            // primary's outcome.
            let shadow = match shadow_ref {
                Some(r) => match self.transform(&r).await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        // Debug-formatted: a load error can quote names
                        // from the component, which its author chose.
                        warn!(shadow = %r, error = ?e, "shadow transform unavailable");
                        None
                    }
                },
                None => None,
            };
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let row = row.clone();
            let span = info_span!(parent: row_span, "transform", inbox_id = row.id,
                trace_id = %row.trace_id, transform = transform.name(),
                outcome = tracing::field::Empty);
            running.push(Ok(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _enter = span.enter();
                let input = input_of(&row);
                let started = Instant::now();
                let result = transform.call(&input, &config, &limits);
                crate::support::metrics::transform_ran(
                    transform.name(),
                    result.is_ok(),
                    started.elapsed(),
                );
                span.record(
                    "outcome",
                    result.as_ref().map_or_else(|e| e.code(), |_| "ok"),
                );
                let shadow = shadow.map(|s| {
                    let shadow_result = s.call(&input, &config, &limits);
                    shadow::compare(&row, &transform, &result, &s, &shadow_result)
                });
                Ran {
                    transform,
                    result,
                    shadow,
                }
            })));
        }

        let mut verdicts = Vec::with_capacity(rows.len());
        let mut shadow_runs = Vec::new();
        for (row, job) in rows.iter().zip(running) {
            let verdict = match job {
                Err(letter) => self.dead(row, letter),
                Ok(handle) => match handle.await.map(|ran| {
                    shadow_runs.extend(ran.shadow);
                    (ran.transform, ran.result)
                }) {
                    Ok((t, Ok(events))) => self.records(row, &t, events),
                    Ok((t, Err(e))) => self.dead(
                        row,
                        DeadLetter {
                            reason_code: e.code().into(),
                            reason: e.to_string(),
                            transform: Some(t.name().into()),
                            transform_digest: Some(t.digest().into()),
                        },
                    ),
                    Err(join) => self.dead(
                        row,
                        DeadLetter {
                            reason_code: "internal".into(),
                            reason: format!("transform task failed: {join}"),
                            transform: None,
                            transform_digest: None,
                        },
                    ),
                },
            };
            verdicts.push(verdict);
        }

        // Bookkeeping only: losing a shadow count must not hold up delivery.
        // Recorded before the rows finish, so that a finished row's shadow
        // result is always visible (a crash in between counts it twice).
        if !shadow_runs.is_empty()
            && let Err(e) = self.store.record_shadow_runs(&shadow_runs).await
        {
            warn!(error = %e, "shadow results not recorded");
        }

        // One send for the whole batch, in order.
        let mut batch: Vec<Record> = Vec::new();
        let mut spans = Vec::with_capacity(verdicts.len());
        for v in &mut verdicts {
            let start = batch.len();
            match v {
                Verdict::Events(records) => batch.append(records),
                Verdict::Dead(_, Some(record)) => batch.push(record.clone()),
                Verdict::Dead(_, None) => {}
            }
            spans.push(start..batch.len());
        }
        // A record's parent is its row's span when that is exported (the
        // Kafka sink makes its produce span a child of it, and the event log
        // keeps it); otherwise the stand-in the record was built with.
        for (range, row_span) in spans.iter().zip(&row_spans) {
            if let Some(parent) = crate::support::telemetry::traceparent(row_span) {
                for record in &mut batch[range.clone()] {
                    record.set_header(crate::pipeline::publish::TRACEPARENT, &parent);
                }
            }
        }
        // The embedded event log lives in the inbox's database: the records
        // are appended in the transaction that also records the rows'
        // outcomes, one write turn and one commit instead of two. Its
        // results are all delivered or all transient, so the outcomes it
        // records are the ones decided below. The brand leases are given
        // back in it as well, one commit fewer per batch. If it fails,
        // nothing is recorded and the rows are decided as with any sink's
        // failure.
        let mut recorded = false;
        let results = if batch.is_empty() && self.sink.event_log().is_none() {
            Vec::new()
        } else {
            // The batch serves many rows (many traces): linked to each
            // rather than a child of one.
            let publish = info_span!("publish", records = batch.len(), sink = self.sink.name());
            for row_span in &row_spans {
                publish.follows_from(row_span);
            }
            let started = Instant::now();
            let results = match self.sink.event_log() {
                Some(log) => {
                    let logged: Vec<Logged> = rows
                        .iter()
                        .zip(&verdicts)
                        .zip(&spans)
                        .map(|((row, verdict), span)| Logged {
                            row,
                            records: span.clone(),
                            letter: match verdict {
                                Verdict::Events(_) => None,
                                Verdict::Dead(letter, _) => Some(letter),
                            },
                        })
                        .collect();
                    match log
                        .log_and_finish_tried(&batch, &logged, &tried, Some(&self.cfg.replica))
                        .instrument(publish)
                        .await
                    {
                        Ok(deliveries) => {
                            recorded = true;
                            deliveries.into_iter().map(Ok).collect()
                        }
                        Err(e) => crate::pipeline::publish::all_transient(&batch, e),
                    }
                }
                None => self.sink.send(&batch).instrument(publish).await,
            };
            // Each row's records are one range of the batch: events, or its
            // dead-letter copy.
            let acked = |range: std::ops::Range<usize>| {
                results[range].iter().filter(|r| r.is_ok()).count() as u64
            };
            let acked_events: u64 = verdicts
                .iter()
                .zip(&spans)
                .filter(|(v, _)| matches!(v, Verdict::Events(_)))
                .map(|(_, range)| acked(range.clone()))
                .sum();
            let acked_all = acked(0..results.len());
            crate::support::metrics::published(
                self.sink.name(),
                started.elapsed(),
                acked_events,
                acked_all - acked_events,
            );
            results
        };

        let mut finished = Vec::new();
        let mut finished_tried = Vec::new();
        let mut retry = Vec::new();
        let mut transient: Option<String> = None;
        for ((((row, verdict), span), row_span), row_tried) in rows
            .iter()
            .zip(verdicts)
            .zip(spans)
            .zip(&row_spans)
            .zip(&tried)
        {
            let _in_row = row_span.enter();
            let mut deliveries: Vec<Delivery> = Vec::new();
            let mut failure: Option<&PublishError> = None;
            for r in &results[span] {
                match r {
                    Ok(d) => deliveries.push(d.clone()),
                    Err(e) => {
                        // A transient failure outranks a permanent one: retry
                        // before deciding anything about the webhook.
                        if failure.is_none() || matches!(e, PublishError::Transient(_)) {
                            failure = Some(e);
                        }
                    }
                }
            }
            match (failure, verdict) {
                (Some(PublishError::Transient(e)), _) => {
                    row_span.record("outcome", "retry");
                    retry.push((row.as_ref(), Some(row_tried)));
                    transient.get_or_insert_with(|| e.clone());
                }
                (Some(PublishError::Permanent(e)), Verdict::Events(_)) => {
                    row_span.record("outcome", "dead_letter");
                    finished_tried.push(row_tried.clone());
                    finished.push((
                        row.as_ref(),
                        Outcome::Dead {
                            deliveries,
                            letter: DeadLetter {
                                reason_code: "publish_rejected".into(),
                                reason: format!("the sink rejected the event: {e}"),
                                transform: None,
                                transform_digest: None,
                            },
                        },
                    ))
                }
                (Some(PublishError::Permanent(e)), Verdict::Dead(mut letter, _)) => {
                    row_span.record("outcome", "dead_letter");
                    letter
                        .reason
                        .push_str(&format!(" (dead-letter topic rejected it too: {e})"));
                    finished.push((row.as_ref(), Outcome::Dead { deliveries, letter }));
                    finished_tried.push(row_tried.clone());
                }
                (None, Verdict::Events(_)) => {
                    row_span.record("outcome", "published");
                    debug!(inbox_id = row.id, events = deliveries.len(), "published");
                    finished.push((row.as_ref(), Outcome::Published(deliveries)));
                    finished_tried.push(row_tried.clone());
                }
                (None, Verdict::Dead(letter, _)) => {
                    row_span.record("outcome", "dead_letter");
                    // The reason quotes the guest (its error, its stderr):
                    // Debug-formatted, so its newlines stay escaped and it
                    // cannot forge log lines.
                    warn!(inbox_id = row.id, trace_id = %row.trace_id, code = %letter.reason_code,
                        reason = ?letter.reason, "webhook dead-lettered");
                    finished.push((row.as_ref(), Outcome::Dead { deliveries, letter }));
                    finished_tried.push(row_tried.clone());
                }
            }
        }
        if !recorded && !finished.is_empty() {
            self.store.finish_tried(&finished, &finished_tried).await?;
        }
        if !finished.is_empty() {
            // Counted once recorded: a crash before this retries the rows,
            // and they are counted then.
            let now = store::now_ms();
            for (row, outcome) in &finished {
                match outcome {
                    Outcome::Published(_) => {
                        crate::support::metrics::end_to_end(&row.provider, row.received_at, now)
                    }
                    Outcome::Dead { letter, .. } => {
                        crate::support::metrics::dead_lettered(&letter.reason_code)
                    }
                }
            }
            for provider in self.providers.iter() {
                provider.after_publish(&self.store, &finished).await;
            }
        }
        if let Some(error) = transient {
            let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(1);
            let delay = backoff_for(attempts, self.cfg.min_backoff, self.cfg.max_backoff);
            self.store
                .release(&retry, store::now_ms() + delay.as_millis() as i64, &error)
                .await?;
            crate::support::metrics::publish_retried(self.sink.name(), retry.len() as u64);
            return Err(StepError::Sink(error));
        }
        Ok(recorded)
    }

    fn records(&self, row: &InboxRow, t: &Transform, events: Vec<transform::Event>) -> Verdict {
        let id = TransformId {
            name: t.name(),
            digest: t.digest(),
        };
        match event::platform_records(row, &self.topics, &id, &events) {
            Ok(records) => Verdict::Events(records),
            Err((index, err)) => self.dead(
                row,
                DeadLetter {
                    reason_code: "invalid_output".into(),
                    reason: format!("event {index} cannot be enveloped: {err}"),
                    transform: Some(t.name().into()),
                    transform_digest: Some(t.digest().into()),
                },
            ),
        }
    }

    fn dead(&self, row: &InboxRow, letter: DeadLetter) -> Verdict {
        let record = self
            .sink
            .has_dlq_topic()
            .then(|| event::dead_letter_record(row, &self.topics, &letter));
        Verdict::Dead(letter, record)
    }

    /// A loaded transform by reference, compiling stored components on first
    /// use. Versions are immutable, so the cache never needs invalidating.
    async fn transform(&self, reference: &str) -> Result<Transform, String> {
        if let Some(t) = self.transforms.lock().unwrap().get(reference) {
            return Ok(t.clone());
        }
        if reference.starts_with(BUILTIN_PREFIX) {
            return Err(format!("no built-in transform named {reference:?}"));
        }
        let (name, bytes) = self
            .store
            .transform_component(reference)
            .await
            .map_err(|e| format!("loading transform {reference}: {e}"))?
            .ok_or_else(|| format!("no stored transform with digest {reference}"))?;
        let runtime = self.runtime.clone();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&name, &bytes))
            .await
            .map_err(|e| format!("compiling transform {reference}: {e}"))?
            .map_err(|e| format!("transform {reference} does not load: {e}"))?;
        self.transforms
            .lock()
            .unwrap()
            .insert(reference.to_string(), loaded.clone());
        Ok(loaded)
    }
}

/// What one claimed row will run, and under which limits.
struct Plan {
    /// The route that chose the transform; None: the provider's default.
    route_id: Option<i64>,
    reference: String,
    shadow: Option<String>,
    config: Arc<str>,
    limits: Limits,
}

/// The most a row's transform call can make the dispatcher hold, in bytes:
/// its output budget (each `unchanged` event but one counts a copy of the
/// body) and the free copy, an envelope per event it may emit, a shadow's
/// output beside it, and the dead-letter record's copy of the body.
fn reservation(row: &InboxRow, limits: &Limits, shadowed: bool) -> usize {
    let output = transform::output::output_bound(limits, row.body.len());
    let envelopes = limits
        .max_events
        .saturating_mul(event::envelope_overhead(row));
    let shadow = if shadowed { output } else { 0 };
    output
        .saturating_add(envelopes)
        .saturating_add(shadow)
        .saturating_add(row.body.len())
}

/// How many of the rows, in order, fit `budget` together: at least one,
/// so that a row too large for any batch still runs, alone.
fn fitting(reservations: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for r in reservations {
        total = total.saturating_add(r);
        if n > 0 && total > budget {
            break;
        }
        n += 1;
    }
    n
}

/// What a blocking transform task hands back.
struct Ran {
    transform: Transform,
    result: Result<Vec<transform::Event>, transform::TransformError>,
    shadow: Option<ShadowRun>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("sink unavailable: {0}")]
    Sink(String),
}

/// The replica name used when none is configured: the host name and the
/// port it listens on, unique among processes that share a database as long
/// as they run on different hosts or ports, and the same again after a
/// restart, so that a restarted replica resumes its own brands at once.
pub fn default_replica_name(port: Option<u16>) -> String {
    // Read rather than asked of libc: no unsafe code for a name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// The transform input for a stored webhook: the account is the shop
/// domain, the delivery the webhook id, occurred-at the triggered-at time.
pub fn input_of(row: &InboxRow) -> transform::Input<'_> {
    transform::Input {
        provider: &row.provider,
        topic: &row.topic,
        account_id: &row.account,
        workspace_id: &row.workspace_id,
        brand_id: &row.brand_id,
        api_version: row.api_version.as_deref(),
        delivery_id: &row.webhook_id,
        occurred_at: row.occurred_at.as_deref(),
        event_id: row.event_id.as_deref(),
        headers: &row.headers,
        body: &row.body,
    }
}

/// Exponential in the number of attempts, capped.
fn backoff_for(attempts: i64, min: Duration, max: Duration) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    min.saturating_mul(1u32 << exp.min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_rows_that_fit_its_budget_and_at_least_one() {
        assert_eq!(fitting([10, 10, 10], 30), 3);
        assert_eq!(fitting([10, 10, 10], 25), 2);
        assert_eq!(fitting([100, 1], 10), 1, "the first row always runs");
        assert_eq!(fitting([], 10), 0);
    }

    #[test]
    fn a_rows_reservation_covers_copies_of_its_body_and_its_envelopes() {
        let row = InboxRow {
            id: 1,
            connection_id: "c".into(),
            provider: "shopify".into(),
            workspace_id: "w".into(),
            brand_id: "b".into(),
            webhook_id: "wh".into(),
            topic: "orders/create".into(),
            account: "s.myshopify.com".into(),
            api_version: None,
            occurred_at: None,
            event_id: None,
            trace_id: "t".into(),
            headers: vec![],
            body: vec![b' '; 256 << 10],
            received_at: 0,
            attempts: 1,
        };
        let limits = Limits::default();
        let r = reservation(&row, &limits, false);
        // 1 MiB of output and a free copy of the body, 100 envelopes, the
        // body once more.
        assert!(r >= (1 << 20) + 100 * 1024 + (512 << 10), "{r}");
        assert!(r < 2 << 20, "{r}");
        assert_eq!(
            reservation(&row, &limits, true) - r,
            limits.output_bytes + row.body.len(),
            "a shadow's output is held too"
        );
        // The defaults: a whole batch of 64 fits the default budget.
        assert_eq!(fitting(std::iter::repeat_n(r, 64), DEFAULT_BATCH_BYTES), 64);
    }

    #[test]
    fn a_reload_that_read_an_older_version_does_not_replace_a_newer_table() {
        let at = |version| Routes {
            table: Arc::default(),
            ceilings: Arc::new(CeilingTable::new(Default::default(), &[])),
            version,
            checked: Instant::now(),
        };
        let mut routes = at(5);
        assert!(!routes.install(at(4)));
        assert_eq!(routes.version, 5);
        assert!(routes.install(at(5)), "the same version is as new");
        assert!(routes.install(at(6)));
        assert_eq!(routes.version, 6);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(backoff_for(1, min, max), min);
        assert_eq!(backoff_for(2, min, max), Duration::from_millis(200));
        assert_eq!(backoff_for(50, min, max), max);
    }
}
