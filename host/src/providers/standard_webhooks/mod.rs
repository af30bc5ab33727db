//! Any sender of Standard Webhooks (standardwebhooks.com): Svix-powered apps,
//! OpenAI, BigCommerce. `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (or the same under `svix-`), signed over
//! `{id}.{timestamp}.{body}`; five minutes either way.
//!
//! The header holds space-separated entries, and any one matching suffices:
//! `v1,<base64>` is HMAC-SHA256 keyed by the base64 key of a `whsec_`
//! secret; `v1a,<base64>` is an Ed25519 signature, checked with a `whpk_`
//! public key (base64 of its 32 bytes; the sender keeps the `whsk_` secret
//! key, which the gateway never needs). A connection's secrets may mix both
//! kinds, current and previous: each verifies only its own kind of entry.
//! Other versions are ignored.

pub mod asymmetric;

use std::sync::LazyLock;

use serde_json::Value;

use crate::pipeline::provider::{
    Checked, Described, Incoming, Keys, Proposed, Provider, Rejected, no_settings,
};
use crate::providers::verify::{
    Algorithm, Encoding, HmacSpec, KeyEncoding, Signatures, Template, Timestamp, header, rfc3339,
    select_headers,
};

static WEBHOOK: LazyLock<HmacSpec> = LazyLock::new(|| spec("webhook"));
static SVIX: LazyLock<HmacSpec> = LazyLock::new(|| spec("svix"));

/// The scheme, its header names under `prefix` (`webhook` or `svix`):
/// `{id}.{timestamp}.{body}`, `whsec_` keys, space-separated `v1,<base64>`
/// entries, five minutes either way. Also what the HMAC engine's own tests,
/// the fuzz properties and the benches use as a many-part scheme.
pub fn spec(prefix: &str) -> HmacSpec {
    HmacSpec {
        header: format!("{prefix}-signature"),
        prefix: Some("v1,".into()),
        signed: Template::try_from("{id}.{timestamp}.{body}".to_owned())
            .expect("a valid template"),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Base64,
        key: KeyEncoding::Whsec,
        signatures: Signatures::Separator {
            separator: " ".into(),
        },
        id_header: Some(format!("{prefix}-id")),
        timestamp: Some(Timestamp::Header {
            name: format!("{prefix}-timestamp"),
            tolerance_secs: 300,
        }),
    }
}

pub use asymmetric::{PUBLIC_KEY_PREFIX, Signer};

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
        let (public, shared): (Vec<&[u8]>, Vec<&[u8]>) = keys
            .secrets
            .iter()
            .partition(|s| asymmetric::is_public_key(s));
        family(req).1.verify_or(req, &shared, |header, signed| {
            asymmetric::matches(header, signed, &public)
        })
    }

    /// The account is a name for the sender (its webhooks say none); the
    /// secret is the `whsec_` secret the sender shows.
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        use base64::Engine as _;
        if !no_settings(proposed.settings) {
            return Err("a Standard Webhooks connection takes no settings".into());
        }
        let secret = proposed.secret.trim_ascii();
        if secret.starts_with(b"whsk_") {
            return Err(
                "a whsk_ key is the sender's private signing key: give its whpk_ public key".into(),
            );
        }
        if asymmetric::is_public_key(secret) {
            return match asymmetric::public_key(secret) {
                Some(_) => Checked::label(proposed.account, None),
                None => Err("the key is not a Standard Webhooks public key (whpk_ and the base64 of 32 bytes)".into()),
            };
        }
        let key = secret.strip_prefix(b"whsec_").unwrap_or(secret);
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(key) if !key.is_empty() => Checked::label(proposed.account, None),
            _ => Err("the secret is not a Standard Webhooks secret (whsec_ and base64, or a whpk_ public key)".into()),
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
