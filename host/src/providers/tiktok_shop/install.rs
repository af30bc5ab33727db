//! A seller connects by TikTok Shop's OAuth; each shop they authorise
//! becomes a connection whose webhooks the gateway registers.
//!
//! - `GET /integrations/tiktok_shop/install?workspace_id&brand_id`: the
//!   caller proves who they are as for every install (a user-service JWT;
//!   see `providers::install`), a single-use state is stored and bound to
//!   the browser by a signed cookie scoped to the callback, and the browser
//!   is sent to TikTok's authorize page
//!   (`https://services.tiktokshop.com/open/authorize?service_id&state`).
//! - `GET /integrations/tiktok_shop/oauth/callback?code&state`: TikTok signs
//!   nothing here, so the state is everything: it must be live, unspent and
//!   the one in the browser's cookie. The code is exchanged for the seller's
//!   tokens (`auth`), the Open API names the shops the seller authorised
//!   (`open_api`), and each becomes a connection: account the shop id,
//!   settings `{app_key, shop_cipher}`, webhook secret the app secret (which
//!   signs TikTok's webhooks), the tokens encrypted.
//! - Afterwards the registrar points each configured event type of each
//!   shop at the connection's webhook URL and records how each stands
//!   (`webhook_registrations`), retrying failures with backoff.
//!
//! Every connection of one authorisation holds the same tokens (TikTok
//! grants them to the seller, not to a shop); each is refreshed under its
//! own lease.
//!
//! No state, code, token or secret is ever logged or put in an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::TikTokShop;
use super::auth::{TikTokAuth, TikTokAuthError};
use super::open_api::OpenApi;
use crate::error::ApiError;
use crate::pipeline::connection::{self, OAuthInstall, OAuthTokens};
use crate::providers::install::{
    InstallGuard, JwtConfig, OAuthError, RegistrationConfig, STATE_TTL, bearer, by_connection,
    callback_response, check_brand_owner, not_configured, query_params, run_passes,
    started_response,
};
use crate::providers::refresh::{RefreshConfig, Refresher, TokenError};
use crate::store::oauth::{RegistrationOutcome, WebhookRegistrationRow};
use crate::store::{Store, StoreError, now_ms};
use crate::support::vault::{Secret, Vault};

pub const ID: &str = "tiktok_shop";
pub const INSTALL_PATH: &str = "/integrations/tiktok_shop/install";
pub const CALLBACK_PATH: &str = "/integrations/tiktok_shop/oauth/callback";
pub const DEFAULT_AUTHORIZE_URL: &str = "https://services.tiktokshop.com/open/authorize";
pub use super::auth::DEFAULT_AUTH_BASE;
pub use super::open_api::DEFAULT_OPEN_API_BASE;

/// The event types registered for every shop (TikTok's names for the
/// webhooks' integer `type`s).
pub const DEFAULT_EVENT_TYPES: &[&str] = &[
    "ORDER_STATUS_CHANGE",
    "RECIPIENT_ADDRESS_UPDATE",
    "PACKAGE_UPDATE",
    "PRODUCT_STATUS_CHANGE",
    "SELLER_DEAUTHORIZATION",
    "UPCOMING_AUTHORIZATION_EXPIRATION",
    "CANCELLATION_STATUS_CHANGE",
    "RETURN_STATUS_CHANGE",
];

/// The TikTok Shop partner app this gateway installs as.
#[derive(Debug, Clone)]
pub struct TikTokShopConfig {
    pub app_key: String,
    /// Signs the Open API's requests and TikTok's webhooks.
    pub app_secret: Secret,
    /// The app's service id in TikTok's Partner Center (the authorize URL's).
    pub service_id: String,
    /// This gateway's callback URL as registered with the app
    /// (`https://…/integrations/tiktok_shop/oauth/callback`).
    pub redirect_uri: String,
    /// The gateway's public base URL; webhook addresses are this plus the
    /// connection's webhook path.
    pub public_base_url: String,
    /// TikTok's authorize page.
    pub authorize_url: String,
    /// TikTok's auth server (code exchange, refresh).
    pub auth_base_url: String,
    /// TikTok Shop's Open API.
    pub open_api_base_url: String,
    pub event_types: Vec<String>,
    pub state_ttl: Duration,
    /// Timeout of each call to TikTok.
    pub http_timeout: Duration,
    pub registration: RegistrationConfig,
    pub refresh: RefreshConfig,
    pub jwt: JwtConfig,
}

