//! Fuzz properties of the code that reads untrusted bytes: Shopify's webhook
//! headers and signature, the OAuth callback's query, and a guest's output.
//!
//! Each function takes the raw fuzz input and panics only when a property is
//! violated, so the cargo-fuzz targets in `host/fuzz` and the stable smoke
//! test below check exactly the same thing. The inputs are small text
//! formats (documented on each function) so that the seed corpora in
//! `host/fuzz/corpus/<target>/` stay readable and can be written by hand.
//! Not an API: hidden from the docs and subject to change.
#![doc(hidden)]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::pipeline::transform::output::validate;
use crate::pipeline::transform::{Event, Limits, Payload, TransformError};
use crate::providers::shopify::headers::{self as webhook, HeaderError, ShopifyHeaders};
use crate::providers::shopify::oauth::{
    canonical_query, normalize_shop, parse_query, sign_query, verify_query,
};

/// Choices a property makes about an input (which byte to flip, which pair to
/// tamper with) are derived from the input itself, so that a crash
/// reproduces from the saved input alone.
struct Choices(u64);

impl Choices {
    fn new(data: &[u8]) -> Self {
        // FNV-1a: cheap, and any change to the input changes the choices.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in data {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Choices(h)
    }

    fn below(&mut self, n: usize) -> usize {
        // splitmix64 step
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }

    /// A non-zero XOR mask, so that a "flipped" byte really differs.
    fn mask(&mut self) -> u8 {
        1 + self.below(255) as u8
    }
}

fn split_once(data: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == sep)?;
    Some((&data[..at], &data[at + 1..]))
}

// ---- webhook headers -----------------------------------------------------------

/// Input: header lines `name:value` separated by `\n` (one space after the
/// colon is dropped, for readability). Lines that are not a valid header name
/// and value are skipped, as the HTTP layer would refuse them. Properties:
/// `ShopifyHeaders::parse` never panics, is deterministic, and accepts
/// exactly what an independent reading of its rules accepts, failing with
/// the same header named; what it accepts is checked field by field.
pub fn webhook_headers(data: &[u8]) {
    let mut map = HeaderMap::new();
    let mut lines: Vec<(String, Vec<u8>)> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((name, value)) = split_once(line, b':') else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        lines.push((name.as_str().to_owned(), value.as_bytes().to_vec()));
        map.append(name, value);
    }

    let parsed = ShopifyHeaders::parse(&map);
    assert_eq!(parsed, ShopifyHeaders::parse(&map.clone()), "deterministic");
    let expected = expected_headers(&map);
    match (&parsed, &expected) {
        (Ok(got), Ok(want)) => {
            assert_eq!(got.topic, want.topic);
            assert_eq!(got.shop_domain, want.shop_domain);
            assert_eq!(got.webhook_id, want.webhook_id);
            assert_eq!(got.api_version, want.api_version);
            assert_eq!(got.triggered_at, want.triggered_at);
            assert_eq!(got.event_id, want.event_id);
            assert!(webhook::is_shop_domain(&got.shop_domain));
        }
        (Err(got), Err(want)) => assert_eq!(error_header(got), error_header(want)),
        _ => panic!("parse gave {parsed:?}, the rules say {expected:?}"),
    }

    // What is handed to transforms: every x-shopify-* header but the
    // signature, never anything else, whatever the outcome of the rest.
    if let Ok(got) = parsed {
        let mut want: Vec<(String, String)> = lines
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-shopify-") && name != webhook::HMAC_HEADER)
            .filter_map(|(name, value)| Some((name, visible_ascii(&value)?.to_owned())))
            .collect();
        let mut selected = got.selected;
        want.sort();
        selected.sort();
        assert_eq!(selected, want, "selected headers");
    }
}

fn error_header(e: &HeaderError) -> (bool, &'static str) {
    match e {
        HeaderError::Missing(name) => (true, name),
        HeaderError::Invalid(name, _) => (false, name),
    }
}

/// `HeaderValue::to_str`'s rule: tab and 0x20..=0x7e.
fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(bytes).expect("ASCII is UTF-8"))
}

/// The header rules of `webhook.rs`, restated: values are visible ASCII, at
/// most 512 bytes once trimmed; topic, shop and webhook id are required and
/// non-empty; the topic is `[A-Za-z0-9/_.-]+`; the shop, lower-cased, is
/// `NAME.myshopify.com`. Checked in the order `parse` checks them.
fn expected_headers(map: &HeaderMap) -> Result<ShopifyHeaders, HeaderError> {
    let optional = |name: &'static str| -> Result<Option<String>, HeaderError> {
        let Some(value) = map.get(name) else {
            return Ok(None);
        };
        let value = visible_ascii(value.as_bytes())
            .ok_or(HeaderError::Invalid(name, ""))?
            .trim_matches([' ', '\t']);
        if value.len() > 512 {
            return Err(HeaderError::Invalid(name, ""));
        }
        Ok(Some(value.to_owned()))
    };
    let required = |name: &'static str| -> Result<String, HeaderError> {
        match optional(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(HeaderError::Missing(name)),
        }
    };
    let topic = required(webhook::TOPIC_HEADER)?;
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
    {
        return Err(HeaderError::Invalid(webhook::TOPIC_HEADER, ""));
    }
    let shop_domain = required(webhook::SHOP_HEADER)?.to_ascii_lowercase();
    let name = shop_domain.strip_suffix(".myshopify.com").unwrap_or("");
    let shop_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !shop_ok {
        return Err(HeaderError::Invalid(webhook::SHOP_HEADER, ""));
    }
    Ok(ShopifyHeaders {
        topic,
        shop_domain,
        webhook_id: required(webhook::WEBHOOK_ID_HEADER)?,
        api_version: optional(webhook::API_VERSION_HEADER)?,
        triggered_at: optional(webhook::TRIGGERED_AT_HEADER)?,
        event_id: optional(webhook::EVENT_ID_HEADER)?,
        selected: Vec::new(),
    })
}

