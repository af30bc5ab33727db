//! An ionflux transform: orders carrying a tag become `orders.tagged`
//! events, everything else is dropped.
//!
//! Route config: `{"tag": "vip"}` (the default).

use ionflux_guest::{Event, Result, Webhook, shopify};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    tag: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { tag: "vip".into() }
    }
}

pub fn transform(input: Webhook) -> Result<Option<Event>> {
    let config: Config = ionflux_guest::config()?; // bad config → Error::Failed
    if !input.topic.starts_with("orders/") {
        return Ok(None); // zero events: filtered out
    }
    let order = input.order()?; // not an order → Error::InvalidInput
    if !order
        .tag_list()
        .any(|t| t.eq_ignore_ascii_case(&config.tag))
    {
        return Ok(None);
    }
    ionflux_guest::info!("order {} is tagged {}", order.name, config.tag);
    // Same schema version as the stock transform; the body goes out untouched.
    Ok(Some(shopify::event(&input).kind("orders.tagged")))
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::{Error, Payload, testing};

    use super::*;

    #[test]
    fn tagged_orders_pass() {
        let input = testing::webhook(
            "orders/create",
            r##"{"id": 1, "name": "#1001", "tags": "new, VIP"}"##,
        );
        let events = testing::run(transform, input).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "orders.tagged");
        assert_eq!(events[0].schema_version, "v1.shopify.2024-01");
        assert_eq!(events[0].payload, Payload::Unchanged);
    }

    #[test]
    fn the_rest_is_dropped() {
        let untagged = testing::webhook("orders/create", r#"{"id": 1, "tags": "new"}"#);
        assert!(testing::run(transform, untagged).unwrap().is_empty());
        let product = testing::webhook("products/create", r#"{"id": 1, "tags": "vip"}"#);
        assert!(testing::run(transform, product).unwrap().is_empty());
    }

    #[test]
    fn config_and_errors() {
        let input = testing::webhook("orders/paid", r#"{"id": 1, "tags": "wholesale"}"#);
        let events = testing::with_config(r#"{"tag": "wholesale"}"#, || {
            testing::run(transform, input.clone())
        });
        assert_eq!(events.unwrap().len(), 1);
        let bad = testing::with_config(r#"{"tag": 3}"#, || testing::run(transform, input));
        assert!(matches!(bad, Err(Error::Failed(_))));
        let garbage = testing::webhook("orders/paid", "not json");
        assert!(matches!(
            testing::run(transform, garbage),
            Err(Error::InvalidInput(_))
        ));
    }
}
