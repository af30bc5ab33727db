//! What is the gateway doing? Prometheus metrics, served at `GET /metrics`.
//!
//! Every metric's name, help text and histogram buckets live here, behind one
//! small function each, so that the code being measured stays a one-liner
//! and a name cannot drift between the place that counts and the place that
//! documents. The values go through the `metrics` facade into one
//! process-wide Prometheus recorder, installed by [`install`]; several
//! gateways in one process (the tests) share it, which is why counters are
//! only ever compared before and after, never against absolute values.
//!
//! Labels stay bounded: provider, webhook topic, reason code, transform name,
//! sink, outcome. Never a shop, a brand, an id or a secret. Topic and
//! transform names come from outside (a topic header is not covered by the
//! HMAC, and tenants name their transforms), so [`bounded`] caps how many
//! distinct values each of those labels may take.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const WEBHOOKS_RECEIVED: &str = "ionflux_webhooks_received_total";
pub const WEBHOOKS_VERIFIED: &str = "ionflux_webhooks_verified_total";
pub const WEBHOOKS_REJECTED: &str = "ionflux_webhooks_rejected_total";
pub const WEBHOOKS_ACCEPTED: &str = "ionflux_webhooks_accepted_total";
pub const WEBHOOKS_DUPLICATE: &str = "ionflux_webhooks_duplicate_total";
pub const ACK_SECONDS: &str = "ionflux_webhook_ack_seconds";
pub const INBOX_DEPTH: &str = "ionflux_inbox_depth";
pub const INBOX_OLDEST_AGE: &str = "ionflux_inbox_oldest_pending_age_seconds";
pub const TRANSFORM_SECONDS: &str = "ionflux_transform_duration_seconds";
pub const PUBLISH_SECONDS: &str = "ionflux_publish_duration_seconds";
pub const RECORDS_PUBLISHED: &str = "ionflux_records_published_total";
pub const PUBLISH_RETRIES: &str = "ionflux_publish_retries_total";
pub const DEAD_LETTERS: &str = "ionflux_dead_letters_total";
pub const END_TO_END_SECONDS: &str = "ionflux_end_to_end_seconds";
pub const TOKEN_REFRESHES: &str = "ionflux_token_refreshes_total";
pub const CONNECTIONS_CLOSED: &str = "ionflux_http_connections_closed_total";
pub const BUILD_INFO: &str = "ionflux_build_info";
pub const ROWS_PRUNED: &str = "ionflux_rows_pruned_total";

/// Every `outcome` of [`TOKEN_REFRESHES`] and `reason` of
/// [`CONNECTIONS_CLOSED`]. They are exported at 0 from the start: a counter
/// that first appears at 1 shows no `increase()` in Prometheus, so an alert
/// on the first permanent refresh failure would never fire.
pub const TOKEN_REFRESH_OUTCOMES: &[&str] = &[
    "refreshed",
    "superseded",
    "transient_failure",
    "permanent_failure",
];
pub const CONNECTION_CLOSE_REASONS: &[&str] = &[
    "at_capacity",
    "handshake_timeout",
    "header_timeout",
    "idle_timeout",
    "shutdown_grace",
];

/// From a millisecond (an ack on a warm cache) to the 10 s past which
/// Shopify counts a delivery as failed.
const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A pass-through guest takes tens of microseconds; the default CPU limit
/// is 50 ms, and routes may raise it.
const TRANSFORM_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// One batch to the broker: a few ms with `linger.ms` = 5, up to the
/// message timeout (30 s) when the broker is away.
const PUBLISH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Received → published: sub-second normally, hours through an outage.
const END_TO_END_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21600.0,
];

