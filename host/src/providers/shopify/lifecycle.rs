//! What the lifecycle webhooks do besides becoming events: `app/uninstalled`
//! and the mandatory compliance topics (`customers/data_request`,
//! `customers/redact`, `shop/redact`).
//!
//! They are verified, stored and acknowledged like any webhook (a bad HMAC is
//! a 401; the acknowledgement never waits on Shopify or a token refresh), and
//! each becomes its event through the transform path. Only after that event
//! is published and its row finished does the dispatcher call
//! [`after_finish`], which applies the effect to the connections in the
//! webhook's [`scope`]:
//!
//! - `app/uninstalled`: every connection in scope installed before the
//!   webhook arrived loses its tokens (columns set NULL) and becomes
//!   `disconnected`; its webhook registrations are forgotten. A reinstall
//!   after the webhook is left alone.
//! - `shop/redact` (Shopify sends it 48 hours after an uninstall): every
//!   connection in scope loses its tokens and becomes `redacted`, and its
//!   finished stored webhooks (published and dead-lettered, this one
//!   included; dead letters keep their bodies in the inbox too) keep only what
//!   dedup and audit need: body `{}`, headers `[]`. Pending rows are left to
//!   be delivered. The event-log records those webhooks produced get the
//!   tombstone payload `{}` too, and their dead letters' reasons are
//!   cleared; the `shop/redact` webhook's own event is kept, as it tells
//!   consumers to do the same.
//! - `customers/redact`: the finished stored webhooks of the connections in
//!   scope that [`mentions`] the customer or one of `orders_to_redact` get
//!   the tombstone (body `{}`, headers `[]`), with the event-log records
//!   they produced (payload `{}`) and their dead letters' reason text; then
//!   one `integration.customer_redacted` event per connection (detail:
//!   customer id and orders) tells consumers to do the same. The bodies are
//!   compressed, so each is read and parsed here, once: the scan covers the
//!   shop's finished webhooks that retention still keeps, skipping bodies
//!   already purged. Not found: a mention anywhere else in a body (a note,
//!   a line item's property), webhooks still pending (delivered as they
//!   are), and records already sent to Kafka (the event asks consumers).
//!   The redaction webhook itself, and its own event, are kept as the
//!   record of the request, for the usual windows.
//! - `customers/data_request`: nothing beyond the event.
//!
//! **Scope: a webhook speaks only for the connections its secret verifies.**
//! The shop domain and the topic are headers, which Shopify's HMAC does not
//! cover, and a manual connection's secret is whatever its tenant chose; so a
//! tenant can sign any topic for any shop at its own connection's URL. The
//! effect therefore reaches the connection the webhook arrived at, and other
//! connections of the shop only when the webhook was certainly signed with
//! the app's client secret, which no tenant holds: then every connection of
//! the shop that verified with that secret when the webhook arrived (its
//! current secret, or its previous one inside its window). That is a
//! deliberate reach beyond the one connection: Shopify uninstalls an app from
//! a shop once, revoking every token of the app for that shop and dropping
//! all its subscriptions whichever brand's install made them, and it sends
//! `shop/redact` once per shop and app. Leaving the other installs of the app
//! `active` would keep tokens Shopify no longer honours and bodies the
//! merchant asked to be erased.
//!
//! Each effect is one transaction that also marks the row applied
//! (`inbox.lifecycle_applied_at`), and repeating it changes nothing, so a
//! retry is harmless. A crash between the row finishing and the effect leaves
//! the row unapplied; [`apply_due`] picks it up with the next lifecycle
//! webhook and at every start. Failures are logged and never hold up
//! delivery.

pub use crate::providers::lifecycle::scope;
use crate::store::oauth::{LifecycleRow, LifecycleScope, SecretOwners};
use crate::store::{InboxRow, Outcome, Store, StoreError};

pub const APP_UNINSTALLED: &str = "app/uninstalled";
pub const SHOP_REDACT: &str = "shop/redact";
pub const CUSTOMERS_REDACT: &str = "customers/redact";
pub const CUSTOMERS_DATA_REQUEST: &str = "customers/data_request";

/// The compliance topics Shopify requires every app to accept.
pub const COMPLIANCE_TOPICS: &[&str] = &[CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, SHOP_REDACT];

