//! `ionflux-gateway bench`: a load generator that sets itself up.
//!
//! It connects a handful of brands with secrets it chose (in the database of
//! the gateway under test, or of one it starts in-process), signs real
//! Shopify sample payloads as Shopify does, sends them at a fixed rate (open
//! loop) or flat out, and reports acked/s, ack latency, errors, end-to-end
//! lag to the sink and the gateway's peak RSS. With `bare`, the same client
//! also drives a bare HMAC-verifying handler in the same process: the upper
//! bound the gateway is compared with.
//!
//! The pieces: [`payloads`] (what is sent), [`load`] (how: the scheduler and
//! the HTTP/1.1 workers), [`lag`] (when it reached the sink), [`bare`] (the
//! upper bound) and [`report`] (what is said about it).

pub mod bare;
pub mod lag;
pub mod load;
pub mod payloads;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::config::{self, Settings};
use crate::pipeline::connection;
use crate::pipeline::event::Topics;
use crate::providers::shopify::{self, headers as webhook};
use crate::store::{Store, StoreError};
use crate::support::vault::{Secret, Vault};
pub use load::Rate;
pub use payloads::SizeRange;
pub use report::Report;
use report::{CpuReport, LagReport, Latency, Machine, PayloadStats, RssReport, RunReport};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("payloads: {0}")]
    Payloads(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("connecting the bench brands: {0}")]
    Connection(#[from] connection::ConnectionError),
    #[error(transparent)]
    Vault(#[from] crate::support::vault::VaultError),
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("starting the gateway: {0}")]
    Start(#[from] crate::server::StartError),
    #[error("target {0:?}: {1}")]
    Target(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the load generator failed: {0}")]
    Load(String),
}

/// The gateway to measure.
pub enum Target {
    /// Started in-process from these settings: on `database_url` when
    /// given (e.g. PostgreSQL), else on a temporary SQLite file.
    Spawn {
        settings: Box<Settings>,
        database_url: Option<String>,
    },
    /// Already running at `url`, on the database behind `store`, whose
    /// secrets `vault` opens; `topics` is its topic template.
    Url {
        url: String,
        store: Store,
        vault: Arc<Vault>,
        topics: Topics,
        database: String,
    },
}

pub struct Options {
    /// None: only the bare handler.
    pub gateway: Option<Target>,
    /// Also drive the bare handler (after the gateway, if any).
    pub bare: bool,
    pub brands: usize,
    pub payloads_dir: Option<PathBuf>,
    pub payload_size: Option<SizeRange>,
    pub rate: Rate,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Kafka to consume events from (and, with `Spawn`, to publish to).
    pub kafka_brokers: Option<String>,
    /// The gateway's process, when it is not this one: for its RSS and CPU.
    pub gateway_pid: Option<u32>,
    /// Measure the end-to-end lag.
    pub lag: bool,
    /// How long to wait after the window for the last events to reach the
    /// sink; the wait also ends once no new event came for a tenth of it.
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    /// Worker threads of the load generator's own runtime.
    pub client_threads: usize,
    pub max_body_bytes: usize,
}

/// Runs every phase the options ask for.
pub async fn run(opts: Options) -> Result<Report, BenchError> {
    let dir = match &opts.payloads_dir {
        Some(d) => d.clone(),
        None => payloads::default_dir().ok_or_else(|| {
            BenchError::Payloads(
                "no sample payloads found (../shared/data/shopify-webhooks); pass --payloads DIR"
                    .into(),
            )
        })?,
    };
    let loaded = payloads::load(&dir, opts.payload_size)?;
    let mut report = Report {
        machine: Machine::read(),
        gateway: None,
        bare: None,
        gateway_to_bare: None,
    };
    let Options {
        gateway,
        bare: with_bare,
        ..
    } = &opts;
    if let Some(target) = gateway {
        report.gateway = Some(run_gateway(target, &opts, &loaded).await?);
    }
    if *with_bare {
        report.bare = Some(run_bare(&opts, &loaded).await?);
    }
    if let (Some(g), Some(b)) = (&report.gateway, &report.bare)
        && b.throughput_acked_per_s > 0.0
    {
        report.gateway_to_bare = Some(g.throughput_acked_per_s / b.throughput_acked_per_s);
    }
    Ok(report)
}

/// A short random tag that keeps this run's shops, workspace and webhook
/// ids apart from any other run's on the same database or broker.
fn run_tag() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

/// The brands a run sends as: one workspace of its own, so that its event
/// topic (and event log topic) holds only this run's events.
struct Brands {
    workspace: String,
    endpoints: Vec<load::Endpoint>,
    brand_ids: Vec<String>,
}

async fn connect_brands(
    store: &Store,
    vault: &Vault,
    n: usize,
    tag: &str,
    loaded: &payloads::Loaded,
) -> Result<Brands, BenchError> {
    let workspace = uuid::Uuid::new_v4().to_string();
    let mut endpoints = Vec::with_capacity(n);
    let mut brand_ids = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let brand = uuid::Uuid::new_v4().to_string();
        let shop = format!("bench-{tag}-{i}.myshopify.com");
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let created = shopify::add_connection(
            store,
            vault,
            &shop,
            &workspace,
            &brand,
            &Secret::from(secret.clone()),
        )
        .await?;
        endpoints.push(endpoint(
            created.webhook_path,
            &shop,
            secret.as_bytes(),
            loaded,
        ));
        brand_ids.push(brand);
    }
    Ok(Brands {
        workspace,
        endpoints,
        brand_ids,
    })
}

fn endpoint(path: String, shop: &str, secret: &[u8], loaded: &payloads::Loaded) -> load::Endpoint {
    load::Endpoint {
        path,
        shop: HeaderValue::from_str(shop).expect("a shop domain is a header value"),
        signatures: loaded
            .payloads
            .iter()
            .map(|p| {
                HeaderValue::from_str(&webhook::sign(secret, &p.body)).expect("base64 is ASCII")
            })
            .collect(),
    }
}

/// The topics this run's events land in.
fn event_topics(topics: &Topics, brands: &Brands) -> Vec<String> {
    let mut out: Vec<String> = brands
        .brand_ids
        .iter()
        .map(|b| {
            topics
                .events
                .replace("{provider}", shopify::ID)
                .replace("{workspace_id}", &brands.workspace)
                .replace("{brand_id}", b)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn run_gateway(
    target: &Target,
    opts: &Options,
    loaded: &payloads::Loaded,
) -> Result<RunReport, BenchError> {
    let tag = run_tag();
    match target {
        Target::Spawn {
            settings,
            database_url,
        } => {
            let mut settings = settings.as_ref().clone();
            // Held to the end of the phase: the database lives in it.
            let temp = match database_url {
                Some(url) => {
                    settings.database_url = url.clone();
                    None
                }
                None => {
                    let dir = tempfile::Builder::new()
                        .prefix("ionflux-bench-")
                        .tempdir()?;
                    settings.database_url =
                        format!("sqlite://{}", dir.path().join("bench.db").display());
                    settings.cache_dir = dir.path().join("cache").display().to_string();
                    Some(dir)
                }
            };
            settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            // The load goes to the public listener only; a second fixed
            // port would only collide with a gateway already serving.
            settings.admin_listen = "off".into();
            if let Some(brokers) = &opts.kafka_brokers {
                settings.kafka.brokers = brokers.clone();
            }
            let database = if temp.is_some() {
                "sqlite (temporary file, synchronous=FULL)".to_string()
            } else {
                config::redact_url_password(&settings.database_url)
            };
            let vault = Arc::new(Vault::from_spec(&format!(
                "bench:{}",
                Vault::generate_key()
            ))?);
            let running = crate::server::start(settings.server_config(vault.clone())?).await?;
            let result = async {
                let brands =
                    connect_brands(&running.store, &vault, opts.brands, &tag, loaded).await?;
                let sink = if opts.kafka_brokers.is_some() {
                    "kafka"
                } else {
                    "event_log"
                };
                let lag = if !opts.lag {
                    None
                } else if let Some(brokers) = &opts.kafka_brokers {
                    Some(lag::Source::Kafka {
                        brokers: brokers.clone(),
                        topics: event_topics(&settings.topics(), &brands),
                    })
                } else {
                    // A pool of its own: polling must not take the
                    // gateway's connections.
                    Some(lag::Source::EventLog(
                        Store::connect_with(&settings.database_url, 1).await?,
                    ))
                };
                let phase = Phase {
                    label: "gateway",
                    target: "in-process gateway".into(),
                    sink: Some(sink.into()),
                    database: Some(database),
                    addr: running.addr,
                    endpoints: brands.endpoints,
                    lag,
                    process: Process::This,
                    id_prefix: format!("bench-{tag}"),
                };
                phase.run(opts, loaded).await
            }
            .await;
            running.stop().await;
            drop(temp);
            result
        }
        Target::Url {
            url,
            store,
            vault,
            topics,
            database,
        } => {
            let addr = resolve(url).await?;
            let brands = connect_brands(store, vault, opts.brands, &tag, loaded).await?;
            let lag = if !opts.lag {
                None
            } else if let Some(brokers) = &opts.kafka_brokers {
                Some(lag::Source::Kafka {
                    brokers: brokers.clone(),
                    topics: event_topics(topics, &brands),
                })
            } else {
                Some(lag::Source::EventLog(store.clone()))
            };
            let phase = Phase {
                label: "gateway",
                target: url.clone(),
                sink: lag.as_ref().map(|l| l.name().to_string()),
                database: Some(database.clone()),
                addr,
                endpoints: brands.endpoints,
                lag,
                process: opts.gateway_pid.map_or(Process::Unknown, Process::Other),
                id_prefix: format!("bench-{tag}"),
            };
            phase.run(opts, loaded).await
        }
    }
}

async fn run_bare(opts: &Options, loaded: &payloads::Loaded) -> Result<RunReport, BenchError> {
    let tag = run_tag();
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let server = bare::Bare::start(secret.as_bytes(), opts.max_body_bytes).await?;
    // As many paths and shops as the gateway gets, all under one secret.
    let endpoints = (0..opts.brands.max(1))
        .map(|i| {
            endpoint(
                connection::webhook_path(shopify::ID, &format!("bare{i}")),
                &format!("bench-{tag}-{i}.myshopify.com"),
                secret.as_bytes(),
                loaded,
            )
        })
        .collect();
    let phase = Phase {
        label: "bare",
        target: "bare handler (HMAC verify, no storage)".into(),
        sink: None,
        database: None,
        addr: server.addr,
        endpoints,
        lag: None,
        process: Process::This,
        id_prefix: format!("bench-{tag}"),
    };
    let result = phase.run(opts, loaded).await;
    server.stop().await;
    result
}

/// `http://host:port[/…]` → the address to connect to.
async fn resolve(url: &str) -> Result<SocketAddr, BenchError> {
    let err = |m: &str| BenchError::Target(url.to_string(), m.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err("only http:// targets are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(authority.as_str())
        .await
        .map_err(|e| err(&e.to_string()))?
        .next()
        .ok_or_else(|| err("the host does not resolve"))
}

/// One target, measured.
struct Phase {
    label: &'static str,
    target: String,
    sink: Option<String>,
    database: Option<String>,
    addr: SocketAddr,
    endpoints: Vec<load::Endpoint>,
    lag: Option<lag::Source>,
    process: Process,
    id_prefix: String,
}

/// Where the server under test runs, for its RSS and CPU.
#[derive(Clone, Copy)]
enum Process {
    /// In this process, beside the load generator.
    This,
    Other(u32),
    /// Elsewhere, pid not given: not measured.
    Unknown,
}

/// How often the progress bar and the RSS sample are refreshed.
const TICK: Duration = Duration::from_millis(100);

impl Phase {
    async fn run(self, opts: &Options, loaded: &payloads::Loaded) -> Result<RunReport, BenchError> {
        let base = Instant::now();
        let load_average_before = report::load_average();
        let (pid, measured) = match self.process {
            Process::This => (None, true),
            Process::Other(pid) => (Some(pid), true),
            Process::Unknown => (None, false),
        };
        let in_process = matches!(self.process, Process::This);
        if in_process {
            report::reset_own_hwm();
        }
        let (stop_lag, stop_rx) = watch::channel(false);
        let (seen_tx, seen_rx) = watch::channel(0u64);
        let lag_source_name = self.lag.as_ref().map(lag::Source::name);
        let collector = self.lag.map(|source| {
            tokio::spawn(lag::collect(
                source,
                format!("{}-m-", self.id_prefix),
                base,
                seen_tx,
                stop_rx,
            ))
        });

        let live = Arc::new(load::Live::default());
        let plan = load::Plan {
            addr: self.addr,
            host: HeaderValue::from_str(&self.addr.to_string()).expect("an address is ASCII"),
            endpoints: self.endpoints,
            payloads: loaded.payloads.clone(),
            rate: opts.rate,
            connections: opts.connections,
            warmup: opts.warmup,
            duration: opts.duration,
            request_timeout: opts.request_timeout,
            id_prefix: self.id_prefix.clone(),
            base,
        };
        let bar = progress_bar(self.label, opts.warmup + opts.duration);
        let cpu_before = report::cpu_seconds(pid).filter(|_| measured);
        let started = Instant::now();
        let threads = opts.client_threads.max(1);
        let driver_live = live.clone();
        let mut driver = tokio::task::spawn_blocking(move || {
            // The client's own scheduler: an in-process gateway's tasks and
            // the client's do not queue behind each other.
            let rt = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            }?;
            Ok::<_, std::io::Error>(rt.block_on(load::drive(plan, driver_live)))
        });
        let mut peak_rss_kib = 0u64;
        let mut last_acked = 0u64;
        let mut last_tick = Instant::now();
        let outcome = loop {
            tokio::select! {
                done = &mut driver => break done,
                _ = tokio::time::sleep(TICK) => {}
            }
            let now_us = base.elapsed().as_micros() as u64;
            let window_start = live.window_start_us.load(Ordering::Relaxed);
            let in_window = window_start > 0
                && now_us >= window_start
                && now_us < live.window_end_us.load(Ordering::Relaxed);
            if in_window
                && measured
                && let Some((rss, _)) = report::rss_kib(pid)
            {
                peak_rss_kib = peak_rss_kib.max(rss);
            }
            let acked = live.acked.load(Ordering::Relaxed);
            let rate = (acked - last_acked) as f64 / last_tick.elapsed().as_secs_f64();
            last_acked = acked;
            last_tick = Instant::now();
            bar.set_position(started.elapsed().as_millis() as u64);
            bar.set_message(format!(
                "{} {:>7.0} acked/s  {} errors",
                if in_window { "measuring" } else { "warmup   " },
                rate,
                live.errors.load(Ordering::Relaxed)
            ));
        };
        let outcome = outcome
            .map_err(|e| BenchError::Load(e.to_string()))?
            .map_err(|e| BenchError::Load(e.to_string()))?;
        let wall = started.elapsed();
        let cpu = match (cpu_before, report::cpu_seconds(pid)) {
            (Some(a), Some(b)) => Some(CpuReport {
                pid: pid.unwrap_or_else(std::process::id),
                includes_load_generator: in_process,
                cpu_s: b - a,
                cores_busy: (b - a) / wall.as_secs_f64(),
            }),
            _ => None,
        };
        let hwm = report::rss_kib(pid).filter(|_| measured).map(|(rss, hwm)| {
            peak_rss_kib = peak_rss_kib.max(rss);
            hwm
        });
        let window_end = outcome.window_start + opts.duration;

        let lag = match collector {
            None => None,
            Some(collector) => {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {msg}")
                        .expect("a valid template"),
                );
                let deadline = Instant::now() + opts.drain_timeout;
                let stall = (opts.drain_timeout / 10).max(Duration::from_secs(2));
                let mut seen_rx = seen_rx;
                let mut last_change = Instant::now();
                let mut last_seen = *seen_rx.borrow();
                while last_seen < outcome.acked
                    && Instant::now() < deadline
                    && last_change.elapsed() < stall
                {
                    bar.set_message(format!(
                        "waiting for events at the sink: {last_seen}/{}",
                        outcome.acked
                    ));
                    bar.tick();
                    let _ = tokio::time::timeout(TICK, seen_rx.changed()).await;
                    let now_seen = *seen_rx.borrow();
                    if now_seen != last_seen {
                        last_seen = now_seen;
                        last_change = Instant::now();
                    }
                }
                let _ = stop_lag.send(true);
                let seen = collector
                    .await
                    .map_err(|e| BenchError::Load(format!("lag collector: {e}")))?;
                let last = seen.last.unwrap_or(window_end);
                let span = last.saturating_duration_since(outcome.window_start);
                Some(LagReport {
                    source: lag_source_name.unwrap_or("event_log"),
                    expected: outcome.acked,
                    seen: seen.seen,
                    latency_ms: Latency::from_us(&seen.lag),
                    drain_s: last.saturating_duration_since(window_end).as_secs_f64(),
                    events_per_s: if span.is_zero() {
                        0.0
                    } else {
                        seen.seen as f64 / span.as_secs_f64()
                    },
                    errors: seen.errors,
                })
            }
        };
        bar.finish_and_clear();

        let sizes: Vec<usize> = loaded.payloads.iter().map(|p| p.body.len()).collect();
        let errors_total = outcome.errors.values().sum();
        Ok(RunReport {
            target: self.target,
            sink: self.sink,
            database: self.database,
            rate: opts.rate.to_string(),
            loop_kind: match opts.rate {
                Rate::PerSecond(_) => "open loop, latency from each request's due time",
                Rate::Max => "closed loop, latency from each send",
            },
            connections: opts.connections,
            brands: opts.brands.max(1),
            warmup_s: opts.warmup.as_secs_f64(),
            duration_s: opts.duration.as_secs_f64(),
            payloads: PayloadStats {
                count: sizes.len(),
                min_bytes: sizes.iter().copied().min().unwrap_or(0),
                mean_bytes: sizes.iter().sum::<usize>() / sizes.len().max(1),
                max_bytes: sizes.iter().copied().max().unwrap_or(0),
                skipped_lifecycle: loaded.skipped_lifecycle,
                skipped_size: loaded.skipped_size,
            },
            sent: outcome.sent,
            acked: outcome.acked,
            not_sent: outcome.not_sent,
            errors_total,
            errors: outcome.errors,
            throughput_acked_per_s: outcome.acked as f64
                / outcome.window.max(opts.duration).as_secs_f64().max(1e-9),
            ack_latency_ms: Latency::from_us(&outcome.latency),
            lag,
            rss: hwm.map(|hwm| RssReport {
                pid: pid.unwrap_or_else(std::process::id),
                includes_load_generator: in_process,
                peak_hwm_mib: Some(hwm as f64 / 1024.0),
                peak_sampled_mib: peak_rss_kib as f64 / 1024.0,
            }),
            cpu,
            load_average_before,
        })
    }
}

/// On stderr; indicatif hides it when stderr is not a terminal.
fn progress_bar(label: &str, total: Duration) -> ProgressBar {
    let bar =
        ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {elapsed:>4} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
