//! Every sample of `tests/fixtures/providers/` (the project's shared
//! `data/providers/`) through a running gateway: connected over the admin
//! API, signed here as each platform signs (with the `hmac`, `sha2`,
//! `base64` and `jsonwebtoken` crates and the vectors' secrets or test keys,
//! never with the gateway's own code), answered 200, and out again as the
//! PlatformEvent the README's "Event types per platform" promises: in the
//! event log, or on Kafka when `IONFLUX_TEST_KAFKA_BROKERS` names a broker.
//! TikTok's sample that is not JSON, as TikTok's docs publish it, becomes a
//! dead letter that says so. Forged, stale and replayed requests are refused
//! (or deduplicated) and make no event; WooCommerce's unsigned creation ping
//! is answered and stores nothing.
//!
//! One gateway per test, all platforms in it, so that a backend costs one
//! start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use ionflux_gateway::pipeline::event::Topics;
use ionflux_tests::{Gateway, Options, admin_json, consume, kafka_brokers, shared_dir};
use serde_json::{Value, json};
use sha2::Sha256;

const WORKSPACE: &str = "7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f";

/// The secret WooCommerce's REST docs sign their delivery log with.
const WOO_SECRET: &str = "my-super-secret-private-key";
/// The site the WooCommerce samples name (`X-WC-Webhook-Source`).
const WOO_SITE: &str = "http://example.com/";
/// TikTok's worked example (docs): app key, app secret and its shop.
const TIKTOK_DOC_APP: (&str, &str, &str) = ("abcdef", "123", "7495540735365777507");
/// The shop of TikTok's other samples, and an app of the test's own.
const TIKTOK_SHOP: &str = "7494049642642441621";
const TIKTOK_APP: (&str, &str) = ("test_app_key", "test_app_secret");
/// The secret of GitHub's form-body vector (snare's test).
const GITHUB_SECRET: &str = "secretsecret";
/// The secret of Stripe's SDK test.
const STRIPE_SECRET: &str = "whsec_test_secret";
/// A BigCommerce app's OAuth client secret: BigCommerce signs Standard
/// Webhooks with its raw bytes as the key, `whsec_` + base64 of it.
const BIGCOMMERCE_CLIENT_SECRET: &str = "bc-client-secret-for-tests";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/providers")
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One sample file: `<platform>/<topic>/<n>.json` (or `.jwt`), with its
/// `<n>.headers.json` when the source published the request's headers.
#[derive(Debug, Clone)]
struct Sample {
    platform: String,
    topic: String,
    file: String,
    body: Vec<u8>,
    headers: BTreeMap<String, String>,
}

fn samples() -> Vec<Sample> {
    let root = fixtures();
    let mut out = Vec::new();
    for platform in [
        "woocommerce",
        "tiktok-shop",
        "wix",
        "standard-webhooks",
        "bigcommerce",
    ]
    .into_iter()
    .chain(["github", "stripe"])
    {
        let mut topics: Vec<_> = std::fs::read_dir(root.join(platform))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        topics.sort();
        for dir in topics {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    !name.ends_with(".headers.json")
                        && (name.ends_with(".json") || name.ends_with(".jwt"))
                })
                .collect();
            files.sort();
            for file in files {
                let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
                let headers = std::fs::read(dir.join(format!("{stem}.headers.json")))
                    .map(|h| serde_json::from_slice(&h).unwrap())
                    .unwrap_or_default();
                out.push(Sample {
                    platform: platform.into(),
                    topic: dir.file_name().unwrap().to_string_lossy().into_owned(),
                    file: file
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    body: std::fs::read(&file).unwrap(),
                    headers,
                });
            }
        }
    }
    out
}

