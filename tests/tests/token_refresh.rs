//! Token refresh against the fake Shopify, whose refresh tokens are single
//! use and rotated: one exchange for concurrent refreshes (across "replicas"
//! on one database), the newest refresh token always stored, failures
//! counted into `refresh_failed` with an `integration.error` event, and
//! webhooks still accepted then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection;
use ionflux_gateway::providers::shopify::api::ShopifyApi;
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::providers::shopify::oauth::{OAuth, ShopifyConfig};
use ionflux_gateway::store::oauth::RefreshRow;
use ionflux_gateway::store::{Store, now_ms};
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_shopify::{FakeShopify, app_config, install_with_issued_tokens};
use ionflux_tests::{Gateway, Options, PATIENCE};
use serde_json::Value;

pub const CLIENT_ID: &str = "refresh-client-id";
pub const CLIENT_SECRET: &str = "shpss_refresh_test_client_secret";

fn config(fake: &FakeShopify, custom: impl FnOnce(&mut ShopifyConfig)) -> ShopifyConfig {
    let mut cfg = app_config(
        fake,
        (CLIENT_ID, CLIENT_SECRET),
        "https://gw.example.test",
        "jwt-secret",
    );
    cfg.webhook_topics = Vec::new();
    cfg.refresh.max_failures = 3;
    custom(&mut cfg);
    cfg
}

/// Installs `shop` with tokens the fake issued (as the callback would store
/// them); answers (connection id, webhook path).
async fn connect(store: &Store, gw: &Gateway, fake: &FakeShopify, shop: &str) -> (String, String) {
    install_with_issued_tokens(store, &gw.vault, fake, shop, CLIENT_SECRET).await
}

async fn row(store: &Store, id: &str) -> RefreshRow {
    store.refresh_row(id).await.unwrap().unwrap()
}

