//! TikTok Shop: `Authorization: <lowercase hex HMAC-SHA256(app secret,
//! app key + raw body)>`, no prefix, no timestamp in the MAC, and an
//! envelope `{type, tts_notification_id, shop_id, timestamp, data}` whose
//! integer `type` names the event.
//!
//! The app key is not secret: it comes from the connection's settings
//! (`{"app_key": "…"}`), the app secret from its secrets.
//!
//! A genuine body whose envelope does not parse (TikTok's own docs publish
//! one, with a missing comma) is not refused: it is described under the
//! topic [`INVALID_ENVELOPE`], with the parse error in the
//! [`ENVELOPE_ERROR_HEADER`] header and a delivery id derived from the
//! signed bytes, so it is stored, answered 200 (TikTok would otherwise
//! retry it for a day) and ends as a dead letter when no transform can read
//! it. Only an unsigned or forged request is refused.

use std::sync::Arc;

use axum::Router;
use serde_json::Value;

use crate::pipeline::provider::{
    AfterPublish, Checked, Described, Incoming, Keys, Proposed, Provider, Rejected, SetUp,
};
use crate::providers::verify::{
    Algorithm, header, invalid_envelope, mac_matches, rfc3339, sha256_hex,
};
use crate::store::{InboxRow, Outcome, Store};

/// The envelope's `type`, as TikTok's partner docs number them.
const TYPES: &[(u64, &str)] = &[
    (1, "order_status_change"),
    (3, "recipient_address_update"),
    (4, "package_update"),
    (5, "product_status_change"),
    (6, "seller_deauthorization"),
    (7, "upcoming_authorization_expiration"),
    (11, "cancellation_status_change"),
    (12, "return_status_change"),
    (15, "product_information_change"),
    (16, "product_creation"),
];

use deauthorization::DEAUTHORIZATION;

/// The topic for an envelope `type`; numbers TikTok adds later keep a name
/// of their own, `type_<n>`, so routes can match them before we name them.
pub fn topic(kind: u64) -> String {
    TYPES
        .iter()
        .find(|(n, _)| *n == kind)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("type_{kind}"))
}

pub struct TikTokShop;

fn app_key<'a>(keys: &Keys<'a>) -> Result<&'a str, Rejected> {
    keys.settings
        .get("app_key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Rejected::Malformed("the connection has no `app_key` setting".into()))
}

impl Provider for TikTokShop {
    fn id(&self) -> &'static str {
        "tiktok_shop"
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        let app_key = app_key(keys)?;
        let signature = header(req, "authorization")
            .and_then(|s| hex::decode(s).ok())
            .ok_or(Rejected::Signature)?;
        let secrets: Vec<Vec<u8>> = keys.secrets.iter().map(|s| s.to_vec()).collect();
        let parts = [app_key.as_bytes(), req.body];
        if mac_matches(Algorithm::Sha256, &secrets, &parts, &[signature]) {
            Ok(())
        } else {
            Err(Rejected::Signature)
        }
    }

    /// The account is the seller's shop id (the envelope's `shop_id`); the
    /// settings name the app (`{"app_key": "…"}`), whose secret is the
    /// connection's secret, and, for a shop connected by the install, the
    /// shop's `shop_cipher` (what the Open API names it by).
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        let shop = proposed.account.trim();
        if shop.is_empty() || shop.len() > 64 || !shop.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "{shop:?} is not a TikTok Shop shop id (letters and digits)"
            ));
        }
        let app_key = proposed
            .settings
            .get("app_key")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 128 && !k.chars().any(char::is_control))
            .ok_or("a TikTok Shop connection needs the setting `app_key`, the app's key")?;
        let cipher = match proposed.settings.get("shop_cipher") {
            None => None,
            Some(Value::String(c))
                if !c.is_empty() && c.len() <= 256 && !c.chars().any(char::is_control) =>
            {
                Some(c.clone())
            }
            Some(_) => return Err("`shop_cipher` must be TikTok's shop cipher, a string".into()),
        };
        let known = 1 + usize::from(cipher.is_some());
        if proposed
            .settings
            .as_object()
            .is_some_and(|o| o.len() > known)
        {
            return Err(
                "a TikTok Shop connection takes only the settings `app_key` and `shop_cipher`"
                    .into(),
            );
        }
        let mut settings = serde_json::json!({ "app_key": app_key });
        if let Some(cipher) = cipher {
            settings["shop_cipher"] = Value::String(cipher);
        }
        Ok(Checked {
            account: shop.to_owned(),
            settings: Some(settings),
        })
    }

    fn describe(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<Described, Rejected> {
        let derived = || sha256_hex(&[app_key(keys).unwrap_or("").as_bytes(), req.body]);
        let envelope = match read_envelope(req.body) {
            Ok(envelope) => envelope,
            Err(reason) => return Ok(invalid_envelope(derived(), reason)),
        };
        let text = |name: &str| match envelope.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok(Described {
            topic: topic(envelope["type"].as_u64().unwrap_or_default()),
            // Some event types (recipient address updates) carry no
            // notification id: the signed bytes stand in, which repeat
            // exactly on TikTok's retries.
            delivery_id: text("tts_notification_id").unwrap_or_else(derived),
            account: text("shop_id"),
            api_version: None,
            occurred_at: envelope
                .get("timestamp")
                .and_then(Value::as_i64)
                .and_then(rfc3339),
            event_id: None,
            headers: Vec::new(),
            body: None,
        })
    }

    fn lifecycle_topic(&self, topic: &str) -> bool {
        topic == DEAUTHORIZATION
    }

    fn set_up(&self) -> &'static [SetUp] {
        &[SetUp::Oauth, SetUp::Secret]
    }

    fn sign_test(&self, d: &crate::pipeline::provider::TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        send::sign_test(d)
    }

    fn default_transform(&self) -> &'static str {
        "builtin:tiktok-shop-default"
    }

    fn after_publish<'a>(
        &'a self,
        store: &'a Store,
        finished: &'a [(&'a InboxRow, Outcome)],
    ) -> AfterPublish<'a> {
        Box::pin(deauthorization::EFFECT.after_finish(store, finished))
    }

    fn recover<'a>(&'a self, store: &'a Store) -> AfterPublish<'a> {
        Box::pin(async move {
            if let Err(e) = deauthorization::EFFECT.apply_due(store).await {
                tracing::warn!(error = %e, "deauthorisations not applied at start");
            }
        })
    }
}

/// TikTok Shop's own routes, finished: the install and its callback (404
/// `oauth_not_configured` without an app).
pub fn routes(install: Option<Arc<install::Install>>) -> Router {
    install::router(install)
}

/// The envelope as a JSON object with an integer `type`, or why not (the
/// reason names the problem, never the content).
fn read_envelope(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}), as TikTok Shop's envelope must be"))?;
    let Value::Object(envelope) = value else {
        return Err("the body is JSON but not an object".into());
    };
    match envelope.get("type") {
        Some(t) if t.is_u64() => Ok(envelope),
        Some(_) => Err("the envelope's `type` is not a non-negative integer".into()),
        None => Err("the envelope has no `type`".into()),
    }
}

pub mod auth;
pub mod deauthorization;
pub mod install;
pub mod open_api;
pub mod refresh;
pub mod send;

#[cfg(test)]
mod tests;
