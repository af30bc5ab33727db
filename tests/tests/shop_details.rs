//! `GET /integrations/shopify/brands/{brand_id}/shop-details` over real HTTP:
//! a connection installed by OAuth against the local fake Shopify, the live
//! `shop.json` call with the decrypted token, the short cache, the service
//! token, and every error the caller can act on.

use std::time::Duration;

use ionflux_gateway::providers::shopify::oauth::{self, JwtConfig, ShopifyConfig};
use ionflux_gateway::store::{self, ConnectionRow};
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, ShopMode, shop_object, state_cookie};
use ionflux_tests::{Gateway, Options};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const CLIENT_ID: &str = "details-client-id";
const CLIENT_SECRET: &str = "shpss_details_client_secret";
const JWT_SECRET: &str = "details-user-service-secret";
const SERVICE_TOKEN: &str = "svc_shop_details_token";
const PUBLIC_BASE: &str = "https://gateway.example.test";

struct Env {
    gw: Gateway,
    fake: FakeShopify,
    http: reqwest::Client,
}

async fn env_with(service_token: Option<&str>, timeout: Duration) -> Env {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let mut cfg = ShopifyConfig::new(
        CLIENT_ID,
        Secret::from(CLIENT_SECRET.to_string()),
        format!("{PUBLIC_BASE}{}", oauth::CALLBACK_PATH),
        PUBLIC_BASE,
    );
    cfg.admin_base_url = fake.base_url_template();
    cfg.http_timeout = timeout;
    // Registration is not what these tests are about: nothing to subscribe.
    cfg.webhook_topics = Vec::new();
    cfg.jwt = JwtConfig {
        hs256_secret: Some(Secret::from(JWT_SECRET.to_string())),
        audience: Some(JWT_AUDIENCE.into()),
        ..JwtConfig::default()
    };
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        service_token: service_token.map(str::to_string),
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
    env_with(Some(SERVICE_TOKEN), Duration::from_secs(10)).await
}