pub fn is_lifecycle_topic(topic: &str) -> bool {
    topic == APP_UNINSTALLED || COMPLIANCE_TOPICS.contains(&topic)
}

/// Whether a connection in `status` takes a webhook of `topic`.
///
/// - `active`, `refresh_failed`: everything. A failed refresh does not touch
///   the webhook HMAC (signed with the app's secret), so intake goes on.
/// - `disconnected`, `redacted`: only the compliance topics, which Shopify
///   sends after an uninstall (`shop/redact` comes 48 hours later) and
///   requires to be answered 200.
/// - anything else: nothing.
pub fn accepts_webhook(status: &str, topic: &str) -> bool {
    match status {
        "active" | "refresh_failed" => true,
        "disconnected" | "redacted" => COMPLIANCE_TOPICS.contains(&topic),
        _ => false,
    }
}

/// The dispatcher's hook, after `Store::finish`: when the batch published a
/// lifecycle webhook, applies every effect due. Never fails; errors are
/// logged and the effect stays due.
pub async fn after_finish(store: &Store, finished: &[(&InboxRow, Outcome)]) {
    let any = finished.iter().any(|(row, o)| {
        row.provider == super::ID
            && matches!(o, Outcome::Published(_))
            && is_lifecycle_topic(&row.topic)
    });
    if !any {
        return;
    }
    if let Err(e) = apply_due(store).await {
        tracing::warn!(error = %e, "lifecycle effects not applied; retried with the next one or at start");
    }
}

/// Applies the effect of every published lifecycle webhook not yet applied.
/// Answers how many were applied.
pub async fn apply_due(store: &Store) -> Result<usize, StoreError> {
    let mut applied = 0;
    loop {
        let rows = store.due_lifecycle_rows(super::ID, 100).await?;
        if rows.is_empty() {
            return Ok(applied);
        }
        for row in &rows {
            apply(store, row).await?;
            applied += 1;
        }
    }
}

async fn apply(store: &Store, row: &LifecycleRow) -> Result<(), StoreError> {
    let scope_of = |owners: Option<SecretOwners>| {
        owners.map_or(LifecycleScope::Connection, |o| scope(&o, row.received_at))
    };
    match row.topic.as_str() {
        APP_UNINSTALLED => {
            let scope = scope_of(store.secret_owners(&row.connection_id).await?);
            let done = store.apply_uninstall(row, scope).await?;
            tracing::info!(inbox_id = row.id, shop = %row.account, ?scope,
                connections = done.connections, "app uninstalled: tokens deleted, connection disconnected");
        }
        SHOP_REDACT => {
            let scope = scope_of(store.secret_owners(&row.connection_id).await?);
            // Before the effect that marks the row applied, so that a crash
            // in between repeats it.
            let connections = store.redaction_targets(row, scope).await?;
            let logged = store.purge_connections(&connections, row.id, 500).await?;
            tracing::info!(inbox_id = row.id, events = logged.events, "shop redacted: logged events purged");
            let done = store.apply_shop_redact(row, scope).await?;
            tracing::info!(inbox_id = row.id, shop = %row.account, ?scope,
                connections = done.connections, purged_webhooks = done.purged_webhooks,
                "shop redacted: tokens deleted, stored webhooks purged");
        }
        CUSTOMERS_REDACT => {
            let scope = scope_of(store.secret_owners(&row.connection_id).await?);
            redact_customer(store, row, scope).await?;
        }
        // customers/data_request: the event is the effect.
        _ => store.mark_lifecycle_applied(row.id).await?,
    }
    Ok(())
}

/// Bodies read per round of the customer scan.
const SCAN_BATCH: i64 = 200;

async fn redact_customer(
    store: &Store,
    row: &LifecycleRow,
    scope: LifecycleScope,
) -> Result<(), StoreError> {
    let request = store
        .inbox_body(row.id)
        .await?
        .and_then(|(body, _)| serde_json::from_slice::<serde_json::Value>(&body).ok());
    let Some(target) = request.as_ref().and_then(Redaction::of) else {
        // A body already purged (a shop redaction came first) or not
        // Shopify's shape: nothing to look for.
        tracing::warn!(inbox_id = row.id, "customers/redact without a customer id; nothing purged");
        return store.mark_lifecycle_applied(row.id).await;
    };
    let connections = store.redaction_targets(row, scope).await?;
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .finished_bodies(&connections, after, SCAN_BATCH)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, topic, body) in &page {
            if *id == row.id {
                continue;
            }
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(body)
                && target.mentioned_by(topic, &body)
            {
                found.push(*id);
            }
        }
    }
    let purged = store.purge_webhooks(&found).await?;
    let detail = serde_json::json!({
        "customer_id": target.customer,
        "orders_to_redact": target.orders,
    })
    .to_string();
    store.finish_customer_redact(row, &connections, &detail).await?;
    tracing::info!(inbox_id = row.id, shop = %row.account, ?scope,
        webhooks = purged.inbox, events = purged.events, dead_letters = purged.dead_letters,
        "customer redacted: stored webhooks and logged events purged");
    Ok(())
}