/// How many distinct values a label fed from outside may take before further
/// ones are counted as `other`. Far above Shopify's topic list, far below
/// what would hurt Prometheus.
const MAX_LABEL_VALUES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("building the Prometheus recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    #[error("another metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder on first call and answers
/// its handle; later calls (another gateway in the same process) share it.
/// Values recorded before the first call are lost, so the server calls this
/// before anything else.
pub fn install() -> Result<&'static PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            build()
                .and_then(|recorder| {
                    let handle = recorder.handle();
                    ::metrics::set_global_recorder(recorder)
                        .map_err(|_| MetricsError::AlreadyInstalled)?;
                    describe();
                    announce_build();
                    zero_fixed_series();
                    Ok(handle)
                })
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The exposition text, or why there is none. The process gauges are read
/// now, so that a scrape sees this moment's CPU, memory and descriptors.
pub fn render() -> Result<String, String> {
    let handle = install()?;
    process_collector().collect();
    Ok(handle.render())
}

/// Reads `process_*` (CPU seconds, resident and virtual memory, open and
/// maximum file descriptors, start time, threads) the way every Prometheus
/// client library names them, so stock dashboards work.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// `ionflux_build_info{version, commit, rustc} 1`: which build each replica
/// runs, to join on or to spot a half-finished rollout. `commit` is set when
/// the build had `IONFLUX_GIT_COMMIT` (the image's build argument); `rustc`
/// comes from the build script.
fn announce_build() {
    let mut labels = vec![("version", env!("CARGO_PKG_VERSION"))];
    if let Some(commit) = option_env!("IONFLUX_GIT_COMMIT").filter(|c| !c.is_empty()) {
        labels.push(("commit", commit));
    }
    if let Some(rustc) = option_env!("IONFLUX_RUSTC_VERSION").filter(|v| !v.is_empty()) {
        labels.push(("rustc", rustc));
    }
    let labels: Vec<::metrics::Label> = labels
        .into_iter()
        .map(|(k, v)| ::metrics::Label::new(k, v))
        .collect();
    gauge!(BUILD_INFO, labels).set(1.0);
}

/// See [`TOKEN_REFRESH_OUTCOMES`].
fn zero_fixed_series() {
    for outcome in TOKEN_REFRESH_OUTCOMES {
        counter!(TOKEN_REFRESHES, "outcome" => *outcome).increment(0);
    }
    for reason in CONNECTION_CLOSE_REASONS {
        counter!(CONNECTIONS_CLOSED, "reason" => *reason).increment(0);
    }
    for table in PRUNED_TABLES {
        counter!(ROWS_PRUNED, "table" => *table).increment(0);
    }
}

/// Drains histogram samples into their buckets. A scrape does this too; the
/// sampler calls it so that memory stays flat when nobody scrapes.
pub fn upkeep() {
    if let Some(Ok(handle)) = HANDLE.get() {
        handle.run_upkeep();
    }
}

fn build() -> Result<metrics_exporter_prometheus::PrometheusRecorder, MetricsError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ACK_SECONDS.into()), ACK_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TRANSFORM_SECONDS.into()), TRANSFORM_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(PUBLISH_SECONDS.into()), PUBLISH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(END_TO_END_SECONDS.into()), END_TO_END_BUCKETS)?;
    Ok(builder.build_recorder())
}

fn describe() {
    describe_counter!(
        ROWS_PRUNED,
        "Rows the retention pruner removed, by table (`inbox_bodies`: bodies replaced by a tombstone)."
    );
    describe_counter!(
        WEBHOOKS_RECEIVED,
        "Webhook requests that reached the intake endpoint, whatever came of them."
    );
    describe_counter!(
        WEBHOOKS_VERIFIED,
        "Webhooks whose HMAC signature matched a secret of their connection."
    );
    describe_counter!(
        WEBHOOKS_REJECTED,
        "Webhook requests refused, by the JSON `code` of the answer."
    );
    describe_counter!(
        WEBHOOKS_ACCEPTED,
        "Webhooks stored in the inbox for the first time (answered 200)."
    );
    describe_counter!(
        WEBHOOKS_DUPLICATE,
        "Webhooks answered 200 without being stored again: their webhook id was seen before."
    );
    describe_histogram!(
        ACK_SECONDS,
        Unit::Seconds,
        "From a webhook request coming in to its 2xx answer (inbox commit included)."
    );
    describe_gauge!(
        INBOX_DEPTH,
        "Webhooks stored and not yet published or dead-lettered."
    );
    describe_gauge!(
        INBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest pending webhook; 0 when none is pending."
    );
    describe_histogram!(
        TRANSFORM_SECONDS,
        Unit::Seconds,
        "One transform call (fresh instance included), by transform name and outcome."
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "One send of a batch to the sink, until the last acknowledgement."
    );
    describe_counter!(
        RECORDS_PUBLISHED,
        "Records the sink acknowledged, events and dead-letter copies."
    );
    describe_counter!(
        PUBLISH_RETRIES,
        "Inbox rows given back for a later attempt after a transient sink failure."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Webhooks recorded as dead letters, by reason code."
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "From a webhook's receipt to its events being published and recorded."
    );
    describe_counter!(
        TOKEN_REFRESHES,
        "Shopify access token refreshes, by outcome."
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        "HTTP connections the server closed on its own, by reason: at_capacity (reset on \
         accept), handshake_timeout, header_timeout, idle_timeout, shutdown_grace."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels name the running build: version, and commit and rustc when known."
    );
    process_collector().describe();
}

