//! The platforms, one folder each. A platform implements
//! [`crate::pipeline::provider::Provider`] in its folder and is registered
//! by one line of [`providers!`]: its module and how it is made.

use std::sync::Arc;

use crate::pipeline::provider::Provider;

/// Declares each platform's module and lists it in [`all`], so that adding
/// a platform is its folder, its default transform under `transforms/` and
/// one line here.
macro_rules! providers {
    ($($module:ident => $make:expr,)*) => {
        $(pub mod $module;)*

        /// Every platform the gateway takes webhooks from, for `server` to
        /// hand to the pipeline, in registration order.
        pub fn all() -> Vec<Arc<dyn Provider>> {
            vec![$(Arc::new($make) as Arc<dyn Provider>,)*]
        }
    };
}

providers! {
    shopify => shopify::Shopify,
    woocommerce => woocommerce::WooCommerce,
    tiktok_shop => tiktok_shop::TikTokShop,
    wix => wix::Wix::new(),
    hmac => hmac::ConfiguredHmac,
    standard_webhooks => standard_webhooks::StandardWebhooks,
}

// What the platforms share; not platforms themselves.
pub mod install;
pub mod lifecycle;
pub mod outbound;
pub mod refresh;
pub mod verify;

#[cfg(test)]
mod connection_checks;
#[cfg(test)]
mod send_checks;
#[cfg(test)]
mod testing;