/// Each sample's event kind and schema version, written out from the
/// README's table ("Event types per platform"), not from the transforms.
fn expected_kind(s: &Sample) -> Option<(&'static str, &'static str)> {
    Some(match (s.platform.as_str(), s.topic.as_str()) {
        ("woocommerce", "action.woocommerce_add_to_cart") => (
            "action.woocommerce_add_to_cart",
            "v1.woocommerce.unversioned",
        ),
        ("woocommerce", "customer.created") => ("customer.created", "v1.woocommerce.unversioned"),
        ("woocommerce", "order.created") => ("order.created", "v1.woocommerce.unversioned"),
        ("woocommerce", "order.updated") => ("order.updated", "v1.woocommerce.unversioned"),
        ("woocommerce", "product.created") => ("product.created", "v1.woocommerce.unversioned"),
        ("tiktok-shop", topic) => (
            match topic {
                "CANCELLATION_STATUS_CHANGE" => "cancellation.status_changed",
                "ORDER_STATUS_CHANGE" => "order.status_changed",
                "PRODUCT_CREATION" => "product.created",
                "PRODUCT_INFORMATION_CHANGE" => "product.information_changed",
                "PRODUCT_STATUS_CHANGE" => "product.status_changed",
                "RECIPIENT_ADDRESS_UPDATE" => "order.recipient_address_updated",
                "UPCOMING_AUTHORIZATION_EXPIRATION" => "seller.authorization_expiring",
                // Not JSON as TikTok publishes it: a dead letter.
                "RETURN_STATUS_CHANGE" => return None,
                other => panic!("no expectation for TikTok Shop's {other}"),
            },
            "v1.tiktok_shop.unversioned",
        ),
        ("wix", "AppInstalled") => ("app.installed", "v1.wix.unversioned"),
        ("wix", "wix.crm.inbox.v2.message_message_sent_to_business") => {
            ("message.sent_to_business", "v1.wix.crm.inbox.v2")
        }
        ("standard-webhooks", "contact.created") => {
            ("contact.created", "v1.standard_webhooks.unversioned")
        }
        ("standard-webhooks", "example.event") => {
            ("example.event", "v1.standard_webhooks.unversioned")
        }
        ("standard-webhooks", "ping") => ("ping.received", "v1.standard_webhooks.unversioned"),
        ("bigcommerce", "store.order.created") => {
            ("store.order.created", "v1.standard_webhooks.unversioned")
        }
        ("bigcommerce", "store.order.statusUpdated") => (
            "store.order.status_updated",
            "v1.standard_webhooks.unversioned",
        ),
        ("bigcommerce", "store.order.updated") => {
            ("store.order.updated", "v1.standard_webhooks.unversioned")
        }
        ("bigcommerce", "store.product.updated") => {
            ("store.product.updated", "v1.standard_webhooks.unversioned")
        }
        ("github", "issues") => ("issues.received", "v1.hmac.unversioned"),
        ("github", "issues.opened") => ("issues.opened", "v1.hmac.unversioned"),
        ("github", "ping") => ("ping.received", "v1.hmac.unversioned"),
        ("github", "push") => ("push.received", "v1.hmac.unversioned"),
        ("stripe", "_untyped_test_event") => ("webhook.received", "v1.hmac.unversioned"),
        ("stripe", "v1.billing.meter.error_report_triggered") => (
            "v1.billing.meter.error_report_triggered",
            "v1.hmac.unversioned",
        ),
        (platform, topic) => panic!("no expectation for {platform}'s {topic}"),
    })
}

/// A connection made over the admin API.
#[derive(Debug, Clone)]
struct Conn {
    provider: String,
    account: String,
    brand: String,
    path: String,
}

