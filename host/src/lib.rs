//! ionflux gateway: platform webhooks in, sandboxed transforms, events out.
//!
//! # Layout
//!
//! Grouped by layer; imports point down only (api → providers → pipeline →
//! store and support), and [`server`] wires the layers together:
//!
//! - [`api`]: HTTP in and out (the public and admin routers, the admin
//!   client). Translates only.
//! - [`providers`]: one folder per platform (how its webhooks are verified
//!   and read, how it is connected, its lifecycle), registered in
//!   [`providers::all`].
//! - [`pipeline`]: what every webhook goes through, whichever platform sent
//!   it: [`pipeline::inbox`] (is it safely kept?) → [`pipeline::dispatch`] →
//!   [`pipeline::route`] and [`pipeline::transform`] (what event does it
//!   become?) → [`pipeline::event`] → [`pipeline::publish`] (has the sink got
//!   it?). Platforms plug in through [`pipeline::provider::Provider`].
//! - [`store`]: every query.
//! - [`support`]: what every layer leans on (the vault, metrics, telemetry).
//! - [`config`], [`server`]: the composition root; [`bench`] and
//!   [`fuzzing`] are tools nothing else imports.
//!
//! See ARCHITECTURE.md.

pub mod api;
pub mod bench;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod pipeline;
pub mod providers;
pub mod server;
pub mod store;
pub mod support;
