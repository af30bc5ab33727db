//! WooCommerce.

pub mod api;
