//! Who may connect a shop, and how: the Shopify OAuth install and the webhook
//! subscriptions made after it.
//!
//! - `GET /integrations/shopify/auth/initiate?workspace_id&brand_id&shop`:
//!   the caller proves who they are with a JWT from the user service
//!   (`Authorization: Bearer`, HS256 with a shared secret or RS256 with a
//!   public key, `aud` checked). The user is `sub`; the workspace must be
//!   granted by the `workspaces` claim (an array of ids) or the
//!   `workspace_id` claim (one id); the brand, by the `brands` / `brand_ids`
//!   / `brand_id` claims when the token has any, and in any case it must not
//!   belong to another workspace (a brand belongs to the workspace of its
//!   oldest connection). A 256-bit single-use state bound to (workspace,
//!   brand, user, shop) is stored as its sha256 for ten minutes, the same
//!   state goes into a signed cookie scoped to the callback, and the browser
//!   is sent to Shopify's authorize page.
//! - `GET /integrations/shopify/auth/callback`: Shopify's signed query is
//!   verified (HMAC, timestamp window, shop), the state must be the one in
//!   the browser's state cookie (else the state is spent and the callback
//!   refused: an install finishes only in the browser that started it), the
//!   code is exchanged for tokens, and the connection is created or updated
//!   with the tokens encrypted by the vault and a fresh webhook URL.
//! - Afterwards the registrar subscribes the connection to the configured
//!   topics at Shopify, listing first so that a reconnect duplicates nothing,
//!   and records how each (connection, topic) stands.
//!
//! No state, code, token or secret is ever logged or put in an error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use super::ID as SHOPIFY;
use crate::error::ApiError;
use crate::pipeline::connection::{self, OAuthInstall, OAuthTokens};
use crate::providers::install::{
    InstallGuard, bearer, by_connection, callback_response, check_brand_owner, not_configured,
    query_params, redirect, run_passes, started_response,
};
use crate::providers::shopify::api::{ShopifyApi, ShopifyError, Webhook};
use crate::providers::shopify::headers as webhook;
use crate::providers::shopify::refresh::{RefreshConfig, Refresher, TokenError};
use crate::store::oauth::{RegistrationOutcome, WebhookRegistrationRow};
use crate::store::{Store, StoreError, now_ms};
use crate::support::vault::{Secret, Vault};

// What every platform's install shares, under the names Shopify's callers
// have always used.
pub use crate::providers::install::{
    JwtConfig, OAuthError, RegistrationConfig, STATE_COOKIE, STATE_TTL, Started, User, parse_query,
};

pub const INITIATE_PATH: &str = "/integrations/shopify/auth/initiate";
pub const CALLBACK_PATH: &str = "/integrations/shopify/auth/callback";

// Defaults shared with the shop-details endpoint; they live with the API
// client so that neither imports the other for them.
pub use super::api::{DEFAULT_ADMIN_BASE_URL, DEFAULT_API_VERSION, DEFAULT_SCOPES, DEFAULT_TOPICS};

type HmacSha256 = Hmac<Sha256>;

// ---- configuration -----------------------------------------------------------

/// The Shopify app this gateway installs as.
#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    pub client_id: String,
    /// The app's client secret: signs the callback query and the webhooks.
    pub client_secret: Secret,
    /// Comma-separated access scopes requested at install.
    pub scopes: String,
    /// This gateway's callback URL as registered in the app
    /// (`https://…/integrations/shopify/auth/callback`).
    pub redirect_uri: String,
    /// The gateway's public base URL; webhook addresses are this plus the
    /// connection's webhook path.
    pub public_base_url: String,
    /// Where the Admin API of a shop is: `{shop}` is replaced by the shop's
    /// domain. `https://{shop}` in production; a local fake in tests.
    pub admin_base_url: String,
    /// Where the browser is sent to authorize: `{shop}` replaced, then
    /// `/admin/oauth/authorize` appended. `https://{shop}`.
    pub authorize_base_url: String,
    pub api_version: String,
    /// Ask for an expiring offline token (`expiring: 1`) with a refresh token.
    pub expiring_tokens: bool,
    /// When set, a successful callback redirects here with
    /// `?status=connected&connection_id=…` instead of answering JSON.
    pub frontend_redirect: Option<String>,
    /// How far the callback's `timestamp` may be from now, either way.
    pub timestamp_window: Duration,
    pub state_ttl: Duration,
    pub webhook_topics: Vec<String>,
    /// Timeout of each call to Shopify.
    pub http_timeout: Duration,
    pub registration: RegistrationConfig,
    /// When expiring tokens are refreshed (see `refresh`).
    pub refresh: RefreshConfig,
    pub jwt: JwtConfig,
}

