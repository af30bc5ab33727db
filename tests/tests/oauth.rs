//! The Shopify OAuth install over real HTTP: the in-process gateway, a local
//! fake Shopify (`ionflux_tests::fake_shopify`), and JWTs as the user service
//! would sign them. The install ends with tokens encrypted in the store and
//! webhooks registered at the fake; every refusal has its status and code.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection;
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth::{self, JwtConfig, ShopifyConfig};
use ionflux_gateway::store::oauth::OAuthStateRow;
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, app_config, state_cookie};
use ionflux_tests::{Gateway, Options, PATIENCE};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const CLIENT_ID: &str = "test-client-id";
const CLIENT_SECRET: &str = "shpss_oauth_test_client_secret";
const JWT_SECRET: &str = "user-service-shared-secret";
const PUBLIC_BASE: &str = "https://gateway.example.test";
const REDIRECT_URI: &str = "https://gateway.example.test/integrations/shopify/auth/callback";

/// A test-only RSA key pair (2048 bits), made with
/// `openssl genpkey -algorithm RSA`; it signs nothing but these tests.
const TEST_RSA_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDk2FuOBILFbDGN
+GddCdrnCrsNoi/zQIk7qUHy165eH1h5M8OGreC3vLnHRllwrmmdTjmz+ssUxXRw
yeboAXo7nzBTnT+gFR3UnvxtaDWTxw1ojW78MzPT2/AUzp5mexje1Xq63yFP3QMm
j+hVGei89kbmd92hJZrQKY20iAjDReqhI6BBD5XtsNFeIb6YGoRe/DYGYtdicrkl
daJrsHItS9YnmEwil4CKLG7s8cHANeGGaMagVTNHZaGV+4gXQOFA1qVm8+nn5Ajm
jch8qeuh2FjQlZaozGEIQHAbTYulqP+9a6VXg78F5oN+rOmnmA7/Q4gdaYX3jyzJ
83bsyTMNAgMBAAECggEACtk1QRhDP5F13LsUrogHEcJw3gaWq1UF36D4eJPZtxCM
iyjCPiI3PItjBM73v0W+/Mjc9Deq/oMVyaFoo6fErNexD/9GXHpjym6QnOC+mXc4
OLQ4hknCTTebiM3HgigxV6In8Hy5AYycPgaLoKBbAVcGqWpJRJhmks1FfUEHP7dI
nOQbLyhW6wS4W85KzZ8LkTjqm3iqcrhJziOY6PuZ/rWwjFd55MoFkm4qMeIGVSMq
n5V0KsbtQyUNTuNE6yC8ru5fEiw1YEnRKMGZTUE4+vyOhRoBWW+eyJtwuhT8Cgx+
ZNhTqdIzsB+p6eTYcsEABVx3vtibYODA7V9bcVUfaQKBgQD9qUfZSNSg/2hDQojY
6j7TLnL9QQ5cUBX/siOpfyHLwI449NY5gykOy3BA4N9N35a+SfJX7uKONqHSXHRt
9Fqtac9xQtwe5zvKY4C9gyb5rg3DdAlewWkq9tHw8qG2GlTIq+z2jigc3KonDUlm
GfphX6QXFGSmH5mFc7CoB2y2MwKBgQDm9IDVoa8JFtqeeoBTJXMLk6PEwLWnQXec
A9U7OYJwtRSwgp450sHNohTjt/CvE553FyVFxVTYgpUqsY2k5eLB29ouIWI4hUF0
Yx2/sI+VFj1bk/FvKGdQJ1TgMwtgBdSGU1r6at9yo5IWPeAsV1fncECGSPcckLjk
PI/NKHyxvwKBgQDRCsWMWonoWDObYmSWpoy5ysi2zvs/tjw66ZqcH4pBeOF8LMGy
ydV3PM64mNlOOtnm3dfbAaIxYvJ/AvRsfPiReuaax2fSC+vpQZEiHMhs8TSkg6cJ
MMkzwA6Jy9ra0N5YNd9l3QdPqcaLwlZfzz7ZKlF3N7YudVI2eX33K486owKBgC6N
djKZhoiUfLiZBKi90bSxq78LARKXlZ5y/1YSv4IsXeE+Utpg6wOh+gf0maUQlU53
8eFgZzvFBoA2jdCBLfXZdN77h6rQ4WKuX961nht1AiUlavL29+wmIWuXnmFai34P
6zSyuhuHcPjevAL0EBnsfHUU3Ap7+Wi39FxsHsZNAoGBALgM4AWDCRkCGDB97vVW
VvHci0ZSIkn/7D1YXSQUR76WHZaT9vgV00AGj2RRQGQlTE/57BsdUa+ZbM0nOPwK
BWt8iJ6DV2EZijzgGUinht0M3vmDt3hHWPbDEFuVVJDdFcSzeKHNdcG1vZwF1hNE
A05SeTW+TSn0b4jzhVmwg6qh
-----END PRIVATE KEY-----\n";
const TEST_RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5NhbjgSCxWwxjfhnXQna
5wq7DaIv80CJO6lB8teuXh9YeTPDhq3gt7y5x0ZZcK5pnU45s/rLFMV0cMnm6AF6
O58wU50/oBUd1J78bWg1k8cNaI1u/DMz09vwFM6eZnsY3tV6ut8hT90DJo/oVRno
vPZG5nfdoSWa0CmNtIgIw0XqoSOgQQ+V7bDRXiG+mBqEXvw2BmLXYnK5JXWia7By
LUvWJ5hMIpeAiixu7PHBwDXhhmjGoFUzR2WhlfuIF0DhQNalZvPp5+QI5o3IfKnr
odhY0JWWqMxhCEBwG02Lpaj/vWulV4O/BeaDfqzpp5gO/0OIHWmF948syfN27Mkz
DQIDAQAB
-----END PUBLIC KEY-----\n";

