//! Typed views of the Shopify resources most transforms read.
//!
//! They are views, not schemas: each struct holds the fields authors reach
//! for, ignores every other field, and reads a missing or `null` field as
//! its default (`0`, `""`, empty list, `false`) or `None`. A webhook body
//! therefore always parses as long as it is a JSON object with sensibly
//! typed fields, across API versions, and a transform that needs something
//! else reads it from [`Webhook::json_value`](crate::Webhook::json_value).
//!
//! Ids are `u64`: Shopify ids can exceed 2^53, which serde_json reads
//! exactly (unlike JavaScript). Money is [`Money`], the decimal text Shopify
//! sent. Timestamps are the ISO 8601 text as sent (the guest has no clock
//! and no time zone data to interpret them with).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::Money;
use crate::Error;

// A missing field and an explicit `null` mean the same to a reader, and
// Shopify sends `null` for many fields a view exposes as plain values.
use crate::view::nullable;

/// REST payloads send tags as one comma-separated string
/// (`"tag1, tag2"`), newer event-style payloads as a list; both end up as
/// the string form.
fn tags<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        Text(String),
        List(Vec<String>),
    }
    Ok(match Option::<Tags>::deserialize(deserializer)? {
        None => String::new(),
        Some(Tags::Text(s)) => s,
        Some(Tags::List(list)) => list.join(", "),
    })
}

/// The tags of a comma-separated tag string, trimmed, empty ones skipped.
fn split_tags(tags: &str) -> impl Iterator<Item = &str> {
    tags.split(',').map(str::trim).filter(|t| !t.is_empty())
}

// serde's derived structs also accept a JSON array (fields by position),
// which for a webhook body is never meant; hence the explicit object checks.

fn from_value<T: DeserializeOwned>(value: &serde_json::Value, what: &str) -> Result<T, Error> {
    if !value.is_object() {
        return Err(Error::invalid_input(format!(
            "not a Shopify {what}: not a JSON object"
        )));
    }
    T::deserialize(value).map_err(|e| Error::invalid_input(format!("not a Shopify {what}: {e}")))
}

/// Parses straight from the bytes: no intermediate `Value`, which would
/// cost the guest time and memory for every field the view ignores.
pub(crate) fn from_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    crate::view::from_body(body, &format!("Shopify {what}"))
}

/// An order, as in `orders/create`, `orders/paid`, `orders/updated`,
/// `orders/fulfilled`, `orders/cancelled`, … (`orders/delete` carries only
/// the id, and `orders/edited` wraps an `order_edit` instead).
///
/// ```
/// let w = ionflux_guest::testing::webhook(
///     "orders/create",
///     r#"{"id": 820982911946154508, "total_price": "598.94",
///         "line_items": [{"quantity": 2}, {"quantity": 1}], "customer": null}"#,
/// );
/// let order = w.order().unwrap();
/// assert_eq!(order.id, 820982911946154508);
/// assert_eq!(order.total_price.as_ref().unwrap().cents(), Some(59894));
/// assert_eq!(order.item_count(), 3);
/// assert!(order.customer.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Order {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    /// The shop-facing name, e.g. `"#1001"`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    pub email: Option<String>,
    /// The shop currency, e.g. `"USD"`: the currency of the `*_price`
    /// fields here.
    #[serde(deserialize_with = "nullable")]
    pub currency: String,
    /// The currency the buyer saw.
    pub presentment_currency: Option<String>,
    pub total_price: Option<Money>,
    pub subtotal_price: Option<Money>,
    pub total_tax: Option<Money>,
    pub total_discounts: Option<Money>,
    /// e.g. `"pending"`, `"paid"`, `"refunded"`, `"voided"`.
    pub financial_status: Option<String>,
    /// `None` while nothing is fulfilled; then `"partial"`, `"fulfilled"`.
    pub fulfillment_status: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub line_items: Vec<LineItem>,
    pub customer: Option<Customer>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub cancelled_at: Option<String>,
    /// Comma-separated, as Shopify sends it; see [`Order::tag_list`].
    #[serde(deserialize_with = "tags")]
    pub tags: String,
    /// A test order (Shopify's bogus gateway or a test notification).
    #[serde(deserialize_with = "nullable")]
    pub test: bool,
}

impl Order {
    /// Reads an order out of an already parsed body, so a transform that
    /// also needs the raw document parses the bytes only once. Errors are
    /// [`Error::InvalidInput`].
    pub fn from_value(value: &serde_json::Value) -> Result<Self, Error> {
        from_value(value, "order")
    }

    /// Units ordered: the sum of the line items' quantities.
    pub fn item_count(&self) -> u64 {
        self.line_items
            .iter()
            .fold(0, |n, item| n.saturating_add(item.quantity))
    }

