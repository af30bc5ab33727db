//! One folder per platform.

pub mod outbound;
pub mod tiktok_shop;
pub mod woocommerce;