// ---- webhook HMAC --------------------------------------------------------------

/// Input: `secret \n signature \n body` (the body is the rest, newlines and
/// all). Properties: `verify` never panics and accepts a signature only if it
/// is the body's MAC; `sign` then `verify` holds, under rotation too and
/// around whitespace; a flipped byte of the body or the secret, or a changed
/// character of the signature, fails.
pub fn webhook_hmac(data: &[u8]) {
    let mut choose = Choices::new(data);
    let (secret, rest) = split_once(data, b'\n').unwrap_or((b"", data));
    let (given, body) = split_once(rest, b'\n').unwrap_or((rest, b""));
    let given = String::from_utf8_lossy(given);

    let mac = STANDARD
        .decode(webhook::sign(secret, body))
        .expect("sign gives base64");
    assert_eq!(mac.len(), 32);
    if webhook::verify([secret], body, &given) {
        assert_eq!(
            STANDARD.decode(given.trim()).ok(),
            Some(mac.clone()),
            "verify accepted a signature that is not the body's MAC"
        );
    }

    let signature = webhook::sign(secret, body);
    assert_eq!(signature.len(), 44);
    assert!(webhook::verify([secret], body, &signature));
    assert!(webhook::verify([secret], body, &format!(" {signature}\t")));
    // Rotation: the matching secret may be anywhere in the list.
    let other = given.as_bytes();
    assert!(webhook::verify([other, secret], body, &signature));
    assert!(webhook::verify([secret, other], body, &signature));
    assert!(!webhook::verify(
        std::iter::empty::<&[u8]>(),
        body,
        &signature
    ));

    if !body.is_empty() {
        let mut flipped = body.to_vec();
        flipped[choose.below(body.len())] ^= choose.mask();
        assert!(
            !webhook::verify([secret], &flipped, &signature),
            "a flipped body byte verified"
        );
    }
    // Only a flip: HMAC pads short keys with zeros, so appending a NUL to a
    // secret of 64 bytes or less gives the same MAC, by design.
    if !secret.is_empty() {
        let mut flipped = secret.to_vec();
        flipped[choose.below(secret.len())] ^= choose.mask();
        assert!(
            !webhook::verify([flipped.as_slice()], body, &signature),
            "a flipped secret byte verified"
        );
    }
    // Any other base64 character anywhere, padding bits included, fails:
    // the decoding is strict, so a MAC has exactly one accepted spelling.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut changed = signature.clone().into_bytes();
    let at = choose.below(43);
    let mut c = ALPHABET[choose.below(64)];
    if c == changed[at] {
        c = ALPHABET[(ALPHABET.iter().position(|&a| a == c).unwrap() + 1) % 64];
    }
    changed[at] = c;
    let changed = String::from_utf8(changed).expect("base64 is ASCII");
    assert!(
        !webhook::verify([secret], body, &changed),
        "signature {changed} verified in place of {signature}"
    );
}

// ---- OAuth query ---------------------------------------------------------------

/// Input: `secret \n raw query`; without a newline the whole input is the
/// query and the secret is `hush`. Properties: parsing, canonicalisation,
/// verification and shop normalisation never panic; `parse_query` inverts
/// form encoding; `verify_query` accepts exactly the last `hmac` equal to the
/// canonical form's MAC; `sign_query` then `verify_query` holds and any
/// change to a signed value fails; the canonical form ignores `hmac`,
/// `signature` and the order of different keys, and can be decoded back to
/// the parameters it signs (so two different parameter sets never share a
/// signature); a normalised shop is a valid, lower-case, fixed point.
pub fn oauth_query(data: &[u8]) {
    let mut choose = Choices::new(data);
    let (secret, raw) = split_once(data, b'\n').unwrap_or((b"hush", data));
    let raw = String::from_utf8_lossy(raw);
    let pairs = parse_query(&raw);

    // parse_query inverts the standard form encoding.
    let mut url = reqwest::Url::parse("http://q/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(&pairs);
    let encoded = url.query().unwrap_or("").to_owned();
    assert_eq!(parse_query(&encoded), pairs, "re-parsing {encoded:?}");

    let canonical = canonical_query(&pairs);
    assert_eq!(
        decode_canonical(&canonical),
        signed_parameters(&pairs),
        "canonical form {canonical:?} does not decode to the parameters it signs"
    );
    let mut sorted = pairs.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0)); // stable: same-key order kept
    assert_eq!(canonical_query(&sorted), canonical, "order of keys matters");
    let unsigned: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "hmac" && k != "signature")
        .cloned()
        .collect();
    assert_eq!(canonical_query(&unsigned), canonical);

    // verify_query reads the last hmac, hex in either case, trimmed.
    let mac = hex::decode(sign_query(secret, &pairs)).expect("sign_query gives hex");
    let last = pairs.iter().rev().find(|(k, _)| k == "hmac");
    let want = last.is_some_and(|(_, h)| hex::decode(h.trim()).ok() == Some(mac.clone()));
    assert_eq!(verify_query(secret, &pairs), want, "verify_query");

    let signature = sign_query(secret, &pairs);
    let signed = |pairs: &[(String, String)], hmac: &str| {
        let mut p = pairs.to_vec();
        p.push(("hmac".to_owned(), hmac.to_owned()));
        p
    };
    assert!(verify_query(secret, &signed(&pairs, &signature)));
    assert!(verify_query(secret, &signed(&unsigned, &signature)));
    assert!(verify_query(
        secret,
        &signed(&pairs, &signature.to_uppercase())
    ));
    let mut with_signature = signed(&pairs, &signature);
    with_signature.insert(0, ("signature".to_owned(), "x".to_owned()));
    assert!(verify_query(secret, &with_signature));

    // A change to any value the HMAC covers fails. Only the last of repeated
    // plain keys is covered: it is also the one the callback reads.
    let covered: Vec<usize> = (0..unsigned.len())
        .filter(|&i| {
            let k = &unsigned[i].0;
            k.ends_with("[]") || !unsigned[i + 1..].iter().any(|(later, _)| later == k)
        })
        .collect();
    if !covered.is_empty() {
        let mut tampered = unsigned.clone();
        let i = covered[choose.below(covered.len())];
        tampered[i]
            .1
            .push(['x', '&', '=', '%', '"'][choose.below(5)]);
        assert!(
            !verify_query(secret, &signed(&tampered, &signature)),
            "changing {:?} kept the signature valid",
            tampered[i]
        );
    }

    for input in std::iter::once(raw.as_ref()).chain(pairs.iter().map(|(_, v)| v.as_str())) {
        if let Some(shop) = normalize_shop(input) {
            assert!(webhook::is_shop_domain(&shop), "{shop:?}");
            assert_eq!(shop, shop.to_ascii_lowercase());
            assert_eq!(normalize_shop(&shop).as_deref(), Some(shop.as_str()));
        }
    }
}

