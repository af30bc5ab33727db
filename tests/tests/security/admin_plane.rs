//! Boundary: "anyone else" may reach the public listener (webhooks, the
//! OAuth callback, shop details) and never the admin API or `/metrics`.
//!
//! The attacks: a stranger calls the admin API on the port that takes
//! webhooks; a caller with no token calls it from loopback (behind a reverse
//! proxy or a tunnel, every internet caller arrives from 127.0.0.1); a
//! stranger reads `/ready`'s error text; a workspace replays another
//! workspace's dead letters.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::api::admin;
use ionflux_tests::{
    Gateway, Hook, Options, admin_json, free_loopback_addr, gateway_bin, hostile_wasm,
    workspace_token,
};
use reqwest::Method;
use serde_json::{Value, json};

/// One request of each admin endpoint family, and the metrics.
fn admin_paths() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/admin/v1/events", None),
        (Method::GET, "/admin/v1/openapi.json", None),
        (Method::GET, "/admin/v1/transforms", None),
        (Method::POST, "/admin/v1/transforms", None),
        (Method::GET, "/admin/v1/routes", None),
        (
            Method::PUT,
            "/admin/v1/routes",
            Some(json!({"topic_pattern": "*", "transform": "builtin:redact-pii"})),
        ),
        (Method::GET, "/admin/v1/dead-letters", None),
        (
            Method::POST,
            "/admin/v1/dead-letters/replay",
            Some(json!({"all": true})),
        ),
        (
            Method::POST,
            "/admin/v1/webhooks/1/dry-run",
            Some(json!({})),
        ),
        (Method::GET, "/admin/v1/connections/x/webhooks", None),
        (Method::GET, "/metrics", None),
    ]
}

