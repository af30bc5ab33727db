//! Trace export over OTLP/HTTP, end to end: the real binary serves on
//! SQLite, a signed webhook goes through it, and a stand-in collector on
//! loopback receives protobuf trace data, which the tests decode.
//!
//! The exporter's periodic flush is pushed far out (OTEL_BSP_SCHEDULE_DELAY),
//! so the spans can only arrive through the flush at shutdown: this checks
//! that a stopping gateway does not lose its last spans.
//!
//! One webhook is one trace: the intake request's span, the dispatcher's
//! spans and (with Kafka) the produce span share the OTLP trace id that the
//! event carries as `metadata.trace_id`, and the Kafka record's
//! `traceparent` names the produce span in it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use ionflux_tests::{consume, gateway_bin, kafka_brokers, test_topics};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::Value;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;

/// How long any one step may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);
const SERVICE_NAME: &str = "otlp-test-gateway-5d1e";
const OTEL_SERVICE_NAME: &str = "otel-named-gateway-88a0";
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

/// What one gateway run exported, decoded.
struct Exported {
    spans: Vec<Span>,
    /// The `service.name` of every resource the spans came under.
    service_names: Vec<String>,
    /// The webhook's one event: from the event log, or the Kafka record.
    event: Value,
    /// The Kafka record's headers (empty with the event log).
    headers: Vec<(String, String)>,
}

impl Exported {
    fn named(&self, name: &str) -> Vec<&Span> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str) -> &Span {
        let found = self.named(name);
        assert_eq!(
            found.len(),
            1,
            "{name}: {:?}",
            self.spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        found[0]
    }
}

