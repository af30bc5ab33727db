//! The published PlatformEvent schema (`schemas/platform-event.schema.json`)
//! against the envelope the host builds: it accepts a real event and the
//! gateway's own `integration.error` event, and it rejects what a consumer
//! must not be handed. Every other test checks the events it reads through
//! the harness (`logged_events`, `consume`) against the same schema.

use ionflux_gateway::pipeline::event::{EventParts, Topics, TransformId, platform_record};
use ionflux_gateway::store::InboxRow;
use ionflux_tests::{assert_platform_event, platform_event_schema};
use serde_json::{Value, json};

fn row() -> InboxRow {
    InboxRow {
        id: 7,
        connection_id: uuid::Uuid::new_v4().to_string(),
        provider: "shopify".into(),
        workspace_id: uuid::Uuid::new_v4().to_string(),
        brand_id: uuid::Uuid::new_v4().to_string(),
        webhook_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
        topic: "orders/create".into(),
        account: "schema-shop.myshopify.com".into(),
        api_version: Some("2024-01".into()),
        occurred_at: Some("2024-01-02T03:04:05.678+01:00".into()),
        event_id: None,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        headers: vec![],
        body: br#"{"id": 1}"#.to_vec(),
        received_at: 1_700_000_000_000,
        attempts: 1,
    }
}

fn event(kind: &str) -> Value {
    let digest = "a".repeat(64);
    let record = platform_record(
        &row(),
        &Topics::default(),
        &TransformId {
            name: "builtin:shopify-default",
            digest: &digest,
        },
        0,
        &EventParts {
            kind,
            schema_version: "v1.shopify.2024-01",
            payload: br#"{"id": 1, "total_price": "10.00"}"#,
        },
    )
    .unwrap();
    serde_json::from_slice(&record.payload).unwrap()
}

fn rejected(event: &Value) -> bool {
    !platform_event_schema().is_valid(event)
}

#[test]
fn the_schema_accepts_the_envelope_the_host_builds() {
    assert_platform_event(&event("orders.created"));
    assert_platform_event(&event("orders.line_items.updated"));
}

#[test]
fn the_schema_rejects_an_event_missing_a_required_field() {
    for field in [
        "event_id",
        "event_type",
        "event_timestamp",
        "workspace_id",
        "payload_json",
        "metadata",
    ] {
        let mut e = event("orders.created");
        e.as_object_mut().unwrap().remove(field);
        assert!(rejected(&e), "accepted without {field}");
    }
    let mut e = event("orders.created");
    e["metadata"].as_object_mut().unwrap().remove("trace_id");
    assert!(rejected(&e), "accepted without metadata.trace_id");
}

#[test]
fn the_schema_rejects_a_malformed_event_type() {
    let good = event("orders.created");
    let ty = good["event_type"].as_str().unwrap().to_string();
    for bad in [
        // No action: the suffix is entity.action at least.
        ty.replace(".orders.created", ".orders"),
        // Upper case and separators a transform may not use.
        ty.replace("orders.created", "Orders.created"),
        ty.replace("orders.created", "orders.created/x"),
        // Another producer's prefix, or the tenant segments missing.
        ty.replace("ionflux.", "other."),
        ty.replace(".ws_", ".workspace_"),
        "orders.created".to_string(),
    ] {
        let mut e = good.clone();
        e["event_type"] = json!(bad);
        assert!(rejected(&e), "accepted event_type {bad:?}");
    }
}

#[test]
fn the_schema_rejects_wrong_types_and_unknown_fields() {
    let good = event("orders.created");
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 5] = [
        ("a payload that is not an object", |e| {
            e["payload_json"] = json!([1])
        }),
        ("an event id that is not a UUIDv7", |e| {
            e["event_id"] = json!(uuid::Uuid::new_v4().to_string())
        }),
        ("a timestamp with an offset", |e| {
            e["event_timestamp"] = json!("2024-01-02T03:04:05.678+01:00")
        }),
        ("a field the envelope does not have", |e| {
            e["extra"] = json!(1)
        }),
        ("a negative inbox id", |e| {
            e["metadata"]["inbox_id"] = json!(-1)
        }),
    ];
    for (what, mutate) in mutations {
        let mut e = good.clone();
        mutate(&mut e);
        assert!(rejected(&e), "accepted {what}");
    }
}

/// Every `integration.*` event a connection's change publishes, of every
/// provider, is a PlatformEvent the schema accepts.
#[test]
fn the_schema_accepts_every_integration_event() {
    use ionflux_gateway::store::IntegrationEventRow;
    let kinds = [
        "connected",
        "disconnected",
        "redacted",
        "paused",
        "resumed",
        "token_refreshed",
        "customer_redacted",
    ];
    let providers = [
        "shopify",
        "woocommerce",
        "tiktok_shop",
        "wix",
        "standard_webhooks",
        "hmac",
    ];
    for provider in providers {
        for (i, kind) in kinds.iter().enumerate() {
            let row = IntegrationEventRow {
                id: i as i64 + 1,
                connection_id: uuid::Uuid::new_v4().to_string(),
                kind: kind.to_string(),
                provider: provider.into(),
                account: "an-account".into(),
                workspace_id: uuid::Uuid::new_v4().to_string(),
                brand_id: uuid::Uuid::new_v4().to_string(),
                status: "active".into(),
                reason: Some("why".into()),
                actor: None,
                created_at: 1_700_000_000_000,
                detail: (*kind == "customer_redacted")
                    .then(|| r#"{"customer_id":"7","orders_to_redact":["1"]}"#.into()),
            };
            let record =
                ionflux_gateway::pipeline::integration::record(&row, &Topics::default()).unwrap();
            let event: Value = serde_json::from_slice(&record.payload).unwrap();
            assert_platform_event(&event);
            assert!(
                event["event_type"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(".integration.{kind}")),
                "{event}"
            );
            assert_eq!(
                event["payload_json"]["connection_id"],
                row.connection_id.as_str()
            );
            // The same row, the same bytes: a repeat is the same event.
            let again =
                ionflux_gateway::pipeline::integration::record(&row, &Topics::default()).unwrap();
            assert_eq!(record.payload, again.payload);
        }
    }
}
