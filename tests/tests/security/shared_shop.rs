//! Two brands, one shop (issue 16, point 4). Shopify lists an app's webhook
//! subscriptions per shop, whichever install made them, so the second brand
//! to connect a shop sees the first one's subscriptions under the gateway's
//! URL prefix. The attack is the second install (and every reinstall)
//! itself: it must not adopt, move or delete the other brand's
//! subscriptions, or that brand's webhooks silently stop while its
//! registrations still say `registered`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth::{self, ShopifyConfig};
use ionflux_gateway::store::oauth::WebhookRegistrationRow;
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, app_config, state_cookie};
use ionflux_tests::{Gateway, Options, PATIENCE, free_loopback_addr};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const CLIENT_ID: &str = "shared-shop-client-id";
const CLIENT_SECRET: &str = "shpss_shared_shop_client_secret";
const JWT_SECRET: &str = "shared-shop-user-service-secret";
const SHOP: &str = "shared-shop.myshopify.com";

struct Env {
    gw: Gateway,
    fake: FakeShopify,
    /// Follows no redirects: each hop of the install is made by hand.
    http: reqwest::Client,
}

async fn env() -> Env {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    // The gateway's public base is its real address, so that the addresses
    // registered at the fake are URLs a webhook can be sent to.
    let listen = free_loopback_addr();
    let mut cfg: ShopifyConfig = app_config(
        &fake,
        (CLIENT_ID, CLIENT_SECRET),
        &format!("http://{listen}"),
        JWT_SECRET,
    );
    cfg.authorize_base_url = fake.base_url_template();
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        listen: Some(listen),
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Env { gw, fake, http }
}

/// One brand of one workspace.
#[derive(Clone)]
struct Brand {
    workspace: String,
    brand: String,
}

