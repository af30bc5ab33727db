//! Components of both versions of the transform contract run side by side:
//! a frozen `ionflux:transform@0.1.0` guest binary and a `0.2.0` one, pushed
//! over the admin API, make the events the built-in makes of real signed
//! webhooks, and each sees the stored webhook under its own world's names.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use ionflux_tests::{Gateway, Hook, Options, admin_json, admin_upload};

const OPERATOR: &str = "worlds-operator-token";
const ORDER: &[u8] = br##"{"id":820982911946154508,"name":"#1001","total_price":"199.00"}"##;

fn fixture_guest(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/guests")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The event type without the tenant's prefix (`….brand_<b>.`), which
/// differs between connections.
fn suffix(event: &Value) -> String {
    let kind = event["event_type"].as_str().unwrap();
    let (_, rest) = kind.split_once(".brand_").unwrap();
    rest.split_once('.').unwrap().1.to_string()
}

#[tokio::test]
async fn a_0_1_0_guest_runs_beside_a_0_2_0_one() {
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..Options::default()
    })
    .await;
    let token = Some(OPERATOR);

    let mut digests = Vec::new();
    for (file, world) in [
        ("echo-0.1.0.wasm", "ionflux:transform@0.1.0"),
        ("echo-0.2.0.wasm", "ionflux:transform@0.2.0"),
    ] {
        let (status, pushed) = admin_upload(&gw, file, token, fixture_guest(file)).await;
        assert_eq!(status, 200, "{pushed}");
        assert_eq!(pushed["world"], world, "{file}: {pushed}");
        digests.push(pushed["digest"].as_str().unwrap().to_string());
    }

    let (status, list) = admin_json(&gw, Method::GET, "/admin/v1/transforms", token, None).await;
    assert_eq!(status, 200, "{list}");
    let world_of = |reference: &str| {
        list["transforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} not listed: {list}"))["world"]
            .clone()
    };
    assert_eq!(world_of(&digests[0]), "ionflux:transform@0.1.0");
    assert_eq!(world_of(&digests[1]), "ionflux:transform@0.2.0");
    assert_eq!(
        world_of("builtin:shopify-default"),
        "ionflux:transform@0.2.0"
    );
    assert_eq!(world_of("builtin:redact-pii"), "ionflux:transform@0.2.0");

    // One connection per transform; the built-in serves the one with no
    // route.
    let old = gw.connect("worlds-old.myshopify.com").await;
    let new = gw.connect("worlds-new.myshopify.com").await;
    let builtin = gw.connect("worlds-builtin.myshopify.com").await;
    gw.route_brand(&old, "*", &digests[0], "{}").await;
    gw.route_brand(&new, "*", &digests[1], "{}").await;

    let mut echoes = Vec::new();
    for conn in [&old, &new, &builtin] {
        for (topic, version) in [("orders/create", "2024-01"), ("products/update", "2026-04")] {
            let (status, body) = gw.send(&Hook::shopify(conn, topic, version, ORDER)).await;
            assert_eq!(status, 200, "{body}");
        }
        let hook = Hook::shopify(conn, "echo/input", "2024-01", ORDER);
        let sent: serde_json::Map<String, Value> = hook
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        echoes.push(sent);
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{body}");
    }
    gw.settle().await;

    let events = gw.logged_events().await;
    let of = |shop: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["metadata"]["shop_domain"] == shop)
            .collect()
    };
    let made = |shop: &str| -> Vec<(String, Value, Value)> {
        of(shop)
            .into_iter()
            .filter(|e| e["metadata"]["topic"] != "echo/input")
            .map(|e| {
                (
                    suffix(e),
                    e["payload_schema_version"].clone(),
                    e["payload_json"].clone(),
                )
            })
            .collect()
    };
    let expected = made("worlds-builtin.myshopify.com");
    assert_eq!(expected.len(), 2, "{events:#?}");
    assert_eq!(expected[0].0, "orders.created");
    assert_eq!(made("worlds-old.myshopify.com"), expected, "0.1.0");
    assert_eq!(made("worlds-new.myshopify.com"), expected, "0.2.0");

    // What each world saw of the same kind of stored webhook.
    let echo = |shop: &str| -> Value {
        let e = of(shop)
            .into_iter()
            .find(|e| e["metadata"]["topic"] == "echo/input")
            .unwrap_or_else(|| panic!("no echo for {shop}: {events:#?}"));
        assert_eq!(suffix(e), "echo.input");
        e["payload_json"].clone()
    };
    let seen_old = echo("worlds-old.myshopify.com");
    let sent = &echoes[0];
    assert_eq!(seen_old["world"], "0.1.0");
    assert_eq!(seen_old["provider"], "shopify");
    assert_eq!(seen_old["shop_domain"], "worlds-old.myshopify.com");
    assert_eq!(seen_old["webhook_id"], sent["x-shopify-webhook-id"]);
    assert_eq!(seen_old["triggered_at"], sent["x-shopify-triggered-at"]);
    assert_eq!(seen_old["event_id"], sent["x-shopify-event-id"]);
    assert_eq!(seen_old["api_version"], "2024-01");
    assert_eq!(seen_old["workspace_id"], json!(old.created.workspace_id));
    assert_eq!(seen_old["body"], std::str::from_utf8(ORDER).unwrap());

    let seen_new = echo("worlds-new.myshopify.com");
    let sent = &echoes[1];
    assert_eq!(seen_new["world"], "0.2.0");
    assert_eq!(seen_new["provider"], "shopify");
    assert_eq!(seen_new["account_id"], "worlds-new.myshopify.com");
    assert_eq!(seen_new["delivery_id"], sent["x-shopify-webhook-id"]);
    assert_eq!(seen_new["occurred_at"], sent["x-shopify-triggered-at"]);
    assert_eq!(
        seen_new["event_id"], sent["x-shopify-event-id"],
        "from the headers"
    );
    assert_eq!(seen_new["api_version"], "2024-01");
    assert_eq!(seen_new["body"], std::str::from_utf8(ORDER).unwrap());
    // Both worlds get the same headers (every X-Shopify-* but the
    // signature), as stored.
    let names = |seen: &Value| -> Vec<String> {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&seen_old), names(&seen_new));
    assert!(names(&seen_new).contains(&"x-shopify-event-id".to_string()));
    assert!(!names(&seen_new).contains(&"x-shopify-hmac-sha256".to_string()));

    gw.stop().await;
}
