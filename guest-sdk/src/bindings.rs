//! The wit-bindgen side, compiled for wasm only. Everything here is
//! `#[doc(hidden)]` plumbing: transform authors only see the SDK's own types.

/// The generated bindings, in their own module because they define
/// `Webhook` and `Event` too.
pub mod wit {
    wit_bindgen::generate!({
        world: "transform",
        // The current contract, ionflux:transform@0.2.0; the host still
        // runs components built for 0.1.0 (`wit/transform-0.1.0.wit`).
        path: "../wit/transform.wit",
        // The export macro is invoked from the transform crate through
        // `export_transform!`, which therefore needs it public, and it must
        // find the bindings and the runtime through this crate, because
        // transform crates do not depend on wit-bindgen themselves.
        pub_export_macro: true,
        export_macro_name: "__export_transform",
        default_bindings_module: "ionflux_guest::__private::bindings",
        runtime_path: "ionflux_guest::__private::wit_bindgen::rt",
    });
}

use self::wit::ionflux::transform::host as imports;
use self::wit::ionflux::transform::types as abi;

use crate::{Error, Header, IntoEvents, Level, Payload, Webhook};

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => imports::Level::Trace,
        Level::Debug => imports::Level::Debug,
        Level::Info => imports::Level::Info,
        Level::Warn => imports::Level::Warn,
        Level::Error => imports::Level::Error,
    };
    imports::log(level, message);
}

pub(crate) fn config() -> String {
    imports::config()
}

/// Bridges the generated `Guest::transform` to the author's function. Every
/// conversion moves, never copies: the body can be megabytes and guest
/// memory is capped.
pub fn call<R: IntoEvents>(
    input: abi::Webhook,
    f: impl FnOnce(Webhook) -> Result<R, Error>,
) -> Result<Vec<abi::Event>, abi::TransformError> {
    route_panics_to_host_log();
    let input = Webhook::from_parts(
        input.provider,
        input.topic,
        input.account_id,
        input.workspace_id,
        input.brand_id,
        input.delivery_id,
        input.occurred_at,
        input.api_version,
        input
            .headers
            .into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        input.body,
    );
    match f(input) {
        Ok(events) => Ok(events
            .into_events()
            .into_iter()
            .map(|e| abi::Event {
                kind: e.kind,
                schema_version: e.schema_version,
                payload: match e.payload {
                    Payload::Unchanged => abi::Payload::Unchanged,
                    Payload::Json(bytes) => abi::Payload::Json(bytes),
                },
            })
            .collect()),
        Err(Error::InvalidInput(m)) => Err(abi::TransformError::InvalidInput(m)),
        Err(Error::Failed(m)) => Err(abi::TransformError::Failed(m)),
    }
}

/// A panic traps the instance and the trap itself only says "unreachable".
/// The message goes to the host log (tagged with tenant and transform) and
/// to stderr, which the host appends to the trap's dead-letter reason.
fn route_panics_to_host_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = format!("transform {info}");
            log(Level::Error, &message);
            eprintln!("{message}");
        }));
    });
}
