//! The stock transform of senders verified by a configured HMAC (GitHub,
//! Stripe, in-house senders): one webhook in, its JSON object out as one
//! event.
//!
//! * kind, by the SDK's naming rules ([`ionflux_guest::naming`]):
//!   * GitHub (an `X-GitHub-Event` header among the webhook's): the event
//!     and the body's `action`, `issues` + `opened` → `issues.opened`; an
//!     event with no action is `received`: `push` → `push.received`,
//!     `ping` → `ping.received`;
//!   * any other sender: its topic as configured (Stripe's `type`,
//!     `invoice.paid` → `invoice.paid`; a header of the sender's), made a
//!     valid kind: `.` and `/` separate segments, anything else outside
//!     `[a-z0-9_]` becomes `_`, a one-word topic gets `.received`, and a
//!     sender without a topic is `webhook.received`;
//! * schema version: `v1.hmac.{api_version}`, or `v1.hmac.unversioned`;
//! * payload: a JSON object body passes `unchanged`. A form body whose
//!   `payload` field holds a JSON object (GitHub's
//!   `application/x-www-form-urlencoded` content type, Slack's too) is
//!   republished as that object. Any other body is refused as invalid
//!   input: wrapping it (`{"raw": "…"}`) would invent a schema no consumer
//!   knows, and bytes that are not UTF-8 do not even fit a JSON string; the
//!   dead letter says why, and a route with a transform of its own can
//!   read it.

use ionflux_guest::serde::Deserialize;
use ionflux_guest::serde::de::IgnoredAny;
use ionflux_guest::{Error, Event, Result, Webhook, naming, republish};

const GITHUB_EVENT: &str = "x-github-event";

/// The exported transform. Public so other transforms can fall back to it.
pub fn transform(input: Webhook) -> Result<Event> {
    let version = naming::schema_version("hmac", input.api_version.as_deref());
    let github = input.header(GITHUB_EVENT).is_some();
    if let Some(refusal) = republish::envelope_error(&input) {
        return Err(refusal);
    }
    if let Some(payload) = form_payload(&input.body) {
        // Parsed in full whoever sent it: these bytes are new, the host
        // has not seen them, and they must be one JSON object.
        let kind = if github {
            github_kind(&input.topic, payload.as_bytes())?
        } else {
            read_top(payload.as_bytes())?;
            naming::topic_kind(&input.topic)
        };
        return Ok(Event::new(kind)
            .schema_version(version)
            .json_bytes(payload.into_bytes()));
    }
    republish::check(&input)?;
    let kind = if github {
        github_kind(&input.topic, &input.body)?
    } else {
        naming::topic_kind(&input.topic)
    };
    Ok(Event::new(kind).schema_version(version))
}

