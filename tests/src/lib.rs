//! Test harness: a gateway started in-process on a temporary SQLite file (or,
//! when `IONFLUX_TEST_POSTGRES` names a PostgreSQL server, a fresh database
//! of its own there: the test script runs the suite once per backend), a
//! client that signs webhooks the way Shopify does, the shared Shopify sample
//! payloads, and a Kafka consumer for the tansu broker that the test script
//! starts on loopback.
//!
//! Waits below are bounded so that a broken build fails instead of hanging;
//! they never assert how long anything took.

pub mod chaos;
pub mod fake_shopify;
pub mod fake_tiktok;
pub mod fake_woocommerce;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ionflux_gateway::api::http::DEFAULT_MAX_BODY_BYTES;
use ionflux_gateway::pipeline::ceilings::{Ceilings, TenantPolicy};
use ionflux_gateway::pipeline::connection::Created;
use ionflux_gateway::pipeline::dispatch::DispatchConfig;
use ionflux_gateway::pipeline::event::Topics;
use ionflux_gateway::pipeline::publish::kafka::KafkaConfig;
use ionflux_gateway::pipeline::transform::{Limits, RuntimeConfig};
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::server::{self, Config, Running};
use ionflux_gateway::store::{RouteRow, Store};
use ionflux_gateway::support::vault::{Secret, Vault};
use serde_json::Value;

/// How long a test waits for something that should happen, before failing.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// `../shared` beside the checkout.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// One real Shopify sample payload.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub file: String,
    pub topic: String,
    pub api_version: String,
    pub body: Vec<u8>,
}

/// Every payload in `shared/data/shopify-webhooks`, with its topic (from
/// SOURCES.tsv) and API version (from the file name).
///
/// The lifecycle topics come last, in the order one connection takes them
/// all: `app/uninstalled` (after which only the compliance topics are
/// accepted), then `customers/*`, then `shop/redact`. Sent in this order to
/// one connection, every sample is accepted however fast the dispatcher
/// applies the uninstall.
pub fn shopify_fixtures() -> Vec<Fixture> {
    let root = shared_dir().join("data/shopify-webhooks");
    let sources = std::fs::read_to_string(root.join("SOURCES.tsv"))
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.join("SOURCES.tsv").display()));
    let fixtures: Vec<Fixture> = sources
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut cols = line.split('\t');
            let file = cols.next().unwrap().to_string();
            let topic = cols.next().unwrap().to_string();
            // gadget-schemas-2026-04-1.json -> 2026-04
            let name = file.rsplit('/').next().unwrap();
            let api_version = name
                .trim_start_matches("gadget-schemas-")
                .get(..7)
                .unwrap()
                .to_string();
            let body = std::fs::read(root.join(&file)).unwrap();
            Fixture {
                file,
                topic,
                api_version,
                body,
            }
        })
        .collect();
    let rank = |topic: &str| match topic {
        ionflux_gateway::providers::shopify::lifecycle::APP_UNINSTALLED => 1,
        ionflux_gateway::providers::shopify::lifecycle::SHOP_REDACT => 3,
        t if ionflux_gateway::providers::shopify::lifecycle::is_lifecycle_topic(t) => 2,
        _ => 0,
    };
    let mut fixtures = fixtures;
    fixtures.sort_by_key(|f| rank(&f.topic));
    assert!(
        fixtures.len() >= 60,
        "expected the 65 shared Shopify payloads"
    );
    fixtures
}

/// The hostile guest component, built by this crate's build script.
pub fn hostile_wasm() -> Vec<u8> {
    std::fs::read(env!("HOSTILE_GUEST_WASM")).expect("hostile guest was built by build.rs")
}

/// A component that traps on every call.
pub fn broken_wasm() -> Vec<u8> {
    std::fs::read(env!("BROKEN_GUEST_WASM")).expect("broken guest was built by build.rs")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The broker started by the test script, if any. Under CI it must be there:
/// a Kafka test that silently skipped would prove nothing.
pub fn kafka_brokers() -> Option<String> {
    match std::env::var("IONFLUX_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "IONFLUX_TEST_KAFKA_BROKERS is not set; run the tests with tests/scripts/test.sh"
            )
        }
        _ => {
            eprintln!(
                "IONFLUX_TEST_KAFKA_BROKERS is not set: skipping (tests/scripts/test.sh sets it)"
            );
            None
        }
    }
}

