//! The admin API over real HTTP: its OpenAPI document, who may do what
//! (operator, workspace and wrong tokens), uploads, routes that take effect,
//! replay, and dry runs that publish nothing.

use ionflux_gateway::admin::{self, TokenKind};
use ionflux_tests::{
    Conn, Gateway, Hook, Options, admin_json, admin_upload, broken_wasm, hostile_wasm, sha256_hex,
};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "configured-operator-token";

async fn gateway() -> Gateway {
    Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..Options::default()
    })
    .await
}

async fn workspace_token(gw: &Gateway, conn: &Conn, name: &str) -> String {
    let created = admin::create_token(
        gw.store(),
        TokenKind::Workspace,
        Some(&conn.created.workspace_id),
        name,
    )
    .await
    .unwrap();
    String::from_utf8(created.token.expose().to_vec()).unwrap()
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, Value) {
    admin_json(gw, Method::GET, path, token, None).await
}

/// Sends one webhook and waits until it is processed.
async fn deliver(gw: &Gateway, conn: &Conn, topic: &str) -> i64 {
    let (status, body) = gw
        .send(&Hook::shopify(conn, topic, "2024-01", br#"{"id":1}"#))
        .await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    body["inbox_id"].as_i64().unwrap()
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_every_path() {
    let gw = gateway().await;
    // No token: the document describes the API, not anyone's data.
    let (status, doc) = get(&gw, "/admin/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/admin/v1/openapi.json", &["get"][..]),
        ("/admin/v1/transforms", &["get", "post"]),
        ("/admin/v1/transforms/{reference}", &["get", "delete"]),
        (
            "/admin/v1/workspaces/{workspace_id}/ceilings",
            &["get", "put"],
        ),
        ("/admin/v1/routes", &["get", "put"]),
        ("/admin/v1/routes/promote", &["post"]),
        ("/admin/v1/routes/history", &["get"]),
        ("/admin/v1/dead-letters", &["get"]),
        ("/admin/v1/dead-letters/replay", &["post"]),
        ("/admin/v1/events", &["get"]),
        ("/admin/v1/webhooks/{inbox_id}/dry-run", &["post"]),
        ("/admin/v1/connections/{id}/webhooks", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path].get(*m).is_some(), "{m} {path} is documented");
        }
    }
    assert_eq!(paths.len(), 12, "every documented path is tested above");
    gw.stop().await;
}

/// One request of each endpoint family.
fn every_family() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/admin/v1/transforms", None),
        (Method::GET, "/admin/v1/transforms/builtin:redact-pii", None),
        (Method::GET, "/admin/v1/routes", None),
        (
            Method::PUT,
            "/admin/v1/routes",
            Some(json!({"topic_pattern": "*", "transform": "builtin:redact-pii"})),
        ),
        (
            Method::POST,
            "/admin/v1/routes/promote",
            Some(json!({"topic_pattern": "*"})),
        ),
        (Method::GET, "/admin/v1/routes/history", None),
        (Method::GET, "/admin/v1/dead-letters", None),
        (
            Method::POST,
            "/admin/v1/dead-letters/replay",
            Some(json!({"all": true})),
        ),
        (Method::GET, "/admin/v1/events", None),
        (
            Method::POST,
            "/admin/v1/webhooks/1/dry-run",
            Some(json!({})),
        ),
    ]
}