/// Waits (bounded) until `f` holds of the connection's row.
async fn wait_row(
    store: &Store,
    id: &str,
    what: &str,
    f: impl Fn(&RefreshRow) -> bool,
) -> RefreshRow {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = row(store, id).await;
        if f(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn decrypt(gw: &Gateway, id: &str, ct: &str, purpose: &str) -> String {
    let s = gw
        .vault
        .decrypt(ct, connection::binding(id, purpose))
        .unwrap();
    String::from_utf8(s.expose().to_vec()).unwrap()
}

async fn integration_errors(gw: &Gateway) -> Vec<Value> {
    gw.logged_events()
        .await
        .into_iter()
        .filter(|e| {
            e["event_type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".integration.error"))
        })
        .collect()
}

async fn webhook(gw: &Gateway, path: &str, shop: &str, topic: &str) -> u16 {
    let body = br#"{"id": 7}"#;
    gw.client
        .post(gw.url(path))
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", shop)
        .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
        .header(
            "x-shopify-hmac-sha256",
            webhook::sign(CLIENT_SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn concurrent_refreshes_on_two_replicas_make_one_exchange() {
    // No Shopify app on the gateway itself: no background job; two OAuth
    // instances on one database file (the second with a pool of its own)
    // stand for two replicas.
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options::default()).await;
    let cfg = config(&fake, |_| {});
    let a = Arc::new(OAuth::new(cfg.clone(), gw.store().clone(), gw.vault.clone()).unwrap());
    let other_store = Store::connect(&gw.database_url).await.unwrap();
    let b = Arc::new(OAuth::new(cfg, other_store, gw.vault.clone()).unwrap());

    let shop = "race-shop.myshopify.com";
    // Expires within the inline margin: both callers must refresh first.
    fake.set_token_lifetime(30);
    let (id, _) = connect(gw.store(), &gw, &fake, shop).await;
    fake.set_token_lifetime(3600);
    let (first_refresh, _) = fake.latest_refresh_token(shop).unwrap();

    // The first exchange hangs at the fake while the second caller arrives.
    fake.hang_refresh(true);
    let ta = tokio::spawn({
        let (a, id) = (a.clone(), id.clone());
        async move { a.access_token_for(&id).await }
    });
    let deadline = Instant::now() + PATIENCE;
    while fake.refresh_calls() == 0 {
        assert!(Instant::now() < deadline, "no refresh reached the fake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tb = tokio::spawn({
        let (b, id) = (b.clone(), id.clone());
        async move { b.access_token_for(&id).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.hang_refresh(false);
    let ta = tokio::time::timeout(PATIENCE, ta)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let tb = tokio::time::timeout(PATIENCE, tb)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    assert_eq!(fake.refresh_calls(), 1, "one exchange");
    assert_eq!(fake.refreshes_granted(), 1);
    assert_eq!(ta.expose(), tb.expose(), "both end with the same token");
    let r = row(gw.store(), &id).await;
    assert_eq!(r.status, "active");
    assert!(r.refresh_lease_until.is_none(), "lease released");
    assert_eq!(
        decrypt(
            &gw,
            &id,
            r.access_token.as_ref().unwrap(),
            connection::ACCESS_TOKEN
        )
        .as_bytes(),
        ta.expose()
    );
    let (latest, live) = fake.latest_refresh_token(shop).unwrap();
    assert!(live);
    assert_ne!(latest, first_refresh);
    assert_eq!(
        decrypt(
            &gw,
            &id,
            r.refresh_token.as_ref().unwrap(),
            connection::REFRESH_TOKEN
        ),
        latest
    );
    // Fresh now: a third call makes no exchange.
    let again = a.access_token_for(&id).await.unwrap();
    assert_eq!(again.expose(), ta.expose());
    assert_eq!(fake.refresh_calls(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_newest_refresh_token_is_never_lost_across_two_gateways() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options {
        shopify: Some(config(&fake, |_| {})),
        ..Options::default()
    })
    .await;
    // A second gateway on the same database: two refresh jobs contend.
    let gw2 = Gateway::start_with_vault(
        Options {
            shopify: Some(config(&fake, |_| {})),
            database_url: Some(gw.database_url.clone()),
            ..Options::default()
        },
        gw.vault.clone(),
    )
    .await;
    let shop = "rotating-shop.myshopify.com";
    // Every token is due at once (lead time 10 minutes): refreshes follow
    // one another.
    fake.set_token_lifetime(30);
    let (id, _) = connect(gw.store(), &gw, &fake, shop).await;
    let (first_refresh, _) = fake.latest_refresh_token(shop).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while fake.refreshes_granted() < 4 {
        assert!(
            Instant::now() < deadline,
            "refreshes: {}",
            fake.refreshes_granted()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.set_token_lifetime(3600);
    let r = wait_row(gw.store(), &id, "a long-lived token stored", |r| {
        r.access_token_expires_at.unwrap_or(0) > now_ms() + 30 * 60 * 1000
            && r.refresh_lease_until.is_none()
    })
    .await;
    // Every exchange was granted: no one ever spent a spent token.
    assert_eq!(fake.refresh_calls(), fake.refreshes_granted());
    assert_eq!(r.status, "active");
    assert_eq!(r.refresh_failures, 0);
    let (latest, live) = fake.latest_refresh_token(shop).unwrap();
    assert!(live, "the latest refresh token is unspent");
    assert_eq!(
        decrypt(
            &gw,
            &id,
            r.refresh_token.as_ref().unwrap(),
            connection::REFRESH_TOKEN
        ),
        latest,
        "the stored refresh token is the newest"
    );
    assert!(fake.access_tokens_of(shop).contains(&decrypt(
        &gw,
        &id,
        r.access_token.as_ref().unwrap(),
        connection::ACCESS_TOKEN
    )));
    // A spent refresh token is refused.
    let api = ShopifyApi::new(
        &fake.base_url_template(),
        "2026-04",
        Duration::from_secs(10),
    )
    .unwrap();
    let reused = api
        .refresh_token(
            shop,
            CLIENT_ID,
            &Secret::from(CLIENT_SECRET.to_string()),
            &Secret::from(first_refresh),
        )
        .await;
    assert_eq!(reused.unwrap_err().status(), Some(400));
    gw2.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn failing_refreshes_mark_the_connection_and_publish_integration_error() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options {
        shopify: Some(config(&fake, |_| {})),
        ..Options::default()
    })
    .await;
    let shop = "failing-shop.myshopify.com";
    fake.fail_refresh(Some(503));
    fake.set_token_lifetime(30);
    let (id, path) = connect(gw.store(), &gw, &fake, shop).await;
    let r = wait_row(gw.store(), &id, "refresh_failed", |r| {
        r.status == "refresh_failed"
    })
    .await;
    assert!(r.refresh_failures >= 3, "{r:?}");
    assert!(
        r.refresh_token.is_some(),
        "a transient failure keeps the tokens"
    );
    assert!(fake.refresh_calls() >= 3);

    // One integration.error event, without secrets.
    let deadline = Instant::now() + PATIENCE;
    let events = loop {
        let e = integration_errors(&gw).await;
        if !e.is_empty() {
            break e;
        }
        assert!(Instant::now() < deadline, "no integration.error event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    let c = gw.store().connection_tokens(&id).await.unwrap().unwrap();
    assert_eq!(
        e["event_type"],
        format!(
            "ionflux.shopify.ws_{}.brand_{}.integration.error",
            c.workspace_id, c.brand_id
        )
    );
    assert_eq!(e["payload_json"]["connection_id"], id.as_str());
    assert_eq!(e["payload_json"]["shop_domain"], shop);
    assert!(
        e["payload_json"]["reason"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    let text = e.to_string();
    for t in fake.issued_tokens() {
        assert!(!text.contains(&t));
    }
    assert!(!text.contains(CLIENT_SECRET));

    // Webhooks of the connection are still accepted.
    assert_eq!(webhook(&gw, &path, shop, "orders/create").await, 200);

    // Shopify recovers: the retries go on and the connection is active again.
    fake.fail_refresh(None);
    fake.set_token_lifetime(3600);
    let r = wait_row(gw.store(), &id, "active again", |r| r.status == "active").await;
    assert_eq!(r.refresh_failures, 0);
    assert_eq!(integration_errors(&gw).await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_401_marks_refresh_failed_at_once() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let gw = Gateway::start(Options {
        shopify: Some(config(&fake, |c| c.refresh.max_failures = 5)),
        ..Options::default()
    })
    .await;
    let shop = "revoked-shop.myshopify.com";
    fake.fail_refresh(Some(401));
    fake.set_token_lifetime(30);
    let (id, path) = connect(gw.store(), &gw, &fake, shop).await;
    let r = wait_row(gw.store(), &id, "refresh_failed", |r| {
        r.status == "refresh_failed"
    })
    .await;
    assert_eq!(r.refresh_failures, 1);
    assert!(r.next_refresh_at.is_none(), "not retried by itself");
    assert_eq!(fake.refresh_calls(), 1);
    let deadline = Instant::now() + PATIENCE;
    while integration_errors(&gw).await.is_empty() {
        assert!(Instant::now() < deadline, "no integration.error event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        integration_errors(&gw).await[0]["payload_json"]["reason"]
            .as_str()
            .unwrap()
            .contains("401")
    );
    assert_eq!(webhook(&gw, &path, shop, "orders/create").await, 200);
    // Later passes leave it alone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.refresh_calls(), 1);
    gw.stop().await;
}
