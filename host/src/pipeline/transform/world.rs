//! Which version of the contract does a component implement, and how is it
//! called?
//!
//! The host runs two worlds side by side, each through its own generated
//! bindings:
//!
//! * `ionflux:transform@0.2.0` (`wit/transform.wit`), provider-neutral: the
//!   component exports the `transformer` interface;
//! * `ionflux:transform@0.1.0` (`wit/transform-0.1.0.wit`), Shopify-shaped:
//!   the component exports a bare `transform` function.
//!
//! The world is read off the component's exports when it is loaded, so a
//! version pushed years ago keeps running unchanged. Both worlds get the
//! same [`Input`] (built once from the inbox row) and answer the same
//! [`Event`]s: everything after this file is world-blind.

use std::fmt;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::engine::CallState;
use super::{Event, Input, LoadError, Payload, TransformError};

mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/transform-0.1.0.wit",
        world: "transform",
        // Lets the host lend the webhook body to the guest without first
        // copying it into an owned `Vec`.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/transform.wit",
        world: "transform",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// What a 0.2.0 component exports; the version in the name is what tells
/// the worlds apart.
const V0_2_EXPORT: &str = "ionflux:transform/transformer@0.2.0";
/// What a 0.1.0 component exports: a function, which carries no version.
const V0_1_EXPORT: &str = "transform";
/// Every version of the contract names its exports in this namespace.
const PACKAGE_PREFIX: &str = "ionflux:transform/";

/// A version of the `ionflux:transform` contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `ionflux:transform@0.1.0`: Shopify's fields by name.
    V0_1,
    /// `ionflux:transform@0.2.0`: provider-neutral.
    V0_2,
}

impl World {
    /// The world the guest SDK (and so every built-in transform) targets.
    pub const LATEST: World = World::V0_2;
    pub const ALL: [World; 2] = [World::V0_1, World::V0_2];

    /// `"ionflux:transform@0.2.0"`: how the registry and the admin API
    /// name it.
    pub fn as_str(self) -> &'static str {
        match self {
            World::V0_1 => "ionflux:transform@0.1.0",
            World::V0_2 => "ionflux:transform@0.2.0",
        }
    }

    /// The inverse of [`World::as_str`].
    pub fn parse(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// Reads the world off a compiled component's exports. Only the names
    /// are looked at here; the types are checked when the matching bindings
    /// take the component ([`Pre::new`]).
    pub(super) fn of(engine: &Engine, component: &Component) -> Result<World, LoadError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        if exports.contains(&V0_2_EXPORT) {
            return Ok(World::V0_2);
        }
        if let Some(other) = exports.iter().find(|n| n.starts_with(PACKAGE_PREFIX)) {
            return Err(LoadError::WrongWorld(format!(
                "the component exports {other}, a version of ionflux:transform this host \
                 does not run (it runs {} and {})",
                World::V0_1.as_str(),
                World::V0_2.as_str()
            )));
        }
        if exports.contains(&V0_1_EXPORT) {
            return Ok(World::V0_1);
        }
        Err(LoadError::WrongWorld(format!(
            "the component exports neither {V0_2_EXPORT} ({}) nor a `transform` function \
             ({}); it exports [{}]",
            World::V0_2.as_str(),
            World::V0_1.as_str(),
            exports.join(", ")
        )))
    }
}

impl serde::Serialize for World {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host imports of every world, so one linker serves both.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    v0_1::ionflux::transform::host::add_to_linker::<CallState, HasSelf<CallState>>(
        linker,
        |state| state,
    )?;
    v0_2::ionflux::transform::host::add_to_linker::<CallState, HasSelf<CallState>>(
        linker,
        |state| state,
    )?;
    Ok(())
}

/// A component ready to instantiate, through its world's bindings.
pub(super) enum Pre {
    V0_1(v0_1::TransformPre<CallState>),
    V0_2(v0_2::TransformPre<CallState>),
}

impl Pre {
    pub(super) fn new(world: World, pre: InstancePre<CallState>) -> Result<Self, LoadError> {
        let wrong = |e: wasmtime::Error| {
            LoadError::WrongWorld(format!("as {world}, the component's exports: {e:#}"))
        };
        Ok(match world {
            World::V0_1 => Pre::V0_1(v0_1::TransformPre::new(pre).map_err(wrong)?),
            World::V0_2 => Pre::V0_2(v0_2::TransformPre::new(pre).map_err(wrong)?),
        })
    }