/// `value` while fewer than [`MAX_LABEL_VALUES`] distinct values of `kind`
/// have been seen (or it is one of them), else `other`.
fn bounded(kind: &'static str, value: &str) -> String {
    static SEEN: OnceLock<Mutex<HashMap<&'static str, HashSet<String>>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let values = seen.entry(kind).or_default();
    if values.contains(value) {
        return value.to_string();
    }
    if values.len() >= MAX_LABEL_VALUES {
        return "other".into();
    }
    values.insert(value.to_string());
    value.to_string()
}

fn topic(topic: &str) -> String {
    bounded("topic", topic)
}

// ---- intake ----------------------------------------------------------------

pub fn webhook_received(provider: &'static str) {
    counter!(WEBHOOKS_RECEIVED, "provider" => provider).increment(1);
}

pub fn webhook_verified(provider: &str) {
    counter!(WEBHOOKS_VERIFIED, "provider" => bounded("provider", provider)).increment(1);
}

/// `reason` is the JSON `code` the intake answered with.
pub fn webhook_rejected(provider: &'static str, reason: &'static str) {
    counter!(WEBHOOKS_REJECTED, "provider" => provider, "reason" => reason).increment(1);
}

pub fn webhook_stored(provider: &str, webhook_topic: &str, duplicate: bool) {
    let name = if duplicate {
        WEBHOOKS_DUPLICATE
    } else {
        WEBHOOKS_ACCEPTED
    };
    counter!(name, "provider" => bounded("provider", provider), "topic" => topic(webhook_topic))
        .increment(1);
}

pub fn webhook_acked(provider: &'static str, took: Duration) {
    histogram!(ACK_SECONDS, "provider" => provider).record(took.as_secs_f64());
}

// ---- inbox -----------------------------------------------------------------

/// `oldest_received_at`: epoch ms of the oldest pending row, as
/// [`crate::store::Store::backlog`] answers it.
pub fn inbox_backlog(depth: i64, oldest_received_at: Option<i64>, now_ms: i64) {
    gauge!(INBOX_DEPTH).set(depth as f64);
    let age = oldest_received_at.map_or(0, |t| now_ms.saturating_sub(t).max(0));
    gauge!(INBOX_OLDEST_AGE).set(age as f64 / 1000.0);
}

// ---- dispatch --------------------------------------------------------------

pub fn transform_ran(transform: &str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    histogram!(TRANSFORM_SECONDS, "transform" => bounded("transform", transform),
        "outcome" => outcome)
    .record(took.as_secs_f64());
}

/// One sink send, with how many records of each kind it acknowledged.
pub fn published(sink: &'static str, took: Duration, events: u64, dead_letters: u64) {
    histogram!(PUBLISH_SECONDS, "sink" => sink).record(took.as_secs_f64());
    counter!(RECORDS_PUBLISHED, "sink" => sink, "kind" => "event").increment(events);
    counter!(RECORDS_PUBLISHED, "sink" => sink, "kind" => "dead_letter").increment(dead_letters);
    // The sink's retry series exists from its first send on (at 0), so that
    // the first retry after a healthy spell shows as an increase.
    counter!(PUBLISH_RETRIES, "sink" => sink).increment(0);
}

