//! The stock Shopify transform: one webhook in, the same body out as one
//! event.
//!
//! * kind: [`shopify::event_kind`] of the topic, e.g. `orders/create` →
//!   `orders.created`, `orders/paid` → `orders.paid`;
//! * schema version: `v1.shopify.{api_version}`, or
//!   `v1.shopify.unversioned` without an `X-Shopify-API-Version`;
//! * payload: `unchanged`. The body is never parsed, so this transform costs
//!   the same for a 1 KB and a 1 MB order and cannot fail on odd JSON.

use ionflux_guest::{Event, Result, Webhook, shopify};

/// The exported transform. Public so other transforms can fall back to it.
pub fn transform(input: Webhook) -> Result<Event> {
    Ok(shopify::event(&input))
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::path::PathBuf;

    use ionflux_guest::{Payload, is_valid_kind, testing};

    use super::*;

    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/shopify-webhooks")
    }

    /// (file, topic, api version) for every sample payload, the version read
    /// from names like `gadget-schemas-2026-04-1.json`.
    fn samples() -> Vec<(PathBuf, String, String)> {
        let tsv = std::fs::read_to_string(data_dir().join("SOURCES.tsv")).expect("SOURCES.tsv");
        tsv.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let file = cols[0];
                let name = file.rsplit('/').next().unwrap();
                let version = name
                    .strip_prefix("gadget-schemas-")
                    .and_then(|rest| rest.get(..7))
                    .unwrap_or_else(|| panic!("no API version in {file}"));
                (
                    data_dir().join(file),
                    cols[1].to_owned(),
                    version.to_owned(),
                )
            })
            .collect()
    }

    fn expected_kind(topic: &str) -> String {
        // An independent, table-driven statement of the rule for the topics
        // Shopify actually sends, so the test does not just re-run the code.
        match topic.split_once('/') {
            None => topic.to_owned(),
            Some((entity, "create")) => format!("{entity}.created"),
            Some((entity, "update")) => format!("{entity}.updated"),
            Some((entity, "delete")) => format!("{entity}.deleted"),
            Some((entity, action)) => format!("{entity}.{action}"),
        }
    }

    #[test]
    fn every_sample_topic_maps() {
        let samples = samples();
        assert!(samples.len() >= 60, "only {} samples", samples.len());
        for (file, topic, version) in samples {
            let body = testing::fixture(&file);
            let input = testing::webhook(&topic, body).with_api_version(Some(&version));
            let events = testing::run(transform, input).unwrap();
            assert_eq!(events.len(), 1, "{topic}");
            let e = &events[0];
            assert_eq!(e.kind, expected_kind(&topic), "{topic}");
            assert!(is_valid_kind(&e.kind), "{topic} → {}", e.kind);
            assert_eq!(e.schema_version, format!("v1.shopify.{version}"));
            assert_eq!(e.payload, Payload::Unchanged);
        }
    }

    #[test]
    fn named_examples() {
        for (topic, kind) in [
            ("orders/create", "orders.created"),
            ("products/update", "products.updated"),
            ("products/delete", "products.deleted"),
            ("orders/paid", "orders.paid"),
            ("app/uninstalled", "app.uninstalled"),
            ("customers/data_request", "customers.data_request"),
            ("orders/updated", "orders.updated"),
            ("customer.tags_added", "customer.tags_added"),
            ("ORDERS/Create", "orders.created"),
            ("orders/edit-v2", "orders.edit_v2"),
        ] {
            let e = transform(testing::webhook(topic, "{}")).unwrap();
            assert_eq!(e.kind, kind);
        }
    }

    #[test]
    fn unversioned() {
        let input = testing::webhook("orders/create", "{}").with_api_version(None);
        assert_eq!(
            transform(input).unwrap().schema_version,
            "v1.shopify.unversioned"
        );
    }

    #[test]
    fn body_is_not_parsed() {
        let input = testing::webhook("orders/create", &b"\xffnot json"[..]);
        assert_eq!(transform(input).unwrap().payload, Payload::Unchanged);
    }
}