impl ShopifyConfig {
    /// The defaults for everything but what only the operator knows.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: Secret,
        redirect_uri: impl Into<String>,
        public_base_url: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            scopes: DEFAULT_SCOPES.into(),
            redirect_uri: redirect_uri.into(),
            public_base_url: public_base_url.into(),
            admin_base_url: DEFAULT_ADMIN_BASE_URL.into(),
            authorize_base_url: DEFAULT_ADMIN_BASE_URL.into(),
            api_version: DEFAULT_API_VERSION.into(),
            expiring_tokens: true,
            frontend_redirect: None,
            timestamp_window: Duration::from_secs(5 * 60),
            state_ttl: STATE_TTL,
            webhook_topics: DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect(),
            http_timeout: Duration::from_secs(15),
            registration: RegistrationConfig::default(),
            refresh: RefreshConfig::default(),
            jwt: JwtConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthConfigError {
    #[error("shopify oauth: {0}")]
    Invalid(String),
}

// ---- the query HMAC ------------------------------------------------------------

fn escape_value(s: &str) -> String {
    s.replace('%', "%25").replace('&', "%26")
}

fn escape_key(s: &str) -> String {
    escape_value(s).replace('=', "%3D")
}

/// Shopify's canonical form of a signed query: `hmac` and `signature` left
/// out; `%` → `%25` and `&` → `%26` in keys and values, `=` → `%3D` in keys;
/// array parameters (`ids[]=2&ids[]=1`) become `ids=["2", "1"]`; the
/// `key=value` pairs sorted and joined with `&`.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut plain: BTreeMap<&str, &str> = BTreeMap::new();
    let mut arrays: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        if k == "hmac" || k == "signature" {
            continue;
        }
        match k.strip_suffix("[]") {
            Some(base) => arrays.entry(base).or_default().push(v),
            None => {
                plain.insert(k, v);
            }
        }
    }
    let mut encoded: Vec<String> = plain
        .into_iter()
        .map(|(k, v)| format!("{}={}", escape_key(k), escape_value(v)))
        .collect();
    for (k, vs) in arrays {
        let items: Vec<String> = vs
            .iter()
            .map(|v| serde_json::to_string(v).expect("a string serialises"))
            .collect();
        let value = format!("[{}]", items.join(", "));
        encoded.push(format!("{}={}", escape_key(k), escape_value(&value)));
    }
    encoded.sort();
    encoded.join("&")
}

/// Lowercase hex HMAC-SHA256 of `message`.
pub fn hmac_hex(secret: &[u8], message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The `hmac` Shopify would put on these parameters.
pub fn sign_query(secret: &[u8], pairs: &[(String, String)]) -> String {
    hmac_hex(secret, &canonical_query(pairs))
}

/// True when the query's `hmac` matches its other parameters under `secret`,
/// compared in constant time.
pub fn verify_query(secret: &[u8], pairs: &[(String, String)]) -> bool {
    let Some((_, given)) = pairs.iter().rev().find(|(k, _)| k == "hmac") else {
        return false;
    };
    let Ok(given) = hex::decode(given.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(canonical_query(pairs).as_bytes());
    mac.verify_slice(&given).is_ok()
}

// ---- shops -------------------------------------------------------------------

/// Why `input` is refused as a shop.
fn not_a_shop(input: &str) -> String {
    format!("{input:?} is not a shop domain (expected NAME.myshopify.com)")
}

/// A shop as a user may give it: `NAME.myshopify.com`, with or without
/// `https://` and a trailing slash, or the admin URL
/// `admin.shopify.com/store/NAME` (→ `NAME.myshopify.com`). None when it is
/// not a valid shop by Shopify's rule.
pub fn normalize_shop(input: &str) -> Option<String> {
    let mut s = input.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest.to_string();
        }
    }
    let s = s.trim_end_matches('/');
    let shop = match s.strip_prefix("admin.shopify.com/store/") {
        Some(store) => format!("{}.myshopify.com", store.split('/').next().unwrap_or("")),
        None => s.to_string(),
    };
    webhook::is_shop_domain(&shop).then_some(shop)
}