/// The top level of a JSON object: its `action`, when it is a string.
#[derive(Deserialize)]
#[serde(crate = "ionflux_guest::serde")]
struct Top {
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Deserialize)]
#[serde(crate = "ionflux_guest::serde", untagged)]
enum Action {
    Text(String),
    Other(#[allow(dead_code)] IgnoredAny),
}

fn read_top(json: &[u8]) -> Result<Top> {
    if !republish::looks_like_object(json) {
        return Err(Error::invalid_input(
            "the form's `payload` is not a JSON object",
        ));
    }
    ionflux_guest::serde_json::from_slice(json)
        .map_err(|e| Error::invalid_input(format!("the body is not JSON: {e}")))
}

/// `{event}.{action}` for a GitHub delivery.
fn github_kind(event: &str, json: &[u8]) -> Result<String> {
    let action = match read_top(json)?.action {
        Some(Action::Text(action)) => action,
        _ => String::new(),
    };
    Ok(naming::kind(event, &action))
}

/// The `payload` field of a form-encoded body, if it has one.
fn form_payload(body: &[u8]) -> Option<String> {
    let body = body.trim_ascii();
    if body.first() == Some(&b'{') || !body.contains(&b'=') {
        return None;
    }
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::serde_json::{self, Value};
    use ionflux_guest::{Payload, is_valid_kind, testing};

    use super::*;

    const DATA: &str = "../../../shared/data/providers";

    fn github(event: &str, body: &str) -> Webhook {
        testing::provider_webhook("hmac", event, body).with_header("X-GitHub-Event", Some(event))
    }

    fn sender(topic: &str, body: &str) -> Webhook {
        testing::provider_webhook("hmac", topic, body)
    }

    /// GitHub's samples under the event GitHub puts in `X-GitHub-Event`
    /// (the listing's topic up to its first dot).
    #[test]
    fn every_github_sample_maps() {
        let samples = testing::samples(DATA, "github");
        assert!(samples.len() >= 4, "only {} samples", samples.len());
        for sample in samples {
            let event = sample.topic.split('.').next().unwrap().to_owned();
            let (kind, form) = match sample.topic.as_str() {
                "ping" => ("ping.received", false),
                "push" => ("push.received", false),
                "issues.opened" => ("issues.opened", false),
                // snare's test: a form body, `payload=` and JSON with no action.
                "issues" => ("issues.received", true),
                other => panic!("no expectation for the sample topic {other}"),
            };
            let w = sample
                .webhook("hmac", &event)
                .with_header(GITHUB_EVENT, Some(&event));
            let e = transform(w).unwrap_or_else(|e| panic!("{}: {e}", sample.path.display()));
            assert_eq!(e.kind, kind, "{}", sample.path.display());
            assert_eq!(e.schema_version, "v1.hmac.unversioned");
            if form {
                let payload = e.json_payload_value().unwrap().unwrap();
                assert_eq!(payload["repository"]["name"], "testrepo");
            } else {
                assert_eq!(e.payload, Payload::Unchanged);
            }
        }
    }

    /// Stripe's samples under the topic the Stripe preset reads, `/type`
    /// (`webhook` without one).
    #[test]
    fn every_stripe_sample_maps() {
        let samples = testing::samples(DATA, "stripe");
        assert!(samples.len() >= 2, "only {} samples", samples.len());
        for sample in samples {
            let body: Value = serde_json::from_slice(&sample.body).unwrap();
            let topic = body["type"].as_str().unwrap_or("webhook");
            let kind = match sample.topic.as_str() {
                "_untyped_test_event" => "webhook.received",
                "v1.billing.meter.error_report_triggered" => {
                    "v1.billing.meter.error_report_triggered"
                }
                other => panic!("no expectation for the sample topic {other}"),
            };
            let e = transform(sample.webhook("hmac", topic)).unwrap();
            assert_eq!(e.kind, kind, "{}", sample.path.display());
            assert_eq!(e.schema_version, "v1.hmac.unversioned");
            assert_eq!(e.payload, Payload::Unchanged);
        }
    }

    #[test]
    fn named_examples() {
        for (w, kind) in [
            (
                github("issues", r#"{"action":"opened","issue":{}}"#),
                "issues.opened",
            ),
            (
                github("pull_request", r#"{"action":"synchronize"}"#),
                "pull_request.synchronize",
            ),
            (
                github("push", r#"{"ref":"refs/heads/main"}"#),
                "push.received",
            ),
            (
                github("ping", r#"{"zen":"Design for failure."}"#),
                "ping.received",
            ),
            (github("watch", r#"{"action":"started"}"#), "watch.started"),
            (
                github("issues", r#"{"action":{"odd":true}}"#),
                "issues.received",
            ),
            (
                sender("invoice.paid", r#"{"type":"invoice.paid"}"#),
                "invoice.paid",
            ),
            (
                sender("customer.subscription.created", "{}"),
                "customer.subscription.created",
            ),
            // A GitHub-like body from a sender that is not GitHub: its topic only.
            (
                sender("issues", r#"{"action":"opened"}"#),
                "issues.received",
            ),
            (sender("Order Created", "{}"), "order_created.received"),
            (sender("orders/create", "{}"), "orders.created"),
            (sender("webhook", "{}"), "webhook.received"),
        ] {
            let topic = w.topic.clone();
            let e = transform(w).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(e.kind, kind, "{topic}");
            assert!(is_valid_kind(&e.kind));
        }
    }

    /// The form GitHub really sends is URL-encoded; its JSON becomes the
    /// payload, and its action names the event.
    #[test]
    fn a_form_body_is_republished_as_its_payload() {
        let body = "payload=%7B%22action%22%3A%22closed%22%2C%22title%22%3A%22a+b%22%7D";
        let e = transform(github("issues", body)).unwrap();
        assert_eq!(e.kind, "issues.closed");
        let payload = e.json_payload_value().unwrap().unwrap();
        assert_eq!(
            payload,
            serde_json::json!({"action": "closed", "title": "a b"})
        );

        let e = transform(sender(
            "slack.action",
            "token=x&payload=%7B%22type%22%3A1%7D",
        ))
        .unwrap();
        assert_eq!(e.kind, "slack.action");
        assert_eq!(e.json_payload(), Some(&br#"{"type":1}"#[..]));
    }

    #[test]
    fn what_cannot_be_an_object_is_invalid_input() {
        for w in [
            sender("webhook", "a=1&b=2"),
            sender("webhook", "payload=%5B1%5D"),
            sender("webhook", "payload=%7Bnope"),
            sender("webhook", "[1,2]"),
            sender("webhook", "plain text"),
            sender("webhook", ""),
            sender("webhook", "\u{0}\u{ff}"),
            github("issues", r#"{"action": "opened""#),
            github("issues", "payload="),
        ] {
            let body = String::from_utf8_lossy(&w.body).into_owned();
            let got = transform(w);
            assert!(
                matches!(got, Err(Error::InvalidInput(_))),
                "{body:?}: {got:?}"
            );
        }
    }

    /// Without GitHub, a body that starts like an object is not parsed:
    /// the host's check refuses it if it is no JSON after all.
    #[test]
    fn other_senders_bodies_are_not_parsed() {
        let e = transform(sender("invoice.paid", "{not json")).unwrap();
        assert_eq!(e.payload, Payload::Unchanged);
    }
}