struct Env {
    gw: Gateway,
    fake: FakeShopify,
    /// Follows no redirects, so that 302s can be inspected.
    http: reqwest::Client,
}

fn config(fake: &FakeShopify) -> ShopifyConfig {
    app_config(fake, (CLIENT_ID, CLIENT_SECRET), PUBLIC_BASE, JWT_SECRET)
}

async fn env_with(custom: impl FnOnce(&mut ShopifyConfig)) -> Env {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let mut cfg = config(&fake);
    custom(&mut cfg);
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env { gw, fake, http }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

fn now_s() -> i64 {
    ionflux_gateway::store::now_ms() / 1000
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn user_claims(workspaces: &[&str]) -> Value {
    json!({"sub": "user-1", "workspaces": workspaces, "aud": JWT_AUDIENCE, "exp": now_s() + 600, "iat": now_s()})
}

fn ids() -> (String, String) {
    (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    )
}

struct Answer {
    status: u16,
    location: Option<String>,
    /// The state cookie it set (`name=value`).
    cookie: Option<String>,
    body: Value,
}

async fn get(env: &Env, path_and_query: &str, token: Option<&str>) -> Answer {
    get_with_cookie(env, path_and_query, token, None).await
}

async fn get_with_cookie(
    env: &Env,
    path_and_query: &str,
    token: Option<&str>,
    cookie: Option<&str>,
) -> Answer {
    let mut req = env.http.get(env.gw.url(path_and_query));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = state_cookie(resp.headers());
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response body is not JSON ({status}): {text}"))
    };
    Answer {
        status,
        location,
        cookie,
        body,
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params("http://x/", pairs).unwrap();
    url.query().unwrap_or("").to_string()
}

async fn initiate(env: &Env, token: Option<&str>, ws: &str, brand: &str, shop: &str) -> Answer {
    let q = query(&[("workspace_id", ws), ("brand_id", brand), ("shop", shop)]);
    get(env, &format!("{}?{q}", oauth::INITIATE_PATH), token).await
}

/// The query parameters of a URL.
fn params_of(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A callback query as Shopify signs it.
fn signed(pairs: &[(&str, &str)], secret: &str) -> String {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let hmac = oauth::sign_query(secret.as_bytes(), &owned);
    let mut all = pairs.to_vec();
    all.push(("hmac", &hmac));
    query(&all)
}

fn callback_query(shop: &str, state: &str, code: &str, timestamp: i64) -> String {
    let ts = timestamp.to_string();
    signed(
        &[
            ("code", code),
            ("host", "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvdGVzdA"),
            ("shop", shop),
            ("state", state),
            ("timestamp", &ts),
        ],
        CLIENT_SECRET,
    )
}

/// The callback as the browser holding `cookie` (the state cookie) sends it.
async fn callback(env: &Env, q: &str, cookie: &str) -> Answer {
    get_with_cookie(
        env,
        &format!("{}?{q}", oauth::CALLBACK_PATH),
        None,
        Some(cookie),
    )
    .await
}

/// Initiate for (ws, brand, shop) and answer the state from the redirect and
/// the state cookie the browser got.
async fn start_install(env: &Env, ws: &str, brand: &str, shop: &str) -> (String, String) {
    let token = hs256(&user_claims(&[ws]));
    let a = initiate(env, Some(&token), ws, brand, shop).await;
    assert_eq!(a.status, 302, "{}", a.body);
    let state = params_of(a.location.as_deref().unwrap())["state"].clone();
    (state, a.cookie.expect("initiate sets the state cookie"))
}

async fn install(env: &Env, ws: &str, brand: &str, shop: &str) -> Value {
    let (state, cookie) = start_install(env, ws, brand, shop).await;
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let a = callback(env, &callback_query(shop, &state, &code, now_s()), &cookie).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// Waits (bounded) until every registration of the connection is
/// `registered`, and answers them.
async fn registered(env: &Env, connection_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = oauth::webhook_registrations(env.gw.store(), connection_id)
            .await
            .unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.status == "registered") {
            return rows
                .into_iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "registrations not done: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn topics() -> Vec<String> {
    oauth::DEFAULT_TOPICS
        .iter()
        .map(|t| t.to_string())
        .collect()
}

#[tokio::test]
async fn the_full_install_registers_webhooks_and_a_reconnect_duplicates_nothing() {
    let env = env().await;
    let (ws, brand) = ids();
    let shop = "install-shop.myshopify.com";

    // 1. initiate: a 302 to Shopify's authorize page with every parameter,
    //    and the state cookie: HttpOnly, Lax (the callback is a cross-site
    //    top-level redirect), Secure (an https callback), scoped to the
    //    callback, living as long as the state.
    let token = hs256(&user_claims(&[&ws]));
    let q = query(&[("workspace_id", &ws), ("brand_id", &brand), ("shop", shop)]);
    let resp = env
        .http
        .get(env.gw.url(&format!("{}?{q}", oauth::INITIATE_PATH)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in [
        "httponly",
        "samesite=lax",
        "secure",
        "path=/integrations/shopify/auth/callback",
        "max-age=600",
    ] {
        assert!(attributes.iter().any(|a| a == want), "{want}: {set_cookie}");
    }
    let a = initiate(&env, Some(&token), &ws, &brand, shop).await;
    assert_eq!(a.status, 302, "{}", a.body);
    let location = a.location.unwrap();
    assert!(
        location.starts_with("https://install-shop.myshopify.com/admin/oauth/authorize?"),
        "{location}"
    );
    let p = params_of(&location);
    assert_eq!(p["client_id"], CLIENT_ID);
    assert_eq!(p["scope"], oauth::DEFAULT_SCOPES);
    assert_eq!(p["redirect_uri"], REDIRECT_URI);
    let state = p["state"].clone();
    assert_eq!(state.len(), 43, "256 bits, base64url: {state}");
    let cookie = a.cookie.expect("initiate sets the state cookie");

    // 2. the callback, signed like Shopify, from the same browser.
    let a = callback(
        &env,
        &callback_query(shop, &state, "first-code", now_s()),
        &cookie,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let c = a.body;
    assert_eq!(c["status"], "connected");
    assert_eq!(c["shop_domain"], shop);
    assert_eq!(c["workspace_id"], ws.as_str());
    assert_eq!(c["brand_id"], brand.as_str());
    let id = c["connection_id"].as_str().unwrap().to_string();
    let path1 = c["webhook_path"].as_str().unwrap().to_string();
    assert!(path1.starts_with("/integrations/shopify/webhooks/"));

    // The code went to Shopify's exchange with `expiring: 1`.
    let exchange = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/admin/oauth/access_token")
        .unwrap();
    assert_eq!(exchange.shop, shop);
    assert_eq!(exchange.body["code"], "first-code");
    assert_eq!(exchange.body["client_id"], CLIENT_ID);
    assert_eq!(exchange.body["expiring"], 1);

    // 3. tokens are stored encrypted, bound to the row, with expiries.
    let row = env
        .gw
        .store()
        .connection_tokens(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.auth_method, "oauth");
    assert_eq!(row.status, "active");
    let issued = env.fake.access_tokens_of(shop);
    assert_eq!(issued.len(), 1);
    let access_ct = row.access_token.clone().unwrap();
    let refresh_ct = row.refresh_token.clone().unwrap();
    for t in env.fake.issued_tokens() {
        assert!(!access_ct.contains(&t) && !refresh_ct.contains(&t));
    }
    assert!(access_ct.starts_with("v1.") && refresh_ct.starts_with("v1."));
    let plain = connection::access_token(env.gw.store(), &env.gw.vault, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plain.expose(), issued[0].as_bytes());
    let refresh = env
        .gw
        .vault
        .decrypt(
            &refresh_ct,
            connection::binding(&id, connection::REFRESH_TOKEN),
        )
        .unwrap();
    assert!(refresh.expose().starts_with(b"shprt_"));
    // A token ciphertext does not decrypt as another purpose.
    assert!(
        env.gw
            .vault
            .decrypt(
                &access_ct,
                connection::binding(&id, connection::REFRESH_TOKEN)
            )
            .is_err()
    );
    let now_ms = ionflux_gateway::store::now_ms();
    assert!(row.access_token_expires_at.unwrap() > now_ms);
    assert!(row.refresh_token_expires_at.unwrap() > row.access_token_expires_at.unwrap());
    assert_eq!(
        row.scopes.as_deref(),
        Some("read_orders,read_products,read_customers")
    );

    // Webhooks signed with the app's client secret are accepted at the path.
    let body = br#"{"id": 1}"#;
    let resp = env
        .gw
        .client
        .post(env.gw.url(&path1))
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-shop-domain", shop)
        .header("x-shopify-webhook-id", "oauth-hook-1")
        .header(
            "x-shopify-hmac-sha256",
            webhook::sign(CLIENT_SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // 4. webhooks registered at the fake, one per topic, statuses recorded.
    let regs = registered(&env, &id).await;
    assert_eq!(regs.len(), topics().len());
    let address1 = format!("{PUBLIC_BASE}{path1}");
    let hooks = env.fake.webhooks(shop);
    assert_eq!(hooks.len(), topics().len());
    for topic in topics() {
        let at_fake: Vec<_> = hooks.iter().filter(|h| h.topic == topic).collect();
        assert_eq!(at_fake.len(), 1, "{topic}");
        assert_eq!(at_fake[0].address, address1);
        let reg = regs.iter().find(|r| r["topic"] == topic.as_str()).unwrap();
        assert_eq!(reg["shopify_webhook_id"], at_fake[0].id.to_string());
        assert_eq!(reg["address"], address1.as_str());
    }
    let creates = |env: &Env| {
        env.fake
            .calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/webhooks.json"))
            .count()
    };
    assert_eq!(creates(&env), topics().len());
    // Every call carried the API version configured.
    assert!(
        env.fake
            .calls()
            .iter()
            .filter(|c| c.path.contains("/admin/api/"))
            .all(|c| c.path.starts_with("/admin/api/2026-04/"))
    );

    // The admin API shows them (the bootstrap operator token).
    let operator = env.gw.operator_token.clone().unwrap();
    let resp = env
        .gw
        .client
        .get(
            env.gw
                .admin_url(&format!("/admin/v1/connections/{id}/webhooks")),
        )
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown: Value = resp.json().await.unwrap();
    assert_eq!(shown["connection_id"], id.as_str());
    assert_eq!(
        shown["registrations"].as_array().unwrap().len(),
        topics().len()
    );
    let resp = env
        .gw
        .client
        .get(env.gw.admin_url("/admin/v1/connections/nope/webhooks"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // 5. reconnect: same connection, fresh webhook path, nothing duplicated.
    let c2 = install(&env, &ws, &brand, shop).await;
    assert_eq!(c2["connection_id"], id.as_str());
    let path2 = c2["webhook_path"].as_str().unwrap().to_string();
    assert_ne!(path2, path1);
    let address2 = format!("{PUBLIC_BASE}{path2}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let regs = registered(&env, &id).await;
        if regs.iter().all(|r| r["address"] == address2.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "not re-registered: {regs:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hooks = env.fake.webhooks(shop);
    assert_eq!(hooks.len(), topics().len(), "{hooks:?}");
    assert!(hooks.iter().all(|h| h.address == address2), "{hooks:?}");
    assert_eq!(creates(&env), topics().len(), "a reconnect creates nothing");
    // The new token is the one stored.
    let plain = connection::access_token(env.gw.store(), &env.gw.vault, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env.fake.access_tokens_of(shop).len(), 2);
    assert!(
        env.fake
            .access_tokens_of(shop)
            .iter()
            .any(|t| t.as_bytes() == plain.expose())
    );

    // The old URL is gone (the intake's short cache may serve it a few
    // seconds more, so ask the store).
    assert!(
        env.gw
            .store()
            .connection_by_path(path1.trim_start_matches("/integrations/shopify/webhooks/"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.gw
            .store()
            .connection_by_path(path2.trim_start_matches("/integrations/shopify/webhooks/"))
            .await
            .unwrap()
            .is_some()
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn a_failed_registration_is_recorded_and_retried_later() {
    let env =
        env_with(|c| c.webhook_topics = vec!["orders/create".into(), "orders/paid".into()]).await;
    // Three failures: the first run (2 tries) fails, a later run succeeds.
    env.fake.fail_webhook_creates("orders/paid", 3);
    let (ws, brand) = ids();
    let shop = "retry-shop.myshopify.com";
    let c = install(&env, &ws, &brand, shop).await;
    let id = c["connection_id"].as_str().unwrap();
    let regs = registered(&env, id).await;
    let paid = regs.iter().find(|r| r["topic"] == "orders/paid").unwrap();
    assert_eq!(paid["attempts"], 4, "{paid}");
    assert_eq!(paid["last_error"], Value::Null);
    let create = regs.iter().find(|r| r["topic"] == "orders/create").unwrap();
    assert_eq!(create["attempts"], 1, "{create}");
    let hooks = env.fake.webhooks(shop);
    assert_eq!(hooks.len(), 2);
    env.gw.stop().await;
}

#[tokio::test]
async fn initiate_refuses_bad_tokens_foreign_workspaces_and_bad_shops() {
    let env = env().await;
    let (ws, brand) = ids();
    let shop = "refuse-shop.myshopify.com";
    let good = hs256(&user_claims(&[&ws]));
    let forged = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &user_claims(&[&ws]),
        &EncodingKey::from_secret(b"not the shared secret"),
    )
    .unwrap();
    let expired =
        hs256(&json!({"sub": "u", "workspaces": [ws], "aud": JWT_AUDIENCE, "exp": now_s() - 3600}));
    let not_yet = hs256(
        &json!({"sub": "u", "workspaces": [ws], "aud": JWT_AUDIENCE, "exp": now_s() + 7200, "nbf": now_s() + 3600}),
    );
    let no_sub = hs256(&json!({"workspaces": [ws], "aud": JWT_AUDIENCE, "exp": now_s() + 600}));
    let no_aud = hs256(&json!({"sub": "u", "workspaces": [ws], "exp": now_s() + 600}));
    let other_aud = hs256(
        &json!({"sub": "u", "workspaces": [ws], "aud": "another-service", "exp": now_s() + 600}),
    );
    let (other_ws, _) = ids();
    let foreign = hs256(&user_claims(&[&other_ws]));
    let rs_token = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &user_claims(&[&ws]),
        &EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();

    // (case, token, workspace, shop, status, code)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no token", None, &ws, shop, 401, "unauthorized"),
        (
            "garbage token",
            Some("not-a-jwt"),
            &ws,
            shop,
            401,
            "unauthorized",
        ),
        (
            "bad signature",
            Some(&forged),
            &ws,
            shop,
            401,
            "unauthorized",
        ),
        ("expired", Some(&expired), &ws, shop, 401, "unauthorized"),
        (
            "not yet valid",
            Some(&not_yet),
            &ws,
            shop,
            401,
            "unauthorized",
        ),
        ("no sub", Some(&no_sub), &ws, shop, 401, "unauthorized"),
        ("no aud", Some(&no_aud), &ws, shop, 401, "unauthorized"),
        (
            "another audience",
            Some(&other_aud),
            &ws,
            shop,
            401,
            "unauthorized",
        ),
        (
            "RS256 not configured",
            Some(&rs_token),
            &ws,
            shop,
            401,
            "unauthorized",
        ),
        (
            "foreign workspace",
            Some(&foreign),
            &ws,
            shop,
            403,
            "forbidden",
        ),
        (
            "not a shop",
            Some(&good),
            &ws,
            "evil.example.com",
            400,
            "invalid_shop",
        ),
        (
            "lookalike shop",
            Some(&good),
            &ws,
            "shop.myshopify.com.evil.com",
            400,
            "invalid_shop",
        ),
        (
            "bad shop name",
            Some(&good),
            &ws,
            "-x.myshopify.com",
            400,
            "invalid_shop",
        ),
        (
            "workspace not a uuid",
            Some(&good),
            "ws-1",
            shop,
            400,
            "invalid_request",
        ),
    ];
    for (name, token, workspace, shop, status, code) in cases {
        let a = initiate(&env, token, workspace, &brand, shop).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (status, Some(code)),
            "{name}: {}",
            a.body
        );
        assert!(a.body["message"].is_string(), "{name}");
    }

    // `workspace_id` (one id) grants as well as `workspaces`.
    let single =
        hs256(&json!({"sub": "u", "workspace_id": ws, "aud": JWT_AUDIENCE, "exp": now_s() + 600}));
    let a = initiate(&env, Some(&single), &ws, &brand, shop).await;
    assert_eq!(a.status, 302, "{}", a.body);
    // The admin URL form of a shop is accepted.
    let a = initiate(
        &env,
        Some(&good),
        &ws,
        &brand,
        "admin.shopify.com/store/refuse-shop",
    )
    .await;
    assert_eq!(a.status, 302, "{}", a.body);
    assert!(
        a.location
            .unwrap()
            .starts_with("https://refuse-shop.myshopify.com/admin/oauth/authorize?")
    );
    // Nothing was exchanged or connected by any of this.
    assert!(env.fake.calls().is_empty());
    env.gw.stop().await;
}

#[tokio::test]
async fn the_callback_refuses_every_bad_request() {
    let env = env().await;
    let (ws, brand) = ids();
    let shop = "cb-shop.myshopify.com";

    // bad HMAC: signed with another secret, or tampered after signing.
    let (state, cookie) = start_install(&env, &ws, &brand, shop).await;
    let ts = now_s().to_string();
    let q = signed(
        &[
            ("code", "c1"),
            ("shop", shop),
            ("state", &state),
            ("timestamp", &ts),
        ],
        "not-the-secret",
    );
    let a = callback(&env, &q, &cookie).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("invalid_hmac"))
    );
    let q = callback_query(shop, &state, "c1", now_s()).replace("code=c1", "code=c2");
    let a = callback(&env, &q, &cookie).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("invalid_hmac"))
    );
    let q = query(&[
        ("code", "c1"),
        ("shop", shop),
        ("state", &state),
        ("timestamp", &ts),
    ]);
    let a = callback(&env, &q, &cookie).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("invalid_hmac"))
    );

    // old (and future) timestamps, and the extremes (no overflow)
    for ts in [now_s() - 3600, now_s() + 3600, i64::MIN, i64::MAX] {
        let a = callback(&env, &callback_query(shop, &state, "c1", ts), &cookie).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (400, Some("stale_request")),
            "{ts}"
        );
    }

    // a bad shop domain in a well-signed query
    let a = callback(
        &env,
        &callback_query("evil.example.com", &state, "c1", now_s()),
        &cookie,
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (400, Some("invalid_shop"))
    );

    // an unknown state
    let a = callback(
        &env,
        &callback_query(shop, "made-up-state", "c1", now_s()),
        &cookie,
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (400, Some("invalid_state"))
    );

    // a state started for another shop
    let (other_state, other_cookie) =
        start_install(&env, &ws, &brand, "other-shop.myshopify.com").await;
    let a = callback(
        &env,
        &callback_query(shop, &other_state, "c1", now_s()),
        &other_cookie,
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("shop_mismatch"))
    );

    // None of those reached Shopify; the state is still good for a real try.
    assert!(env.fake.calls().is_empty());

    // a failed code exchange (Shopify answers 400, then 500)
    for failure in [400u16, 500] {
        env.fake.fail_exchange(Some(failure));
        let (s, c) = start_install(&env, &ws, &brand, shop).await;
        let a = callback(&env, &callback_query(shop, &s, "c-fail", now_s()), &c).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (502, Some("exchange_failed")),
            "{failure}"
        );
    }
    env.fake.fail_exchange(None);
    assert!(env.gw.store().list_connections().await.unwrap().is_empty());

    // the good one, then the same callback replayed
    let q = callback_query(shop, &state, "c-good", now_s());
    let a = callback(&env, &q, &cookie).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = callback(&env, &q, &cookie).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (409, Some("state_used"))
    );

    // an expired state
    let expired_state = "expired-state-0123456789";
    let long_ago = ionflux_gateway::store::now_ms() - 3_600_000;
    env.gw
        .store()
        .insert_oauth_state(&OAuthStateRow {
            state_hash: ionflux_tests::sha256_hex(expired_state.as_bytes()),
            provider: "shopify".into(),
            workspace_id: ws.clone(),
            brand_id: brand.clone(),
            user_id: "u".into(),
            shop_domain: shop.into(),
            created_at: long_ago,
            expires_at: long_ago + 600_000,
            used_at: None,
        })
        .await
        .unwrap();
    // (no cookie could carry it: a state's expiry is told whatever the browser)
    let a = get(
        &env,
        &format!(
            "{}?{}",
            oauth::CALLBACK_PATH,
            callback_query(shop, expired_state, "c-exp", now_s())
        ),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (400, Some("state_expired"))
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn initiate_sweeps_expired_states_in_batches_and_keeps_live_ones() {
    use ionflux_gateway::store::oauth::{EXPIRED_STATE_GRACE_MS, STATE_SWEEP_BATCH};
    let env = env().await;
    let (ws, brand) = ids();
    let shop = "sweep-shop.myshopify.com";
    let store = env.gw.store();
    let now = ionflux_gateway::store::now_ms();
    let hash = |name: &str| ionflux_tests::sha256_hex(name.as_bytes());
    let insert = |name: String, expires_at: i64| {
        let row = OAuthStateRow {
            state_hash: hash(&name),
            provider: "shopify".into(),
            workspace_id: ws.clone(),
            brand_id: brand.clone(),
            user_id: "u".into(),
            shop_domain: shop.into(),
            created_at: expires_at - 600_000,
            expires_at,
            used_at: None,
        };
        async move { store.insert_oauth_state(&row).await.unwrap() }
    };
    let long_ago = now - EXPIRED_STATE_GRACE_MS - 60_000;
    insert("abandoned".into(), long_ago).await;
    insert("just-expired".into(), now - 60_000).await;
    insert("live".into(), now + 600_000).await;

    // An initiate sweeps what expired past the grace; a state that expired
    // just now is still told apart, and a live one stays.
    let (state, _) = start_install(&env, &ws, &brand, shop).await;
    assert!(
        store
            .oauth_state(&hash("abandoned"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .oauth_state(&hash("just-expired"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.oauth_state(&hash("live")).await.unwrap().is_some());
    assert!(store.oauth_state(&hash(&state)).await.unwrap().is_some());

    // A sweep is bounded: a backlog goes a batch at a time.
    let backlog = STATE_SWEEP_BATCH + 5;
    for i in 0..backlog {
        insert(format!("backlog-{i}"), long_ago - i).await;
    }
    let cutoff = now - EXPIRED_STATE_GRACE_MS;
    assert_eq!(
        store
            .sweep_oauth_states(cutoff, STATE_SWEEP_BATCH)
            .await
            .unwrap(),
        STATE_SWEEP_BATCH as u64
    );
    assert_eq!(
        store
            .sweep_oauth_states(cutoff, STATE_SWEEP_BATCH)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .sweep_oauth_states(cutoff, STATE_SWEEP_BATCH)
            .await
            .unwrap(),
        0
    );
    assert!(store.oauth_state(&hash("live")).await.unwrap().is_some());
    env.gw.stop().await;
}

#[tokio::test]
async fn concurrent_callbacks_with_one_state_connect_once() {
    let env = env().await;
    let (ws, brand) = ids();
    let shop = "race-shop.myshopify.com";
    let (state, cookie) = start_install(&env, &ws, &brand, shop).await;
    let queries: Vec<String> = (0..8)
        .map(|i| callback_query(shop, &state, &format!("race-{i}"), now_s()))
        .collect();
    let answers = futures_join(&env, &queries, &cookie).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let used = answers
        .iter()
        .filter(|a| a.status == 409 && a.body["code"] == "state_used")
        .count();
    assert_eq!((ok, used), (1, 7));
    let exchanges = env
        .fake
        .calls()
        .iter()
        .filter(|c| c.path == "/admin/oauth/access_token")
        .count();
    assert_eq!(exchanges, 1);
    env.gw.stop().await;
}

async fn futures_join(env: &Env, queries: &[String], cookie: &str) -> Vec<Answer> {
    let mut tasks = Vec::new();
    for q in queries {
        let http = env.http.clone();
        let url = env.gw.url(&format!("{}?{q}", oauth::CALLBACK_PATH));
        let cookie = cookie.to_string();
        tasks.push(tokio::spawn(async move {
            let resp = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            Answer {
                status,
                location: None,
                cookie: None,
                body,
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn rs256_tokens_are_accepted_with_the_configured_public_key() {
    let env = env_with(|c| {
        c.jwt = JwtConfig {
            rs256_public_key_pem: Some(TEST_RSA_PUBLIC_PEM.into()),
            issuer: Some("https://users.example.test".into()),
            audience: Some("ionflux-gateway".into()),
            ..JwtConfig::default()
        };
        c.frontend_redirect = Some("https://app.example.test/integrations?from=shopify".into());
        c.expiring_tokens = false;
    })
    .await;
    let (ws, brand) = ids();
    let shop = "rs-shop.myshopify.com";
    let key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let sign = |claims: Value| {
        jsonwebtoken::encode(&Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
    };
    let claims = |iss: &str, aud: &str| json!({"sub": "user-rs", "workspaces": [ws], "exp": now_s() + 600, "iss": iss, "aud": aud});
    let good = sign(claims("https://users.example.test", "ionflux-gateway"));
    let a = initiate(&env, Some(&good), &ws, &brand, shop).await;
    assert_eq!(a.status, 302, "{}", a.body);
    let state = params_of(&a.location.unwrap())["state"].clone();
    let cookie = a.cookie.expect("initiate sets the state cookie");

    for (name, token) in [
        (
            "wrong issuer",
            sign(claims("https://evil.example.test", "ionflux-gateway")),
        ),
        (
            "wrong audience",
            sign(claims("https://users.example.test", "someone-else")),
        ),
        ("HS256 not configured", hs256(&user_claims(&[&ws]))),
        ("tampered", {
            let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
            parts[1] = base64_claims(
                &json!({"sub": "admin", "workspaces": [ws], "exp": now_s() + 600, "iss": "https://users.example.test", "aud": "ionflux-gateway"}),
            );
            parts.join(".")
        }),
    ] {
        let a = initiate(&env, Some(&token), &ws, &brand, shop).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (401, Some("unauthorized")),
            "{name}"
        );
    }

    // With a frontend configured the callback redirects there; a
    // non-expiring token has no refresh token and no expiry.
    let a = callback(
        &env,
        &callback_query(shop, &state, "rs-code", now_s()),
        &cookie,
    )
    .await;
    assert_eq!(a.status, 302, "{}", a.body);
    let location = a.location.unwrap();
    assert!(
        location.starts_with("https://app.example.test/integrations?"),
        "{location}"
    );
    let p = params_of(&location);
    assert_eq!(p["from"], "shopify");
    assert_eq!(p["status"], "connected");
    let id = p["connection_id"].clone();
    let row = env
        .gw
        .store()
        .connection_tokens(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.access_token.is_some());
    assert_eq!(
        (row.refresh_token, row.access_token_expires_at),
        (None, None)
    );
    let exchange = env
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/admin/oauth/access_token")
        .unwrap();
    assert_eq!(exchange.body.get("expiring"), None);
    registered(&env, &id).await;
    env.gw.stop().await;
}

fn base64_claims(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn without_a_shopify_app_the_routes_answer_404() {
    let gw = Gateway::start(Options::default()).await;
    for path in [oauth::INITIATE_PATH, oauth::CALLBACK_PATH] {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "oauth_not_configured");
    }
    gw.stop().await;
}
