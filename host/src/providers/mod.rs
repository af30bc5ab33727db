//! The platforms, one folder each. A platform implements
//! [`crate::pipeline::provider::Provider`] in its folder and is registered
//! here: one `pub mod` line and one line in [`all`].

use std::sync::Arc;

use crate::pipeline::provider::Provider;

pub mod hmac;
pub mod install;
pub mod lifecycle;
pub mod outbound;
pub mod refresh;
pub mod shopify;
pub mod standard_webhooks;
pub mod tiktok_shop;
pub mod verify;
pub mod wix;
pub mod woocommerce;

#[cfg(test)]
mod connection_checks;
#[cfg(test)]
mod testing;

/// Every platform the gateway takes webhooks from, for `server` to hand to
/// the pipeline. TikTok Shop's connections are made by its install. WooCommerce,
/// Wix, Standard Webhooks and the
/// configurable HMAC sources verify and describe (their folders' tests), but
/// are registered only once connections can be made for them and their
/// default transforms exist: until then their intake path would answer for
/// connections nobody can create.
pub fn all() -> Vec<Arc<dyn Provider>> {
    vec![
        Arc::new(shopify::Shopify),
        Arc::new(tiktok_shop::TikTokShop),
    ]
}
