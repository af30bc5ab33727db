//! Sales sentinel ("Agent 004"): flags high-value orders.
//!
//! For `orders/create` and `orders/paid`, an order whose `total_price` is at
//! least the route's threshold becomes one `orders.high_value` event; every
//! other order is dropped (zero events). Every other topic is dropped too,
//! so the transform can sit on a broad route (`orders/*`, or even `*`)
//! without turning anything else into events; route the other topics to
//! another transform if they matter.
//!
//! Both topics pass: a shop that routes both gets an event when the order
//! is placed and another when it is paid. Route only one topic to hear once.
//!
//! # Route config
//!
//! ```json
//! { "threshold": "500.00", "currency": "USD" }
//! ```
//!
//! * `threshold`: the smallest `total_price` that counts as high value, as
//!   a decimal string or a JSON number (`"500.00"`, `500`, `499.5`). The
//!   comparison is exact, in the order's shop currency, and inclusive.
//!   Default `"1000.00"`.
//! * `currency`: if set, orders in any other shop currency (`currency`,
//!   compared ignoring case) are dropped, since a threshold means nothing
//!   across currencies. Default: none, every currency passes.
//!
//! `{}` (no config) means a threshold of 1000.00 in any currency. Unknown
//! settings, a threshold that is not a plain decimal and an empty currency
//! are refused with `failed` on every webhook, so that a typo cannot
//! silently drop (or flag) every order.
//!
//! # Event
//!
//! * kind `orders.high_value`;
//! * schema version `v1.shopify.{api_version}` (see
//!   [`shopify::schema_version`]);
//! * payload: the order object as Shopify sent it, plus a `sentinel` key
//!   with what the decision was based on:
//!
//! ```json
//! {
//!   "id": 820982911946154508, "name": "#1001", "total_price": "598.94", "…": "…",
//!   "sentinel": {
//!     "item_count": 3,
//!     "currency": "USD",
//!     "total_price": "598.94",
//!     "threshold": "500.00",
//!     "customer_orders_count": 12
//!   }
//! }
//! ```
//!
//! `item_count` is the sum of the line items' quantities;
//! `customer_orders_count` is `customer.orders_count`, left out when the
//! order has no customer or the API version no longer sends it. Amounts are
//! strings, like Shopify's.
//!
//! A body that is not a JSON object, or an order without a readable
//! `total_price`, is refused with `invalid-input`.

use ionflux_guest::shopify::{self, Money, Order};
use ionflux_guest::{Error, Event, Result, Webhook};
use serde::{Deserialize, Serialize};

/// The topics this transform looks at; everything else is dropped.
pub const TOPICS: &[&str] = &["orders/create", "orders/paid"];

/// The kind of the one event this transform emits.
pub const KIND: &str = "orders.high_value";

/// The threshold when the route sets none.
pub const DEFAULT_THRESHOLD: &str = "1000.00";

/// The route config; see the crate docs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub threshold: Money,
    pub currency: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: Money::new(DEFAULT_THRESHOLD),
            currency: None,
        }
    }
}

impl Config {
    /// The route's config, checked. Errors are [`Error::Failed`]: the route
    /// is wrong, not the webhook.
    pub fn load() -> Result<Self> {
        // serde would also read a struct from a JSON array, by position;
        // a route config is meant to be an object.
        let raw: serde_json::Value = ionflux_guest::config()?;
        if !raw.is_object() {
            return Err(Error::failed("route config: not a JSON object"));
        }
        let config =
            Config::deserialize(&raw).map_err(|e| Error::failed(format!("route config: {e}")))?;
        if !config.threshold.is_valid() {
            return Err(Error::failed(format!(
                "route config: threshold {:?} is not a decimal amount",
                config.threshold.as_str()
            )));
        }
        if config
            .currency
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(Error::failed(
                "route config: currency is empty (leave it out to accept every currency)",
            ));
        }
        Ok(config)
    }
}

/// What the decision was based on, added to the payload under `sentinel`.
#[derive(Debug, Serialize)]
struct Sentinel<'a> {
    item_count: u64,
    currency: &'a str,
    total_price: &'a Money,
    threshold: &'a Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_orders_count: Option<u64>,
}

