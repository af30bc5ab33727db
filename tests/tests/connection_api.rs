//! The connection API (issue 19 §1): `GET /admin/v1/connections/{id}` and
//! the actions `disconnect`, `pause`, `resume`, `reregister` and `refresh`,
//! scoped by workspace, and the `integration.*` events they (and installs,
//! uninstalls and refreshes) publish. Runs on SQLite, and on PostgreSQL
//! with `IONFLUX_TEST_POSTGRES`.

use ionflux_tests::Run;
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::registration::ProviderOptions;
use ionflux_tests::fake_shopify::{FakeShopify, app_config, install_with_issued_tokens};
use ionflux_tests::fake_woocommerce::FakeWooCommerce;
use ionflux_tests::{
    Conn, Gateway, Hook, Options, PATIENCE, admin_json, free_loopback_addr, workspace_token,
};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "connection-api-operator-token";

async fn gateway() -> Gateway {
    Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        integration_events: true,
        ..Options::default()
    })
    .await
}

async fn get(gw: &Gateway, path: &str, token: &str) -> (u16, Value) {
    admin_json(gw, Method::GET, path, Some(token), None).await
}

async fn post(gw: &Gateway, path: &str, token: &str) -> (u16, Value) {
    admin_json(gw, Method::POST, path, Some(token), None).await
}

async fn action(gw: &Gateway, id: &str, what: &str) -> Value {
    let (status, body) = post(gw, &format!("/admin/v1/connections/{id}/{what}"), OPERATOR).await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body["action"], what);
    body
}

/// The `integration.{kind}` events of the connection in the event log (each
/// checked against the PlatformEvent schema by `logged_events`).
async fn integration_events(gw: &Gateway, id: &str, kind: &str) -> Vec<Value> {
    let suffix = format!(".integration.{kind}");
    gw.logged_events()
        .await
        .into_iter()
        .filter(|e| e["event_type"].as_str().unwrap().ends_with(&suffix))
        .filter(|e| e["payload_json"]["connection_id"] == id)
        .collect()
}

/// Waits (bounded) for exactly one such event, and that no second follows
/// by the time every other pending event is out.
async fn one_event(gw: &Gateway, id: &str, kind: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = integration_events(gw, id, kind).await;
        let pending = gw.store().pending_integration_events(10).await.unwrap();
        if !events.is_empty() && pending.is_empty() {
            assert_eq!(events.len(), 1, "one integration.{kind}: {events:#?}");
            return events.into_iter().next().unwrap();
        }
        assert!(Instant::now() < deadline, "no integration.{kind} for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_payload(event: &Value, conn: &Conn, kind: &str, status: &str) {
    let c = &conn.created;
    assert_eq!(
        event["event_type"],
        format!(
            "ionflux.{}.ws_{}.brand_{}.integration.{kind}",
            c.provider, c.workspace_id, c.brand_id
        )
    );
    assert_eq!(event["workspace_id"], c.workspace_id.as_str());
    assert_eq!(event["brand_id"], c.brand_id.as_str());
    let p = &event["payload_json"];
    assert_eq!(p["connection_id"], c.connection_id.as_str());
    assert_eq!(p["provider"], c.provider.as_str());
    assert_eq!(p["account"], c.account.as_str());
    assert_eq!(p["status"], status);
    assert!(p["reason"].is_string(), "{p}");
    let text = event.to_string();
    assert!(!text.contains(&conn.secret), "no secret in an event");
}

async fn send_order(gw: &Gateway, conn: &Conn, id: u64) -> (u16, Value) {
    let body = format!(r#"{{"id":{id}}}"#);
    gw.send(&Hook::shopify(
        conn,
        "orders/create",
        "2024-01",
        body.as_bytes(),
    ))
    .await
}

#[tokio::test]
async fn show_tells_how_a_connection_stands_and_lists_it() {
    let gw = gateway().await;
    let conn = gw.connect("show-shop.myshopify.com").await;
    let id = &conn.created.connection_id;
    let (status, shown) = get(&gw, &format!("/admin/v1/connections/{id}"), OPERATOR).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["provider"], "shopify");
    assert_eq!(shown["account"], "show-shop.myshopify.com");
    assert_eq!(shown["workspace_id"], conn.created.workspace_id.as_str());
    assert_eq!(shown["brand_id"], conn.created.brand_id.as_str());
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["paused"], false);
    assert_eq!(shown["auth_method"], "manual");
    assert_eq!(shown["has_refresh_token"], false);
    assert_eq!(shown["webhook_path"], conn.created.webhook_path.as_str());
    assert!(shown["last_webhook_at"].is_null(), "{shown}");
    assert!(shown["last_error"].is_null(), "{shown}");
    assert_eq!(shown["registrations"], json!([]));
    assert!(!shown.to_string().contains(&conn.secret));

    // Intake's group commit notes the last webhook received.
    let (status, body) = send_order(&gw, &conn, 1).await;
    assert_eq!(status, 200, "{body}");
    let (_, shown) = get(&gw, &format!("/admin/v1/connections/{id}"), OPERATOR).await;
    assert!(shown["last_webhook_at"].as_i64().unwrap() > 0, "{shown}");
    // The list tells it too, with whether it is paused.
    let (status, list) = get(&gw, "/admin/v1/connections", OPERATOR).await;
    assert_eq!(status, 200, "{list}");
    let item = &list["connections"][0];
    assert_eq!(item["connection_id"], id.as_str());
    assert_eq!(item["last_webhook_at"], shown["last_webhook_at"]);
    assert_eq!(item["paused"], false);

    let (status, err) = get(&gw, "/admin/v1/connections/no-such-id", OPERATOR).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_connection"))
    );
    let (status, err) = post(&gw, "/admin/v1/connections/no-such-id/pause", OPERATOR).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_connection"))
    );
    gw.stop().await;
}