#[derive(Default)]
pub struct Options {
    pub kafka: Option<String>,
    /// librdkafka properties (`[kafka.properties]`): TLS and SASL.
    pub kafka_properties: Vec<(String, String)>,
    /// Unique per test so that tests sharing one broker never see each
    /// other's records.
    pub topics: Option<Topics>,
    pub max_body_bytes: Option<usize>,
    pub database_url: Option<String>,
    /// The configured operator token (`IONFLUX_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// The Shopify app for the OAuth install (see [`fake_shopify`]).
    pub shopify: Option<ionflux_gateway::providers::shopify::oauth::ShopifyConfig>,
    /// The TikTok Shop app for its install (see [`fake_tiktok`]).
    pub tiktok_shop: Option<ionflux_gateway::providers::tiktok_shop::install::TikTokShopConfig>,
    /// The service token of the shop-details endpoint
    /// (`IONFLUX_SERVICE_TOKEN`).
    pub service_token: Option<String>,
    /// Where the gateway listens (default: a free loopback port). For tests
    /// that must know the address before the start, such as the OAuth
    /// redirect URI; see [`free_loopback_addr`].
    pub listen: Option<std::net::SocketAddr>,
    /// `/ready` fails while the oldest pending webhook is older than this.
    pub max_backlog_age: Option<Duration>,
    /// `Some(false)`: an intake-only replica (`dispatch.enabled = false`).
    pub dispatch: Option<bool>,
    /// Default ceilings and upload quota of every workspace (default: the
    /// library's, with the tests' CPU budget; see [`test_tenants`]).
    pub tenants: Option<TenantPolicy>,
    /// Connection limits and timeouts (`[http]`); None: production's.
    pub http: Option<ionflux_gateway::api::http::HttpConfig>,
    /// The gateway's public base URL (`shopify.public_base_url`), for
    /// webhook addresses registered at a platform; see [`free_loopback_addr`].
    pub public_base_url: Option<String>,
    /// The providers' configuration sections (`[woocommerce]`); None: none.
    pub provider_options: Option<ionflux_gateway::pipeline::registration::ProviderOptions>,
    /// Publish the connections' `integration.*` events (default: not, so
    /// that tests counting a webhook's events see only those).
    pub integration_events: bool,
    /// `[retention]` (default: keep everything, so no test loses a row it
    /// looks at to the pruner).
    pub retention: Option<ionflux_gateway::pipeline::prune::RetentionConfig>,
}

/// The library's tenant policy, with a CPU ceiling that admits the tests'
/// default CPU budget (and the routes of tests that raise it).
pub fn test_tenants() -> TenantPolicy {
    TenantPolicy {
        ceilings: Ceilings {
            cpu_ms: 10_000,
            ..Ceilings::default()
        },
        ..TenantPolicy::default()
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

pub struct Gateway {
    pub running: Running,
    /// A token that makes its bearer the operator: the configured one, else
    /// the bootstrap token this gateway made at start (None when another
    /// gateway on the same database made it).
    pub operator_token: Option<String>,
    pub vault: Arc<Vault>,
    pub client: reqwest::Client,
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A connection made for a test, with its secret in the clear.
pub struct Conn {
    pub created: Created,
    pub secret: String,
}

pub fn test_topics() -> Topics {
    let run = uuid::Uuid::new_v4().simple().to_string();
    Topics {
        events: format!("test.{run}.ws_{{workspace_id}}.events_raw"),
        dead_letters: format!("test.{run}.ws_{{workspace_id}}.dlq"),
    }
}

/// A vault with one fresh key.
pub fn test_vault() -> Arc<Vault> {
    Arc::new(Vault::from_spec(&format!("k1:{}", Vault::generate_key())).unwrap())
}

/// The gateway binary, built if needed. Tests of another package get no
/// `CARGO_BIN_EXE_…`, so the cargo running these tests builds it (a no-op
/// when it is fresh) into the same target directory, with the same profile.
pub fn gateway_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("IONFLUX_GATEWAY_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // <target>/<profile>/deps/<this test>, or <target>/<profile>/<a bin>
        let mut profile_dir = exe.parent().expect("target/<profile>");
        if profile_dir.ends_with("deps") {
            profile_dir = profile_dir.parent().expect("target/<profile>");
        }
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "ionflux-gateway", "--bin"])
            .args(["ionflux-gateway", "--profile", profile])
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("target dir"),
            );
        // What cargo set for this test process alone: inherited, it makes
        // the build look changed and rebuilds dependencies every time.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let per_test = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
            if per_test {
                cargo.env_remove(&*name);
            }
        }
        let status = cargo.status().expect("running cargo build");
        assert!(status.success(), "building ionflux-gateway");
        profile_dir.join(format!("ionflux-gateway{}", std::env::consts::EXE_SUFFIX))
    })
}

