//! Shopify for transform authors: typed views of the resources in webhook
//! bodies ([`Order`], [`Product`], [`Customer`], with [`Money`] for amounts),
//! and the naming conventions shared by the stock transforms, so that every
//! transform names the same webhook the same way ([`event_kind`],
//! [`schema_version`], [`event`]).
//!
//! ```
//! use ionflux_guest::shopify::Money;
//! let w = ionflux_guest::testing::webhook("orders/paid", r#"{"id": 1, "total_price": "598.94"}"#);
//! let order = w.order()?;
//! let big = order.total_price.is_some_and(|t| t.cmp_amount(&Money::new("500")).is_some_and(|o| o.is_ge()));
//! assert!(big);
//! # Ok::<(), ionflux_guest::Error>(())
//! ```

mod money;
pub(crate) mod resources;

pub use money::Money;
pub use resources::{Customer, LineItem, Order, Product, Variant};

use crate::{Event, Webhook, naming};

/// The event kind for a Shopify topic: `orders/create` → `orders.created`,
/// by the rules every platform follows ([`naming::topic_kind`]).
///
/// The action verbs `create`, `update` and `delete` become past tense so that
/// kinds read as facts; every other action (`paid`, `uninstalled`,
/// `data_request`, `updated`, …) is kept. Topics that already use dots
/// (`customer.tags_added`) pass through. The result is lower case and any
/// character outside `[a-z0-9_.]` becomes `_`, and empty segments become
/// `_`, so that odd topics still yield a kind the host accepts rather than a
/// dead letter.
pub fn event_kind(topic: &str) -> String {
    naming::topic_kind(topic)
}

/// `v1.shopify.{api_version}`, or `v1.shopify.unversioned` when the
/// webhook carried no (or an empty) `X-Shopify-API-Version`.
pub fn schema_version(api_version: Option<&str>) -> String {
    naming::schema_version("shopify", api_version)
}

/// A pass-through event for this webhook: kind from the topic, schema version
/// from the API version, payload [`Unchanged`](crate::Payload::Unchanged).
/// Never looks at the body.
pub fn event(webhook: &Webhook) -> Event {
    Event::new(event_kind(&webhook.topic))
        .schema_version(schema_version(webhook.api_version.as_deref()))
}

/// Shopify's `X-Shopify-Event-Id`: the same for every subscription's
/// delivery of one event (the delivery id differs), so it deduplicates
/// across subscriptions. A header, not a field, since 0.2.0 of the
/// contract names no platform.
pub fn event_id(webhook: &Webhook) -> Option<&str> {
    webhook.header("x-shopify-event-id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        for (topic, kind) in [
            ("orders/create", "orders.created"),
            ("products/update", "products.updated"),
            ("collections/delete", "collections.deleted"),
            ("orders/paid", "orders.paid"),
            ("orders/updated", "orders.updated"),
            ("app/uninstalled", "app.uninstalled"),
            ("customers/data_request", "customers.data_request"),
            ("customer.tags_added", "customer.tags_added"),
            ("Orders/Create", "orders.created"),
            ("orders/partially-fulfilled", "orders.partially_fulfilled"),
            ("orders/", "orders._"),
            ("a/b/create", "a.b.created"),
        ] {
            assert_eq!(event_kind(topic), kind, "{topic}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(schema_version(Some("2024-01")), "v1.shopify.2024-01");
        assert_eq!(schema_version(None), "v1.shopify.unversioned");
        assert_eq!(schema_version(Some(" ")), "v1.shopify.unversioned");
    }
}
