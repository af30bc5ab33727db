//! The platforms, one folder each, behind `pipeline::provider::Provider`.

pub mod hmac;
pub mod standard_webhooks;
pub mod tiktok_shop;
pub mod verify;
pub mod wix;
pub mod woocommerce;

#[cfg(test)]
mod testing;