/// A database of a test's own, and the folder that holds it (or holds
/// nothing, on PostgreSQL) for as long as the test keeps it.
pub struct TestDatabase {
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// The backend the suite runs on: PostgreSQL when `IONFLUX_TEST_POSTGRES`
/// holds an admin URL of a server (a database is created per call), else a
/// SQLite file in a fresh temporary folder.
pub async fn fresh_database() -> TestDatabase {
    let dir = tempfile::tempdir().unwrap();
    let url = match std::env::var("IONFLUX_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            use sqlx::{Connection, Executor};
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("IONFLUX_TEST_POSTGRES={admin}: {e}"));
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.path().join("gateway.db").display()),
    };
    TestDatabase { url, dir }
}

/// Compiled transforms shared by every test gateway of this checkout, keyed
/// by digest like any cache: without it each start compiles every built-in
/// again, about a second of CPU on a 2-core machine.
fn transform_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-transform-cache")
}

/// Whether this run's tests use PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("IONFLUX_TEST_POSTGRES").is_ok_and(|v| !v.is_empty())
}

impl Gateway {
    pub async fn start(opts: Options) -> Self {
        Self::start_with_vault(opts, test_vault()).await
    }

    pub async fn start_with_vault(opts: Options, vault: Arc<Vault>) -> Self {
        let (dir, database_url) = match opts.database_url {
            Some(url) => (None, url),
            None => {
                let db = fresh_database().await;
                (Some(db.dir), db.url)
            }
        };
        let kafka = opts.kafka.map(|brokers| KafkaConfig {
            message_timeout: Duration::from_secs(5),
            extra: opts.kafka_properties,
            ..KafkaConfig::new(brokers)
        });
        let config = Config {
            database_url: database_url.clone(),
            listen: opts
                .listen
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            kafka,
            topics: opts.topics.unwrap_or_else(test_topics),
            max_body_bytes: opts.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            http: opts.http.unwrap_or_default(),
            vault: vault.clone(),
            admin_token: opts.admin_token.clone().map(Secret::from),
            dispatch: DispatchConfig {
                enabled: opts.dispatch.unwrap_or(true),
                idle_poll: Duration::from_millis(50),
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                // Wall-clock CPU budgets are for production; on a loaded
                // 2-core test machine a descheduled thread must not turn a
                // normal webhook into a dead letter. Tests of the limits set
                // their own per route.
                limits: Limits {
                    cpu: Duration::from_secs(2),
                    ..Limits::default()
                },
                tenants: opts.tenants.unwrap_or_else(test_tenants),
                ..DispatchConfig::default()
            },
            runtime: RuntimeConfig {
                pool_instances: 16,
                cache_dir: Some(transform_cache()),
                ..RuntimeConfig::default()
            },
            shopify: opts.shopify,
            service_token: opts.service_token.map(Secret::from),
            tiktok_shop: opts.tiktok_shop,
            max_backlog_age: opts.max_backlog_age,
            database_max_connections: 16,
            previous_secret_window:
                ionflux_gateway::pipeline::connection::DEFAULT_PREVIOUS_SECRET_WINDOW,
            public_base_url: opts.public_base_url,
            provider_options: opts.provider_options.unwrap_or_default(),
            integration_events: opts.integration_events,
            retention: opts
                .retention
                .unwrap_or_else(ionflux_gateway::pipeline::prune::RetentionConfig::keep_everything),
        };
        let running = server::start(config).await.expect("gateway starts");
        let operator_token = opts.admin_token.or_else(|| {
            running
                .bootstrap_token
                .as_ref()
                .map(|t| String::from_utf8(t.expose().to_vec()).expect("tokens are ASCII"))
        });
        Self {
            running,
            operator_token,
            vault,
            client: reqwest::Client::new(),
            database_url,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Store {
        &self.running.store
    }

    pub fn url(&self, path: &str) -> String {
        self.running.url(path)
    }

    /// A URL on the admin listener (the admin API and `/metrics`).
    pub fn admin_url(&self, path: &str) -> String {
        self.running.admin_url(path)
    }

    pub async fn connect(&self, shop: &str) -> Conn {
        let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
        let created = ionflux_gateway::providers::shopify::add_connection(
            self.store(),
            &self.vault,
            shop,
            &uuid::Uuid::new_v4().to_string(),
            &uuid::Uuid::new_v4().to_string(),
            &Secret::from(secret.clone()),
        )
        .await
        .expect("connection added");
        Conn { created, secret }
    }

    /// Sends a request built by `hook`, returning status and JSON body.
    pub async fn send(&self, hook: &Hook<'_>) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url(&hook.path))
            .header("content-type", "application/json")
            .body(hook.body.clone());
        for (k, v) in &hook.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response body is not JSON ({status}): {text}"));
        (status, json)
    }

    /// Routes every topic of the connection's brand to `transform`
    /// (a stored component's digest, or `builtin:NAME`).
    pub async fn route_brand(&self, conn: &Conn, pattern: &str, transform: &str, config: &str) {
        self.route_brand_with_limits(conn, pattern, transform, config, None)
            .await
    }

    /// As [`Gateway::route_brand`], with per-route limits (JSON).
    pub async fn route_brand_with_limits(
        &self,
        conn: &Conn,
        pattern: &str,
        transform: &str,
        config: &str,
        limits: Option<&str>,
    ) {
        self.store()
            .set_route(
                &RouteRow {
                    id: 0,
                    provider: conn.created.provider.clone(),
                    workspace_id: String::new(),
                    brand_id: conn.created.brand_id.clone(),
                    topic_pattern: pattern.into(),
                    transform: transform.into(),
                    config: config.into(),
                    limits: limits.map(str::to_string),
                    shadow_transform: None,
                },
                "tests",
            )
            .await
            .unwrap();
        self.running.reload_routes().await.expect("routes reload");
    }

    /// Stores a component and returns its digest.
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256_hex(bytes);
        self.store()
            .put_transform(&digest, name, bytes)
            .await
            .unwrap();
        digest
    }

    /// Waits until no stored webhook is pending, then returns the event log.
    pub async fn settle(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.store().pending_count().await.unwrap() == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "webhooks still pending after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every PlatformEvent in the embedded log, oldest first, each checked
    /// against the published schema and its record headers. Records a
    /// redaction purged (payload `{}`) are no events and are left out.
    pub async fn logged_events(&self) -> Vec<Value> {
        self.store()
            .events_after(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.payload != ionflux_gateway::store::retention::TOMBSTONE_PAYLOAD)
            .map(|e| {
                let event: Value = serde_json::from_str(&e.payload).unwrap();
                let headers: Vec<(String, String)> = serde_json::from_str(&e.headers).unwrap();
                check_event_record(&headers, &event);
                event
            })
            .collect()
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A webhook request as Shopify would send it.
pub struct Hook<'a> {
    pub path: String,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
}

impl<'a> Hook<'a> {
    /// Signed with the connection's secret and carrying every header Shopify
    /// sends.
    pub fn shopify(conn: &Conn, topic: &str, api_version: &str, body: &[u8]) -> Self {
        let webhook_id = uuid::Uuid::new_v4().to_string();
        Self {
            path: conn.created.webhook_path.clone(),
            headers: vec![
                ("x-shopify-topic", topic.to_string()),
                ("x-shopify-shop-domain", conn.created.account.clone()),
                ("x-shopify-webhook-id", webhook_id),
                ("x-shopify-api-version", api_version.to_string()),
                (
                    "x-shopify-triggered-at",
                    "2026-11-23T10:00:00.000Z".to_string(),
                ),
                ("x-shopify-event-id", uuid::Uuid::new_v4().to_string()),
                (
                    "x-shopify-hmac-sha256",
                    webhook::sign(conn.secret.as_bytes(), body),
                ),
            ],
            body: body.to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.into()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| *k != name);
        self
    }
}

/// One consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: Value,
    pub partition: i32,
    pub offset: i64,
}

/// Reads `topic` from the beginning until `count` records arrived (or
/// PATIENCE ran out, which fails the test).
pub async fn consume(brokers: &str, topic: &str, count: usize) -> Vec<Consumed> {
    use rdkafka::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while out.len() < count {
        let msg = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                eprintln!("consumer: {e}");
                continue;
            }
            Err(_) => panic!(
                "only {} of {count} records arrived on {topic} within {PATIENCE:?}",
                out.len()
            ),
        };
        let headers: Vec<(String, String)> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let value = serde_json::from_slice(msg.payload().unwrap_or_default())
            .expect("record value is JSON");
        // Dead letters are reports, not events; every other record is one.
        if !headers.iter().any(|(name, _)| name == "reason_code") {
            check_event_record(&headers, &value);
        }
        out.push(Consumed {
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value,
            partition: msg.partition(),
            offset: msg.offset(),
        });
    }
    out
}

