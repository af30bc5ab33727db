//! Wix: the whole body is a compact JWS (RS256) signed by Wix, checked
//! against the app's PEM public key (Dev Center → Webhooks → Get Public
//! Key), which the connection holds among its secrets. No header is signed
//! and there is no JWKS; `exp` bounds how long a captured body replays.
//!
//! The claims nest JSON in strings three deep (`data` → the envelope
//! `{eventType, instanceId, data, identity?, webhookId?}` → the event, often
//! pretty-printed). [`Provider::describe`] decodes every level into one plain
//! object and stores that as the body, so transforms read JSON, not a JWT.
//!
//! RSA verification is the costly check of all providers (tens of
//! microseconds), and reading the PEM adds to it: the parsed key is cached,
//! keyed by a digest of the PEM, so a rotated key simply takes a new entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::pipeline::provider::{
    AfterPublish, Checked, Described, Incoming, Keys, Proposed, Provider, Rejected, no_settings,
};
use crate::providers::lifecycle::Disconnect;
use crate::providers::verify::{INVALID_ENVELOPE, invalid_envelope, sha256_hex};
use crate::store::{InboxRow, Outcome, Store};

/// Wix's clock and ours may differ a little; a minute either way.
const LEEWAY_SECS: i64 = 60;

/// More keys than any deployment has apps: past it the cache starts over
/// rather than grow on whatever PEMs connections are given.
const CACHE_LIMIT: usize = 256;

/// The legacy event sent when a site removes the app.
const APP_REMOVED: &str = "AppRemoved";

/// What an app removal does: the instance's connection is disconnected
/// once its event is published. A connection made by hand holds a key its
/// tenant gave, so the removal reaches that connection alone
/// (`providers::lifecycle::scope`).
const REMOVAL: Disconnect = Disconnect {
    provider: ID,
    topic: APP_REMOVED,
};

/// The `provider` column and URL segment.
pub const ID: &str = "wix";

#[derive(Default)]
pub struct Wix {
    keys: Mutex<HashMap<[u8; 32], Arc<DecodingKey>>>,
}

impl Wix {
    pub fn new() -> Self {
        Self::default()
    }

    /// The parsed key for a PEM, from the cache when it has been seen;
    /// `None` when the PEM is no RSA public key.
    fn key(&self, pem: &[u8]) -> Option<Arc<DecodingKey>> {
        let digest: [u8; 32] = Sha256::digest(pem).into();
        let mut cache = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cache.get(&digest) {
            return Some(key.clone());
        }
        let key = Arc::new(DecodingKey::from_rsa_pem(pem).ok()?);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(digest, key.clone());
        Some(key)
    }
}

fn token(body: &[u8]) -> Result<&str, Rejected> {
    std::str::from_utf8(body.trim_ascii()).map_err(|_| Rejected::Signature)
}

impl Provider for Wix {
    fn id(&self) -> &'static str {
        ID
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        let token = token(req.body)?;
        let mut validation = Validation::new(Algorithm::RS256);
        // `exp` is checked below against the request's own clock, so the
        // check is pure and testable; nothing else is required.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        // Public keys are not secret, so stopping at the first that verifies
        // reveals nothing; every key is tried otherwise (rotation).
        let claims = keys
            .secrets
            .iter()
            .filter_map(|pem| self.key(pem))
            .find_map(|key| jsonwebtoken::decode::<Value>(token, &key, &validation).ok())
            .ok_or(Rejected::Signature)?
            .claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| Rejected::Malformed("the token has no `exp`".into()))?;
        if req.now > exp.saturating_add(LEEWAY_SECS) {
            return Err(Rejected::Stale);
        }
        if let Some(iat) = claims.get("iat").and_then(Value::as_i64)
            && iat > req.now.saturating_add(LEEWAY_SECS)
        {
            return Err(Rejected::Stale);
        }
        Ok(())
    }

    /// The account is the app's instance on the site (the envelope's
    /// `instanceId`); the secret is the app's public key, in PEM.
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        let instance = uuid::Uuid::parse_str(proposed.account.trim()).map_err(|_| {
            format!(
                "{:?} is not a Wix app instance id (a UUID)",
                proposed.account
            )
        })?;
        if !no_settings(proposed.settings) {
            return Err("a Wix connection takes no settings".into());
        }
        if self.key(proposed.secret).is_none() {
            return Err(
                "the key is not an RSA public key in PEM (Dev Center → Webhooks → Public Key)"
                    .into(),
            );
        }
        Ok(Checked {
            account: instance.to_string(),
            settings: None,
        })
    }

    fn describe(&self, req: &Incoming<'_>, _keys: &Keys<'_>) -> Result<Described, Rejected> {
        let derived = || sha256_hex(&[req.body.trim_ascii()]);
        let envelope = match token(req.body)
            .map_err(|_| "the body is not UTF-8".to_owned())
            .and_then(decode)
        {
            Ok(envelope) => envelope,
            Err(reason) => return Ok(invalid_envelope(derived(), reason)),
        };
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let event = envelope.get("data");
        let event_id = text(event.and_then(|d| d.get("id")));
        Ok(Described {
            topic: text(envelope.get("eventType")).unwrap_or_else(|| INVALID_ENVELOPE.to_owned()),
            // The event id is stable across Wix's retries; legacy events
            // have none, and `webhookId` or the token's digest stands in.
            delivery_id: event_id
                .clone()
                .or_else(|| text(envelope.get("webhookId")))
                .unwrap_or_else(derived),
            account: text(envelope.get("instanceId")),
            api_version: None,
            occurred_at: text(event.and_then(|d| d.get("eventTime"))),
            event_id,
            headers: Vec::new(),
            body: Some(serde_json::to_vec(&envelope).expect("a JSON map serialises")),
        })
    }

    fn lifecycle_topic(&self, topic: &str) -> bool {
        topic == APP_REMOVED
    }

    fn after_publish<'a>(
        &'a self,
        store: &'a Store,
        finished: &'a [(&'a InboxRow, Outcome)],
    ) -> AfterPublish<'a> {
        Box::pin(REMOVAL.after_finish(store, finished))
    }

    fn recover<'a>(&'a self, store: &'a Store) -> AfterPublish<'a> {
        Box::pin(async move {
            if let Err(e) = REMOVAL.apply_due(store).await {
                tracing::warn!(error = %e, "app removals not applied at start");
            }
        })
    }

    fn default_transform(&self) -> &'static str {
        "builtin:wix-default"
    }
}

/// The envelope of a compact JWS, every JSON-in-a-string level decoded:
/// `{eventType, instanceId, data: {…}, identity: {…}, webhookId}`.
/// Does not verify: [`Provider::verify`] has.
pub fn decode(token: &str) -> Result<Map<String, Value>, String> {
    let mut segments = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err("the body is not a compact JWS".into());
    };
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the token's claims are not JSON")?;
    let mut envelope = match claims.get("data") {
        Some(data) => unnest(data.clone()),
        None => return Err("the claims have no `data`".into()),
    };
    let Value::Object(envelope) = &mut envelope else {
        return Err("the claims' `data` is not a JSON object".into());
    };
    for field in ["data", "identity"] {
        if let Some(value) = envelope.get_mut(field) {
            *value = unnest(value.take());
        }
    }
    Ok(std::mem::take(envelope))
}

/// A string holding a JSON object or array becomes that value; anything
/// else is kept as it is.
fn unnest(value: Value) -> Value {
    match value {
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => inner,
            _ => Value::String(s),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests;
