//! The admin API over real HTTP: its OpenAPI document (the router and the
//! document agree, and every answer of these tests matches the document's
//! schema for it), who may do what (operator, workspace and wrong tokens),
//! uploads, routes that take effect, replay, and dry runs that publish
//! nothing.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use ionflux_gateway::api::admin::{self, TokenKind};
use ionflux_tests::{Conn, Gateway, Hook, Options, broken_wasm, hostile_wasm, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "configured-operator-token";

/// The document as the library generates it; the served one must equal it.
static DOC: LazyLock<Value> =
    LazyLock::new(|| serde_json::to_value(admin::openapi_document()).unwrap());

/// The documented path template a concrete path matches.
fn template_of(path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let wanted: Vec<&str> = path.split('/').collect();
    DOC["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|t| {
            let t: Vec<&str> = t.split('/').collect();
            t.len() == wanted.len()
                && t.iter()
                    .zip(&wanted)
                    .all(|(t, w)| t == w || (t.starts_with('{') && !w.is_empty()))
        })
        .unwrap_or_else(|| panic!("{path} is not documented"))
        .clone()
}

/// Checks an answer against the document: its status is documented for the
/// operation, and its body is valid against that response's schema (the
/// document's components are put beside it so its `$ref`s resolve).
fn conforms(method: &Method, path: &str, status: u16, body: &Value) {
    let template = template_of(path);
    let op = &DOC["paths"][&template][method.as_str().to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is documented");
    let response = &op["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template}: status {status} is documented ({body})"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: a JSON body"
    );
    let mut root = schema.clone();
    root["components"] = DOC["components"].clone();
    let validator = jsonschema::draft202012::new(&root).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the document: {errors:?}\n{body}"
    );
}

/// The check has teeth: a body the document does not allow fails it, as
/// does a status it does not list.
#[test]
fn answers_off_the_document_are_caught() {
    let route = json!({"id": 1, "provider": "shopify", "workspace_id": "", "brand_id": "",
                       "topic_pattern": "*", "transform": "builtin:redact-pii", "config": "{}"});
    conforms(
        &Method::GET,
        "/admin/v1/routes",
        200,
        &json!({"routes": [route]}),
    );
    let mut wrong = route.clone();
    wrong["id"] = json!("1");
    for (status, body) in [
        (200, json!({"routes": [wrong]})),
        (200, json!({"rutes": []})),
        (404, json!({"code": "x", "message": "y"})),
        (401, json!({"code": "unauthorized"})),
    ] {
        let caught =
            std::panic::catch_unwind(|| conforms(&Method::GET, "/admin/v1/routes", status, &body));
        assert!(caught.is_err(), "{status} {body}");
    }
}

/// `ionflux_tests::admin_json`, with the answer checked against the document.
async fn admin_json(
    gw: &Gateway,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, answer) = ionflux_tests::admin_json(gw, method.clone(), path, token, body).await;
    conforms(&method, path, status, &answer);
    (status, answer)
}

/// `ionflux_tests::admin_upload`, with the answer checked against the document.
async fn admin_upload(
    gw: &Gateway,
    name: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let (status, answer) = ionflux_tests::admin_upload(gw, name, token, bytes).await;
    conforms(&Method::POST, "/admin/v1/transforms", status, &answer);
    (status, answer)
}

async fn gateway() -> Gateway {
    Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..Options::default()
    })
    .await
}

