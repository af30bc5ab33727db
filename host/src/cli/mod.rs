//! The binary's commands, one module per command group; `main.rs` keeps
//! the command line's definition and the dispatch to these.

pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod connections;
pub(crate) mod dead_letters;
pub(crate) mod docs;
pub(crate) mod events;
pub(crate) mod keys;
pub(crate) mod prune;
pub(crate) mod remote;
pub(crate) mod routes;
pub(crate) mod serve;
pub(crate) mod tokens;
pub(crate) mod transforms;
pub(crate) mod webhook_lookup;
pub(crate) mod webhooks;
