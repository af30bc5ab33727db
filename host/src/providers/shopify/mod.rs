//! Shopify: webhook signatures and headers, the OAuth install, token
//! refresh, the lifecycle webhooks and the shop-details endpoint.

pub mod api;
pub mod headers;
pub mod lifecycle;
pub mod oauth;
pub mod refresh;
pub mod shop_details;
