//! Retention and privacy (issue 19 §3): what the pruner removes and when,
//! the dedup floor, `prune --dry-run`, the rows-pruned metric, a steady
//! database under a long run with tiny windows, and the `customers/redact`
//! and `shop/redact` purges. On SQLite, and on PostgreSQL with
//! `IONFLUX_TEST_POSTGRES`.
//!
//! Time is never waited for: the pruner is run at a chosen "now" in the
//! future (`prune_once(store, cfg, now)`), so each window is crossed by
//! arithmetic, not by sleeping.

use ionflux_tests::Run;
use std::path::Path;
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::prune::{self, RetentionConfig};
use ionflux_gateway::store::now_ms;
use ionflux_gateway::store::retention::Pruned;
use ionflux_tests::{Conn, Gateway, Hook, Options, PATIENCE, hostile_wasm};
use serde_json::Value;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

async fn send(gw: &Gateway, conn: &Conn, topic: &str, body: &[u8]) -> (i64, Hook<'static>) {
    let hook = Hook::shopify(conn, topic, "2024-01", body);
    let (status, answer) = gw.send(&hook).await;
    assert_eq!(status, 200, "{answer}");
    (answer["inbox_id"].as_i64().unwrap(), hook)
}

fn windows() -> RetentionConfig {
    RetentionConfig {
        inbox: Some(Duration::from_secs(3600)),
        inbox_bodies: Some(Duration::from_secs(600)),
        dedup_window: Duration::from_secs(2 * 3600),
        events: Some(Duration::from_secs(3600)),
        dead_letters: Some(Duration::from_secs(24 * 3600)),
        resolved_dead_letters: Some(Duration::from_secs(3600)),
        batch_size: 3,
        ..RetentionConfig::keep_everything()
    }
}

async fn sizes(gw: &Gateway) -> std::collections::HashMap<&'static str, i64> {
    gw.store()
        .table_sizes()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// `ionflux_rows_pruned_total{table}` now (shared by every test of this