/// The exported transform.
pub fn transform(input: Webhook) -> Result<Option<Event>> {
    // Read before the topic check so that a broken route shows up on its
    // first webhook, not only once an order happens to arrive.
    let config = Config::load()?;
    if !TOPICS.contains(&input.topic.as_str()) {
        ionflux_guest::debug!("{}: not one of {TOPICS:?}, dropped", input.topic);
        return Ok(None);
    }

    // One parse for both uses: the typed view to decide, the document to
    // republish with every field Shopify sent.
    let mut body = input.json_value()?;
    let order = Order::from_value(&body)?;
    let total = order
        .total_price
        .as_ref()
        .filter(|t| t.is_valid())
        .ok_or_else(|| Error::invalid_input("order has no decimal total_price"))?;

    if let Some(wanted) = &config.currency
        && !order.currency.eq_ignore_ascii_case(wanted.trim())
    {
        ionflux_guest::debug!(
            "order {}: currency {:?}, route wants {wanted}: dropped",
            order.id,
            order.currency
        );
        return Ok(None);
    }
    if total
        .cmp_amount(&config.threshold)
        .is_some_and(|o| o.is_lt())
    {
        ionflux_guest::debug!(
            "order {}: {total} below {}: dropped",
            order.id,
            config.threshold
        );
        return Ok(None);
    }

    let sentinel = Sentinel {
        item_count: order.item_count(),
        currency: &order.currency,
        total_price: total,
        threshold: &config.threshold,
        customer_orders_count: order.customer.as_ref().and_then(|c| c.orders_count),
    };
    let sentinel = serde_json::to_value(&sentinel).map_err(Error::failed)?;
    // from_value above already refused anything but an object.
    if let Some(fields) = body.as_object_mut() {
        fields.insert("sentinel".to_owned(), sentinel);
    }
    ionflux_guest::info!(
        "order {} ({total} {}) is high value",
        order.id,
        order.currency
    );
    let bytes = serde_json::to_vec(&body).map_err(Error::failed)?;
    Ok(Some(
        Event::new(KIND)
            .schema_version(shopify::schema_version(input.api_version.as_deref()))
            .json_bytes(bytes),
    ))
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::{Payload, is_valid_kind, testing};
    use serde_json::{Value, json};

    use super::*;

    const SAMPLES: &str = "../../../shared/data/shopify-webhooks";

    fn order(total: &str, currency: &str) -> String {
        json!({
            "id": 820982911946154508u64,
            "name": "#1001",
            "currency": currency,
            "total_price": total,
            "line_items": [
                { "id": 1, "title": "Shirt", "quantity": 2, "price": "100.00" },
                { "id": 2, "title": "Hat", "quantity": 3, "price": "50.00" }
            ],
            "customer": { "id": 7, "orders_count": 12 }
        })
        .to_string()
    }

    fn run(config: &str, topic: &str, body: impl Into<Vec<u8>>) -> Result<Vec<Event>> {
        testing::with_config(config, || {
            testing::run(transform, testing::webhook(topic, body))
        })
    }

    fn payload(event: &Event) -> Value {
        event.json_payload_value().expect("json payload").unwrap()
    }

    #[test]
    fn above_threshold_emits_the_order_with_sentinel_fields() {
        let events = run(
            r#"{"threshold": "500.00"}"#,
            "orders/create",
            order("598.94", "USD"),
        )
        .unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, "orders.high_value");
        assert!(is_valid_kind(&e.kind));
        assert_eq!(e.schema_version, "v1.shopify.2024-01");
        let p = payload(e);
        // The original order is all there, the big id exactly.
        assert_eq!(p["id"].as_u64(), Some(820982911946154508));
        assert_eq!(p["name"], "#1001");
        assert_eq!(p["line_items"][1]["title"], "Hat");
        assert_eq!(
            p["sentinel"],
            json!({
                "item_count": 5,
                "currency": "USD",
                "total_price": "598.94",
                "threshold": "500.00",
                "customer_orders_count": 12
            })
        );
    }

    #[test]
    fn below_threshold_is_dropped() {
        for total in ["499.99", "0.00", "-600.00"] {
            let events = run(
                r#"{"threshold": "500"}"#,
                "orders/paid",
                order(total, "USD"),
            )
            .unwrap();
            assert!(events.is_empty(), "{total}");
        }
    }

    #[test]
    fn equal_to_threshold_counts() {
        for (threshold, total) in [
            (r#""500.00""#, "500.00"),
            (r#""500""#, "500.00"),
            ("500", "500.0"),
            ("499.5", "499.50"),
        ] {
            let config = format!(r#"{{"threshold": {threshold}}}"#);
            let events = run(&config, "orders/paid", order(total, "USD")).unwrap();
            assert_eq!(events.len(), 1, "{threshold} vs {total}");
        }
    }

    #[test]
    fn default_threshold_is_1000() {
        let high = run("{}", "orders/create", order("1000.00", "EUR")).unwrap();
        assert_eq!(high.len(), 1);
        assert_eq!(payload(&high[0])["sentinel"]["threshold"], "1000.00");
        let low = run("{}", "orders/create", order("999.99", "EUR")).unwrap();
        assert!(low.is_empty());
    }

    #[test]
    fn currency_filter() {
        let config = r#"{"threshold": 100, "currency": "USD"}"#;
        assert_eq!(
            run(config, "orders/create", order("200.00", "USD"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            run(config, "orders/create", order("200.00", "usd"))
                .unwrap()
                .len(),
            1
        );
        assert!(
            run(config, "orders/create", order("200.00", "CAD"))
                .unwrap()
                .is_empty()
        );
        assert!(
            run(config, "orders/create", order("200.00", ""))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn other_topics_emit_nothing_and_are_not_parsed() {
        for topic in [
            "orders/updated",
            "orders/cancelled",
            "orders/fulfilled",
            "products/create",
            "customers/create",
            "app/uninstalled",
        ] {
            let events = run(r#"{"threshold": 1}"#, topic, order("5000.00", "USD")).unwrap();
            assert!(events.is_empty(), "{topic}");
            // Not even read: a non-JSON body on another topic is no error.
            assert!(run("{}", topic, "not json").unwrap().is_empty(), "{topic}");
        }
    }

    #[test]
    fn bad_config_fails() {
        for config in [
            r#"{"threshold": "lots"}"#,
            r#"{"threshold": "1e3"}"#,
            r#"{"threshold": true}"#,
            r#"{"treshold": "500"}"#,
            r#"{"currency": ""}"#,
            r#"{"currency": 840}"#,
            "[]",
            "not json",
        ] {
            for topic in ["orders/create", "products/update"] {
                let err = run(config, topic, order("600.00", "USD")).unwrap_err();
                assert!(matches!(err, Error::Failed(_)), "{config}: {err:?}");
            }
        }
    }

    #[test]
    fn unreadable_orders_are_invalid_input() {
        for body in [
            "not json".to_owned(),
            "[1, 2]".to_owned(),
            "".to_owned(),
            json!({ "id": 1 }).to_string(),
            json!({ "id": 1, "total_price": "n/a" }).to_string(),
            json!({ "id": "x", "total_price": "600.00" }).to_string(),
        ] {
            let err = run("{}", "orders/create", body.as_str()).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn orders_without_customer_omit_orders_count() {
        let body = json!({ "id": 1, "currency": "USD", "total_price": "10", "customer": null });
        let events = run(r#"{"threshold": 0}"#, "orders/create", body.to_string()).unwrap();
        let sentinel = &payload(&events[0])["sentinel"];
        assert_eq!(sentinel["item_count"], 0);
        assert!(
            sentinel.get("customer_orders_count").is_none(),
            "{sentinel}"
        );
    }

    #[test]
    fn unversioned_webhook() {
        let input = testing::webhook("orders/create", order("2000", "USD")).with_api_version(None);
        let events = testing::run(transform, input).unwrap();
        assert_eq!(events[0].schema_version, "v1.shopify.unversioned");
    }

    /// Shopify's own example payloads: totals 359.97, 388.00 and 404.95 USD,
    /// and a customer without `orders_count`.
    #[test]
    fn real_samples() {
        let samples = [
            (
                "orders/create",
                "orders__create/gadget-schemas-2023-07-1.json",
            ),
            (
                "orders/create",
                "orders__create/gadget-schemas-2026-04-1.json",
            ),
            ("orders/paid", "orders__paid/gadget-schemas-2024-04-1.json"),
            ("orders/paid", "orders__paid/gadget-schemas-2025-10-1.json"),
        ];
        for (topic, file) in samples {
            let raw = testing::fixture(format!("{SAMPLES}/{file}"));
            let original: Value = serde_json::from_slice(&raw).unwrap();
            let version = &file[file.find("schemas-").unwrap() + 8..][..7];
            let input = testing::webhook(topic, raw.clone()).with_api_version(Some(version));

            let events = testing::with_config(r#"{"threshold": "300", "currency": "USD"}"#, || {
                testing::run(transform, input.clone())
            })
            .unwrap();
            assert_eq!(events.len(), 1, "{file}");
            let e = &events[0];
            assert_eq!(e.schema_version, format!("v1.shopify.{version}"));
            assert!(matches!(e.payload, Payload::Json(_)));
            let mut p = payload(e);
            let sentinel = p.as_object_mut().unwrap().remove("sentinel").unwrap();
            assert_eq!(p, original, "{file}: the order must pass through intact");
            let items: u64 = original["line_items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|li| li["quantity"].as_u64().unwrap())
                .sum();
            assert_eq!(
                sentinel,
                json!({
                    "item_count": items,
                    "currency": "USD",
                    "total_price": original["total_price"],
                    "threshold": "300"
                }),
                "{file}"
            );

            // Same order, default threshold (1000.00) and a foreign
            // currency filter: both drop it.
            for config in ["{}", r#"{"threshold": 1, "currency": "EUR"}"#] {
                let events =
                    testing::with_config(config, || testing::run(transform, input.clone()))
                        .unwrap();
                assert!(events.is_empty(), "{file} with {config}");
            }
        }
    }
}
