//! The platforms, one folder each. A platform implements
//! [`crate::pipeline::provider::Provider`] in its folder and is registered
//! here: one `pub mod` line and one line in [`all`].

use std::sync::Arc;

use crate::pipeline::provider::Provider;

pub mod outbound;
pub mod shopify;
pub mod tiktok_shop;
pub mod woocommerce;

/// Every platform the gateway takes webhooks from, for `server` to hand to
/// the pipeline.
pub fn all() -> Vec<Arc<dyn Provider>> {
    vec![Arc::new(shopify::Shopify)]
}
