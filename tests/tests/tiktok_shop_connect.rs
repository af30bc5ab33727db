//! A seller connects TikTok Shop by its OAuth, against the fakes of TikTok's
//! auth server and Open API (`fake_tiktok`): the install routes, one
//! connection per authorised shop, webhooks registered per shop, tokens
//! refreshed before they expire, a refused refresh, webhooks signed as
//! TikTok signs them, and deauthorisation. SQLite, or PostgreSQL with
//! `IONFLUX_TEST_POSTGRES`.
//!
//! TikTok Shop's default transform (`tiktok-shop-default`) is not in this
//! branch (and `builtin:shopify-default` cannot name TikTok's topics as
//! event kinds): webhooks are asserted in the inbox, and the
//! deauthorisation is published by the test as the dispatcher would.

use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection::{self, REFRESH_TOKEN};
use ionflux_gateway::pipeline::provider::Provider;
use ionflux_gateway::providers::install::{RegistrationConfig, STATE_COOKIE};
use ionflux_gateway::providers::refresh::RefreshConfig;
use ionflux_gateway::providers::shopify::oauth::JwtConfig;
use ionflux_gateway::providers::tiktok_shop::auth::{TikTokAuth, TikTokAuthError};
use ionflux_gateway::providers::tiktok_shop::install::{
    CALLBACK_PATH, DEFAULT_AUTHORIZE_URL, DEFAULT_EVENT_TYPES, INSTALL_PATH, TikTokShopConfig,
};
use ionflux_gateway::providers::tiktok_shop::open_api::OpenApi;
use ionflux_gateway::providers::tiktok_shop::{TikTokShop, deauthorization};
use ionflux_gateway::store::Outcome;
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_shopify::JWT_AUDIENCE;
use ionflux_tests::fake_tiktok::{self, FakeShop, FakeTikTok};
use ionflux_tests::{Gateway, Options, PATIENCE};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const APP_KEY: &str = "6a1b2c3d4e5f";
const APP_SECRET: &str = "tts-app-secret-for-tests";
const SERVICE_ID: &str = "7310000000000000001";
const JWT_SECRET: &str = "tiktok-user-service-secret";
const PUBLIC_BASE: &str = "https://gw.example.test";

struct Env {
    gw: Gateway,
    fake: FakeTikTok,
    http: reqwest::Client,
}

async fn env() -> Env {
    env_with(Options::default()).await
}