async fn workspace_token(gw: &Gateway, conn: &Conn, name: &str) -> String {
    ionflux_tests::workspace_token(gw.store(), &conn.created.workspace_id, name).await
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

/// The documented operations, as (method, path template).
fn documented() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in DOC["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_every_path() {
    let gw = gateway().await;
    // No token: the document describes the API, not anyone's data.
    let (status, doc) = get(&gw, "/admin/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc, *DOC, "the served document is the generated one");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/admin/v1/openapi.json"),
        ("GET", "/admin/v1/transforms"),
        ("POST", "/admin/v1/transforms"),
        ("GET", "/admin/v1/transforms/{reference}"),
        ("DELETE", "/admin/v1/transforms/{reference}"),
        ("GET", "/admin/v1/workspaces/{workspace_id}/ceilings"),
        ("PUT", "/admin/v1/workspaces/{workspace_id}/ceilings"),
        ("GET", "/admin/v1/routes"),
        ("PUT", "/admin/v1/routes"),
        ("POST", "/admin/v1/routes/promote"),
        ("GET", "/admin/v1/routes/history"),
        ("GET", "/admin/v1/routes/shadow"),
        ("GET", "/admin/v1/dead-letters"),
        ("POST", "/admin/v1/dead-letters/replay"),
        ("GET", "/admin/v1/events"),
        ("POST", "/admin/v1/webhooks/{inbox_id}/dry-run"),
        ("GET", "/admin/v1/providers"),
        ("GET", "/admin/v1/connections"),
        ("POST", "/admin/v1/connections"),
        ("GET", "/admin/v1/connections/{connection_id}/webhooks"),
        // The connection API: tested in connection_api.rs.
        ("GET", "/admin/v1/connections/{connection_id}"),
        ("POST", "/admin/v1/connections/{connection_id}/disconnect"),
        ("POST", "/admin/v1/connections/{connection_id}/pause"),
        ("POST", "/admin/v1/connections/{connection_id}/resume"),
        ("POST", "/admin/v1/connections/{connection_id}/reregister"),
        ("POST", "/admin/v1/connections/{connection_id}/refresh"),
        ("GET", "/admin/v1/webhooks"),
        ("GET", "/admin/v1/webhooks/{inbox_id}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(documented(), expected, "every operation is tested below");
    gw.stop().await;
}

/// The router and the document cannot drift: every documented operation is
/// served (with no token it is refused as unauthorized, not missing), and
/// every method the document does not list on a path is 405 there.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let gw = gateway().await;
    let documented = documented();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path
            .replace("{inbox_id}", "1")
            .replace("{reference}", "builtin:redact-pii")
            .replace("{workspace_id}", "ws")
            .replace("{connection_id}", "c");
        for method in [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            let (status, body) =
                ionflux_tests::admin_json(&gw, method.clone(), &concrete, None, None).await;
            let listed = documented.contains(&(method.to_string(), path.clone()));
            match (listed, path.as_str()) {
                (true, "/admin/v1/openapi.json") => assert_eq!(status, 200),
                (true, _) => {
                    assert_eq!(status, 401, "{method} {concrete} is served: {body}");
                    conforms(&method, &concrete, status, &body);
                }
                (false, _) => assert_eq!(status, 405, "{method} {concrete} is not: {body}"),
            }
        }
    }
    // A path the document does not have is not served either.
    for path in ["/admin/v1", "/admin/v1/tokens", "/admin/v1/routes/1"] {
        let (status, _) = ionflux_tests::admin_json(&gw, Method::GET, path, None, None).await;
        assert_eq!(status, 404, "{path}");
    }
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
        (Method::GET, "/admin/v1/routes/shadow?samples=true", None),
        (Method::GET, "/admin/v1/dead-letters", None),
        (
            Method::POST,
            "/admin/v1/dead-letters/replay",
            Some(json!({"all": true})),
        ),
        (Method::GET, "/admin/v1/events", None),
        (Method::GET, "/admin/v1/providers", None),
        (
            Method::POST,
            "/admin/v1/connections",
            Some(json!({"shop_domain": "s.myshopify.com", "brand_id": "b",
                        "webhook_secret": "s"})),
        ),
        (
            Method::POST,
            "/admin/v1/webhooks/1/dry-run",
            Some(json!({})),
        ),
        (Method::GET, "/admin/v1/connections/c", None),
        (Method::POST, "/admin/v1/connections/c/disconnect", None),
        (Method::POST, "/admin/v1/connections/c/pause", None),
        (Method::POST, "/admin/v1/connections/c/resume", None),
        (Method::POST, "/admin/v1/connections/c/reregister", None),
        (Method::POST, "/admin/v1/connections/c/refresh", None),
        (Method::GET, "/admin/v1/webhooks?delivery_id=x", None),
        (Method::GET, "/admin/v1/webhooks/1?body=true", None),
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
    let (_, letters) = get(&gw, "/admin/v1/dead-letters?reason=trap&after=0", t).await;
    let letter = letters["dead_letters"][0].clone();
    assert_eq!(letter["inbox_id"], inbox_id);
    assert_eq!(letter["reason_code"], "trap");
    let (status, dead) = get(&gw, &format!("/admin/v1/webhooks/{inbox_id}?body=true"), t).await;
    assert_eq!(status, 200, "{dead}");
    assert_eq!(dead["dead_letter"]["id"], letter["id"]);

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
        Some(json!({"ids": [letter["id"]], "reason": "trap", "since": "0"})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], json!([letter["id"]]));
    gw.settle().await;
    let (_, letters) = get(&gw, "/admin/v1/dead-letters", t).await;
    assert_eq!(letters["dead_letters"], json!([]), "resolved");
    let (status, life) = get(&gw, &format!("/admin/v1/webhooks/{inbox_id}"), t).await;
    assert_eq!(status, 200, "{life}");
    assert_eq!(life["webhook"]["status"], "published");
    assert_eq!(life["events"].as_array().unwrap().len(), 1);
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