    /// The tags one by one, trimmed.
    pub fn tag_list(&self) -> impl Iterator<Item = &str> {
        split_tags(&self.tags)
    }
}

/// One line of an [`Order`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LineItem {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    /// `None` for custom items and deleted products.
    pub product_id: Option<u64>,
    pub variant_id: Option<u64>,
    #[serde(deserialize_with = "nullable")]
    pub title: String,
    #[serde(deserialize_with = "nullable")]
    pub quantity: u64,
    /// Unit price, before discounts.
    pub price: Option<Money>,
    pub sku: Option<String>,
}

/// A product, as in `products/create` and `products/update`
/// (`products/delete` carries only the id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Product {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    #[serde(deserialize_with = "nullable")]
    pub title: String,
    #[serde(deserialize_with = "nullable")]
    pub vendor: String,
    #[serde(deserialize_with = "nullable")]
    pub product_type: String,
    /// `"active"`, `"draft"` or `"archived"`.
    pub status: Option<String>,
    /// Comma-separated, as Shopify sends it; see [`Product::tag_list`].
    #[serde(deserialize_with = "tags")]
    pub tags: String,
    #[serde(deserialize_with = "nullable")]
    pub variants: Vec<Variant>,
}

impl Product {
    /// Like [`Order::from_value`].
    pub fn from_value(value: &serde_json::Value) -> Result<Self, Error> {
        from_value(value, "product")
    }

    /// The tags one by one, trimmed.
    pub fn tag_list(&self) -> impl Iterator<Item = &str> {
        split_tags(&self.tags)
    }
}

/// One variant of a [`Product`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Variant {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    pub product_id: Option<u64>,
    #[serde(deserialize_with = "nullable")]
    pub title: String,
    pub price: Option<Money>,
    pub compare_at_price: Option<Money>,
    pub sku: Option<String>,
    /// Can be negative when overselling is allowed.
    pub inventory_quantity: Option<i64>,
}

/// A customer, as in `customers/create` and `customers/update`, and as
/// [`Order::customer`]. Newer API versions leave out `orders_count` and
/// `total_spent`, hence the options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Customer {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub orders_count: Option<u64>,
    pub total_spent: Option<Money>,
    /// Comma-separated, as Shopify sends it; see [`Customer::tag_list`].
    #[serde(deserialize_with = "tags")]
    pub tags: String,
    pub created_at: Option<String>,
}

impl Customer {
    /// Like [`Order::from_value`].
    pub fn from_value(value: &serde_json::Value) -> Result<Self, Error> {
        from_value(value, "customer")
    }

