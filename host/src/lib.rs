//! ionflux gateway: platform webhooks in, sandboxed transforms, events out.
//!
//! Data flows one way: [`http`] → [`webhook`] (is it genuine?) → [`inbox`]
//! (is it safely kept?) → [`dispatch`] → [`route`] and [`transform`] (what
//! event does it become?) → [`event`] → [`publish`] (has the sink got it?).
//! [`server`] wires them together. See ARCHITECTURE.md.

pub mod admin;
pub mod admin_client;
pub mod bench;
pub mod builtin;
pub mod ceilings;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod event;
pub mod fuzzing;
pub mod http;
pub mod inbox;
pub mod lifecycle;
pub mod metrics;
pub mod oauth;
pub mod pipeline;
pub mod providers;
pub mod publish;
pub mod refresh;
pub mod registry;
pub mod route;
pub mod secrets;
pub mod server;
pub mod shadow;
pub mod shop_details;
pub mod shopify_api;
pub mod store;
pub mod telemetry;
pub mod transform;
pub mod vault;
pub mod webhook;
