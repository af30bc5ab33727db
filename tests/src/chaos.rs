//! The reliability harness: real gateway processes, a real broker and a real
//! database, faults injected under load, and a count of what came out.
//!
//! Each scenario sends signed webhooks the way Shopify does (one brand's
//! webhooks one after another; anything but a 200 is sent again, by the same
//! webhook id, until it is acknowledged or the run ends), injects its fault,
//! heals it, then reads the output topic from the beginning until every
//! acknowledged webhook is there or the patience runs out. The report counts
//! `sent` (distinct webhooks tried), `acknowledged` (answered 200),
//! `published` (acknowledged ones found on the topic), `duplicates` (records
//! beyond the first per webhook) and `lost` (acknowledged, never published).
//! The promise is `lost = 0`.
//!
//! Everything runs on loopback in a folder of the run's own: a tansu broker
//! behind a TCP proxy (so that an outage is the broker vanishing from the
//! gateway's point of view, while its log survives), and for PostgreSQL a
//! server started from Debian's package in its own data directory (so that
//! it can be restarted without disturbing anything else).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::store::Store;
use ionflux_gateway::support::vault::{Secret, Vault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 of the gateway at random instants, restarted each time.
    Kill,
    /// The broker unreachable for a while, then back.
    BrokerDown,
    /// PostgreSQL stopped hard (immediate mode) and started again.
    PgRestart,
    /// Two replicas on one database behind a balancer; one is killed
    /// mid-stream and stays dead.
    TwoReplicas,
    /// Slowloris connections and a 50 MB body beside normal traffic.
    SlowSenders,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Kill,
        Scenario::BrokerDown,
        Scenario::PgRestart,
        Scenario::TwoReplicas,
        Scenario::SlowSenders,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kill => "kill",
            Scenario::BrokerDown => "broker-down",
            Scenario::PgRestart => "pg-restart",
            Scenario::TwoReplicas => "two-replicas",
            Scenario::SlowSenders => "slow-senders",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// A PostgreSQL restart means nothing on SQLite.
    pub fn applies_to(self, backend: Backend) -> bool {
        self != Scenario::PgRestart || backend == Backend::Postgres
    }
}

/// How hard a run pushes: CI runs `short`, people run `long` by hand.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long the load runs.
    pub load: Duration,
    /// Brands sending at once (each one webhook at a time, in order).
    pub brands: usize,
    /// kill -9s in the kill scenario.
    pub kills: usize,
    /// How long the broker stays away.
    pub outage: Duration,
    /// A brand lease: how long a dead replica's brands wait.
    pub lease: Duration,
    /// A pause between one brand's webhooks: the load stays within what the
    /// dispatcher drains in reasonable time (this is about faults, not peak
    /// rate; `ionflux-gateway bench` measures that).
    pub pause: Duration,
    /// How long, after the load and the faults, published records may take
    /// to show up before the missing ones count as lost.
    pub patience: Duration,
}

impl Plan {
    pub fn short() -> Self {
        Self {
            load: Duration::from_secs(6),
            brands: 6,
            kills: 3,
            outage: Duration::from_secs(5),
            lease: Duration::from_secs(3),
            pause: Duration::from_millis(2),
            patience: Duration::from_secs(120),
        }
    }

    pub fn long() -> Self {
        Self {
            load: Duration::from_secs(120),
            brands: 16,
            kills: 20,
            outage: Duration::from_secs(60),
            lease: Duration::from_secs(10),
            pause: Duration::from_millis(10),
            patience: Duration::from_secs(900),
        }
    }
}

