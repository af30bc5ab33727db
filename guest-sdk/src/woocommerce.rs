//! WooCommerce for transform authors: a typed view of the order in
//! `order.created`, `order.updated`, `order.deleted` and `order.restored`
//! webhooks ([`Order`], read with [`order`]).
//!
//! WooCommerce sends the REST API's representation of the resource
//! (`/wp-json/wc/v3/orders/<id>`). Stores still on the legacy REST API
//! (WooCommerce 2.x) wrap it as `{"order": {...}}` with older field names;
//! the view reads both, the legacy names as aliases of the current ones.
//!
//! A view, not a schema: every field is optional or defaults (`0`, `""`,
//! an empty list), unknown fields are ignored, so any JSON object with
//! sensibly typed fields parses. Amounts are [`Money`], the decimal text
//! WooCommerce sent (a number is taken too). Dates are the text as sent;
//! the `*_gmt` ones are UTC without a zone suffix.
//!
//! ```
//! use ionflux_guest::{testing, woocommerce};
//! let w = testing::provider_webhook(
//!     "woocommerce",
//!     "order.created",
//!     r#"{"id": 727, "status": "processing", "currency": "USD", "total": "29.35",
//!         "billing": {"email": "john.doe@example.com"},
//!         "line_items": [{"product_id": 93, "quantity": 2, "price": 3}]}"#,
//! );
//! let order = woocommerce::order(&w)?;
//! assert_eq!((order.id, order.status.as_str()), (727, "processing"));
//! assert_eq!(order.total.as_ref().unwrap().cents(), Some(2935));
//! assert_eq!(order.email(), Some("john.doe@example.com"));
//! assert_eq!(order.item_count(), 2);
//! # Ok::<(), ionflux_guest::Error>(())
//! ```

use serde::{Deserialize, Serialize};

pub use crate::shopify::Money;
use crate::view::{id_text, nullable};
use crate::{Error, Webhook};

/// Reads the webhook's body as a WooCommerce [`Order`], current or legacy
/// shape. Anything but a JSON object with order-shaped fields is
/// [`Error::InvalidInput`].
pub fn order(webhook: &Webhook) -> Result<Order, Error> {
    Order::from_body(&webhook.body)
}

/// An order, as `GET /wp-json/wc/v3/orders/<id>` answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Order {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    #[serde(deserialize_with = "nullable")]
    pub parent_id: u64,
    /// The shop-facing number, e.g. `"727"` (legacy: `order_number`).
    #[serde(deserialize_with = "id_text", alias = "order_number")]
    pub number: String,
    #[serde(deserialize_with = "nullable")]
    pub order_key: String,
    /// e.g. `"pending"`, `"processing"`, `"on-hold"`, `"completed"`,
    /// `"cancelled"`, `"refunded"`, `"failed"`.
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    /// e.g. `"USD"`: the currency of every amount here.
    #[serde(deserialize_with = "nullable")]
    pub currency: String,
    /// `"checkout"`, `"admin"`, `"rest-api"`, ...
    pub created_via: Option<String>,
    /// In the site's time zone.
    pub date_created: Option<String>,
    /// UTC (legacy: `created_at`).
    #[serde(alias = "created_at")]
    pub date_created_gmt: Option<String>,
    /// UTC (legacy: `updated_at`).
    #[serde(alias = "updated_at")]
    pub date_modified_gmt: Option<String>,
    pub date_paid_gmt: Option<String>,
    /// UTC (legacy: `completed_at`).
    #[serde(alias = "completed_at")]
    pub date_completed_gmt: Option<String>,
    pub total: Option<Money>,
    pub total_tax: Option<Money>,
    /// Legacy: `total_shipping`.
    #[serde(alias = "total_shipping")]
    pub shipping_total: Option<Money>,
    /// Legacy: `total_discount`.
    #[serde(alias = "total_discount")]
    pub discount_total: Option<Money>,
    #[serde(deserialize_with = "nullable")]
    pub prices_include_tax: bool,
    /// 0 for a guest checkout.
    #[serde(deserialize_with = "nullable")]
    pub customer_id: u64,
    /// Legacy: `note`.
    #[serde(deserialize_with = "nullable", alias = "note")]
    pub customer_note: String,
    /// Legacy: `billing_address`.
    #[serde(alias = "billing_address")]
    pub billing: Option<Address>,
    /// Legacy: `shipping_address`.
    #[serde(alias = "shipping_address")]
    pub shipping: Option<Address>,
    /// e.g. `"bacs"`, `"stripe"`.
    pub payment_method: Option<String>,
    pub payment_method_title: Option<String>,
    pub transaction_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub line_items: Vec<LineItem>,
    #[serde(deserialize_with = "nullable")]
    pub shipping_lines: Vec<ShippingLine>,
    #[serde(deserialize_with = "nullable")]
    pub coupon_lines: Vec<CouponLine>,
    #[serde(deserialize_with = "nullable")]
    pub meta_data: Vec<MetaData>,
}