// ---- the install flow ----------------------------------------------------------

/// The answer to a successful callback.
#[derive(Debug, Clone, Serialize)]
pub struct Connected {
    pub connection_id: String,
    pub shop_domain: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub status: &'static str,
    pub webhook_path: String,
}

/// The install flow and the registrar, with what they need.
pub struct OAuth {
    cfg: ShopifyConfig,
    api: ShopifyApi,
    guard: InstallGuard,
    store: Store,
    vault: Arc<Vault>,
    wake: Notify,
    refresher: Arc<Refresher>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

fn check_url(name: &str, value: &str) -> Result<(), OAuthConfigError> {
    let probe = value.replace("{shop}", "shop.myshopify.com");
    match reqwest::Url::parse(&probe) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(OAuthConfigError::Invalid(format!(
            "{name} {value:?} is not an http(s) URL"
        ))),
    }
}

impl OAuth {
    pub fn new(
        cfg: ShopifyConfig,
        store: Store,
        vault: Arc<Vault>,
    ) -> Result<Self, OAuthConfigError> {
        if cfg.client_id.trim().is_empty() {
            return Err(OAuthConfigError::Invalid("the client id is empty".into()));
        }
        if cfg.client_secret.expose().is_empty() {
            return Err(OAuthConfigError::Invalid(
                "the client secret is empty".into(),
            ));
        }
        check_url("redirect_uri", &cfg.redirect_uri)?;
        check_url("public_base_url", &cfg.public_base_url)?;
        check_url("admin_base_url", &cfg.admin_base_url)?;
        check_url("authorize_base_url", &cfg.authorize_base_url)?;
        if let Some(f) = &cfg.frontend_redirect {
            check_url("frontend_redirect", f)?;
        }
        let guard = InstallGuard::new(
            &cfg.jwt,
            &cfg.redirect_uri,
            &cfg.client_secret,
            cfg.state_ttl,
        )
        .map_err(OAuthConfigError::Invalid)?;
        let api = ShopifyApi::new(&cfg.admin_base_url, &cfg.api_version, cfg.http_timeout)
            .map_err(|e| OAuthConfigError::Invalid(e.to_string()))?;
        let refresher = Arc::new(super::refresh::refresher(
            store.clone(),
            vault.clone(),
            api.clone(),
            cfg.client_id.clone(),
            cfg.client_secret.clone(),
            cfg.refresh.clone(),
            cfg.http_timeout,
        ));
        Ok(Self {
            cfg,
            api,
            guard,
            store,
            vault,
            wake: Notify::new(),
            refresher,
        })
    }

    /// The token refresher of this app's connections (its job is started by
    /// `server::start`).
    pub fn refresher(&self) -> &Arc<Refresher> {
        &self.refresher
    }

    /// A usable access token of the connection, refreshed inline (under the
    /// connection's refresh lease) when it is about to expire. For every
    /// caller of the Admin API.
    pub async fn access_token_for(&self, connection_id: &str) -> Result<Secret, TokenError> {
        self.refresher.access_token_for(connection_id).await
    }

    pub fn config(&self) -> &ShopifyConfig {
        &self.cfg
    }

    /// The URL Shopify posts this connection's webhooks to.
    pub fn webhook_address(&self, webhook_path: &str) -> String {
        format!(
            "{}{webhook_path}",
            self.cfg.public_base_url.trim_end_matches('/')
        )
    }

    /// Checks the caller and the request, stores a fresh state and answers
    /// the URL of Shopify's authorize page with the state cookie for the
    /// browser.
    pub async fn initiate(
        &self,
        bearer: Option<&str>,
        params: &HashMap<String, String>,
    ) -> Result<Started, OAuthError> {
        let caller = self.guard.authenticate(&self.store, bearer, params).await?;
        let shop_raw = params
            .get("shop")
            .ok_or_else(|| OAuthError::InvalidRequest("shop is required".into()))?;
        let shop = normalize_shop(shop_raw)
            .ok_or_else(|| OAuthError::InvalidShop(not_a_shop(shop_raw)))?;
        let (state, set_cookie) = self
            .guard
            .begin(&self.store, SHOPIFY, &caller, &shop)
            .await?;

        let authorize = format!(
            "{}/admin/oauth/authorize",
            self.cfg
                .authorize_base_url
                .replace("{shop}", &shop)
                .trim_end_matches('/')
        );
        let url = reqwest::Url::parse_with_params(
            &authorize,
            [
                ("client_id", self.cfg.client_id.as_str()),
                ("scope", self.cfg.scopes.as_str()),
                ("redirect_uri", self.cfg.redirect_uri.as_str()),
                ("state", state.as_str()),
            ],
        )
        .map_err(|e| OAuthError::Internal(format!("building the authorize URL: {e}")))?;
        tracing::info!(%shop, workspace = %caller.workspace, brand = %caller.brand,
            user = %caller.user.id, "oauth install started");
        Ok(Started {
            authorize_url: url.into(),
            set_cookie,
        })
    }