#[tokio::test]
async fn a_wrong_token_gets_401_on_every_endpoint() {
    let gw = gateway().await;
    let conn = gw.connect("auth-shop.myshopify.com").await;
    let revoked = admin::create_token(gw.store(), TokenKind::Operator, None, "gone")
        .await
        .unwrap();
    assert!(admin::revoke_token(gw.store(), &revoked.id).await.unwrap());
    let revoked = String::from_utf8(revoked.token.expose().to_vec()).unwrap();
    let live = workspace_token(&gw, &conn, "team").await;
    let last = if live.ends_with('A') { 'B' } else { 'A' };
    let near_miss = format!("{}{last}", &live[..live.len() - 1]);

    let wrong = [
        None,
        Some("nope"),
        Some("ifx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        Some(revoked.as_str()),
        Some(near_miss.as_str()),
        Some(&OPERATOR[1..]),
    ];
    for (method, path, body) in every_family() {
        for token in wrong {
            let (status, err) = admin_json(&gw, method.clone(), path, token, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {err}");
            assert_eq!(err["code"], "unauthorized");
        }
    }
    let (status, err) = admin_upload(&gw, "x", Some("nope"), hostile_wasm()).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("unauthorized")));
    assert!(gw.store().transforms().await.unwrap().is_empty());

    // The configured token and a stored operator token both work.
    let stored = admin::create_token(gw.store(), TokenKind::Operator, None, "ops")
        .await
        .unwrap();
    let stored = String::from_utf8(stored.token.expose().to_vec()).unwrap();
    assert!(
        stored.starts_with("ifx_") && stored.len() == 4 + 43,
        "{}",
        stored.len()
    );
    for token in [OPERATOR, stored.as_str()] {
        assert_eq!(get(&gw, "/admin/v1/routes", Some(token)).await.0, 200);
    }
    // Only the hash is kept.
    let rows = admin::list_tokens(gw.store()).await.unwrap();
    assert_eq!(rows.len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn workspace_tokens_touch_only_their_own_workspace() {
    let gw = gateway().await;
    let a = gw.connect("team-a.myshopify.com").await;
    let b = gw.connect("team-b.myshopify.com").await;
    let (ws_a, ws_b) = (&a.created.workspace_id, &b.created.workspace_id);
    let ta = workspace_token(&gw, &a, "team-a").await;
    let tb = workspace_token(&gw, &b, "team-b").await;
    let (ta, tb) = (Some(ta.as_str()), Some(tb.as_str()));

    // A uploads the hostile guest and routes its workspace to it; B's
    // workspace is routed to the same bytes by an operator.
    let (status, pushed) = admin_upload(&gw, "hostile", ta, hostile_wasm()).await;
    assert_eq!(status, 200, "{pushed}");
    let digest = pushed["digest"].as_str().unwrap().to_string();
    let (status, route) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        ta,
        Some(json!({"topic_pattern": "*", "transform": &digest[..12]})),
    )
    .await;
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["workspace_id"], *ws_a, "defaults to the token's own");
    assert_eq!(route["transform"], digest);
    let (status, _) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(OPERATOR),
        Some(json!({"workspace_id": ws_b, "topic_pattern": "*", "transform": digest})),
    )
    .await;
    assert_eq!(status, 200);

    let a_trap = deliver(&gw, &a, "hostile/trap").await;
    let b_trap = deliver(&gw, &b, "hostile/trap").await;
    let a_ok = deliver(&gw, &a, "orders/create").await;
    let b_ok = deliver(&gw, &b, "orders/create").await;

    // Reads are scoped.
    let (status, letters) = get(&gw, "/admin/v1/dead-letters", ta).await;
    assert_eq!(status, 200);
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["inbox_id"], a_trap);
    let a_letter = letters[0]["id"].as_i64().unwrap();
    let (_, all) = get(&gw, "/admin/v1/dead-letters", Some(OPERATOR)).await;
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 2);
    let b_letter = all["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["inbox_id"] == b_trap)
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    let (_, routes) = get(&gw, "/admin/v1/routes", ta).await;
    let routes = routes["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["workspace_id"], *ws_a);
    let (_, history) = get(&gw, "/admin/v1/routes/history", ta).await;
    let history = history["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["actor"], "team-a");

    let (_, events) = get(&gw, "/admin/v1/events", ta).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["workspace_id"], *ws_a);
    assert_eq!(events[0]["event"]["metadata"]["inbox_id"], a_ok);
    let (_, events) = get(&gw, "/admin/v1/events", Some(OPERATOR)).await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2);

    // Transforms: A sees its upload; B did not upload it and cannot use it.
    let (_, list) = get(&gw, "/admin/v1/transforms", ta).await;
    let refs: Vec<&str> = list["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reference"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&digest.as_str()), "{refs:?}");
    assert!(refs.contains(&"builtin:shopify-default"), "{refs:?}");
    let (_, list) = get(&gw, "/admin/v1/transforms", tb).await;
    assert!(
        list["transforms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["builtin"] == true),
        "{list}"
    );
    let (status, err) = get(&gw, &format!("/admin/v1/transforms/{digest}"), tb).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_transform"))
    );
    let (status, shown) = get(&gw, &format!("/admin/v1/transforms/{digest}"), ta).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["routes"].as_array().unwrap().len(), 1);
    let (status, err) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        tb,
        Some(json!({"topic_pattern": "orders/*", "transform": digest})),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("unknown_transform"))
    );

    // Anything of the other workspace: 403.
    let forbidden = [
        (
            Method::PUT,
            "/admin/v1/routes".to_string(),
            json!({"workspace_id": ws_b, "topic_pattern": "*", "transform": "builtin:redact-pii"}),
        ),
        (
            Method::POST,
            "/admin/v1/routes/promote".to_string(),
            json!({"workspace_id": ws_b, "topic_pattern": "*"}),
        ),
        (
            Method::POST,
            "/admin/v1/dead-letters/replay".to_string(),
            json!({"ids": [b_letter]}),
        ),
        (
            Method::POST,
            "/admin/v1/dead-letters/replay".to_string(),
            json!({"ids": [a_letter, b_letter]}),
        ),
        (
            Method::POST,
            format!("/admin/v1/webhooks/{b_ok}/dry-run"),
            json!({}),
        ),
    ];
    for (method, path, body) in forbidden {
        let (status, err) = admin_json(&gw, method.clone(), &path, ta, Some(body.clone())).await;
        assert_eq!(status, 403, "{method} {path} {body}: {err}");
        assert_eq!(err["code"], "forbidden");
    }
    // Global routes are the operator's.
    let (status, route) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(OPERATOR),
        Some(json!({"topic_pattern": "products/*", "transform": "builtin:redact-pii"})),
    )
    .await;
    assert_eq!((status, route["workspace_id"].as_str()), (200, Some("")));
    assert_eq!(
        get(&gw, "/admin/v1/routes", ta).await.1["routes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&gw, "/admin/v1/routes", Some(OPERATOR)).await.1["routes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Its own: 200. `all` replays only A's dead letter.
    let (status, dry) = admin_json(
        &gw,
        Method::POST,
        &format!("/admin/v1/webhooks/{a_ok}/dry-run"),
        ta,
        None,
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["events"].as_array().unwrap().len(), 1);
    let (status, replayed) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/dead-letters/replay",
        ta,
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replayed["replayed"], json!([a_letter]));
    gw.settle().await;
    gw.stop().await;
}