/// `schemas/platform-event.schema.json`, the published PlatformEvent schema.
pub const PLATFORM_EVENT_SCHEMA: &str = include_str!("../../schemas/platform-event.schema.json");

/// The published schema, compiled once per test process.
pub fn platform_event_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: Value = serde_json::from_str(PLATFORM_EVENT_SCHEMA).expect("schema is JSON");
        assert!(
            jsonschema::draft202012::meta::is_valid(&schema),
            "not a valid draft 2020-12 schema"
        );
        jsonschema::draft202012::new(&schema).expect("schema compiles")
    })
}

/// Fails the test unless `event` is a PlatformEvent the schema accepts.
pub fn assert_platform_event(event: &Value) {
    let errors: Vec<String> = platform_event_schema()
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the event breaks schemas/platform-event.schema.json: {errors:#?}\n{event:#}"
    );
}

/// What every published event record must be, wherever the harness reads
/// one: a PlatformEvent the schema accepts, with the CloudEvents binary-mode
/// headers mapped from its own fields, and a `traceparent` in its trace.
pub fn check_event_record(headers: &[(String, String)], event: &Value) {
    assert_platform_event(event);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
    };
    let field = |name: &str| event[name].as_str().unwrap();
    assert_eq!(header("ce_specversion"), "1.0");
    assert_eq!(header("ce_id"), field("event_id"));
    assert_eq!(header("ce_type"), field("event_type"));
    assert_eq!(header("ce_time"), field("event_timestamp"));
    // The account is one path segment, percent-encoded: a site URL's
    // slashes are escaped.
    let source = percent_encoding::percent_decode_str(header("ce_source"))
        .decode_utf8()
        .expect("ce_source decodes to UTF-8");
    assert_eq!(
        source,
        format!(
            "/{}/{}",
            event["metadata"]["provider"].as_str().unwrap(),
            event["metadata"]["account"].as_str().unwrap()
        )
    );
    assert_eq!(
        header("ce_source").matches('/').count(),
        2,
        "ce_source is /provider/account"
    );
    assert_eq!(header("content-type"), "application/json");
    let trace_id = event["metadata"]["trace_id"].as_str().unwrap();
    assert_eq!(header("trace_id"), trace_id);
    let parent: Vec<&str> = header("traceparent").split('-').collect();
    assert_eq!(parent.len(), 4, "traceparent {parent:?}");
    assert_eq!(parent[0], "00");
    assert_eq!(parent[1], trace_id, "traceparent in another trace");
    assert!(
        parent[2].len() == 16 && parent[2] != "0000000000000000",
        "traceparent {parent:?}"
    );
}

