//! app/uninstalled and shop/redact: acknowledged at once (even while a token
//! refresh hangs at Shopify), published as events through the transform
//! path, and only then applied: tokens gone, connection disconnected or
//! redacted, stored webhooks purged.

use std::time::{Duration, Instant};

use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth::ShopifyConfig;
use ionflux_gateway::store::Store;
use ionflux_gateway::store::oauth::RefreshRow;
use ionflux_tests::fake_shopify::{FakeShopify, app_config, install_with_issued_tokens};
use ionflux_tests::{Gateway, Options, PATIENCE};
use serde_json::Value;

const CLIENT_ID: &str = "lifecycle-client-id";
const CLIENT_SECRET: &str = "shpss_lifecycle_test_client_secret";

fn config(fake: &FakeShopify) -> ShopifyConfig {
    let mut cfg = app_config(
        fake,
        (CLIENT_ID, CLIENT_SECRET),
        "https://gw.example.test",
        "jwt-secret",
    );
    cfg.http_timeout = Duration::from_secs(20);
    cfg.webhook_topics = Vec::new();
    cfg
}

async fn connect(gw: &Gateway, fake: &FakeShopify, shop: &str) -> (String, String) {
    install_with_issued_tokens(gw.store(), &gw.vault, fake, shop, CLIENT_SECRET).await
}

/// Sends a signed webhook; answers status and body.
async fn send(gw: &Gateway, path: &str, shop: &str, topic: &str, body: &[u8]) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url(path))
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", shop)
        .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
        .header("x-shopify-api-version", "2026-04")
        .header(
            "x-shopify-hmac-sha256",
            webhook::sign(CLIENT_SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn wait_row(
    store: &Store,
    id: &str,
    what: &str,
    f: impl Fn(&RefreshRow) -> bool,
) -> RefreshRow {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = store.refresh_row(id).await.unwrap().unwrap();
        if f(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events_of(gw: &Gateway, topic: &str) -> Vec<Value> {
    gw.logged_events()
        .await
        .into_iter()
        .filter(|e| e["metadata"]["topic"] == topic)
        .collect()
}

#[tokio::test]
async fn uninstall_disconnects_and_shop_redact_purges() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options {
        shopify: Some(config(&fake)),
        ..Options::default()
    })
    .await;
    let shop = "leaving-shop.myshopify.com";
    let (id, path) = connect(&gw, &fake, shop).await;

    let order = br#"{"id": 1, "email": "buyer@example.com"}"#;
    let (s, order_ack) = send(&gw, &path, shop, "orders/create", order).await;
    assert_eq!(s, 200);
    // A bad HMAC on a lifecycle topic is a 401.
    let resp = gw
        .client
        .post(gw.url(&path))
        .header("x-shopify-topic", "app/uninstalled")
        .header("x-shopify-shop-domain", shop)
        .header("x-shopify-webhook-id", "forged")
        .header("x-shopify-hmac-sha256", webhook::sign(b"wrong", b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (s, _) = send(
        &gw,
        &path,
        shop,
        "app/uninstalled",
        br#"{"id": 5, "domain": "leaving-shop.myshopify.com"}"#,
    )
    .await;
    assert_eq!(s, 200);
    gw.settle().await;
    let r = wait_row(gw.store(), &id, "disconnected", |r| {
        r.status == "disconnected"
    })
    .await;
    assert!(r.access_token.is_none() && r.refresh_token.is_none());
    assert!(r.access_token_expires_at.is_none());
    assert_eq!(
        events_of(&gw, "app/uninstalled").await.len(),
        1,
        "its event is published"
    );

    // Further webhooks on that path are refused (after the intake's short
    // cache lets go of the connection).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (s, body) = send(&gw, &path, shop, "orders/create", b"{}").await;
        if s == 403 {
            assert_eq!(body["code"], "connection_inactive");
            break;
        }
        assert_eq!(s, 200);
        assert!(Instant::now() < deadline, "still accepted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // shop/redact, 48 hours later in real life, is still taken.
    let (s, _) = send(
        &gw,
        &path,
        shop,
        "shop/redact",
        br#"{"shop_id": 5, "shop_domain": "leaving-shop.myshopify.com"}"#,
    )
    .await;
    assert_eq!(s, 200);
    gw.settle().await;
    let r = wait_row(gw.store(), &id, "redacted", |r| r.status == "redacted").await;
    assert!(r.access_token.is_none() && r.refresh_token.is_none());
    assert_eq!(
        events_of(&gw, "shop/redact").await.len(),
        1,
        "its event is published"
    );
    let inbox_id = order_ack["inbox_id"].as_i64().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (body, headers) = gw.store().inbox_body(inbox_id).await.unwrap().unwrap();
        if body == b"{}" {
            assert_eq!(headers, "[]");
            break;
        }
        assert!(Instant::now() < deadline, "body not purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still there for dedup and audit.
    assert!(gw.store().inbox_row(inbox_id).await.unwrap().is_some());
    gw.stop().await;
}

#[tokio::test]
async fn the_ack_never_waits_on_a_hanging_token_refresh() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options {
        shopify: Some(config(&fake)),
        ..Options::default()
    })
    .await;
    let shop = "hanging-shop.myshopify.com";
    fake.hang_refresh(true);
    fake.set_token_lifetime(30);
    let (id, path) = connect(&gw, &fake, shop).await;
    let deadline = Instant::now() + PATIENCE;
    while fake.refresh_calls() == 0 {
        assert!(Instant::now() < deadline, "no refresh started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The refresh hangs at Shopify; the uninstall is acknowledged anyway.
    let (s, _) = tokio::time::timeout(
        PATIENCE,
        send(&gw, &path, shop, "app/uninstalled", br#"{"id": 9}"#),
    )
    .await
    .expect("acknowledged without waiting");
    assert_eq!(s, 200);
    gw.settle().await;
    wait_row(gw.store(), &id, "disconnected", |r| {
        r.status == "disconnected"
    })
    .await;

    // The refresh comes back: its tokens lose to the uninstall.
    fake.set_token_lifetime(3600);
    fake.hang_refresh(false);
    let deadline = Instant::now() + PATIENCE;
    while fake.refreshes_granted() == 0 {
        assert!(Instant::now() < deadline, "refresh never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = wait_row(gw.store(), &id, "lease released", |r| {
        r.refresh_lease_until.is_none()
    })
    .await;
    assert_eq!(r.status, "disconnected");
    assert!(r.access_token.is_none() && r.refresh_token.is_none());
    gw.stop().await;
}