#[tokio::test]
async fn uploads_are_validated_with_clear_codes() {
    let gw = gateway().await;
    let op = Some(OPERATOR);
    for (name, bytes, status, code) in [
        ("junk", b"not wasm at all".to_vec(), 422, "not_a_component"),
        (
            "empty-world",
            b"\0asm\x0d\0\x01\0".to_vec(),
            422,
            "wrong_world",
        ),
        ("broken", broken_wasm(), 422, "smoke_test_failed"),
        ("bad name!", hostile_wasm(), 400, "invalid_name"),
        ("nothing", Vec::new(), 400, "bad_request"),
    ] {
        let (got, err) = admin_upload(&gw, name, op, bytes).await;
        assert_eq!(
            (got, err["code"].as_str()),
            (status, Some(code)),
            "{name}: {err}"
        );
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    assert!(gw.store().transforms().await.unwrap().is_empty());

    let (status, pushed) = admin_upload(&gw, "hostile", op, hostile_wasm()).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["digest"], sha256_hex(&hostile_wasm()));
    let (status, shown) = get(
        &gw,
        &format!(
            "/admin/v1/transforms/{}",
            pushed["digest"].as_str().unwrap()
        ),
        op,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["name"], "hostile");
    assert_eq!(shown["builtin"], false);
    gw.stop().await;
}