/// What Shopify's scheme signs, restated: `hmac` and `signature` left out,
/// the last value of a plain key, every value of an array key (`ids[]`) as a
/// JSON list; sorted as the canonical form sorts its `key=value` items.
fn signed_parameters(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let mut plain: Vec<(String, String)> = Vec::new();
    let mut arrays: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in pairs {
        if k == "hmac" || k == "signature" {
            continue;
        }
        if let Some(base) = k.strip_suffix("[]") {
            match arrays.iter_mut().find(|(b, _)| b == base) {
                Some((_, vs)) => vs.push(v.clone()),
                None => arrays.push((base.to_owned(), vec![v.clone()])),
            }
        } else {
            plain.retain(|(p, _)| p != k);
            plain.push((k.clone(), v.clone()));
        }
    }
    for (base, vs) in arrays {
        let items: Vec<String> = vs
            .iter()
            .map(|v| serde_json::Value::String(v.clone()).to_string())
            .collect();
        plain.push((base, format!("[{}]", items.join(", "))));
    }
    plain.sort();
    plain
}

/// The inverse of the canonical form's escaping. Panics on anything the
/// canonical form must never contain: an item without `=`, a `%` that is not
/// one of its escapes.
fn decode_canonical(canonical: &str) -> Vec<(String, String)> {
    fn unescape(s: &str, key: bool) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let code = rest.get(at..at + 3);
            out.push(match code {
                Some("%25") => '%',
                Some("%26") => '&',
                Some("%3D") if key => '=',
                _ => panic!("stray % in canonical part {s:?}"),
            });
            rest = &rest[at + 3..];
        }
        out.push_str(rest);
        out
    }
    let mut decoded: Vec<(String, String)> = if canonical.is_empty() {
        Vec::new()
    } else {
        canonical
            .split('&')
            .map(|item| {
                let (k, v) = item
                    .split_once('=')
                    .unwrap_or_else(|| panic!("canonical item {item:?} has no ="));
                (unescape(k, true), unescape(v, false))
            })
            .collect()
    };
    decoded.sort();
    decoded
}

// ---- guest output --------------------------------------------------------------

/// Input: lines, `\n`-separated. `limits\tMAX_EVENTS\tOUTPUT_BYTES` sets the
/// limits (defaults otherwise), `body\tBYTES` the webhook body (only its
/// size matters: each `Unchanged` payload counts it); any other
/// non-empty line is an event `kind\tversion` (payload `Unchanged`) or
/// `kind\tversion\tpayload` (payload `Json`, the rest of the line). Properties: validation never panics; it returns the events
/// unchanged, or fails, exactly as an independent reading of the rules says,
/// with the same error (limits first, then the first bad event's index); its
/// messages stay short whatever the guest sent.
pub fn guest_output(data: &[u8]) {
    let mut limits = Limits::default();
    let mut body_len = 0;
    let mut events = Vec::new();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut fields = line.splitn(3, |&b| b == b'\t');
        let first = fields.next().unwrap_or_default();
        let second = fields.next();
        let third = fields.next();
        match first {
            b"limits" => {
                let number = |f: Option<&[u8]>| {
                    std::str::from_utf8(f.unwrap_or_default())
                        .ok()?
                        .parse::<usize>()
                        .ok()
                };
                limits.max_events = number(second).unwrap_or(limits.max_events);
                limits.output_bytes = number(third).unwrap_or(limits.output_bytes);
            }
            b"body" => body_len = line.len().saturating_sub(b"body\t".len()),
            kind => events.push(Event {
                kind: String::from_utf8_lossy(kind).into_owned(),
                schema_version: String::from_utf8_lossy(second.unwrap_or_default()).into_owned(),
                payload: match third {
                    None => Payload::Unchanged,
                    Some(p) => Payload::Json(p.to_vec()),
                },
            }),
        }
    }

    let expected = expected_output(&events, &limits, body_len);
    let got = validate(events.clone(), &limits, body_len);
    match (&got, &expected) {
        (Ok(out), Ok(())) => assert_eq!(out, &events, "validation changed the events"),
        (Err(TransformError::TooManyEvents { count, limit }), Err(Expected::TooMany(c, l))) => {
            assert_eq!((count, limit), (c, l))
        }
        (Err(TransformError::OutputTooLarge { size, limit }), Err(Expected::TooLarge(s, l))) => {
            assert_eq!((size, limit), (s, l))
        }
        (Err(TransformError::InvalidOutput(why)), Err(Expected::Invalid(index))) => {
            assert!(
                why.starts_with(&format!("event {index}: ")),
                "{why:?} should name event {index}"
            );
            // Guest strings are cut to 80 bytes; Debug escaping at most
            // sextuples them.
            assert!(why.len() <= 1024, "a {} byte reason", why.len());
        }
        (_, Err(Expected::Unknown)) => {}
        _ => panic!("validate gave {got:?}, the rules say {expected:?}"),
    }
}

