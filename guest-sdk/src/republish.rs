//! Whether a webhook's body can be republished as it is: what the stock
//! pass-through transforms of every platform check before they answer
//! [`Payload::Unchanged`](crate::Payload::Unchanged).
//!
//! The host publishes an unchanged body only if it is one JSON object, and
//! refuses it otherwise, after the transform. These checks refuse earlier
//! and with a reason that names the problem, and stay cheap: the body is
//! never parsed here. A body that starts like an object but is not valid
//! JSON still passes; the host's check refuses it (a dead letter either
//! way).
//!
//! ```
//! use ionflux_guest::{Error, republish, testing};
//! let ok = testing::provider_webhook("standard_webhooks", "contact.created", r#" {"type":"contact.created"}"#);
//! assert!(republish::unchanged(&ok, "contact.created", "v1").is_ok());
//! let form = testing::provider_webhook("hmac", "webhook", "a=1&b=2");
//! assert!(matches!(republish::unchanged(&form, "webhook.received", "v1"), Err(Error::InvalidInput(_))));
//! ```

use crate::{Error, Event, Webhook};

/// The topic a provider gives a genuine (verified) webhook whose envelope
/// it could not read, e.g. TikTok Shop's body that is not JSON: stored and
/// answered, then refused by the transform.
pub const INVALID_ENVELOPE: &str = "invalid_envelope";

/// The header that says why, on an [`INVALID_ENVELOPE`] webhook.
pub const ENVELOPE_ERROR_HEADER: &str = "x-ionflux-envelope-error";

/// The refusal of a webhook whose envelope the provider could not read,
/// with the provider's reason; `None` for every other webhook.
pub fn envelope_error(webhook: &Webhook) -> Option<Error> {
    (webhook.topic == INVALID_ENVELOPE).then(|| {
        let reason = webhook
            .header(ENVELOPE_ERROR_HEADER)
            .unwrap_or("the provider could not read the envelope");
        Error::invalid_input(format!("{} webhook: {reason}", webhook.provider))
    })
}

/// Whether the body starts like a JSON object (`{` after any whitespace).
pub fn looks_like_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

/// A pass-through event of this kind and schema version, if [`check`]
/// passes.
pub fn unchanged(
    webhook: &Webhook,
    kind: impl Into<String>,
    schema_version: impl Into<String>,
) -> Result<Event, Error> {
    check(webhook)?;
    Ok(Event::new(kind).schema_version(schema_version))
}

/// Whether the body may pass through: not when the provider could not read
/// the envelope ([`envelope_error`]) nor when the body is no JSON object;
/// both are [`Error::InvalidInput`], the sender's.
pub fn check(webhook: &Webhook) -> Result<(), Error> {
    if let Some(refusal) = envelope_error(webhook) {
        return Err(refusal);
    }
    if !looks_like_object(&webhook.body) {
        return Err(Error::invalid_input(format!(
            "the body of this {} webhook is not a JSON object ({}), so it cannot be \
             republished unchanged; a route with a transform of its own can read it",
            webhook.provider,
            describe(&webhook.body)
        )));
    }
    Ok(())
}

/// What a body that is not an object looks like, without quoting it (it may
/// hold personal data, and the reason ends up in logs).
fn describe(body: &[u8]) -> &'static str {
    match body.trim_ascii_start().first() {
        None => "it is empty",
        Some(b'[') => "it starts like a JSON array",
        Some(b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => "it starts like a JSON scalar",
        Some(_) if body.contains(&b'=') => "it looks form-encoded",
        Some(_) => "it does not start like JSON",
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::{Payload, testing};

    fn hook(topic: &str, body: &str) -> Webhook {
        testing::provider_webhook("tiktok_shop", topic, body)
    }

    #[test]
    fn objects_pass_unchanged() {
        let e = unchanged(&hook("x", "\n {\"a\":1}"), "a.b", "v1.x").unwrap();
        assert_eq!(
            (e.kind.as_str(), e.schema_version.as_str()),
            ("a.b", "v1.x")
        );
        assert_eq!(e.payload, Payload::Unchanged);
    }

    #[test]
    fn other_bodies_are_refused_without_quoting_them() {
        for (body, what) in [
            ("", "empty"),
            ("[1]", "array"),
            ("\"secret@example.com\"", "scalar"),
            ("webhook_id=1", "form-encoded"),
            ("hello", "does not start like JSON"),
        ] {
            let Err(Error::InvalidInput(reason)) = unchanged(&hook("x", body), "a.b", "v1") else {
                panic!("{body:?} passed");
            };
            assert!(reason.contains(what), "{reason}");
            assert!(!reason.contains("secret@"), "{reason}");
        }
    }

    #[test]
    fn an_unreadable_envelope_is_refused_with_the_providers_reason() {
        let w = hook(INVALID_ENVELOPE, "{\"type\": 1 \"data\": {}}")
            .with_header(ENVELOPE_ERROR_HEADER, Some("the body is not JSON (line 1)"));
        let Err(Error::InvalidInput(reason)) = unchanged(&w, "a.b", "v1") else {
            panic!("passed");
        };
        assert!(reason.contains("the body is not JSON (line 1)"), "{reason}");
        assert!(envelope_error(&hook(INVALID_ENVELOPE, "{}")).is_some());
        assert!(envelope_error(&hook("order_status_change", "{}")).is_none());
    }
}
