//! Captured logs of a whole run contain no token, code or secret (issue 4).
//!
//! Every tracing event of the process (TRACE for the gateway's own targets,
//! DEBUG for every library, with all fields and every span's fields, span
//! opening and closing included) is written into a buffer while one run goes
//! through everything that handles a secret: an OAuth install against the
//! fake Shopify (JWT, state, code, token exchange, webhook registration with
//! the access token), refused installs, signed webhooks in (OAuth and manual
//! connections) and a forged one, shop details with the service token, the
//! admin API with the operator token, dead letters and their replay, a
//! master-key rotation with re-encryption, and the shutdown. Then none of the
//! secrets may appear anywhere in the text.
//!
//! This file holds one test: a process has one global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection::Created;
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth;
use ionflux_gateway::support::secrets;
use ionflux_gateway::support::vault::{Secret, Vault};
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, ShopMode, app_config, state_cookie};
use ionflux_tests::{Conn, Gateway, Hook, Options, PATIENCE, broken_wasm};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

const CLIENT_ID: &str = "logs-client-id";
const CLIENT_SECRET: &str = "shpss_logs_client_secret_5f1c9a";
const JWT_SECRET: &str = "logs-user-service-jwt-secret-77ab";
const ADMIN_TOKEN: &str = "ionflux_admin_logs_token_3b9e";
const SERVICE_TOKEN: &str = "svc_logs_service_token_c04d";
const MANUAL_SECRET: &str = "shpss_logs_manual_webhook_secret_a8e2";
const PUBLIC_BASE: &str = "https://gateway.example.test";

/// Everything written by the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_subscriber() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    let filter = EnvFilter::new("debug,ionflux=trace,ionflux_gateway=trace,ionflux_tests=trace");
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_target(true)
        .with_level(true)
        .with_file(true)
        .with_line_number(true)
        .with_thread_names(true)
        // Span fields are printed with every event inside the span; FULL also
        // writes an event when a span opens and closes.
        .with_span_events(FmtSpan::FULL);
    let json_layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer({
            let writer = captured.clone();
            move || writer.clone()
        });
    tracing::subscriber::set_global_default(
        Registry::default()
            .with(filter)
            .with(layer)
            .with(json_layer),
    )
    .expect("the only global subscriber of this process");
    captured
}

fn now_s() -> i64 {
    ionflux_gateway::store::now_ms() / 1000
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn query(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://x/", pairs)
        .unwrap()
        .query()
        .unwrap_or("")
        .to_string()
}

fn signed_callback(shop: &str, state: &str, code: &str) -> String {
    let ts = now_s().to_string();
    let pairs = [
        ("code", code),
        ("shop", shop),
        ("state", state),
        ("timestamp", ts.as_str()),
    ];
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let hmac = oauth::sign_query(CLIENT_SECRET.as_bytes(), &owned);
    let mut all = pairs.to_vec();
    all.push(("hmac", &hmac));
    query(&all)
}

/// GET with an optional bearer token; status and JSON body (Null when empty),
/// and the Location header.
/// (status, body, Location, the state cookie it set)
async fn get(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    cookie: Option<&str>,
) -> (u16, Value, Option<String>, Option<String>) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = state_cookie(resp.headers());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, location, cookie)
}