/// A free loopback port with nothing listening on it yet, below Linux's
/// ephemeral range (32768+): a client reconnecting to a dead port there can
/// end up connected to itself.
pub fn free_low_port() -> u16 {
    let seed = std::process::id() as u16 ^ (uuid::Uuid::new_v4().as_u128() as u16);
    (0..2000u16)
        .map(|i| 20_000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 10_000))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 20000-29999")
}

/// A tansu broker of the test's own, on a port of its own, for tests that
/// need to control when the broker exists. Stopped on drop.
pub struct OwnBroker {
    pub port: u16,
    /// The port clients are told to use, when it is not `port` (a proxy's).
    advertised: Option<u16>,
    /// Clients must authenticate with SASL (tansu's `--authentication`).
    authentication: bool,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    /// A free port with nothing listening on it yet. Below Linux's ephemeral
    /// range (32768+): a client reconnecting to a dead port there can end up
    /// connected to itself.
    pub fn reserve() -> Self {
        Self {
            port: free_low_port(),
            advertised: None,
            authentication: false,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Requires SASL of clients (which tansu then refuses; see tansu.sh).
    pub fn with_authentication(mut self) -> Self {
        self.authentication = true;
        self
    }

    /// Tells clients to reach the broker at `port` instead (a proxy in
    /// front of it).
    pub fn advertising(mut self, port: u16) -> Self {
        self.advertised = Some(port);
        self
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, action: &str) -> std::process::ExitStatus {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tansu.sh"))
            .arg(action)
            .env("TANSU_PORT", self.port.to_string())
            .env("TANSU_DIR", self.dir.path());
        if let Some(port) = self.advertised {
            cmd.env("TANSU_ADVERTISED_PORT", port.to_string());
        }
        if self.authentication {
            cmd.env("TANSU_AUTHENTICATION", "1");
        }
        cmd.status().expect("running tests/scripts/tansu.sh")
    }

    pub fn start(&self) {
        assert!(self.try_start(), "tansu starts and accepts connections");
    }

    /// Starts it and waits until it accepts connections; false if either
    /// failed.
    pub fn try_start(&self) -> bool {
        self.script("start").success() && self.script("wait").success()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// A workspace token for `workspace` (plaintext, as `tokens create` shows it
/// once).
pub async fn workspace_token(store: &Store, workspace: &str, name: &str) -> String {
    let created = ionflux_gateway::api::admin::create_token(
        store,
        ionflux_gateway::api::admin::TokenKind::Workspace,
        Some(workspace),
        name,
    )
    .await
    .expect("a workspace token");
    String::from_utf8(created.token.expose().to_vec()).expect("tokens are ASCII")
}

/// A call to the admin API with an optional JSON body and bearer token (None:
/// no Authorization header). Answers status and JSON body.
pub async fn admin_json(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw.client.request(method, gw.admin_url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    admin_send(req, token).await
}

/// Uploads a component over the admin API (`POST /admin/v1/transforms`).
pub async fn admin_upload(
    gw: &Gateway,
    name: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let req = gw
        .client
        .post(gw.admin_url("/admin/v1/transforms"))
        .query(&[("name", name)])
        .header("content-type", "application/wasm")
        .body(bytes);
    admin_send(req, token).await
}

async fn admin_send(mut req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("response body is not JSON ({status}): {text}"));
    (status, json)
}

/// What a run of the real binary printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real binary in `dir` (a fresh temporary directory when None)
/// with an empty environment but for `env` and stdin closed, as an operator
/// would from another shell.
pub async fn run_cli(dir: Option<&std::path::Path>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let scratch = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(gateway_bin())
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir.unwrap_or(scratch.path()))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the binary runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
