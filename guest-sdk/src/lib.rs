//! # ionflux-guest: write ionflux gateway transforms in plain Rust
//!
//! A transform turns one verified webhook into zero or more events. It runs
//! inside the gateway as a sandboxed WebAssembly component; this crate hides
//! the component plumbing (wit-bindgen) behind ordinary Rust types, and lets
//! the same code run natively under `cargo test`.
//!
//! ```
//! use ionflux_guest::{Error, Event, Result, Webhook};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Order { id: u64, total_price: String }
//!
//! /// Route settings, e.g. `{"min_total": 100}`; absent means 0.
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! struct Settings { min_total: f64 }
//!
//! fn big_orders(input: Webhook) -> Result<Option<Event>> {
//!     let settings: Settings = ionflux_guest::config()?;
//!     let order: Order = input.json()?; // not JSON → Error::InvalidInput
//!     let total: f64 = order.total_price.parse().map_err(Error::invalid_input)?;
//!     if total < settings.min_total {
//!         ionflux_guest::debug!("order {} below {}: filtered", order.id, settings.min_total);
//!         return Ok(None); // zero events: filtered out
//!     }
//!     let payload = serde_json::json!({ "order_id": order.id, "total": total });
//!     Ok(Some(Event::new("orders.big").schema_version("v1.big-orders").json(&payload)?))
//! }
//!
//! ionflux_guest::export_transform!(big_orders);
//!
//! // Natively, imports go to a thread-local test host:
//! # fn main() {
//! use ionflux_guest::testing;
//! let order = testing::webhook("orders/create", r#"{"id":1,"total_price":"250.00"}"#);
//! let out = testing::with_config(r#"{"min_total":100}"#, || testing::run(big_orders, order));
//! assert_eq!(out.unwrap()[0].kind, "orders.big");
//! # }
//! ```
//!
//! ## Setting up a transform crate
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib → the component, rlib → native tests
//!
//! [dependencies]
//! ionflux-guest = { path = "…/guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is already a component.
//!
//! ## The pieces
//!
//! * [`export_transform!`] exports a `fn(Webhook) -> Result<R>` where `R` is
//!   anything [`IntoEvents`]: `Vec<Event>`, `Event`, `Option<Event>`, arrays.
//! * [`Webhook`] is the input, with [`Webhook::json`], [`Webhook::json_value`]
//!   and [`Webhook::header`].
//! * [`Event`] is built with [`Event::new`] and chained setters.
//!   [`Event::unchanged`] republishes the body without the guest copying it
//!   back out: pass-through transforms should not even parse it.
//! * [`Error`] is the refusal: `InvalidInput` (the sender's fault) or
//!   `Failed` (anything else). Both send the webhook to the dead letters.
//! * [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`] log through the
//!   host, which rate-limits and tags lines with tenant and transform.
//! * [`config`] / [`config_raw`] read the route's JSON settings.
//! * [`shopify`] holds the Shopify naming conventions used by the stock
//!   transforms.
//! * [`testing`] (native only) builds webhooks, sets config, captures logs
//!   and loads fixtures. Put tests under
//!   `#[cfg(all(test, not(target_arch = "wasm32")))]`.
//!
//! A guest has no filesystem, network, clock or environment, and each call
//! runs in a fresh instance: nothing survives between webhooks. A panic traps
//! the instance and fails that webhook only.

// Lets the generated bindings name this crate by the same path from inside
// it as from a transform crate, where the export macro expands.
extern crate self as ionflux_guest;

mod error;
mod event;
mod host;
mod webhook;

pub mod shopify;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;

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

            impl $crate::__private::bindings::Guest for IonfluxTransform {
                fn transform(
                    input: $crate::__private::bindings::Webhook,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__private::bindings::Event>,
                    $crate::__private::bindings::TransformError,
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