/// Whom a `customers/redact` body names: `customer.id` and
/// `orders_to_redact`, as text (Shopify sends numbers; strings compare the
/// same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub customer: String,
    pub orders: Vec<String>,
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl Redaction {
    pub fn of(body: &serde_json::Value) -> Option<Self> {
        let customer = id_text(body.pointer("/customer/id")?)?;
        let orders = body
            .get("orders_to_redact")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().filter_map(id_text).collect())
            .unwrap_or_default();
        Some(Self { customer, orders })
    }

    /// Whether a stored webhook of `topic` carries the customer or one of
    /// the orders where Shopify's payloads put them: an order's own `id`
    /// (`orders/*`), a customer's (`customers/*`), and `customer.id`,
    /// `customer_id` or `order_id` at the top of any body (orders,
    /// checkouts, refunds, fulfillments, transactions).
    pub fn mentioned_by(&self, topic: &str, body: &serde_json::Value) -> bool {
        let is = |pointer: &str, wanted: &dyn Fn(&str) -> bool| {
            body.pointer(pointer)
                .and_then(id_text)
                .is_some_and(|v| wanted(&v))
        };
        let customer = |v: &str| v == self.customer;
        let order = |v: &str| self.orders.iter().any(|o| o == v);
        (topic.starts_with("orders/") && is("/id", &order))
            || (topic.starts_with("customers/") && is("/id", &customer))
            || is("/customer/id", &customer)
            || is("/customer_id", &customer)
            || is("/order_id", &order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redaction_finds_the_customer_and_the_orders_where_shopify_puts_them() {
        let r = Redaction::of(&serde_json::json!({
            "shop_id": 1, "customer": {"id": 42, "email": "a@b.c"},
            "orders_to_redact": [100, "101"]
        }))
        .unwrap();
        assert_eq!(r.customer, "42");
        assert_eq!(r.orders, ["100", "101"]);
        let yes = [
            ("orders/create", serde_json::json!({"id": 101, "customer": {"id": 7}})),
            ("orders/updated", serde_json::json!({"id": 5, "customer": {"id": 42}})),
            ("customers/update", serde_json::json!({"id": 42})),
            ("refunds/create", serde_json::json!({"id": 9, "order_id": 100})),
            ("checkouts/create", serde_json::json!({"customer_id": "42"})),
        ];
        for (topic, body) in &yes {
            assert!(r.mentioned_by(topic, body), "{topic} {body}");
        }
        let no = [
            ("orders/create", serde_json::json!({"id": 5, "customer": {"id": 7}})),
            ("customers/update", serde_json::json!({"id": 100})),
            ("products/update", serde_json::json!({"id": 42})),
            ("orders/create", serde_json::json!({"id": 5, "note": "customer 42"})),
        ];
        for (topic, body) in &no {
            assert!(!r.mentioned_by(topic, body), "{topic} {body}");
        }
        assert!(Redaction::of(&serde_json::json!({})).is_none());
    }

    #[test]
    fn intake_policy_by_status() {
        for topic in ["orders/create", APP_UNINSTALLED, SHOP_REDACT] {
            assert!(accepts_webhook("active", topic));
            assert!(accepts_webhook("refresh_failed", topic));
        }
        assert!(!accepts_webhook("disconnected", "orders/create"));
        assert!(!accepts_webhook("disconnected", APP_UNINSTALLED));
        assert!(accepts_webhook("disconnected", SHOP_REDACT));
        assert!(accepts_webhook("redacted", CUSTOMERS_REDACT));
        assert!(!accepts_webhook("paused", SHOP_REDACT));
    }
}
