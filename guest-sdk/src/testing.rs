//! A thread-local stand-in for the host, so transforms can be unit-tested
//! with plain `cargo test`: no wasm, no gateway. Only compiled for non-wasm
//! targets, so keep transform tests under
//! `#[cfg(all(test, not(target_arch = "wasm32")))]`.
//!
//! State is per thread and libtest runs each test on its own thread, so
//! tests do not see each other's config or logs.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::{Error, Event, Header, IntoEvents, Level, Webhook};

/// One line a transform logged through the test host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

thread_local! {
    static CONFIG: RefCell<String> = RefCell::new("{}".to_owned());
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn host_log(level: Level, message: &str) {
    // Echoed so a failing test shows what the transform said; libtest
    // captures it for passing ones.
    eprintln!("[guest {level}] {message}");
    LOGS.with(|l| {
        l.borrow_mut().push(LogLine {
            level,
            message: message.to_owned(),
        })
    });
}

pub(crate) fn host_config() -> String {
    CONFIG.with(|c| c.borrow().clone())
}

/// Default values of [`webhook`], exposed so tests can assert on them.
pub const SHOP_DOMAIN: &str = "example.myshopify.com";
pub const WORKSPACE_ID: &str = "ws_test";
pub const BRAND_ID: &str = "brand_test";
pub const API_VERSION: &str = "2024-01";
pub const WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
pub const TRIGGERED_AT: &str = "2024-01-01T12:00:00.000000000Z";
pub const EVENT_ID: &str = "98880550-7158-44d4-b7cd-2c97c8a091b5";

/// A Shopify webhook as the host would hand it over, with realistic
/// defaults (see the constants in this module) and the matching
/// `x-shopify-*` headers. Adjust with the `Webhook::with_*` setters:
///
/// ```
/// let w = ionflux_guest::testing::webhook("orders/create", r#"{"id":1}"#)
///     .with_api_version(None);
/// assert_eq!(w.header("X-Shopify-Topic"), Some("orders/create"));
/// ```
pub fn webhook(topic: &str, body: impl Into<Vec<u8>>) -> Webhook {
    let h = |name: &str, value: &str| Header {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    Webhook::from_parts(
        "shopify".to_owned(),
        topic.to_owned(),
        SHOP_DOMAIN.to_owned(),
        WORKSPACE_ID.to_owned(),
        BRAND_ID.to_owned(),
        WEBHOOK_ID.to_owned(),
        Some(TRIGGERED_AT.to_owned()),
        Some(API_VERSION.to_owned()),
        vec![
            h("x-shopify-topic", topic),
            h("x-shopify-shop-domain", SHOP_DOMAIN),
            h("x-shopify-api-version", API_VERSION),
            h("x-shopify-webhook-id", WEBHOOK_ID),
            h("x-shopify-triggered-at", TRIGGERED_AT),
            h("x-shopify-event-id", EVENT_ID),
        ],
        body.into(),
    )
}

/// Default account and delivery of [`provider_webhook`].
pub const ACCOUNT_ID: &str = "account_test";
pub const DELIVERY_ID: &str = "delivery_test";

/// Any provider's webhook as the host would hand it over: no headers, no
/// API version, no occurred-at, the account and delivery ids above. Add
/// what the provider sends with the `Webhook::with_*` setters:
///
/// ```
/// use ionflux_guest::testing;
/// let w = testing::provider_webhook("woocommerce", "order.created", r#"{"id":727}"#)
///     .with_account_id("https://shop.example.com")
///     .with_header("X-WC-Webhook-Resource", Some("order"));
/// assert_eq!(w.header("x-wc-webhook-resource"), Some("order"));
/// assert_eq!(w.account_id, "https://shop.example.com");
/// ```
pub fn provider_webhook(provider: &str, topic: &str, body: impl Into<Vec<u8>>) -> Webhook {
    Webhook::from_parts(
        provider.to_owned(),
        topic.to_owned(),
        ACCOUNT_ID.to_owned(),
        WORKSPACE_ID.to_owned(),
        BRAND_ID.to_owned(),
        DELIVERY_ID.to_owned(),
        None,
        None,
        Vec::new(),
        body.into(),
    )
}

/// Runs `f` with the route config set to `json`, restoring the previous
/// config afterwards, even if `f` panics.
pub fn with_config<R>(json: &str, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                CONFIG.with(|c| *c.borrow_mut() = previous);
            }
        }
    }
    let previous = CONFIG.with(|c| std::mem::replace(&mut *c.borrow_mut(), json.to_owned()));
    let _restore = Restore(Some(previous));
    f()
}

/// Every line logged on this thread so far.
pub fn logs() -> Vec<LogLine> {
    LOGS.with(|l| l.borrow().clone())
}

/// Every line logged on this thread so far, clearing the buffer.
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Reads a payload file. Relative paths are resolved against the crate
/// under test (`CARGO_MANIFEST_DIR`, which cargo sets when running tests),
/// so `fixture("tests/fixtures/order.json")` works from any directory.
/// Panics with the path on failure: this is a test helper.
pub fn fixture(path: impl AsRef<Path>) -> Vec<u8> {
    let path = resolve(path.as_ref());
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => Path::new(&dir).join(path),
        None => path.to_owned(),
    }
}

/// One sample webhook of a platform, as a `SOURCES.tsv` lists it (columns
/// `provider`, `topic`, `file`, ...; see [`samples`]).
#[derive(Debug, Clone)]
pub struct Sample {
    /// The topic as the listing names it (the platform's own spelling).
    pub topic: String,
    pub path: PathBuf,
    pub body: Vec<u8>,
    /// From `N.headers.json` beside `N.json`, names lower-cased; empty
    /// when there is no such file.
    pub headers: Vec<Header>,
}

