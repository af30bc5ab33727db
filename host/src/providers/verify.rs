//! Is an HMAC-signed request genuine? One declarative verifier for every
//! scheme that is "a MAC over some bytes, carried in a header".
//!
//! A scheme is data ([`HmacSpec`], read with serde and `deny_unknown_fields`
//! so a misspelt setting fails loudly instead of weakening the check): which
//! header, what prefix, which bytes are signed, the algorithm and encodings,
//! how several signatures share a header, where the timestamp is and how far
//! it may drift. GitHub, Stripe, Standard Webhooks, Shopify and WooCommerce
//! are presets of it ([`presets`]), checked against their published vectors.
//!
//! The comparison is `hmac`'s constant-time `verify_slice`, over every secret
//! and every candidate signature with no early exit: the time taken does not
//! say which secret (current or previous) matched, nor how much of a forged
//! signature was right. Nothing here panics on what a request contains.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::pipeline::provider::{Described, Incoming, Rejected};

/// The topic a provider gives a genuine request whose envelope it cannot
/// read (TikTok's docs publish one such body). Refusing it with a 400 would
/// make the platform retry something that will never parse, and dropping it
/// would lose a signed delivery; stored under this topic, it reaches a
/// transform that cannot read it either and ends as a dead letter an
/// operator can see, with the reason in [`ENVELOPE_ERROR_HEADER`].
pub const INVALID_ENVELOPE: &str = "invalid_envelope";

/// The header a provider adds to [`INVALID_ENVELOPE`] rows: why the
/// envelope could not be read, for the dead letter's reason.
pub const ENVELOPE_ERROR_HEADER: &str = "x-ionflux-envelope-error";

/// The description of a genuine request whose envelope cannot be read: see
/// [`INVALID_ENVELOPE`].
pub(crate) fn invalid_envelope(delivery_id: String, reason: String) -> Described {
    Described {
        topic: INVALID_ENVELOPE.to_owned(),
        delivery_id,
        account: None,
        api_version: None,
        occurred_at: None,
        event_id: None,
        headers: vec![(ENVELOPE_ERROR_HEADER.to_owned(), reason)],
        body: None,
    }
}

/// At most this many signatures are tried from one header: senders send one
/// to three, and a hostile header must not buy unbounded HMAC work.
const MAX_CANDIDATES: usize = 16;

/// How a configurable source is verified. Tagged by `type` so other kinds
/// (an asymmetric signature, a shared token) can join without changing the
/// shape of what is already configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scheme {
    Hmac(HmacSpec),
}

impl Scheme {
    pub fn check(&self) -> Result<(), String> {
        match self {
            Scheme::Hmac(spec) => spec.check(),
        }
    }

    pub fn verify(&self, req: &Incoming<'_>, secrets: &[&[u8]]) -> Result<(), Rejected> {
        match self {
            Scheme::Hmac(spec) => spec.verify(req, secrets),
        }
    }

    /// The sha256 (hex) of what the scheme signs: a stable delivery id for a
    /// sender that sends none.
    pub fn signed_digest(&self, req: &Incoming<'_>) -> String {
        match self {
            Scheme::Hmac(spec) => spec.signed_digest(req),
        }
    }
}

/// One HMAC scheme, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSpec {
    /// The header carrying the signature (any case).
    pub header: String,
    /// What precedes each signature (`sha256=`, `v1,`); a candidate without
    /// it is skipped (another version of the scheme), not failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The bytes signed: `{body}`, or a template such as
    /// `{id}.{timestamp}.{body}`.
    #[serde(default)]
    pub signed: Template,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// How the signature is written.
    #[serde(default)]
    pub encoding: Encoding,
    /// How the configured secret becomes the HMAC key.
    #[serde(default)]
    pub key: KeyEncoding,
    /// How several signatures share the header.
    #[serde(default)]
    pub signatures: Signatures,
    /// The header whose value fills `{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_header: Option<String>,
    /// Where the timestamp is, and how far from now it may be. Without it
    /// the scheme has no replay protection beyond the inbox's deduplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Either case.
    #[default]
    Hex,
    /// Standard alphabet, padded, decoded strictly.
    Base64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEncoding {
    /// The secret's bytes as given (Stripe: the whole `whsec_…` string).
    #[default]
    Raw,
    /// The secret is base64 (padded or not) of the key.
    Base64,
    /// Standard Webhooks: an optional `whsec_` then base64 of the key.
    Whsec,
}

/// How several signatures share one header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "split", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signatures {
    /// The whole (trimmed) value is one signature.
    #[default]
    None,
    /// Entries separated by `separator` (Standard Webhooks: a space between
    /// `v1,<base64>` entries); any one matching suffices.
    Separator { separator: String },
    /// `key=value` pairs separated by `separator` (Stripe:
    /// `t=…,v1=…,v1=…`); the values of every `key` pair are candidates.
    Pairs { separator: String, key: String },
}

