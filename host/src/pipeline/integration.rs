//! What happened to a connection? The `integration.*` PlatformEvents
//! (`connected`, `disconnected`, `redacted`, `paused`, `resumed`,
//! `token_refreshed`) on the workspace's topic, so that agents can react.
//!
//! Each is written by the store in the transaction that changes the
//! connection (the `integration_events` outbox) and published from there by
//! [`Publisher`]: a crash between the change and the publish leaves the row
//! pending, and the next pass (of any replica) sends it. Delivery is at
//! least once: the event's id is derived from its outbox row, so a repeat
//! (a crash between the sink's ack and the row's marking, two replicas on
//! one row) is byte-identical and consumers drop it. `integration.error`
//! keeps its own path (`providers::refresh`), as before.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::pipeline::event::{self, EventParts, Topics, TransformId};
use crate::pipeline::publish::{Record, Sink};
use crate::store::{InboxRow, IntegrationEventRow, Store};

/// What the envelope's `metadata.transform` names for these events.
pub const PRODUCER: &str = "gateway:connections";

/// How often the outbox is read when nothing woke the publisher (another
/// replica's change, a failed send).
const POLL: Duration = Duration::from_secs(2);
/// Events handed to the sink per pass.
const BATCH: i64 = 100;

/// The PlatformEvent of one outbox row: type
/// `ionflux.{provider}.ws_{w}.brand_{b}.integration.{kind}`, payload
/// `{connection_id, provider, account, status, reason, actor, at}` (and
/// `detail` when the row has one, e.g. `customer_redacted`'s customer and
/// orders), no secrets.
pub fn record(row: &IntegrationEventRow, topics: &Topics) -> Result<Record, serde_json::Error> {
    let kind = format!("integration.{}", row.kind);
    let mut payload = serde_json::json!({
        "connection_id": row.connection_id,
        "provider": row.provider,
        "account": row.account,
        "status": row.status,
        "reason": row.reason,
        "actor": row.actor,
        "at": row.created_at,
    });
    if let Some(detail) = &row.detail {
        payload["detail"] = serde_json::from_str(detail)?;
    }
    let payload = serde_json::to_vec(&payload)?;
    gateway_record(
        &GatewayEvent {
            connection_id: &row.connection_id,
            provider: &row.provider,
            account: &row.account,
            workspace_id: &row.workspace_id,
            brand_id: &row.brand_id,
            key: &format!("{kind}:{}", row.id),
            topic: &format!("ionflux/{kind}"),
            at: row.created_at,
            producer: PRODUCER,
            kind: &kind,
            payload: &payload,
        },
        topics,
    )
}

/// An event the gateway makes itself about a connection (no webhook
/// behind it).
pub struct GatewayEvent<'a> {
    pub connection_id: &'a str,
    pub provider: &'a str,
    pub account: &'a str,
    pub workspace_id: &'a str,
    pub brand_id: &'a str,
    /// Unique per event: with `at` and the connection, it makes the event
    /// id, so a retry is the same event.
    pub key: &'a str,
    /// `metadata.topic`.
    pub topic: &'a str,
    /// When it happened (epoch ms): the event's time.
    pub at: i64,
    /// `metadata.transform`.
    pub producer: &'a str,
    /// The type suffix, e.g. `integration.connected`.
    pub kind: &'a str,
    pub payload: &'a [u8],
}

/// Its record, built like a webhook's events (`event::platform_record`)
/// from a stand-in inbox row, so the envelope, headers and topic are the
/// same; its bytes depend only on `e`.
pub fn gateway_record(e: &GatewayEvent<'_>, topics: &Topics) -> Result<Record, serde_json::Error> {
    let mut stand_in = InboxRow {
        id: 0,
        connection_id: e.connection_id.to_owned(),
        provider: e.provider.to_owned(),
        workspace_id: e.workspace_id.to_owned(),
        brand_id: e.brand_id.to_owned(),
        webhook_id: e.key.to_owned(),
        topic: e.topic.to_owned(),
        account: e.account.to_owned(),
        api_version: None,
        occurred_at: None,
        event_id: None,
        trace_id: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        received_at: e.at,
        attempts: 0,
    };
    stand_in.trace_id = event::event_id(&stand_in, 0).simple().to_string();
    event::platform_record(
        &stand_in,
        topics,
        &TransformId {
            name: e.producer,
            digest: "",
        },
        0,
        &EventParts {
            kind: e.kind,
            schema_version: "v1",
            payload: e.payload,
        },
    )
}

/// Sends the outbox's pending events to the sink.
pub struct Publisher {
    store: Store,
    sink: Arc<Sink>,
    topics: Topics,
}

impl Publisher {
    pub fn new(store: Store, sink: Arc<Sink>, topics: Topics) -> Self {
        Self {
            store,
            sink,
            topics,
        }
    }

    /// Publishes until `shutdown` turns true: at once when this process
    /// committed an event, else every [`POLL`].
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let added = self.store.integration_events_added();
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.publish_pending().await;
            tokio::select! {
                _ = added.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                r = shutdown.wait_for(|stop| *stop) => {
                    if r.is_err() { return; }
                }
            }
        }
    }

    /// One pass, oldest first; answers how many the sink took. A failed
    /// send stops the pass (the rest keep their order for the next one).
    pub async fn publish_pending(&self) -> usize {
        let rows = match self.store.pending_integration_events(BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "pending integration events not read");
                return 0;
            }
        };
        let mut sent = 0;
        for row in rows {
            let record = match record(&row, &self.topics) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(connection = %row.connection_id, error = %e,
                        "integration event not built");
                    continue;
                }
            };
            match self.sink.send(std::slice::from_ref(&record)).await.pop() {
                Some(Ok(_)) => {
                    sent += 1;
                    if let Err(e) = self.store.integration_event_published(row.id).await {
                        tracing::warn!(connection = %row.connection_id, error = %e,
                            "integration event published but not marked; it will be sent again");
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(connection = %row.connection_id, error = %e,
                        "integration event not published; retried next pass");
                    break;
                }
                None => break,
            }
        }
        sent
    }
}