    pub(super) fn world(&self) -> World {
        match self {
            Pre::V0_1(_) => World::V0_1,
            Pre::V0_2(_) => World::V0_2,
        }
    }

    pub(super) fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

/// A live instance of either world.
pub(super) enum Instance {
    V0_1(v0_1::Transform),
    V0_2(v0_2::Transform),
}

impl Instance {
    /// Calls the guest's `transform`. The outer error is wasmtime's (a trap,
    /// a limit); the inner one is the guest's own refusal, as
    /// [`TransformError::InvalidInput`] or [`TransformError::Failed`], its
    /// reason not yet bounded.
    pub(super) fn transform(
        &self,
        store: &mut Store<CallState>,
        input: &Input<'_>,
    ) -> wasmtime::Result<Result<Vec<Event>, TransformError>> {
        match self {
            Instance::V0_1(instance) => {
                use v0_1::ionflux::transform::types as wit;
                let headers = input
                    .headers
                    .iter()
                    .map(|(name, value)| wit::Header { name, value })
                    .collect::<Vec<_>>();
                // 0.1.0 named Shopify's headers: the neutral fields stand in
                // for them, whichever provider sent the webhook.
                let webhook = wit::Webhook {
                    provider: input.provider,
                    topic: input.topic,
                    shop_domain: input.account_id,
                    workspace_id: input.workspace_id,
                    brand_id: input.brand_id,
                    api_version: input.api_version,
                    webhook_id: input.delivery_id,
                    triggered_at: input.occurred_at,
                    event_id: input.event_id,
                    headers: &headers,
                    body: input.body,
                };
                Ok(instance
                    .call_transform(store, webhook)?
                    .map(|events| events.into_iter().map(event_v0_1).collect())
                    .map_err(TransformError::from))
            }
            Instance::V0_2(instance) => {
                use v0_2::ionflux::transform::types as wit;
                let headers = input
                    .headers
                    .iter()
                    .map(|(name, value)| wit::Header { name, value })
                    .collect::<Vec<_>>();
                let webhook = wit::Webhook {
                    provider: input.provider,
                    topic: input.topic,
                    account_id: input.account_id,
                    workspace_id: input.workspace_id,
                    brand_id: input.brand_id,
                    delivery_id: input.delivery_id,
                    occurred_at: input.occurred_at,
                    api_version: input.api_version,
                    headers: &headers,
                    body: input.body,
                };
                let exports = instance.ionflux_transform_transformer();
                Ok(exports
                    .call_transform(store, webhook)?
                    .map(|events| events.into_iter().map(event_v0_2).collect())
                    .map_err(TransformError::from))
            }
        }
    }
}

/// What is the same in every world but its generated types: the output
/// (events and refusals) and the host imports.
macro_rules! world_glue {
    ($world:ident, $event:ident) => {
        fn $event(event: $world::ionflux::transform::types::Event) -> Event {
            use $world::ionflux::transform::types::Payload as P;
            Event {
                kind: event.kind,
                schema_version: event.schema_version,
                payload: match event.payload {
                    P::Unchanged => Payload::Unchanged,
                    P::Json(bytes) => Payload::Json(bytes),
                },
            }
        }

        impl From<$world::ionflux::transform::types::TransformError> for TransformError {
            fn from(refusal: $world::ionflux::transform::types::TransformError) -> Self {
                use $world::ionflux::transform::types::TransformError as R;
                match refusal {
                    R::InvalidInput(why) => TransformError::InvalidInput(why),
                    R::Failed(why) => TransformError::Failed(why),
                }
            }
        }

        impl $world::ionflux::transform::host::Host for CallState {
            fn log(&mut self, level: $world::ionflux::transform::host::Level, message: String) {
                use $world::ionflux::transform::host::Level as L;
                let level = match level {
                    L::Trace => Level::Trace,
                    L::Debug => Level::Debug,
                    L::Info => Level::Info,
                    L::Warn => Level::Warn,
                    L::Error => Level::Error,
                };
                self.guest_log(level, &message);
            }

            fn config(&mut self) -> String {
                self.route_config()
            }
        }
    };
}

world_glue!(v0_1, event_v0_1);
world_glue!(v0_2, event_v0_2);

/// A guest's log level, whichever world it logs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
