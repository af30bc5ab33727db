//! The README's "Connecting a store with OAuth" as a test: a user-service JWT,
//! one GET of initiate that follows the redirects with a cookie jar, as
//! `curl -L -c jar -b jar` and a browser do (gateway, which sets the state
//! cookie → the fake's authorize page, where the merchant approves at once →
//! the gateway's callback, which gets the cookie back) and ends with the
//! connected JSON; the same GET without a jar is refused; the webhooks registered at the
//! fake; a signed order webhook becomes an event; `app/uninstalled` leaves
//! the connection `disconnected` without tokens, and its order webhooks are
//! refused from then on.

use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection;
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth;
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, app_config};
use ionflux_tests::{Gateway, Options, PATIENCE, free_loopback_addr, shared_dir};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const CLIENT_ID: &str = "demo";
const CLIENT_SECRET: &str = "demo_app_secret";
const JWT_SECRET: &str = "devsecret";
const SHOP: &str = "demo-shop.myshopify.com";
const WORKSPACE: &str = "7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f";
const BRAND: &str = "0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b";

fn sample(dir: &str) -> Vec<u8> {
    let path = shared_dir().join(format!(
        "data/shopify-webhooks/{dir}/gadget-schemas-2026-04-1.json"
    ));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// POSTs a webhook as Shopify sends it, signed with the app's client secret.
async fn send(gw: &Gateway, path: &str, topic: &str, body: &[u8]) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", SHOP)
        .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
        .header("x-shopify-api-version", "2026-04")
        .header(
            "x-shopify-hmac-sha256",
            webhook::sign(CLIENT_SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("webhook sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON answer"))
}

#[tokio::test]
async fn connect_with_oauth_then_webhooks_flow_and_uninstall_removes_the_tokens() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let listen = free_loopback_addr();
    let base = format!("http://{listen}");
    let mut cfg = app_config(&fake, (CLIENT_ID, CLIENT_SECRET), &base, JWT_SECRET);
    cfg.authorize_base_url = fake.base_url_template();
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        listen: Some(listen),
        ..Options::default()
    })
    .await;

    // 1. The user service's token, as `fake-shopify jwt` mints it.
    let now = ionflux_gateway::store::now_ms() / 1000;
    let jwt = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "user-1", "workspaces": [WORKSPACE], "aud": JWT_AUDIENCE, "iat": now, "exp": now + 3600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();

    // 2. initiate → the fake's authorize page → the callback, followed as
    //    `curl -L` and a browser follow them. Without a cookie jar the
    //    callback cannot tell the browser that started the install.
    let initiate = |client: reqwest::Client| {
        client
            .get(gw.url(oauth::INITIATE_PATH))
            .query(&[
                ("workspace_id", WORKSPACE),
                ("brand_id", BRAND),
                ("shop", SHOP),
            ])
            .bearer_auth(&jwt)
            .send()
    };
    let resp = initiate(reqwest::Client::new())
        .await
        .expect("initiate sent");
    assert_eq!(resp.url().path(), oauth::CALLBACK_PATH);
    assert_eq!(resp.status(), 403);
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["code"], "state_cookie_missing");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let resp = initiate(browser).await.expect("initiate sent");
    assert_eq!(resp.url().path(), oauth::CALLBACK_PATH);
    let status = resp.status().as_u16();
    let connected: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["status"], "connected");
    assert_eq!(connected["shop_domain"], SHOP);
    assert_eq!(connected["workspace_id"], WORKSPACE);
    assert_eq!(connected["brand_id"], BRAND);
    let id = connected["connection_id"].as_str().unwrap().to_string();
    let path = connected["webhook_path"].as_str().unwrap().to_string();
    let authorize = fake
        .calls()
        .into_iter()
        .find(|c| c.path == "/admin/oauth/authorize")
        .expect("the merchant was sent to the authorize page");
    assert_eq!(authorize.shop, SHOP);
    assert_eq!(authorize.body["client_id"], CLIENT_ID);
    assert_eq!(authorize.body["scope"], oauth::DEFAULT_SCOPES);

    // 3. The webhooks get registered at the fake, at this connection's URL.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let regs = oauth::webhook_registrations(gw.store(), &id).await.unwrap();
        if !regs.is_empty() && regs.iter().all(|r| r.status == "registered") {
            assert_eq!(regs.len(), oauth::DEFAULT_TOPICS.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "registrations not done: {regs:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hooks = fake.webhooks(SHOP);
    assert_eq!(hooks.len(), oauth::DEFAULT_TOPICS.len());
    assert!(hooks.iter().all(|h| h.address == format!("{base}{path}")));
    assert!(
        connection::access_token(gw.store(), &gw.vault, &id)
            .await
            .unwrap()
            .is_some()
    );

    // 4. An order webhook takes the core path and becomes an event.
    let (status, body) = send(&gw, &path, "orders/create", &sample("orders__create")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    gw.settle().await;
    let events = gw.logged_events().await;
    let order = events
        .iter()
        .find(|e| e["metadata"]["topic"] == "orders/create")
        .expect("an orders/create event");
    assert_eq!(
        order["event_type"],
        format!("ionflux.shopify.ws_{WORKSPACE}.brand_{BRAND}.orders.created")
    );
    assert_eq!(order["workspace_id"], WORKSPACE);
    assert_eq!(order["brand_id"], BRAND);

    // 5. The merchant uninstalls: the event is published, then the
    //    connection is disconnected and its tokens deleted.
    let (status, body) = send(&gw, &path, "app/uninstalled", &sample("app__uninstalled")).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + PATIENCE;
    let row = loop {
        let row = gw.store().connection_tokens(&id).await.unwrap().unwrap();
        if row.status == "disconnected" {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the uninstall",
            row.status
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(row.auth_method, "oauth");
    assert!(row.access_token.is_none() && row.refresh_token.is_none());
    assert!(row.access_token_expires_at.is_none() && row.refresh_token_expires_at.is_none());
    assert!(
        connection::access_token(gw.store(), &gw.vault, &id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        oauth::webhook_registrations(gw.store(), &id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        gw.logged_events()
            .await
            .iter()
            .any(|e| e["metadata"]["topic"] == "app/uninstalled")
    );

    // 6. From now on its order webhooks are refused (at once: the uninstall
    //    was applied by this process).
    let (status, body) = send(&gw, &path, "orders/create", &sample("orders__create")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "connection_inactive");

    gw.stop().await;
}
