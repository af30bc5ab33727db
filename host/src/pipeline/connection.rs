//! Connections: one account of a platform (a shop, a site, a seller, a
//! sender) linked to one workspace and brand, with the secret that signs its
//! webhooks and the provider's settings. Secrets go through the vault on the
//! way in and out; nothing else in the host sees them in the clear. What an
//! account, a secret or the settings must look like is the provider's to say
//! ([`Provider::check_connection`]): this module names no platform.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::pipeline::provider::{Proposed, Provider};
use crate::store::{self, ConnectionRow, Store, StoreError};
use crate::support::constant_time;
use crate::support::vault::{Binding, Secret, Vault, VaultError};

pub use crate::store::secrets::{PREVIOUS_WEBHOOK_SECRET, WEBHOOK_SECRET};

/// How long a secret replaced by `connections add` keeps verifying
/// (`connections.previous_secret_window`): long enough for a platform's
/// retries of webhooks signed before the rotation, short enough that a
/// leaked or retired secret does not speak for the connection for good.
pub const DEFAULT_PREVIOUS_SECRET_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How long the intake may go on verifying with secrets it read before they
/// changed (its connection cache). Until this long after a rotation, a
/// webhook may have been verified with what was current before it.
pub const SECRETS_CACHED_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The provider refused the account, the settings or the secret; the
    /// message names the field and never holds the secret.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} must be a UUID")]
    InvalidId(&'static str),
    #[error("the webhook secret is empty")]
    EmptySecret,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub connection_id: String,
    pub provider: String,
    pub secure_path_identifier: String,
    pub webhook_path: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// False when the connection existed and its secret was rotated.
    pub created: bool,
}

/// Where a connection's webhooks are sent, below the public base URL.
pub fn webhook_path(provider: &str, identifier: &str) -> String {
    format!("/integrations/{provider}/webhooks/{identifier}")
}

/// A connection made by hand: an account, the secret its webhooks are signed
/// with and the provider's settings, as its creator states them.
#[derive(Debug, Clone, Copy)]
pub struct NewConnection<'a> {
    pub account: &'a str,
    pub workspace: &'a str,
    pub brand: &'a str,
    pub secret: &'a Secret,
    /// The provider's settings; `Value::Null` when it takes none.
    pub settings: &'a Value,
    /// How long a secret this replaces keeps verifying.
    pub previous_window: Duration,
}

fn canonical_uuid(what: &'static str, value: &str) -> Result<String, ConnectionError> {
    Uuid::parse_str(value.trim())
        .map(|u| u.to_string())
        .map_err(|_| ConnectionError::InvalidId(what))
}

/// Creates the connection, or, when this account and brand are already
/// connected, rotates its secret (the old one keeps verifying for
/// `previous_window`, for webhooks already in flight), takes the new
/// settings and keeps its URL.
pub async fn add(
    store: &Store,
    vault: &Vault,
    provider: &dyn Provider,
    new: &NewConnection<'_>,
) -> Result<Created, ConnectionError> {
    let workspace = canonical_uuid("workspace", new.workspace)?;
    let brand = canonical_uuid("brand", new.brand)?;
    if new.secret.expose().is_empty() {
        return Err(ConnectionError::EmptySecret);
    }
    let checked = provider
        .check_connection(&Proposed {
            account: new.account,
            settings: new.settings,
            secret: new.secret.expose(),
        })
        .map_err(ConnectionError::Invalid)?;
    let settings = checked.settings.as_ref().map(Value::to_string);
    if let Some(existing) = store
        .connection_for_shop(provider.id(), &checked.account, &brand)
        .await?
    {
        let current = vault.decrypt(
            &existing.webhook_secret,
            binding(&existing.id, WEBHOOK_SECRET),
        )?;
        // The same secret again is no rotation: it would otherwise push out
        // a previous secret still inside its window.
        if !constant_time::eq(current.expose(), new.secret.expose()) {
            let ciphertext =
                vault.encrypt(new.secret.expose(), binding(&existing.id, WEBHOOK_SECRET));
            // The current ciphertext becomes `previous`: re-bind it to that purpose.
            let previous = vault.encrypt(
                current.expose(),
                binding(&existing.id, PREVIOUS_WEBHOOK_SECRET),
            );
            let expires_at = store::now_ms()
                .saturating_add(i64::try_from(new.previous_window.as_millis()).unwrap_or(i64::MAX));
            store
                .rotate_webhook_secret(&existing.id, &ciphertext, &previous, expires_at)
                .await?;
        }
        if existing.settings != settings {
            store
                .set_connection_settings(&existing.id, settings.as_deref())
                .await?;
        }
        return Ok(created(&existing, false));
    }
    let id = Uuid::now_v7().to_string();
    let row = ConnectionRow {
        webhook_secret: vault.encrypt(new.secret.expose(), binding(&id, WEBHOOK_SECRET)),
        id,
        provider: provider.id().into(),
        account: checked.account,
        workspace_id: workspace,
        brand_id: brand,
        secure_path_identifier: store::new_path_identifier(),
        previous_webhook_secret: None,
        previous_webhook_secret_expires_at: None,
        status: "active".into(),
        created_at: store::now_ms(),
        settings,
    };
    store.insert_connection(&row).await?;
    Ok(created(&row, true))
}

