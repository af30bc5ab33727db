//! The platforms, one folder each. A platform implements
//! [`crate::pipeline::provider::Provider`] in its folder and is registered
//! here with one `pub mod` line and one line in [`all`].

pub mod shopify;