/// The operations the tests above do not reach, answered as documented
/// (each call checks its answer against the document).
#[tokio::test]
async fn ceilings_connections_promotion_newest_events_and_deletion_answer_as_documented() {
    let gw = gateway().await;
    let conn = gw.connect("documented.myshopify.com").await;
    let ws = conn.created.workspace_id.clone();
    let token = workspace_token(&gw, &conn, "docs").await;
    let (t, op) = (Some(token.as_str()), Some(OPERATOR));

    let ceilings = format!("/admin/v1/workspaces/{ws}/ceilings");
    let (status, set) = admin_json(
        &gw,
        Method::PUT,
        &ceilings,
        op,
        Some(json!({"cpu_ms": 500})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let (status, shown) = get(&gw, &ceilings, t).await;
    assert_eq!((status, &shown["ceilings"]["cpu_ms"]), (200, &json!(500)));
    assert_eq!(shown["overrides"]["cpu_ms"], 500);
    let (status, _) = admin_json(&gw, Method::PUT, &ceilings, t, Some(json!({}))).await;
    assert_eq!(status, 403);

    // Any token reads which platforms are taken and how each connects.
    let (status, providers) = get(&gw, "/admin/v1/providers", t).await;
    assert_eq!(status, 200, "{providers}");
    let shopify = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "shopify")
        .expect("shopify is registered");
    assert_eq!(shopify["default_transform"], "builtin:shopify-default");
    assert_eq!(shopify["set_up"], json!(["oauth", "secret"]));

    let (status, list) = get(&gw, "/admin/v1/connections", t).await;
    assert_eq!(status, 200);
    let list = list["connections"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["account"], "documented.myshopify.com");
    assert_eq!(list[0]["provider"], "shopify");
    assert!(list[0].get("webhook_secret").is_none());
    let id = list[0]["connection_id"].as_str().unwrap();
    let (status, hooks) = get(&gw, &format!("/admin/v1/connections/{id}/webhooks"), t).await;
    assert_eq!((status, &hooks["registrations"]), (200, &json!([])));
    let (status, _) = get(&gw, "/admin/v1/connections/nope/webhooks", op).await;
    assert_eq!(status, 404);

    // A shadow promoted.
    let (status, _) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        t,
        Some(
            json!({"topic_pattern": "*", "transform": "builtin:shopify-default",
                    "shadow": "builtin:redact-pii"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, route) = admin_json(
        &gw,
        Method::POST,
        "/admin/v1/routes/promote",
        t,
        Some(json!({"topic_pattern": "*"})),
    )
    .await;
    assert_eq!(
        (status, &route["transform"]),
        (200, &json!("builtin:redact-pii"))
    );

    // The newest events, oldest first.
    for topic in ["orders/create", "orders/updated", "orders/paid"] {
        deliver(&gw, &conn, topic).await;
    }
    let (status, page) = get(&gw, "/admin/v1/events?newest=true&limit=2", t).await;
    assert_eq!(status, 200);
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1], "{seqs:?}");
    assert_eq!(page["next_after"], seqs[1]);
    let (_, all) = get(&gw, "/admin/v1/events", t).await;
    assert_eq!(all["events"][2]["seq"], seqs[1], "the newest of three");

    // A workspace's upload, deleted once nothing runs it.
    let (_, pushed) = admin_upload(&gw, "hostile", t, hostile_wasm()).await;
    let path = format!(
        "/admin/v1/transforms/{}",
        pushed["digest"].as_str().unwrap()
    );
    let (status, deleted) = admin_json(&gw, Method::DELETE, &path, t, None).await;
    assert_eq!((status, &deleted["deleted"]), (200, &pushed["digest"]));
    let (status, _) = admin_json(&gw, Method::DELETE, &path, t, None).await;
    assert_eq!(status, 404);
    gw.stop().await;
}

/// `POST /admin/v1/connections` and `GET /admin/v1/routes/shadow` answer as
/// documented: created, rotated, refused; the secret is never in an answer.
#[tokio::test]
async fn connections_added_and_shadow_runs_answer_as_documented() {
    let gw = gateway().await;
    let a = gw.connect("doc-team-a.myshopify.com").await;
    let b = gw.connect("doc-team-b.myshopify.com").await;
    let ta = workspace_token(&gw, &a, "team-a").await;
    let (ta, op) = (Some(ta.as_str()), Some(OPERATOR));
    let brand = uuid::Uuid::new_v4().to_string();
    let secret = "shpss_documented-secret";
    let body = |shop: &str, brand: &str, extra: Value| {
        let mut v = json!({"shop_domain": shop, "brand_id": brand, "webhook_secret": secret});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Some(v)
    };
    let post = |token, body| admin_json(&gw, Method::POST, "/admin/v1/connections", token, body);

    let (status, added) = post(ta, body("doc-new.myshopify.com", &brand, json!({}))).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["created"], true);
    assert_eq!(added["workspace_id"], a.created.workspace_id);
    assert!(
        added.get("webhook_url").is_none(),
        "no public base URL here"
    );
    let (status, rotated) = post(ta, body("doc-new.myshopify.com", &brand, json!({}))).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["created"], false);
    assert_eq!(rotated["connection_id"], added["connection_id"]);

    let other = uuid::Uuid::new_v4().to_string();
    let ws_b = json!({"workspace_id": b.created.workspace_id});
    for (token, body, status, code) in [
        (
            ta,
            body("doc-x.myshopify.com", &other, ws_b.clone()),
            403,
            "forbidden",
        ),
        (
            op,
            body("doc-y.myshopify.com", &brand, ws_b.clone()),
            403,
            "forbidden",
        ),
        (
            ta,
            body(
                "doc-new.myshopify.com",
                &brand,
                json!({"previous_secret_window_secs": 999_999_999}),
            ),
            403,
            "forbidden",
        ),
        (
            op,
            body("doc-z.myshopify.com", &other, json!({})),
            400,
            "bad_request",
        ),
        (
            ta,
            body("not a shop", &other, json!({})),
            400,
            "bad_request",
        ),
        (
            ta,
            body("doc-w.myshopify.com", "not-a-uuid", json!({})),
            400,
            "bad_request",
        ),
        (
            ta,
            body("doc-w.myshopify.com", &other, json!({"webhook_secret": ""})),
            400,
            "bad_request",
        ),
        (
            ta,
            body(
                "doc-w.myshopify.com",
                &other,
                json!({"webhook_secret": 12345}),
            ),
            400,
            "bad_request",
        ),
        (
            ta,
            body("doc-w.myshopify.com", &other, json!({"unknown": 1})),
            400,
            "bad_request",
        ),
    ] {
        let (got, err) = post(token, body.clone()).await;
        assert_eq!(
            (got, err["code"].as_str()),
            (status, Some(code)),
            "{body:?}: {err}"
        );
        let text = err.to_string();
        assert!(!text.contains(secret) && !text.contains("12345"), "{text}");
    }
    for answer in [&added, &rotated] {
        assert!(!answer.to_string().contains(secret), "{answer}");
    }
    let (status, _) = post(op, body("doc-op.myshopify.com", &other, ws_b)).await;
    assert_eq!(status, 200);

    for (path, token) in [
        ("/admin/v1/routes/shadow", op),
        ("/admin/v1/routes/shadow?samples=true&limit=5", ta),
    ] {
        let (status, report) = get(&gw, path, token).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report, json!({"stats": [], "samples": []}));
    }
    let (status, _) = get(&gw, "/admin/v1/routes/shadow?samples=maybe", op).await;
    assert_eq!(status, 400);
    gw.stop().await;
}

