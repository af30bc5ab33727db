//! One folder per platform.

pub mod tiktok_shop;
pub mod woocommerce;