/// Runs `serve` with `env` (on top of [`base_env`]) and the exporter's timer
/// pushed out, sends one signed webhook, waits for its event (from the
/// broker when `kafka` names one, else from the event log), stops the
/// gateway as an orchestrator does and decodes what the collector got.
async fn one_webhook(
    env: &[(&str, String)],
    kafka: Option<&str>,
    received: &Received,
    expect_spans: bool,
) -> Exported {
    let dir = tempfile::tempdir().unwrap();

    let mut command = Command::new(gateway_bin());
    command
        .arg("serve")
        .env_clear()
        .envs(base_env(dir.path()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Ten minutes: only the flush at shutdown can deliver the spans.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let topics = test_topics();
    if let Some(brokers) = kafka {
        command
            .env("IONFLUX_KAFKA_BROKERS", brokers)
            .env("IONFLUX_TOPIC_TEMPLATE", &topics.events)
            .env("IONFLUX_DLQ_TOPIC_TEMPLATE", &topics.dead_letters);
    }
    let mut child = command.spawn().expect("starting ionflux-gateway serve");
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

    // The webhook is dispatched (its spans closed) once its event is out.
    let (event, headers) = match kafka {
        Some(brokers) => {
            let topic = topics
                .events
                .replace("{workspace_id}", &workspace.to_string());
            // The harness checks the record against the schema, its
            // CloudEvents headers and that its traceparent is in its trace.
            let mut records = consume(brokers, &topic, 1).await;
            let record = records.remove(0);
            (record.value, record.headers)
        }
        None => (logged_event(dir.path(), &log).await, Vec::new()),
    };
    assert!(
        received_now(received).is_empty(),
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
    // The flush at shutdown has finished once the process has exited.
    while expect_spans && received_now(received).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the collector got nothing:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut exported = Exported {
        spans: Vec::new(),
        service_names: Vec::new(),
        event,
        headers,
    };
    for (content_type, body) in received_now(received) {
        assert_eq!(content_type, "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    any_value::Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                });
            exported.service_names.extend(service);
            for scope in resource_spans.scope_spans {
                exported.spans.extend(scope.spans);
            }
        }
    }
    exported
}

fn received_now(received: &Received) -> Vec<(String, Bytes)> {
    received.lock().unwrap().clone()
}

/// The webhook's event from the event log, once it is there.
async fn logged_event(dir: &Path, log: &Arc<Mutex<String>>) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let dir_path = dir.to_path_buf();
        let tail =
            tokio::task::spawn_blocking(move || run(&dir_path, &["events", "tail", "--json"], b""))
                .await
                .unwrap();
        if let Some(line) = String::from_utf8_lossy(&tail.stdout).lines().next() {
            let event: Value = serde_json::from_str(line).expect("events tail --json");
            // `events tail --json` may wrap the event; take the envelope.
            let event = if event.get("event_id").is_some() {
                event
            } else {
                event["payload"].clone()
            };
            ionflux_tests::assert_platform_event(&event);
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no event within {PATIENCE:?}:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The intake request, the dispatched row and its transform are one trace,
/// and it is the trace the event names.
fn assert_one_trace(exported: &Exported) -> String {
    let intake = exported.one("webhook.intake");
    let row = exported.one("dispatch.row");
    let transform = exported.one("transform");
    let trace = hex(&intake.trace_id);
    assert_eq!(trace.len(), 32);
    assert_eq!(hex(&row.trace_id), trace, "dispatch.row in another trace");
    assert_eq!(
        hex(&transform.trace_id),
        trace,
        "transform in another trace"
    );
    assert_eq!(transform.parent_span_id, row.span_id);
    assert_eq!(
        exported.event["metadata"]["trace_id"], trace,
        "the event names another trace"
    );
    trace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhooks_spans_reach_an_otlp_collector_in_one_trace() {
    let (endpoint, received) = collector().await;
    let exported = one_webhook(
        &[
            ("IONFLUX_OTLP_ENDPOINT", endpoint),
            ("IONFLUX_OTLP_SERVICE_NAME", SERVICE_NAME.into()),
        ],
        None,
        &received,
        true,
    )
    .await;
    assert!(
        exported.service_names.iter().all(|n| n == SERVICE_NAME)
            && !exported.service_names.is_empty(),
        "{:?}",
        exported.service_names
    );
    assert_one_trace(&exported);
}

/// A deployment set up for OpenTelemetry alone: only the standard
/// variables, none of ours. With a broker, the record's `traceparent` is the
/// produce span, in the webhook's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_otel_variables_alone_configure_export_and_records_carry_the_trace() {
    let (endpoint, received) = collector().await;
    let brokers = kafka_brokers();
    let exported = one_webhook(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", OTEL_SERVICE_NAME.into()),
        ],
        brokers.as_deref(),
        &received,
        true,
    )
    .await;
    assert!(
        exported
            .service_names
            .iter()
            .all(|n| n == OTEL_SERVICE_NAME)
            && !exported.service_names.is_empty(),
        "{:?}",
        exported.service_names
    );
    let trace = assert_one_trace(&exported);
    if brokers.is_none() {
        return;
    }
    let produce = exported.one("kafka.produce");
    let row = exported.one("dispatch.row");
    assert_eq!(
        hex(&produce.trace_id),
        trace,
        "kafka.produce in another trace"
    );
    assert_eq!(produce.parent_span_id, row.span_id);
    let traceparent = exported
        .headers
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| v.clone())
        .expect("a traceparent header");
    assert_eq!(
        traceparent,
        format!("00-{trace}-{}-01", hex(&produce.span_id)),
        "the record's parent is its produce span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_turns_export_off() {
    let (endpoint, received) = collector().await;
    let exported = one_webhook(
        &[
            ("IONFLUX_OTLP_ENDPOINT", endpoint),
            ("OTEL_SDK_DISABLED", "true".into()),
        ],
        None,
        &received,
        false,
    )
    .await;
    assert!(exported.spans.is_empty(), "spans exported while disabled");
    assert!(received_now(&received).is_empty());
    // The event still names a trace id, and the stored one is well formed.
    let trace = exported.event["metadata"]["trace_id"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
}

/// Which variable wins, as `config show` prints it: ours over the standard
/// ones, the traces variable over the general one, both over the file.
#[test]
fn our_variables_win_over_the_standard_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "otlp_endpoint = \"http://file:4318\"\notlp_service_name = \"from-file\"\n",
    )
    .unwrap();
    let shown = |env: &[(&str, &str)]| {
        let out = Command::new(gateway_bin())
            .args(["config", "show", "--config"])
            .arg(&file)
            .env_clear()
            .envs(base_env(dir.path()))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .trim_matches('"')
                .to_string()
        };
        (value("otlp_endpoint"), value("otlp_service_name"))
    };
    assert_eq!(shown(&[]), ("http://file:4318".into(), "from-file".into()));
    let standard = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
        ("OTEL_SERVICE_NAME", "otel-name"),
    ];
    assert_eq!(
        shown(&standard),
        ("http://general:4318".into(), "otel-name".into())
    );
    let mut traces = standard.to_vec();
    traces.push((
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://traces/api/spans",
    ));
    assert_eq!(shown(&traces).0, "http://traces/api/spans");
    let mut ours = traces.clone();
    ours.push(("IONFLUX_OTLP_ENDPOINT", "http://ours:4318"));
    ours.push(("IONFLUX_OTLP_SERVICE_NAME", "our-name"));
    assert_eq!(shown(&ours), ("http://ours:4318".into(), "our-name".into()));
}