async fn connect(
    gw: &Gateway,
    provider: &str,
    account: &str,
    secret: &str,
    settings: Option<Value>,
) -> Conn {
    let brand = uuid::Uuid::new_v4().to_string();
    let mut body = json!({
        "provider": provider,
        "account": account,
        "workspace_id": WORKSPACE,
        "brand_id": brand,
        "webhook_secret": secret,
    });
    if let Some(settings) = settings {
        body["settings"] = settings;
    }
    let (status, created) = admin_json(
        gw,
        reqwest::Method::POST,
        "/admin/v1/connections",
        gw.operator_token.as_deref(),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{provider} {account}: {created}");
    Conn {
        provider: provider.into(),
        account: created["account"].as_str().unwrap().into(),
        brand,
        path: created["webhook_path"].as_str().unwrap().into(),
    }
}

/// A request as a platform sends it.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn post(gw: &Gateway, r: &Request) -> (u16, Value) {
    let mut req = gw
        .client
        .post(gw.url(&r.path))
        .header("content-type", "application/json")
        .body(r.body.clone());
    for (name, value) in &r.headers {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

fn published(s: &Sample, name: &str) -> Option<String> {
    s.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

// ---- each platform's signature, computed here ----------------------------

fn woocommerce(conn: &Conn, s: &Sample, secret: &str) -> Request {
    // The published headers (all but the signature and transport ones),
    // else what WooCommerce sends for the topic.
    let mut headers: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k.starts_with("x-wc-webhook-") && k != "x-wc-webhook-signature")
        .collect();
    if headers.is_empty() {
        let (resource, event) = s.topic.split_once('.').unwrap();
        headers = vec![
            ("x-wc-webhook-source".into(), WOO_SITE.into()),
            ("x-wc-webhook-topic".into(), s.topic.clone()),
            ("x-wc-webhook-resource".into(), resource.into()),
            ("x-wc-webhook-event".into(), event.into()),
            ("x-wc-webhook-id".into(), "7".into()),
            (
                "x-wc-webhook-delivery-id".into(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
        ];
    }
    let signature = STANDARD.encode(hmac_sha256(secret.as_bytes(), &[&s.body]));
    // Where the docs' secret is the one we hold, we sign as they did.
    if let Some(theirs) = published(s, "x-wc-webhook-signature")
        && secret == WOO_SECRET
        && s.topic.starts_with("action.")
    {
        assert_eq!(signature, theirs, "{}: the docs' signature", s.file);
    }
    headers.push(("x-wc-webhook-signature".into(), signature));
    Request {
        path: conn.path.clone(),
        headers,
        body: s.body.clone(),
    }
}

fn tiktok(conn: &Conn, body: &[u8], app_key: &str, secret: &str) -> Request {
    let signature = hex::encode(hmac_sha256(secret.as_bytes(), &[app_key.as_bytes(), body]));
    Request {
        path: conn.path.clone(),
        headers: vec![("authorization".into(), signature)],
        body: body.to_vec(),
    }
}

/// `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>` under `prefix`-`*`
/// header names (`webhook` or `svix`).
fn standard_webhooks(
    conn: &Conn,
    prefix: &str,
    key: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Request {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Request {
        path: conn.path.clone(),
        headers: vec![
            (format!("{prefix}-id"), id.into()),
            (format!("{prefix}-timestamp"), ts),
            (
                format!("{prefix}-signature"),
                format!("v1,{}", STANDARD.encode(mac)),
            ),
        ],
        body: body.to_vec(),
    }
}

fn github(conn: &Conn, s: &Sample, secret: &str) -> Request {
    let signature = format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &[&s.body]))
    );
    if let Some(theirs) = published(s, "x-hub-signature-256") {
        assert_eq!(signature, theirs, "{}: the published signature", s.file);
    }
    let event = s.topic.split('.').next().unwrap().to_string();
    let delivery =
        published(s, "x-github-delivery").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Request {
        path: conn.path.clone(),
        headers: vec![
            ("x-github-event".into(), event),
            ("x-github-delivery".into(), delivery),
            ("x-github-hook-id".into(), "292430182".into()),
            ("x-hub-signature-256".into(), signature),
        ],
        body: s.body.clone(),
    }
}

fn stripe(conn: &Conn, body: &[u8], secret: &str, t: i64) -> Request {
    let mac = hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]);
    Request {
        path: conn.path.clone(),
        headers: vec![(
            "stripe-signature".into(),
            format!("t={t},v1={}", hex::encode(mac)),
        )],
        body: body.to_vec(),
    }
}

/// A Wix token's claims (not verified).
fn jwt_claims(token: &[u8]) -> Value {
    let token = std::str::from_utf8(token).unwrap().trim();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The sample's claims signed again with `pem` (RS256), valid from `iat`
/// for an hour: Wix's key for most samples is not published.
fn wix_token(sample: &[u8], pem: &[u8], iat: i64) -> Vec<u8> {
    let mut claims = jwt_claims(sample);
    claims["iat"] = json!(iat);
    claims["exp"] = json!(iat + 3600);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap();
    jsonwebtoken::encode(&header, &claims, &key)
        .unwrap()
        .into_bytes()
}

/// What the README says a Wix webhook is stored as: the envelope with every
/// JSON-in-a-string level (`data`, and the envelope's `data` and
/// `identity`) decoded.
fn wix_envelope(sample: &[u8]) -> Value {
    let unnest = |v: &Value| match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or(v.clone()),
        other => other.clone(),
    };
    let mut envelope = unnest(&jwt_claims(sample)["data"]);
    for field in ["data", "identity"] {
        if let Some(v) = envelope.get(field) {
            envelope[field] = unnest(v);
        }
    }
    envelope
}