impl TikTokShopConfig {
    /// The defaults for everything but what only the operator knows.
    pub fn new(
        app_key: impl Into<String>,
        app_secret: Secret,
        service_id: impl Into<String>,
        redirect_uri: impl Into<String>,
        public_base_url: impl Into<String>,
    ) -> Self {
        Self {
            app_key: app_key.into(),
            app_secret,
            service_id: service_id.into(),
            redirect_uri: redirect_uri.into(),
            public_base_url: public_base_url.into(),
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            auth_base_url: DEFAULT_AUTH_BASE.into(),
            open_api_base_url: DEFAULT_OPEN_API_BASE.into(),
            event_types: DEFAULT_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
            state_ttl: STATE_TTL,
            http_timeout: Duration::from_secs(15),
            registration: RegistrationConfig::default(),
            refresh: RefreshConfig::default(),
            jwt: JwtConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("tiktok shop install: {0}")]
pub struct TikTokShopConfigError(String);

/// One connection the callback made or renewed.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectedShop {
    pub connection_id: String,
    pub shop_id: String,
    pub shop_name: String,
    pub webhook_path: String,
    /// False when the shop and brand were connected already (reconnected).
    pub created: bool,
}

/// The answer to a successful callback.
#[derive(Debug, Clone, Serialize)]
pub struct Connected {
    pub status: &'static str,
    pub workspace_id: String,
    pub brand_id: String,
    pub shops: Vec<ConnectedShop>,
}

/// The install flow, the registrar and the refresher of one app.
pub struct Install {
    cfg: TikTokShopConfig,
    guard: InstallGuard,
    auth: TikTokAuth,
    api: OpenApi,
    store: Store,
    vault: Arc<Vault>,
    wake: Notify,
    refresher: Arc<Refresher>,
}

impl std::fmt::Debug for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Install")
            .field("app_key", &self.cfg.app_key)
            .finish_non_exhaustive()
    }
}

fn check_url(name: &str, value: &str) -> Result<(), TikTokShopConfigError> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(TikTokShopConfigError(format!(
            "{name} {value:?} is not an http(s) URL"
        ))),
    }
}

fn exchange_failed(what: &str, e: &TikTokAuthError) -> OAuthError {
    tracing::warn!(error = %e, "{what} failed");
    OAuthError::ExchangeFailed(format!("{what}: {e}"))
}