fn created(row: &ConnectionRow, created: bool) -> Created {
    Created {
        connection_id: row.id.clone(),
        provider: row.provider.clone(),
        webhook_path: webhook_path(&row.provider, &row.secure_path_identifier),
        secure_path_identifier: row.secure_path_identifier.clone(),
        account: row.account.clone(),
        workspace_id: row.workspace_id.clone(),
        brand_id: row.brand_id.clone(),
        created,
    }
}

/// A connection's settings as the provider reads them: `Value::Null` when
/// it has none (or, never expected, when they no longer parse: the
/// provider then refuses what it cannot check).
pub fn settings(row: &ConnectionRow) -> Value {
    row.settings
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

pub fn binding<'a>(row_id: &'a str, purpose: &'a str) -> Binding<'a> {
    Binding { purpose, row_id }
}

/// The secrets a webhook for this connection may be signed with at `now`:
/// the current one, and the previous one until its window ends.
pub struct WebhookSecrets {
    pub secrets: Vec<Secret>,
    /// When this set stops being the right one (the previous secret in it
    /// expires), epoch ms; None: not by itself.
    pub valid_until: Option<i64>,
}

pub fn webhook_secrets_at(
    vault: &Vault,
    row: &ConnectionRow,
    now: i64,
) -> Result<WebhookSecrets, VaultError> {
    let mut secrets = vec![vault.decrypt(&row.webhook_secret, binding(&row.id, WEBHOOK_SECRET))?];
    let mut valid_until = None;
    // A previous secret without an expiry fails closed: whatever kept it
    // forgot to say for how long.
    if let (Some(prev), Some(until)) = (
        &row.previous_webhook_secret,
        row.previous_webhook_secret_expires_at,
    ) && now < until
    {
        secrets.push(vault.decrypt(prev, binding(&row.id, PREVIOUS_WEBHOOK_SECRET))?);
        valid_until = Some(until);
    }
    Ok(WebhookSecrets {
        secrets,
        valid_until,
    })
}

/// The secrets a webhook for this connection may be signed with now, the
/// current one first.
pub fn webhook_secrets(vault: &Vault, row: &ConnectionRow) -> Result<Vec<Secret>, VaultError> {
    Ok(webhook_secrets_at(vault, row, store::now_ms())?.secrets)
}

// ---- connections installed by OAuth (issue 4) --------------------------------

pub use crate::store::secrets::{ACCESS_TOKEN, REFRESH_TOKEN};

/// The tokens of an OAuth install, in the clear, with absolute expiries
/// (epoch ms; None: never expires).
#[derive(Debug, Clone)]
pub struct OAuthTokens {
    pub access_token: Secret,
    pub access_token_expires_at: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub refresh_token_expires_at: Option<i64>,
    pub scopes: String,
}

/// Which account is installed for whom.
#[derive(Debug, Clone, Copy)]
pub struct InstallTarget<'a> {
    /// The account the platform's install named (a shop domain, a seller).
    pub account: &'a str,
    pub workspace: &'a str,
    pub brand: &'a str,
    /// The user who installed it (the JWT's `sub`).
    pub installed_by: &'a str,
}

#[derive(Debug, Clone)]
pub enum OAuthInstall {
    Installed(Created),
    /// This account and brand are connected under another workspace.
    WorkspaceConflict,
}

