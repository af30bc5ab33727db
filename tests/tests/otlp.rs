//! Trace export over OTLP/HTTP, end to end: the real binary serves on
//! SQLite with the event log (no Kafka), a signed webhook goes through it,
//! and a stand-in collector on loopback receives protobuf trace data.
//!
//! The exporter's periodic flush is pushed far out (OTEL_BSP_SCHEDULE_DELAY),
//! so the spans can only arrive through the flush at shutdown: this checks
//! that a stopping gateway does not lose its last spans.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use ionflux_tests::gateway_bin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;

/// How long any one step may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);
const SERVICE_NAME: &str = "otlp-test-gateway-5d1e";
const SHOP: &str = "otlp-shop.myshopify.com";
const WEBHOOK_SECRET: &str = "shpss_otlp_webhook_secret_91c4";

/// What the stand-in collector was sent: content type and body per request.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP traces endpoint that keeps what it gets and answers 200
/// with an empty `ExportTraceServiceResponse`.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let keep = keep.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                keep.lock().unwrap().push((content_type, body));
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// The variables every gateway process of this test gets, and no others.
fn base_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "IONFLUX_DATABASE_URL".into(),
            format!("sqlite://{}", dir.join("gateway.db").display()),
        ),
        ("IONFLUX_LISTEN".into(), "127.0.0.1:0".into()),
        ("IONFLUX_ADMIN_LISTEN".into(), "off".into()),
    ]
}

/// Runs a one-shot command to the end, with `stdin` as its input.
fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(gateway_bin())
        .args(args)
        .env_clear()
        .envs(base_env(dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ionflux-gateway");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Kills the gateway if the test fails before stopping it.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_over_http_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, received) = collector().await;

    let mut child = Command::new(gateway_bin())
        .arg("serve")
        .env_clear()
        .envs(base_env(dir.path()))
        .env("IONFLUX_OTLP_ENDPOINT", &endpoint)
        .env("IONFLUX_OTLP_SERVICE_NAME", SERVICE_NAME)
        // Ten minutes: only the flush at shutdown can deliver the spans.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ionflux-gateway serve");
    let stderr = child.stderr.take().unwrap();
    let mut gateway = Serving(child);

    // The address is announced on stderr; the rest of it is kept for the
    // failure message and so that the gateway never blocks on a full pipe.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let log_sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("ionflux-gateway listening on ") {
                let _ = addr_tx.send(url.trim().to_string());
            }
            let mut log = log_sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let gateway_url = addr_rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("the gateway did not start:\n{}", log.lock().unwrap()));

    // Once the gateway is up: only `serve` creates the database and the key.
    let (workspace, brand) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let added = run(
        dir.path(),
        &[
            "connections",
            "add",
            "--shop",
            SHOP,
            "--workspace",
            &workspace.to_string(),
            "--brand",
            &brand.to_string(),
        ],
        WEBHOOK_SECRET.as_bytes(),
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains(SHOP));

    let order = dir.path().join("order.json");
    std::fs::write(&order, br#"{"id": 4242, "total_price": "10.00"}"#).unwrap();
    let order = order.to_str().unwrap().to_string();
    let dir_path = dir.path().to_path_buf();
    let sent = tokio::task::spawn_blocking(move || {
        run(
            &dir_path,
            &[
                "webhooks",
                "send",
                "--shop",
                SHOP,
                "--topic",
                "orders/create",
                "--file",
                &order,
                "--gateway-url",
                &gateway_url,
            ],
            b"",
        )
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&sent.stdout).starts_with("200 "));

    // The webhook is dispatched (its spans closed) once its event is logged.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let dir_path = dir.path().to_path_buf();
        let tail =
            tokio::task::spawn_blocking(move || run(&dir_path, &["events", "tail", "--json"], b""))
                .await
                .unwrap();
        if !tail.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event within {PATIENCE:?}:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        received.lock().unwrap().is_empty(),
        "spans were exported before shutdown despite the long schedule delay"
    );

    // A graceful stop, as an orchestrator does it.
    let pid = gateway.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        log.lock().unwrap()
    );

    let deadline = Instant::now() + PATIENCE;
    while received.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the collector got nothing:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = received.lock().unwrap();
    let (content_type, body) = &received[0];
    assert_eq!(content_type, "application/x-protobuf");
    assert!(!body.is_empty());
    // Protobuf keeps strings as they are: the resource's service name and
    // the dispatcher's span name are in the bytes.
    let all: Vec<u8> = received.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert!(contains(&all, SERVICE_NAME.as_bytes()), "no service.name");
    assert!(contains(&all, b"transform"), "no transform span");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