/// The webhook lookup's answers, each checked against the document: a
/// page with its cursor, a life, and what is refused.
#[tokio::test]
async fn webhooks_are_listed_and_shown_as_documented() {
    let gw = gateway().await;
    let mine = gw.connect("lookup-mine.myshopify.com").await;
    let theirs = gw.connect("lookup-theirs.myshopify.com").await;
    let token = workspace_token(&gw, &mine, "lookup").await;
    let t = Some(token.as_str());
    let first = deliver(&gw, &mine, "orders/create").await;
    let second = deliver(&gw, &mine, "orders/create").await;
    let foreign = deliver(&gw, &theirs, "orders/create").await;

    let (status, page) = get(&gw, "/admin/v1/webhooks?limit=1", t).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["webhooks"][0]["id"], second);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = get(
        &gw,
        &format!("/admin/v1/webhooks?limit=1&cursor={cursor}"),
        t,
    )
    .await;
    assert_eq!(page["webhooks"][0]["id"], first);
    assert!(page.get("next_cursor").is_none(), "{page}");
    let (status, page) = get(&gw, "/admin/v1/webhooks?status=published", Some(OPERATOR)).await;
    assert_eq!(status, 200);
    assert_eq!(page["webhooks"].as_array().unwrap().len(), 3);

    let (status, life) = get(&gw, &format!("/admin/v1/webhooks/{first}?body=true"), t).await;
    assert_eq!(status, 200, "{life}");
    assert_eq!(life["body"], r#"{"id":1}"#);
    let (status, err) = get(&gw, &format!("/admin/v1/webhooks/{foreign}"), t).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    let (status, err) = get(&gw, "/admin/v1/webhooks/999999", t).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_webhook"))
    );
    let (status, err) = get(&gw, "/admin/v1/webhooks/x", t).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    let (status, err) = get(&gw, "/admin/v1/webhooks?status=lost", t).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("bad_request")));
    gw.stop().await;
}