async fn env_with(opts: Options) -> Env {
    let fake = FakeTikTok::start(APP_KEY, APP_SECRET).await;
    let mut cfg = TikTokShopConfig::new(
        APP_KEY,
        Secret::from(APP_SECRET.to_string()),
        SERVICE_ID,
        format!("{PUBLIC_BASE}{CALLBACK_PATH}"),
        PUBLIC_BASE,
    );
    cfg.auth_base_url = fake.base_url();
    cfg.open_api_base_url = fake.base_url();
    cfg.http_timeout = Duration::from_secs(10);
    cfg.registration = RegistrationConfig {
        attempts_per_run: 2,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        retry_after: Duration::from_millis(100),
        max_retry_after: Duration::from_millis(500),
        poll_interval: Duration::from_millis(100),
    };
    cfg.refresh = RefreshConfig {
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_failures: 2,
        ..RefreshConfig::default()
    };
    cfg.jwt = JwtConfig {
        hs256_secret: Some(Secret::from(JWT_SECRET.to_string())),
        audience: Some(JWT_AUDIENCE.into()),
        ..JwtConfig::default()
    };
    let gw = Gateway::start(Options {
        tiktok_shop: Some(cfg),
        ..opts
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env { gw, fake, http }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn jwt(workspace: &str) -> String {
    let now = ionflux_gateway::store::now_ms() / 1000;
    let claims = json!({"sub": "user-1", "workspace_id": workspace, "aud": JWT_AUDIENCE,
        "iat": now, "exp": now + 600});
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// An initiate: (status, TikTok's authorize URL, the state, the cookie
/// pair the browser sends back).
async fn initiate(env: &Env, ws: &str, brand: &str) -> (u16, String, String, String) {
    let resp = env
        .http
        .get(env.gw.url(INSTALL_PATH))
        .query(&[("workspace_id", ws), ("brand_id", brand)])
        .bearer_auth(jwt(ws))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{STATE_COOKIE}=")))
        .unwrap_or_default()
        .to_string();
    let state = reqwest::Url::parse(&location)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    (status, location, state, cookie)
}

async fn callback(env: &Env, code: &str, state: &str, cookie: Option<&str>) -> (u16, Value) {
    let mut req = env.http.get(env.gw.url(CALLBACK_PATH)).query(&[
        ("code", code),
        ("state", state),
        ("app_key", APP_KEY),
    ]);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Installs the seller `open_id` with `shops` for a fresh workspace and
/// brand; answers the callback's JSON.
async fn install(env: &Env, open_id: &str, shops: &[FakeShop]) -> Value {
    env.fake.set_shops(open_id, shops);
    let code = env.fake.issue_code(open_id, "Seller");
    let (ws, brand) = (uuid(), uuid());
    let (status, _, state, cookie) = initiate(env, &ws, &brand).await;
    assert_eq!(status, 302);
    let (status, body) = callback(env, &code, &state, Some(&cookie)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn shop(id: &str) -> FakeShop {
    FakeShop {
        id: id.into(),
        name: format!("Shop {id}"),
        cipher: format!("GCP_{id}_cipher"),
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn webhook_url(env: &Env, connected: &Value, i: usize) -> String {
    env.gw
        .url(connected["shops"][i]["webhook_path"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_installs_and_every_shop_is_connected_with_its_webhooks_registered() {
    let env = env().await;
    env.fake
        .set_shops("seller-1", &[shop("7001"), shop("7002")]);
    let code = env.fake.issue_code("seller-1", "Seller One");
    let (ws, brand) = (uuid(), uuid());
    let (status, location, state, cookie) = initiate(&env, &ws, &brand).await;
    assert_eq!(status, 302);
    assert!(
        location.starts_with(&format!(
            "{DEFAULT_AUTHORIZE_URL}?service_id={SERVICE_ID}&state="
        )),
        "{location}"
    );
    assert!(!state.is_empty() && !cookie.is_empty());

    let (status, connected) = callback(&env, &code, &state, Some(&cookie)).await;
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["workspace_id"], ws.as_str());
    let shops = connected["shops"].as_array().unwrap();
    assert_eq!(shops.len(), 2);
    let store = env.gw.store();
    for (i, id) in ["7001", "7002"].iter().enumerate() {
        let connection_id = shops[i]["connection_id"].as_str().unwrap();
        assert_eq!(shops[i]["shop_id"], *id);
        let row = store
            .connection_by_id(connection_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.provider, "tiktok_shop");
        assert_eq!(row.account, *id);
        assert_eq!(row.status, "active");
        assert_eq!(
            connection::settings(&row),
            json!({"app_key": APP_KEY, "shop_cipher": format!("GCP_{id}_cipher")})
        );
        let token = connection::access_token(store, &env.gw.vault, connection_id)
            .await
            .unwrap()
            .expect("an access token");
        assert!(
            env.fake
                .access_token_is_live(std::str::from_utf8(token.expose()).unwrap())
        );
        // Every configured event type points at the shop's own webhook URL,
        // and the store says so.
        let address = format!(
            "{PUBLIC_BASE}{}",
            shops[i]["webhook_path"].as_str().unwrap()
        );
        eventually("the shop's webhooks at TikTok", || async {
            env.fake.webhooks(id).len() == DEFAULT_EVENT_TYPES.len()
        })
        .await;
        assert!(env.fake.webhooks(id).values().all(|a| *a == address));
        eventually("registrations recorded", || async {
            let rows = store.webhook_registrations(connection_id).await.unwrap();
            rows.len() == DEFAULT_EVENT_TYPES.len() && rows.iter().all(|r| r.status == "registered")
        })
        .await;
    }
    assert_eq!(env.fake.bad_signs(), 0);

    // The callback URL again, from the same browser: the state is spent.
    let (status, body) = callback(&env, &code, &state, Some(&cookie)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "state_used");

    // A webhook signed as TikTok signs it is stored (its default
    // transform, `tiktok-shop-default`, is not in this branch: it stays in
    // the inbox, or is dead-lettered for want of it).
    let order = fake_tiktok::envelope_body(
        1,
        "7001",
        json!({"order_id": "5761", "order_status": "AWAITING_SHIPMENT"}),
    );
    let resp = fake_tiktok::deliver(
        &env.http,
        &webhook_url(&env, &connected, 0),
        APP_KEY,
        APP_SECRET,
        &order,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent: Value = serde_json::from_slice(&order).unwrap();
    let notification = sent["tts_notification_id"].as_str().unwrap();
    let stored = store.webhook_state(notification).await.unwrap();
    assert!(stored.is_some(), "the webhook is in the inbox");
    let row = store.inbox_row(stored.unwrap().0).await.unwrap().unwrap();
    assert_eq!(
        (row.topic.as_str(), row.account.as_str()),
        ("order_status_change", "7001")
    );
    // Signed with another secret: refused.
    let resp = fake_tiktok::deliver(
        &env.http,
        &webhook_url(&env, &connected, 0),
        APP_KEY,
        "not-the-secret",
        &order,
    )
    .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_state_another_browsers_cookie_and_no_cookie_are_refused() {
    let env = env().await;
    env.fake.set_shops("seller-2", &[shop("8001")]);
    let code = env.fake.issue_code("seller-2", "Seller Two");
    let (ws, brand) = (uuid(), uuid());

    // No bearer token: no install.
    let resp = env
        .http
        .get(env.gw.url(INSTALL_PATH))
        .query(&[("workspace_id", ws.as_str()), ("brand_id", brand.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A state nobody issued.
    let (_, _, _, cookie) = initiate(&env, &ws, &brand).await;
    let (status, body) = callback(&env, &code, "forged-state", Some(&cookie)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_state"))
    );

    // The merchant's callback replayed in the starter's browser: refused,
    // and the state is spent for the merchant too.
    let (_, _, merchant_state, merchant_cookie) = initiate(&env, &ws, &brand).await;
    let (_, _, _, starter_cookie) = initiate(&env, &ws, &brand).await;
    let (status, body) = callback(&env, &code, &merchant_state, Some(&starter_cookie)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("state_mismatch"))
    );
    let (status, body) = callback(&env, &code, &merchant_state, Some(&merchant_cookie)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("state_used")));

    // No cookie at all.
    let (_, _, state, _) = initiate(&env, &ws, &brand).await;
    let (status, body) = callback(&env, &code, &state, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("state_cookie_missing"))
    );

    // The code was never spent on any of them.
    assert_eq!(env.fake.calls().0, 0);
    let connections = env.gw.store().list_connections().await.unwrap();
    assert!(connections.is_empty());
}

async fn decrypted_refresh_token(env: &Env, id: &str) -> Option<String> {
    let row = env.gw.store().refresh_row(id).await.unwrap()?;
    let ct = row.refresh_token?;
    let plain = env
        .gw
        .vault
        .decrypt(&ct, connection::binding(id, REFRESH_TOKEN))
        .unwrap();
    Some(String::from_utf8(plain.expose().to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_they_expire() {
    let env = env().await;
    // Issued to expire within the refresh lead: refreshed at once; what the
    // refresh answers lives a week.
    env.fake.set_lifetimes(300, 365 * 24 * 3600);
    let connected = install(&env, "seller-3", &[shop("9001")]).await;
    env.fake.set_lifetimes(7 * 24 * 3600, 365 * 24 * 3600);
    let id = connected["shops"][0]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = env.gw.store();
    eventually("a refreshed token", || async {
        let row = store.refresh_row(&id).await.unwrap().unwrap();
        row.access_token_expires_at.unwrap_or(0)
            > ionflux_gateway::store::now_ms() + 24 * 3600 * 1000
    })
    .await;
    assert!(env.fake.calls().1 >= 1);
    let row = store.refresh_row(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "active");
    assert_eq!(row.refresh_failures, 0);
    // The stored tokens are the rotated ones TikTok still honours.
    let refresh = decrypted_refresh_token(&env, &id).await.unwrap();
    assert!(env.fake.refresh_token_is_live(&refresh));
    let access = connection::access_token(store, &env.gw.vault, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        env.fake
            .access_token_is_live(std::str::from_utf8(access.expose()).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_turns_the_connection_refresh_failed() {
    let env = env().await;
    env.fake.set_lifetimes(300, 365 * 24 * 3600);
    let connected = install(&env, "seller-4", &[shop("9101")]).await;
    // The seller revoked the app at TikTok: every refresh is refused.
    env.fake.revoke_refresh_tokens();
    let id = connected["shops"][0]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = env.gw.store();
    eventually("refresh_failed", || async {
        store.refresh_row(&id).await.unwrap().unwrap().status == "refresh_failed"
    })
    .await;
    let row = store.refresh_row(&id).await.unwrap().unwrap();
    let error = row.last_refresh_error.unwrap_or_default();
    assert!(
        error.contains(&fake_tiktok::CODE_INVALID_REFRESH_TOKEN.to_string()),
        "{error}"
    );
    // A refusal only a reconnect mends: not tried again by itself.
    assert_eq!(row.next_refresh_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deauthorisation_disconnects_the_shop_and_deletes_its_tokens() {
    // The effect follows the event's publication, and TikTok Shop's default
    // transform is not in this branch: an intake-only gateway stores the
    // webhook, and the test publishes it as the dispatcher would (finish,
    // then the provider's after-publish hook).
    let env = env_with(Options {
        dispatch: Some(false),
        ..Options::default()
    })
    .await;
    let connected = install(&env, "seller-5", &[shop("9201")]).await;
    let id = connected["shops"][0]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = env.gw.store();
    eventually("registrations recorded", || async {
        let rows = store.webhook_registrations(&id).await.unwrap();
        !rows.is_empty() && rows.iter().all(|r| r.status == "registered")
    })
    .await;
    let url = webhook_url(&env, &connected, 0);
    let gone = fake_tiktok::envelope_body(6, "9201", json!({"shop_id": "9201"}));
    let resp = fake_tiktok::deliver(&env.http, &url, APP_KEY, APP_SECRET, &gone).await;
    assert_eq!(resp.status(), 200);
    // Stored, not yet published: nothing changed.
    assert_eq!(
        store.connection_tokens(&id).await.unwrap().unwrap().status,
        "active"
    );
    let rows = store
        .claim("test-dispatcher", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].topic, "seller_deauthorization");
    let finished = [(&rows[0], Outcome::Published(Vec::new()))];
    store.finish(&finished).await.unwrap();
    TikTokShop.after_publish(store, &finished).await;

    let row = store.connection_tokens(&id).await.unwrap().unwrap();
    assert_eq!(row.status, "disconnected");
    assert!(row.access_token.is_none() && row.refresh_token.is_none());
    assert!(store.webhook_registrations(&id).await.unwrap().is_empty());
    // Applied once: the start-up sweep finds nothing left.
    assert_eq!(deauthorization::EFFECT.apply_due(store).await.unwrap(), 0);
    // An order from the gone shop is refused; another deauthorisation is
    // still taken (TikTok may send it again).
    let order = fake_tiktok::envelope_body(1, "9201", json!({"order_id": "1"}));
    let resp = fake_tiktok::deliver(&env.http, &url, APP_KEY, APP_SECRET, &order).await;
    assert!(!resp.status().is_success(), "{}", resp.status());
    let again = fake_tiktok::envelope_body(6, "9201", json!({"shop_id": "9201"}));
    let resp = fake_tiktok::deliver(&env.http, &url, APP_KEY, APP_SECRET, &again).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_app_the_install_routes_answer_404() {
    let gw = Gateway::start(Options::default()).await;
    for path in [INSTALL_PATH, CALLBACK_PATH] {
        let resp = reqwest::get(gw.url(path)).await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "oauth_not_configured");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_open_api_refuses_a_wrong_sign() {
    let fake = FakeTikTok::start(APP_KEY, APP_SECRET).await;
    fake.set_shops("seller-6", &[shop("9301")]);
    let code = fake.issue_code("seller-6", "Seller Six");
    let auth = TikTokAuth::new(
        &fake.base_url(),
        APP_KEY,
        Secret::from(APP_SECRET.to_string()),
        Duration::from_secs(10),
    )
    .unwrap();
    let tokens = auth.exchange_code(&code).await.unwrap();
    let right = OpenApi::new(
        &fake.base_url(),
        APP_KEY,
        Secret::from(APP_SECRET.to_string()),
        Duration::from_secs(10),
    )
    .unwrap();
    let shops = right.authorized_shops(&tokens.access_token).await.unwrap();
    assert_eq!(shops.len(), 1);
    assert_eq!(shops[0].cipher, "GCP_9301_cipher");
    let wrong = OpenApi::new(
        &fake.base_url(),
        APP_KEY,
        Secret::from("wrong".to_string()),
        Duration::from_secs(10),
    )
    .unwrap();
    let err = wrong
        .authorized_shops(&tokens.access_token)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TikTokAuthError::Api { code, .. } if code == fake_tiktok::CODE_INVALID_SIGN),
        "{err:?}"
    );
    assert_eq!(fake.bad_signs(), 1);
    // The right sign with a token TikTok never issued.
    let err = right
        .authorized_shops(&Secret::from("ROW_forged".to_string()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TikTokAuthError::Api { code, .. } if code == fake_tiktok::CODE_INVALID_ACCESS_TOKEN),
        "{err:?}"
    );
}
