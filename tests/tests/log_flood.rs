//! A hostile guest's log flood is rate-limited, tagged with its tenant, and
//! does not hold up another tenant's webhooks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ionflux_tests::{Gateway, Hook, Options, hostile_wasm};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Counts guest log lines per workspace.
#[derive(Clone, Default)]
struct GuestLines(Arc<Mutex<HashMap<String, usize>>>);

struct Workspace(Option<String>);

impl Visit for Workspace {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "workspace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for GuestLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "ionflux::guest" {
            return;
        }
        let mut ws = Workspace(None);
        event.record(&mut ws);
        if let Some(ws) = ws.0 {
            *self.0.lock().unwrap().entry(ws).or_default() += 1;
        }
    }
}

#[tokio::test]
async fn a_log_flood_is_capped_and_other_tenants_are_served() {
    let lines = GuestLines::default();
    tracing::subscriber::set_global_default(Registry::default().with(lines.clone())).unwrap();

    let gw = Gateway::start(Options::default()).await;
    let flooder = gw.connect("flooder.myshopify.com").await;
    let quiet = gw.connect("quiet.myshopify.com").await;
    let digest = gw.upload("hostile", &hostile_wasm()).await;
    // 100k log calls per webhook are legitimate CPU work; the budget keeps
    // this test about the log limit, not the clock.
    gw.route_brand_with_limits(&flooder, "*", &digest, "{}", Some(r#"{"cpu_ms": 10000}"#))
        .await;

    const FLOODS: usize = 10;
    let mut quiet_ids = Vec::new();
    for i in 0..FLOODS {
        let flood = Hook::shopify(&flooder, "hostile/flood", "2024-01", br#"{"id":1}"#);
        assert_eq!(gw.send(&flood).await.0, 200);
        let body = format!(r#"{{"id": {i}}}"#);
        let normal = Hook::shopify(&quiet, "orders/create", "2024-01", body.as_bytes());
        assert_eq!(gw.send(&normal).await.0, 200);
        quiet_ids.push(normal.header("x-shopify-webhook-id").unwrap().to_string());
    }
    gw.settle().await;

    let events = gw.logged_events().await;
    assert!(gw.store().dead_letters(10).await.unwrap().is_empty());
    assert_eq!(
        events.len(),
        2 * FLOODS,
        "every webhook of both tenants published"
    );
    for id in &quiet_ids {
        assert!(
            events
                .iter()
                .any(|e| e["metadata"]["webhook_id"] == id.as_str())
        );
    }
    let counted = lines.0.lock().unwrap().clone();
    let flooded = counted
        .get(&flooder.created.workspace_id)
        .copied()
        .unwrap_or_default();
    // 10 × 100 000 calls; at most 100 lines per call plus one summary each
    // get through, and the per-workspace bucket cuts that further.
    assert!(
        flooded > 0,
        "the flooder's lines are tagged with its workspace"
    );
    assert!(flooded <= FLOODS * 101, "{flooded} lines got through");
    assert_eq!(counted.get(&quiet.created.workspace_id), None);
    gw.stop().await;
}