/// Where the timestamp is read (seconds since the Unix epoch) and how far it
/// may be from the time of receipt, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum Timestamp {
    /// A header of its own (`webhook-timestamp`).
    Header { name: String, tolerance_secs: u64 },
    /// A pair of the signature header (Stripe's `t`); needs `split = "pairs"`.
    Pair { key: String, tolerance_secs: u64 },
    /// A field of the JSON body, as a JSON pointer (`/timestamp`).
    Field {
        pointer: String,
        tolerance_secs: u64,
    },
}

impl Timestamp {
    fn tolerance(&self) -> u64 {
        match self {
            Timestamp::Header { tolerance_secs, .. }
            | Timestamp::Pair { tolerance_secs, .. }
            | Timestamp::Field { tolerance_secs, .. } => *tolerance_secs,
        }
    }
}

/// The signed bytes, as a template over `{id}`, `{timestamp}` and `{body}`.
/// `{body}` must appear exactly once: a scheme that signs no body, or signs
/// it twice, is a configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Id,
    Timestamp,
    Body,
}

impl Default for Template {
    fn default() -> Self {
        Template(vec![Part::Body])
    }
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in the template `{s}`"))?;
            parts.push(match &rest[open + 1..open + close] {
                "id" => Part::Id,
                "timestamp" => Part::Timestamp,
                "body" => Part::Body,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` (known: {{id}}, {{timestamp}}, {{body}})"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.iter().filter(|p| **p == Part::Body).count() != 1 {
            return Err(format!(
                "the template `{s}` must contain `{{body}}` exactly once"
            ));
        }
        Ok(Template(parts))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.0 {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Id => f.write_str("{id}")?,
                Part::Timestamp => f.write_str("{timestamp}")?,
                Part::Body => f.write_str("{body}")?,
            }
        }
        Ok(())
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.to_string()
    }
}

impl Template {
    fn uses(&self, part: &Part) -> bool {
        self.0.contains(part)
    }

    fn parts<'a>(&'a self, id: &'a str, timestamp: &'a str, body: &'a [u8]) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(t) => t.as_bytes(),
                Part::Id => id.as_bytes(),
                Part::Timestamp => timestamp.as_bytes(),
                Part::Body => body,
            })
            .collect()
    }
}

/// What a request's signature header says, read once.
struct Header<'a> {
    candidates: Vec<&'a str>,
    /// Stripe's `t=`, when the timestamp is a pair.
    pair_timestamp: Option<&'a str>,
}

impl HmacSpec {
    /// Whether the spec is coherent: every placeholder has a source.
    pub fn check(&self) -> Result<(), String> {
        if self.header.trim().is_empty() {
            return Err("`header` is empty".into());
        }
        if self.signed.uses(&Part::Id) && self.id_header.is_none() {
            return Err("the template uses `{id}` but no `id_header` is set".into());
        }
        if self.signed.uses(&Part::Timestamp) && self.timestamp.is_none() {
            return Err("the template uses `{timestamp}` but no `timestamp` is set".into());
        }
        if let Some(Timestamp::Pair { .. }) = self.timestamp
            && !matches!(self.signatures, Signatures::Pairs { .. })
        {
            return Err("a `pair` timestamp needs `signatures.split = \"pairs\"`".into());
        }
        match &self.signatures {
            Signatures::Separator { separator } | Signatures::Pairs { separator, .. }
                if separator.is_empty() =>
            {
                Err("`signatures.separator` is empty".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether `req` is signed by one of `secrets` and, when the scheme has
    /// a timestamp, within its tolerance of `req.now`.
    pub fn verify(&self, req: &Incoming<'_>, secrets: &[&[u8]]) -> Result<(), Rejected> {
        self.verify_or(req, secrets, |_, _| false)
    }

    /// [`HmacSpec::verify`], where `other` may accept the request too: given
    /// the signature header's value and the signed bytes, it says whether a
    /// signature this spec does not read matches (Standard Webhooks' `v1a`
    /// entries). It shares the header, id and timestamp checks, and both
    /// are always tried, so the time taken does not say which matched.
    pub fn verify_or(
        &self,
        req: &Incoming<'_>,
        secrets: &[&[u8]],
        other: impl FnOnce(&str, &[&[u8]]) -> bool,
    ) -> Result<(), Rejected> {
        let value = header(req, &self.header).ok_or(Rejected::Signature)?;
        let parsed = self.read_header(value);
        let timestamp = self.timestamp_text(req, &parsed)?;
        let id = match &self.id_header {
            Some(name) if self.signed.uses(&Part::Id) => header(req, name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Rejected::Malformed(format!("the `{name}` header is missing")))?,
            _ => "",
        };
        let candidates: Vec<Vec<u8>> = parsed
            .candidates
            .iter()
            .filter_map(|c| self.encoding.decode(c))
            .collect();
        let keys: Vec<Vec<u8>> = secrets.iter().filter_map(|s| self.key.key(s)).collect();
        let ts = timestamp.as_deref().unwrap_or("");
        let parts = self.signed.parts(id, ts, req.body);
        // Whether the header has candidates is no secret: skipping the MAC
        // then says nothing about the keys.
        let by_mac =
            !candidates.is_empty() && mac_matches(self.algorithm, &keys, &parts, &candidates);
        let by_other = other(value, &parts);
        if !(by_mac | by_other) {
            return Err(Rejected::Signature);
        }
        // Checked after the MAC, so that `Stale` always means a genuine but
        // late (or early) request; both answer 401.
        if let (Some(spec), Some(ts)) = (&self.timestamp, timestamp) {
            check_age(&ts, req.now, spec.tolerance())?;
        }
        Ok(())
    }

    /// The header value a sender would send for `body` (tests, benches,
    /// fuzzing; the gateway itself never signs webhooks).
    pub fn sign(&self, secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Option<String> {
        let sig = self.signature(secret, id, timestamp, body)?;
        Some(match (&self.signatures, &self.timestamp) {
            (Signatures::Pairs { separator, key }, Some(Timestamp::Pair { key: t, .. })) => {
                format!("{t}={timestamp}{separator}{key}={sig}")
            }
            (Signatures::Pairs { key, .. }, _) => format!("{key}={sig}"),
            _ => sig,
        })
    }

    /// One signature as the header spells it (prefix and encoded MAC), the
    /// part of [`HmacSpec::sign`]'s value that verification compares.
    pub fn signature(
        &self,
        secret: &[u8],
        id: &str,
        timestamp: &str,
        body: &[u8],
    ) -> Option<String> {
        let key = self.key.key(secret)?;
        let parts = self.signed.parts(id, timestamp, body);
        let mac = compute(self.algorithm, &key, &parts);
        Some(format!(
            "{}{}",
            self.prefix.as_deref().unwrap_or(""),
            self.encoding.encode(&mac)
        ))
    }

    /// sha256 (hex) of the signed bytes as this request gives them.
    pub fn signed_digest(&self, req: &Incoming<'_>) -> String {
        let value = header(req, &self.header).unwrap_or("");
        let parsed = self.read_header(value);
        let ts = self
            .timestamp_text(req, &parsed)
            .ok()
            .flatten()
            .unwrap_or_default();
        let id = self
            .id_header
            .as_deref()
            .and_then(|name| header(req, name))
            .unwrap_or("");
        sha256_hex(&self.signed.parts(id, &ts, req.body))
    }

    fn read_header<'a>(&self, value: &'a str) -> Header<'a> {
        let prefix = self.prefix.as_deref().unwrap_or("");
        let strip = |c: &'a str| c.trim().strip_prefix(prefix).map(str::trim);
        let mut pair_timestamp = None;
        let candidates: Vec<&str> = match &self.signatures {
            Signatures::None => strip(value).into_iter().collect(),
            Signatures::Separator { separator } => value
                .split(separator.as_str())
                .filter(|c| !c.trim().is_empty())
                .filter_map(strip)
                .take(MAX_CANDIDATES)
                .collect(),
            Signatures::Pairs { separator, key } => {
                let t_key = match &self.timestamp {
                    Some(Timestamp::Pair { key, .. }) => Some(key.as_str()),
                    _ => None,
                };
                let mut found = Vec::new();
                for pair in value.split(separator.as_str()) {
                    let Some((k, v)) = pair.split_once('=') else {
                        continue;
                    };
                    let k = k.trim();
                    if Some(k) == t_key && pair_timestamp.is_none() {
                        pair_timestamp = Some(v.trim());
                    } else if k == key && found.len() < MAX_CANDIDATES {
                        found.extend(strip(v));
                    }
                }
                found
            }
        };
        Header {
            candidates,
            pair_timestamp,
        }
    }

    /// The timestamp exactly as the sender wrote it (it is signed as text).
    fn timestamp_text(
        &self,
        req: &Incoming<'_>,
        parsed: &Header<'_>,
    ) -> Result<Option<String>, Rejected> {
        let Some(spec) = &self.timestamp else {
            return Ok(None);
        };
        let missing = |what: String| Rejected::Malformed(format!("{what} is missing"));
        let text = match spec {
            Timestamp::Header { name, .. } => header(req, name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| missing(format!("the `{name}` header")))?,
            Timestamp::Pair { key, .. } => parsed
                .pair_timestamp
                .map(str::to_owned)
                .ok_or_else(|| missing(format!("`{key}=` in the `{}` header", self.header)))?,
            Timestamp::Field { pointer, .. } => serde_json::from_slice::<Value>(req.body)
                .ok()
                .and_then(|body| field_text(&body, pointer))
                .ok_or_else(|| missing(format!("the body's `{pointer}`")))?,
        };
        Ok(Some(text))
    }
}

fn check_age(ts: &str, now: i64, tolerance: u64) -> Result<(), Rejected> {
    let ts: i64 = ts
        .parse()
        .map_err(|_| Rejected::Malformed("the timestamp is not a number of seconds".into()))?;
    if now.abs_diff(ts) > tolerance {
        return Err(Rejected::Stale);
    }
    Ok(())
}

impl Encoding {
    fn decode(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(s).ok(),
            Encoding::Base64 => STANDARD.decode(s).ok(),
        }
    }

    fn encode(self, mac: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(mac),
            Encoding::Base64 => STANDARD.encode(mac),
        }
    }
}