    /// The `Set-Cookie` value that removes the state cookie (every callback
    /// answer carries it: the state is spent either way).
    pub fn clear_state_cookie(&self) -> String {
        self.guard.clear_cookie()
    }

    /// Verifies Shopify's callback (and that `browser`, the request's
    /// headers, carries the install's state cookie), exchanges the code and
    /// stores the connection; then wakes the registrar.
    pub async fn callback(
        &self,
        raw_query: &str,
        browser: &HeaderMap,
    ) -> Result<Connected, OAuthError> {
        let pairs = parse_query(raw_query);
        if !verify_query(self.cfg.client_secret.expose(), &pairs) {
            return Err(OAuthError::InvalidHmac);
        }
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let timestamp: i64 = get("timestamp")
            .and_then(|t| t.trim().parse().ok())
            .ok_or(OAuthError::StaleRequest)?;
        let now = now_ms();
        // abs_diff: a signed timestamp of i64::MIN must be refused, not
        // overflow.
        if (now / 1000).abs_diff(timestamp) > self.cfg.timestamp_window.as_secs() {
            return Err(OAuthError::StaleRequest);
        }
        let shop_raw = get("shop").unwrap_or("");
        let shop = shop_raw.trim().to_ascii_lowercase();
        if !webhook::is_shop_domain(&shop) {
            return Err(OAuthError::InvalidShop(not_a_shop(shop_raw)));
        }
        let code = get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?
            .to_string();
        let state = get("state")
            .filter(|s| !s.is_empty())
            .ok_or(OAuthError::InvalidState)?;
        // Shopify's signature was checked first, so nobody spends a state
        // without a callback Shopify signed.
        let bound = self
            .guard
            .finish(&self.store, SHOPIFY, state, browser)
            .await?;
        if bound.shop_domain != shop {
            return Err(OAuthError::ShopMismatch);
        }
        // Another workspace may have connected the brand since initiate.
        check_brand_owner(&self.store, &bound.workspace_id, &bound.brand_id).await?;

        let tokens = self
            .api
            .exchange_code(
                &shop,
                &self.cfg.client_id,
                &self.cfg.client_secret,
                &code,
                self.cfg.expiring_tokens,
            )
            .await
            .map_err(|e| {
                tracing::warn!(%shop, error = %e, "oauth code exchange failed");
                OAuthError::ExchangeFailed(match e.status() {
                    Some(s) => format!("shopify answered {s}"),
                    None => e.to_string(),
                })
            })?;
        let received = now_ms();
        let expiry = |secs: Option<i64>| secs.map(|s| received + s.saturating_mul(1000));
        let tokens = OAuthTokens {
            access_token_expires_at: expiry(tokens.expires_in),
            refresh_token_expires_at: expiry(tokens.refresh_token_expires_in),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            scopes: tokens.scope,
        };
        let created = match connection::install_oauth(
            &self.store,
            &self.vault,
            &super::Shopify,
            &connection::InstallTarget {
                account: &shop,
                workspace: &bound.workspace_id,
                brand: &bound.brand_id,
                installed_by: &bound.user_id,
            },
            &self.cfg.client_secret,
            &tokens,
            &serde_json::Value::Null,
        )
        .await
        {
            Ok(OAuthInstall::Installed(c)) => c,
            Ok(OAuthInstall::WorkspaceConflict) => return Err(OAuthError::WorkspaceConflict),
            Err(connection::ConnectionError::Store(e)) => return Err(OAuthError::Store(e)),
            Err(e) => return Err(OAuthError::Internal(e.to_string())),
        };
        self.store
            .reset_webhook_registrations(
                &created.connection_id,
                &self.cfg.webhook_topics,
                &self.webhook_address(&created.webhook_path),
            )
            .await?;
        self.wake.notify_one();
        tracing::info!(
            connection = %created.connection_id,
            %shop,
            new = created.created,
            "oauth install completed"
        );
        Ok(Connected {
            connection_id: created.connection_id,
            shop_domain: created.account,
            workspace_id: created.workspace_id,
            brand_id: created.brand_id,
            status: "connected",
            webhook_path: created.webhook_path,
        })
    }