// ---- the scenario ----------------------------------------------------------

/// An event the gateway must publish for one sent sample.
#[derive(Debug)]
struct Expected {
    file: String,
    conn: Conn,
    inbox_id: i64,
    kind: &'static str,
    schema: &'static str,
    payload: Value,
    webhook_id: Option<String>,
}

struct Sent {
    expected: Vec<Expected>,
    /// The dead letters due: inbox id, a part of the reason.
    dead: Vec<(i64, &'static str)>,
    /// Rows the inbox must hold: one per accepted webhook, replays none.
    stored: usize,
}

impl Sent {
    fn expect(
        &mut self,
        s: &Sample,
        conn: &Conn,
        inbox_id: i64,
        payload: Value,
        id: Option<String>,
    ) {
        let (kind, schema) = expected_kind(s).unwrap();
        self.expected.push(Expected {
            file: s.file.clone(),
            conn: conn.clone(),
            inbox_id,
            kind,
            schema,
            payload,
            webhook_id: id,
        });
    }
}

async fn accepted(gw: &Gateway, r: &Request, what: &str) -> i64 {
    let (status, body) = post(gw, r).await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body["status"], "accepted", "{what}: {body}");
    body["inbox_id"].as_i64().unwrap()
}

/// A request that must be refused with `status` and `code`, whose message
/// says `says`.
async fn refused(gw: &Gateway, r: &Request, status: u16, code: &str, says: &str, what: &str) {
    let (got, body) = post(gw, r).await;
    assert_eq!(
        (got, body["code"].as_str()),
        (status, Some(code)),
        "{what}: {body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains(says),
        "{what}: {body}"
    );
}

/// 401 `invalid_signature`: the signature does not match.
async fn refused_as_forged(gw: &Gateway, r: &Request, what: &str) {
    refused(gw, r, 401, "invalid_signature", "does not match", what).await;
}

/// 401 `invalid_signature`: genuine, but outside the tolerance.
async fn refused_as_stale(gw: &Gateway, r: &Request, what: &str) {
    refused(gw, r, 401, "invalid_signature", "tolerance", what).await;
}

/// The same request again: 200 `duplicate`, the same row.
async fn replayed(gw: &Gateway, r: &Request, inbox_id: i64, what: &str) {
    let (status, body) = post(gw, r).await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body["status"], "duplicate", "{what}: {body}");
    assert_eq!(body["inbox_id"], inbox_id, "{what}: {body}");
}