/// A workspace token reaches its own connections only: another
/// workspace's gets 403 on the view and every action, and nothing changes.
#[tokio::test]
async fn another_workspace_gets_403_on_every_action() {
    let gw = gateway().await;
    let conn = gw.connect("scoped-shop.myshopify.com").await;
    let id = &conn.created.connection_id;
    let own = workspace_token(gw.store(), &conn.created.workspace_id, "own").await;
    let other = workspace_token(gw.store(), &uuid::Uuid::new_v4().to_string(), "other").await;
    let (status, body) = get(&gw, &format!("/admin/v1/connections/{id}"), &other).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    for what in ["disconnect", "pause", "resume", "reregister", "refresh"] {
        let (status, body) = post(&gw, &format!("/admin/v1/connections/{id}/{what}"), &other).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{what}"
        );
    }
    let (_, shown) = get(&gw, &format!("/admin/v1/connections/{id}"), &own).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paused"].as_bool()),
        (Some("active"), Some(false))
    );
    // Its own token may act.
    let (status, body) = post(&gw, &format!("/admin/v1/connections/{id}/pause"), &own).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["paused"], true);
    assert_eq!(body["connection"]["paused_by"], "own");
    gw.stop().await;
}

/// Pausing holds: the platform is answered 200 as ever, the webhook is kept
/// but not published while other connections' webhooks go on, and resume
/// delivers it. Each of paused, resumed is published once.
#[tokio::test]
async fn pause_holds_webhooks_and_resume_delivers_them() {
    let gw = gateway().await;
    let conn = gw.connect("paused-shop.myshopify.com").await;
    let other = gw.connect("busy-shop.myshopify.com").await;
    let id = conn.created.connection_id.clone();
    let paused = action(&gw, &id, "pause").await;
    assert_eq!(paused["changed"], true);
    assert_eq!(paused["connection"]["paused"], true);
    assert_eq!(
        action(&gw, &id, "pause").await["changed"],
        false,
        "idempotent"
    );

    let (status, body) = send_order(&gw, &conn, 7).await;
    assert_eq!(status, 200, "the platform sees a normal answer: {body}");
    let (status, body) = send_order(&gw, &other, 8).await;
    assert_eq!(status, 200, "{body}");
    // The other connection's later webhook is published; the held one is
    // still pending, not lost.
    let deadline = Instant::now() + PATIENCE;
    while gw.store().pending_count().await.unwrap() > 1 {
        assert!(
            Instant::now() < deadline,
            "the other connection's webhook waits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.store().pending_count().await.unwrap(), 1);
    let orders = |events: &[Value], c: &Conn| {
        events
            .iter()
            .filter(|e| e["metadata"]["account"] == c.created.account.as_str())
            .filter(|e| e["metadata"]["topic"] == "orders/create")
            .count()
    };
    assert_eq!(orders(&gw.logged_events().await, &other), 1);
    assert_eq!(
        orders(&gw.logged_events().await, &conn),
        0,
        "held while paused"
    );

    let resumed = action(&gw, &id, "resume").await;
    assert_eq!(resumed["changed"], true);
    assert_eq!(resumed["connection"]["paused"], false);
    assert_eq!(
        action(&gw, &id, "resume").await["changed"],
        false,
        "idempotent"
    );
    gw.settle().await;
    assert_eq!(
        orders(&gw.logged_events().await, &conn),
        1,
        "delivered on resume"
    );

    check_payload(
        &one_event(&gw, &id, "paused").await,
        &conn,
        "paused",
        "active",
    );
    check_payload(
        &one_event(&gw, &id, "resumed").await,
        &conn,
        "resumed",
        "active",
    );
    let paused = one_event(&gw, &id, "paused").await;
    assert_eq!(paused["payload_json"]["actor"], "admin-token");
    gw.stop().await;
}

/// Disconnecting deletes the tokens and refuses the connection's webhooks
/// (but for the compliance topics); `connected` (by hand) and
/// `disconnected` are each published once.
#[tokio::test]
async fn disconnect_refuses_webhooks_and_publishes_once() {
    let gw = gateway().await;
    let conn = gw.connect("leaving-shop.myshopify.com").await;
    let id = conn.created.connection_id.clone();
    let done = action(&gw, &id, "disconnect").await;
    assert_eq!(done["changed"], true);
    assert_eq!(done["connection"]["status"], "disconnected");
    assert_eq!(done["connection"]["has_access_token"], false);
    let again = action(&gw, &id, "disconnect").await;
    assert_eq!(again["changed"], false, "idempotent");

    let (status, body) = send_order(&gw, &conn, 9).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("connection_inactive"))
    );
    // A compliance topic is still taken.
    let (status, body) = gw
        .send(&Hook::shopify(
            &conn,
            "shop/redact",
            "2024-01",
            br#"{"shop_id":1}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");

    check_payload(
        &one_event(&gw, &id, "connected").await,
        &conn,
        "connected",
        "active",
    );
    let gone = one_event(&gw, &id, "disconnected").await;
    check_payload(&gone, &conn, "disconnected", "disconnected");
    assert_eq!(gone["payload_json"]["actor"], "admin-token");
    // Reregister and refresh do not apply to a gone connection.
    for what in ["reregister", "refresh"] {
        let (status, err) =
            post(&gw, &format!("/admin/v1/connections/{id}/{what}"), OPERATOR).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (409, Some("connection_gone")),
            "{what}"
        );
    }
    gw.stop().await;
}

/// A connection whose webhooks the gateway does not register: `reregister`
/// says they are set up in the platform's dashboard; `refresh` that it has
/// no refresh token.
#[tokio::test]
async fn reregister_and_refresh_of_a_connection_made_by_hand_are_409() {
    let gw = gateway().await;
    let conn = gw.connect("manual-shop.myshopify.com").await;
    let id = &conn.created.connection_id;
    let (status, err) = post(
        &gw,
        &format!("/admin/v1/connections/{id}/reregister"),
        OPERATOR,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("registered_in_dashboard"))
    );
    assert!(
        err["message"].as_str().unwrap().contains("dashboard"),
        "{err}"
    );
    let (status, err) = post(
        &gw,
        &format!("/admin/v1/connections/{id}/refresh"),
        OPERATOR,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("not_refreshable"))
    );
    gw.stop().await;
}

