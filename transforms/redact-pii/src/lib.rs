//! Republishes a Shopify webhook with customer PII removed.
//!
//! The event kind and schema version are those of `shopify-default`
//! (`orders/create` → `orders.created`, `v1.shopify.{api_version}`); the
//! payload is the body with every listed field deleted, at any depth, as a
//! new JSON object. A body that is not a JSON object is refused with
//! `invalid-input`.
//!
//! # Field list
//!
//! An entry is either a key, removed wherever it appears, or `parent.key`,
//! removed only from objects that are the value of `parent` (directly, or
//! as elements of an array there). Keys are compared ignoring case and `_`/`-`,
//! so `first_name` also catches `firstName`.
//!
//! The default list ([`DEFAULT_FIELDS`]):
//!
//! | Why | Fields |
//! |---|---|
//! | contact | `email`, `contact_email`, `customer_email`, `phone`, `sms_marketing_phone` |
//! | names | `first_name`, `last_name`, `shop_owner`, `credit_card_name`, and `name` inside `customer`, `buyer`, `billing_address`, `shipping_address`, `default_address`, `addresses`, `destination` |
//! | postal addresses (whole objects) | `billing_address`, `shipping_address`, `default_address`, `addresses`, `destination` (a fulfillment's ship-to address) |
//! | street-level location anywhere | `address1`, `address2`, `zip`, `latitude`, `longitude` |
//! | device and network | `browser_ip`, `client_details` |
//! | free text typed by the buyer | `note`, `note_attributes` |
//! | payment and identity | `payment_details` (card holder, BIN, last digits), `multipass_identifier` |
//! | links that open the buyer's details | `order_status_url`, `abandoned_checkout_url`, `invoice_url` |
//!
//! Deliberately kept: ids (`customer.id` and friends, so events can still be
//! joined), `city`/`province`/`country` (coarse geography for analytics),
//! order `name` (`#1001`), line items, prices, tracking numbers, cart and
//! checkout tokens, marketing-consent states, `landing_site` and
//! `referring_site`. The merchant's own location (e.g. `locations/create`,
//! `origin_address`) loses its street address and postcode to the
//! anywhere-rules; add them to `keep_fields` if that matters.
//!
//! # Route config
//!
//! ```json
//! { "fields": ["email", "customer.name"], "extra_fields": ["tags"], "keep_fields": ["zip"] }
//! ```
//!
//! * `fields` replaces the default list;
//! * `extra_fields` adds to it (to the default, or to `fields`);
//! * `keep_fields` takes entries out (compared like keys).
//!
//! All optional; `{}` means the default list. Unknown settings are an error,
//! so a typo does not silently leak data.

use std::collections::{BTreeMap, BTreeSet};

use ionflux_guest::{Error, Event, Result, Webhook, shopify};
use serde::Deserialize;
use serde_json::Value;

/// The default field list, see the crate docs.
pub const DEFAULT_FIELDS: &[&str] = &[
    "email",
    "contact_email",
    "customer_email",
    "phone",
    "sms_marketing_phone",
    "first_name",
    "last_name",
    "shop_owner",
    "credit_card_name",
    "customer.name",
    "buyer.name",
    "billing_address.name",
    "shipping_address.name",
    "default_address.name",
    "addresses.name",
    "destination.name",
    "billing_address",
    "shipping_address",
    "default_address",
    "addresses",
    "destination",
    "address1",
    "address2",
    "zip",
    "latitude",
    "longitude",
    "browser_ip",
    "client_details",
    "note",
    "note_attributes",
    "payment_details",
    "multipass_identifier",
    "order_status_url",
    "abandoned_checkout_url",
    "invoice_url",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    fields: Option<Vec<String>>,
    extra_fields: Vec<String>,
    keep_fields: Vec<String>,
}

/// The compiled field list: normalised keys removed anywhere, and for each
/// normalised parent the normalised keys removed inside it (a map of sets,
/// so a lookup borrows the key rather than building a pair). B-trees rather
/// than hash tables: a `HashSet` seeds itself from `wasi:random`, an import
/// this transform has no other reason to need.
#[derive(Debug, Default)]
pub struct Rules {
    anywhere: BTreeSet<Vec<u8>>,
    in_parent: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>>,
}

/// Shopify is snake_case, its GraphQL-shaped payloads camelCase; one
/// comparison form covers both. Bytes rather than a `String`: the form is
/// only ever compared.
fn normalize(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    normalize_into(key, &mut out);
    out
}

/// [`normalize`] into a buffer the caller reuses: every key of every
/// webhook goes through here, so it must not allocate per key. Shopify's
/// keys are ASCII, which skips the Unicode case tables.
fn normalize_into(key: &str, out: &mut Vec<u8>) {
    out.clear();
    if key.is_ascii() {
        out.reserve(key.len());
        for b in key.bytes() {
            if b != b'_' && b != b'-' {
                out.push(b.to_ascii_lowercase());
            }
        }
    } else {
        let lower: String = key
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        out.extend_from_slice(lower.as_bytes());
    }
}

