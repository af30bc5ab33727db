//! The two host imports, `log` and `config`. On wasm they call the real host;
//! everywhere else they go to the thread-local test host in
//! [`testing`](crate::testing), so transforms unit-test with plain
//! `cargo test`.

use serde::de::DeserializeOwned;

use crate::Error;

/// Log severity, as the host's `level` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// Sends one line to the host log. The host rate-limits and tags it with the
/// tenant and transform, so there is no need to repeat those. Prefer the
/// [`info!`](crate::info) family of macros.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::host_log(level, message);
}

/// The route's JSON settings, verbatim; `"{}"` when the route has none.
pub fn config_raw() -> String {
    #[cfg(target_arch = "wasm32")]
    let raw = crate::bindings::config();
    #[cfg(not(target_arch = "wasm32"))]
    let raw = crate::testing::host_config();
    // The contract promises "{}", but an empty string from a sloppy host
    // should not turn into a parse error in every transform.
    if raw.trim().is_empty() {
        "{}".to_owned()
    } else {
        raw
    }
}

/// The route's settings deserialised into `T`. A mismatch is
/// [`Error::Failed`]: the route is misconfigured, the webhook is fine.
///
/// Give `T` `#[serde(default)]` and a `Default` impl so routes without
/// settings work:
///
/// ```
/// #[derive(serde::Deserialize, Default)]
/// #[serde(default)]
/// struct Settings {
///     fields: Vec<String>,
///     verbose: bool,
/// }
///
/// let s: Settings = ionflux_guest::testing::with_config(r#"{"verbose": true}"#, || {
///     ionflux_guest::config()
/// })?;
/// assert!(s.verbose && s.fields.is_empty());
/// # Ok::<(), ionflux_guest::Error>(())
/// ```
pub fn config<T: DeserializeOwned>() -> Result<T, Error> {
    serde_json::from_str(&config_raw()).map_err(|e| Error::failed(format!("route config: {e}")))
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs at trace level, `format!` syntax.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::__log!($crate::Level::Trace, $($arg)+) };
}

/// Logs at debug level, `format!` syntax.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::__log!($crate::Level::Debug, $($arg)+) };
}

/// Logs at info level, `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::__log!($crate::Level::Info, $($arg)+) };
}

/// Logs at warn level, `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::__log!($crate::Level::Warn, $($arg)+) };
}

/// Logs at error level, `format!` syntax.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::__log!($crate::Level::Error, $($arg)+) };
}
