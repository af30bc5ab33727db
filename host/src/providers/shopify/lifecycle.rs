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
//!   be delivered. The embedded event log is the sink (Kafka's stand-in), not
//!   our store, and is not touched.
//! - `customers/redact`, `customers/data_request`: nothing beyond the event.
//!   The agent platform acts on them; the gateway keeps no customer store.
//!   (Inbox bodies that mention the customer are not searched.)
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
            let done = store.apply_shop_redact(row, scope).await?;
            tracing::info!(inbox_id = row.id, shop = %row.account, ?scope,
                connections = done.connections, purged_webhooks = done.purged_webhooks,
                "shop redacted: tokens deleted, stored webhooks purged");
        }
        // customers/redact, customers/data_request: the event is the effect.
        _ => store.mark_lifecycle_applied(row.id).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