impl Rules {
    pub fn new<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> Self {
        let mut rules = Rules::default();
        for field in fields {
            let field = field.as_ref().trim();
            match field.split_once('.') {
                Some((parent, key)) => {
                    rules
                        .in_parent
                        .entry(normalize(parent))
                        .or_default()
                        .insert(normalize(key));
                }
                None => {
                    rules.anywhere.insert(normalize(field));
                }
            }
        }
        rules
    }

    /// The rules for the current route: defaults adjusted by its config.
    fn from_config() -> Result<Self> {
        let config: Config = ionflux_guest::config()?;
        // `parent.key` entries compare part by part.
        let entry = |f: &str| f.split('.').map(normalize).collect::<Vec<_>>().join(&b'.');
        let keep: BTreeSet<Vec<u8>> = config.keep_fields.iter().map(|f| entry(f)).collect();
        let base: Vec<String> = match config.fields {
            Some(fields) => fields,
            None => DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect(),
        };
        let fields = base
            .into_iter()
            .chain(config.extra_fields)
            .filter(|f| !keep.contains(&entry(f)));
        Ok(Rules::new(fields))
    }

    /// `parent` and `key` are normalised.
    fn removes(&self, parent: Option<&[u8]>, key: &[u8]) -> bool {
        self.anywhere.contains(key)
            || parent
                .and_then(|p| self.in_parent.get(p))
                .is_some_and(|keys| keys.contains(key))
    }

    /// Deletes matching keys from `value` in place; returns how many.
    /// Recursion depth is bounded by serde_json's parser (128 levels).
    pub fn redact(&self, value: &mut Value) -> usize {
        self.redact_in(value, None, &mut Vec::new())
    }

    /// `parent` is normalised; `key` is scratch space for normalising.
    fn redact_in(&self, value: &mut Value, parent: Option<&[u8]>, key: &mut Vec<u8>) -> usize {
        match value {
            Value::Object(map) => {
                let before = map.len();
                map.retain(|k, _| {
                    normalize_into(k, key);
                    !self.removes(parent, key)
                });
                let mut removed = before - map.len();
                for (k, v) in map.iter_mut() {
                    // Only containers have keys below them to match.
                    if v.is_object() || v.is_array() {
                        removed += self.redact_in(v, Some(&normalize(k)), key);
                    }
                }
                removed
            }
            // Arrays are transparent: `addresses.name` means the name of
            // each address in the list.
            Value::Array(items) => items
                .iter_mut()
                .map(|v| self.redact_in(v, parent, key))
                .sum(),
            _ => 0,
        }
    }
}