    /// The tags one by one, trimmed.
    pub fn tag_list(&self) -> impl Iterator<Item = &str> {
        split_tags(&self.tags)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::testing;

    /// Every sample body of the given entity, with its topic from the
    /// directory name (`orders__create` → `orders/create`).
    fn samples(entity: &str) -> Vec<(String, Vec<u8>)> {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/shopify-webhooks");
        let mut out = Vec::new();
        for topic_dir in std::fs::read_dir(&dir).expect("sample directory") {
            let topic_dir = topic_dir.unwrap().path();
            let name = topic_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with(&format!("{entity}__")) {
                continue;
            }
            for file in std::fs::read_dir(&topic_dir).unwrap() {
                let file = file.unwrap().path();
                out.push((name.replace("__", "/"), testing::fixture(file)));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_order_sample_parses() {
        let samples = samples("orders");
        assert!(samples.len() >= 12, "only {} order samples", samples.len());
        for (topic, body) in samples {
            let w = testing::webhook(&topic, body);
            let order = w.order().unwrap_or_else(|e| panic!("{topic}: {e}"));
            let via_value = Order::from_value(&w.json_value().unwrap()).unwrap();
            assert_eq!(order, via_value, "{topic}");
            if topic == "orders/edited" {
                continue; // the body is {"order_edit": …}, not an order
            }
            // Beyond 2^53: the sample's (already rounded) id, read exactly.
            assert_eq!(order.id, 820982911946154500, "{topic}");
            if topic == "orders/delete" {
                continue;
            }
            assert_eq!(order.name, "#9999", "{topic}");
            assert_eq!(order.currency, "USD", "{topic}");
            assert_eq!(order.email.as_deref(), Some("jon@example.com"), "{topic}");
            assert!(order.test, "{topic}");
            assert_eq!(order.tag_list().collect::<Vec<_>>(), ["tag1", "tag2"]);
            assert!(order.created_at.is_some(), "{topic}");
            assert!(order.financial_status.is_some(), "{topic}");
            assert!(!order.line_items.is_empty(), "{topic}");
            // Every amount reads exactly, and agrees with its float.
            let amounts = [
                &order.total_price,
                &order.subtotal_price,
                &order.total_discounts,
            ]
            .into_iter()
            .chain(order.line_items.iter().map(|li| &li.price));
            for amount in amounts {
                let amount = amount.as_ref().expect("amount");
                let cents = amount.cents().expect("exact cents");
                assert_eq!(Some(cents as f64 / 100.0), amount.as_f64(), "{topic}");
            }
            assert_eq!(order.total_discounts.as_ref().unwrap().cents(), Some(2000));
            assert!(order.total_price.as_ref().unwrap().cents().unwrap() > 0);
            assert_eq!(order.total_tax.as_ref().unwrap().cents(), Some(0));
            let customer = order.customer.as_ref().expect("customer");
            assert!(customer.id > 0, "{topic}");
            assert_eq!(customer.first_name.as_deref(), Some("John"));
            for li in &order.line_items {
                assert!(
                    li.id > 0 && li.quantity > 0 && !li.title.is_empty(),
                    "{topic}"
                );
                assert!(li.sku.is_some(), "{topic}");
            }
        }
    }

    #[test]
    fn every_product_sample_parses() {
        let samples = samples("products");
        assert!(samples.len() >= 4, "only {} product samples", samples.len());
        for (topic, body) in samples {
            let w = testing::webhook(&topic, body);
            let product = w.product().unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(
                product,
                Product::from_value(&w.json_value().unwrap()).unwrap()
            );
            assert_eq!(product.id, 788032119674292900, "{topic}");
            if topic == "products/delete" {
                continue;
            }
            assert_eq!(product.title, "Example T-Shirt");
            assert_eq!(product.vendor, "Acme");
            assert_eq!(product.product_type, "Shirts");
            assert_eq!(product.status.as_deref(), Some("active"));
            assert_eq!(
                product.tag_list().collect::<Vec<_>>(),
                ["example", "mens", "t-shirt"]
            );
            assert!(!product.variants.is_empty());
            for v in &product.variants {
                assert_eq!(v.product_id, Some(product.id), "{topic}");
                assert_eq!(v.price.as_ref().unwrap().cents(), Some(1999), "{topic}");
                assert_eq!(v.compare_at_price.as_ref().unwrap().cents(), Some(2499));
                assert!(v.inventory_quantity.is_some(), "{topic}");
            }
        }
    }

    #[test]
    fn every_customer_sample_parses() {
        let samples = samples("customers");
        assert!(
            samples.len() >= 6,
            "only {} customer samples",
            samples.len()
        );
        for (topic, body) in samples {
            let w = testing::webhook(&topic, body);
            let customer = w.customer().unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(
                customer,
                Customer::from_value(&w.json_value().unwrap()).unwrap()
            );
            match topic.as_str() {
                // Compliance topics: the customer is nested, not the body.
                "customers/data_request" | "customers/redact" => {
                    assert_eq!(customer.id, 0);
                    let nested = w.json_value().unwrap()["customer"].clone();
                    assert_eq!(Customer::from_value(&nested).unwrap().id, 191167);
                }
                "customers/delete" => assert_eq!(customer.id, 706405506930370000),
                _ => {
                    assert_eq!(customer.id, 706405506930370000, "{topic}");
                    assert_eq!(customer.first_name.as_deref(), Some("Bob"));
                    assert_eq!(customer.last_name.as_deref(), Some("Biller"));
                }
            }
        }
        // The one older sample that still has the order statistics.
        let old = testing::fixture(
            "../../shared/data/shopify-webhooks/customers__update/gadget-schemas-2024-01-1.json",
        );
        let c = testing::webhook("customers/update", old)
            .customer()
            .unwrap();
        assert_eq!(c.orders_count, Some(1));
        assert_eq!(c.total_spent.unwrap().cents(), Some(10000));
        assert_eq!(c.email.as_deref(), Some("bob@biller.com"));
    }

    #[test]
    fn nulls_and_gaps_read_as_defaults() {
        let w = testing::webhook(
            "orders/create",
            r#"{"id": null, "name": null, "line_items": null, "tags": null, "test": null,
                "customer": {"id": 18446744073709551615, "tags": ["a", "b"]},
                "unknown": {"deeply": ["nested"]}}"#,
        );
        let order = w.order().unwrap();
        assert_eq!(order.id, 0);
        assert_eq!(order.name, "");
        assert!(order.line_items.is_empty() && !order.test);
        assert_eq!(order.tag_list().count(), 0);
        let customer = order.customer.unwrap();
        assert_eq!(customer.id, u64::MAX);
        assert_eq!(customer.tags, "a, b");
        assert_eq!(customer.tag_list().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn wrong_shapes_are_invalid_input() {
        for body in ["not json", "[]", r#"{"id": "abc"}"#, r#"{"line_items": 3}"#] {
            let err = testing::webhook("orders/create", body).order().unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{body}: {err:?}");
        }
        let err = Product::from_value(&serde_json::json!({"variants": {}})).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
}