pub fn publish_retried(sink: &'static str, rows: u64) {
    counter!(PUBLISH_RETRIES, "sink" => sink).increment(rows);
}

/// `reason` is the dead letter's reason code (a fixed set: transform error
/// codes, `transform_unavailable`, `invalid_output`, `publish_rejected`, …).
pub fn dead_lettered(reason: &str) {
    counter!(DEAD_LETTERS, "reason" => bounded("reason", reason)).increment(1);
}

pub fn end_to_end(provider: &str, received_at_ms: i64, now_ms: i64) {
    let secs = now_ms.saturating_sub(received_at_ms).max(0) as f64 / 1000.0;
    histogram!(END_TO_END_SECONDS, "provider" => bounded("provider", provider)).record(secs);
}

// ---- tokens ----------------------------------------------------------------

/// `outcome`: `refreshed`, `superseded` (the connection changed meanwhile),
/// `transient_failure` or `permanent_failure`.
pub fn token_refresh(outcome: &'static str) {
    counter!(TOKEN_REFRESHES, "outcome" => outcome).increment(1);
}

// ---- retention -------------------------------------------------------------

/// Every `table` of [`ROWS_PRUNED`].
pub const PRUNED_TABLES: &[&str] = &[
    "inbox",
    "inbox_bodies",
    "inbox_attempts",
    "events",
    "dead_letters",
];

/// `table`: one of [`PRUNED_TABLES`].
pub fn rows_pruned(table: &'static str, rows: u64) {
    if rows > 0 {
        counter!(ROWS_PRUNED, "table" => table).increment(rows);
    }
}

// ---- http --------------------------------------------------------------------

/// `reason`: one of the fixed set [`CONNECTIONS_CLOSED`] describes.
pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_labels_are_capped() {
        for i in 0..MAX_LABEL_VALUES + 10 {
            bounded("test-kind", &format!("v{i}"));
        }
        assert_eq!(bounded("test-kind", "v0"), "v0");
        assert_eq!(bounded("test-kind", "brand-new"), "other");
        // Other kinds have their own allowance.
        assert_eq!(bounded("test-other", "brand-new"), "brand-new");
    }

    #[test]
    fn install_is_shared_and_renders_text() {
        let a = install().expect("recorder installs") as *const _;
        let b = install().expect("second install shares it") as *const _;
        assert_eq!(a, b);
        webhook_rejected("shopify", "invalid_hmac");
        let text = render().unwrap();
        assert!(
            text.contains(
                r#"ionflux_webhooks_rejected_total{provider="shopify",reason="invalid_hmac"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP ionflux_webhooks_rejected_total"),
            "{text}"
        );
    }

    #[test]
    fn build_and_process_metrics_are_exported() {
        let text = render().expect("recorder installs");
        let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
        let build = text
            .lines()
            .find(|l| l.starts_with("ionflux_build_info{"))
            .unwrap_or_else(|| panic!("no build info in\n{text}"));
        assert!(build.contains(&version) && build.ends_with(" 1"), "{build}");
        assert!(
            build.contains("rustc=\""),
            "the build script names the compiler: {build}"
        );
        // What every Prometheus client exports about its process (Linux
        // reads /proc; elsewhere some are missing).
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                let sample = text
                    .lines()
                    .find(|l| l.split_once(' ').is_some_and(|(n, _)| n == name))
                    .unwrap_or_else(|| panic!("{name} missing from\n{text}"));
                let value: f64 = sample.rsplit_once(' ').unwrap().1.parse().unwrap();
                assert!(value >= 0.0, "{sample}");
            }
        }
        for outcome in TOKEN_REFRESH_OUTCOMES {
            let series = format!(r#"{TOKEN_REFRESHES}{{outcome="{outcome}"}}"#);
            assert!(
                text.contains(&series),
                "{series} is exported from the start"
            );
        }
    }
}