impl Install {
    pub fn new(
        cfg: TikTokShopConfig,
        store: Store,
        vault: Arc<Vault>,
    ) -> Result<Self, TikTokShopConfigError> {
        let invalid = |e: String| TikTokShopConfigError(e);
        if cfg.app_key.trim().is_empty() || cfg.app_secret.expose().is_empty() {
            return Err(invalid("the app key and app secret are required".into()));
        }
        if cfg.service_id.trim().is_empty() {
            return Err(invalid("the service id is required".into()));
        }
        for (name, url) in [
            ("redirect_uri", &cfg.redirect_uri),
            ("public_base_url", &cfg.public_base_url),
            ("authorize_url", &cfg.authorize_url),
            ("auth_base_url", &cfg.auth_base_url),
            ("open_api_base_url", &cfg.open_api_base_url),
        ] {
            check_url(name, url)?;
        }
        let guard = InstallGuard::new(&cfg.jwt, &cfg.redirect_uri, &cfg.app_secret, cfg.state_ttl)
            .map_err(invalid)?;
        let auth = TikTokAuth::new(
            &cfg.auth_base_url,
            &cfg.app_key,
            cfg.app_secret.clone(),
            cfg.http_timeout,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let api = OpenApi::new(
            &cfg.open_api_base_url,
            &cfg.app_key,
            cfg.app_secret.clone(),
            cfg.http_timeout,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let refresher = Arc::new(super::refresh::refresher(
            store.clone(),
            vault.clone(),
            auth.clone(),
            cfg.refresh.clone(),
            cfg.http_timeout,
        ));
        Ok(Self {
            cfg,
            guard,
            auth,
            api,
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

    pub fn config(&self) -> &TikTokShopConfig {
        &self.cfg
    }

    /// The URL TikTok posts this connection's webhooks to.
    pub fn webhook_address(&self, webhook_path: &str) -> String {
        format!(
            "{}{webhook_path}",
            self.cfg.public_base_url.trim_end_matches('/')
        )
    }

    /// Checks the caller, stores a fresh state and answers TikTok's
    /// authorize URL with the state cookie for the browser.
    pub async fn initiate(
        &self,
        bearer: Option<&str>,
        params: &HashMap<String, String>,
    ) -> Result<crate::providers::install::Started, OAuthError> {
        let caller = self.guard.authenticate(&self.store, bearer, params).await?;
        // The seller picks the shops at TikTok: no account is known yet.
        let (state, set_cookie) = self.guard.begin(&self.store, ID, &caller, "").await?;
        let url = reqwest::Url::parse_with_params(
            &self.cfg.authorize_url,
            [
                ("service_id", self.cfg.service_id.as_str()),
                ("state", state.as_str()),
            ],
        )
        .map_err(|e| OAuthError::Internal(format!("building the authorize URL: {e}")))?;
        tracing::info!(workspace = %caller.workspace, brand = %caller.brand,
            user = %caller.user.id, "tiktok shop install started");
        Ok(crate::providers::install::Started {
            authorize_url: url.into(),
            set_cookie,
        })
    }

    /// Checks the callback's state against the store and the browser,
    /// exchanges the code, and connects every shop the seller authorised;
    /// then wakes the registrar.
    pub async fn callback(
        &self,
        params: &HashMap<String, String>,
        browser: &HeaderMap,
    ) -> Result<Connected, OAuthError> {
        let state = params
            .get("state")
            .filter(|s| !s.is_empty())
            .ok_or(OAuthError::InvalidState)?;
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
        let bound = self.guard.finish(&self.store, ID, state, browser).await?;
        // Another workspace may have connected the brand since initiate.
        check_brand_owner(&self.store, &bound.workspace_id, &bound.brand_id).await?;

        let granted = self
            .auth
            .exchange_code(code)
            .await
            .map_err(|e| exchange_failed("exchanging the code", &e))?;
        let shops = self
            .api
            .authorized_shops(&granted.access_token)
            .await
            .map_err(|e| exchange_failed("listing the authorised shops", &e))?;
        if shops.is_empty() {
            return Err(OAuthError::ExchangeFailed(
                "TikTok Shop names no shop this seller authorised".into(),
            ));
        }
        let tokens = OAuthTokens {
            access_token: granted.access_token.clone(),
            access_token_expires_at: Some(granted.access_token_expires_at.timestamp_millis()),
            refresh_token: Some(granted.refresh_token.clone()),
            refresh_token_expires_at: Some(granted.refresh_token_expires_at.timestamp_millis()),
            scopes: granted.granted_scopes.join(","),
        };
        let mut connected = Vec::new();
        for shop in shops {
            let settings = serde_json::json!({
                "app_key": self.cfg.app_key,
                "shop_cipher": shop.cipher,
            });
            let installed = connection::install_oauth(
                &self.store,
                &self.vault,
                &TikTokShop,
                &connection::InstallTarget {
                    account: &shop.id,
                    workspace: &bound.workspace_id,
                    brand: &bound.brand_id,
                    installed_by: &bound.user_id,
                },
                &self.cfg.app_secret,
                &tokens,
                &settings,
            )
            .await;
            let created = match installed {
                Ok(OAuthInstall::Installed(c)) => c,
                Ok(OAuthInstall::WorkspaceConflict) => return Err(OAuthError::WorkspaceConflict),
                Err(connection::ConnectionError::Store(e)) => return Err(OAuthError::Store(e)),
                Err(e) => return Err(OAuthError::Internal(e.to_string())),
            };
            self.store
                .reset_webhook_registrations(
                    &created.connection_id,
                    &self.cfg.event_types,
                    &self.webhook_address(&created.webhook_path),
                )
                .await?;
            tracing::info!(connection = %created.connection_id, shop = %created.account,
                new = created.created, "tiktok shop connected");
            connected.push(ConnectedShop {
                connection_id: created.connection_id,
                shop_id: created.account,
                shop_name: shop.name,
                webhook_path: created.webhook_path,
                created: created.created,
            });
        }
        self.wake.notify_one();
        Ok(Connected {
            status: "connected",
            workspace_id: bound.workspace_id,
            brand_id: bound.brand_id,
            shops: connected,
        })
    }

    // ---- webhook registration ------------------------------------------------

    /// Runs the registrar until `shutdown` turns true.
    pub async fn run_registrar(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let poll = self.cfg.registration.poll_interval;
        run_passes(&self.wake, poll, shutdown, || async {
            if let Err(e) = self.register_due().await {
                tracing::warn!(error = %e, "tiktok shop webhook registration pass failed");
            }
        })
        .await
    }

    /// One pass: every due registration of this app's connections. Answers
    /// how many event types it worked on.
    pub async fn register_due(&self) -> Result<usize, StoreError> {
        let due = self
            .store
            .due_webhook_registrations(ID, now_ms(), 1000)
            .await?;
        let count = due.len();
        for (connection_id, rows) in by_connection(due) {
            self.register_connection(&connection_id, rows).await?;
        }
        Ok(count)
    }

    async fn record(
        &self,
        row: &WebhookRegistrationRow,
        tries: i64,
        result: Result<(), String>,
    ) -> Result<(), StoreError> {
        let outcome = match result {
            // TikTok gives the registration no id: the event type is its key.
            Ok(()) => RegistrationOutcome::Registered {
                shopify_webhook_id: row.topic.clone(),
            },
            Err(error) => RegistrationOutcome::Failed {
                retry_at: self.cfg.registration.retry_at(row.attempts + tries),
                error,
            },
        };
        self.store
            .record_webhook_registration(
                &row.connection_id,
                &row.topic,
                &row.address,
                tries,
                &outcome,
            )
            .await
    }

    async fn register_connection(
        &self,
        connection_id: &str,
        rows: Vec<WebhookRegistrationRow>,
    ) -> Result<(), StoreError> {
        let Some(conn) = self.store.connection_by_id(connection_id).await? else {
            return Ok(());
        };
        let cipher = connection::settings(&conn)
            .get("shop_cipher")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let token = if conn.status != "active" {
            Err("the connection is not active".to_string())
        } else if cipher.is_empty() {
            Err("the connection has no shop cipher".to_string())
        } else {
            match self.refresher.access_token_for(&conn.id).await {
                Ok(t) => Ok(t),
                Err(TokenError::Store(e)) => return Err(e),
                Err(e) => Err(format!("access token: {e}")),
            }
        };
        let token = match token {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(connection = %conn.id, error = %why, "tiktok shop webhooks not registered");
                for row in &rows {
                    self.record(row, 0, Err(why.clone())).await?;
                }
                return Ok(());
            }
        };
        for row in rows {
            let (result, tries) = self.put_webhook(&token, &cipher, &row).await;
            if let Err(e) = &result {
                tracing::warn!(connection = %conn.id, event_type = %row.topic, error = %e,
                    "tiktok shop webhook registration failed");
            }
            self.record(&row, tries, result.map_err(|e| e.to_string()))
                .await?;
        }
        Ok(())
    }

    /// One event type, retried within the run while the failure is
    /// transient; answers the last result and how many tries were made.
    async fn put_webhook(
        &self,
        token: &Secret,
        cipher: &str,
        row: &WebhookRegistrationRow,
    ) -> (Result<(), TikTokAuthError>, i64) {
        let r = &self.cfg.registration;
        let mut backoff = r.min_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .api
                .set_webhook(token, cipher, &row.topic, &row.address)
                .await
            {
                Err(e) if e.is_transient() && tries < i64::from(r.attempts_per_run.max(1)) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(r.max_backoff);
                }
                result => return (result, tries),
            }
        }
    }
}

// ---- HTTP ------------------------------------------------------------------------

/// The install's routes; without an app (`install` None) they answer 404
/// `oauth_not_configured`.
pub fn router(install: Option<Arc<Install>>) -> Router {
    Router::new()
        .route(INSTALL_PATH, get(initiate))
        .route(CALLBACK_PATH, get(callback))
        .with_state(install)
}

fn configured(state: &Option<Arc<Install>>) -> Result<&Arc<Install>, ApiError> {
    state.as_ref().ok_or_else(|| not_configured("TikTok Shop"))
}

async fn initiate(
    State(state): State<Option<Arc<Install>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let install = configured(&state)?;
    let started = install
        .initiate(bearer(&headers), &query_params(query.as_deref()))
        .await?;
    Ok(started_response(&started))
}

async fn callback(
    State(state): State<Option<Arc<Install>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let install = configured(&state)?;
    let answer = install
        .callback(&query_params(query.as_deref()), &headers)
        .await
        .map(|connected| Json(connected).into_response())
        .map_err(ApiError::from);
    Ok(callback_response(answer, &install.guard.clear_cookie()))
}
