//! TikTok Shop for transform authors: typed views of the notification
//! envelope ([`Notification`]) and of the order notifications' `data`
//! ([`OrderStatusChange`], [`CancellationStatusChange`],
//! [`ReturnStatusChange`], [`RecipientAddressUpdate`]).
//!
//! Every TikTok Shop webhook is one envelope: a numeric `type` (the codes
//! are in [`kinds`]), the notification id, the shop id, a Unix timestamp
//! and a `data` object whose shape depends on the type.
//!
//! Views, not schemas: every field is optional or defaults, unknown fields
//! are ignored. Ids are text, whether TikTok sent a JSON string or a number
//! (it does both, and its 64-bit numbers do not survive a JavaScript
//! reader). Times are Unix seconds, from a number or its text.
//!
//! ```
//! use ionflux_guest::{testing, tiktok_shop};
//! let w = testing::provider_webhook(
//!     "tiktok-shop",
//!     "ORDER_STATUS_CHANGE",
//!     r#"{"type": 1, "shop_id": "7494049642642441621", "timestamp": 1644412885,
//!         "data": {"order_id": "576486316948490001", "order_status": "UNPAID"}}"#,
//! );
//! let n = tiktok_shop::order_status_change(&w)?;
//! assert_eq!(n.shop_id, "7494049642642441621");
//! assert_eq!(n.data.order_id, "576486316948490001");
//! assert_eq!(n.data.order_status, "UNPAID");
//! # Ok::<(), ionflux_guest::Error>(())
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::view::{id_text, nullable, unix_time};
use crate::{Error, Webhook};

/// The envelope's `type` codes, as TikTok Shop's webhook documentation
/// numbers them.
pub mod kinds {
    pub const ORDER_STATUS_CHANGE: u32 = 1;
    pub const RECIPIENT_ADDRESS_UPDATE: u32 = 3;
    pub const PRODUCT_STATUS_CHANGE: u32 = 5;
    pub const UPCOMING_AUTHORIZATION_EXPIRATION: u32 = 7;
    pub const CANCELLATION_STATUS_CHANGE: u32 = 11;
    pub const RETURN_STATUS_CHANGE: u32 = 12;
    pub const PRODUCT_INFORMATION_CHANGE: u32 = 15;
    pub const PRODUCT_CREATION: u32 = 16;
}

/// One notification, its `data` read as `T` (any view here, your own
/// `Deserialize` type, or `serde_json::Value`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, bound(deserialize = "T: Deserialize<'de> + Default"))]
#[non_exhaustive]
pub struct Notification<T> {
    /// The envelope's `type`: one of [`kinds`].
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: u32,
    #[serde(deserialize_with = "id_text")]
    pub tts_notification_id: String,
    #[serde(deserialize_with = "id_text")]
    pub shop_id: String,
    /// Unix seconds.
    #[serde(deserialize_with = "unix_time")]
    pub timestamp: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub data: T,
}

/// Reads the body as a notification whose `data` is a `T`, whatever its
/// type. Errors are [`Error::InvalidInput`].
pub fn notification<T: DeserializeOwned + Default>(
    webhook: &Webhook,
) -> Result<Notification<T>, Error> {
    crate::view::from_body(&webhook.body, "TikTok Shop notification")
}

/// As [`notification`], and the envelope's type must be `kind`: reading one
/// type's data out of another's is the sender's mistake (or a route's), and
/// an [`Error::InvalidInput`], not a view full of defaults.
pub fn notification_of<T: DeserializeOwned + Default>(
    webhook: &Webhook,
    kind: u32,
) -> Result<Notification<T>, Error> {
    let n = notification::<T>(webhook)?;
    if n.kind != kind {
        return Err(Error::invalid_input(format!(
            "a TikTok Shop notification of type {}, not {kind}",
            n.kind
        )));
    }
    Ok(n)
}

/// Type 1, `ORDER_STATUS_CHANGE`.
pub fn order_status_change(webhook: &Webhook) -> Result<Notification<OrderStatusChange>, Error> {
    notification_of(webhook, kinds::ORDER_STATUS_CHANGE)
}

/// Type 11, `CANCELLATION_STATUS_CHANGE`.
pub fn cancellation_status_change(
    webhook: &Webhook,
) -> Result<Notification<CancellationStatusChange>, Error> {
    notification_of(webhook, kinds::CANCELLATION_STATUS_CHANGE)
}

/// Type 12, `RETURN_STATUS_CHANGE`.
pub fn return_status_change(webhook: &Webhook) -> Result<Notification<ReturnStatusChange>, Error> {
    notification_of(webhook, kinds::RETURN_STATUS_CHANGE)
}

/// Type 3, `RECIPIENT_ADDRESS_UPDATE`.
pub fn recipient_address_update(
    webhook: &Webhook,
) -> Result<Notification<RecipientAddressUpdate>, Error> {
    notification_of(webhook, kinds::RECIPIENT_ADDRESS_UPDATE)
}

/// An order moved to another status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OrderStatusChange {
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    /// e.g. `"UNPAID"`, `"ON_HOLD"`, `"AWAITING_SHIPMENT"`,
    /// `"AWAITING_COLLECTION"`, `"IN_TRANSIT"`, `"DELIVERED"`,
    /// `"COMPLETED"`, `"CANCELLED"`.
    #[serde(deserialize_with = "nullable")]
    pub order_status: String,
    #[serde(deserialize_with = "nullable")]
    pub is_on_hold_order: bool,
    /// Unix seconds.
    #[serde(deserialize_with = "unix_time")]
    pub update_time: Option<i64>,
}