async fn post_json(http: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_logs_no_token_code_or_secret() {
    let captured = install_subscriber();
    // Controls: a field of an event and a field of a span at TRACE do reach
    // the capture, so a secret logged either way would be found below.
    {
        let span = tracing::trace_span!(target: "ionflux::control", "control", span_field = "span-canary-6d1e");
        let _entered = span.enter();
        tracing::trace!(target: "ionflux::control", event_field = "event-canary-91fa", "control event");
    }

    // ---- the gateway: a file-backed vault, every kind of credential set ----
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ionflux.key");
    let vault = Arc::new(Vault::from_file_or_create(&key_file).unwrap().0);
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let cfg = app_config(&fake, (CLIENT_ID, CLIENT_SECRET), PUBLIC_BASE, JWT_SECRET);
    let gw = Gateway::start_with_vault(
        Options {
            shopify: Some(cfg),
            admin_token: Some(ADMIN_TOKEN.into()),
            service_token: Some(SERVICE_TOKEN.into()),
            ..Options::default()
        },
        vault.clone(),
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // ---- the OAuth install ----
    let (ws, brand, shop) = (uuid(), uuid(), "logs-shop.myshopify.com");
    let jwt = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-logs", "workspaces": [ws], "aud": JWT_AUDIENCE, "exp": now_s() + 600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let initiate = |ws: &str, token: &str| {
        let q = query(&[("workspace_id", ws), ("brand_id", &brand), ("shop", shop)]);
        let (url, token) = (
            gw.url(&format!("{}?{q}", oauth::INITIATE_PATH)),
            token.to_string(),
        );
        let http = http.clone();
        async move { get(&http, url, Some(&token), None).await }
    };
    // Refused: a JWT signed with another secret, and a foreign workspace.
    let forged_jwt = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-logs", "workspaces": [ws], "exp": now_s() + 600}),
        &EncodingKey::from_secret(b"not-the-user-service-secret"),
    )
    .unwrap();
    assert_eq!(initiate(&ws, &forged_jwt).await.0, 401);
    assert_eq!(initiate(&uuid(), &jwt).await.0, 403);
    let (status, body, location, cookie) = initiate(&ws, &jwt).await;
    assert_eq!(status, 302, "{body}");
    let cookie = cookie.expect("initiate sets the state cookie");
    let state = reqwest::Url::parse(&location.unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let code = format!("code-logs-{}", uuid::Uuid::new_v4().simple());
    let callback = |q: String| {
        let (http, url, cookie) = (
            http.clone(),
            gw.url(&format!("{}?{q}", oauth::CALLBACK_PATH)),
            cookie.clone(),
        );
        async move { get(&http, url, None, Some(&cookie)).await }
    };
    // Refused: a bad HMAC, an unknown state.
    let tampered = signed_callback(shop, &state, &code).replace("hmac=", "hmac=00");
    assert_eq!(callback(tampered).await.0, 401);
    let unknown_state = format!("{state}x");
    assert_eq!(
        callback(signed_callback(shop, &unknown_state, "code-logs-unknown"))
            .await
            .0,
        400
    );
    let (status, connected, _, _) = callback(signed_callback(shop, &state, &code)).await;
    assert_eq!(status, 200, "{connected}");
    // Replayed: the state is used up.
    assert_eq!(callback(signed_callback(shop, &state, &code)).await.0, 409);
    let connection_id = connected["connection_id"].as_str().unwrap().to_string();
    wait_for("webhook registration", || async {
        let rows = oauth::webhook_registrations(gw.store(), &connection_id)
            .await
            .unwrap();
        !rows.is_empty() && rows.iter().all(|r| r.status == "registered")
    })
    .await;

    // ---- webhooks: the OAuth connection's (signed with the client secret),
    // a manual connection's, a forged one ----
    let oauth_conn = Conn {
        created: Created {
            connection_id: connection_id.clone(),
            secure_path_identifier: String::new(),
            webhook_path: connected["webhook_path"].as_str().unwrap().to_string(),
            provider: "shopify".into(),
            account: shop.to_string(),
            workspace_id: ws.clone(),
            brand_id: brand.clone(),
            created: true,
        },
        secret: CLIENT_SECRET.to_string(),
    };
    let manual = Conn {
        created: ionflux_gateway::providers::shopify::add_connection(
            gw.store(),
            &gw.vault,
            "logs-manual.myshopify.com",
            &uuid(),
            &uuid(),
            &Secret::from(MANUAL_SECRET.to_string()),
        )
        .await
        .unwrap(),
        secret: MANUAL_SECRET.to_string(),
    };
    for conn in [&oauth_conn, &manual] {
        let hook = Hook::shopify(conn, "orders/create", "2026-04", br#"{"id": 1}"#);
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{body}");
    }
    let forged = Hook::shopify(&manual, "orders/create", "2026-04", br#"{"id": 2}"#)
        .set_header("x-shopify-hmac-sha256", webhook::sign(b"guessed", b"{}"));
    assert_eq!(gw.send(&forged).await.0, 401);
    gw.settle().await;

    // ---- shop details: the service token, a wrong one ----
    let details = gw.url(&format!(
        "/integrations/shopify/brands/{brand}/shop-details"
    ));
    for failure in [429, 500] {
        fake.set_shop_mode(Some(ShopMode::Status(failure)));
        let (status, body, _, _) = get(&http, details.clone(), Some(SERVICE_TOKEN), None).await;
        assert_eq!(status, 502, "{body}");
    }
    fake.set_shop_mode(None);
    let (status, body, _, _) = get(&http, details.clone(), Some(SERVICE_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&http, details.clone(), Some("wrong"), None).await.0,
        401
    );

    // ---- dead letters: a trapping guest, listed and replayed with the
    // operator token ----
    let digest = gw.upload("broken", &broken_wasm()).await;
    gw.route_brand(&manual, "*", &digest, "{}").await;
    let hook = Hook::shopify(&manual, "orders/create", "2026-04", br#"{"id": 3}"#);
    assert_eq!(gw.send(&hook).await.0, 200);
    gw.settle().await;
    let (status, letters, _, _) = get(
        &http,
        gw.admin_url("/admin/v1/dead-letters"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{letters}");
    assert!(!letters["dead_letters"].as_array().unwrap().is_empty());
    let (status, body) = post_json(
        &http,
        gw.admin_url("/admin/v1/dead-letters/replay"),
        ADMIN_TOKEN,
        json!({"all": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    let (status, _, _, _) = get(
        &http,
        gw.admin_url("/admin/v1/events?after=0&limit=10"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // ---- a master-key rotation and re-encryption, the gateway serving ----
    Vault::append_new_key(&key_file).unwrap();
    vault.reload().unwrap();
    let report = secrets::reencrypt_all(gw.store(), &vault).await.unwrap();
    assert!(report.all_current(), "{report:?}");
    let hook = Hook::shopify(&oauth_conn, "orders/create", "2026-04", br#"{"id": 4}"#);
    assert_eq!(gw.send(&hook).await.0, 200);
    gw.settle().await;

    // ---- every secret of the run ----
    let mut secrets: Vec<(String, String)> = vec![
        ("the app's client secret".into(), CLIENT_SECRET.into()),
        ("the JWT secret".into(), JWT_SECRET.into()),
        ("the JWT".into(), jwt.clone()),
        (
            "the JWT's signature".into(),
            jwt.rsplit('.').next().unwrap().to_string(),
        ),
        ("the forged JWT".into(), forged_jwt.clone()),
        ("the OAuth state".into(), state.clone()),
        (
            "the OAuth state cookie".into(),
            cookie.split_once('=').unwrap().1.to_string(),
        ),
        ("the OAuth code".into(), code.clone()),
        ("the admin token".into(), ADMIN_TOKEN.into()),
        ("the service token".into(), SERVICE_TOKEN.into()),
        ("the manual webhook secret".into(), MANUAL_SECRET.into()),
    ];
    let issued = fake.issued_tokens();
    assert!(
        issued.iter().any(|t| t.starts_with("shpat_"))
            && issued.iter().any(|t| t.starts_with("shprt_")),
        "an access token and a refresh token were issued: {}",
        issued.len()
    );
    for t in issued {
        // The random part alone, too: a log line that cut the prefix off
        // would still leak.
        let random = t.split_once('_').map(|(_, r)| r.to_string()).unwrap();
        secrets.push((format!("an issued token ({})", &t[..6]), t));
        secrets.push(("an issued token's random part".into(), random));
    }
    let keys = std::fs::read_to_string(&key_file).unwrap();
    let keys: Vec<&str> = keys
        .lines()
        .filter_map(|l| l.split_once(':').map(|(_, k)| k.trim()))
        .collect();
    assert_eq!(keys.len(), 2, "the old key and the new one");
    for k in keys {
        secrets.push(("a master key".into(), k.to_string()));
    }

    gw.stop().await;
    drop(fake);

    // ---- the capture is real, and clean ----
    let text = captured.text();
    if let Some(path) = std::env::var_os("IONFLUX_TEST_LOG_DUMP") {
        std::fs::write(path, &text).unwrap();
    }
    assert!(
        text.contains("span-canary-6d1e") && text.contains("event-canary-91fa"),
        "span and event fields are captured"
    );
    assert!(
        text.contains("gateway serving") && text.contains("gateway stopped"),
        "the capture holds the run"
    );
    assert!(
        text.contains("webhook stored") && text.contains("DEBUG"),
        "DEBUG events are captured"
    );
    let leaks: Vec<String> = secrets
        .iter()
        .filter(|(_, s)| text.contains(s.as_str()))
        .map(|(what, s)| {
            let at = text.find(s.as_str()).unwrap();
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            format!("{what} in: {}", &text[line_start..line_end])
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the logs ({} bytes captured):\n{}",
        text.len(),
        leaks.join("\n")
    );
}