#[derive(Debug)]
enum Expected {
    TooMany(usize, usize),
    TooLarge(usize, usize),
    Invalid(usize),
    /// Nesting deeper than the oracle follows; either answer is acceptable.
    Unknown,
}

/// The output rules of `output.rs` and `Limits`, restated.
fn expected_output(events: &[Event], limits: &Limits, body_len: usize) -> Result<(), Expected> {
    if events.len() > limits.max_events {
        return Err(Expected::TooMany(events.len(), limits.max_events));
    }
    let size: usize = events
        .iter()
        .map(|e| {
            e.kind.len()
                + e.schema_version.len()
                + match &e.payload {
                    Payload::Unchanged => body_len,
                    Payload::Json(p) => p.len(),
                }
        })
        .sum::<usize>()
        // One pass-through of the body is free.
        - if events.iter().any(|e| e.payload == Payload::Unchanged) {
            body_len
        } else {
            0
        };
    if size > limits.output_bytes {
        return Err(Expected::TooLarge(size, limits.output_bytes));
    }
    for (index, e) in events.iter().enumerate() {
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        };
        let kind_ok =
            e.kind.len() <= 128 && e.kind.contains('.') && e.kind.split('.').all(segment_ok);
        let version_ok = (1..=64).contains(&e.schema_version.len())
            && e.schema_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !kind_ok || !version_ok {
            return Err(Expected::Invalid(index));
        }
        let Payload::Json(payload) = &e.payload else {
            continue;
        };
        match json_object(payload) {
            Some(true) => {}
            Some(false) => return Err(Expected::Invalid(index)),
            None => return Err(Expected::Unknown),
        }
    }
    Ok(())
}

/// Whether `bytes` is exactly one JSON object by RFC 8259's grammar
/// (whitespace around it allowed), written without serde_json so that it
/// checks serde_json's reading rather than repeating it. None when the
/// nesting is deeper than serde_json's documented limit of 128, where
/// either answer is acceptable.
fn json_object(bytes: &[u8]) -> Option<bool> {
    if std::str::from_utf8(bytes).is_err() {
        return Some(false);
    }
    let mut p = Json { b: bytes, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return Some(false);
    }
    let ok = p.value(0)?;
    p.ws();
    Some(ok && p.i == bytes.len())
}

struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<bool> {
        self.ws();
        Some(match self.peek() {
            Some(b'{' | b'[') if depth >= 127 => return None,
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.eat(b'}') {
                    return Some(true);
                }
                loop {
                    self.ws();
                    if !self.string() {
                        return Some(false);
                    }
                    self.ws();
                    if !self.eat(b':') || !self.value(depth + 1)? {
                        return Some(false);
                    }
                    self.ws();
                    if self.eat(b'}') {
                        break true;
                    }
                    if !self.eat(b',') {
                        break false;
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.eat(b']') {
                    return Some(true);
                }
                loop {
                    if !self.value(depth + 1)? {
                        return Some(false);
                    }
                    self.ws();
                    if self.eat(b']') {
                        break true;
                    }
                    if !self.eat(b',') {
                        break false;
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        })
    }

    fn word(&mut self, w: &[u8]) -> bool {
        let hit = self.b[self.i..].starts_with(w);
        self.i += if hit { w.len() } else { 0 };
        hit
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        if !self.eat(b'0') && self.digits() == 0 {
            return false;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return false;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }

    /// Escapes are checked for shape only: the grammar allows a lone
    /// surrogate such as `\ud800`.
    fn string(&mut self) -> bool {
        if !self.eat(b'"') {
            return false;
        }
        loop {
            match self.peek() {
                None => return false,
                Some(b'"') => {
                    self.i += 1;
                    return true;
                }
                Some(0..0x20) => return false,
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return false;
                            }
                            self.i += 5;
                        }
                        _ => return false,
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

// ---- providers beyond Shopify (issue 18) -------------------------------------
//
// Registered in the smoke test through `PROVIDER_TARGETS`, so this block
// stays one piece.

#[cfg(test)]
type ProviderProperty = (&'static str, fn(&[u8]));

/// The provider properties, replayed by the smoke test with the others.
#[cfg(test)]
pub(crate) const PROVIDER_TARGETS: [ProviderProperty; 3] = [
    ("hmac_scheme", hmac_scheme),
    ("provider_requests", provider_requests),
    ("wix_jws", wix_jws),
];

fn provider_request(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A clean header value of the input, or `default`.
fn clean<'a>(given: &'a str, default: &'a str) -> &'a str {
    // Visible ASCII without spaces: what `HeaderValue::to_str` reads back.
    let ok = !given.is_empty() && given.bytes().all(|b| (0x21..0x7f).contains(&b));
    if ok { given } else { default }
}

/// Input: `scheme \n secret \n signature \n id \n timestamp \n body`, the
/// scheme a preset name (`github`, `stripe`, `webhook`, `svix`, `shopify`,
/// `woocommerce`) or a JSON `Scheme`. Properties: reading the scheme,
/// `verify` and `signed_digest` never panic; `verify` accepts the given
/// header only if it carries the MAC of what the scheme signs; `sign` then
/// `verify` holds, under rotation either way; a flipped body byte, a wrong
/// secret, or a clock past the tolerance either way fails with the right
/// variant.
pub fn hmac_scheme(data: &[u8]) {
    use crate::pipeline::provider::{Incoming, Rejected};
    use crate::providers::verify::{KeyEncoding, Scheme, Timestamp, presets};

    let mut choose = Choices::new(data);
    let mut fields = data.splitn(6, |&b| b == b'\n');
    let mut next = || fields.next().unwrap_or_default();
    let (scheme, secret, signature, id, ts, body) =
        (next(), next(), next(), next(), next(), next());
    let spec = match scheme {
        b"github" => presets::github(),
        b"stripe" => presets::stripe(),
        b"webhook" => crate::providers::standard_webhooks::spec("webhook"),
        b"svix" => crate::providers::standard_webhooks::spec("svix"),
        b"shopify" => presets::shopify(),
        b"woocommerce" => presets::woocommerce(),
        json => match serde_json::from_slice::<Scheme>(json) {
            Ok(scheme) if scheme.check().is_ok() => match scheme {
                Scheme::Hmac(spec) => spec,
            },
            _ => return,
        },
    };
    let signature = String::from_utf8_lossy(signature);
    let id = String::from_utf8_lossy(id);
    let ts = String::from_utf8_lossy(ts);
    let ts_header = match &spec.timestamp {
        Some(Timestamp::Header { name, .. }) => Some(name.clone()),
        _ => None,
    };
    let headers_for = |sig: &str, id: &str, ts: &str| {
        let mut pairs = vec![(spec.header.as_str(), sig)];
        if let Some(name) = &spec.id_header {
            pairs.push((name.as_str(), id));
        }
        if let Some(name) = &ts_header {
            pairs.push((name.as_str(), ts));
        }
        provider_request(&pairs)
    };

    // Whatever was given.
    let now = ts.trim().parse::<i64>().unwrap_or(0);
    let given = headers_for(&signature, &id, &ts);
    let req = Incoming {
        headers: &given,
        body,
        now,
    };
    let got = spec.verify(&req, &[secret]);
    let _ = spec.signed_digest(&req);
    if got.is_ok() {
        // The MAC over what the request says was signed.
        let stamp = match &spec.timestamp {
            Some(Timestamp::Pair { key, .. }) => signature
                .split(',')
                .find_map(|p| p.split_once('=').filter(|(k, _)| k.trim() == key))
                .map(|(_, v)| v.trim().to_owned()),
            Some(Timestamp::Field { pointer, .. }) => {
                serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|b| crate::providers::verify::field_text(&b, pointer))
            }
            Some(Timestamp::Header { .. }) => given
                .get(ts_header.as_deref().unwrap_or(""))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned()),
            None => None,
        }
        .unwrap_or_default();
        let id = spec
            .id_header
            .as_deref()
            .and_then(|n| given.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("");
        let mac = spec
            .signature(secret, id, &stamp, body)
            .expect("a secret that verified is a key");
        let lower = |s: &str| s.to_ascii_lowercase();
        let hex = matches!(spec.encoding, crate::providers::verify::Encoding::Hex);
        let found = if hex {
            lower(&signature).contains(&lower(&mac))
        } else {
            signature.contains(&mac)
        };
        assert!(
            found,
            "verify accepted `{signature}`, which does not carry the MAC `{mac}`"
        );
    }

    // Signed properly.
    if matches!(spec.timestamp, Some(Timestamp::Field { .. })) {
        return;
    }
    let id = clean(&id, "msg_1");
    let ts = match ts.parse::<i64>() {
        Ok(_) => clean(&ts, "1700000000"),
        Err(_) => "1700000000",
    };
    let now: i64 = ts.parse().expect("checked above");
    let Some(signed) = spec.sign(secret, id, ts, body) else {
        // A secret that is not in the scheme's key encoding signs nothing.
        assert!(!matches!(spec.key, KeyEncoding::Raw));
        return;
    };
    let headers = headers_for(&signed, id, ts);
    let req = Incoming {
        headers: &headers,
        body,
        now,
    };
    assert_eq!(spec.verify(&req, &[secret]), Ok(()), "sign then verify");
    assert_eq!(spec.verify(&req, &[b"\0other", secret]), Ok(()), "rotation");
    assert_eq!(spec.verify(&req, &[secret, b"\0other"]), Ok(()), "rotation");
    assert_eq!(spec.verify(&req, &[]), Err(Rejected::Signature));
    let mut flipped = body.to_vec();
    if flipped.is_empty() {
        flipped.push(b' ');
    } else {
        flipped[choose.below(body.len())] ^= choose.mask();
    }
    let forged = Incoming {
        headers: &headers,
        body: &flipped,
        now,
    };
    assert_eq!(
        spec.verify(&forged, &[secret]),
        Err(Rejected::Signature),
        "a flipped body byte verified"
    );
    if matches!(spec.key, KeyEncoding::Raw) && !secret.is_empty() {
        let mut wrong = secret.to_vec();
        wrong[choose.below(secret.len())] ^= choose.mask();
        assert_eq!(
            spec.verify(&req, &[wrong.as_slice()]),
            Err(Rejected::Signature),
            "a flipped secret byte verified"
        );
    }
    if let Some(stamp) = &spec.timestamp {
        let tolerance = match stamp {
            Timestamp::Header { tolerance_secs, .. }
            | Timestamp::Pair { tolerance_secs, .. }
            | Timestamp::Field { tolerance_secs, .. } => *tolerance_secs,
        };
        if let Ok(tolerance) = i64::try_from(tolerance) {
            for now in [
                now.checked_sub(tolerance + 1),
                now.checked_add(tolerance + 1),
            ]
            .into_iter()
            .flatten()
            {
                let late = Incoming {
                    headers: &headers,
                    body,
                    now,
                };
                assert_eq!(
                    spec.verify(&late, &[secret]),
                    Err(Rejected::Stale),
                    "now {now}"
                );
            }
        }
    }
}

/// Input: `provider \n header lines (name: value) \n \n body`, the provider
/// `woocommerce`, `tiktok_shop`, `standard_webhooks` or `hmac` (GitHub's
/// preset; `hmac {settings json}` for others). Properties: `is_ping`,
/// `verify` and `describe` never panic; a description always has a topic
/// and a delivery id and never hands on a signature header; a WooCommerce
/// ping carries no `X-WC-*` header; the body signed as the platform signs
/// it verifies (with the secret in either rotation slot), and a flipped
/// body byte or another secret does not; for Standard Webhooks, the same of
/// `v1a` (Ed25519) entries and `whpk_` keys (see [`standard_webhooks_v1a`]).
pub fn provider_requests(data: &[u8]) {
    use crate::pipeline::provider::{Incoming, Keys, Provider, Rejected};
    use crate::providers::verify::presets;
    use crate::providers::{hmac, standard_webhooks, tiktok_shop, woocommerce};

    const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SIGNATURES: [&str; 6] = [
        "authorization",
        "x-wc-webhook-signature",
        "webhook-signature",
        "svix-signature",
        "x-hub-signature-256",
        "stripe-signature",
    ];
    let mut choose = Choices::new(data);
    let (which, rest) = split_once(data, b'\n').unwrap_or((data, b""));
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (rest, &b""[..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some((name, value)) = split_once(line, b':') else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let mut settings = serde_json::json!({"app_key": "test_app_key"});
    let provider: &dyn Provider = match which {
        b"woocommerce" => &woocommerce::WooCommerce,
        b"tiktok_shop" => &tiktok_shop::TikTokShop,
        b"standard_webhooks" => &standard_webhooks::StandardWebhooks,
        b"hmac" => {
            settings = serde_json::json!({"preset": "github"});
            &hmac::ConfiguredHmac
        }
        other => match other.strip_prefix(b"hmac ") {
            Some(json) => {
                let Ok(value) = serde_json::from_slice(json) else {
                    return;
                };
                settings = value;
                &hmac::ConfiguredHmac
            }
            None => return,
        },
    };
    let now = 1_700_000_000;
    let keys = Keys {
        secrets: &[SECRET],
        settings: &settings,
    };
    let req = Incoming {
        headers: &headers,
        body,
        now,
    };
    if provider.is_ping(&req) {
        assert!(
            !headers.keys().any(|n| n.as_str().starts_with("x-wc-")),
            "a ping with WooCommerce headers"
        );
    }
    let _ = provider.verify(&req, &keys);
    // The provider's own signature headers; a configured source may hand on
    // another scheme's header if its settings ask.
    let own: Vec<String> = match hmac::source(&settings) {
        Ok(source) if provider.id() == "hmac" => match source.scheme {
            crate::providers::verify::Scheme::Hmac(spec) => vec![spec.header.to_ascii_lowercase()],
        },
        _ => SIGNATURES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let describe = |req: &Incoming<'_>| {
        if let Ok(d) = provider.describe(req, &keys) {
            assert!(!d.topic.is_empty() && !d.delivery_id.is_empty(), "{d:?}");
            for (name, _) in &d.headers {
                assert!(!own.contains(name), "{name} handed on");
                assert_eq!(name, &name.to_ascii_lowercase());
            }
        }
    };
    describe(&req);

    // Signed as the platform signs.
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| clean(v, "msg_1"))
        .unwrap_or("msg_1")
        .to_owned();
    let mut signed = headers.clone();
    for name in SIGNATURES {
        signed.remove(name);
    }
    let stamp = now.to_string();
    let (name, value) = match which {
        b"woocommerce" => (
            "x-wc-webhook-signature",
            presets::woocommerce().sign(SECRET, "", "", body),
        ),
        b"tiktok_shop" => {
            let mut mac = <::hmac::Hmac<sha2::Sha256> as ::hmac::Mac>::new_from_slice(SECRET)
                .expect("any key length");
            ::hmac::Mac::update(&mut mac, b"test_app_key");
            ::hmac::Mac::update(&mut mac, body);
            (
                "authorization",
                Some(hex::encode(::hmac::Mac::finalize(mac).into_bytes())),
            )
        }
        b"standard_webhooks" => {
            signed.remove("svix-id");
            signed.remove("svix-timestamp");
            signed.insert("webhook-id", HeaderValue::from_str(&id).expect("clean"));
            signed.insert(
                "webhook-timestamp",
                HeaderValue::from_str(&stamp).expect("digits"),
            );
            (
                "webhook-signature",
                crate::providers::standard_webhooks::spec("webhook")
                    .sign(SECRET, &id, &stamp, body),
            )
        }
        b"hmac" => (
            "x-hub-signature-256",
            presets::github().sign(SECRET, "", "", body),
        ),
        _ => return,
    };
    let value = value.expect("a valid secret signs");
    signed.insert(name, HeaderValue::from_str(&value).expect("ASCII"));
    let req = Incoming {
        headers: &signed,
        body,
        now,
    };
    assert_eq!(
        provider.verify(&req, &keys),
        Ok(()),
        "signed as the platform signs"
    );
    let rotated = Keys {
        secrets: &[b"old", SECRET],
        settings: &settings,
    };
    assert_eq!(provider.verify(&req, &rotated), Ok(()), "rotation");
    let other = Keys {
        secrets: &[b"whsec_b3RoZXI="],
        settings: &settings,
    };
    assert_eq!(
        provider.verify(&req, &other),
        Err(Rejected::Signature),
        "another secret verified"
    );
    let mut flipped = body.to_vec();
    if flipped.is_empty() {
        flipped.push(b'{');
    } else {
        flipped[choose.below(body.len())] ^= choose.mask();
    }
    let forged = Incoming {
        headers: &signed,
        body: &flipped,
        now,
    };
    assert_eq!(
        provider.verify(&forged, &keys),
        Err(Rejected::Signature),
        "a flipped body byte verified"
    );
    describe(&req);
    if which == b"standard_webhooks" {
        standard_webhooks_v1a(&headers, body, now, SECRET, &id, &mut choose);
    }
}

/// The `v1a` half of [`provider_requests`]' Standard Webhooks properties,
/// with a fixed key pair: under its `whpk_` key, the given header verifies
/// only if it carries the Ed25519 entry of what it says was signed; an
/// entry signed as a sender signs verifies alone and beside a wrong `v1`
/// entry, with the key after a rotated-out one or beside the `whsec_`
/// secret, and not under the `whsec_` secret alone, another key, a flipped
/// body byte or a clock past the tolerance either way.
fn standard_webhooks_v1a(
    given: &HeaderMap,
    body: &[u8],
    now: i64,
    secret: &[u8],
    id: &str,
    choose: &mut Choices,
) {
    use crate::pipeline::provider::{Incoming, Keys, Provider, Rejected};
    use crate::providers::standard_webhooks::{Signer, StandardWebhooks};

    let signer = Signer::from_seed(b"ionflux-fuzz-ed25519-seed-000001");
    let public = signer.public_key();
    let other = Signer::from_seed(b"ionflux-fuzz-ed25519-seed-000002").public_key();
    let (public, other) = (public.as_bytes(), other.as_bytes());
    let verify = |headers: &HeaderMap, body: &[u8], now: i64, secrets: &[&[u8]]| {
        let settings = serde_json::Value::Null;
        let req = Incoming { headers, body, now };
        StandardWebhooks.verify(
            &req,
            &Keys {
                secrets,
                settings: &settings,
            },
        )
    };

    // Whatever was given. Ed25519 signing is deterministic and the base64
    // is read strictly, so a verifying entry is exactly the sender's.
    let _ = verify(given, body, now, &[secret, public]);
    if verify(given, body, now, &[public]).is_ok() {
        let prefix =
            if given.contains_key("webhook-signature") || !given.contains_key("svix-signature") {
                "webhook"
            } else {
                "svix"
            };
        let text = |name: &str| {
            given
                .get(format!("{prefix}-{name}"))
                .and_then(|v| v.to_str().ok())
                .map_or("", str::trim)
        };
        let entry = signer.entry(text("id"), text("timestamp"), body);
        assert!(
            text("signature").contains(&entry["v1a,".len()..]),
            "a whpk_ key accepted `{}`, which does not carry `{entry}`",
            text("signature")
        );
    }

    // Signed as a sender with the key pair signs.
    let stamp = now.to_string();
    let entry = signer.entry(id, &stamp, body);
    let wrong_v1 = crate::providers::standard_webhooks::spec("webhook")
        .signature(b"whsec_b3RoZXI=", id, &stamp, body)
        .expect("a base64 secret");
    let beside = format!("{wrong_v1} {entry}");
    let mut flipped = body.to_vec();
    if flipped.is_empty() {
        flipped.push(b'{');
    } else {
        flipped[choose.below(body.len())] ^= choose.mask();
    }
    for signature in [entry.as_str(), beside.as_str()] {
        let headers = provider_request(&[
            ("webhook-id", id),
            ("webhook-timestamp", &stamp),
            ("webhook-signature", signature),
        ]);
        for secrets in [
            &[public][..],
            &[other, public],
            &[secret, public],
            &[public, secret],
        ] {
            assert_eq!(
                verify(&headers, body, now, secrets),
                Ok(()),
                "`{signature}` signed with the key pair"
            );
        }
        for (secrets, what) in [
            (&[secret][..], "a whsec_ secret verified a v1a entry"),
            (&[other], "another key verified"),
        ] {
            assert_eq!(
                verify(&headers, body, now, secrets),
                Err(Rejected::Signature),
                "{what}"
            );
        }
        assert_eq!(
            verify(&headers, &flipped, now, &[public]),
            Err(Rejected::Signature),
            "a flipped body byte verified under v1a"
        );
        for late in [now - 301, now + 301] {
            assert_eq!(
                verify(&headers, body, late, &[public]),
                Err(Rejected::Stale),
                "now {late}"
            );
        }
    }
}

/// Input: a Wix body (a compact JWS or anything else). Properties: `verify`
/// and `describe` never panic; under the published key of the Wix vector
/// only that vector's token (surrounding whitespace aside) verifies; a
/// description always has a topic and a delivery id, and a body that is
/// one JSON object when the token decodes.
pub fn wix_jws(data: &[u8]) {
    use crate::pipeline::provider::{Incoming, Keys, Provider};
    use crate::providers::wix::Wix;

    const VECTOR: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/providers/wix/AppInstalled/1.jwt"
    ));
    const KEY: &[u8] = b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjUtCVyLGf8M0+qlYWrJv\nNYXpCwV2viCFuf4TJcdxoocZT0GOghRA0q9tYko5Rt4uJXARwn3khou9qKnZYC1+\n7+81HY3JSoY9Hc5FILrYuxhkdYEDwKd2A27x4k4MLlEV9YlU2Vugr3oGE3+smuNl\n6RhPn7gHvdK7cK9Ss1cZIg+icNPjUD+tHiDa4tn4I8uJOQqvA+PNXok3AntDZvYD\nETlQctvZVLV5cNvP81JdYOf4huItqoZkATtXwJE8Cm0cvu9vm0IqZCn4KHxjTnBk\nCMY5DcX4T+CyW9klcdmWINxGRQI8VAHORuvGi2gKTK0zZvk7FZHOTjLfEMdgJ/uY\nvwIDAQAB\n-----END PUBLIC KEY-----\n";
    static WIX: std::sync::LazyLock<Wix> = std::sync::LazyLock::new(Wix::new);

    let headers = HeaderMap::new();
    let settings = serde_json::Value::Null;
    let keys = Keys {
        secrets: &[KEY],
        settings: &settings,
    };
    // Inside the token's lifetime, so only the signature decides.
    let req = Incoming {
        headers: &headers,
        body: data,
        now: 1_640_788_554,
    };
    if WIX.verify(&req, &keys).is_ok() {
        assert_eq!(
            data.trim_ascii(),
            VECTOR.trim().as_bytes(),
            "a token other than the vector verified"
        );
    }
    if let Ok(d) = WIX.describe(&req, &keys) {
        assert!(!d.topic.is_empty() && !d.delivery_id.is_empty());
        if let Some(body) = d.body {
            assert!(matches!(
                serde_json::from_slice(&body),
                Ok(serde_json::Value::Object(_))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The short run CI does, on stable and without instrumentation: every
    //! seed, then mutations of the seeds and random inputs from a fixed seed.
    //! Deterministic, so a failure here fails the same way on every machine;
    //! the panic message carries the input to save as a reproducer.

    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::PathBuf;

    type Property = fn(&[u8]);

    const TARGETS: [(&str, Property); 4] = [
        ("webhook_headers", super::webhook_headers),
        ("webhook_hmac", super::webhook_hmac),
        ("oauth_query", super::oauth_query),
        ("guest_output", super::guest_output),
    ];

    /// Inputs per target beyond the seeds.
    const RUNS: usize = 3000;

    /// Fragments that matter to one parser or another, so that random
    /// mutations reach past the first syntax check.
    const TOKENS: &[&[u8]] = &[
        b"\n",
        b"\t",
        b"\r",
        b" ",
        b":",
        b"x-shopify-topic: ",
        b"x-shopify-shop-domain: ",
        b"x-shopify-webhook-id: ",
        b"x-shopify-hmac-sha256: ",
        b"x-shopify-api-version: ",
        b".myshopify.com",
        b"orders/create",
        b"&",
        b"=",
        b"%",
        b"%25",
        b"%26",
        b"%3D",
        b"%zz",
        b"+",
        b"#",
        b"[]",
        b"hmac=",
        b"signature=",
        b"shop=",
        b"ids[]=",
        b"https://",
        b"admin.shopify.com/store/",
        b"limits\t",
        b"body\t",
        b"orders.created\tv1\t",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b"\\",
        b"\\ud800",
        b"\\u00",
        b"1e999",
        b"-0.5",
        b"null",
        b"\xff",
        b"\xc3\xa9",
        b"\0",
    ];

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "fuzz", "corpus", target]
            .iter()
            .collect();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("a directory entry").path();
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    bytes,
                )
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        files
    }

    fn check(target: &str, property: Property, what: &str, input: &[u8]) {
        if catch_unwind(AssertUnwindSafe(|| property(input))).is_err() {
            panic!(
                "{target} failed on {what}; input (save it to reproduce with \
                 `cargo fuzz run {target} FILE`): b\"{}\"",
                input.escape_ascii()
            );
        }
    }

    fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut data = seeds[rng.below(seeds.len())].1.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(data.len() + 1);
            let byte = at.min(data.len().saturating_sub(1));
            match rng.below(7) {
                0 if !data.is_empty() => data[byte] ^= 1 << rng.below(8),
                1 if !data.is_empty() => data[byte] = rng.next() as u8,
                2 => data.truncate(at),
                3 => {
                    let end = (at + rng.below(16)).min(data.len());
                    data.drain(at..end);
                }
                4 => {
                    let token = TOKENS[rng.below(TOKENS.len())];
                    data.splice(at..at, token.iter().copied());
                }
                5 => {
                    let other = &seeds[rng.below(seeds.len())].1;
                    let from = rng.below(other.len() + 1);
                    let end = (from + rng.below(64)).min(other.len());
                    data.splice(at..at, other[from..end].iter().copied());
                }
                _ => {
                    let bytes: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                    data.splice(at..at, bytes);
                }
            }
        }
        data
    }

    fn random(rng: &mut Rng) -> Vec<u8> {
        let mut data = Vec::new();
        for _ in 0..rng.below(24) {
            if rng.below(2) == 0 {
                data.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
            } else {
                data.extend((0..rng.below(6)).map(|_| rng.next() as u8));
            }
        }
        data
    }

    #[test]
    fn fuzz_seeds_replay() {
        for (target, property) in TARGETS.into_iter().chain(super::PROVIDER_TARGETS) {
            for (name, input) in corpus(target) {
                check(target, property, &format!("seed {name}"), &input);
            }
        }
    }

    #[test]
    fn fuzz_short_run() {
        for (target, property) in TARGETS.into_iter().chain(super::PROVIDER_TARGETS) {
            let seeds = corpus(target);
            let mut rng = Rng(0x1f1f_2025);
            for run in 0..RUNS {
                let input = if run % 4 == 3 {
                    random(&mut rng)
                } else {
                    mutate(&mut rng, &seeds)
                };
                check(target, property, &format!("run {run}"), &input);
            }
        }
    }
}