    // ---- webhook registration ------------------------------------------------

    /// Wakes the registrar now rather than at its next poll.
    pub fn wake_registrar(&self) {
        self.wake.notify_one();
    }

    /// Runs the registrar until `shutdown` turns true.
    pub async fn run_registrar(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let poll = self.cfg.registration.poll_interval;
        run_passes(&self.wake, poll, shutdown, || async {
            match self.register_due().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(topics = n, "webhook registration pass"),
                Err(e) => tracing::warn!(error = %e, "webhook registration pass failed"),
            }
        })
        .await
    }

    /// One pass: every due registration, grouped by connection. Answers how
    /// many topics it worked on.
    pub async fn register_due(&self) -> Result<usize, StoreError> {
        let due = self
            .store
            .due_webhook_registrations(SHOPIFY, now_ms(), 1000)
            .await?;
        let count = due.len();
        for (connection_id, rows) in by_connection(due) {
            self.register_connection(&connection_id, rows).await?;
        }
        Ok(count)
    }

    fn retry_at(&self, attempts_so_far: i64) -> i64 {
        self.cfg.registration.retry_at(attempts_so_far)
    }

    async fn fail_all(
        &self,
        rows: &[WebhookRegistrationRow],
        tries: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        for row in rows {
            let outcome = RegistrationOutcome::Failed {
                error: error.to_string(),
                retry_at: self.retry_at(row.attempts + tries),
            };
            self.store
                .record_webhook_registration(
                    &row.connection_id,
                    &row.topic,
                    &row.address,
                    tries,
                    &outcome,
                )
                .await?;
        }
        Ok(())
    }

    async fn register_connection(
        &self,
        connection_id: &str,
        rows: Vec<WebhookRegistrationRow>,
    ) -> Result<(), StoreError> {
        let Some(conn) = self.store.connection_tokens(connection_id).await? else {
            return Ok(());
        };
        if conn.status != "active" {
            return self
                .fail_all(&rows, 0, "the connection is not active")
                .await;
        }
        // Fresh: refreshed first (under the lease) when about to expire.
        let token = match self.refresher.access_token_for(&conn.id).await {
            Ok(t) => t,
            Err(TokenError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "no access token for registration");
                return self.fail_all(&rows, 0, &format!("access token: {e}")).await;
            }
        };
        let shop = conn.account.as_str();
        let (listed, tries) = self
            .with_retries(|| self.api.list_webhooks(shop, &token))
            .await;
        let mut existing = match listed {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "listing webhooks failed");
                return self
                    .fail_all(&rows, tries, &format!("listing webhooks: {e}"))
                    .await;
            }
        };
        let own: HashSet<String> = self
            .store
            .webhook_addresses(&conn.id)
            .await?
            .into_iter()
            .collect();
        for row in rows {
            let (result, tries) = self
                .reconcile(shop, &token, &row, &own, &mut existing)
                .await;
            let outcome = match result {
                Ok(id) => RegistrationOutcome::Registered {
                    shopify_webhook_id: id.to_string(),
                },
                Err(e) => {
                    tracing::warn!(connection = %conn.id, topic = %row.topic, error = %e, "webhook registration failed");
                    RegistrationOutcome::Failed {
                        error: e.to_string(),
                        retry_at: self.retry_at(row.attempts + tries),
                    }
                }
            };
            self.store
                .record_webhook_registration(
                    &row.connection_id,
                    &row.topic,
                    &row.address,
                    tries,
                    &outcome,
                )
                .await?;
        }
        Ok(())
    }

    /// Makes Shopify hold exactly one subscription of this connection for
    /// the topic, at the row's address: adopts one already there, moves one
    /// at an older address of the connection's, or creates one. Extra copies
    /// at the connection's addresses are deleted.
    ///
    /// Shopify lists every subscription the app has in the shop, whichever
    /// connection made it: another brand that connected the same shop has
    /// its own, at its own address, under our URL prefix too. Only the
    /// addresses in `own` (every address this connection has had) are ours
    /// to touch.
    async fn reconcile(
        &self,
        shop: &str,
        token: &Secret,
        row: &WebhookRegistrationRow,
        own: &HashSet<String>,
        existing: &mut Vec<Webhook>,
    ) -> (Result<u64, ShopifyError>, i64) {
        let ours: Vec<Webhook> = existing
            .iter()
            .filter(|w| {
                w.topic == row.topic && (w.address == row.address || own.contains(&w.address))
            })
            .cloned()
            .collect();
        let mut tries = 0;
        let keep = if let Some(w) = ours.iter().find(|w| w.address == row.address) {
            w.id
        } else if let Some(w) = ours.first() {
            let (r, t) = self
                .with_retries(|| {
                    self.api
                        .update_webhook_address(shop, token, w.id, &row.address)
                })
                .await;
            tries += t;
            match r {
                Ok(updated) => {
                    if let Some(e) = existing.iter_mut().find(|e| e.id == w.id) {
                        e.address = updated.address.clone();
                    }
                    updated.id
                }
                Err(e) => return (Err(e), tries),
            }
        } else {
            let (r, t) = self
                .with_retries(|| {
                    self.api
                        .create_webhook(shop, token, &row.topic, &row.address)
                })
                .await;
            tries += t;
            match r {
                Ok(created) => {
                    existing.push(created.clone());
                    created.id
                }
                // 422: "address for this topic has already been taken", by a
                // subscription made since we listed: adopt it.
                Err(e) if e.status() == Some(422) => {
                    let (listed, t) = self
                        .with_retries(|| self.api.list_webhooks(shop, token))
                        .await;
                    tries += t;
                    match listed.map(|l| {
                        l.into_iter()
                            .find(|w| w.topic == row.topic && w.address == row.address)
                    }) {
                        Ok(Some(w)) => w.id,
                        Ok(None) => return (Err(e), tries),
                        Err(e) => return (Err(e), tries),
                    }
                }
                Err(e) => return (Err(e), tries),
            }
        };
        for extra in ours.iter().filter(|w| w.id != keep) {
            let (r, t) = self
                .with_retries(|| self.api.delete_webhook(shop, token, extra.id))
                .await;
            tries += t;
            match r {
                Ok(()) => existing.retain(|e| e.id != extra.id),
                Err(e) => {
                    tracing::warn!(topic = %row.topic, error = %e, "deleting a duplicate webhook failed")
                }
            }
        }
        (Ok(keep), tries.max(1))
    }

    /// Calls `f` until it succeeds, fails for good, or the tries of one run
    /// are spent; answers the last result and how many tries were made.
    async fn with_retries<T, F, Fut>(&self, mut f: F) -> (Result<T, ShopifyError>, i64)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ShopifyError>>,
    {
        let r = &self.cfg.registration;
        let attempts = r.attempts_per_run.max(1);
        let mut backoff = r.min_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            match f().await {
                Ok(v) => return (Ok(v), tries),
                Err(e) if e.is_transient() && tries < attempts as i64 => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(r.max_backoff);
                }
                Err(e) => return (Err(e), tries),
            }
        }
    }
}

