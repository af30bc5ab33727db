//! The stock transform of Standard Webhooks senders (Svix-powered apps,
//! OpenAI, BigCommerce): one webhook in, the same body out as one event.
//!
//! * kind: the topic, which the host reads from the payload's `type`
//!   (Svix's ping says `event_type`), by the SDK's naming rules
//!   ([`ionflux_guest::naming::topic_kind`]): `contact.created` →
//!   `contact.created`, `invoice.paid`, a one-word `ping` →
//!   `ping.received`. A payload with neither (the host's topic is then
//!   `webhook`) is named by its `scope` when it has one, as BigCommerce's
//!   do: `store/order/statusUpdated` → `store.order.status_updated`; else
//!   it is `webhook.received`;
//! * schema version: `v1.standard_webhooks.{api_version}`, or
//!   `v1.standard_webhooks.unversioned` (the spec's payload names none);
//! * payload: `unchanged`, when the body is a JSON object; anything else is
//!   refused as invalid input. The body is only parsed when the topic is
//!   `webhook`, for its `scope`.

use ionflux_guest::serde::Deserialize;
use ionflux_guest::{Event, Result, Webhook, naming, republish};

/// The host's topic for a payload that names no `type`.
const UNNAMED: &str = "webhook";

/// The exported transform. Public so other transforms can fall back to it.
pub fn transform(input: Webhook) -> Result<Event> {
    republish::check(&input)?;
    let topic = match input.topic.as_str() {
        UNNAMED => scope(&input.body).unwrap_or_else(|| UNNAMED.to_owned()),
        topic => topic.to_owned(),
    };
    let version = naming::schema_version("standard_webhooks", input.api_version.as_deref());
    Ok(Event::new(naming::topic_kind(&topic)).schema_version(version))
}

/// BigCommerce's name for an event, `store/order/created`, if the body
/// has one. A body that is no JSON is left to the host's check.
fn scope(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(crate = "ionflux_guest::serde")]
    struct Scoped {
        scope: Option<String>,
    }
    ionflux_guest::serde_json::from_slice::<Scoped>(body)
        .ok()?
        .scope
        .filter(|s| !s.trim().is_empty())
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::serde_json::{self, Value};
    use ionflux_guest::{Error, Payload, is_valid_kind, testing};

    use super::*;

    const DATA: &str = "../../../shared/data/providers";

    fn webhook(topic: &str, body: &str) -> Webhook {
        testing::provider_webhook("standard_webhooks", topic, body)
    }

    /// The host's topic: the payload's `type`, else `event_type`, else
    /// `webhook` (providers/standard_webhooks).
    fn host_topic(body: &[u8]) -> String {
        let body: Value = serde_json::from_slice(body).unwrap();
        ["type", "event_type"]
            .iter()
            .find_map(|f| body[f].as_str().filter(|s| !s.is_empty()))
            .unwrap_or(UNNAMED)
            .to_owned()
    }

    /// The Standard Webhooks samples and BigCommerce's, which BigCommerce
    /// signs the Standard Webhooks way.
    #[test]
    fn every_sample_maps() {
        let mut count = 0;
        for platform in ["standard-webhooks", "bigcommerce"] {
            for sample in testing::samples(DATA, platform) {
                count += 1;
                let expected = match sample.topic.as_str() {
                    "contact.created" => "contact.created",
                    "example.event" => "example.event",
                    "ping" => "ping.received",
                    "store.order.created" => "store.order.created",
                    "store.order.updated" => "store.order.updated",
                    "store.order.statusUpdated" => "store.order.status_updated",
                    "store.product.updated" => "store.product.updated",
                    other => panic!("no expectation for the sample topic {other}"),
                };
                let w = sample.webhook("standard_webhooks", &host_topic(&sample.body));
                let e = transform(w).unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
                assert_eq!(e.kind, expected, "{}", sample.path.display());
                assert_eq!(e.schema_version, "v1.standard_webhooks.unversioned");
                assert_eq!(e.payload, Payload::Unchanged);
            }
        }
        assert!(count >= 8, "only {count} samples");
    }

    #[test]
    fn named_examples() {
        for (topic, kind) in [
            ("contact.created", "contact.created"),
            ("invoice.paid", "invoice.paid"),
            ("response.completed", "response.completed"),
            ("batch.create", "batch.created"),
            ("ping", "ping.received"),
            ("User Signed Up", "user_signed_up.received"),
        ] {
            let e = transform(webhook(topic, r#"{"type":"x"}"#)).unwrap();
            assert_eq!(e.kind, kind, "{topic}");
            assert!(is_valid_kind(&e.kind));
        }
    }

    #[test]
    fn a_payload_without_a_name() {
        let named = |body: &str| transform(webhook(UNNAMED, body)).unwrap().kind;
        assert_eq!(
            named(r#"{"scope":"store/cart/lineItem/created"}"#),
            "store.cart.line_item.created"
        );
        assert_eq!(named(r#"{"data":{}}"#), "webhook.received");
        assert_eq!(named(r#"{"scope":""}"#), "webhook.received");
        assert_eq!(named(r#"{"scope":7}"#), "webhook.received");
        // Not JSON after all: named as unnamed, refused by the host.
        assert_eq!(named(r#"{"scope":"#), "webhook.received");
    }

    #[test]
    fn a_body_that_is_no_object_is_invalid_input() {
        for body in ["[]", "", "a=b"] {
            let got = transform(webhook("contact.created", body));
            assert!(
                matches!(got, Err(Error::InvalidInput(_))),
                "{body:?}: {got:?}"
            );
        }
    }
}