impl Sample {
    /// The webhook a provider would hand over for this sample: its body
    /// and headers, under `topic` (which the provider may derive
    /// differently from the listing's).
    pub fn webhook(&self, provider: &str, topic: &str) -> Webhook {
        let mut w = provider_webhook(provider, topic, self.body.clone());
        w.headers = self.headers.clone();
        w
    }
}

/// Every sample of `provider` listed in `dir/SOURCES.tsv`, in its order;
/// signature vectors (files under `vectors/`) are left out. Relative `dir`s
/// resolve as in [`fixture`]. Panics on a missing or unreadable listing:
/// this is a test helper.
pub fn samples(dir: impl AsRef<Path>, provider: &str) -> Vec<Sample> {
    let dir = resolve(dir.as_ref());
    let listing = String::from_utf8(fixture(dir.join("SOURCES.tsv"))).expect("UTF-8 listing");
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.len() >= 3 && cols[0] == provider && !cols[2].starts_with("vectors/"))
                .then(|| (cols[1], cols[2]))
        })
        .map(|(topic, file)| {
            let path = dir.join(file);
            let headers_path = path.with_extension("headers.json");
            let headers = if headers_path.exists() {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&fixture(&headers_path))
                        .unwrap_or_else(|e| panic!("{}: {e}", headers_path.display()));
                map.into_iter()
                    .map(|(name, value)| Header {
                        name: name.to_ascii_lowercase(),
                        value: value.as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Sample {
                topic: topic.to_owned(),
                body: fixture(&path),
                path,
                headers,
            }
        })
        .collect()
}

/// Calls a transform function the way the exported component does, so the
/// test sees exactly the event list the host would.
pub fn run<R: IntoEvents>(
    f: impl FnOnce(Webhook) -> Result<R, Error>,
    input: Webhook,
) -> Result<Vec<Event>, Error> {
    f(input).map(IntoEvents::into_events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_scoped() {
        assert_eq!(crate::config_raw(), "{}");
        let inner = with_config(r#"{"a":1}"#, crate::config_raw);
        assert_eq!(inner, r#"{"a":1}"#);
        assert_eq!(crate::config_raw(), "{}");
        assert_eq!(with_config("", crate::config_raw), "{}");
    }

    #[test]
    fn logs_are_captured() {
        take_logs();
        crate::info!("hello {}", 42);
        crate::error!("bad");
        let captured = take_logs();
        assert_eq!(
            captured,
            vec![
                LogLine {
                    level: Level::Info,
                    message: "hello 42".into()
                },
                LogLine {
                    level: Level::Error,
                    message: "bad".into()
                },
            ]
        );
        assert!(logs().is_empty());
    }

    #[test]
    fn typed_config() {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct C {
            n: u32,
        }
        let c: C = with_config(r#"{"n":3}"#, || crate::config().unwrap());
        assert_eq!(c.n, 3);
        let e = with_config(r#"{"n":"x"}"#, crate::config::<C>)
            .err()
            .unwrap();
        assert!(matches!(e, Error::Failed(_)));
    }

    #[test]
    fn webhook_helpers() {
        let w = webhook("orders/create", r#"{"id":7}"#)
            .with_api_version(None)
            .with_header("X-Custom", Some("v"));
        assert_eq!(w.api_version, None);
        assert_eq!(w.header("x-shopify-api-version"), None);
        assert_eq!(w.header("x-custom"), Some("v"));
        assert_eq!(crate::shopify::event_id(&w), Some(EVENT_ID));
        let w = w
            .with_account_id("other.myshopify.com")
            .with_occurred_at(None);
        assert_eq!(
            w.header("x-shopify-shop-domain"),
            Some("other.myshopify.com")
        );
        assert_eq!(w.header("x-shopify-triggered-at"), None);
        assert_eq!(w.json_value().unwrap()["id"], 7);
        #[derive(serde::Deserialize)]
        struct O {
            id: u64,
        }
        assert_eq!(w.json::<O>().unwrap().id, 7);
        let bad = webhook("orders/create", "nope");
        assert!(matches!(bad.json_value(), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn other_providers_headers_are_left_alone() {
        let w = provider_webhook("woocommerce", "order.created", "{}")
            .with_account_id("https://shop.example.com")
            .with_delivery_id("54")
            .with_api_version(Some("wc/v3"));
        assert!(w.headers.is_empty(), "{:?}", w.headers);
        assert_eq!(
            (w.delivery_id.as_str(), w.api_version.as_deref()),
            ("54", Some("wc/v3"))
        );
        assert_eq!(crate::shopify::event_id(&w), None);
    }

    #[test]
    fn event_builder() {
        let e = Event::new("orders.created")
            .schema_version("v1.x")
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(e.json_payload(), Some(&br#"{"a":1}"#[..]));
        assert!(Event::new("a.b").json(&[1, 2]).is_err());
        assert_eq!(Event::new("a.b").schema_version, "v1");
        assert!(crate::is_valid_kind("orders.created"));
        assert!(!crate::is_valid_kind("orders"));
        assert!(!crate::is_valid_kind("Not A Kind!"));
        assert!(!crate::is_valid_kind("a..b"));
    }

    #[test]
    fn serde_errors_map_to_invalid_input() {
        let e: Error = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert!(matches!(e, Error::InvalidInput(_)));
    }

    #[test]
    fn run_flattens_outputs() {
        let out = run(|w| Ok(crate::shopify::event(&w)), webhook("a/create", "")).unwrap();
        assert_eq!(out.len(), 1);
        let none = run(|_| Ok(None), webhook("a/create", "")).unwrap();
        assert!(none.is_empty());
    }
}
