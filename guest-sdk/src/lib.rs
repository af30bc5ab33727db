#![doc = include_str!("../README.md")]
//!
//! ## The pieces, in this crate
//!
//! * [`export_transform!`] exports a `fn(Webhook) -> Result<R>` where `R` is
//!   anything [`IntoEvents`]: `Vec<Event>`, `Event`, `Option<Event>`, arrays,
//!   `()`.
//! * [`Webhook`] is the input, the `ionflux:transform@0.2.0` record: any
//!   provider's webhook (`provider`, `topic`, `account_id`, `delivery_id`,
//!   `occurred_at`, `api_version`, headers, body), with
//!   [`Webhook::order`], [`Webhook::product`], [`Webhook::customer`]
//!   (Shopify's), [`Webhook::json`], [`Webhook::json_value`] and
//!   [`Webhook::header`].
//! * [`Event`] is built with [`Event::new`] and chained setters.
//!   [`Event::unchanged`] republishes the body without the guest copying it
//!   back out: pass-through transforms should not even parse it.
//! * [`Error`] is the refusal: `InvalidInput` (the sender's fault) or
//!   `Failed` (anything else). Both send the webhook to the dead letters.
//! * [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`] log through the
//!   host, which rate-limits and tags lines with tenant and transform.
//! * [`config`] / [`config_raw`] read the route's JSON settings.
//! * [`shopify`] holds the typed views ([`shopify::Order`],
//!   [`shopify::Product`], [`shopify::Customer`], [`shopify::Money`]) and the
//!   Shopify naming conventions used by the stock transforms;
//!   [`woocommerce`] ([`woocommerce::Order`]) and [`tiktok_shop`] (the
//!   notification envelope and its order notifications) those of other
//!   providers.
//! * [`naming`] holds the rules every stock transform names events by
//!   (`{entity}.{action}`, lower snake_case, CRUD actions in the past
//!   tense), and [`republish`] the checks before a body passes through
//!   unchanged.
//! * [`testing`] (native only) builds webhooks, sets config, captures logs
//!   and loads fixtures. Put tests under
//!   `#[cfg(all(test, not(target_arch = "wasm32")))]`.
//!
//! ## Route config as a typed struct
//!
//! Derive `Deserialize`, and give the struct `#[serde(default)]` and a
//! `Default` impl (derived, or by hand for non-zero defaults), so a route
//! without settings (`{}`) works and a route may set only what it changes.
//! A config that does not fit the struct is [`Error::Failed`]: the route is
//! wrong, not the webhook.
//!
//! ```
//! use ionflux_guest::shopify::Money;
//! use ionflux_guest::{Error, Event, Result, Webhook, testing};
//! use serde::Deserialize;
//!
//! /// `{"min_total": "100.00", "kind": "orders.big"}`; both optional.
//! #[derive(Deserialize)]
//! #[serde(default, deny_unknown_fields)] // a typo is an error, not a default
//! struct Settings {
//!     min_total: Money,
//!     kind: String,
//! }
//!
//! impl Default for Settings {
//!     fn default() -> Self {
//!         Settings { min_total: Money::new("0"), kind: "orders.big".into() }
//!     }
//! }
//!
//! fn big_orders(input: Webhook) -> Result<Option<Event>> {
//!     let settings: Settings = ionflux_guest::config()?;
//!     let order = input.order()?;
//!     let total = order.total_price.ok_or_else(|| Error::invalid_input("no total_price"))?;
//!     if total.cmp_amount(&settings.min_total).is_none_or(|o| o.is_lt()) {
//!         ionflux_guest::debug!("order {} below {}: filtered", order.id, settings.min_total);
//!         return Ok(None);
//!     }
//!     let payload = serde_json::json!({ "order_id": order.id, "total": total });
//!     Ok(Some(Event::new(settings.kind).schema_version("v1.big-orders").json(&payload)?))
//! }
//!
//! let order = || testing::webhook("orders/create", r#"{"id":1,"total_price":"250.00"}"#);
//! let run = |config| testing::with_config(config, || testing::run(big_orders, order()));
//! assert_eq!(run("{}").unwrap()[0].kind, "orders.big");
//! assert_eq!(run(r#"{"min_total": 100}"#).unwrap().len(), 1);
//! assert!(run(r#"{"min_total": "300"}"#).unwrap().is_empty());
//! assert!(matches!(run(r#"{"min_totl": 1}"#), Err(Error::Failed(_))));
//! ```

// Lets the generated bindings name this crate by the same path from inside
// it as from a transform crate, where the export macro expands.
extern crate self as ionflux_guest;

mod error;
mod event;
mod host;
mod view;
mod webhook;

pub mod naming;
pub mod republish;
pub mod shopify;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod tiktok_shop;
pub mod woocommerce;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;

// The crate template is compiled and its tests run here too, so an SDK
// change that would break a freshly copied transform fails this crate.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "../template/src/lib.rs"]
mod template;

pub use error::{Error, Result};
pub use event::{DEFAULT_SCHEMA_VERSION, Event, IntoEvents, Payload, is_valid_kind};
pub use host::{Level, config, config_raw, log};
pub use webhook::{Header, Webhook};

pub use serde;
pub use serde_json;

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::call;
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::wit as bindings;
    /// The exported `transformer` interface: its `Guest` trait and types.
    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::wit::exports::ionflux::transform::transformer as exports;
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;

    /// Native stand-in for `call`: only there so `export_transform!` checks
    /// the function's signature (and marks it used) off wasm too.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn call<R: crate::IntoEvents>(
        input: crate::Webhook,
        f: impl FnOnce(crate::Webhook) -> crate::Result<R>,
    ) -> crate::Result<Vec<crate::Event>> {
        f(input).map(crate::IntoEvents::into_events)
    }
}

/// Exports a function as the component's `transform`.
///
/// The function takes a [`Webhook`] and returns `Result<R, Error>` with `R`
/// any [`IntoEvents`]. Use it once per crate, at the top level:
///
/// ```ignore
/// ionflux_guest::export_transform!(my_transform);
/// ```
///
/// Off wasm it only type-checks the function, so the same crate builds and
/// tests natively.
#[macro_export]
macro_rules! export_transform {
    ($f:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct IonfluxTransform;

            impl $crate::__private::exports::Guest for IonfluxTransform {
                fn transform(
                    input: $crate::__private::exports::Webhook,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__private::exports::Event>,
                    $crate::__private::exports::TransformError,
                > {
                    $crate::__private::call(input, $f)
                }
            }

            $crate::__private::bindings::__export_transform!(
                IonfluxTransform with_types_in $crate::__private::bindings
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            #[allow(dead_code)]
            fn check(input: $crate::Webhook) -> $crate::Result<::std::vec::Vec<$crate::Event>> {
                $crate::__private::call(input, $f)
            }
        };
    };
}
