//! The stock WooCommerce transform: one webhook in, the same body out as one
//! event.
//!
//! * kind: the `X-WC-Webhook-Topic`, `{resource}.{event}`, by the SDK's
//!   naming rules ([`ionflux_guest::naming`]): `order.created` →
//!   `order.created`, `product.deleted`, `coupon.restored`. A custom action
//!   topic names a WordPress hook, `action.{hook}`, and keeps it whole, so
//!   `action.woocommerce_add_to_cart` stays `action.woocommerce_add_to_cart`
//!   (any `.` or `/` inside the hook's name becomes `_`: a kind of exactly
//!   two segments whatever the hook is called);
//! * schema version: `v1.woocommerce.{api_version}` when the host knows the
//!   webhook's API version, else `v1.woocommerce.unversioned` (a delivery
//!   carries none: `X-WC-Webhook-Resource` and `-Event` restate the topic);
//! * payload: `unchanged`, when the body is a JSON object (the REST
//!   resource, `/wp-json/wc/v3/<resource>s/<id>`, or the legacy
//!   `{"order": {...}}`); anything else is refused as invalid input. The
//!   body is never parsed.

use ionflux_guest::{Event, Result, Webhook, naming, republish};

/// The exported transform. Public so other transforms can fall back to it.
pub fn transform(input: Webhook) -> Result<Event> {
    let version = naming::schema_version("woocommerce", input.api_version.as_deref());
    republish::unchanged(&input, event_kind(&input.topic), version)
}

/// The kind for a WooCommerce topic, `{resource}.{event}`.
pub fn event_kind(topic: &str) -> String {
    match topic.trim().split_once('.') {
        Some((resource, event)) => naming::kind(resource, &event.replace(['.', '/'], "_")),
        None => naming::topic_kind(topic),
    }
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::{Error, Payload, is_valid_kind, testing};

    use super::*;

    const DATA: &str = "../../../shared/data/providers";

    fn webhook(topic: &str, body: &str) -> Webhook {
        testing::provider_webhook("woocommerce", topic, body)
    }

    #[test]
    fn every_sample_maps() {
        let samples = testing::samples(DATA, "woocommerce");
        assert!(samples.len() >= 7, "only {} samples", samples.len());
        for sample in samples {
            // WooCommerce's topic header is the listing's topic.
            if let Some(header) = sample
                .webhook("woocommerce", "")
                .header("x-wc-webhook-topic")
            {
                assert_eq!(header, sample.topic);
            }
            let expected = match sample.topic.as_str() {
                "order.created" => "order.created",
                "order.updated" => "order.updated",
                "product.created" => "product.created",
                "customer.created" => "customer.created",
                "action.woocommerce_add_to_cart" => "action.woocommerce_add_to_cart",
                other => panic!("no expectation for the sample topic {other}"),
            };
            let e = transform(sample.webhook("woocommerce", &sample.topic))
                .unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
            assert_eq!(e.kind, expected, "{}", sample.path.display());
            assert_eq!(e.schema_version, "v1.woocommerce.unversioned");
            assert_eq!(e.payload, Payload::Unchanged);
        }
    }

    #[test]
    fn named_examples() {
        for (topic, kind) in [
            ("order.created", "order.created"),
            ("order.updated", "order.updated"),
            ("order.deleted", "order.deleted"),
            ("order.restored", "order.restored"),
            ("product.deleted", "product.deleted"),
            ("coupon.created", "coupon.created"),
            ("customer.updated", "customer.updated"),
            (
                "action.woocommerce_add_to_cart",
                "action.woocommerce_add_to_cart",
            ),
            (
                "action.woocommerce_order_status_completed",
                "action.woocommerce_order_status_completed",
            ),
            ("action.my-plugin/sync.done", "action.my_plugin_sync_done"),
            ("order.create", "order.created"),
            ("Order.Created", "order.created"),
            ("order.", "order.received"),
            ("webhook", "webhook.received"),
        ] {
            let e = transform(webhook(topic, r#"{"id":1}"#)).unwrap();
            assert_eq!(e.kind, kind, "{topic}");
            assert!(is_valid_kind(&e.kind), "{topic} → {}", e.kind);
        }
    }

    #[test]
    fn a_known_api_version_names_the_schema() {
        let w = webhook("order.created", "{}").with_api_version(Some("wp_api_v3"));
        assert_eq!(
            transform(w).unwrap().schema_version,
            "v1.woocommerce.wp_api_v3"
        );
    }

    /// A deleted resource is `{"id": N}`: still an object, still passed on.
    #[test]
    fn a_deletion_passes_through() {
        let e = transform(webhook("product.deleted", r#"{"id":794}"#)).unwrap();
        assert_eq!(
            (e.kind.as_str(), &e.payload),
            ("product.deleted", &Payload::Unchanged)
        );
    }

    /// The creation ping (`webhook_id=N`, form-encoded) is answered by the
    /// host and never reaches a transform; should one, it is refused, not
    /// published.
    #[test]
    fn a_body_that_is_no_object_is_invalid_input() {
        for body in ["webhook_id=535", "[1]", "", "\u{fffd}"] {
            let got = transform(webhook("order.created", body));
            assert!(
                matches!(got, Err(Error::InvalidInput(_))),
                "{body:?}: {got:?}"
            );
        }
    }
}