pub fn transform(input: Webhook) -> Result<Event> {
    let rules = Rules::from_config()?;
    let mut body = input.json_value()?;
    if !body.is_object() {
        return Err(Error::invalid_input("body is not a JSON object"));
    }
    let removed = rules.redact(&mut body);
    ionflux_guest::debug!("redacted {removed} fields from {}", input.topic);
    let bytes = serde_json::to_vec(&body).map_err(Error::failed)?;
    Ok(shopify::event(&input).json_bytes(bytes))
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::path::PathBuf;

    use ionflux_guest::testing;
    use serde_json::json;

    use super::*;

    fn samples() -> Vec<(PathBuf, String)> {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/shopify-webhooks");
        let tsv = std::fs::read_to_string(dir.join("SOURCES.tsv")).expect("SOURCES.tsv");
        let samples: Vec<_> = tsv
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                (dir.join(cols[0]), cols[1].to_owned())
            })
            .collect();
        assert!(samples.len() >= 60, "only {} samples", samples.len());
        samples
    }

    fn run(topic: &str, body: impl Into<Vec<u8>>) -> Result<Value> {
        let e = transform(testing::webhook(topic, body))?;
        Ok(e.json_payload_value().expect("json payload").unwrap())
    }

    /// Every (parent, key) pair in the document, parent through arrays.
    fn keys(value: &Value, parent: Option<&str>, out: &mut Vec<(Option<String>, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    out.push((parent.map(str::to_owned), k.clone()));
                    keys(v, Some(k), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| keys(v, parent, out)),
            _ => {}
        }
    }

    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    #[test]
    fn no_default_field_survives_in_any_sample() {
        let person = [
            "customer",
            "buyer",
            "billing_address",
            "shipping_address",
            "default_address",
            "addresses",
            "destination",
        ];
        let mut total_removed = 0;
        for (file, topic) in samples() {
            let raw = testing::fixture(&file);
            let original: Value = serde_json::from_slice(&raw).unwrap();
            let out = run(&topic, raw).unwrap();
            let mut found = Vec::new();
            keys(&out, None, &mut found);
            for (parent, key) in &found {
                let anywhere = DEFAULT_FIELDS.iter().any(|f| !f.contains('.') && f == key);
                let person_name =
                    key == "name" && parent.as_deref().is_some_and(|p| person.contains(&p));
                assert!(
                    !anywhere && !person_name,
                    "{topic}: {parent:?}.{key} survived"
                );
            }
            // Belt and braces: no e-mail address survives under any key.
            let mut values = Vec::new();
            strings(&out, &mut values);
            for v in values {
                assert!(
                    !(v.contains('@') && v.contains('.') && !v.contains(' ')),
                    "{topic}: {v}"
                );
            }
            let mut before = Vec::new();
            keys(&original, None, &mut before);
            total_removed += before.len() - found.len();
            // Same kind and version as shopify-default.
            let e = transform(testing::webhook(&topic, testing::fixture(&file))).unwrap();
            assert_eq!(e.kind, shopify::event_kind(&topic));
            assert_eq!(e.schema_version, "v1.shopify.2024-01");
        }
        assert!(total_removed > 500, "{total_removed}");
    }

    #[test]
    fn order_keeps_what_matters() {
        let out = run(
            "orders/create",
            json!({
                "id": 1, "name": "#1001", "email": "a@b.c", "total_price": "9.99",
                "customer": { "id": 7, "name": "Jo Bloggs", "first_name": "Jo", "note": "vip",
                               "default_address": { "city": "Ottawa" } },
                "shipping_address": { "name": "Jo", "address1": "1 Main" },
                "shipping_lines": [ { "title": "Std", "phone": "123" } ],
                "fulfillments": [ { "destination": { "zip": "K2H" }, "tracking_number": "T1" } ],
                "line_items": [ { "name": "Shirt", "price": "9.99" } ],
                "client_details": { "browser_ip": "1.2.3.4" },
                "billingAddress": { "firstName": "Jo" },
                "location": { "city": "Ottawa", "zip": "K2H", "latitude": 45.1 }
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "id": 1, "name": "#1001", "total_price": "9.99",
                "customer": { "id": 7 },
                "shipping_lines": [ { "title": "Std" } ],
                "fulfillments": [ { "tracking_number": "T1" } ],
                "line_items": [ { "name": "Shirt", "price": "9.99" } ],
                "location": { "city": "Ottawa" }
            })
        );
    }

    #[test]
    fn fields_replaces_the_default() {
        let body =
            json!({ "email": "a@b.c", "phone": "1", "customer": { "name": "Jo", "tags": "x" } });
        let out = testing::with_config(r#"{"fields": ["phone", "customer.name"]}"#, || {
            run("customers/create", body.to_string())
        })
        .unwrap();
        assert_eq!(
            out,
            json!({ "email": "a@b.c", "customer": { "tags": "x" } })
        );
    }

    #[test]
    fn extra_and_keep_adjust_the_default() {
        let body = json!({ "email": "a@b.c", "zip": "K2H", "tags": "vip", "id": 1 });
        let out = testing::with_config(
            r#"{"extra_fields": ["tags"], "keep_fields": ["ZIP"]}"#,
            || run("customers/create", body.to_string()),
        )
        .unwrap();
        assert_eq!(out, json!({ "zip": "K2H", "id": 1 }));
    }

    #[test]
    fn non_ascii_keys_and_dotted_keeps_compare_normalised() {
        let body = json!({
            "Ém_ail": "a@b.c",
            "customer": { "name": "Jo", "Straße": "x", "id": 1 },
            "buyer": { "name": "Al" }
        });
        let out = testing::with_config(
            r#"{"fields": ["émail", "straße", "customer.name", "buyer.name"], "keep_fields": ["Customer.Na-me"]}"#,
            || run("orders/create", body.to_string()),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({ "customer": { "name": "Jo", "id": 1 }, "buyer": {} })
        );
    }

    #[test]
    fn extra_adds_to_replaced_list() {
        let body = json!({ "email": "a@b.c", "phone": "1", "tags": "vip" });
        let out =
            testing::with_config(r#"{"fields": ["phone"], "extra_fields": ["tags"]}"#, || {
                run("customers/create", body.to_string())
            })
            .unwrap();
        assert_eq!(out, json!({ "email": "a@b.c" }));
    }

    #[test]
    fn bad_config_fails() {
        let err = testing::with_config(r#"{"feilds": ["email"]}"#, || run("orders/create", "{}"))
            .unwrap_err();
        assert!(matches!(err, Error::Failed(_)), "{err:?}");
    }

    #[test]
    fn non_object_bodies_are_invalid_input() {
        for body in ["not json", "[1,2]", "\"x\"", "42", ""] {
            let err = run("orders/create", body).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn schema_version_without_api_version() {
        let input = testing::webhook("orders/paid", "{}").with_api_version(None);
        let e = transform(input).unwrap();
        assert_eq!(e.kind, "orders.paid");
        assert_eq!(e.schema_version, "v1.shopify.unversioned");
    }
}
