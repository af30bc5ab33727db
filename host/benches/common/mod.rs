//! Shared by the criterion benches: sample payloads, a temporary store with
//! one connection, inbox rows, and one criterion configuration that keeps
//! `cargo bench` to a few minutes on a 2-core machine.

// Each bench binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use ionflux_gateway::store::{Blob, ConnectionRow, InboxRow, NewWebhook, Store};
use ionflux_gateway::support::vault::{Secret, Vault};

/// Short measurements: these benches are for ratios and regressions, and
/// the machine is shared.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

/// A sample payload and its topic and API version.
pub struct Sample {
    pub name: &'static str,
    pub topic: &'static str,
    pub api_version: &'static str,
    pub body: Vec<u8>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/shopify-webhooks")
}

/// A real Shopify payload; without the shared data, a synthetic JSON
/// object of about the same size, so the benches still run.
fn sample(name: &'static str, topic: &'static str, file: &str, size: usize) -> Sample {
    let api_version = "2024-07";
    let body = std::fs::read(data_dir().join(file)).unwrap_or_else(|_| {
        let mut body = String::from("{\"id\":1,\"email\":\"a@b.c\",\"note\":\"");
        while body.len() < size - 2 {
            body.push('x');
        }
        body.push_str("\"}");
        body.into_bytes()
    });
    Sample {
        name,
        topic,
        api_version,
        body,
    }
}

/// About 5.7 KB: the "~5 KB webhook" of the targets.
pub fn fulfillment() -> Sample {
    sample(
        "fulfillment_5.7kB",
        "fulfillments/create",
        "fulfillments__create/gadget-schemas-2024-07-1.json",
        5688,
    )
}

/// About 9.9 KB: a full order with customer, addresses and line items,
/// where redaction has the most to do.
pub fn order() -> Sample {
    sample(
        "order_9.9kB",
        "orders/create",
        "orders__create/gadget-schemas-2023-07-1.json",
        9866,
    )
}

/// A migrated store in a temporary folder, with one connection.
pub async fn temp_store(dir: &Path) -> (Store, ConnectionRow) {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::connect(&url).await.expect("sqlite store");
    let conn = add_connection(&store).await;
    (store, conn)
}

/// A connection with a fresh shop name, so reruns on one database do not
/// collide.
pub async fn add_connection(store: &Store) -> ConnectionRow {
    let vault = Vault::from_spec(&format!("k1:{}", Vault::generate_key())).expect("vault");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let created = ionflux_gateway::providers::shopify::add_connection(
        store,
        &vault,
        &format!("bench-{}.myshopify.com", &tag[..12]),
        &uuid::Uuid::new_v4().to_string(),
        &uuid::Uuid::new_v4().to_string(),
        &Secret::from("bench-secret".to_string()),
    )
    .await
    .expect("connection");
    store
        .connection_by_path(&created.secure_path_identifier)
        .await
        .expect("lookup")
        .expect("the connection just made")
}

pub fn headers(sample: &Sample, webhook_id: &str) -> Vec<(String, String)> {
    vec![
        ("x-shopify-topic".into(), sample.topic.into()),
        ("x-shopify-shop-domain".into(), "bench.myshopify.com".into()),
        ("x-shopify-webhook-id".into(), webhook_id.into()),
        ("x-shopify-api-version".into(), sample.api_version.into()),
        (
            "x-shopify-triggered-at".into(),
            "2026-11-23T12:00:00.000Z".into(),
        ),
    ]
}

/// `body` is `Blob::encode(&sample.body)`, made by the caller inside what it
/// times: the intake pays for it on every request.
pub fn new_webhook<'a>(
    conn: &'a ConnectionRow,
    sample: &'a Sample,
    webhook_id: &'a str,
    headers: &'a [(String, String)],
    body: &'a Blob,
) -> NewWebhook<'a> {
    NewWebhook {
        connection: conn,
        webhook_id,
        topic: sample.topic,
        api_version: Some(sample.api_version),
        occurred_at: Some("2026-11-23T12:00:00.000Z"),
        event_id: None,
        trace_id: "0123456789abcdef0123456789abcdef",
        headers,
        body,
        received_at: ionflux_gateway::store::now_ms(),
    }
}

/// An inbox row as the dispatcher would claim it, without a database.
pub fn row(sample: &Sample) -> InboxRow {
    let id = uuid::Uuid::new_v4().to_string();
    InboxRow {
        id: 42,
        connection_id: id.clone(),
        provider: ionflux_gateway::providers::shopify::ID.into(),
        workspace_id: uuid::Uuid::new_v4().to_string(),
        brand_id: uuid::Uuid::new_v4().to_string(),
        webhook_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
        topic: sample.topic.into(),
        account: "bench.myshopify.com".into(),
        api_version: Some(sample.api_version.into()),
        occurred_at: Some("2026-11-23T12:00:00.000Z".into()),
        event_id: Some("98880550-7158-44d4-b7cd-2c97c8a091b5".into()),
        trace_id: "0123456789abcdef0123456789abcdef".into(),
        headers: headers(sample, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        body: sample.body.clone(),
        received_at: ionflux_gateway::store::now_ms(),
        attempts: 1,
    }
}
