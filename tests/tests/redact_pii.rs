//! `redact-pii` end to end through wasm: routed for a brand, every shared
//! Shopify sample comes out with no listed field left anywhere.

use ionflux_tests::{Gateway, Hook, Options, shopify_fixtures};
use serde_json::Value;

const DEFAULT_FIELDS: &[&str] = &[
    "email",
    "contact_email",
    "phone",
    "first_name",
    "last_name",
    "billing_address",
    "shipping_address",
    "default_address",
    "addresses",
    "browser_ip",
    "client_details",
    "note_attributes",
];

fn find_key(v: &Value, key: &str, path: &mut Vec<String>) -> Option<String> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    return Some(format!("{}/{k}", path.join("/")));
                }
                path.push(k.clone());
                let found = find_key(child, key, path);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Value::Array(items) => items.iter().find_map(|i| find_key(i, key, path)),
        _ => None,
    }
}

#[tokio::test]
async fn no_listed_field_survives_any_sample() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("redact-shop.myshopify.com").await;
    gw.route_brand(&conn, "*", "builtin:redact-pii", "{}").await;
    // Not the redaction requests: once published, `shop/redact` purges the
    // shop's event log and `customers/redact` the samples that name its
    // customer (retention.rs tests that), which would leave nothing here to
    // read.
    let fixtures: Vec<_> = shopify_fixtures()
        .into_iter()
        .filter(|f| !matches!(f.topic.as_str(), "shop/redact" | "customers/redact"))
        .collect();
    for f in &fixtures {
        let (status, _) = gw
            .send(&Hook::shopify(&conn, &f.topic, &f.api_version, &f.body))
            .await;
        assert_eq!(status, 200);
    }
    gw.settle().await;
    assert!(gw.store().dead_letters(10).await.unwrap().is_empty());
    let events = gw.logged_events().await;
    assert_eq!(events.len(), fixtures.len());
    let mut removed_somewhere = 0;
    for (e, f) in events.iter().zip(&fixtures) {
        assert_eq!(e["metadata"]["transform"], "redact-pii");
        let original: Value = serde_json::from_slice(&f.body).unwrap();
        for field in DEFAULT_FIELDS {
            if let Some(path) = find_key(&e["payload_json"], field, &mut Vec::new()) {
                panic!("{field} survived in {} at {path}", f.file);
            }
            if find_key(&original, field, &mut Vec::new()).is_some() {
                removed_somewhere += 1;
            }
        }
    }
    assert!(removed_somewhere > 50, "the samples do carry PII to remove");
    gw.stop().await;
}

#[tokio::test]
async fn the_field_list_is_configurable_per_route() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("redact-cfg.myshopify.com").await;
    gw.route_brand(
        &conn,
        "*",
        "builtin:redact-pii",
        r#"{"fields": ["total_price"]}"#,
    )
    .await;
    let body = br#"{"id": 1, "email": "a@b.c", "total_price": "10.00"}"#;
    gw.send(&Hook::shopify(&conn, "orders/create", "2024-01", body))
        .await;
    gw.settle().await;
    let events = gw.logged_events().await;
    assert_eq!(
        events[0]["payload_json"],
        serde_json::json!({"id": 1, "email": "a@b.c"})
    );
    gw.stop().await;
}
