//! The stock Wix transform: one event in, the same body out as one event.
//!
//! The host verifies Wix's JWT and hands over its decoded envelope, one
//! plain object: `{eventType, instanceId, data: {...}, identity?, webhookId?}`.
//! The topic is its `eventType`.
//!
//! * kind, by the SDK's naming rules ([`ionflux_guest::naming`]):
//!   * an event of Wix's current APIs, whose `data` names the entity
//!     (`entityFqdn`, e.g. `wix.crm.inbox.v2.message`) and the event
//!     (`slug`, e.g. `message_sent_to_business`), is
//!     `{entity}.{slug}`, the entity the last part of the name. A slug that
//!     repeats the entity drops it: `message.sent_to_business`,
//!     `contact.created`, `order.approved`. Without `entityFqdn` and `slug`
//!     in the body, the `eventType` (`{entityFqdn}_{slug}`) is split the same
//!     way, at the first `_` of its last part;
//!   * a legacy app event, one CamelCase word, takes its last word as the
//!     action: `AppInstalled` → `app.installed`, `AppRemoved` →
//!     `app.removed`, `PaidPlanPurchased` → `paid_plan.purchased`;
//! * schema version: `v1.wix.{api}`, the API being the entity's namespace
//!   and version (`wix.crm.inbox.v2.message` → `v1.wix.crm.inbox.v2`); a
//!   legacy event is `v1.wix.unversioned`;
//! * payload: `unchanged` (the decoded envelope). An envelope the host could
//!   not decode arrives as `invalid_envelope` and is refused as invalid
//!   input, with the host's reason.

use ionflux_guest::serde::Deserialize;
use ionflux_guest::serde::de::IgnoredAny;
use ionflux_guest::{Error, Event, Result, Webhook, naming, republish};

/// The exported transform. Public so other transforms can fall back to it.
pub fn transform(input: Webhook) -> Result<Event> {
    republish::check(&input)?;
    let envelope: Envelope = ionflux_guest::serde_json::from_slice(&input.body)
        .map_err(|e| Error::invalid_input(format!("the Wix envelope: {e}")))?;
    let (kind, api) = match envelope.data {
        Some(Data::Event { entity_fqdn, slug }) => v2_kind(&entity_fqdn, &slug),
        _ => topic_kind(&input.topic),
    };
    let api = input.api_version.clone().or(api);
    Ok(Event::new(kind).schema_version(naming::schema_version("wix", api.as_deref())))
}

#[derive(Deserialize)]
#[serde(crate = "ionflux_guest::serde")]
struct Envelope {
    #[serde(default)]
    data: Option<Data>,
}