/// Every webhook registration of a connection and how it stands (for the
/// CLI and the admin API).
pub async fn webhook_registrations(
    store: &Store,
    connection_id: &str,
) -> Result<Vec<WebhookRegistrationRow>, StoreError> {
    store.webhook_registrations(connection_id).await
}

// ---- HTTP ------------------------------------------------------------------------

/// The install's routes; without an app (`oauth` None) they answer 404
/// `oauth_not_configured`.
pub fn router(oauth: Option<Arc<OAuth>>) -> Router {
    Router::new()
        .route(INITIATE_PATH, get(initiate))
        .route(CALLBACK_PATH, get(callback))
        .with_state(oauth)
}

fn configured(state: &Option<Arc<OAuth>>) -> Result<&Arc<OAuth>, ApiError> {
    state.as_ref().ok_or_else(|| not_configured("Shopify"))
}

async fn initiate(
    State(state): State<Option<Arc<OAuth>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let oauth = configured(&state)?;
    let started = oauth
        .initiate(bearer(&headers), &query_params(query.as_deref()))
        .await?;
    Ok(started_response(&started))
}

async fn callback(
    State(state): State<Option<Arc<OAuth>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let oauth = configured(&state)?;
    let answer = finish(oauth, query.as_deref().unwrap_or(""), &headers).await;
    Ok(callback_response(answer, &oauth.clear_state_cookie()))
}

