//! Observability over real HTTP: `GET /metrics` moves the right counters
//! with the right labels (and names no shop, brand or path), and `/ready`
//! fails once the backlog is older than `max_backlog_age`.
//!
//! The metrics recorder is one per process, shared by every gateway a test
//! binary starts: counters are compared before and after with `>=`, and the
//! tests of this file take turns (see [`TURN`]) because the inbox gauges are
//! process-wide too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ionflux_tests::{Gateway, Hook, Options, OwnBroker, PATIENCE};

const ORDER: &[u8] =
    br#"{"id": 820982911946154508, "email": "jon@example.com", "total_price": "10.00"}"#;

/// One gateway at a time in this binary: a gateway whose backlog cannot
/// drain would hold the shared inbox gauge above 0 while another test waits
/// for it to read 0.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    (name.to_string(), parse_labels(body))
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// `k="v",k2="v2"`, with `\"` and `\\` escapes in values.
fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label has a value");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("label value is closed") {
                (_, '\\') => value.push(chars.next().expect("escape").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The sum of every series of `name` whose labels include `want` (0 when
/// there is none yet).
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|got| got == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Labels a check asks for (a subset of a series' labels).
type Labels<'a> = Vec<(&'a str, &'a str)>;

async fn scrape(gw: &Gateway) -> (String, Vec<Sample>) {
    let resp = gw
        .client
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn metrics_count_intake_processing_and_publishing() {
    let _turn = TURN.lock().await;
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("metrics-shop.myshopify.com").await;
    // redact-pii refuses a body that is not a JSON object: a transform error.
    gw.route_brand(&conn, "orders/paid", "builtin:redact-pii", "{}")
        .await;
    let (_, before) = scrape(&gw).await;

    let fresh = || Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let good = fresh();
    let requests = [
        (&good, 200),
        (
            &fresh().set_header("x-shopify-hmac-sha256", "bm90IHRoZSBzaWduYXR1cmU="),
            401,
        ),
        (
            &Hook {
                path: "/integrations/shopify/webhooks/nosuchconnection".into(),
                ..fresh()
            },
            403,
        ),
        // the same webhook id again
        (&good, 200),
        // genuine, but no event can be made of it: the default transform
        // passes it through and the envelope refuses it
        (
            &Hook::shopify(&conn, "orders/create", "2024-01", b"not json"),
            200,
        ),
        // the same, refused by the transform itself
        (
            &Hook::shopify(&conn, "orders/paid", "2024-01", b"not json"),
            200,
        ),
    ];
    for (hook, status) in requests {
        let (got, body) = gw.send(hook).await;
        assert_eq!(got, status, "{body}");
    }
    gw.settle().await;

    let (text, after) = scrape(&gw).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let shopify = ("provider", "shopify");
    let topic = ("topic", "orders/create");
    let checks: Vec<(&str, Labels, f64)> = vec![
        ("ionflux_webhooks_received_total", vec![shopify], 5.0),
        ("ionflux_webhooks_verified_total", vec![shopify], 3.0),
        (
            "ionflux_webhooks_rejected_total",
            vec![shopify, ("reason", "invalid_hmac")],
            1.0,
        ),
        (
            "ionflux_webhooks_rejected_total",
            vec![shopify, ("reason", "unknown_connection")],
            1.0,
        ),
        ("ionflux_webhooks_accepted_total", vec![shopify, topic], 2.0),
        (
            "ionflux_webhooks_duplicate_total",
            vec![shopify, topic],
            1.0,
        ),
        ("ionflux_webhook_ack_seconds_count", vec![shopify], 3.0),
        (
            "ionflux_transform_duration_seconds_count",
            vec![("transform", "shopify-default"), ("outcome", "ok")],
            1.0,
        ),
        (
            "ionflux_transform_duration_seconds_count",
            vec![("transform", "redact-pii"), ("outcome", "error")],
            1.0,
        ),
        (
            "ionflux_publish_duration_seconds_count",
            vec![("sink", "event-log")],
            1.0,
        ),
        (
            "ionflux_records_published_total",
            vec![("sink", "event-log"), ("kind", "event")],
            1.0,
        ),
        (
            "ionflux_dead_letters_total",
            vec![("reason", "invalid_output")],
            1.0,
        ),
        (
            "ionflux_dead_letters_total",
            vec![("reason", "invalid_input")],
            1.0,
        ),
        ("ionflux_end_to_end_seconds_count", vec![shopify], 1.0),
    ];
    for (name, labels, at_least) in checks {
        let got = moved(name, &labels);
        assert!(
            got >= at_least,
            "{name}{labels:?} moved by {got}, expected at least {at_least}\n{text}"
        );
    }
    // Histograms are real Prometheus histograms, with buckets.
    assert!(
        after
            .iter()
            .any(|s| s.name == "ionflux_webhook_ack_seconds_bucket" && s.labels["le"] == "+Inf"),
        "{text}"
    );
    assert!(text.contains("# HELP ionflux_inbox_depth"), "{text}");
    assert!(
        text.contains("# TYPE ionflux_webhook_ack_seconds histogram"),
        "{text}"
    );

    // Bounded labels only: nothing that names the shop, its brand, or the
    // path that webhooks are posted to.
    let c = &conn.created;
    for private in [
        c.account.as_str(),
        c.brand_id.as_str(),
        c.workspace_id.as_str(),
        c.webhook_path.rsplit('/').next().unwrap(),
        "nosuchconnection",
    ] {
        assert!(!text.contains(private), "/metrics names {private:?}");
    }

    // The sampler brings the inbox gauges back to 0 once all is published.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, samples) = scrape(&gw).await;
        let depth = value(&samples, "ionflux_inbox_depth", &[]);
        let age = value(&samples, "ionflux_inbox_oldest_pending_age_seconds", &[]);
        if samples.iter().any(|s| s.name == "ionflux_inbox_depth") && depth == 0.0 && age == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inbox depth still {depth} (oldest {age} s) after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn ready_fails_when_the_backlog_is_older_than_allowed() {
    let _turn = TURN.lock().await;
    // Nothing listens on this port: every publish fails, transiently.
    let nowhere = OwnBroker::reserve();
    let gw = Gateway::start(Options {
        kafka: Some(nowhere.brokers()),
        max_backlog_age: Some(Duration::from_millis(1)),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("stale-shop.myshopify.com").await;
    let (_, before) = scrape(&gw).await;
    let (status, body) = gw
        .send(&Hook::shopify(&conn, "orders/create", "2024-01", ORDER))
        .await;
    assert_eq!(status, 200, "{body}");

    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let resp = gw.client.get(gw.url("/ready")).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        if status == 503 && body["code"] == "backlog_too_old" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still answers {status} {body} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = body["message"].as_str().unwrap();
    // The limit is the operator's own setting; the backlog's size is not
    // told to whoever probes (the public listener answers /ready too).
    assert_eq!(message, "the oldest pending webhook is older than 1ms");

    // The failed sends show up as retries, and the webhook is still pending.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (text, after) = scrape(&gw).await;
        let retried = value(
            &after,
            "ionflux_publish_retries_total",
            &[("sink", "kafka")],
        ) - value(
            &before,
            "ionflux_publish_retries_total",
            &[("sink", "kafka")],
        );
        if retried >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no publish retry counted after {PATIENCE:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(gw.store().pending_count().await.unwrap(), 1);
    gw.stop().await;
}