/// A cancellation of an order was requested or moved on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CancellationStatusChange {
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    #[serde(deserialize_with = "id_text")]
    pub cancel_id: String,
    /// e.g. `"CANCELLATION_REQUEST_PENDING"`.
    #[serde(deserialize_with = "nullable")]
    pub cancel_status: String,
    /// Who asked: `"BUYER"`, `"SELLER"`, `"SYSTEM"`.
    #[serde(deserialize_with = "nullable")]
    pub cancellations_role: String,
    #[serde(deserialize_with = "unix_time")]
    pub create_time: Option<i64>,
}

/// A return or refund of an order was requested or moved on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ReturnStatusChange {
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    #[serde(deserialize_with = "id_text")]
    pub return_id: String,
    /// e.g. `"REFUND"`, `"RETURN_AND_REFUND"`.
    #[serde(deserialize_with = "nullable")]
    pub return_type: String,
    #[serde(deserialize_with = "nullable")]
    pub return_status: String,
    #[serde(deserialize_with = "nullable")]
    pub return_role: String,
    #[serde(deserialize_with = "unix_time")]
    pub create_time: Option<i64>,
    #[serde(deserialize_with = "unix_time")]
    pub update_time: Option<i64>,
}

/// The buyer changed an order's shipping address. The address itself is
/// not in the notification: fetch the order to read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RecipientAddressUpdate {
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    #[serde(deserialize_with = "unix_time")]
    pub update_time: Option<i64>,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing;

    fn sample(path: &str) -> Webhook {
        let topic = path.split('/').next().unwrap();
        let body = testing::fixture(format!("../tests/fixtures/providers/tiktok-shop/{path}"));
        testing::provider_webhook("tiktok-shop", topic, body)
    }

    #[test]
    fn the_order_status_samples_read() {
        let n = order_status_change(&sample("ORDER_STATUS_CHANGE/1.json")).unwrap();
        assert_eq!(n.kind, kinds::ORDER_STATUS_CHANGE);
        assert_eq!(n.tts_notification_id, "7327112393057371910");
        assert_eq!(n.shop_id, "7494049642642441621");
        assert_eq!(n.timestamp, Some(1644412885));
        assert_eq!(n.data.order_id, "576486316948490001");
        assert_eq!(n.data.order_status, "UNPAID");
        assert!(!n.data.is_on_hold_order);
        assert_eq!(n.data.update_time, Some(1644412885));

        // The signed wire body of TikTok's worked example: compact, on hold.
        let n = order_status_change(&sample("ORDER_STATUS_CHANGE/2.json")).unwrap();
        assert_eq!(n.data.order_id, "576653688135258178");
        assert!(n.data.is_on_hold_order);
    }

    #[test]
    fn the_cancellation_sample_reads() {
        let n = cancellation_status_change(&sample("CANCELLATION_STATUS_CHANGE/1.json")).unwrap();
        assert_eq!(n.data.order_id, "576486316948490001");
        assert_eq!(n.data.cancel_id, "4035318504086604100");
        assert_eq!(n.data.cancel_status, "CANCELLATION_REQUEST_PENDING");
        assert_eq!(n.data.cancellations_role, "BUYER");
        assert_eq!(n.data.create_time, Some(1627587600));
    }

    #[test]
    fn the_address_update_sample_has_no_notification_id() {
        let n = recipient_address_update(&sample("RECIPIENT_ADDRESS_UPDATE/1.json")).unwrap();
        assert_eq!(n.tts_notification_id, "");
        assert_eq!(n.data.order_id, "576486316948490001");
    }

    #[test]
    fn the_return_sample_is_invalid_json_as_published() {
        let err = return_status_change(&sample("RETURN_STATUS_CHANGE/1.json")).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn numeric_ids_read_as_text_and_data_can_stay_untyped() {
        let w = sample("PRODUCT_STATUS_CHANGE/1.json");
        let n = notification::<serde_json::Value>(&w).unwrap();
        assert_eq!(n.kind, kinds::PRODUCT_STATUS_CHANGE);
        assert_eq!(n.data["status"], "PRODUCT_FIRST_PASS_REVIEW");

        #[derive(Deserialize, Default)]
        struct Product {
            #[serde(deserialize_with = "crate::view::id_text")]
            product_id: String,
        }
        let n = notification::<Product>(&w).unwrap();
        assert_eq!(n.data.product_id, "576486316948490000");
    }

    #[test]
    fn another_types_data_is_refused() {
        let err = order_status_change(&sample("CANCELLATION_STATUS_CHANGE/1.json")).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(m) if m.contains("type 11")));
    }

    #[test]
    fn missing_and_extra_fields_are_fine() {
        let w = testing::provider_webhook(
            "tiktok-shop",
            "ORDER_STATUS_CHANGE",
            r#"{"type": 1, "data": {"order_id": 42, "new_field": [1]}, "extra": true}"#,
        );
        let n = order_status_change(&w).unwrap();
        assert_eq!(n.data.order_id, "42");
        assert_eq!((n.timestamp, n.data.order_status.as_str()), (None, ""));
        let n = order_status_change(&testing::provider_webhook(
            "tiktok-shop",
            "x",
            r#"{"type":1}"#,
        ))
        .unwrap();
        assert_eq!(n.data, OrderStatusChange::default());
    }
}