impl Brand {
    fn new() -> Self {
        Self {
            workspace: uuid::Uuid::new_v4().to_string(),
            brand: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// The `Location` of a request that must redirect, and the state cookie it
/// set, if any.
async fn hop(req: reqwest::RequestBuilder) -> (String, Option<String>) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = state_cookie(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 302, "{body}");
    (location.expect("a Location header"), cookie)
}

/// The OAuth install as the merchant's browser makes it: initiate (with the
/// user service's JWT) → Shopify's authorize page (the fake approves at once)
/// → the gateway's callback. Every install of this file goes through here.
/// Answers the callback's JSON.
async fn install(env: &Env, who: &Brand) -> Value {
    let now = ionflux_gateway::store::now_ms() / 1000;
    let jwt = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({
            "sub": "user-1", "workspaces": [who.workspace], "aud": JWT_AUDIENCE,
            "exp": now + 600, "iat": now,
        }),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let initiate = reqwest::Url::parse_with_params(
        &env.gw.url(oauth::INITIATE_PATH),
        [
            ("workspace_id", who.workspace.as_str()),
            ("brand_id", who.brand.as_str()),
            ("shop", SHOP),
        ],
    )
    .unwrap();
    // The browser keeps the state cookie initiate sets and shows it to the
    // callback, as a merchant's browser does.
    let (authorize, cookie) = hop(env.http.get(initiate).bearer_auth(jwt)).await;
    let cookie = cookie.expect("initiate sets the state cookie");
    let (callback, _) = hop(env.http.get(authorize)).await;
    let resp = env
        .http
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback sent");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("callback answers JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["brand_id"], who.brand.as_str());
    body
}

/// Waits (bounded) until every topic of the connection is `registered` at
/// `address`.
async fn registered_at(
    env: &Env,
    connection_id: &str,
    address: &str,
) -> Vec<WebhookRegistrationRow> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let rows = oauth::webhook_registrations(env.gw.store(), connection_id)
            .await
            .unwrap();
        if rows.len() == oauth::DEFAULT_TOPICS.len()
            && rows
                .iter()
                .all(|r| r.status == "registered" && r.address == address)
        {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "registrations of {connection_id} not done at {address}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An installed connection and where its webhooks go.
struct Installed {
    who: Brand,
    connection_id: String,
    address: String,
}

async fn install_and_register(env: &Env, who: &Brand) -> Installed {
    let c = install(env, who).await;
    let connection_id = c["connection_id"].as_str().unwrap().to_string();
    let address = env.gw.url(c["webhook_path"].as_str().unwrap());
    registered_at(env, &connection_id, &address).await;
    Installed {
        who: who.clone(),
        connection_id,
        address,
    }
}

/// What Shopify holds and what the gateway believes agree for every
/// connection: each topic has exactly one subscription at the connection's
/// own address, its registration names that subscription, and nothing is
/// left at an address the connection no longer has.
async fn assert_subscriptions(env: &Env, all: &[&Installed], stage: &str) {
    let hooks = env.fake.webhooks(SHOP);
    for c in all {
        let rows = registered_at(env, &c.connection_id, &c.address).await;
        for topic in oauth::DEFAULT_TOPICS {
            let here: Vec<_> = hooks
                .iter()
                .filter(|h| h.topic == *topic && h.address == c.address)
                .collect();
            assert_eq!(
                here.len(),
                1,
                "{stage}: brand {} has no subscription of {topic} at its address; at the fake: {hooks:#?}",
                c.who.brand
            );
            let row = rows.iter().find(|r| r.topic == *topic).unwrap();
            assert_eq!(
                row.shopify_webhook_id.as_deref(),
                Some(here[0].id.to_string().as_str()),
                "{stage}: the registration of {topic} names another subscription"
            );
        }
    }
    let addresses: Vec<&str> = all.iter().map(|c| c.address.as_str()).collect();
    let strays: Vec<_> = hooks
        .iter()
        .filter(|h| !addresses.contains(&h.address.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "{stage}: left at old addresses: {strays:#?}"
    );
    assert_eq!(
        hooks.len(),
        all.len() * oauth::DEFAULT_TOPICS.len(),
        "{stage}"
    );
}

/// Sends an `orders/create` to each connection's registered address, signed
/// as Shopify signs it (the app's client secret), and checks that each one
/// is accepted and becomes an event of that connection's brand.
async fn assert_delivered(env: &Env, all: &[&Installed], stage: &str) {
    let mut sent = HashMap::new();
    for c in all {
        let webhook_id = uuid::Uuid::new_v4().to_string();
        let body = format!(r#"{{"id": 1, "note": "{stage}"}}"#).into_bytes();
        let resp = env
            .gw
            .client
            .post(&c.address)
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-shop-domain", SHOP)
            .header("x-shopify-webhook-id", &webhook_id)
            .header("x-shopify-api-version", "2026-04")
            .header(
                "x-shopify-hmac-sha256",
                webhook::sign(CLIENT_SECRET.as_bytes(), &body),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{stage}: brand {}: {answer}", c.who.brand);
        assert_eq!(answer["status"], "accepted", "{stage}");
        sent.insert(webhook_id, &c.who);
    }
    env.gw.settle().await;
    let events = env.gw.logged_events().await;
    for (webhook_id, who) in sent {
        let event = events
            .iter()
            .find(|e| e["metadata"]["webhook_id"] == webhook_id.as_str())
            .unwrap_or_else(|| panic!("{stage}: no event for webhook {webhook_id}"));
        assert_eq!(event["brand_id"], who.brand.as_str(), "{stage}");
        assert_eq!(event["workspace_id"], who.workspace.as_str(), "{stage}");
    }
}

#[tokio::test]
async fn two_brands_of_one_shop_keep_their_subscriptions_through_installs_and_reinstalls() {
    let env = env().await;
    // Two workspaces, one brand each, and a second brand of the first
    // workspace: every pairing the schema allows.
    let a = Brand::new();
    let b = Brand::new();
    let a2 = Brand {
        workspace: a.workspace.clone(),
        brand: uuid::Uuid::new_v4().to_string(),
    };

    let a_1 = install_and_register(&env, &a).await;
    assert_subscriptions(&env, &[&a_1], "A installed").await;
    assert_delivered(&env, &[&a_1], "A installed").await;

    // B's install lists A's subscriptions (same app, same shop) and must
    // leave them where they are.
    let b_1 = install_and_register(&env, &b).await;
    assert_subscriptions(&env, &[&a_1, &b_1], "B installed").await;
    assert_delivered(&env, &[&a_1, &b_1], "B installed").await;

    let a2_1 = install_and_register(&env, &a2).await;
    assert_subscriptions(&env, &[&a_1, &b_1, &a2_1], "A's second brand installed").await;

    // A reinstall moves that connection's own subscriptions to its new
    // address (creating nothing) and touches no one else's.
    let creates = |env: &Env| {
        env.fake
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/webhooks.json"))
            .count()
    };
    let before = creates(&env);
    let a_2 = install_and_register(&env, &a).await;
    assert_eq!(a_2.connection_id, a_1.connection_id);
    assert_ne!(a_2.address, a_1.address);
    assert_subscriptions(&env, &[&a_2, &b_1, &a2_1], "A reinstalled").await;
    assert_eq!(
        creates(&env),
        before,
        "a reinstall moves, it does not create"
    );
    assert_delivered(&env, &[&a_2, &b_1, &a2_1], "A reinstalled").await;

    let b_2 = install_and_register(&env, &b).await;
    assert_subscriptions(&env, &[&a_2, &b_2, &a2_1], "B reinstalled").await;
    assert_delivered(&env, &[&a_2, &b_2, &a2_1], "B reinstalled").await;

    let a2_2 = install_and_register(&env, &a2).await;
    assert_subscriptions(&env, &[&a_2, &b_2, &a2_2], "A's second brand reinstalled").await;
    assert_delivered(&env, &[&a_2, &b_2, &a2_2], "A's second brand reinstalled").await;
    env.gw.stop().await;
}
