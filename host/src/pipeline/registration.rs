//! Webhooks the gateway registers at a platform itself, with API credentials
//! given for the call: the hook a provider implements ([`Registrar`], reached
//! through [`Provider::registrar`](crate::pipeline::provider::Provider::registrar)),
//! and what its callers (the admin API's `POST /connections`,
//! `connections add`) share around it. A platform without the hook has its
//! webhooks set up in its own dashboard, by hand. This module names no
//! platform.
//!
//! The callers' order: the connection is saved first (its secret and
//! address must exist before the platform is told them), then registered.
//! A failed registration leaves the connection saved: asking again reuses
//! its secret ([`secret_for`]) and a registrar is idempotent, so a retry
//! picks up where the failure stopped.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::pipeline::connection::{self, ConnectionError, WEBHOOK_SECRET};
use crate::store::{ConnectionRow, Store};
use crate::support::vault::{Secret, Vault, VaultError};

/// What a registrar is asked to set up for one connection.
#[derive(Clone, Copy)]
pub struct Registration<'a> {
    /// The account as the connection stores it (a site URL, a shop).
    pub account: &'a str,
    /// The connection's settings, `Value::Null` when it has none.
    pub settings: &'a Value,
    /// The secret the platform is to sign the webhooks with: the
    /// connection's current one.
    pub secret: &'a Secret,
    /// Where the platform is to deliver: the connection's webhook path on
    /// the gateway's public base URL.
    pub address: &'a str,
    /// The API credentials given for this call (a JSON object whose shape
    /// is the provider's). Never logged, never part of an error.
    pub credentials: &'a Value,
    /// The provider's own section of the gateway's configuration, as JSON
    /// (topics to register, switches for tests); `Value::Null` when the
    /// gateway has none for it. See [`ProviderOptions`].
    pub options: &'a Value,
}

/// One webhook as the platform holds it after a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub topic: String,
    /// The platform's id of the webhook.
    pub id: String,
    /// As the platform reports it (`active`).
    pub status: String,
    /// False: it was there already (same topic and address) and was
    /// updated, its secret set anew.
    pub created: bool,
}

/// Why a registration did not complete. Either way, what was registered
/// before the failure stays registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The platform refused the credentials or the request (wrong or
    /// read-only keys, a topic it does not know, no API at the account's
    /// address): retrying the same will fail the same way.
    #[error("{0}")]
    Refused(String),
    /// The platform could not be reached or failed (a timeout, a 5xx, an
    /// answer not understood): worth retrying later.
    #[error("{0}")]
    Unavailable(String),
}

/// The future [`Registrar::register`] returns.
pub type Registering<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Registered>, RegistrationError>> + Send + 'a>>;

/// A platform whose webhooks the gateway can register with API credentials.
pub trait Registrar: Send + Sync {
    /// Whether `credentials` have the shape this platform needs and
    /// `secret` can be handed to it, before the connection is saved. The
    /// error names the field, never a value.
    fn check(&self, credentials: &Value, secret: &Secret) -> Result<(), String>;

    /// Makes the platform deliver every configured topic to
    /// `req.address`, signed with `req.secret`. Idempotent: a second run
    /// creates nothing new, and sets the secret anew on what exists.
    fn register<'a>(&'a self, req: Registration<'a>) -> Registering<'a>;
}

/// Each provider's own configuration section, as JSON, by provider id: what
/// a [`Registration`]'s `options` is. Built once by whoever reads the
/// configuration (`config.rs`), so the callers need not know any section.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions(Arc<BTreeMap<String, Value>>);

static NO_OPTIONS: Value = Value::Null;

impl ProviderOptions {
    pub fn new(sections: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self(Arc::new(sections.into_iter().collect()))
    }

    /// The section of provider `id`; `Value::Null` when there is none.
    pub fn get(&self, id: &str) -> &Value {
        self.0.get(id).unwrap_or(&NO_OPTIONS)
    }
}

/// A webhook secret the gateway chooses: 32 random bytes, hex. Hex because
/// some platforms store secrets HTML-escaped and sign with what they
/// unescape: a secret with none of `&<>"'` survives that round trip.
pub fn generate_secret() -> Secret {
    let mut bytes = secrecy::zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(bytes.as_mut());
    Secret::from(hex::encode(bytes.as_ref()))
}

/// The secret of a connection whose webhooks the gateway registers and whose
/// creator gave none: the connection's current one when it exists (so that
/// asking again changes nothing, and a retry after a failure signs as the
/// first attempt told the platform), else a new one.
pub fn secret_for(vault: &Vault, existing: Option<&ConnectionRow>) -> Result<Secret, VaultError> {
    match existing {
        Some(row) => vault.decrypt(
            &row.webhook_secret,
            connection::binding(&row.id, WEBHOOK_SECRET),
        ),
        None => Ok(generate_secret()),
    }
}

/// What [`register_connection`] may fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// Registered, but the credentials could not be kept.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

/// Registers the saved connection `connection_id` as `req` says and, once
/// the platform took it, keeps `req.credentials` as the connection's API
/// credential (for re-registering later): the keys that worked.
pub async fn register_connection(
    store: &Store,
    vault: &Vault,
    registrar: &dyn Registrar,
    connection_id: &str,
    req: Registration<'_>,
) -> Result<Vec<Registered>, RegisterError> {
    let registered = match registrar.register(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(connection = %connection_id, error = %e,
                "webhook registration failed; the connection is kept");
            return Err(e.into());
        }
    };
    connection::keep_api_credentials(store, vault, connection_id, req.credentials).await?;
    tracing::info!(connection = %connection_id, webhooks = registered.len(),
        "webhooks registered at the platform");
    Ok(registered)
}

/// A webhook path on the public base URL.
pub fn address(public_base_url: &str, webhook_path: &str) -> String {
    format!("{}{webhook_path}", public_base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_hex_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn options_of_an_unknown_provider_are_null() {
        let options = ProviderOptions::new([("a".to_string(), serde_json::json!({"x": 1}))]);
        assert_eq!(options.get("a")["x"], 1);
        assert!(options.get("b").is_null());
    }

    #[test]
    fn the_address_joins_base_and_path() {
        assert_eq!(
            address("https://gw.example/", "/integrations/p/webhooks/x"),
            "https://gw.example/integrations/p/webhooks/x"
        );
    }
}