/// What a scenario counted.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    pub backend: String,
    pub sent: usize,
    pub acknowledged: usize,
    pub published: usize,
    pub duplicates: usize,
    pub lost: usize,
    /// Webhooks still waiting in the inbox when patience ran out.
    pub pending: usize,
    /// Acknowledged webhooks of a brand that reached the topic before one
    /// acknowledged earlier (first appearances compared). Reported, not part
    /// of the pass condition: see README on ordering.
    pub reordered: usize,
    /// Requests of the slow and oversized senders, none of which may be
    /// acknowledged.
    pub abusive_requests: usize,
    pub abusive_acknowledged: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario={} backend={} sent={} acknowledged={} published={} duplicates={} lost={} pending={} reordered={}",
            self.scenario,
            self.backend,
            self.sent,
            self.acknowledged,
            self.published,
            self.duplicates,
            self.lost,
            self.pending,
            self.reordered
        )?;
        if self.abusive_requests > 0 {
            write!(
                f,
                " abusive_requests={} abusive_acknowledged={}",
                self.abusive_requests, self.abusive_acknowledged
            )?;
        }
        Ok(())
    }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.pending == 0
            && self.acknowledged > 0
            && self.abusive_acknowledged == 0
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Runs one scenario on one backend.
pub async fn run(scenario: Scenario, backend: Backend, plan: &Plan) -> Result<Report> {
    let world = World::start(backend, plan).await?;
    let result = world.run(scenario).await;
    world.shutdown().await;
    result
}