#[tokio::test]
async fn a_route_set_over_the_api_serves_the_next_webhook() {
    let gw = gateway().await;
    let conn = gw.connect("route-api.myshopify.com").await;
    let token = workspace_token(&gw, &conn, "route-admin").await;
    deliver(&gw, &conn, "orders/create").await;
    let (status, route) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(&token),
        Some(json!({
            "brand_id": conn.created.brand_id,
            "topic_pattern": "orders/*",
            "transform": "builtin:redact-pii",
            "config": {},
            "limits": {"cpu_ms": 2000},
        })),
    )
    .await;
    assert_eq!(status, 200, "{route}");
    // Bad input is refused with a clear code, and nothing changes.
    for body in [
        json!({"topic_pattern": "*", "transform": "builtin:nope"}),
        json!({"topic_pattern": "*", "transform": "builtin:redact-pii", "config": [1]}),
        json!({"topic_pattern": "*", "transform": "builtin:redact-pii", "limits": {"cpu": 1}}),
    ] {
        let (status, err) = admin_json(
            &gw,
            Method::PUT,
            "/admin/v1/routes",
            Some(&token),
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{err}");
    }
    let (status, err) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(&token),
        Some(json!({"topic": "*"})),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));

    deliver(&gw, &conn, "orders/create").await;
    let events = gw.logged_events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["metadata"]["transform"], "shopify-default");
    assert_eq!(events[1]["metadata"]["transform"], "redact-pii");
    let (_, history) = get(&gw, "/admin/v1/routes/history", Some(&token)).await;
    assert_eq!(history["history"][0]["actor"], "route-admin");
    assert_eq!(history["history"].as_array().unwrap().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn dead_letters_replay_over_the_api() {
    let gw = gateway().await;
    let conn = gw.connect("replay-api.myshopify.com").await;
    let token = workspace_token(&gw, &conn, "replayer").await;
    let t = Some(token.as_str());
    let (_, pushed) = admin_upload(&gw, "hostile", t, hostile_wasm()).await;
    let put = |transform: String| {
        admin_json(
            &gw,
            Method::PUT,
            "/admin/v1/routes",
            t,
            Some(json!({"topic_pattern": "*", "transform": transform})),
        )
    };
    assert_eq!(put(pushed["digest"].as_str().unwrap().into()).await.0, 200);
    let inbox_id = deliver(&gw, &conn, "hostile/trap").await;
    let (_, letters) = get(&gw, "/admin/v1/dead-letters", t).await;
    let letter = letters["dead_letters"][0].clone();
    assert_eq!(letter["inbox_id"], inbox_id);
    assert_eq!(letter["reason_code"], "trap");

    let (status, err) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/dead-letters/replay",
        t,
        Some(json!({})),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));

    assert_eq!(put("builtin:shopify-default".into()).await.0, 200);
    let (status, replayed) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/dead-letters/replay",
        t,
        Some(json!({"ids": [letter["id"]]})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], json!([letter["id"]]));
    gw.settle().await;
    let (_, letters) = get(&gw, "/admin/v1/dead-letters", t).await;
    assert_eq!(letters["dead_letters"], json!([]), "resolved");
    let (_, events) = get(&gw, "/admin/v1/events", t).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["metadata"]["inbox_id"], inbox_id);
    assert_eq!(
        events[0]["event"]["metadata"]["transform"],
        "shopify-default"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_dry_run_returns_events_and_publishes_nothing() {
    let gw = gateway().await;
    let conn = gw.connect("dry-run.myshopify.com").await;
    let token = workspace_token(&gw, &conn, "dry").await;
    let t = Some(token.as_str());
    let inbox_id = deliver(&gw, &conn, "orders/create").await;
    // Served by the default route, so it is published, not dead-lettered.
    let trap_id = deliver(&gw, &conn, "hostile/trap").await;
    let published = gw.logged_events().await;
    assert_eq!(published.len(), 2);
    let path = format!("/admin/v1/webhooks/{inbox_id}/dry-run");

    // The default is what the routing table picks: the same event, same id.
    let (status, dry) = admin_json(&gw, Method::POST, &path, t, None).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["transform"]["reference"], "builtin:shopify-default");
    assert_eq!(dry["events"], json!([published[0].clone()]));

    let (status, dry) = admin_json(
        &gw,
        Method::POST,
        &path,
        t,
        Some(json!({"transform": "builtin:redact-pii", "config": {}})),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    let events = dry["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["metadata"]["transform"], "redact-pii");
    assert_eq!(events[0]["event_id"], published[0]["event_id"]);

    // A failing transform is an answer, not an error of the API.
    let (_, pushed) = admin_upload(&gw, "hostile", t, hostile_wasm()).await;
    let (status, dry) = admin_json(
        &gw,
        Method::POST,
        &format!("/admin/v1/webhooks/{trap_id}/dry-run"),
        t,
        Some(json!({"transform": pushed["digest"]})),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["error"]["code"], "trap");
    assert!(dry.get("events").is_none());

    for (body, status, code) in [
        (
            json!({"transform": "builtin:nope"}),
            422,
            "unknown_transform",
        ),
        (json!({"config": [1]}), 422, "invalid_config"),
        (
            json!({"transfrom": "builtin:redact-pii"}),
            400,
            "bad_request",
        ),
    ] {
        let (got, err) = admin_json(&gw, Method::POST, &path, t, Some(body)).await;
        assert_eq!((got, err["code"].as_str()), (status, Some(code)), "{err}");
    }
    let (status, err) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/webhooks/999999/dry-run",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_webhook"))
    );

    // Nothing new was published, queued or dead-lettered by the dry runs.
    assert_eq!(gw.logged_events().await, published);
    assert_eq!(gw.store().pending_count().await.unwrap(), 0);
    assert!(gw.store().dead_letters(10).await.unwrap().is_empty());
    gw.stop().await;
}