impl Order {
    /// Parses a body of either shape. Errors are [`Error::InvalidInput`].
    pub fn from_body(body: &[u8]) -> Result<Self, Error> {
        // Legacy first: it is the only shape with an `order` field, and
        // the current shape (all fields optional) would take anything.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Legacy { order: Order },
            Current(Order),
        }
        const WHAT: &str = "WooCommerce order";
        match crate::view::from_body::<Shape>(body, WHAT) {
            Ok(Shape::Legacy { order } | Shape::Current(order)) => Ok(order),
            // An untagged enum only says that no shape matched; the current
            // shape's own error names the field.
            Err(untagged) => Err(crate::view::from_body::<Order>(body, WHAT)
                .err()
                .unwrap_or(untagged)),
        }
    }

    /// Units over all line items.
    pub fn item_count(&self) -> i64 {
        self.line_items.iter().map(|l| l.quantity).sum()
    }

    /// The buyer's address, from the billing details.
    pub fn email(&self) -> Option<&str> {
        self.billing
            .as_ref()
            .and_then(|b| b.email.as_deref())
            .filter(|e| !e.is_empty())
    }

    /// A `meta_data` value by key (the first, as WooCommerce reads it).
    pub fn meta(&self, key: &str) -> Option<&serde_json::Value> {
        self.meta_data
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }
}