fn now_s() -> i64 {
    store::now_ms() / 1000
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

/// Installs `shop` for (workspace, brand) through initiate and callback;
/// answers the connection id.
async fn install(env: &Env, ws: &str, brand: &str, shop: &str) -> String {
    let jwt = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-1", "workspaces": [ws], "aud": JWT_AUDIENCE, "exp": now_s() + 600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let q = query(&[("workspace_id", ws), ("brand_id", brand), ("shop", shop)]);
    let resp = env
        .http
        .get(env.gw.url(&format!("{}?{q}", oauth::INITIATE_PATH)))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let cookie = state_cookie(resp.headers()).expect("initiate sets the state cookie");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let state = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let ts = now_s().to_string();
    let pairs = [
        ("code", code.as_str()),
        ("shop", shop),
        ("state", state.as_str()),
        ("timestamp", ts.as_str()),
    ];
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let hmac = oauth::sign_query(CLIENT_SECRET.as_bytes(), &owned);
    let mut all = pairs.to_vec();
    all.push(("hmac", &hmac));
    let resp = env
        .http
        .get(
            env.gw
                .url(&format!("{}?{}", oauth::CALLBACK_PATH, query(&all))),
        )
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["connection_id"].as_str().unwrap().to_string()
}

async fn details(env: &Env, brand: &str, token: Option<&str>) -> (u16, Value) {
    details_at(
        env,
        &format!("/integrations/shopify/brands/{brand}/shop-details"),
        token,
    )
    .await
}

async fn details_at(env: &Env, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = env.http.get(env.gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("response body is not JSON ({status}): {text}"));
    (status, body)
}

#[tokio::test]
async fn a_connected_brand_gets_its_shop_live_then_from_the_cache() {
    let env = env().await;
    let (ws, brand, shop) = (uuid(), uuid(), "details-shop.myshopify.com");
    let id = install(&env, &ws, &brand, shop).await;

    let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["brand_id"], brand.as_str());
    assert_eq!(body["connection_id"], id.as_str());
    assert_eq!(body["shop_domain"], shop);
    assert_eq!(body["shop"], shop_object(shop));
    assert_eq!(body["cached"], false);
    // The call went to shop.json of the configured API version, with the
    // decrypted token (the fake refuses any other).
    let calls: Vec<_> = env
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/shop.json"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].shop, shop);
    assert_eq!(calls[0].path, "/admin/api/2026-04/shop.json");

    // Again: from the cache, no second call.
    let (status, again) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["cached"], true);
    assert_eq!(again["shop"], body["shop"]);
    assert_eq!(env.fake.shop_calls(), 1);

    // Upper-case brand ids name the same brand.
    let (status, upper) = details(&env, &brand.to_uppercase(), Some(SERVICE_TOKEN)).await;
    assert_eq!(status, 200, "{upper}");
    assert_eq!(upper["brand_id"], brand.as_str());

    // `?shop=` picks among a brand's shops; another shop is not connected.
    let path = format!("/integrations/shopify/brands/{brand}/shop-details?shop={shop}");
    assert_eq!(details_at(&env, &path, Some(SERVICE_TOKEN)).await.0, 200);
    let path =
        format!("/integrations/shopify/brands/{brand}/shop-details?shop=other.myshopify.com");
    let (status, body) = details_at(&env, &path, Some(SERVICE_TOKEN)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_connected"))
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn only_the_service_token_gets_in() {
    let env = env().await;
    let brand = uuid();
    install(&env, &uuid(), &brand, "guarded.myshopify.com").await;
    for token in [
        None,
        Some("wrong"),
        Some("svc_shop_details_tokeN"),
        Some(""),
    ] {
        let (status, body) = details(&env, &brand, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["code"], "unauthorized");
    }
    // A scheme other than Bearer.
    let resp = env
        .http
        .get(env.gw.url(&format!(
            "/integrations/shopify/brands/{brand}/shop-details"
        )))
        .header("authorization", format!("Basic {SERVICE_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Nothing reached Shopify.
    assert_eq!(env.fake.shop_calls(), 0);
    env.gw.stop().await;

    // Without a configured service token nobody gets in.
    let env = env_with(None, Duration::from_secs(10)).await;
    let brand = uuid();
    install(&env, &uuid(), &brand, "unguarded.myshopify.com").await;
    let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    env.gw.stop().await;
}

#[tokio::test]
async fn unknown_inactive_and_tokenless_connections_are_told_apart() {
    let env = env().await;
    let token = Some(SERVICE_TOKEN);

    // No connection at all.
    let (status, body) = details(&env, &uuid(), token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_connected"))
    );
    // Not a brand id.
    let (status, body) = details(&env, "not-a-uuid", token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_brand_id"))
    );

    // A connection made by hand has no access token: only an install gives one.
    let brand = uuid();
    ionflux_gateway::providers::shopify::add_connection(
        env.gw.store(),
        &env.gw.vault,
        "manual.myshopify.com",
        &uuid(),
        &brand,
        &Secret::from("shpss_manual".to_string()),
    )
    .await
    .unwrap();
    let (status, body) = details(&env, &brand, token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("reconnect_required")),
        "{body}"
    );

    // A connection that is not active.
    let brand = uuid();
    let id = uuid();
    env.gw
        .store()
        .insert_connection(&ConnectionRow {
            webhook_secret: env.gw.vault.encrypt(
                b"shpss_gone",
                ionflux_gateway::pipeline::connection::binding(
                    &id,
                    ionflux_gateway::pipeline::connection::WEBHOOK_SECRET,
                ),
            ),
            id,
            provider: "shopify".into(),
            account: "gone.myshopify.com".into(),
            workspace_id: uuid(),
            brand_id: brand.clone(),
            secure_path_identifier: store::new_path_identifier(),
            previous_webhook_secret: None,
            previous_webhook_secret_expires_at: None,
            status: "disconnected".into(),
            created_at: store::now_ms(),
            settings: None,
        })
        .await
        .unwrap();
    let (status, body) = details(&env, &brand, token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("connection_inactive")),
        "{body}"
    );
    assert_eq!(env.fake.shop_calls(), 0);
    env.gw.stop().await;
}

#[tokio::test]
async fn a_token_shopify_no_longer_accepts_means_reconnect() {
    let env = env().await;
    let (brand, shop) = (uuid(), "revoked.myshopify.com");
    install(&env, &uuid(), &brand, shop).await;
    for t in env.fake.access_tokens_of(shop) {
        env.fake.revoke_access_token(&t);
    }
    let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("reconnect_required")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("reconnect"),
        "{body}"
    );
    env.gw.stop().await;
}

#[tokio::test]
async fn throttling_failures_and_timeouts_are_shopify_unavailable() {
    // A short timeout so that the hanging fake is given up on soon.
    let env = env_with(Some(SERVICE_TOKEN), Duration::from_millis(500)).await;
    let (brand, shop) = (uuid(), "flaky.myshopify.com");
    install(&env, &uuid(), &brand, shop).await;
    for mode in [
        ShopMode::Status(429),
        ShopMode::Status(500),
        ShopMode::Status(503),
        ShopMode::Hang,
    ] {
        env.fake.set_shop_mode(Some(mode));
        let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (502, Some("shopify_unavailable")),
            "{mode:?}: {body}"
        );
    }
    // A refusal that is not about the token is Shopify's verdict, not a
    // reconnect.
    env.fake.set_shop_mode(Some(ShopMode::Status(403)));
    let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("shopify_error"))
    );

    // Failures are not cached: once Shopify answers, so does the endpoint.
    env.fake.set_shop_mode(None);
    let (status, body) = details(&env, &brand, Some(SERVICE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cached"], false);
    assert_eq!(body["shop"]["myshopify_domain"], shop);
    env.gw.stop().await;
}