impl KeyEncoding {
    /// The HMAC key for a configured secret; `None` when the secret is not
    /// in the encoding the scheme says (it then matches nothing).
    fn key(self, secret: &[u8]) -> Option<Vec<u8>> {
        let b64 = |s: &[u8]| {
            let s = s.trim_ascii();
            STANDARD
                .decode(s)
                .or_else(|_| STANDARD_NO_PAD.decode(s))
                .ok()
        };
        match self {
            KeyEncoding::Raw => Some(secret.to_vec()),
            KeyEncoding::Base64 => b64(secret),
            KeyEncoding::Whsec => b64(secret.strip_prefix(b"whsec_").unwrap_or(secret)),
        }
    }
}

/// Whether any candidate is the MAC of `parts` under any key: every pair is
/// compared in constant time, with no early exit.
pub fn mac_matches(
    algorithm: Algorithm,
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    match algorithm {
        Algorithm::Sha1 => matches::<Hmac<sha1::Sha1>>(keys, parts, candidates),
        Algorithm::Sha256 => matches::<Hmac<Sha256>>(keys, parts, candidates),
        Algorithm::Sha512 => matches::<Hmac<Sha512>>(keys, parts, candidates),
    }
}

fn matches<M: Mac + hmac::digest::KeyInit + Clone>(
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    let mut ok = false;
    for key in keys {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        for candidate in candidates {
            ok |= mac.clone().verify_slice(candidate).is_ok();
        }
    }
    ok
}