/// Everything a scenario runs against.
struct World {
    plan: Plan,
    backend: Backend,
    dir: tempfile::TempDir,
    bin: PathBuf,
    key_file: PathBuf,
    database_url: String,
    pg: Option<Postgres>,
    broker: crate::OwnBroker,
    proxy: Proxy,
    workspace: String,
    brands: Vec<Brand>,
    /// Keep the run's folder (gateway logs) for a look after a failure.
    keep: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
struct Brand {
    path: String,
    shop: String,
    secret: String,
}

impl World {
    async fn start(backend: Backend, plan: &Plan) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let bin = crate::gateway_bin().to_path_buf();
        let key_file = dir.path().join("ionflux.key");
        let vault = Vault::from_file_or_create(&key_file)?.0;
        let (database_url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("gateway.db").display()),
                None,
            ),
            Backend::Postgres => {
                let pg = Postgres::start()?;
                (pg.url("postgres"), Some(pg))
            }
        };
        let proxy_port = crate::free_low_port();
        let broker = start_broker(proxy_port)?;
        let proxy = Proxy::new(proxy_port, broker.port);
        proxy.up().await?;

        // Connections are made before any gateway runs: this also creates
        // and migrates the database.
        let store = Store::connect(&database_url)
            .await
            .context("creating the database")?;
        // Hyphenated, as the gateway stores it and names topics by it.
        let workspace = uuid::Uuid::new_v4().to_string();
        let mut brands = Vec::new();
        for i in 0..plan.brands {
            let shop = format!("chaos-{i}-{}.myshopify.com", &workspace[..8]);
            let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
            let created = ionflux_gateway::providers::shopify::add_connection(
                &store,
                &vault,
                &shop,
                &workspace,
                &uuid::Uuid::new_v4().to_string(),
                &Secret::from(secret.clone()),
            )
            .await
            .context("connecting a brand")?;
            brands.push(Brand {
                path: created.webhook_path,
                shop,
                secret,
            });
        }
        drop(store);
        Ok(Self {
            plan: plan.clone(),
            backend,
            dir,
            bin,
            key_file,
            database_url,
            pg,
            broker,
            proxy,
            workspace,
            brands,
            keep: Default::default(),
        })
    }

    async fn shutdown(mut self) {
        self.proxy.down();
        drop(self.broker);
        let keep = self.keep.into_inner();
        if let Some(pg) = self.pg.as_mut() {
            pg.keep = keep;
        }
        drop(self.pg);
        if keep {
            let _ = self.dir.keep();
        }
    }

    fn topic(&self) -> String {
        format!("ionflux.shopify.ws_{}.events_raw", self.workspace)
    }

    fn gateway(&self, replica: &str) -> Gateway {
        Gateway {
            bin: self.bin.clone(),
            port: crate::free_low_port(),
            replica: replica.to_string(),
            env: vec![
                ("IONFLUX_DATABASE_URL".into(), self.database_url.clone()),
                (
                    "IONFLUX_MASTER_KEY_FILE".into(),
                    self.key_file.display().to_string(),
                ),
                (
                    "IONFLUX_KAFKA_BROKERS".into(),
                    format!("127.0.0.1:{}", self.proxy.port),
                ),
                ("IONFLUX_REPLICA".into(), replica.to_string()),
                (
                    "IONFLUX_CLAIM_LEASE".into(),
                    format!("{}ms", self.plan.lease.as_millis()),
                ),
                (
                    "IONFLUX_CACHE_DIR".into(),
                    self.dir.path().join("cache").display().to_string(),
                ),
                ("RUST_LOG".into(), "warn,ionflux_gateway=info".into()),
            ],
            log: self.dir.path().join(format!("{replica}.log")),
            child: None,
        }
    }

    async fn run(&self, scenario: Scenario) -> Result<Report> {
        let targets = Targets::default();
        let load = Load::new(self.brands.clone(), targets.clone(), self.plan.pause);
        let mut report = Report {
            scenario: scenario.name().into(),
            backend: self.backend.name().into(),
            ..Report::default()
        };
        let plan = &self.plan;
        match scenario {
            Scenario::Kill => {
                let mut gw = self.gateway("a");
                gw.start().await?;
                targets.set(vec![gw.url()]);
                let running = load.start();
                let slice = plan.load / (plan.kills as u32 + 1);
                for _ in 0..plan.kills {
                    tokio::time::sleep(jitter(slice)).await;
                    gw.kill9();
                    // Restarted under the same name: it takes its own brands
                    // back at once.
                    gw.start().await?;
                }
                tokio::time::sleep(slice).await;
                running.stop().await;
                gw.stop();
            }
            Scenario::BrokerDown => {
                let mut gw = self.gateway("a");
                gw.start().await?;
                targets.set(vec![gw.url()]);
                let running = load.start();
                tokio::time::sleep(plan.load / 4).await;
                self.proxy.down();
                tokio::time::sleep(plan.outage).await;
                self.proxy.up().await?;
                tokio::time::sleep(plan.load / 2).await;
                running.stop().await;
                gw.stop();
            }
            Scenario::PgRestart => {
                let pg = self.pg.as_ref().context("pg-restart needs PostgreSQL")?;
                let mut gw = self.gateway("a");
                gw.start().await?;
                targets.set(vec![gw.url()]);
                let running = load.start();
                tokio::time::sleep(plan.load / 3).await;
                pg.restart()?;
                tokio::time::sleep(plan.load / 2).await;
                running.stop().await;
                gw.stop();
            }
            Scenario::TwoReplicas => {
                let mut a = self.gateway("a");
                let mut b = self.gateway("b");
                a.start().await?;
                b.start().await?;
                targets.set(vec![a.url(), b.url()]);
                let running = load.start();
                tokio::time::sleep(plan.load / 2).await;
                a.kill9();
                targets.set(vec![b.url()]);
                tokio::time::sleep(plan.load / 2).await;
                running.stop().await;
                b.stop();
            }
            Scenario::SlowSenders => {
                let mut gw = self.gateway("a");
                gw.start().await?;
                targets.set(vec![gw.url()]);
                let running = load.start();
                let addr: SocketAddr = ([127, 0, 0, 1], gw.port).into();
                let (abusive, acked) = abuse(
                    addr,
                    &self.brands[0],
                    plan.load.min(Duration::from_secs(30)),
                )
                .await;
                report.abusive_requests = abusive;
                report.abusive_acknowledged = acked;
                running.stop().await;
                gw.stop();
            }
        }
        let sent = load.sent.lock().unwrap().clone();
        let acked = load.acked.lock().unwrap().clone();
        report.sent = sent.len();
        report.acknowledged = acked.len();

        // Whatever is still pending is published by a gateway that runs
        // undisturbed until the topic holds every acknowledged webhook.
        let mut finisher = self.gateway("finisher");
        finisher.start().await?;
        // A long outage leaves a backlog: wait for the inbox to drain before
        // anything counts as missing.
        let store = Store::connect(&self.database_url)
            .await
            .context("opening the database to watch the backlog")?;
        let deadline = Instant::now() + plan.patience;
        loop {
            let (pending, _) = store.backlog().await.context("reading the backlog")?;
            report.pending = pending as usize;
            if pending == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let seen = read_topic(
            &format!("127.0.0.1:{}", self.proxy.port),
            &self.topic(),
            &acked,
            plan.patience,
        )
        .await?;
        finisher.stop();

        let wanted: HashSet<&String> = acked.iter().map(|(id, _)| id).collect();
        report.published = wanted
            .iter()
            .filter(|id| seen.first.contains_key(id.as_str()))
            .count();
        // Still pending when patience ran out is not proven delivered
        // either, but it is a backlog, not a loss: reported apart.
        report.lost = (report.acknowledged - report.published).saturating_sub(report.pending);
        report.duplicates = seen.records - seen.first.len();
        report.reordered = reordered(&acked, &seen.first);
        if report.lost > 0 {
            for id in wanted
                .iter()
                .filter(|id| !seen.first.contains_key(id.as_str()))
                .take(5)
            {
                eprintln!("lost {id}: inbox row {:?}", store.webhook_state(id).await?);
            }
            eprintln!("logs kept in {}", self.dir.path().display());
            self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(report)
    }
}

/// A random instant within `slice`, so kills land anywhere in a request.
fn jitter(slice: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    slice / 2 + slice * r / 2000
}

/// Acknowledged webhooks whose first record came before that of a webhook
/// the same brand had acknowledged earlier.
fn reordered(acked: &[(String, usize)], first: &HashMap<String, u64>) -> usize {
    let mut last: HashMap<usize, u64> = HashMap::new();
    let mut n = 0;
    for (id, brand) in acked {
        let Some(pos) = first.get(id) else { continue };
        let prev = last.entry(*brand).or_insert(0);
        if *pos < *prev {
            n += 1;
        } else {
            *prev = *pos;
        }
    }
    n
}

// ---- gateway processes -------------------------------------------------------

struct Gateway {
    bin: PathBuf,
    port: u16,
    replica: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(&log, "---- start {}", self.replica)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .env("IONFLUX_LISTEN", format!("127.0.0.1:{}", self.port))
            // Nothing here uses the admin API; gateways run side by side.
            .env("IONFLUX_ADMIN_LISTEN", "off")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "gateway {} exited at start ({status}); see {}",
                    self.replica,
                    self.log.display()
                );
            }
            if let Ok(r) = client.get(format!("{}/health", self.url())).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "gateway {} did not come up; see {}",
                    self.replica,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no drain, no flush, whatever was in flight is cut off.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait: the graceful way out.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---- load ------------------------------------------------------------------

