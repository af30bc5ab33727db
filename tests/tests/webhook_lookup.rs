//! "Where is my webhook?" (issue 19 §2): a Shopify webhook found by its
//! `X-Shopify-Webhook-Id` through the admin API and the CLI (local and
//! `--admin-url`), the list's filters and cursor pages, one webhook's life
//! (attempts with their route, transform and error; its events or its dead
//! letter; a retry's error), workspace scoping, and the dead letters'
//! filters in list and replay. On SQLite, or PostgreSQL with
//! `IONFLUX_TEST_POSTGRES`.

use std::path::Path;
use std::time::Duration;

use ionflux_gateway::store::{Outcome, Tried};
use ionflux_tests::{
    Conn, Gateway, Hook, Options, OwnBroker, consume, gateway_bin, hostile_wasm, kafka_brokers,
    test_topics,
};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "configured-operator-token";

async fn gateway(opts: Options) -> Gateway {
    Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..opts
    })
    .await
}

async fn get(gw: &Gateway, path: &str, token: &str) -> (u16, Value) {
    ionflux_tests::admin_json(gw, Method::GET, path, Some(token), None).await
}

async fn ok(gw: &Gateway, path: &str) -> Value {
    let (status, body) = get(gw, path, OPERATOR).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Sends a signed Shopify webhook; its inbox id and delivery id.
async fn send(gw: &Gateway, conn: &Conn, topic: &str, body: &[u8]) -> (i64, String) {
    let hook = Hook::shopify(conn, topic, "2024-01", body);
    let (status, answer) = gw.send(&hook).await;
    assert_eq!(status, 200, "{answer}");
    let delivery = hook.header("x-shopify-webhook-id").unwrap().to_string();
    (answer["inbox_id"].as_i64().unwrap(), delivery)
}

fn ids(page: &Value) -> Vec<i64> {
    page["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<Value> {
        assert!(self.ok, "the command failed: {}", self.stderr);
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// The binary in `dir` with only `env` in its environment.
async fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(gateway_bin());
    cmd.env_clear().current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("the binary runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The Done-when step: a Shopify webhook found by its X-Shopify-Webhook-Id
/// through the API, the CLI over the API, and the CLI on the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopify_webhook_is_found_by_its_delivery_id_through_the_api_and_the_cli() {
    let gw = gateway(Options::default()).await;
    let conn = gw.connect("where-is-it.myshopify.com").await;
    let other = gw.connect("someone-else.myshopify.com").await;
    send(&gw, &conn, "orders/create", br#"{"id":1}"#).await;
    let body = br#"{"id":2,"email":"jon@example.com"}"#;
    let (inbox_id, delivery) = send(&gw, &conn, "orders/create", body).await;
    send(&gw, &other, "orders/create", br#"{"id":3}"#).await;
    gw.settle().await;

    let page = ok(&gw, &format!("/admin/v1/webhooks?delivery_id={delivery}")).await;
    assert_eq!(ids(&page), vec![inbox_id], "{page}");
    let item = &page["webhooks"][0];
    assert_eq!(item["delivery_id"], delivery.as_str());
    assert_eq!(item["provider"], "shopify");
    assert_eq!(item["connection_id"], conn.created.connection_id.as_str());
    assert_eq!(item["account"], "where-is-it.myshopify.com");
    assert_eq!(item["topic"], "orders/create");
    assert_eq!(item["status"], "published");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["trace_id"].as_str().unwrap().len(), 32, "{item}");
    assert!(page.get("next_cursor").is_none(), "{page}");
    assert!(!page.to_string().contains("jon@example.com"), "no body");
    // The connection narrows the same lookup; another's finds nothing.
    let narrowed = format!(
        "/admin/v1/webhooks?delivery_id={delivery}&connection_id={}",
        conn.created.connection_id
    );
    assert_eq!(ids(&ok(&gw, &narrowed).await), vec![inbox_id]);
    let elsewhere = format!(
        "/admin/v1/webhooks?delivery_id={delivery}&connection_id={}",
        other.created.connection_id
    );
    assert!(ids(&ok(&gw, &elsewhere).await).is_empty());
    assert!(ids(&ok(&gw, "/admin/v1/webhooks?delivery_id=no-such-delivery").await).is_empty());

    // Its life: received, one attempt by the default transform, one event.
    let life = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}")).await;
    assert_eq!(life["webhook"], *item);
    assert!(life.get("body").is_none(), "only when asked: {life}");
    let headers = life["received"]["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h["name"] == "x-shopify-webhook-id" && h["value"] == delivery.as_str()),
        "{life}"
    );
    assert!(
        !life.to_string().to_ascii_lowercase().contains("hmac"),
        "no signature is kept: {life}"
    );
    assert_eq!(life["received"]["api_version"], "2024-01");
    let attempts = life["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{life}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["outcome"], "published");
    assert_eq!(attempts[0]["transform"], "shopify-default");
    assert_eq!(
        attempts[0]["transform_digest"].as_str().unwrap().len(),
        64,
        "{life}"
    );
    assert!(attempts[0].get("route_id").is_none(), "the default: {life}");
    assert!(life.get("dead_letter").is_none());
    let logged: Vec<Value> = gw
        .logged_events()
        .await
        .into_iter()
        .filter(|e| e["metadata"]["webhook_id"] == delivery.as_str())
        .collect();
    assert_eq!(logged.len(), 1);
    let events = life["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{life}");
    assert_eq!(events[0]["event_id"], logged[0]["event_id"], "{life}");
    assert_eq!(events[0]["partition"], 0, "the event log");

    // The body, when asked for, as it arrived.
    let with_body = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}?body=true")).await;
    assert_eq!(with_body["body"], std::str::from_utf8(body).unwrap());
    assert_eq!(with_body["body_encoding"], "utf-8");

    // The CLI through the admin API.
    let dir = tempfile::tempdir().unwrap();
    let admin_url = gw.admin_url("");
    let remote = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", OPERATOR),
    ];
    let lines = cli(
        dir.path(),
        &remote,
        &["webhooks", "list", "--delivery-id", &delivery],
    )
    .await
    .lines();
    assert_eq!(lines, vec![item.clone()]);
    let id = inbox_id.to_string();
    let shown = cli(dir.path(), &remote, &["webhooks", "show", &id])
        .await
        .lines();
    assert_eq!(shown, vec![life.clone()]);

    // The CLI on the database, as an operator on the gateway's host.
    let local = [("IONFLUX_DATABASE_URL", gw.database_url.as_str())];
    let lines = cli(
        dir.path(),
        &local,
        &["webhooks", "list", "--delivery-id", &delivery],
    )
    .await
    .lines();
    assert_eq!(lines, vec![item.clone()]);
    let shown = cli(dir.path(), &local, &["webhooks", "show", &id])
        .await
        .lines();
    assert_eq!(shown, vec![life]);
    let missing = cli(dir.path(), &local, &["webhooks", "show", "999999"]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("unknown_webhook"),
        "{}",
        missing.stderr
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_list_filters_and_pages_newest_first() {
    let gw = gateway(Options::default()).await;
    let a = gw.connect("filters-a.myshopify.com").await;
    let b = gw.connect("filters-b.myshopify.com").await;
    let mut sent = Vec::new();
    for (i, topic) in ["orders/create", "products/update", "orders/create"]
        .iter()
        .enumerate()
    {
        sent.push(
            send(&gw, &a, topic, format!("{{\"id\":{i}}}").as_bytes())
                .await
                .0,
        );
        // Apart in time, for the time filters.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let on_b = send(&gw, &b, "orders/create", br#"{"id":9}"#).await.0;
    gw.settle().await;
    let mut newest_first = sent.clone();
    newest_first.push(on_b);
    newest_first.sort_unstable_by(|x, y| y.cmp(x));

    // Every page by its cursor: all of them once, newest first.
    let mut seen = Vec::new();
    let mut path = "/admin/v1/webhooks?limit=3".to_string();
    loop {
        let page = ok(&gw, &path).await;
        let got = ids(&page);
        assert!(got.len() <= 3, "{page}");
        seen.extend(got);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/v1/webhooks?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    // A page that ends exactly at the last webhook says there is no more.
    let page = ok(&gw, "/admin/v1/webhooks?limit=4").await;
    assert_eq!(ids(&page).len(), 4);
    assert!(page.get("next_cursor").is_none(), "{page}");

    let by_connection = format!(
        "/admin/v1/webhooks?connection_id={}",
        a.created.connection_id
    );
    let mut on_a = sent.clone();
    on_a.reverse();
    assert_eq!(ids(&ok(&gw, &by_connection).await), on_a);
    let topic = format!("{by_connection}&topic=orders/create");
    assert_eq!(ids(&ok(&gw, &topic).await), vec![sent[2], sent[0]]);
    assert_eq!(
        ids(&ok(
            &gw,
            "/admin/v1/webhooks?topic=products/update&provider=shopify"
        )
        .await),
        vec![sent[1]]
    );
    assert!(ids(&ok(&gw, "/admin/v1/webhooks?provider=woocommerce").await).is_empty());
    assert_eq!(
        ids(&ok(&gw, "/admin/v1/webhooks?status=published").await),
        newest_first
    );
    assert!(ids(&ok(&gw, "/admin/v1/webhooks?status=dead").await).is_empty());

    // Time: at or after, before; as epoch ms or RFC 3339.
    let middle = ok(&gw, &format!("/admin/v1/webhooks/{}", sent[1])).await;
    let at = middle["webhook"]["received_at"].as_i64().unwrap();
    let after = ids(&ok(&gw, &format!("{by_connection}&after={at}")).await);
    assert_eq!(after, vec![sent[2], sent[1]]);
    let before = ids(&ok(&gw, &format!("{by_connection}&before={at}")).await);
    assert_eq!(before, vec![sent[0]]);
    // `+00:00`, its `+` escaped for the query string.
    let rfc3339 = ionflux_gateway::pipeline::event::millis_to_utc(at)
        .to_rfc3339()
        .replace('+', "%2B");
    let after_rfc = ids(&ok(&gw, &format!("{by_connection}&after={rfc3339}")).await);
    assert_eq!(after_rfc, after);

    // The CLI pages the same way, the cursor on stderr.
    let dir = tempfile::tempdir().unwrap();
    let admin_url = gw.admin_url("");
    let remote = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", OPERATOR),
    ];
    let first = cli(dir.path(), &remote, &["webhooks", "list", "--limit", "2"]).await;
    let firsts: Vec<i64> = first
        .lines()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(firsts, newest_first[..2]);
    let cursor = first
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("more: --cursor "))
        .unwrap_or_else(|| panic!("a cursor: {}", first.stderr))
        .to_string();
    let next = cli(
        dir.path(),
        &remote,
        &["webhooks", "list", "--limit", "2", "--cursor", &cursor],
    )
    .await;
    let nexts: Vec<i64> = next
        .lines()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(nexts, newest_first[2..]);
    let topic = cli(
        dir.path(),
        &remote,
        &[
            "webhooks",
            "list",
            "--topic",
            "products/update",
            "--since",
            "1h",
        ],
    )
    .await
    .lines();
    assert_eq!(topic.len(), 1);
    assert_eq!(topic[0]["id"], sent[1]);

    // What the list refuses.
    for bad in [
        "/admin/v1/webhooks?status=lost",
        "/admin/v1/webhooks?cursor=abc",
        "/admin/v1/webhooks?after=yesterday",
        "/admin/v1/webhooks?limit=x",
    ] {
        let (status, err) = get(&gw, bad, OPERATOR).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    gw.stop().await;
}

/// A webhook that fails, then succeeds once its route is fixed: each
/// attempt with the route and transform it ran and its error, the dead
/// letter resolved, the event it became.
#[tokio::test]
async fn a_webhooks_life_shows_a_failed_attempt_then_its_success() {
    let gw = gateway(Options::default()).await;
    let conn = gw.connect("life.myshopify.com").await;
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    gw.route_brand(&conn, "*", &hostile, "{}").await;
    let route_id = gw.store().routes().await.unwrap()[0].id;
    let (inbox_id, delivery) = send(&gw, &conn, "hostile/trap", br#"{"id":7}"#).await;
    gw.settle().await;

    let dead = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}")).await;
    assert_eq!(dead["webhook"]["status"], "dead", "{dead}");
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{dead}");
    assert_eq!(attempts[0]["outcome"], "dead");
    assert_eq!(attempts[0]["reason_code"], "trap");
    assert!(!attempts[0]["error"].as_str().unwrap().is_empty());
    assert_eq!(attempts[0]["route_id"], route_id);
    assert_eq!(attempts[0]["transform"], "hostile");
    assert_eq!(attempts[0]["transform_digest"], hostile.as_str());
    let letter = &dead["dead_letter"];
    assert_eq!(letter["reason_code"], "trap", "{dead}");
    assert_eq!(letter["transform_digest"], hostile.as_str());
    assert!(letter.get("resolved_at").is_none());
    assert!(dead["events"].as_array().unwrap().is_empty());
    assert!(dead["finished_at"].is_i64());
    // Found among the dead, and by its delivery id.
    let page = ok(&gw, "/admin/v1/webhooks?status=dead").await;
    assert_eq!(ids(&page), vec![inbox_id]);

    // Fixed: the brand's route now names the default transform.
    gw.route_brand(&conn, "*", "builtin:shopify-default", "{}")
        .await;
    let (status, replayed) = ionflux_tests::admin_json(
        &gw,
        Method::POST,
        "/admin/v1/dead-letters/replay",
        Some(OPERATOR),
        Some(json!({"ids": [letter["id"]]})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    gw.settle().await;

    let life = ok(&gw, &format!("/admin/v1/webhooks?delivery_id={delivery}")).await;
    assert_eq!(life["webhooks"][0]["status"], "published", "{life}");
    assert_eq!(life["webhooks"][0]["attempts"], 2);
    let life = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}")).await;
    let attempts = life["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{life}");
    assert_eq!(
        (
            attempts[0]["attempt"].as_i64(),
            attempts[0]["outcome"].as_str()
        ),
        (Some(1), Some("dead"))
    );
    assert_eq!(
        (
            attempts[1]["attempt"].as_i64(),
            attempts[1]["outcome"].as_str()
        ),
        (Some(2), Some("published"))
    );
    assert_eq!(attempts[1]["transform"], "shopify-default");
    assert_eq!(attempts[1]["route_id"], route_id, "the same route, changed");
    assert!(attempts[1].get("error").is_none());
    assert!(life["dead_letter"]["resolved_at"].is_i64(), "{life}");
    assert!(life["dead_letter"]["replayed_at"].is_i64(), "{life}");
    let events = life["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let logged = gw.logged_events().await;
    assert_eq!(logged.len(), 1);
    assert_eq!(events[0]["event_id"], logged[0]["event_id"]);
    gw.stop().await;
}

/// A transient failure (the sink down) gives the row back: the attempt is
/// kept as a retry with the error, beside the row's due time.
#[tokio::test]
async fn a_retry_keeps_its_error_until_the_webhook_is_published() {
    let gw = gateway(Options {
        dispatch: Some(false),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("retry.myshopify.com").await;
    let (inbox_id, _) = send(&gw, &conn, "orders/create", br#"{"id":1}"#).await;
    let store = gw.store();
    let tried = Tried {
        route_id: None,
        transform: Some("shopify-default".into()),
        transform_digest: Some("d".repeat(64)),
    };
    // As the dispatcher does with a sink that failed for now.
    let rows = store
        .claim("test", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let due = ionflux_gateway::store::now_ms();
    let error = format!("broker down {}", "x".repeat(5000));
    store
        .release(&[(&rows[0], Some(&tried))], due, &error)
        .await
        .unwrap();
    let life = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}")).await;
    assert_eq!(life["webhook"]["status"], "pending");
    assert_eq!(life["next_attempt_at"], due);
    assert_eq!(life["last_error"], error.as_str());
    let attempts = life["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{life}");
    assert_eq!(attempts[0]["outcome"], "retry");
    assert_eq!(attempts[0]["reason_code"], "transient");
    let kept = attempts[0]["error"].as_str().unwrap();
    assert!(error.starts_with(kept), "{kept}");
    assert_eq!(kept.len(), ionflux_gateway::store::ATTEMPT_ERROR_MAX);
    assert_eq!(attempts[0]["transform"], "shopify-default");

    // The next attempt publishes it.
    let rows = store
        .claim("test", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    store
        .finish_tried(&[(&rows[0], Outcome::Published(Vec::new()))], &[tried])
        .await
        .unwrap();
    let life = ok(&gw, &format!("/admin/v1/webhooks/{inbox_id}")).await;
    assert_eq!(life["webhook"]["status"], "published");
    assert!(life.get("next_attempt_at").is_none());
    let outcomes: Vec<&str> = life["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "published"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_workspace_finds_only_its_own_webhooks() {
    let gw = gateway(Options::default()).await;
    let mine = gw.connect("mine.myshopify.com").await;
    let theirs = gw.connect("theirs.myshopify.com").await;
    // A second shop of the same workspace (another brand).
    let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
    let also_mine = Conn {
        created: ionflux_gateway::providers::shopify::add_connection(
            gw.store(),
            &gw.vault,
            "also-mine.myshopify.com",
            &mine.created.workspace_id,
            &uuid::Uuid::new_v4().to_string(),
            &ionflux_gateway::support::vault::Secret::from(secret.clone()),
        )
        .await
        .unwrap(),
        secret,
    };
    let (my_id, my_delivery) = send(&gw, &mine, "orders/create", br#"{"id":1}"#).await;
    let (their_id, their_delivery) = send(&gw, &theirs, "orders/create", br#"{"id":2}"#).await;
    let (also_id, _) = send(&gw, &also_mine, "orders/create", br#"{"id":3}"#).await;
    let (my_later, _) = send(&gw, &mine, "products/update", br#"{"id":4}"#).await;
    gw.settle().await;
    let token =
        ionflux_tests::workspace_token(gw.store(), &mine.created.workspace_id, "mine").await;

    // Its connections' webhooks, merged newest first, page by page.
    let mut seen = Vec::new();
    let mut path = "/admin/v1/webhooks?limit=1".to_string();
    loop {
        let (status, page) = get(&gw, &path, &token).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/v1/webhooks?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![my_later, also_id, my_id]);
    let (_, page) = get(&gw, "/admin/v1/webhooks?topic=orders/create", &token).await;
    assert_eq!(ids(&page), vec![also_id, my_id]);
    let (_, page) = get(
        &gw,
        &format!("/admin/v1/webhooks?delivery_id={my_delivery}"),
        &token,
    )
    .await;
    assert_eq!(ids(&page), vec![my_id]);
    for path in [
        format!("/admin/v1/webhooks?delivery_id={their_delivery}"),
        format!(
            "/admin/v1/webhooks?connection_id={}",
            theirs.created.connection_id
        ),
    ] {
        let (status, page) = get(&gw, &path, &token).await;
        assert_eq!(status, 200);
        assert!(ids(&page).is_empty(), "{path}: {page}");
    }
    let (status, _) = get(
        &gw,
        &format!("/admin/v1/webhooks/{my_id}?body=true"),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let (status, err) = get(
        &gw,
        &format!("/admin/v1/webhooks/{their_id}?body=true"),
        &token,
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    assert!(!err.to_string().contains("\"id\":2"), "{err}");
    let (status, err) = get(&gw, "/admin/v1/webhooks/999999", &token).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_webhook"))
    );

    // The same through the CLI with the workspace's token.
    let dir = tempfile::tempdir().unwrap();
    let admin_url = gw.admin_url("");
    let remote = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", token.as_str()),
    ];
    let lines = cli(dir.path(), &remote, &["webhooks", "list"])
        .await
        .lines();
    let listed: Vec<i64> = lines.iter().map(|w| w["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, vec![my_later, also_id, my_id]);
    let id = their_id.to_string();
    let refused = cli(dir.path(), &remote, &["webhooks", "show", &id]).await;
    assert!(!refused.ok);
    assert!(refused.stderr.contains("forbidden"), "{}", refused.stderr);
    gw.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_by_reason_and_time() {
    let gw = gateway(Options::default()).await;
    let conn = gw.connect("reasons.myshopify.com").await;
    let other = gw.connect("reasons-other.myshopify.com").await;
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    gw.route_brand(&conn, "*", &hostile, "{}").await;
    gw.route_brand(&other, "*", &hostile, "{}").await;
    let (trap, _) = send(&gw, &conn, "hostile/trap", b"{}").await;
    let (badkind, _) = send(&gw, &conn, "hostile/badkind", b"{}").await;
    let (their_trap, _) = send(&gw, &other, "hostile/trap", b"{}").await;
    gw.settle().await;

    let all = ok(&gw, "/admin/v1/dead-letters").await;
    let letters = all["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "{all}");
    let reason_of = |inbox: i64| {
        letters.iter().find(|l| l["inbox_id"] == inbox).unwrap()["reason_code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason_of(trap), "trap");
    let other_reason = reason_of(badkind);
    assert_ne!(other_reason, "trap");
    let inboxes = |page: &Value| -> Vec<i64> {
        let mut v: Vec<i64> = page["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["inbox_id"].as_i64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        inboxes(&ok(&gw, "/admin/v1/dead-letters?reason=trap").await),
        vec![trap, their_trap]
    );
    let created = letters[0]["created_at"].as_i64().unwrap();
    let newest = letters
        .iter()
        .map(|l| l["created_at"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        inboxes(
            &ok(
                &gw,
                &format!(
                    "/admin/v1/dead-letters?after={created}&before={}",
                    newest + 1
                )
            )
            .await
        )
        .len(),
        3
    );
    assert!(
        inboxes(&ok(&gw, &format!("/admin/v1/dead-letters?after={}", newest + 1)).await).is_empty()
    );
    let (status, err) = get(&gw, "/admin/v1/dead-letters?before=someday", OPERATOR).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));

    // A workspace's filtered list and replay are its own.
    let token =
        ionflux_tests::workspace_token(gw.store(), &conn.created.workspace_id, "reasons").await;
    let (_, page) = get(&gw, "/admin/v1/dead-letters?reason=trap", &token).await;
    assert_eq!(inboxes(&page), vec![trap]);
    let replay = |token: String, body: Value| {
        let gw = &gw;
        async move {
            ionflux_tests::admin_json(
                gw,
                Method::POST,
                "/admin/v1/dead-letters/replay",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (status, err) = replay(token.clone(), json!({})).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    let (status, err) = replay(token.clone(), json!({"reason": "trap", "since": "soon"})).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    // Nothing dead-lettered from now on: nothing replayed.
    let later = ionflux_gateway::store::now_ms() + 60_000;
    let (status, answer) = replay(
        token.clone(),
        json!({"all": true, "since": later.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replayed"], json!([]));
    // A reason alone selects; the other workspace's trap stays.
    let (status, answer) = replay(token.clone(), json!({"reason": "trap"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replayed"].as_array().unwrap().len(), 1, "{answer}");
    gw.settle().await;
    // Replayed under the same hostile route: dead again, the others untouched.
    let life = ok(&gw, &format!("/admin/v1/webhooks/{trap}")).await;
    assert_eq!(life["attempts"].as_array().unwrap().len(), 2, "{life}");
    for untouched in [badkind, their_trap] {
        let life = ok(&gw, &format!("/admin/v1/webhooks/{untouched}")).await;
        assert_eq!(life["attempts"].as_array().unwrap().len(), 1, "{life}");
    }

    // The CLI's filters, on the database here.
    let dir = tempfile::tempdir().unwrap();
    let local = [("IONFLUX_DATABASE_URL", gw.database_url.as_str())];
    let lines = cli(
        dir.path(),
        &local,
        &["dead-letters", "list", "--json", "--reason", &other_reason],
    )
    .await
    .lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["inbox_id"], badkind);
    let none = cli(
        dir.path(),
        &local,
        &[
            "dead-letters",
            "list",
            "--json",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await
    .lines();
    assert!(none.is_empty());
    let refused = cli(dir.path(), &local, &["dead-letters", "replay"]).await;
    assert!(!refused.ok);
    gw.stop().await;
}

/// With Kafka as the sink and the broker down, the dispatcher's own
/// retries are on record with the sink's error; once the broker is back,
/// the published attempt follows, and the events' ids and offsets are the
/// records' on the topic.
#[tokio::test]
async fn a_webhook_waiting_for_kafka_shows_its_retries_then_its_records() {
    // Part of the real-broker suite: only where tansu is available.
    if kafka_brokers().is_none() {
        return;
    }
    let broker = OwnBroker::reserve();
    let topics = test_topics();
    let gw = gateway(Options {
        kafka: Some(broker.brokers()),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("kafka-down.myshopify.com").await;
    let (inbox_id, delivery) = send(&gw, &conn, "orders/create", br#"{"id":1}"#).await;
    let path = format!("/admin/v1/webhooks/{inbox_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let life = ok(&gw, &path).await;
        if life["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            break life;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt: {life}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(waiting["webhook"]["status"], "pending", "{waiting}");
    let retry = &waiting["attempts"][0];
    assert_eq!(retry["outcome"], "retry", "{waiting}");
    assert_eq!(retry["reason_code"], "transient");
    assert!(!retry["error"].as_str().unwrap().is_empty());
    assert_eq!(retry["transform"], "shopify-default");
    assert!(waiting["last_error"].is_string(), "{waiting}");
    assert!(waiting["next_attempt_at"].is_i64(), "{waiting}");

    broker.start();
    gw.settle().await;
    let life = ok(&gw, &path).await;
    assert_eq!(life["webhook"]["status"], "published", "{life}");
    let attempts = life["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"published"), "{life}");
    assert!(outcomes[..outcomes.len() - 1].iter().all(|o| *o == "retry"));
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let topic = topics
        .events
        .replace("{workspace_id}", &conn.created.workspace_id);
    let records = consume(&broker.brokers(), &topic, 1).await;
    assert_eq!(
        records[0].value["metadata"]["webhook_id"],
        delivery.as_str()
    );
    let events = life["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{life}");
    assert_eq!(events[0]["event_id"], records[0].value["event_id"]);
    assert_eq!(events[0]["topic"], topic.as_str());
    gw.stop().await;
}