async fn call(
    client: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_public_listener_serves_no_admin_route_and_no_metrics() {
    let gw = Gateway::start(Options::default()).await;
    let operator = gw.operator_token.clone().expect("a bootstrap token");
    for (method, path, body) in admin_paths() {
        // Even the operator's own token opens nothing on the public port:
        // the routes are not there at all.
        for token in [None, Some(operator.as_str())] {
            let (status, answer) = call(
                &gw.client,
                method.clone(),
                gw.url(path),
                token,
                body.clone(),
            )
            .await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path} on the public listener"
            );
        }
    }
    // What the public listener is for still works there.
    assert_eq!(
        call(&gw.client, Method::GET, gw.url("/health"), None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&gw.client, Method::GET, gw.url("/ready"), None, None)
            .await
            .0,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_caller_is_an_operator_without_a_token_not_even_from_loopback() {
    // The reproduced attack: no tokens configured, and `GET
    // /admin/v1/events` from 127.0.0.1 with no Authorization answered 200.
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("anon-shop.myshopify.com").await;
    let (status, _) = gw
        .send(&Hook::shopify(
            &conn,
            "orders/create",
            "2025-10",
            br#"{"id":1}"#,
        ))
        .await;
    assert_eq!(status, 200);
    gw.settle().await;
    for (method, path, body) in admin_paths() {
        if path == "/admin/v1/openapi.json" || path == "/metrics" {
            continue; // public documents on the admin listener, no data
        }
        let (status, answer) =
            call(&gw.client, method.clone(), gw.admin_url(path), None, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("unauthorized")),
            "{method} {path} without a token, from loopback"
        );
    }
    // The bootstrap token is an operator's.
    let token = gw.operator_token.clone().unwrap();
    let (status, page) = admin_json(&gw, Method::GET, "/admin/v1/events", Some(&token), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_bootstrap_token_is_made_only_when_no_operator_can_sign_in() {
    // A configured operator token: nothing is made.
    let gw = Gateway::start(Options {
        admin_token: Some("configured".into()),
        ..Options::default()
    })
    .await;
    assert!(gw.running.bootstrap_token.is_none());
    assert!(admin::list_tokens(gw.store()).await.unwrap().is_empty());
    gw.stop().await;

    // None configured: one is made, once; a restart on the same database
    // finds it and makes no other.
    let db = ionflux_tests::fresh_database().await;
    let first = Gateway::start(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    assert!(first.running.bootstrap_token.is_some());
    first.stop().await;
    let again = Gateway::start(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    assert!(again.running.bootstrap_token.is_none());
    let tokens = admin::list_tokens(again.store()).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].kind, "operator");

    // Once it is revoked and no other operator token lives, the next start
    // makes a new one: whoever can start the gateway is its operator anyway.
    assert!(
        admin::revoke_token(again.store(), &tokens[0].id)
            .await
            .unwrap()
    );
    again.stop().await;
    let third = Gateway::start(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    assert!(third.running.bootstrap_token.is_some());
    third.stop().await;
}

/// Kills the gateway if the test fails before it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_on_a_fresh_machine_prints_a_bootstrap_token_and_keeps_admin_off_the_public_port() {
    let dir = tempfile::tempdir().unwrap();
    let (public, admin_at) = (free_loopback_addr(), free_loopback_addr());
    let mut child = Command::new(gateway_bin())
        .arg("serve")
        .env_clear()
        .env(
            "IONFLUX_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gateway.db").display()),
        )
        .env("IONFLUX_LISTEN", public.to_string())
        .env("IONFLUX_ADMIN_LISTEN", admin_at.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ionflux-gateway serve");
    let stderr = child.stderr.take().unwrap();
    let serving = Serving(child);

    // The token is printed once on stderr, on a line of its own.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(token) = line.trim().strip_prefix(admin::TOKEN_PREFIX) {
                let _ = tx.send(Ok(format!("{}{token}", admin::TOKEN_PREFIX)));
            }
        }
        let _ = tx.send(Err(seen));
    });
    let token = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(token)) => token,
        Ok(Err(seen)) => panic!("no bootstrap token printed:\n{seen}"),
        Err(e) => panic!("no bootstrap token printed: {e}"),
    };

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(
        &client,
        Method::GET,
        format!("http://{public}/health"),
        None,
        None,
    )
    .await
    .0 != 200
    {
        assert!(Instant::now() < deadline, "the gateway did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/admin/v1/events", "/metrics", "/admin/v1/openapi.json"] {
        let (status, _) = call(
            &client,
            Method::GET,
            format!("http://{public}{path}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 404, "{path} on the public port");
    }
    let events = format!("http://{admin_at}/admin/v1/events");
    assert_eq!(
        call(&client, Method::GET, events.clone(), None, None)
            .await
            .0,
        401
    );
    let (status, page) = call(&client, Method::GET, events, Some(&token), None).await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = call(
        &client,
        Method::GET,
        format!("http://{admin_at}/metrics"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    drop(serving);
}

#[tokio::test]
async fn ready_tells_a_stranger_nothing_about_the_failure() {
    let gw = Gateway::start(Options::default()).await;
    assert_eq!(
        call(&gw.client, Method::GET, gw.url("/ready"), None, None)
            .await
            .0,
        200
    );
    gw.store().close().await;
    let (status, answer) = call(&gw.client, Method::GET, gw.url("/ready"), None, None).await;
    assert_eq!(status, 503);
    assert_eq!(
        answer,
        json!({"code": "store_unavailable", "message": "the store is not reachable"}),
        "only fixed words; the database's own error goes to the log"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_workspace_cannot_replay_another_workspaces_dead_letters() {
    let gw = Gateway::start(Options {
        admin_token: Some("operator".into()),
        ..Options::default()
    })
    .await;
    let (a, b) = (
        gw.connect("replay-a.myshopify.com").await,
        gw.connect("replay-b.myshopify.com").await,
    );
    // Both brands' webhooks dead-letter: the hostile guest traps on this
    // topic.
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    for conn in [&a, &b] {
        gw.route_brand(conn, "*", &hostile, "{}").await;
        let (status, body) = gw
            .send(&Hook::shopify(
                conn,
                "hostile/trap",
                "2025-10",
                br#"{"id":1}"#,
            ))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    gw.settle().await;
    let letters = gw.store().dead_letters(100).await.unwrap();
    assert_eq!(
        letters.len(),
        2,
        "both webhooks are dead letters: {letters:?}"
    );
    let of = |conn: &ionflux_tests::Conn| {
        letters
            .iter()
            .find(|d| d.workspace_id == conn.created.workspace_id)
            .unwrap()
            .id
    };
    let (a_letter, b_letter) = (of(&a), of(&b));
    let ta = workspace_token(gw.store(), &a.created.workspace_id, "team-a").await;

    // B's letter, alone or hidden among A's own: refused, nothing replayed.
    for ids in [vec![b_letter], vec![a_letter, b_letter]] {
        let (status, answer) = admin_json(
            &gw,
            Method::POST,
            "/admin/v1/dead-letters/replay",
            Some(&ta),
            Some(json!({ "ids": ids })),
        )
        .await;
        assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));
    }
    // The check is the replay's own: the store refuses it too.
    let outcome = gw
        .store()
        .replay_dead_letters(Some(&[b_letter]), Some(&a.created.workspace_id))
        .await
        .unwrap();
    assert_eq!(
        (outcome.replayed, outcome.foreign),
        (vec![], vec![b_letter])
    );
    // `all` from A means A's only.
    let (status, answer) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/dead-letters/replay",
        Some(&ta),
        Some(json!({ "all": true })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replayed"], json!([a_letter]));
    let letters = gw.store().dead_letters(100).await.unwrap();
    let b_row = letters.iter().find(|d| d.id == b_letter).unwrap();
    assert_eq!(b_row.replayed_at, None, "B's letter was never replayed");
    gw.stop().await;
}