/// A billing or shipping address. Shipping addresses carry no email, and
/// older stores no phone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Address {
    #[serde(deserialize_with = "nullable")]
    pub first_name: String,
    #[serde(deserialize_with = "nullable")]
    pub last_name: String,
    #[serde(deserialize_with = "nullable")]
    pub company: String,
    #[serde(deserialize_with = "nullable")]
    pub address_1: String,
    #[serde(deserialize_with = "nullable")]
    pub address_2: String,
    #[serde(deserialize_with = "nullable")]
    pub city: String,
    #[serde(deserialize_with = "nullable")]
    pub state: String,
    #[serde(deserialize_with = "nullable")]
    pub postcode: String,
    /// ISO 3166-1 alpha-2, e.g. `"US"`.
    #[serde(deserialize_with = "nullable")]
    pub country: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// One product (or variation) line of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LineItem {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub product_id: u64,
    /// 0 when the product has no variations.
    #[serde(deserialize_with = "nullable")]
    pub variation_id: u64,
    #[serde(deserialize_with = "nullable")]
    pub quantity: i64,
    #[serde(deserialize_with = "nullable")]
    pub sku: String,
    /// Unit price; the REST API sends a number here, unlike elsewhere.
    pub price: Option<Money>,
    /// Before discounts.
    pub subtotal: Option<Money>,
    /// After discounts.
    pub total: Option<Money>,
    pub total_tax: Option<Money>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ShippingLine {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    /// e.g. `"flat_rate"`.
    #[serde(deserialize_with = "nullable")]
    pub method_id: String,
    #[serde(deserialize_with = "nullable")]
    pub method_title: String,
    pub total: Option<Money>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CouponLine {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    #[serde(deserialize_with = "nullable")]
    pub code: String,
    pub discount: Option<Money>,
}

/// A plugin's or the store's extra field: any JSON value under a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MetaData {
    #[serde(deserialize_with = "nullable")]
    pub id: u64,
    #[serde(deserialize_with = "nullable")]
    pub key: String,
    pub value: serde_json::Value,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing;

    fn sample(path: &str) -> Webhook {
        let body = testing::fixture(format!("../tests/fixtures/providers/woocommerce/{path}"));
        testing::provider_webhook("woocommerce", "order.created", body)
    }

    #[test]
    fn the_rest_api_order_sample_reads() {
        let order = order(&sample("order.created/1.json")).unwrap();
        assert_eq!(order.id, 727);
        assert_eq!(order.number, "727");
        assert_eq!(order.status, "processing");
        assert_eq!(order.currency, "USD");
        assert_eq!(order.total.as_ref().unwrap().cents(), Some(2935));
        assert_eq!(order.total_tax.as_ref().unwrap().cents(), Some(135));
        assert_eq!(order.shipping_total.as_ref().unwrap().cents(), Some(1000));
        assert_eq!(
            order.date_created_gmt.as_deref(),
            Some("2017-03-22T19:28:02")
        );
        assert_eq!(order.date_completed_gmt, None, "null reads as None");
        assert_eq!(order.email(), Some("john.doe@example.com"));
        assert_eq!(order.shipping.as_ref().unwrap().email, None);
        assert_eq!(order.shipping.as_ref().unwrap().city, "San Francisco");
        assert_eq!(order.line_items.len(), 2);
        assert_eq!(order.item_count(), 3);
        let first = &order.line_items[0];
        assert_eq!((first.product_id, first.quantity), (93, 2));
        assert_eq!(first.price.as_ref().unwrap().cents(), Some(300), "a number");
        assert_eq!(order.line_items[1].variation_id, 23);
        assert_eq!(order.shipping_lines[0].method_id, "flat_rate");
        assert!(order.coupon_lines.is_empty());
        assert_eq!(
            order.meta("_download_permissions_granted"),
            Some(&serde_json::json!("yes"))
        );
    }

    #[test]
    fn the_updated_sample_reads() {
        let order = order(&sample("order.updated/3.json")).unwrap();
        assert_eq!((order.id, order.status.as_str()), (727, "completed"));
    }

    #[test]
    fn the_legacy_wrapped_order_reads_through_its_aliases() {
        let order = order(&sample("order.updated/1.json")).unwrap();
        assert_eq!(order.id, 118);
        assert_eq!(order.number, "118", "order_number, a JSON number");
        assert_eq!(order.status, "completed");
        assert_eq!(order.currency, "BRL");
        assert_eq!(order.total.as_ref().unwrap().cents(), Some(1400));
        assert_eq!(order.shipping_total.as_ref().unwrap().cents(), Some(1000));
        assert_eq!(
            order.date_created_gmt.as_deref(),
            Some("2016-05-03T18:10:00Z")
        );
        assert_eq!(order.email(), Some("john.doe@claudiosmweb.com"));
        assert_eq!(order.item_count(), 2);
        assert_eq!(order.line_items[0].sku, "12345");
    }

    #[test]
    fn missing_and_extra_fields_are_fine() {
        let w = testing::provider_webhook(
            "woocommerce",
            "order.deleted",
            r#"{"id": 5, "brand_new_field": {"x": 1}, "billing": null, "line_items": null}"#,
        );
        let order = order(&w).unwrap();
        assert_eq!(order.id, 5);
        assert!(order.billing.is_none() && order.line_items.is_empty());
        assert_eq!(order.email(), None);
        assert_eq!(order.total, None);
    }

    #[test]
    fn what_is_not_an_order_is_invalid_input() {
        for body in ["", "[1, 2]", "not json", r#"{"id": "seven"}"#] {
            let w = testing::provider_webhook("woocommerce", "order.created", body);
            assert!(matches!(order(&w), Err(Error::InvalidInput(_))), "{body:?}");
        }
    }
}