/// Only what names the event is read; everything else is skipped unread.
#[derive(Deserialize)]
#[serde(crate = "ionflux_guest::serde", untagged)]
enum Data {
    Event {
        #[serde(rename = "entityFqdn")]
        entity_fqdn: String,
        slug: String,
    },
    Other(#[allow(dead_code)] IgnoredAny),
}

/// `(kind, api)` for an entity name and an event slug.
fn v2_kind(entity_fqdn: &str, slug: &str) -> (String, Option<String>) {
    let (namespace, entity) = match entity_fqdn.rsplit_once('.') {
        Some((namespace, entity)) => (Some(namespace), entity),
        None => (None, entity_fqdn),
    };
    let action = slug
        .strip_prefix(entity)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(slug);
    let api = namespace
        .map(|n| n.strip_prefix("wix.").unwrap_or(n))
        .filter(|n| !n.is_empty() && *n != "wix")
        .map(str::to_owned);
    (naming::kind(entity, action), api)
}

/// `(kind, api)` from the `eventType` alone.
pub fn topic_kind(event_type: &str) -> (String, Option<String>) {
    let event_type = event_type.trim();
    match event_type.rsplit_once('.') {
        // `{entityFqdn}_{slug}`: the entity is the last part of the name.
        Some((namespace, last)) => {
            let (entity, slug) = last.split_once('_').unwrap_or((last, ""));
            v2_kind(&format!("{namespace}.{entity}"), slug)
        }
        // A legacy event: its words, the last the action.
        None => {
            let words = naming::segment(event_type);
            let kind = match words.rsplit_once('_') {
                Some((entity, action)) if !entity.is_empty() && !action.is_empty() => {
                    naming::kind(entity, action)
                }
                _ => naming::kind(&words, ""),
            };
            (kind, None)
        }
    }
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ionflux_guest::republish::{ENVELOPE_ERROR_HEADER, INVALID_ENVELOPE};
    use ionflux_guest::serde_json::{self, Value, json};
    use ionflux_guest::{Payload, is_valid_kind, testing};

    use super::*;

    const DATA: &str = "../../../shared/data/providers";

    /// What the host stores for a Wix JWT: its claims' `data`, and that
    /// envelope's `data` and `identity`, decoded from their JSON strings.
    fn decoded(jwt: &[u8]) -> Vec<u8> {
        let jwt = std::str::from_utf8(jwt).unwrap().trim();
        let claims = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap();
        let claims: Value = serde_json::from_slice(&claims).unwrap();
        let mut envelope: Value = serde_json::from_str(claims["data"].as_str().unwrap()).unwrap();
        for field in ["data", "identity"] {
            if let Some(Value::String(s)) = envelope.get(field) {
                envelope[field] = serde_json::from_str(s).unwrap();
            }
        }
        serde_json::to_vec(&envelope).unwrap()
    }

    fn webhook(topic: &str, body: &Value) -> Webhook {
        testing::provider_webhook("wix", topic, serde_json::to_vec(body).unwrap())
    }

    #[test]
    fn every_sample_maps() {
        let samples = testing::samples(DATA, "wix");
        assert!(samples.len() >= 3, "only {} samples", samples.len());
        for sample in samples {
            let body = decoded(&sample.body);
            let (kind, version) = match sample.topic.as_str() {
                "AppInstalled" => ("app.installed", "v1.wix.unversioned"),
                "wix.crm.inbox.v2.message_message_sent_to_business" => {
                    ("message.sent_to_business", "v1.wix.crm.inbox.v2")
                }
                other => panic!("no expectation for the sample topic {other}"),
            };
            let w = testing::provider_webhook("wix", &sample.topic, body);
            let e = transform(w).unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
            assert_eq!(e.kind, kind, "{}", sample.path.display());
            assert_eq!(e.schema_version, version, "{}", sample.path.display());
            assert_eq!(e.payload, Payload::Unchanged);
        }
    }

    #[test]
    fn current_events_are_named_by_entity_and_slug() {
        for (fqdn, slug, kind, version) in [
            (
                "wix.crm.inbox.v2.message",
                "message_sent_to_business",
                "message.sent_to_business",
                "v1.wix.crm.inbox.v2",
            ),
            (
                "wix.contacts.v4.contact",
                "created",
                "contact.created",
                "v1.wix.contacts.v4",
            ),
            (
                "wix.ecom.v1.order",
                "approved",
                "order.approved",
                "v1.wix.ecom.v1",
            ),
            (
                "wix.ecom.v1.order",
                "payment_status_updated",
                "order.payment_status_updated",
                "v1.wix.ecom.v1",
            ),
            (
                "wix.stores.catalog.v1.product",
                "deleted",
                "product.deleted",
                "v1.wix.stores.catalog.v1",
            ),
            (
                "wix.ecom.v1.abandoned_checkout",
                "abandoned_checkout_recovered",
                "abandoned_checkout.recovered",
                "v1.wix.ecom.v1",
            ),
            (
                "wix.bookings.v2.booking",
                "booking_created",
                "booking.created",
                "v1.wix.bookings.v2",
            ),
            (
                "message",
                "message",
                "message.message",
                "v1.wix.unversioned",
            ),
        ] {
            let body = json!({"eventType": "x", "data": {"entityFqdn": fqdn, "slug": slug}});
            let e = transform(webhook(&format!("{fqdn}_{slug}"), &body)).unwrap();
            assert_eq!(
                (e.kind.as_str(), e.schema_version.as_str()),
                (kind, version),
                "{fqdn} {slug}"
            );
            assert!(is_valid_kind(&e.kind));
        }
    }

    #[test]
    fn the_event_type_alone_names_the_event_too() {
        for (topic, kind, api) in [
            ("AppInstalled", "app.installed", None),
            ("AppRemoved", "app.removed", None),
            ("PaidPlanPurchased", "paid_plan.purchased", None),
            (
                "PaidPlanAutoRenewalCancelled",
                "paid_plan_auto_renewal.cancelled",
                None,
            ),
            ("Ping", "ping.received", None),
            (
                "wix.crm.inbox.v2.message_message_sent_to_business",
                "message.sent_to_business",
                Some("crm.inbox.v2"),
            ),
            (
                "wix.contacts.v4.contact_created",
                "contact.created",
                Some("contacts.v4"),
            ),
        ] {
            assert_eq!(
                topic_kind(topic),
                (kind.to_owned(), api.map(str::to_owned)),
                "{topic}"
            );
            let e = transform(webhook(topic, &json!({"eventType": topic, "data": {}}))).unwrap();
            assert_eq!(e.kind, kind, "{topic}");
        }
    }

    #[test]
    fn odd_envelopes_do_not_panic() {
        for body in [
            json!({}),
            json!({"data": "text"}),
            json!({"data": null}),
            json!({"data": {"slug": 1}}),
        ] {
            let e = transform(webhook("AppInstalled", &body)).unwrap();
            assert_eq!(e.kind, "app.installed", "{body}");
        }
        let w = testing::provider_webhook("wix", "AppInstalled", "{not json");
        assert!(matches!(transform(w), Err(Error::InvalidInput(_))));
        let w = testing::provider_webhook("wix", "AppInstalled", "eyJhbGciOi.x.y");
        assert!(matches!(transform(w), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn an_envelope_the_host_could_not_decode_is_refused_with_its_reason() {
        let w = testing::provider_webhook("wix", INVALID_ENVELOPE, "eyJhbGciOi.x.y").with_header(
            ENVELOPE_ERROR_HEADER,
            Some("the token's claims are not JSON"),
        );
        let Err(Error::InvalidInput(reason)) = transform(w) else {
            panic!("published");
        };
        assert!(reason.contains("claims are not JSON"), "{reason}");
    }
}
