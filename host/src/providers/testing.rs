//! What the provider tests share: the fixtures (copied from the project's
//! shared data into `tests/fixtures/providers/`) and requests built from them.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::pipeline::provider::{Incoming, Keys};

/// A fixture's text, compiled in so the tests need no working directory.
macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/providers/",
            $path
        ))
    };
}
pub(crate) use fixture;

/// One entry of `vectors/<provider>.json`.
#[derive(Debug, Deserialize)]
pub struct Vector {
    pub secret: Option<String>,
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub expect_valid: bool,
    /// `false` when the collector could not confirm the vector (its secret
    /// is unknown): such entries are shape samples only.
    #[serde(default)]
    pub verified: Option<bool>,
    #[serde(default)]
    pub app_key: Option<String>,
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

fn yes() -> bool {
    true
}

pub fn vectors(json: &str) -> Vec<Vector> {
    serde_json::from_str(json).expect("a vector file")
}

pub fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    map
}

/// A `*.headers.json` sample as a header map.
pub fn headers_json(json: &str) -> HeaderMap {
    let pairs: BTreeMap<String, String> = serde_json::from_str(json).expect("a headers file");
    header_map(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

pub fn request<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> Incoming<'a> {
    Incoming { headers, body, now }
}

pub fn keys<'a>(secrets: &'a [&'a [u8]], settings: &'a Value) -> Keys<'a> {
    Keys { secrets, settings }
}

/// The body with one byte changed (at `at`, wrapped), for forgeries.
pub fn flipped(body: &[u8], at: usize) -> Vec<u8> {
    let mut out = body.to_vec();
    if out.is_empty() {
        out.push(b' ');
    } else {
        let at = at % out.len();
        out[at] ^= 0x01;
    }
    out
}
