//! Any sender of Standard Webhooks (standardwebhooks.com): Svix-powered apps,
//! OpenAI, BigCommerce. `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (or the same under `svix-`), signed over
//! `{id}.{timestamp}.{body}` with the base64 key of a `whsec_` secret; any
//! `v1` entry of the header may match; five minutes either way.
//!
//! `v1a` (ed25519) entries are skipped: verifying them needs the sender's
//! public key, which no sender we take publishes yet.

use std::sync::LazyLock;

use serde_json::Value;

use crate::pipeline::provider::{
    Checked, Described, Incoming, Keys, Proposed, Provider, Rejected, no_settings,
};
use crate::providers::verify::{HmacSpec, header, presets, rfc3339, select_headers};

static WEBHOOK: LazyLock<HmacSpec> = LazyLock::new(|| presets::standard_webhooks("webhook"));
static SVIX: LazyLock<HmacSpec> = LazyLock::new(|| presets::standard_webhooks("svix"));

pub struct StandardWebhooks;

/// The header family a request uses: the standard names win when both are
/// present, as the reference libraries read them first.
fn family(req: &Incoming<'_>) -> (&'static str, &'static HmacSpec) {
    if req.headers.contains_key("webhook-signature") || !req.headers.contains_key("svix-signature")
    {
        ("webhook", &WEBHOOK)
    } else {
        ("svix", &SVIX)
    }
}

impl Provider for StandardWebhooks {
    fn id(&self) -> &'static str {
        "standard_webhooks"
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        family(req).1.verify(req, keys.secrets)
    }

    /// The account is a name for the sender (its webhooks say none); the
    /// secret is the `whsec_` secret the sender shows.
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        use base64::Engine as _;
        if !no_settings(proposed.settings) {
            return Err("a Standard Webhooks connection takes no settings".into());
        }
        let key = proposed
            .secret
            .strip_prefix(b"whsec_")
            .unwrap_or(proposed.secret);
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(key) if !key.is_empty() => Checked::label(proposed.account, None),
            _ => Err("the secret is not a Standard Webhooks secret (whsec_ and base64)".into()),
        }
    }

    fn describe(&self, req: &Incoming<'_>, _keys: &Keys<'_>) -> Result<Described, Rejected> {
        let (prefix, _) = family(req);
        let id_header = format!("{prefix}-id");
        let delivery_id = header(req, &id_header)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Rejected::Malformed(format!("the `{id_header}` header is missing")))?
            .to_owned();
        let body: Option<Value> = serde_json::from_slice(req.body).ok();
        let text = |name: &str| {
            body.as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        // The spec's payload names its event `type`; Svix's own ping (and
        // some senders) say `event_type`.
        let topic = text("type")
            .or_else(|| text("event_type"))
            .unwrap_or_else(|| "webhook".to_owned());
        // The payload's `timestamp` is when the event happened; the header's
        // is when this attempt was signed.
        let occurred_at = text("timestamp")
            .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
            .or_else(|| {
                header(req, &format!("{prefix}-timestamp"))
                    .and_then(|t| t.parse().ok())
                    .and_then(rfc3339)
            });
        let signature = format!("{prefix}-signature");
        let ours = format!("{prefix}-");
        Ok(Described {
            topic,
            delivery_id,
            account: None,
            api_version: None,
            occurred_at,
            event_id: text("id"),
            headers: select_headers(req, |name| name.starts_with(&ours) && name != signature),
            body: None,
        })
    }

    fn sign_test(&self, d: &crate::pipeline::provider::TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        send::sign_test(d)
    }

    fn default_transform(&self) -> &'static str {
        "builtin:standard-webhooks-default"
    }
}

pub mod send;

#[cfg(test)]
mod tests;
