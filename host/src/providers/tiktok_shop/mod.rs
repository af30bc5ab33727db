//! TikTok Shop.

pub mod auth;