const CLIENT_ID: &str = "connection-api-client";
const CLIENT_SECRET: &str = "shpss_connection_api_client_secret";

/// `refresh` refreshes now through the shared refresher, against the fake
/// Shopify; the install's `connected` and the refresh's `token_refreshed`
/// are each published once.
#[tokio::test]
async fn refresh_forces_a_token_refresh() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    // Long-lived tokens: the background job has nothing to do.
    fake.set_token_lifetime(24 * 3600);
    let mut cfg = app_config(
        &fake,
        (CLIENT_ID, CLIENT_SECRET),
        "https://gw.example.test",
        "jwt-secret",
    );
    cfg.webhook_topics = Vec::new();
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        integration_events: true,
        shopify: Some(cfg),
        ..Options::default()
    })
    .await;
    let shop = "refreshing-shop.myshopify.com";
    let (id, _) =
        install_with_issued_tokens(gw.store(), &gw.vault, &fake, shop, CLIENT_SECRET).await;
    let (_, before) = get(&gw, &format!("/admin/v1/connections/{id}"), OPERATOR).await;
    assert_eq!(before["auth_method"], "oauth");
    assert_eq!(before["has_refresh_token"], true);
    assert_eq!(fake.refreshes_granted(), 0);

    let done = action(&gw, &id, "refresh").await;
    assert_eq!(done["changed"], true);
    assert_eq!(fake.refreshes_granted(), 1);
    assert!(
        done["connection"]["refreshed_at"].as_i64().is_some(),
        "{done}"
    );
    assert!(
        done["connection"]["access_token_expires_at"].as_i64()
            >= before["access_token_expires_at"].as_i64(),
        "{done}"
    );
    let refreshed = one_event(&gw, &id, "token_refreshed").await;
    assert_eq!(refreshed["payload_json"]["status"], "active");
    assert_eq!(refreshed["payload_json"]["account"], shop);
    let connected = one_event(&gw, &id, "connected").await;
    assert_eq!(connected["payload_json"]["actor"], "user-1");
    gw.stop().await;
}