fn compute(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

/// The schemes shipped as data, each checked against its vectors.
pub mod presets {
    use super::*;

    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    pub fn github() -> HmacSpec {
        HmacSpec {
            header: "x-hub-signature-256".into(),
            prefix: Some("sha256=".into()),
            signed: Template::default(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            key: KeyEncoding::Raw,
            signatures: Signatures::None,
            id_header: None,
            timestamp: None,
        }
    }

    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `{t}.{body}`, keyed
    /// by the UTF-8 of the whole `whsec_…` string (not decoded, unlike
    /// Standard Webhooks), five minutes either way.
    pub fn stripe() -> HmacSpec {
        HmacSpec {
            header: "stripe-signature".into(),
            prefix: None,
            signed: Template(vec![Part::Timestamp, Part::Text(".".into()), Part::Body]),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            key: KeyEncoding::Raw,
            signatures: Signatures::Pairs {
                separator: ",".into(),
                key: "v1".into(),
            },
            id_header: None,
            timestamp: Some(Timestamp::Pair {
                key: "t".into(),
                tolerance_secs: 300,
            }),
        }
    }

    /// `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`.
    pub fn shopify() -> HmacSpec {
        HmacSpec {
            header: "x-shopify-hmac-sha256".into(),
            encoding: Encoding::Base64,
            prefix: None,
            ..github()
        }
    }

    /// `X-WC-Webhook-Signature: <base64 HMAC-SHA256(secret, body)>`.
    pub fn woocommerce() -> HmacSpec {
        HmacSpec {
            header: "x-wc-webhook-signature".into(),
            ..shopify()
        }
    }
}

// ---- reading requests, shared by the providers ---------------------------------

/// A header's value, trimmed, when present and visible ASCII.
pub(crate) fn header<'a>(req: &Incoming<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The headers `keep` selects, lower-case names in the order received, for
/// transforms and the stored row; values that are not visible ASCII are left
/// out rather than mangled.
pub(crate) fn select_headers(
    req: &Incoming<'_>,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter(|(name, _)| keep(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// A JSON field as text: strings as they are, numbers as written.
pub(crate) fn field_text(body: &Value, pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part);
    }
    hex::encode(digest.finalize())
}

/// Seconds since the epoch as RFC 3339 UTC, when in chrono's range.
pub(crate) fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests;
