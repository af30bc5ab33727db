//! A lifecycle webhook speaks only for the connections its secret verifies
//! (issue 16, point 5; DESIGN §6b, "merchant / platform"). The topic and the
//! shop domain are headers that Shopify's HMAC does not cover, and a manual
//! connection's secret is whatever its tenant chose: any tenant can sign an
//! `app/uninstalled` or a `shop/redact` "for" any shop at its own URL. The
//! attack is exactly that, against another workspace's connections of the
//! same shop.

use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::connection::{self, SECRETS_CACHED_FOR};
use ionflux_gateway::providers::shopify::oauth::ShopifyConfig;
use ionflux_gateway::providers::shopify::{Shopify, headers as webhook};
use ionflux_gateway::store::Store;
use ionflux_gateway::store::oauth::RefreshRow;
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_shopify::{FakeShopify, app_config, install_with_issued_tokens};
use ionflux_tests::{Conn, Gateway, Hook, Options, PATIENCE};
use serde_json::Value;

const CLIENT_ID: &str = "lifecycle-scope-client-id";
const CLIENT_SECRET: &str = "shpss_lifecycle_scope_client_secret";

async fn gateway() -> (Gateway, FakeShopify) {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let mut cfg: ShopifyConfig = app_config(
        &fake,
        (CLIENT_ID, CLIENT_SECRET),
        "https://gw.example.test",
        "jwt-secret",
    );
    cfg.webhook_topics = Vec::new();
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        ..Options::default()
    })
    .await;
    (gw, fake)
}

/// An OAuth connection of `shop` in a workspace of its own, with tokens the
/// fake issued: (connection id, webhook path).
async fn oauth_connection(gw: &Gateway, fake: &FakeShopify, shop: &str) -> (String, String) {
    install_with_issued_tokens(gw.store(), &gw.vault, fake, shop, CLIENT_SECRET).await
}