const CK: &str = "ck_connection_api";
const CS: &str = "cs_connection_api";

/// WooCommerce: `reregister` registers again with the REST keys the
/// connection keeps, at the fake site.
#[tokio::test]
async fn reregister_uses_the_kept_credentials() {
    let listen = free_loopback_addr();
    let woo = ionflux_gateway::providers::woocommerce::registration::Options {
        allow_plain_http: true,
        ..Default::default()
    };
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        integration_events: true,
        listen: Some(listen),
        public_base_url: Some(format!("http://{listen}")),
        provider_options: Some(ProviderOptions::new([(
            "woocommerce".to_string(),
            serde_json::to_value(woo).unwrap(),
        )])),
        ..Options::default()
    })
    .await;
    let fake = FakeWooCommerce::start(CK, CS).await;
    let (status, added) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/connections",
        Some(OPERATOR),
        Some(json!({
            "provider": "woocommerce",
            "account": fake.site_url(),
            "workspace_id": uuid::Uuid::new_v4().to_string(),
            "brand_id": uuid::Uuid::new_v4().to_string(),
            "credentials": {"consumer_key": CK, "consumer_secret": CS},
        })),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    let id = added["connection_id"].as_str().unwrap().to_string();
    let hooks = fake.webhooks().len();
    assert!(hooks > 0);
    let calls = fake.calls().len();

    let done = action(&gw, &id, "reregister").await;
    assert_eq!(done["changed"], true);
    let registered = done["registered"].as_array().expect("registered webhooks");
    assert_eq!(registered.len(), hooks, "{done}");
    assert!(fake.calls().len() > calls, "the site was asked again");
    assert_eq!(fake.webhooks().len(), hooks, "idempotent at the site");
    gw.stop().await;
}

/// The platform's own lifecycle webhooks publish the same events:
/// `app/uninstalled` → `integration.disconnected`, `shop/redact` →
/// `integration.redacted`, each once, named after the webhook.
#[tokio::test]
async fn uninstall_and_redaction_publish_disconnected_and_redacted() {
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        integration_events: true,
        ..Options::default()
    })
    .await;
    let conn = gw.connect("lifecycle-shop.myshopify.com").await;
    let id = conn.created.connection_id.clone();
    let uninstall = br#"{"id":1,"domain":"lifecycle-shop.myshopify.com"}"#;
    for topic in ["app/uninstalled", "app/uninstalled"] {
        let hook = Hook::shopify(&conn, topic, "2024-01", uninstall)
            .set_header("X-Shopify-Webhook-Id", uuid::Uuid::new_v4().to_string());
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{body}");
    }
    gw.settle().await;
    let gone = one_event(&gw, &id, "disconnected").await;
    check_payload(&gone, &conn, "disconnected", "disconnected");
    assert_eq!(gone["payload_json"]["actor"], "shopify:app/uninstalled");

    let redact = br#"{"shop_id":1,"shop_domain":"lifecycle-shop.myshopify.com"}"#;
    let (status, body) = gw
        .send(&Hook::shopify(&conn, "shop/redact", "2024-01", redact))
        .await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    let redacted = one_event(&gw, &id, "redacted").await;
    check_payload(&redacted, &conn, "redacted", "redacted");
    assert_eq!(integration_events(&gw, &id, "disconnected").await.len(), 1);
    gw.stop().await;
}

/// The real binary with an empty environment but for `env`.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    ionflux_tests::run_cli(None, args, env).await
}