/// The replicas a balancer would send to.
#[derive(Clone, Default)]
struct Targets(Arc<Mutex<Vec<String>>>);

impl Targets {
    fn set(&self, urls: Vec<String>) {
        *self.0.lock().unwrap() = urls;
    }

    fn pick(&self, n: usize) -> Option<String> {
        let t = self.0.lock().unwrap();
        (!t.is_empty()).then(|| t[n % t.len()].clone())
    }
}

struct Load {
    brands: Vec<Brand>,
    targets: Targets,
    pause: Duration,
    body: Arc<Vec<u8>>,
    /// Every webhook id tried, and every one acknowledged with its brand, in
    /// the order acknowledged.
    sent: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<(String, usize)>>>,
}

struct Running {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Load {
    fn new(brands: Vec<Brand>, targets: Targets, pause: Duration) -> Self {
        let body = crate::shopify_fixtures()
            .into_iter()
            .find(|f| f.topic == "orders/create")
            .map(|f| f.body)
            .unwrap_or_else(|| br#"{"id":1,"total_price":"10.00"}"#.to_vec());
        Self {
            brands,
            targets,
            pause,
            body: Arc::new(body),
            sent: Arc::default(),
            acked: Arc::default(),
        }
    }

    fn start(&self) -> Running {
        let (stop, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let run = uuid::Uuid::new_v4().simple().to_string();
        for (i, brand) in self.brands.iter().cloned().enumerate() {
            let rx = rx.clone();
            let targets = self.targets.clone();
            let body = self.body.clone();
            let sent = self.sent.clone();
            let acked = self.acked.clone();
            let run = run.clone();
            let pause = self.pause;
            tasks.spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let signature = webhook::sign(brand.secret.as_bytes(), &body);
                let mut attempt = i;
                for seq in 0.. {
                    if *rx.borrow() {
                        return;
                    }
                    let id = format!("{run}-{i}-{seq}");
                    sent.lock().unwrap().push(id.clone());
                    // Like Shopify: the same webhook again until a 200.
                    loop {
                        if *rx.borrow() {
                            return;
                        }
                        attempt += 1;
                        let Some(base) = targets.pick(attempt) else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let resp = client
                            .post(format!("{base}{}", brand.path))
                            .header("content-type", "application/json")
                            .header("x-shopify-topic", "orders/create")
                            .header("x-shopify-shop-domain", &brand.shop)
                            .header("x-shopify-webhook-id", &id)
                            .header("x-shopify-api-version", "2026-04")
                            .header("x-shopify-hmac-sha256", &signature)
                            .body(body.as_ref().clone())
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status().as_u16() == 200 => {
                                acked.lock().unwrap().push((id.clone(), i));
                                tokio::time::sleep(pause).await;
                                break;
                            }
                            _ => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            });
        }
        Running { stop, tasks }
    }
}

/// Slowloris connections that trickle a request's headers, and a 50 MB body
/// sent flat out, for `length`. Answers how many abusive requests were made
/// and how many of them got a 200 (which must be none).
async fn abuse(addr: SocketAddr, brand: &Brand, length: Duration) -> (usize, usize) {
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        tasks.spawn(async move {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return false;
            };
            let head = format!(
                "POST /integrations/shopify/webhooks/slow{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            );
            let deadline = Instant::now() + length;
            for b in head.bytes() {
                if Instant::now() > deadline || s.write_all(&[b]).await.is_err() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // Headers done, then a body that never completes.
            let _ = s.write_all(b"\r\n{\"id\"").await;
            tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
            let mut buf = [0u8; 64];
            matches!(s.read(&mut buf).await, Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200"))
        });
    }
    let path = brand.path.clone();
    let shop = brand.shop.clone();
    let secret = brand.secret.clone();
    tasks.spawn(async move {
        let body = vec![b' '; 50 * 1024 * 1024];
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-shop-domain", shop)
            .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
            .header(
                "x-shopify-hmac-sha256",
                webhook::sign(secret.as_bytes(), &body),
            )
            .body(body)
            .send()
            .await;
        matches!(resp, Ok(r) if r.status().as_u16() == 200)
    });
    let mut n = 0;
    let mut acked = 0;
    while let Some(r) = tasks.join_next().await {
        n += 1;
        acked += usize::from(r.unwrap_or(false));
    }
    (n, acked)
}

// ---- reading the topic ----------------------------------------------------------

struct Seen {
    /// Webhook id → position of its first record (partition-local offsets
    /// are comparable because one brand is one key, one partition).
    first: HashMap<String, u64>,
    records: usize,
}

/// Reads `topic` from the beginning until every acknowledged webhook has a
/// record or `patience` ran out (then the missing ones are lost).
async fn read_topic(
    brokers: &str,
    topic: &str,
    acked: &[(String, usize)],
    patience: Duration,
) -> Result<Seen> {
    use rdkafka::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("chaos-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    // Every partition from its beginning, assigned rather than subscribed:
    // no group rebalance to wait for.
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut partitions = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            partitions.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
        }
    }
    if partitions.count() == 0 {
        bail!("topic {topic} has no partitions (nothing was ever published?)");
    }
    consumer.assign(&partitions)?;
    let wanted: HashSet<&str> = acked.iter().map(|(id, _)| id.as_str()).collect();
    let mut seen = Seen {
        first: HashMap::new(),
        records: 0,
    };
    let mut missing = wanted.len();
    let deadline = tokio::time::Instant::now() + patience;
    while missing > 0 {
        let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                eprintln!("consumer: {e}");
                continue;
            }
            Err(_) => break,
        };
        let value: serde_json::Value = serde_json::from_slice(msg.payload().unwrap_or_default())
            .map_err(|e| anyhow!("record is not JSON: {e}"))?;
        let Some(id) = value["metadata"]["webhook_id"].as_str() else {
            continue;
        };
        seen.records += 1;
        if !seen.first.contains_key(id) {
            seen.first.insert(id.to_string(), msg.offset() as u64);
            if wanted.contains(id) {
                missing -= 1;
            }
        }
    }
    Ok(seen)
}

// ---- the broker and its proxy ----------------------------------------------------

/// A tansu broker of the run's own that tells clients to reach it through
/// the proxy's port. A start that fails (a port taken between choosing and
/// binding it) is tried again on another port.
fn start_broker(advertised: u16) -> Result<crate::OwnBroker> {
    for _ in 0..3 {
        let broker = crate::OwnBroker::reserve().advertising(advertised);
        if broker.try_start() {
            return Ok(broker);
        }
    }
    bail!("tansu did not start (three ports tried)")
}

/// A TCP forwarder that can vanish: `down` closes its port and every
/// connection through it, as a broker outage looks to a client.
struct Proxy {
    port: u16,
    upstream: u16,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    fn new(port: u16, upstream: u16) -> Self {
        Self {
            port,
            upstream,
            accept: Mutex::new(None),
        }
    }