/// Posts a webhook to `path` signed with `secret`; answers status and body.
async fn send_signed(
    gw: &Gateway,
    path: &str,
    shop: &str,
    topic: &str,
    secret: &[u8],
    body: &[u8],
) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url(path))
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", shop)
        .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
        .header("x-shopify-api-version", "2026-04")
        .header("x-shopify-hmac-sha256", webhook::sign(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// As Shopify sends it for the app: signed with the client secret.
async fn send_as_app(
    gw: &Gateway,
    path: &str,
    shop: &str,
    topic: &str,
    body: &[u8],
) -> (u16, Value) {
    send_signed(gw, path, shop, topic, CLIENT_SECRET.as_bytes(), body).await
}

async fn row(store: &Store, id: &str) -> RefreshRow {
    store
        .refresh_row(id)
        .await
        .unwrap()
        .expect("connection exists")
}

async fn wait_row(store: &Store, id: &str, what: &str, f: impl Fn(&RefreshRow) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = row(store, id).await;
        if f(&r) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no published lifecycle webhook has an effect left to apply.
async fn lifecycle_settled(gw: &Gateway) {
    gw.settle().await;
    let deadline = Instant::now() + PATIENCE;
    while !gw
        .store()
        .due_lifecycle_rows("shopify", 1)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "lifecycle effects still due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_untouched(r: &RefreshRow, what: &str) {
    assert_eq!(r.status, "active", "{what}: {r:?}");
    assert!(
        r.access_token.is_some() && r.refresh_token.is_some(),
        "{what} lost its tokens: {r:?}"
    );
}

async fn assert_body_kept(gw: &Gateway, inbox_id: i64, body: &[u8], what: &str) {
    let (stored, headers) = gw.store().inbox_body(inbox_id).await.unwrap().unwrap();
    assert_eq!(stored, body, "{what}: stored body purged");
    assert_ne!(headers, "[]", "{what}: stored headers purged");
}

fn inbox_id(ack: &Value) -> i64 {
    ack["inbox_id"].as_i64().expect("an inbox id")
}

#[tokio::test]
async fn a_tenant_signed_uninstall_and_redact_change_only_its_own_connection() {
    let (gw, fake) = gateway().await;
    let shop = "victim-shop.myshopify.com";

    // Workspace A: an OAuth connection of shop X, with tokens and a stored
    // webhook.
    let (a_id, a_path) = oauth_connection(&gw, &fake, shop).await;
    let a_order = br#"{"id": 1, "email": "buyer-of-a@example.com"}"#;
    let (s, ack) = send_as_app(&gw, &a_path, shop, "orders/create", a_order).await;
    assert_eq!(s, 200, "{ack}");
    let a_inbox = inbox_id(&ack);
    // Workspace C: a manual connection of the same shop, its own secret.
    let c = gw.connect(shop).await;
    let c_order = br#"{"id": 2, "email": "buyer-of-c@example.com"}"#;
    let (s, ack) = gw
        .send(&Hook::shopify(&c, "orders/create", "2026-04", c_order))
        .await;
    assert_eq!(s, 200, "{ack}");
    let c_inbox = inbox_id(&ack);
    gw.settle().await;

    // The attack. Workspace B adds a manual connection of shop X with a
    // secret B chose, then signs Shopify's lifecycle topics for shop X and
    // sends them to its own URL. Both are genuine as far as the HMAC goes.
    let b = gw.connect(shop).await;
    let (s, ack) = gw
        .send(&Hook::shopify(
            &b,
            "app/uninstalled",
            "2026-04",
            br#"{"id": 3, "domain": "victim-shop.myshopify.com"}"#,
        ))
        .await;
    assert_eq!(s, 200, "{ack}");
    let (s, ack) = gw
        .send(&Hook::shopify(
            &b,
            "shop/redact",
            "2026-04",
            br#"{"shop_id": 3, "shop_domain": "victim-shop.myshopify.com"}"#,
        ))
        .await;
    assert_eq!(s, 200, "{ack}");
    lifecycle_settled(&gw).await;

    // B's own connection takes the effect: it may speak for itself.
    wait_row(gw.store(), &b.created.connection_id, "B redacted", |r| {
        r.status == "redacted"
    })
    .await;
    // A's keeps its status, its tokens and its stored bodies.
    assert_untouched(&row(gw.store(), &a_id).await, "A's OAuth connection");
    assert_body_kept(&gw, a_inbox, a_order, "A's webhook").await;
    // So does C's manual connection.
    assert_eq!(
        row(gw.store(), &c.created.connection_id).await.status,
        "active"
    );
    assert_body_kept(&gw, c_inbox, c_order, "C's webhook").await;
    // And both keep taking webhooks.
    let (s, ack) = send_as_app(&gw, &a_path, shop, "orders/create", b"{}").await;
    assert_eq!(s, 200, "{ack}");
    let (s, ack) = gw
        .send(&Hook::shopify(&c, "orders/create", "2026-04", b"{}"))
        .await;
    assert_eq!(s, 200, "{ack}");
    gw.stop().await;
}

#[tokio::test]
async fn an_uninstall_signed_by_the_app_reaches_every_install_of_the_app_in_the_shop() {
    let (gw, fake) = gateway().await;
    let shop = "leaving-shop.myshopify.com";
    let (r_id, r_path) = oauth_connection(&gw, &fake, shop).await;
    let (other_id, _) = oauth_connection(&gw, &fake, shop).await;
    let manual = gw.connect(shop).await;
    let order = br#"{"id": 4}"#;
    let (s, ack) = gw
        .send(&Hook::shopify(&manual, "orders/create", "2026-04", order))
        .await;
    assert_eq!(s, 200, "{ack}");
    let manual_inbox = inbox_id(&ack);
    // Until the intake's secret cache has let go of whatever the connection
    // verified with before its install, a webhook there speaks only for it.
    tokio::time::sleep(SECRETS_CACHED_FOR + Duration::from_millis(100)).await;

    // Shopify uninstalls the app from the shop once, for every brand that
    // installed it; the webhook reaches one connection.
    let (s, ack) = send_as_app(&gw, &r_path, shop, "app/uninstalled", br#"{"id": 5}"#).await;
    assert_eq!(s, 200, "{ack}");
    lifecycle_settled(&gw).await;
    for id in [&r_id, &other_id] {
        let r = row(gw.store(), id).await;
        assert_eq!(r.status, "disconnected", "{r:?}");
        assert!(r.access_token.is_none() && r.refresh_token.is_none());
    }
    // A manual connection of the shop is not the app's: untouched.
    assert_eq!(
        row(gw.store(), &manual.created.connection_id).await.status,
        "active"
    );

    // shop/redact, also sent once per shop and app, likewise.
    let (s, ack) = send_as_app(&gw, &r_path, shop, "shop/redact", br#"{"shop_id": 5}"#).await;
    assert_eq!(s, 200, "{ack}");
    lifecycle_settled(&gw).await;
    for id in [&r_id, &other_id] {
        assert_eq!(row(gw.store(), id).await.status, "redacted");
    }
    assert_eq!(
        row(gw.store(), &manual.created.connection_id).await.status,
        "active"
    );
    assert_body_kept(&gw, manual_inbox, order, "the manual connection's webhook").await;
    gw.stop().await;
}

/// Rotates the connection's secret to `secret`, the replaced one verifying
/// for `window`.
async fn rotate(gw: &Gateway, connection_id: &str, secret: &str, window: Duration) {
    let c = gw
        .store()
        .connection_by_id(connection_id)
        .await
        .unwrap()
        .unwrap();
    let secret = Secret::from(secret.to_string());
    let new = connection::NewConnection {
        account: &c.account,
        workspace: &c.workspace_id,
        brand: &c.brand_id,
        secret: &secret,
        settings: &serde_json::Value::Null,
        previous_window: window,
    };
    let rotated = connection::add(gw.store(), &gw.vault, &Shopify, &new)
        .await
        .expect("rotated");
    assert!(!rotated.created);
}

#[tokio::test]
async fn a_previous_secret_stops_verifying_and_speaking_after_its_window() {
    let (gw, fake) = gateway().await;
    let shop = "rotating-shop.myshopify.com";
    let short = Duration::from_millis(300);
    let long = Duration::from_secs(3600);

    // Two manual connections rotated to a new secret: one with a short
    // window, one with a long one.
    let expired = gw.connect(shop).await;
    rotate(&gw, &expired.created.connection_id, "shpss_new_1", short).await;
    let kept = gw.connect(shop).await;
    rotate(&gw, &kept.created.connection_id, "shpss_new_2", long).await;
    // Three OAuth connections of the shop: one that will speak as the app,
    // and two whose tenants rotated them to secrets of their own (the app's
    // client secret becomes their previous one), with each window.
    let (r_id, r_path) = oauth_connection(&gw, &fake, shop).await;
    let (gone_id, _) = oauth_connection(&gw, &fake, shop).await;
    rotate(&gw, &gone_id, "shpss_tenant_1", short).await;
    let (still_id, _) = oauth_connection(&gw, &fake, shop).await;
    rotate(&gw, &still_id, "shpss_tenant_2", long).await;
    // Past the short window (and the intake's cache of R's secrets).
    tokio::time::sleep(SECRETS_CACHED_FOR.max(short) + Duration::from_millis(100)).await;

    // The previous secret past its window: 401, as any wrong secret.
    let signed_by = |conn: &Conn, secret: &str| Conn {
        created: conn.created.clone(),
        secret: secret.to_string(),
    };
    let old = signed_by(&expired, &expired.secret);
    let (s, body) = gw
        .send(&Hook::shopify(&old, "orders/create", "2026-04", b"{}"))
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (401, Some("invalid_hmac")),
        "{body}"
    );
    let new = signed_by(&expired, "shpss_new_1");
    let (s, body) = gw
        .send(&Hook::shopify(&new, "orders/create", "2026-04", b"{}"))
        .await;
    assert_eq!(s, 200, "{body}");
    // Inside its window it still verifies.
    let (s, body) = gw
        .send(&Hook::shopify(&kept, "orders/create", "2026-04", b"{}"))
        .await;
    assert_eq!(s, 200, "{body}");

    // An uninstall signed by the app reaches the connections that verify
    // with the app's secret: R, and the one whose previous secret (the
    // app's) is inside its window; not the one whose window is over.
    let (s, ack) = send_as_app(&gw, &r_path, shop, "app/uninstalled", br#"{"id": 6}"#).await;
    assert_eq!(s, 200, "{ack}");
    lifecycle_settled(&gw).await;
    assert_eq!(row(gw.store(), &r_id).await.status, "disconnected");
    assert_eq!(row(gw.store(), &still_id).await.status, "disconnected");
    assert_untouched(
        &row(gw.store(), &gone_id).await,
        "the rotated connection past its window",
    );
    gw.stop().await;
}