fn one_line(run: &Run) -> Value {
    assert!(run.ok, "the command failed: {}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `connections show|disconnect|pause|resume|reregister|refresh`, on the
/// database's host and through a running gateway (`--admin-url`): the same
/// JSON either way, the same refusals, the same scoping.
#[tokio::test]
async fn the_cli_shows_and_acts_locally_and_remotely() {
    let gw = gateway().await;
    let conn = gw.connect("cli-shop.myshopify.com").await;
    let id = conn.created.connection_id.as_str();
    let admin_url = gw.admin_url("");
    let remote = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", OPERATOR),
    ];
    let local = [("IONFLUX_DATABASE_URL", gw.database_url.as_str())];

    let shown_here = one_line(&cli(&["connections", "show", id], &local).await);
    let shown_there = one_line(&cli(&["connections", "show", id], &remote).await);
    assert_eq!(shown_here, shown_there, "the same JSON either way");
    assert_eq!(shown_here["status"], "active");

    let paused = one_line(&cli(&["connections", "pause", id], &local).await);
    assert_eq!(
        (paused["action"].as_str(), paused["changed"].as_bool()),
        (Some("pause"), Some(true))
    );
    assert_eq!(paused["connection"]["paused_by"], "cli");
    let again = one_line(&cli(&["connections", "pause", id], &remote).await);
    assert_eq!(again["changed"], false, "already paused, whoever paused it");
    let resumed = one_line(&cli(&["connections", "resume", id], &remote).await);
    assert_eq!(
        (
            resumed["changed"].as_bool(),
            resumed["connection"]["paused"].as_bool()
        ),
        (Some(true), Some(false))
    );

    for env in [&local[..], &remote[..]] {
        let refused = cli(&["connections", "reregister", id], env).await;
        assert!(
            !refused.ok && refused.stdout.is_empty(),
            "{}",
            refused.stdout
        );
        assert!(
            refused.stderr.contains("registered_in_dashboard"),
            "{}",
            refused.stderr
        );
        let refused = cli(&["connections", "refresh", id], env).await;
        assert!(!refused.ok);
        assert!(
            refused.stderr.contains("not_refreshable"),
            "{}",
            refused.stderr
        );
    }
    let other = workspace_token(gw.store(), &uuid::Uuid::new_v4().to_string(), "other").await;
    let foreign = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", other.as_str()),
    ];
    let refused = cli(&["connections", "disconnect", id], &foreign).await;
    assert!(
        !refused.ok && refused.stderr.contains("forbidden"),
        "{}",
        refused.stderr
    );

    let gone = one_line(&cli(&["connections", "disconnect", id], &local).await);
    assert_eq!(gone["connection"]["status"], "disconnected");
    let missing = cli(&["connections", "show", "no-such-id"], &remote).await;
    assert!(
        !missing.ok && missing.stderr.contains("unknown_connection"),
        "{}",
        missing.stderr
    );
    for kind in ["paused", "resumed", "disconnected"] {
        one_event(&gw, id, kind).await;
    }
    assert!(!shown_here.to_string().contains(&conn.secret));
    gw.stop().await;
}

/// Shopify (an OAuth app's registrations): `reregister` puts them back to
/// pending, and the app's registrar makes them again at the fake Shopify.
#[tokio::test]
async fn reregister_hands_an_apps_registrations_back_to_its_registrar() {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    fake.set_token_lifetime(24 * 3600);
    let base = "https://gw.example.test";
    let mut cfg = app_config(&fake, (CLIENT_ID, CLIENT_SECRET), base, "jwt-secret");
    cfg.webhook_topics = vec!["orders/create".into(), "app/uninstalled".into()];
    let topics = cfg.webhook_topics.clone();
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        shopify: Some(cfg),
        ..Options::default()
    })
    .await;
    let shop = "reregistering-shop.myshopify.com";
    let (id, path) =
        install_with_issued_tokens(gw.store(), &gw.vault, &fake, shop, CLIENT_SECRET).await;
    // As the install's callback does.
    gw.store()
        .reset_webhook_registrations(&id, &topics, &format!("{base}{path}"))
        .await
        .unwrap();
    let all_registered = |gw: &Gateway, id: String| {
        let store = gw.store().clone();
        async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let rows = store.webhook_registrations(&id).await.unwrap();
                if rows.len() == 2 && rows.iter().all(|r| r.status == "registered") {
                    return rows;
                }
                assert!(Instant::now() < deadline, "not registered: {rows:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = all_registered(&gw, id.clone()).await;
    let calls = fake.calls().len();

    let done = action(&gw, &id, "reregister").await;
    assert_eq!(done["changed"], true);
    assert!(done["registered"].is_null(), "{done}");
    assert!(
        done["message"].as_str().unwrap().contains("pending"),
        "{done}"
    );
    let again = all_registered(&gw, id.clone()).await;
    assert!(
        fake.calls().len() > calls,
        "the registrar asked Shopify again"
    );
    for (a, b) in first.iter().zip(&again) {
        assert!(b.updated_at > a.updated_at, "{a:?} {b:?}");
    }
    assert_eq!(fake.webhooks(shop).len(), 2, "idempotent at Shopify");
    gw.stop().await;
}