    async fn up(&self) -> Result<()> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], self.port).into())?;
        let listener = socket.listen(256)?;
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            // Dropped with this task when the proxy goes down, which aborts
            // every connection through it.
            let mut pipes = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                pipes.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while pipes.try_join_next().is_some() {}
            }
        });
        *self.accept.lock().unwrap() = Some(task);
        Ok(())
    }

    fn down(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
    }
}

// ---- PostgreSQL ---------------------------------------------------------------

/// A PostgreSQL server of the run's own (tests/scripts/postgres.sh).
struct Postgres {
    port: u16,
    dir: PathBuf,
    /// Leave the data directory behind (after a loss, for a look).
    keep: bool,
}

impl Postgres {
    fn start() -> Result<Self> {
        let pg = Self {
            port: crate::free_low_port(),
            dir: std::env::temp_dir().join(format!("ionflux-chaos-pg-{}", uuid::Uuid::new_v4())),
            keep: false,
        };
        pg.script("start")?;
        Ok(pg)
    }

    fn script(&self, action: &str) -> Result<()> {
        let ok = Command::new("bash")
            .arg(scripts_dir().join("postgres.sh"))
            .arg(action)
            .env("PG_PORT", self.port.to_string())
            .env("PG_DIR", &self.dir)
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("postgres.sh {action} failed");
        }
        Ok(())
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Immediate stop (no checkpoint, like a crash) and start again.
    fn restart(&self) -> Result<()> {
        self.script("restart")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.script("stop");
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