/// Creates the connection of an OAuth install, or updates the one this
/// account and brand already have: new tokens, a fresh `secure_path_identifier`,
/// status `active`. Webhooks of an OAuth app are signed with the app's client
/// secret, which becomes the webhook secret. Every secret is encrypted bound
/// to the row.
///
/// No previous secret is kept: whatever signed webhooks before (a secret the
/// tenant chose, or an older client secret) signed them for the old webhook
/// path, which stops resolving here; kept, it would only let its holder speak
/// at the new path, as the app.
pub async fn install_oauth(
    store: &Store,
    vault: &Vault,
    provider: &dyn Provider,
    target: &InstallTarget<'_>,
    client_secret: &Secret,
    tokens: &OAuthTokens,
    settings: &Value,
) -> Result<OAuthInstall, ConnectionError> {
    let workspace = canonical_uuid("workspace", target.workspace)?;
    let brand = canonical_uuid("brand", target.brand)?;
    if client_secret.expose().is_empty() {
        return Err(ConnectionError::EmptySecret);
    }
    let checked = provider
        .check_connection(&Proposed {
            account: target.account,
            settings,
            secret: client_secret.expose(),
        })
        .map_err(ConnectionError::Invalid)?;
    let shop = checked.account;
    let settings = checked.settings.as_ref().map(Value::to_string);
    // Three tries: a concurrent install of the same shop and brand may insert
    // first, and our ciphertexts are bound to the id we chose.
    for _ in 0..3 {
        let existing = store
            .connection_for_shop(provider.id(), &shop, &brand)
            .await?;
        if let Some(e) = &existing
            && e.workspace_id != workspace
        {
            return Ok(OAuthInstall::WorkspaceConflict);
        }
        let (id, created_at, created) = match &existing {
            Some(e) => (e.id.clone(), e.created_at, false),
            None => (Uuid::now_v7().to_string(), store::now_ms(), true),
        };
        let row = ConnectionRow {
            webhook_secret: vault.encrypt(client_secret.expose(), binding(&id, WEBHOOK_SECRET)),
            previous_webhook_secret: None,
            previous_webhook_secret_expires_at: None,
            provider: provider.id().into(),
            account: shop.clone(),
            workspace_id: workspace.clone(),
            brand_id: brand.clone(),
            secure_path_identifier: store::new_path_identifier(),
            status: "active".into(),
            created_at,
            settings: settings.clone(),
            id,
        };
        let write = store::oauth::OAuthConnectionWrite {
            access_token: vault
                .encrypt(tokens.access_token.expose(), binding(&row.id, ACCESS_TOKEN)),
            access_token_expires_at: tokens.access_token_expires_at,
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|t| vault.encrypt(t.expose(), binding(&row.id, REFRESH_TOKEN))),
            refresh_token_expires_at: tokens.refresh_token_expires_at,
            scopes: tokens.scopes.clone(),
            installed_by: target.installed_by.to_string(),
            row,
        };
        if store.upsert_oauth_connection(&write).await? {
            return Ok(OAuthInstall::Installed(self::created(&write.row, created)));
        }
    }
    Err(ConnectionError::Store(StoreError::Corrupt(
        "the connection kept changing during the install".into(),
    )))
}

/// Keeps the API credentials a registration was made with (a JSON object,
/// such as a site's REST keys) as the connection's API credential, in the
/// access-token column: encrypted, bound to the row and that column's
/// purpose, so key rotation re-encrypts it with the tokens. What re-registers
/// a connection's webhooks later reads it back with [`api_credentials`].
pub async fn keep_api_credentials(
    store: &Store,
    vault: &Vault,
    id: &str,
    credentials: &Value,
) -> Result<(), ConnectionError> {
    let text = secrecy::zeroize::Zeroizing::new(credentials.to_string());
    let ciphertext = vault.encrypt(text.as_bytes(), binding(id, ACCESS_TOKEN));
    store.set_api_credentials(id, &ciphertext).await?;
    Ok(())
}

/// The API credentials kept by [`keep_api_credentials`]; None when the
/// connection holds none, or holds a token that is not such an object (an
/// OAuth access token).
pub async fn api_credentials(
    store: &Store,
    vault: &Vault,
    id: &str,
) -> Result<Option<Value>, ConnectionError> {
    Ok(access_token(store, vault, id)
        .await?
        .and_then(|t| serde_json::from_slice::<Value>(t.expose()).ok())
        .filter(Value::is_object))
}

/// The access token of a connection, in the clear; None when it has none
/// (a manual connection, or an uninstalled one).
pub async fn access_token(
    store: &Store,
    vault: &Vault,
    id: &str,
) -> Result<Option<Secret>, ConnectionError> {
    let Some(row) = store.connection_tokens(id).await? else {
        return Ok(None);
    };
    match &row.access_token {
        Some(ct) => Ok(Some(vault.decrypt(ct, binding(&row.id, ACCESS_TOKEN))?)),
        None => Ok(None),
    }
}
