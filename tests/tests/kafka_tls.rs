//! The gateway reaches Kafka over TLS, and with SASL over TLS (issue 17.1).
//!
//! tansu 0.6 takes `--cert`/`--key` but serves plaintext all the same, so a
//! TLS proxy (stunnel, installed by test.sh) stands in front of a broker of
//! the test's own, with a certificate for 127.0.0.1 signed by a CA the test
//! makes (tests/scripts/certs.sh). The broker advertises the proxy's port,
//! so every connection the clients make after the bootstrap is TLS too.
//! With `--authentication` tansu requires SASL, but it offers no PLAIN and
//! knows no SCRAM user (its memory:// storage keeps none): SASL is proved to
//! reach the broker's handshake over TLS and be refused there, not to
//! succeed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ionflux_tests::{
    Gateway, Hook, Options, OwnBroker, PATIENCE, free_low_port, gateway_bin, kafka_brokers,
    shopify_fixtures, test_topics,
};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::Value;

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/certs.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .status()
        .expect("running tests/scripts/certs.sh");
    assert!(status.success(), "certs.sh makes the certificates");
    dir
}

fn stunnel_bin() -> Option<PathBuf> {
    [
        "/usr/bin/stunnel4",
        "/usr/bin/stunnel",
        "/usr/local/bin/stunnel",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// stunnel terminating TLS on `port` in front of a plaintext `backend`.
struct TlsProxy {
    child: Child,
    port: u16,
}

impl TlsProxy {
    fn start(bin: &Path, certs: &Path, port: u16, backend: u16) -> Self {
        let conf = certs.join(format!("stunnel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{backend}\ncert = {cert}\nkey = {key}\n",
                cert = certs.join("server.pem").display(),
                key = certs.join("server.key").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(certs.join(format!("stunnel-{port}.log"))).unwrap();
        let child = Command::new(bin)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting stunnel");
        let proxy = TlsProxy { child, port };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "stunnel listens on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker of the test's own reached only through TLS.
struct TlsBroker {
    proxy: TlsProxy,
    _broker: OwnBroker,
    certs: tempfile::TempDir,
}

impl TlsBroker {
    /// None when the test script's tools are not there (outside CI).
    fn start(authentication: bool) -> Option<Self> {
        kafka_brokers()?;
        let Some(stunnel) = stunnel_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "stunnel is missing; tests/scripts/test.sh installs it"
            );
            eprintln!("stunnel is not installed: skipping (tests/scripts/test.sh installs it)");
            return None;
        };
        let certs = certificates();
        let port = free_low_port();
        let mut broker = OwnBroker::reserve().advertising(port);
        if authentication {
            broker = broker.with_authentication();
        }
        broker.start();
        let proxy = TlsProxy::start(&stunnel, certs.path(), port, broker.port);
        Some(TlsBroker {
            proxy,
            _broker: broker,
            certs,
        })
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }

    fn ca(&self) -> String {
        self.certs.path().join("ca.pem").display().to_string()
    }
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sends one real webhook and returns the event read back from the broker
/// by a consumer with the same security settings.
async fn one_event_through(brokers: &str, properties: Vec<(String, String)>) -> Value {
    let topics = test_topics();
    let gw = Gateway::start(Options {
        kafka: Some(brokers.to_string()),
        kafka_properties: properties.clone(),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("tls-shop.myshopify.com").await;
    let f = &shopify_fixtures()[0];
    let hook = Hook::shopify(&conn, &f.topic, &f.api_version, &f.body);
    let (status, body) = gw.send(&hook).await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    let dead = gw.store().dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");

    let topic = topics
        .events
        .replace("{workspace_id}", &conn.created.workspace_id);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in &properties {
        config.set(k, v);
    }
    let consumer: StreamConsumer = config.create().expect("consumer");
    consumer.subscribe(&[&topic]).unwrap();
    let record = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .expect("the event arrives within PATIENCE")
        .expect("a record");
    let event: Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
    assert_eq!(
        event["metadata"]["webhook_id"],
        hook.header("x-shopify-webhook-id").unwrap()
    );
    gw.stop().await;
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_over_tls_verified_by_the_ca() {
    let Some(tls) = TlsBroker::start(false) else {
        return;
    };
    // Endpoint identification stays librdkafka's default (https): the
    // certificate must name 127.0.0.1, which it does.
    let properties = props(&[("security.protocol", "SSL"), ("ssl.ca.location", &tls.ca())]);
    let event = one_event_through(&tls.bootstrap(), properties).await;
    assert_eq!(event["source_service_name"], "ShopifyIntegrationService");
}

/// `ionflux-gateway serve` with `IONFLUX_KAFKA_*` set, as an operator runs
/// it; its stderr is collected.
struct Serving {
    child: Child,
    log: Arc<Mutex<String>>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Serving {
    fn start(brokers: &str, properties: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(gateway_bin())
            .arg("serve")
            .env_clear()
            .env(
                "IONFLUX_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("gateway.db").display()),
            )
            .env("IONFLUX_LISTEN", "127.0.0.1:0")
            .env("IONFLUX_ADMIN_LISTEN", "off")
            .env("IONFLUX_KAFKA_BROKERS", brokers)
            .env("IONFLUX_KAFKA_PROPERTIES", properties)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ionflux-gateway serve");
        let stderr = child.stderr.take().unwrap();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let log_sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("ionflux-gateway listening on ") {
                    let _ = url_tx.send(url.trim().to_string());
                }
                let mut log = log_sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = url_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("the gateway did not start:\n{}", log.lock().unwrap()));
        Serving {
            child,
            log,
            url,
            _dir: dir,
        }
    }

    /// Asks `/ready` (which makes the sink contact the broker) until the
    /// log says `needle`; `/ready` must answer 503 meanwhile.
    async fn wait_for_log(&self, needle: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.log.lock().unwrap().contains(needle) {
                return;
            }
            let resp = client.get(format!("{}/ready", self.url)).send().await;
            let status = resp.map(|r| r.status().as_u16()).unwrap_or(0);
            assert_eq!(status, 503, "/ready while the broker cannot be reached");
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the gateway's log within {PATIENCE:?}:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused_and_said_so() {
    let Some(tls) = TlsBroker::start(false) else {
        return;
    };
    let other = certificates();
    let gateway = Serving::start(
        &tls.bootstrap(),
        &format!(
            "security.protocol=SSL,ssl.ca.location={}",
            other.path().join("ca.pem").display()
        ),
    );
    gateway.wait_for_log("certificate verify failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_over_tls_reaches_the_brokers_handshake() {
    let Some(tls) = TlsBroker::start(true) else {
        return;
    };
    // tansu offers SCRAM but keeps no SCRAM user in memory://, and does not
    // offer PLAIN: the broker's refusal, after the TLS handshake, of a
    // mechanism librdkafka asked for by name is the proof that the gateway
    // speaks it over TLS.
    for (mechanism, refusal) in [
        ("PLAIN", "SASL PLAIN mechanism handshake failed"),
        ("SCRAM-SHA-256", "SASL authentication error"),
        ("SCRAM-SHA-512", "SASL authentication error"),
    ] {
        let gateway = Serving::start(
            &tls.bootstrap(),
            &format!(
                "security.protocol=SASL_SSL,sasl.mechanism={mechanism},sasl.username=nobody,\
                 sasl.password=sasl-test-password,ssl.ca.location={}",
                tls.ca()
            ),
        );
        gateway.wait_for_log(refusal).await;
        let log = gateway.log.lock().unwrap().clone();
        assert!(!log.contains("certificate verify failed"), "{log}");
        assert!(
            !log.contains("sasl-test-password"),
            "the SASL password is never logged"
        );
    }
}

#[test]
fn sasl_without_a_supported_mechanism_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // librdkafka's default mechanism is GSSAPI (Kerberos), not built in.
    let out = Command::new(gateway_bin())
        .arg("serve")
        .env_clear()
        .env(
            "IONFLUX_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gateway.db").display()),
        )
        .env("IONFLUX_LISTEN", "127.0.0.1:0")
        .env("IONFLUX_ADMIN_LISTEN", "off")
        .env("IONFLUX_KAFKA_BROKERS", "127.0.0.1:9")
        .env("IONFLUX_KAFKA_PROPERTIES", "security.protocol=SASL_SSL")
        .output()
        .expect("running ionflux-gateway serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("without sasl.mechanism means GSSAPI"),
        "{stderr}"
    );
}
