//! What event does a webhook become?
//!
//! A transform is a WebAssembly component implementing the `transform` world
//! of `wit/transform.wit` (`ionflux:transform@0.2.0`) or of the older
//! `wit/transform-0.1.0.wit`. This module loads such components and runs one
//! webhook through one of them, under hard limits, returning validated
//! events or a [`TransformError`] that says why the webhook must go to the
//! dead letters.
//!
//! The module has three parts that do not know about each other's concerns:
//!
//! * `engine` is the wasmtime embedding: the engine with its pooling
//!   allocator and epoch ticker, the compiled-code cache, the linker with the
//!   host imports and a locked-down WASI, and the per-call store.
//! * `world` tells the versions of the contract apart and calls each
//!   through its own bindings, so the rest never asks which one it runs;
//! * `output` is plain application logic: what a guest is allowed to
//!   return.
//!
//! Invariants kept here:
//! * every call gets a fresh instance (fresh `Store`), so nothing a guest
//!   does survives into the next webhook, of this tenant or another;
//! * a guest can never crash or stall the host: every wasmtime error, trap
//!   and limit is turned into a [`TransformError`] at the boundary;
//! * a guest can not see the filesystem, network, environment or host
//!   stdio, and can not sleep.

mod engine;
pub(crate) mod output;
#[cfg(test)]
mod tests;
mod world;

use std::path::PathBuf;
use std::time::Duration;

pub use engine::{Runtime, Transform};
pub use world::World;

/// The identity of a transform version: lowercase hex sha256 of its bytes.
pub fn digest(component: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(component))
}

/// Per-call limits, configurable per route. The defaults are the safe ones
/// from DESIGN.md §3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Ceiling for all of the guest's linear memories together (a
    /// component may have several, one per core instance that defines
    /// one). Each one also fits a pool slot,
    /// [`RuntimeConfig::max_memory_bytes`].
    pub memory_bytes: usize,
    /// Wall-clock budget of one call, instantiation included, measured in
    /// epoch ticks (so it is rounded up to [`RuntimeConfig::epoch_tick`]).
    pub cpu: Duration,
    /// Bytes a guest may produce in one call: the sum of kinds, schema
    /// versions and payloads, where each `Unchanged` payload but the first
    /// counts the body's size (the host writes a copy of the body into each
    /// such event; the first is free, so any webhook can be passed through
    /// once, whatever its size).
    pub output_bytes: usize,
    /// Events one call may emit (fan-out cap).
    pub max_events: usize,
    /// Guest log lines kept per call; the rest are counted and dropped.
    pub log_lines: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            cpu: Duration::from_millis(50),
            output_bytes: 1 << 20,
            max_events: 100,
            log_lines: 100,
        }
    }
}

/// Process-wide settings of the [`Runtime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// How many calls may run at the same time. Each one holds a slot of the
    /// pooling allocator; more concurrent callers wait for a free slot
    /// rather than fail.
    pub pool_instances: u32,
    /// Size of a pool slot for one linear memory: the largest
    /// [`Limits::memory_bytes`] any route can get.
    pub max_memory_bytes: usize,
    /// Where compiled code is cached, by component digest. `None` compiles
    /// on every load. The directory must be trusted: its artifacts are
    /// loaded as native code.
    pub cache_dir: Option<PathBuf>,
    /// Resolution of the CPU deadline.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pool_instances: 64,
            max_memory_bytes: 128 << 20,
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
        }
    }
}

/// One verified webhook, borrowed from the inbox row so a call copies the
/// body only once: into the guest's memory. Provider-neutral, as the 0.2.0
/// world; a 0.1.0 guest gets the same values under Shopify's names.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
    /// The account the webhook is about (Shopify's shop domain, a site, a
    /// seller); 0.1.0's `shop-domain`.
    pub account_id: &'a str,
    pub workspace_id: &'a str,
    pub brand_id: &'a str,
    pub api_version: Option<&'a str>,
    /// The provider's id of the delivery; 0.1.0's `webhook-id`.
    pub delivery_id: &'a str,
    /// When the event happened, as the provider sent it; 0.1.0's
    /// `triggered-at`.
    pub occurred_at: Option<&'a str>,
    /// Shopify's `X-Shopify-Event-Id`, for 0.1.0's `event-id` field only:
    /// 0.2.0 guests read it among the headers.
    pub event_id: Option<&'a str>,
    /// Selected headers, names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// One validated event. The host adds the tenant prefix to `kind` and wraps
/// it in a PlatformEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Type suffix such as `orders.created`, already checked against
    /// `^[a-z0-9_]+(\.[a-z0-9_]+)+$`.
    pub kind: String,
    /// Checked against `^[A-Za-z0-9._-]{1,64}$`.
    pub schema_version: String,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The webhook body, untouched. The envelope checks that it is a JSON
    /// object (the guest cannot vouch for it).
    Unchanged,
    /// Bytes holding exactly one JSON object.
    Json(Vec<u8>),
}

/// Why a call produced no events. Every variant is permanent for this
/// webhook and this transform version: retrying gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("transform exceeded its CPU budget of {0:?}")]
    Timeout(Duration),
    #[error("transform exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("transform trapped: {0}")]
    Trap(String),
    #[error("transform output is {size} bytes, over the limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("transform emitted {count} events, over the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("transform returned invalid output: {0}")]
    InvalidOutput(String),
    #[error("transform rejected the input: {0}")]
    InvalidInput(String),
    #[error("transform failed: {0}")]
    Failed(String),
    #[error("transform could not be instantiated: {0}")]
    Instantiate(String),
}

impl TransformError {
    /// Stable machine-readable reason, for dead letters and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::Timeout(_) => "timeout",
            TransformError::MemoryLimit(_) => "memory_limit",
            TransformError::Trap(_) => "trap",
            TransformError::OutputTooLarge { .. } => "output_too_large",
            TransformError::TooManyEvents { .. } => "too_many_events",
            TransformError::InvalidOutput(_) => "invalid_output",
            TransformError::InvalidInput(_) => "invalid_input",
            TransformError::Failed(_) => "failed",
            TransformError::Instantiate(_) => "instantiate",
        }
    }
}

/// Why a component can not be used, or the runtime can not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("component does not compile: {0}")]
    Compile(String),
    #[error("component does not implement the ionflux:transform world: {0}")]
    WrongWorld(String),
    #[error("wasm engine: {0}")]
    Engine(String),
    #[error("compiled-code cache: {0}")]
    Cache(String),
}