async fn finish(oauth: &OAuth, query: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let connected = oauth.callback(query, headers).await?;
    match &oauth.cfg.frontend_redirect {
        Some(frontend) => {
            let mut url = reqwest::Url::parse(frontend).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            url.query_pairs_mut()
                .append_pair("status", "connected")
                .append_pair("connection_id", &connected.connection_id);
            Ok(redirect(url.as_str()))
        }
        None => Ok(Json(connected).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/vectors/shopify-hmac.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_oauth_query_vector_passes() {
        let doc = vectors();
        let list = doc["oauth_query"].as_array().unwrap();
        assert!(!list.is_empty());
        for (i, v) in list.iter().enumerate() {
            let secret = v["secret"].as_str().unwrap().as_bytes();
            let canonical = v["canonical"].as_str().unwrap();
            let expected = v["hmac_hex"].as_str().unwrap();
            assert_eq!(
                hmac_hex(secret, canonical),
                expected,
                "vector {i}: hmac of canonical"
            );
            // The parameters the canonical form came from: given as a raw
            // query, as decoded params, or (plain vectors) the canonical
            // string itself read as a query.
            let params: Vec<(String, String)> = if let Some(q) = v["query"].as_str() {
                parse_query(q)
            } else if let Some(p) = v["params"].as_object() {
                p.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            } else {
                parse_query(canonical)
            };
            assert_eq!(
                canonical_query(&params),
                canonical,
                "vector {i}: canonical form"
            );
            assert_eq!(
                sign_query(secret, &params),
                expected,
                "vector {i}: signature"
            );
            let mut signed = params.clone();
            signed.push(("hmac".into(), expected.into()));
            assert!(verify_query(secret, &signed), "vector {i}: verifies");
            // Upper-case hex is the same MAC.
            let mut upper = params.clone();
            upper.push(("hmac".into(), expected.to_uppercase()));
            assert!(verify_query(secret, &upper), "vector {i}: upper-case hex");
            // Any change breaks it.
            let mut tampered = signed.clone();
            tampered[0].1.push('x');
            assert!(!verify_query(secret, &tampered), "vector {i}: tampered");
            assert!(!verify_query(b"other", &signed), "vector {i}: other secret");
        }
    }

    #[test]
    fn hmac_and_signature_are_left_out_and_missing_hmac_fails() {
        let p = pairs(&[
            ("shop", "a.myshopify.com"),
            ("signature", "x"),
            ("hmac", "y"),
        ]);
        assert_eq!(canonical_query(&p), "shop=a.myshopify.com");
        assert!(!verify_query(b"s", &pairs(&[("shop", "a.myshopify.com")])));
        assert!(!verify_query(
            b"s",
            &pairs(&[("shop", "a.myshopify.com"), ("hmac", "zz")])
        ));
    }

    #[test]
    fn a_full_query_string_round_trips() {
        let q = "code=abc&hmac=HMAC&host=YWRtaW4&shop=s.myshopify.com&state=st%26ate&timestamp=1";
        let mut p = parse_query(q);
        let sig = sign_query(b"hush", &p);
        for (k, v) in p.iter_mut() {
            if k == "hmac" {
                *v = sig.clone();
            }
        }
        assert!(verify_query(b"hush", &p));
        assert_eq!(
            canonical_query(&p),
            "code=abc&host=YWRtaW4&shop=s.myshopify.com&state=st%26ate&timestamp=1"
        );
    }

    #[test]
    fn shops_are_normalised() {
        for (input, want) in [
            ("shop.myshopify.com", Some("shop.myshopify.com")),
            ("  Shop.MyShopify.com ", Some("shop.myshopify.com")),
            ("https://shop.myshopify.com/", Some("shop.myshopify.com")),
            (
                "admin.shopify.com/store/my-shop",
                Some("my-shop.myshopify.com"),
            ),
            (
                "https://admin.shopify.com/store/my-shop/orders",
                Some("my-shop.myshopify.com"),
            ),
            ("admin.shopify.com/store/", None),
            ("evil.com", None),
            ("shop.myshopify.com.evil.com", None),
            ("-shop.myshopify.com", None),
            ("a/b.myshopify.com", None),
            ("", None),
        ] {
            assert_eq!(normalize_shop(input).as_deref(), want, "{input:?}");
        }
    }
}
