//! Any sender that signs with an HMAC, declared in the connection's settings
//! rather than in code: GitHub, Stripe and the many in-house senders that
//! put `hex(HMAC(secret, body))` in a header of their choosing.
//!
//! The settings (`Keys::settings`) name a preset, or a scheme, or both
//! (the preset's parts are then overridden one by one):
//!
//! ```json
//! {"preset": "github"}
//! {"verify": {"type": "hmac", "header": "X-Signature", "prefix": "sha256="},
//!  "topic": {"from": "header", "name": "X-Event"},
//!  "delivery": {"from": "field", "pointer": "/id"}}
//! ```
//!
//! Without a delivery id in the request, the sha256 of the signed bytes is
//! one: stable across a sender's exact retries, so they deduplicate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pipeline::provider::{Checked, Described, Incoming, Keys, Proposed, Provider, Rejected};
use crate::providers::verify::{Scheme, field_text, header, presets, rfc3339, select_headers};

/// Where a value is read from a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum Locator {
    Header {
        name: String,
    },
    /// A JSON pointer into the body (`/type`, `/data/object/id`).
    Field {
        pointer: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    Github,
    Stripe,
}

/// A configurable source, as its settings declare it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Scheme>,
    /// Where the topic is; without one every request is `webhook`.
    /// (GitHub's preset: `X-GitHub-Event`; Stripe's: the body's `/type`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Locator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Locator>,
    /// Where the request names its account. Declared, it must equal the
    /// connection's account (a sender that signs several accounts' webhooks
    /// with one secret); presets declare none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Locator>,
    /// Unix seconds or RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Locator>,
    /// Prefixes of the header names handed to transforms (lower-case); the
    /// signature header is never among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<String>>,
}

/// What a source resolves to once its preset is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub scheme: Scheme,
    pub topic: Option<Locator>,
    pub delivery: Option<Locator>,
    pub account: Option<Locator>,
    pub occurred_at: Option<Locator>,
    pub headers: Vec<String>,
}

fn header_at(name: &str) -> Option<Locator> {
    Some(Locator::Header { name: name.into() })
}

fn field_at(pointer: &str) -> Option<Locator> {
    Some(Locator::Field {
        pointer: pointer.into(),
    })
}

impl Preset {
    fn source(self) -> Source {
        match self {
            Preset::Github => Source {
                scheme: Scheme::Hmac(presets::github()),
                topic: header_at("x-github-event"),
                delivery: header_at("x-github-delivery"),
                // A connection of a configurable sender is named by whoever
                // makes it; a preset declares no account to compare with
                // that name. One declared in the settings is compared.
                account: None,
                occurred_at: None,
                headers: vec!["x-github-".into()],
            },
            // The event id, not a delivery id: Stripe resends the same event
            // on retry, so it deduplicates them.
            Preset::Stripe => Source {
                scheme: Scheme::Hmac(presets::stripe()),
                topic: field_at("/type"),
                delivery: field_at("/id"),
                account: None,
                occurred_at: field_at("/created"),
                headers: Vec::new(),
            },
        }
    }
}

impl Settings {
    /// The source these settings declare, or what is wrong with them.
    pub fn resolve(self) -> Result<Source, String> {
        let base = self.preset.map(Preset::source);
        let scheme = match (self.verify, &base) {
            (Some(scheme), _) => scheme,
            (None, Some(base)) => base.scheme.clone(),
            (None, None) => return Err("the settings name neither a `preset` nor `verify`".into()),
        };
        scheme.check()?;
        let base = base.unwrap_or_else(|| Source {
            scheme: scheme.clone(),
            topic: None,
            delivery: None,
            account: None,
            occurred_at: None,
            headers: Vec::new(),
        });
        Ok(Source {
            scheme,
            topic: self.topic.or(base.topic),
            delivery: self.delivery.or(base.delivery),
            account: self.account.or(base.account),
            occurred_at: self.occurred_at.or(base.occurred_at),
            headers: self
                .headers
                .map(|h| h.into_iter().map(|p| p.to_ascii_lowercase()).collect())
                .unwrap_or(base.headers),
        })
    }
}

/// The source of a connection's settings. A mistake there is the
/// operator's, but the request cannot be checked without them.
pub fn source(settings: &Value) -> Result<Source, Rejected> {
    Settings::deserialize(settings)
        .map_err(|e| e.to_string())
        .and_then(Settings::resolve)
        .map_err(|e| Rejected::Malformed(format!("the connection's HMAC settings: {e}")))
}

pub struct ConfiguredHmac;

impl Provider for ConfiguredHmac {
    fn id(&self) -> &'static str {
        "hmac"
    }

    /// The account is a name for the sender; the settings declare how it
    /// signs (a preset, a scheme, or both), and are refused here, at
    /// connection time, rather than on every webhook.
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        source(proposed.settings).map_err(|e| e.to_string())?;
        Checked::label(proposed.account, Some(proposed.settings.clone()))
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        source(keys.settings)?.scheme.verify(req, keys.secrets)
    }

    fn describe(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<Described, Rejected> {
        let source = source(keys.settings)?;
        let mut body: Option<Option<Value>> = None;
        let mut read = |at: &Option<Locator>| -> Option<String> {
            match at.as_ref()? {
                Locator::Header { name } => header(req, name)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
                Locator::Field { pointer } => body
                    .get_or_insert_with(|| serde_json::from_slice(req.body).ok())
                    .as_ref()
                    .and_then(|b| field_text(b, pointer))
                    .filter(|v| !v.is_empty()),
            }
        };
        let topic = read(&source.topic).unwrap_or_else(|| "webhook".to_owned());
        let delivery_id =
            read(&source.delivery).unwrap_or_else(|| source.scheme.signed_digest(req));
        let account = read(&source.account);
        let occurred_at = read(&source.occurred_at).and_then(|t| match t.parse::<i64>() {
            Ok(secs) => rfc3339(secs),
            Err(_) => chrono::DateTime::parse_from_rfc3339(&t)
                .is_ok()
                .then_some(t),
        });
        let Scheme::Hmac(spec) = &source.scheme;
        let signature = spec.header.to_ascii_lowercase();
        Ok(Described {
            topic,
            delivery_id,
            account,
            api_version: None,
            occurred_at,
            event_id: None,
            headers: select_headers(req, |name| {
                name != signature && source.headers.iter().any(|p| name.starts_with(p.as_str()))
            }),
            body: None,
        })
    }

    fn sign_test(&self, d: &crate::pipeline::provider::TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        send::sign_test(d)
    }

    fn default_transform(&self) -> &'static str {
        "builtin:hmac-default"
    }
}

pub mod send;

#[cfg(test)]
mod tests;