fn flip_last_hex(signature: &str) -> String {
    let mut s = signature.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

async fn send_every_sample(gw: &Gateway) -> Sent {
    let samples = samples();
    let mut by_platform: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &samples {
        *by_platform.entry(s.platform.as_str()).or_default() += 1;
    }
    // Every sample of the project's shared data is among the fixtures.
    let shared = shared_dir().join("data/providers");
    if shared.is_dir() {
        for s in &samples {
            assert!(
                shared.join(&s.file).is_file(),
                "{} is not shared data",
                s.file
            );
        }
        let count = walk(&shared)
            .into_iter()
            .filter(|p| {
                let p = p.to_string_lossy();
                !p.contains("/vectors/")
                    && !p.ends_with(".headers.json")
                    && (p.ends_with(".json") || p.ends_with(".jwt"))
            })
            .count();
        assert_eq!(count, samples.len(), "samples in {}", shared.display());
    }
    eprintln!("samples per platform: {by_platform:?}");

    let mut sent = Sent {
        expected: Vec::new(),
        dead: Vec::new(),
        stored: 0,
    };
    let json_of = |s: &Sample| -> Value { serde_json::from_slice(&s.body).unwrap() };
    let of = |platform: &'static str| samples.iter().filter(move |s| s.platform == platform);

    // WooCommerce: the site's address and the webhook's secret.
    let woo = connect(gw, "woocommerce", WOO_SITE, WOO_SECRET, None).await;
    let mut first_woo = None;
    for s in of("woocommerce") {
        let r = woocommerce(&woo, s, WOO_SECRET);
        let id = accepted(gw, &r, &s.file).await;
        let delivery = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-wc-webhook-delivery-id")
            .map(|(_, v)| v.clone());
        sent.expect(s, &woo, id, json_of(s), delivery);
        first_woo.get_or_insert((r, id));
    }
    let (r, id) = first_woo.unwrap();
    replayed(gw, &r, id, "WooCommerce replay").await;
    let mut forged = r.clone();
    forged.body = br#"{"action":"woocommerce_add_to_cart","arg":"forged"}"#.to_vec();
    refused_as_forged(gw, &forged, "WooCommerce forged").await;
    // The unsigned ping WooCommerce sends when a webhook is created.
    let ping = gw
        .client
        .post(gw.url(&woo.path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("webhook_id=535")
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(
        ping.json::<Value>().await.unwrap(),
        json!({"status": "ping"})
    );

    // TikTok Shop: the docs' own example, signed with the docs' app, at a
    // connection of its shop; every other sample at a brand of its own,
    // since TikTok's docs give them all one notification id (the inbox
    // deduplicates on it).
    let (app_key, app_secret, doc_shop) = TIKTOK_DOC_APP;
    for s in of("tiktok-shop") {
        let (key, secret, shop) = match published(s, "authorization") {
            Some(_) => (app_key, app_secret, doc_shop),
            None => (TIKTOK_APP.0, TIKTOK_APP.1, TIKTOK_SHOP),
        };
        let conn = connect(
            gw,
            "tiktok_shop",
            shop,
            secret,
            Some(json!({ "app_key": key })),
        )
        .await;
        let r = tiktok(&conn, &s.body, key, secret);
        if let Some(theirs) = published(s, "authorization") {
            assert_eq!(r.headers[0].1, theirs, "{}: the docs' signature", s.file);
        }
        let id = accepted(gw, &r, &s.file).await;
        match expected_kind(s) {
            Some(_) => {
                let notification = json_of(s)["tts_notification_id"]
                    .as_str()
                    .map(str::to_owned);
                sent.expect(s, &conn, id, json_of(s), notification);
            }
            None => {
                assert!(serde_json::from_slice::<Value>(&s.body).is_err());
                sent.dead.push((id, "not JSON"));
            }
        }
        if s.topic == "ORDER_STATUS_CHANGE" && shop == TIKTOK_SHOP {
            replayed(gw, &r, id, "TikTok Shop replay").await;
            let forged = tiktok(&conn, &s.body, key, "not the app secret");
            refused_as_forged(gw, &forged, "TikTok forged").await;
        }
    }

    // Wix: the app's public key; one connection per app instance. The
    // samples are signed again with the test key (Wix's is not published
    // for most), fresh `iat` and `exp`.
    let public = std::fs::read(fixtures().join("wix/test-key.pub.pem")).unwrap();
    let private = std::fs::read(fixtures().join("wix/test-key.pem")).unwrap();
    let public = String::from_utf8(public).unwrap();
    let mut wix_conns: HashMap<String, Conn> = HashMap::new();
    for s in of("wix") {
        let envelope = wix_envelope(&s.body);
        let instance = envelope["instanceId"].as_str().unwrap().to_string();
        if !wix_conns.contains_key(&instance) {
            let conn = connect(gw, "wix", &instance, &public, None).await;
            wix_conns.insert(instance.clone(), conn);
        }
        let conn = &wix_conns[&instance];
        let r = Request {
            path: conn.path.clone(),
            headers: vec![],
            body: wix_token(&s.body, &private, now()),
        };
        let id = accepted(gw, &r, &s.file).await;
        let delivery = envelope["data"]["id"]
            .as_str()
            .or(envelope["webhookId"].as_str())
            .map(str::to_owned);
        sent.expect(s, conn, id, envelope.clone(), delivery);
        if s.file.ends_with("AppInstalled/2.jwt") {
            replayed(gw, &r, id, "Wix replay").await;
            let forged = Request {
                body: tampered(&r.body),
                ..r.clone()
            };
            refused_as_forged(gw, &forged, "Wix forged").await;
            let stale = Request {
                body: wix_token(&s.body, &private, now() - 7200),
                ..r.clone()
            };
            refused_as_stale(gw, &stale, "Wix past exp").await;
        }
    }
    // The one sample whose key Wix published verifies with it, but its
    // `exp` (2022) is long past: refused as stale, not as forged.
    let vector: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixtures().join("vectors/wix.json")).unwrap())
            .unwrap();
    let published_key = vector[0]["public_key_pem"].as_str().unwrap();
    let body = std::fs::read(fixtures().join("wix/AppInstalled/1.jwt")).unwrap();
    let instance = wix_envelope(&body)["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let conn = connect(gw, "wix", &instance, published_key, None).await;
    let verbatim = Request {
        path: conn.path,
        headers: vec![],
        body,
    };
    refused_as_stale(gw, &verbatim, "Wix's published sample").await;

    // Standard Webhooks: a sender's `whsec_` secret; the svix-* sample
    // keeps its header family. BigCommerce, a Standard Webhooks sender,
    // keys with its client secret's raw bytes.
    let key: Vec<u8> = (0..24).map(|i| (i * 37 + 11) as u8).collect();
    let whsec = format!("whsec_{}", STANDARD.encode(&key));
    let sw = connect(gw, "standard_webhooks", "acme-svix-app", &whsec, None).await;
    let mut first_sw = None;
    for s in of("standard-webhooks") {
        let (prefix, id) = match (published(s, "webhook-id"), published(s, "svix-id")) {
            (Some(id), _) => ("webhook", id),
            (None, Some(id)) => ("svix", id),
            _ => ("webhook", format!("msg_{}", uuid::Uuid::new_v4().simple())),
        };
        let r = standard_webhooks(&sw, prefix, &key, &id, now(), &s.body);
        let inbox_id = accepted(gw, &r, &s.file).await;
        sent.expect(s, &sw, inbox_id, json_of(s), Some(id.clone()));
        first_sw.get_or_insert((id, r, inbox_id));
    }
    let (id, r, inbox_id) = first_sw.unwrap();
    replayed(gw, &r, inbox_id, "Standard Webhooks replay").await;
    let wrong_key = standard_webhooks(&sw, "webhook", b"another key", &id, now(), &r.body);
    refused_as_forged(gw, &wrong_key, "Standard Webhooks forged").await;
    let stale = standard_webhooks(&sw, "webhook", &key, &id, now() - 600, &r.body);
    refused_as_stale(gw, &stale, "Standard Webhooks stale").await;
    let bc_whsec = format!("whsec_{}", STANDARD.encode(BIGCOMMERCE_CLIENT_SECRET));
    let bc = connect(
        gw,
        "standard_webhooks",
        "bigcommerce-store-1025646",
        &bc_whsec,
        None,
    )
    .await;
    for s in of("bigcommerce") {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let r = standard_webhooks(
            &bc,
            "webhook",
            BIGCOMMERCE_CLIENT_SECRET.as_bytes(),
            &id,
            now(),
            &s.body,
        );
        let inbox_id = accepted(gw, &r, &s.file).await;
        sent.expect(s, &bc, inbox_id, json_of(s), Some(id));
    }

    // GitHub (the `github` preset): the repository webhook's secret.
    let gh = connect(
        gw,
        "hmac",
        "octo-org/hello-world",
        GITHUB_SECRET,
        Some(json!({"preset": "github"})),
    )
    .await;
    let mut first_gh = None;
    for s in of("github") {
        let r = github(&gh, s, GITHUB_SECRET);
        let id = accepted(gw, &r, &s.file).await;
        // A form body, `payload=<json>`, is published as its JSON.
        let payload = match s.body.strip_prefix(b"payload=") {
            Some(json) => serde_json::from_slice(json).unwrap(),
            None => json_of(s),
        };
        let delivery = r.headers[1].1.clone();
        sent.expect(s, &gh, id, payload, Some(delivery));
        first_gh.get_or_insert((r, id));
    }
    let (r, id) = first_gh.unwrap();
    replayed(gw, &r, id, "GitHub replay").await;
    let mut forged = r.clone();
    forged.headers[3].1 = flip_last_hex(&forged.headers[3].1);
    refused_as_forged(gw, &forged, "GitHub forged").await;

    // Stripe (the `stripe` preset): the endpoint's `whsec_` secret, used
    // as it is; the event id deduplicates, so a retry signed anew is one.
    let st = connect(
        gw,
        "hmac",
        "acme-stripe",
        STRIPE_SECRET,
        Some(json!({"preset": "stripe"})),
    )
    .await;
    for s in of("stripe") {
        let r = stripe(&st, &s.body, STRIPE_SECRET, now());
        let id = accepted(gw, &r, &s.file).await;
        sent.expect(
            s,
            &st,
            id,
            json_of(s),
            json_of(s)["id"].as_str().map(str::to_owned),
        );
        if s.topic == "_untyped_test_event" {
            let retry = stripe(&st, &s.body, STRIPE_SECRET, now() + 1);
            replayed(gw, &retry, id, "Stripe retry").await;
            let stale = stripe(&st, &s.body, STRIPE_SECRET, now() - 600);
            refused_as_stale(gw, &stale, "Stripe stale").await;
            let forged = stripe(&st, &s.body, "whsec_guessed", now());
            refused_as_forged(gw, &forged, "Stripe forged").await;
        }
    }
    sent.stored = sent.expected.len() + sent.dead.len();
    assert_eq!(sent.stored, samples.len(), "every sample accepted once");
    sent
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A token whose claims were changed after it was signed (another
/// instance, the signature kept): what a forger without the key can make.
fn tampered(token: &[u8]) -> Vec<u8> {
    let token = std::str::from_utf8(token).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = jwt_claims(token.as_bytes());
    claims["data"] = json!(
        claims["data"]
            .as_str()
            .unwrap()
            .replace("AppInstalled", "AppRemoved")
    );
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    parts.join(".").into_bytes()
}

/// Checks one published event against what its sample must become.
fn check_event(e: &Value, x: &Expected, topic: &str, topics: &Topics) {
    let what = &x.file;
    let event_type = format!(
        "ionflux.{}.ws_{WORKSPACE}.brand_{}.{}",
        x.conn.provider, x.conn.brand, x.kind
    );
    assert_eq!(e["event_type"], event_type.as_str(), "{what}");
    assert_eq!(e["payload_schema_version"], x.schema, "{what}");
    assert_eq!(e["payload_json"], x.payload, "{what}");
    assert_eq!(e["workspace_id"], WORKSPACE, "{what}");
    assert_eq!(e["brand_id"], x.conn.brand.as_str(), "{what}");
    assert_eq!(
        e["metadata"]["provider"],
        x.conn.provider.as_str(),
        "{what}"
    );
    assert_eq!(e["metadata"]["account"], x.conn.account.as_str(), "{what}");
    assert_eq!(
        e["metadata"]["transform"],
        format!("{}-default", default_of(&x.conn.provider)).as_str(),
        "{what}"
    );
    if let Some(id) = &x.webhook_id {
        assert_eq!(e["metadata"]["webhook_id"], id.as_str(), "{what}");
    }
    let want = topics
        .events
        .replace("{provider}", &x.conn.provider)
        .replace("{workspace_id}", WORKSPACE);
    assert_eq!(topic, want, "{what}");
}

fn default_of(provider: &str) -> &str {
    match provider {
        "tiktok_shop" => "tiktok-shop",
        "standard_webhooks" => "standard-webhooks",
        other => other,
    }
}

fn per_provider_topics() -> Topics {
    let run = uuid::Uuid::new_v4().simple().to_string();
    Topics {
        events: format!("test.{run}.{{provider}}.ws_{{workspace_id}}.events_raw"),
        dead_letters: format!("test.{run}.{{provider}}.ws_{{workspace_id}}.dlq"),
    }
}

async fn dead_letters_say_why(gw: &Gateway, sent: &Sent) {
    let letters = gw.store().dead_letters(100).await.unwrap();
    assert_eq!(letters.len(), sent.dead.len(), "{letters:#?}");
    for (inbox_id, says) in &sent.dead {
        let letter = letters
            .iter()
            .find(|l| l.inbox_id == *inbox_id)
            .unwrap_or_else(|| panic!("no dead letter for inbox row {inbox_id}: {letters:#?}"));
        assert!(letter.reason.contains(says), "{letter:#?}");
        eprintln!(
            "dead letter {}: {} {}",
            letter.topic, letter.reason_code, letter.reason
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_sample_becomes_an_event_in_the_log_and_forgeries_none() {
    let topics = per_provider_topics();
    let gw = Gateway::start(Options {
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let sent = send_every_sample(&gw).await;
    gw.settle().await;
    dead_letters_say_why(&gw, &sent).await;
    assert_eq!(gw.store().pending_count().await.unwrap(), 0);

    let logged = gw.store().events_after(0, 10_000).await.unwrap();
    let events = gw.logged_events().await;
    assert_eq!(
        events.len(),
        sent.expected.len(),
        "one event per sample, none for replays or refusals"
    );
    for x in &sent.expected {
        let (i, e) = events
            .iter()
            .enumerate()
            .find(|(_, e)| e["metadata"]["inbox_id"] == x.inbox_id)
            .unwrap_or_else(|| panic!("no event for {}", x.file));
        check_event(e, x, &logged[i].topic, &topics);
        eprintln!("{} -> {} {}", x.file, x.kind, x.schema);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_sample_comes_back_from_the_broker_on_its_providers_topic() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let topics = per_provider_topics();
    let gw = Gateway::start(Options {
        kafka: Some(brokers.clone()),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let sent = send_every_sample(&gw).await;
    gw.settle().await;
    dead_letters_say_why(&gw, &sent).await;

    let mut per_provider: BTreeMap<&str, Vec<&Expected>> = BTreeMap::new();
    for x in &sent.expected {
        per_provider.entry(&x.conn.provider).or_default().push(x);
    }
    for (provider, expected) in per_provider {
        let topic = topics
            .events
            .replace("{provider}", provider)
            .replace("{workspace_id}", WORKSPACE);
        let records = consume(&brokers, &topic, expected.len()).await;
        let mut seen = std::collections::HashSet::new();
        for x in expected {
            let r = records
                .iter()
                .find(|r| r.value["metadata"]["inbox_id"] == x.inbox_id)
                .unwrap_or_else(|| panic!("no record for {} on {topic}", x.file));
            check_event(&r.value, x, &topic, &topics);
            assert_eq!(r.key.as_deref(), Some(x.conn.brand.as_str()));
            assert!(seen.insert(x.inbox_id), "{} twice", x.file);
        }
    }
    // TikTok's unreadable sample is on the provider's dead-letter topic.
    let dlq = topics
        .dead_letters
        .replace("{provider}", "tiktok_shop")
        .replace("{workspace_id}", WORKSPACE);
    let letters = consume(&brokers, &dlq, sent.dead.len()).await;
    assert_eq!(letters.len(), sent.dead.len());
    gw.stop().await;
}

/// Wix's `AppRemoved` ends the install once its event is published: the
/// instance's connection is `disconnected`, and takes no more events (only
/// another removal, as a gone connection takes its lifecycle topics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wix_app_removal_disconnects_the_instance_after_its_event() {
    let gw = Gateway::start(Options::default()).await;
    let public = std::fs::read(fixtures().join("wix/test-key.pub.pem")).unwrap();
    let private = std::fs::read(fixtures().join("wix/test-key.pem")).unwrap();
    let installed = std::fs::read(fixtures().join("wix/AppInstalled/1.jwt")).unwrap();
    let instance = wix_envelope(&installed)["instanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = connect(
        &gw,
        "wix",
        &instance,
        std::str::from_utf8(&public).unwrap(),
        None,
    )
    .await;
    // The installed sample's claims, renamed AppRemoved: Wix's legacy
    // envelope is the same for both.
    let removed = {
        let mut claims = jwt_claims(&installed);
        let mut envelope: Value = serde_json::from_str(claims["data"].as_str().unwrap()).unwrap();
        envelope["eventType"] = json!("AppRemoved");
        claims["data"] = json!(envelope.to_string());
        claims["iat"] = json!(now());
        claims["exp"] = json!(now() + 3600);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
        .into_bytes()
    };
    let send = |body: Vec<u8>| Request {
        path: conn.path.clone(),
        headers: Vec::new(),
        body,
    };
    accepted(&gw, &send(removed.clone()), "AppRemoved").await;
    gw.settle().await;
    let status = |gw: &Gateway| {
        let store = gw.store().clone();
        let path = conn.path.rsplit('/').next().unwrap().to_owned();
        async move {
            store
                .connection_by_path(&path)
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    let events = gw.logged_events().await;
    assert_eq!(events.len(), 1, "the removal is published first");
    assert!(
        events[0]["event_type"]
            .as_str()
            .unwrap()
            .ends_with(".app.removed"),
        "{}",
        events[0]["event_type"]
    );
    let deadline = std::time::Instant::now() + ionflux_tests::PATIENCE;
    while status(&gw).await != "disconnected" {
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            status(&gw).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // An ordinary event is no longer taken from a removed instance.
    let (code, body) = post(&gw, &send(wix_token(&installed, &private, now()))).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("connection_inactive")),
        "{body}"
    );
    gw.stop().await;
}