/// process, so only ever compared as a lower bound).
fn pruned_metric(table: &str) -> f64 {
    let text = ionflux_gateway::support::metrics::render().unwrap();
    let series = format!("ionflux_rows_pruned_total{{table=\"{table}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Marks a lifecycle webhook's effect as not applied yet.
async fn effect_due_again(gw: &Gateway, inbox_id: i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&gw.database_url).await.unwrap();
    sqlx::query("UPDATE inbox SET lifecycle_applied_at = NULL WHERE id = $1")
        .bind(inbox_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Each window in turn, with the dedup floor: bodies go first, a replay
/// inside the dedup window is still a duplicate once its body is gone,
/// events go at theirs, rows only past the floor, dead letters at theirs,
/// and a pending webhook is never touched. The metric counts every row.
#[tokio::test]
async fn pruning_keeps_each_window_the_dedup_floor_and_pending_rows() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("prune.myshopify.com").await;
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    gw.route_brand(&conn, "hostile/*", &hostile, "{}").await;
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(
            send(
                &gw,
                &conn,
                "orders/create",
                format!(r#"{{"id":{i}}}"#).as_bytes(),
            )
            .await,
        );
    }
    let (dead, _) = send(&gw, &conn, "hostile/trap", br#"{"id":99}"#).await;
    let (lifecycle, _) = send(&gw, &conn, "customers/data_request", br#"{"id":1}"#).await;
    gw.settle().await;
    // As if the gateway had crashed between its publish and its effect.
    effect_due_again(&gw, lifecycle).await;
    // A paused connection's webhook stays pending however old.
    let held = gw.connect("held.myshopify.com").await;
    gw.store()
        .set_connection_paused(&held.created.connection_id, true, "test")
        .await
        .unwrap();
    let (pending, _) = send(&gw, &held, "orders/create", br#"{"id":1}"#).await;
    let before = sizes(&gw).await;
    assert_eq!(before["inbox"], 8);
    assert_eq!(before["events"], 6, "a dead letter is no event-log record");
    assert_eq!(before["dead_letters"], 1);
    let metric_before = pruned_metric("inbox");

    let cfg = windows();
    let now = now_ms();
    // 20 minutes on: only bodies are past their window.
    let p = prune::prune_once(gw.store(), &cfg, now + 20 * MIN)
        .await
        .unwrap();
    assert_eq!(
        p,
        Pruned {
            inbox_bodies: 5,
            ..Pruned::default()
        }
    );
    let (body, headers) = gw
        .store()
        .inbox_body(published[0].0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((body.as_slice(), headers.as_str()), (&b"{}"[..], "[]"));
    let (body, _) = gw.store().inbox_body(dead).await.unwrap().unwrap();
    assert_eq!(
        body, br#"{"id":99}"#,
        "a dead letter keeps its body for replay"
    );
    // The platform retries: still a duplicate, its body gone.
    let (status, answer) = gw.send(&published[0].1).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );

    // 90 minutes: events are past theirs; rows are past `inbox` but not
    // past the dedup floor.
    let p = prune::prune_once(gw.store(), &cfg, now + 90 * MIN)
        .await
        .unwrap();
    assert_eq!(
        p,
        Pruned {
            events: 6,
            ..Pruned::default()
        }
    );
    let (status, answer) = gw.send(&published[1].1).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );

    // 3 hours: past the floor, published rows and their attempts go; the
    // dead letter (a day) and the pending row stay.
    let p = prune::prune_once(gw.store(), &cfg, now + 3 * HOUR)
        .await
        .unwrap();
    assert_eq!(
        (p.inbox, p.inbox_attempts, p.dead_letters),
        (5, 5, 0),
        "{p:?}"
    );
    let s = sizes(&gw).await;
    assert_eq!(
        (s["inbox"], s["dead_letters"]),
        (3, 1),
        "pending, dead, effect due"
    );

    // Two days: the dead letter goes with its webhook and attempt.
    let p = prune::prune_once(gw.store(), &cfg, now + 48 * HOUR)
        .await
        .unwrap();
    assert_eq!(
        (p.inbox, p.inbox_attempts, p.dead_letters),
        (1, 1, 1),
        "{p:?}"
    );
    // A year: the paused connection's webhook is still there, pending.
    let p = prune::prune_once(gw.store(), &cfg, now + 365 * 24 * HOUR)
        .await
        .unwrap();
    assert_eq!(p.total(), 0, "{p:?}");
    let s = sizes(&gw).await;
    assert_eq!(
        s["inbox"], 2,
        "the pending webhook and the lifecycle one whose effect is due"
    );
    let (body, _) = gw.store().inbox_body(lifecycle).await.unwrap().unwrap();
    assert_eq!(body, br#"{"id":1}"#, "its body too");
    // Once applied, it goes like any other.
    ionflux_gateway::providers::shopify::lifecycle::apply_due(gw.store())
        .await
        .unwrap();
    let p = prune::prune_once(gw.store(), &cfg, now + 365 * 24 * HOUR)
        .await
        .unwrap();
    assert_eq!((p.inbox, p.inbox_attempts), (1, 1), "{p:?}");
    let s = sizes(&gw).await;
    assert_eq!(
        (
            s["inbox"],
            s["inbox_attempts"],
            s["events"],
            s["dead_letters"]
        ),
        (1, 0, 0, 0)
    );
    assert!(gw.store().inbox_row(pending).await.unwrap().is_some());
    assert!(pruned_metric("inbox") >= metric_before + 6.0);
    gw.stop().await;
}

async fn cli(dir: &Path, database_url: &str, args: &[&str]) -> Run {
    ionflux_tests::run_cli(Some(dir), args, &[("IONFLUX_DATABASE_URL", database_url)]).await
}

/// `prune --dry-run` counts per table and deletes nothing; `prune` then
/// deletes what it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_dry_run_counts_without_deleting() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("dry.myshopify.com").await;
    for i in 0..4 {
        send(
            &gw,
            &conn,
            "orders/create",
            format!(r#"{{"id":{i}}}"#).as_bytes(),
        )
        .await;
    }
    gw.settle().await;
    // Finished "in the past" by the windows' standard: 1 ms, no floor.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let windows = [
        "--retention-inbox",
        "1ms",
        "--retention-dedup-window",
        "0s",
        "--retention-events",
        "1ms",
        "--retention-inbox-bodies",
        "off",
    ];
    let run = |dry: bool| {
        let mut args = vec!["prune"];
        if dry {
            args.push("--dry-run");
        }
        args.extend(windows);
        let (dir, url) = (dir.path().to_owned(), gw.database_url.clone());
        async move { cli(&dir, &url, &args).await }
    };
    let out = run(true).await;
    assert!(out.ok, "{}", out.stderr);
    let counted: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(counted["dry_run"], true);
    let rows = &counted["rows"];
    assert_eq!(
        (rows["inbox"].as_i64(), rows["events"].as_i64()),
        (Some(4), Some(4)),
        "{counted}"
    );
    assert_eq!(rows["inbox_attempts"], 4);
    assert_eq!(rows["inbox_bodies"], 0);
    let s = sizes(&gw).await;
    assert_eq!(
        (s["inbox"], s["events"], s["inbox_attempts"]),
        (4, 4, 4),
        "nothing deleted"
    );

    let out = run(false).await;
    assert!(out.ok, "{}", out.stderr);
    let done: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(done["rows"], *rows, "it deletes what the dry run counted");
    let s = sizes(&gw).await;
    assert_eq!((s["inbox"], s["events"], s["inbox_attempts"]), (0, 0, 0));
    gw.stop().await;
}

/// The steady-size step: many webhooks with tiny windows and the server's
/// own pruner running; the tables stay bounded by what one window holds,
/// not by what was sent. Rows are counted, never time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_database_at_a_steady_size() {
    let gw = Gateway::start(Options {
        retention: Some(RetentionConfig {
            inbox: Some(Duration::from_millis(1)),
            inbox_bodies: Some(Duration::from_millis(1)),
            dedup_window: Duration::ZERO,
            events: Some(Duration::from_millis(1)),
            interval: Duration::from_millis(50),
            batch_size: 50,
            ..RetentionConfig::keep_everything()
        }),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("steady.myshopify.com").await;
    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 50;
    let mut largest = 0;
    let mut pages = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let body = format!(r#"{{"id":{}}}"#, round * PER_ROUND + i);
            send(&gw, &conn, "orders/create", body.as_bytes()).await;
        }
        gw.settle().await;
        let s = sizes(&gw).await;
        largest = largest.max(s["inbox"]).max(s["events"]);
        // The server's pruner empties what this round left.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = sizes(&gw).await;
            if s["inbox"] == 0 && s["events"] == 0 && s["inbox_attempts"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "not pruned: {s:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        pages.push(gw.store().sqlite_pages().await.unwrap());
    }
    assert!(
        largest <= PER_ROUND as i64,
        "{largest} rows at once, whatever was sent before"
    );
    // SQLite reuses the pages deletes free: the file stops growing once
    // one round's worth is allocated (the second half of the run adds at
    // most a little to what the first half needed).
    if let (Some(Some(half)), Some(Some(end))) = (pages.get(ROUNDS / 2 - 1), pages.last()) {
        assert!(end <= &(half + half / 4), "pages per round: {pages:?}");
    }
    gw.stop().await;
}

/// The Done-when step: a customer redacted is gone from the inbox (the
/// order named, and webhooks carrying the customer id), from the event
/// log (the records those produced) and from dead letters; others are
/// untouched, and an `integration.customer_redacted` event tells consumers.
#[tokio::test]
async fn customers_redact_purges_the_customer_from_inbox_event_log_and_dead_letters() {
    let gw = Gateway::start(Options {
        integration_events: true,
        ..Options::default()
    })
    .await;
    let conn = gw.connect("customers.myshopify.com").await;
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    gw.route_brand(&conn, "hostile/*", &hostile, "{}").await;
    let (named_order, _) = send(
        &gw,
        &conn,
        "orders/create",
        br#"{"id":100,"email":"gone@example.com","customer":{"id":7}}"#,
    )
    .await;
    let (their_order, _) = send(
        &gw,
        &conn,
        "orders/updated",
        br#"{"id":101,"email":"gone@example.com","customer":{"id":42}}"#,
    )
    .await;
    let (their_account, _) = send(
        &gw,
        &conn,
        "customers/update",
        br#"{"id":42,"email":"gone@example.com"}"#,
    )
    .await;
    let (their_letter, _) = send(&gw, &conn, "hostile/trap", br#"{"customer_id":42}"#).await;
    let (other, _) = send(
        &gw,
        &conn,
        "orders/create",
        br#"{"id":200,"email":"stays@example.com","customer":{"id":8}}"#,
    )
    .await;
    gw.settle().await;
    let mentions = |events: &[Value], needle: &str| {
        events
            .iter()
            .filter(|e| e.to_string().contains(needle))
            .count()
    };
    assert_eq!(mentions(&gw.logged_events().await, "gone@example.com"), 3);

    send(
        &gw,
        &conn,
        "customers/redact",
        br#"{"shop_id":1,"shop_domain":"customers.myshopify.com","customer":{"id":42,"email":"x@example.com"},"orders_to_redact":[100]}"#,
    )
    .await;
    gw.settle().await;
    let deadline = Instant::now() + PATIENCE;
    let redacted = loop {
        let events = gw.logged_events().await;
        let redacted: Vec<Value> = events
            .iter()
            .filter(|e| {
                e["event_type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(".integration.customer_redacted"))
            })
            .cloned()
            .collect();
        if !redacted.is_empty() {
            break redacted;
        }
        assert!(Instant::now() < deadline, "no customer_redacted event");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(redacted.len(), 1);
    let detail = &redacted[0]["payload_json"]["detail"];
    assert_eq!(detail["customer_id"], "42", "{}", redacted[0]);
    assert_eq!(detail["orders_to_redact"], serde_json::json!(["100"]));

    for id in [named_order, their_order, their_account, their_letter] {
        let (body, headers) = gw.store().inbox_body(id).await.unwrap().unwrap();
        assert_eq!(
            (body.as_slice(), headers.as_str()),
            (&b"{}"[..], "[]"),
            "row {id}"
        );
    }
    let (body, _) = gw.store().inbox_body(other).await.unwrap().unwrap();
    assert!(
        body.starts_with(br#"{"id":200"#),
        "another customer's webhook is kept"
    );
    let events = gw.logged_events().await;
    assert_eq!(
        mentions(&events, "gone@example.com"),
        0,
        "the event log forgot them"
    );
    assert_eq!(mentions(&events, "stays@example.com"), 1);
    let letters = gw.store().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "[redacted]");
    // The rows stay for dedup and the lookup.
    for id in [named_order, their_order, their_letter] {
        assert!(gw.store().inbox_row(id).await.unwrap().is_some());
    }
    gw.stop().await;
}

/// `shop/redact` also purges the event log: every record the shop's
/// webhooks produced becomes the tombstone, but the redaction's own event.
#[tokio::test]
async fn shop_redact_purges_the_event_log() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("shop-gone.myshopify.com").await;
    let bystander = gw.connect("stays.myshopify.com").await;
    for i in 0..3 {
        let body = format!(r#"{{"id":{i},"email":"shop-gone@example.com"}}"#);
        send(&gw, &conn, "orders/create", body.as_bytes()).await;
    }
    send(
        &gw,
        &bystander,
        "orders/create",
        br#"{"id":9,"email":"bystander@example.com"}"#,
    )
    .await;
    gw.settle().await;
    send(
        &gw,
        &conn,
        "shop/redact",
        br#"{"shop_id":1,"shop_domain":"shop-gone.myshopify.com"}"#,
    )
    .await;
    gw.settle().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = gw.logged_events().await;
        let left = events
            .iter()
            .filter(|e| e.to_string().contains("shop-gone@example.com"))
            .count();
        if left == 0 {
            assert!(
                events
                    .iter()
                    .any(|e| e.to_string().contains("bystander@example.com"))
            );
            assert!(
                events
                    .iter()
                    .any(|e| e["metadata"]["topic"] == "shop/redact"),
                "the redaction's own event is kept"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{left} events of the shop left");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tombstones = gw
        .store()
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.payload == "{}")
        .count();
    assert_eq!(tombstones, 3);
    gw.stop().await;
}
