//! What every OAuth install of a platform app shares, whichever platform:
//! who may start one (a user-service JWT naming a workspace and brand the
//! caller may use, a brand no other workspace owns), the single-use state
//! stored as its sha256 and bound to the browser by a signed cookie scoped
//! to the callback, and the errors they answer. A platform's install
//! (`providers/<name>/`) adds its authorize URL, its callback's own checks
//! and its code exchange.
//!
//! No state, code, token or secret is ever logged or put in an error.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cookie::{Cookie, CookieJar, SameSite};
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::error::ApiError;
use crate::store::oauth::{
    EXPIRED_STATE_GRACE_MS, OAuthStateRow, STATE_SWEEP_BATCH, StateUse, WebhookRegistrationRow,
};
use crate::store::{Store, StoreError, now_ms};
use crate::support::vault::Secret;

/// How long an install may take between initiate and callback.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

// ---- configuration -----------------------------------------------------------

/// How initiate requests are authenticated: JWTs of the user service.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Accept HS256 tokens signed with this shared secret.
    pub hs256_secret: Option<Secret>,
    /// Accept RS256 tokens signed by the key whose public half this is
    /// (PEM, `BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub rs256_public_key_pem: Option<String>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must contain it.
    pub audience: Option<String>,
    /// Refuse to start without an `audience`: a token the user service
    /// minted for another of its services must not open installs here.
    /// Off only when the operator says so.
    pub audience_check: bool,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            rs256_public_key_pem: None,
            issuer: None,
            audience: None,
            audience_check: true,
            leeway: Duration::from_secs(30),
        }
    }
}

/// How hard the registrar tries.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Tries of one call to the platform within one run.
    pub attempts_per_run: u32,
    /// Backoff between those tries (doubling, capped at `max_backoff`).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// After a failed run, a topic is due again after this (doubling with its
    /// failed attempts, capped at `max_retry_after`).
    pub retry_after: Duration,
    pub max_retry_after: Duration,
    /// How often the registrar looks for due work when nobody wakes it.
    pub poll_interval: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            attempts_per_run: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            retry_after: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(30),
        }
    }
}

// ---- errors ------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// The account the install names is not one of the platform's; the
    /// message is the platform's own.
    #[error("{0}")]
    InvalidShop(String),
    #[error("the hmac of the query is missing or does not match")]
    InvalidHmac,
    #[error("the request's timestamp is missing or outside the accepted window")]
    StaleRequest,
    #[error("the state is missing or unknown")]
    InvalidState,
    #[error("the state was already used")]
    StateUsed,
    #[error("the state has expired; start the install again")]
    StateExpired,
    #[error(
        "the browser did not present the install's state cookie; finish the install in the \
         browser that started it"
    )]
    StateCookieMissing,
    #[error(
        "the state does not match the browser's state cookie; finish the install in the \
         browser that started it"
    )]
    StateMismatch,
    #[error("this brand belongs to another workspace")]
    BrandInAnotherWorkspace,
    #[error("the shop is not the one the install was started for")]
    ShopMismatch,
    #[error("this account and brand are connected under another workspace")]
    WorkspaceConflict,
    #[error("exchanging the code failed: {0}")]
    ExchangeFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl OAuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::Unauthorized(_) | OAuthError::InvalidHmac => StatusCode::UNAUTHORIZED,
            OAuthError::Forbidden(_)
            | OAuthError::ShopMismatch
            | OAuthError::StateCookieMissing
            | OAuthError::StateMismatch
            | OAuthError::BrandInAnotherWorkspace => StatusCode::FORBIDDEN,
            OAuthError::InvalidRequest(_)
            | OAuthError::InvalidShop(_)
            | OAuthError::StaleRequest
            | OAuthError::InvalidState
            | OAuthError::StateExpired => StatusCode::BAD_REQUEST,
            OAuthError::StateUsed | OAuthError::WorkspaceConflict => StatusCode::CONFLICT,
            OAuthError::ExchangeFailed(_) => StatusCode::BAD_GATEWAY,
            OAuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::Unauthorized(_) => "unauthorized",
            OAuthError::Forbidden(_) => "forbidden",
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidShop(_) => "invalid_shop",
            OAuthError::InvalidHmac => "invalid_hmac",
            OAuthError::StaleRequest => "stale_request",
            OAuthError::InvalidState => "invalid_state",
            OAuthError::StateUsed => "state_used",
            OAuthError::StateExpired => "state_expired",
            OAuthError::StateCookieMissing => "state_cookie_missing",
            OAuthError::StateMismatch => "state_mismatch",
            OAuthError::BrandInAnotherWorkspace => "brand_in_another_workspace",
            OAuthError::ShopMismatch => "shop_mismatch",
            OAuthError::WorkspaceConflict => "workspace_conflict",
            OAuthError::ExchangeFailed(_) => "exchange_failed",
            OAuthError::Store(_) => "store_unavailable",
            OAuthError::Internal(_) => "internal",
        }
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        let status = e.status();
        if status.is_server_error() {
            tracing::error!(error = %e, "oauth request failed");
        } else {
            tracing::info!(code = e.code(), "oauth request refused");
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

// ---- JWTs --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    workspaces: Option<Vec<String>>,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    brands: Option<Vec<String>>,
    #[serde(default)]
    brand_ids: Option<Vec<String>>,
    #[serde(default)]
    brand_id: Option<String>,
}

/// A caller proven by a user-service JWT.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    workspaces: Vec<String>,
    /// None when the token says nothing about brands; then the store decides
    /// (see [`OAuth::initiate`]).
    brands: Option<Vec<String>>,
}

/// Ids compared as UUIDs when they are UUIDs, so case and hyphenation do not
/// matter.
pub fn same_id(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        Uuid::parse_str(s.trim())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| s.trim().to_string())
    };
    norm(a) == norm(b)
}

impl User {
    /// Whether the token granted this workspace.
    pub fn may_use(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|w| same_id(w, workspace))
    }

    /// Whether the token's brand claims, when it has any, name this brand.
    pub fn may_use_brand(&self, brand: &str) -> bool {
        self.brands
            .as_ref()
            .is_none_or(|brands| brands.iter().any(|b| same_id(b, brand)))
    }
}

pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    cfg: JwtConfig,
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig) -> Result<Self, String> {
        let hs256 = cfg
            .hs256_secret
            .as_ref()
            .map(|s| {
                if s.expose().is_empty() {
                    return Err("the HS256 secret is empty".to_string());
                }
                Ok(DecodingKey::from_secret(s.expose()))
            })
            .transpose()?;
        let rs256 = cfg
            .rs256_public_key_pem
            .as_ref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| format!("the RS256 public key is not a PEM RSA key: {e}"))
            })
            .transpose()?;
        if hs256.is_none() && rs256.is_none() {
            return Err("a JWT key is needed (an HS256 secret or an RS256 public key)".into());
        }
        let has_audience = cfg
            .audience
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty());
        if cfg.audience_check && !has_audience {
            return Err(
                "the JWT audience is not set: set --jwt-audience (IONFLUX_JWT_AUDIENCE, \
                 jwt_audience in the config) to the `aud` the user service puts in tokens for \
                 this gateway, or accept tokens for any audience with --jwt-audience-check=false"
                    .into(),
            );
        }
        Ok(Self {
            hs256,
            rs256,
            cfg: cfg.clone(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<User, OAuthError> {
        let bad = || OAuthError::Unauthorized("the bearer token is not valid".into());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| {
            OAuthError::Unauthorized(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        match &self.cfg.audience {
            Some(aud) => {
                // jsonwebtoken checks `aud` only when the token has one: a
                // token without it must not pass as meant for us.
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.validate_aud = false;
            }
        }
        if let Some(iss) = &self.cfg.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => {
                    OAuthError::Unauthorized("the bearer token has expired".into())
                }
                ErrorKind::ImmatureSignature => {
                    OAuthError::Unauthorized("the bearer token is not valid yet".into())
                }
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => OAuthError::Unauthorized(
                    "the bearer token was not issued for this service".into(),
                ),
                _ => bad(),
            }
        })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(bad());
        }
        let mut workspaces = claims.workspaces.unwrap_or_default();
        workspaces.extend(claims.workspace_id);
        let brands = match (claims.brands, claims.brand_ids, claims.brand_id) {
            (None, None, None) => None,
            (a, b, one) => Some(
                a.into_iter()
                    .flatten()
                    .chain(b.into_iter().flatten())
                    .chain(one)
                    .collect(),
            ),
        };
        Ok(User {
            id: claims.sub,
            workspaces,
            brands,
        })
    }
}

// ---- the state cookie ------------------------------------------------------------

/// The cookie that binds an install to the browser that started it.
pub const STATE_COOKIE: &str = "ionflux_oauth_state";
/// HKDF `info` of the cookie's signing key: the app's secret also signs the
/// platform's callbacks and webhooks, so the cookie gets a key of its own.
const STATE_COOKIE_KEY_INFO: &[u8] = b"ionflux-gateway oauth state cookie v1";

/// Issues and checks the state cookie, as platforms' own app libraries do:
/// initiate puts the state in a signed cookie, and
/// the callback is accepted only from a browser that presents it. Without
/// this, whoever starts an install can hand the authorize URL to a merchant
/// and have the merchant's shop join the starter's workspace.
pub struct StateCookie {
    key: cookie::Key,
    /// The callback's path as the browser sees it (the redirect URI's), so
    /// that the cookie goes nowhere else.
    path: String,
    /// Set when the callback is https; a plain-http callback (local trials)
    /// could not get the cookie back otherwise.
    secure: bool,
    max_age: Duration,
}

/// What the callback's request carries.
pub enum Presented {
    /// No state cookie at all.
    Nothing,
    /// The states of the state cookies whose signature verifies (none when
    /// every one was forged or tampered with).
    States(Vec<String>),
}

impl StateCookie {
    /// The cookie of the app whose callback is `redirect_uri`, signed with
    /// a key derived from `app_secret`, living `max_age`.
    pub fn new(redirect_uri: &str, app_secret: &Secret, max_age: Duration) -> Result<Self, String> {
        let redirect = reqwest::Url::parse(redirect_uri)
            .map_err(|e| format!("redirect_uri is not a URL: {e}"))?;
        let mut okm = [0u8; 64];
        Hkdf::<Sha256>::new(None, app_secret.expose())
            .expand(STATE_COOKIE_KEY_INFO, &mut okm)
            .map_err(|_| "deriving the state cookie key".to_string())?;
        let key = cookie::Key::try_from(&okm[..])
            .map_err(|_| "deriving the state cookie key".to_string())?;
        Ok(Self {
            key,
            path: redirect.path().to_string(),
            secure: redirect.scheme() == "https",
            max_age,
        })
    }

    fn cookie(&self, value: String) -> Cookie<'static> {
        Cookie::build((STATE_COOKIE, value))
            .path(self.path.clone())
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .build()
    }

    /// The `Set-Cookie` value that hands `state` to the browser, signed.
    pub fn issue(&self, state: &str) -> String {
        let mut c = self.cookie(state.to_string());
        c.set_max_age(cookie::time::Duration::seconds(
            self.max_age.as_secs().min(i64::MAX as u64) as i64,
        ));
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(c);
        jar.get(STATE_COOKIE)
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear(&self) -> String {
        let mut c = self.cookie(String::new());
        c.make_removal();
        c.to_string()
    }

    /// The states the request's state cookies carry. Every `Cookie` header
    /// and every cookie of that name is read: a browser may hold several
    /// (another path or domain), and one good one is enough.
    pub fn presented(&self, headers: &HeaderMap) -> Presented {
        let jar = CookieJar::new();
        let signed = jar.signed(&self.key);
        let mut any = false;
        let mut states = Vec::new();
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(value).flatten() {
                if cookie.name() != STATE_COOKIE {
                    continue;
                }
                any = true;
                if let Some(verified) = signed.verify(cookie.into_owned()) {
                    states.push(verified.value().to_string());
                }
            }
        }
        if any {
            Presented::States(states)
        } else {
            Presented::Nothing
        }
    }
}

impl RegistrationConfig {
    /// When a registration is due again after a failed run, `attempts`
    /// tries made so far: `retry_after` doubling, capped.
    pub fn retry_at(&self, attempts: i64) -> i64 {
        let exp = attempts.clamp(0, 20) as u32;
        let delay = self
            .retry_after
            .saturating_mul(1u32 << exp.min(16))
            .min(self.max_retry_after);
        now_ms() + delay.as_millis() as i64
    }
}

/// Runs `pass` now and again whenever `wake` is notified or `poll` has
/// passed, until `shutdown` turns true: the shape of every background job
/// of an app (webhook registration).
pub async fn run_passes<F, Fut>(
    wake: &Notify,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        pass().await;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            r = shutdown.wait_for(|stop| *stop) => {
                if r.is_err() { return; }
            }
        }
    }
}

// ---- the state ---------------------------------------------------------------------

pub fn hash_state(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// The caller of an initiate, proven: the user, and the workspace and brand
/// the install is for (canonical UUIDs).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub workspace: String,
    pub brand: String,
}

/// What initiate hands the browser.
pub struct Started {
    /// The platform's authorize page for this install.
    pub authorize_url: String,
    /// The `Set-Cookie` header value of the state cookie.
    pub set_cookie: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Both carry the state.
        f.write_str("Started { .. }")
    }
}

/// The checks of one app's installs: its JWT verifier, its state cookie.
pub struct InstallGuard {
    jwt: JwtVerifier,
    cookie: StateCookie,
    state_ttl: Duration,
}

impl std::fmt::Debug for InstallGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstallGuard { .. }")
    }
}

impl InstallGuard {
    /// The guard of the app whose callback is `redirect_uri` and whose
    /// secret is `app_secret` (the cookie's key is derived from it).
    pub fn new(
        jwt: &JwtConfig,
        redirect_uri: &str,
        app_secret: &Secret,
        state_ttl: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            jwt: JwtVerifier::new(jwt)?,
            cookie: StateCookie::new(redirect_uri, app_secret, state_ttl)?,
            state_ttl,
        })
    }

    /// Checks the bearer token and the `workspace_id` and `brand_id`
    /// parameters: the token must grant both, and the brand must not belong
    /// to another workspace.
    pub async fn authenticate(
        &self,
        store: &Store,
        bearer: Option<&str>,
        params: &HashMap<String, String>,
    ) -> Result<Caller, OAuthError> {
        let token = bearer
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OAuthError::Unauthorized("a user-service bearer token is required".into())
            })?;
        let user = self.jwt.verify(token)?;
        let id_param = |name: &str| -> Result<String, OAuthError> {
            let raw = params
                .get(name)
                .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))?;
            Uuid::parse_str(raw.trim())
                .map(|u| u.to_string())
                .map_err(|_| OAuthError::InvalidRequest(format!("{name} must be a UUID")))
        };
        let workspace = id_param("workspace_id")?;
        if !user.may_use(&workspace) {
            return Err(OAuthError::Forbidden(
                "the token does not grant this workspace".into(),
            ));
        }
        let brand = id_param("brand_id")?;
        if !user.may_use_brand(&brand) {
            return Err(OAuthError::Forbidden(
                "the token does not grant this brand".into(),
            ));
        }
        check_brand_owner(store, &workspace, &brand).await?;
        Ok(Caller {
            user,
            workspace,
            brand,
        })
    }

    /// Stores a fresh single-use state of `provider` for the caller (and
    /// `account`, when the platform is told it before the authorize page;
    /// empty otherwise) and answers it with the `Set-Cookie` value that
    /// binds it to the browser.
    pub async fn begin(
        &self,
        store: &Store,
        provider: &str,
        caller: &Caller,
        account: &str,
    ) -> Result<(String, String), OAuthError> {
        let state =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        // Abandoned installs leave states behind; a batch goes with every new one.
        if let Err(e) = store
            .sweep_oauth_states(now - EXPIRED_STATE_GRACE_MS, STATE_SWEEP_BATCH)
            .await
        {
            tracing::warn!(error = %e, "sweeping expired oauth states failed");
        }
        store
            .insert_oauth_state(&OAuthStateRow {
                state_hash: hash_state(&state),
                provider: provider.into(),
                workspace_id: caller.workspace.clone(),
                brand_id: caller.brand.clone(),
                user_id: caller.user.id.clone(),
                shop_domain: account.into(),
                created_at: now,
                expires_at: now + self.state_ttl.as_millis() as i64,
                used_at: None,
            })
            .await?;
        let cookie = self.cookie.issue(&state);
        Ok((state, cookie))
    }

    /// Spends the callback's `state` and checks that the browser presented
    /// it in the state cookie; answers what the state was bound to.
    ///
    /// The cookie is checked after the state is spent, so another browser's
    /// callback spends it: otherwise whoever started the install could
    /// replay the merchant's callback URL (it is in the merchant's address
    /// bar and history) with their own cookie.
    pub async fn finish(
        &self,
        store: &Store,
        provider: &str,
        state: &str,
        browser: &HeaderMap,
    ) -> Result<OAuthStateRow, OAuthError> {
        let bound = match store
            .consume_oauth_state(&hash_state(state), now_ms())
            .await?
        {
            StateUse::Consumed(row) => row,
            StateUse::Unknown => return Err(OAuthError::InvalidState),
            StateUse::AlreadyUsed => return Err(OAuthError::StateUsed),
            StateUse::Expired => return Err(OAuthError::StateExpired),
        };
        match self.cookie.presented(browser) {
            Presented::Nothing => return Err(OAuthError::StateCookieMissing),
            Presented::States(states)
                if !states
                    .iter()
                    .any(|s| crate::support::constant_time::eq(s.as_bytes(), state.as_bytes())) =>
            {
                return Err(OAuthError::StateMismatch);
            }
            Presented::States(_) => {}
        }
        // Another platform's install: its state is no use here.
        if bound.provider != provider {
            return Err(OAuthError::InvalidState);
        }
        Ok(bound)
    }

    /// The `Set-Cookie` value that removes the state cookie (every callback
    /// answer carries it: the state is spent either way).
    pub fn clear_cookie(&self) -> String {
        self.cookie.clear()
    }
}

/// A brand belongs to the workspace of its oldest connection (the one that
/// connected it first), on whichever platform; no other workspace may
/// connect it, so that nothing keyed by brand alone can reach another
/// tenant's account. A brand nobody connected yet is free.
pub async fn check_brand_owner(
    store: &Store,
    workspace: &str,
    brand: &str,
) -> Result<(), OAuthError> {
    match store.brand_owner(brand).await? {
        Some(owner) if !same_id(&owner, workspace) => Err(OAuthError::BrandInAnotherWorkspace),
        _ => Ok(()),
    }
}

// ---- HTTP ------------------------------------------------------------------------

/// Parses a raw query string (`a=1&b=2`, form-encoded) into decoded pairs, in
/// order.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    match reqwest::Url::parse(&format!("http://q/?{raw}")) {
        Ok(url) => url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The 404 of an install route when the gateway has no app of `platform`.
pub fn not_configured(platform: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "oauth_not_configured",
        format!("this gateway has no {platform} app configured"),
    )
}

/// The `Authorization` header's value, if it is text.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Initiate's answer: the browser sent to the authorize page, holding the
/// state cookie.
pub fn started_response(started: &Started) -> Response {
    let mut response = redirect(&started.authorize_url);
    set_cookie(&mut response, &started.set_cookie);
    response
}

/// A callback's answer, whatever it was, with the state cookie removed (the
/// state is spent either way) and not to be cached.
pub fn callback_response(answer: Result<Response, ApiError>, clear_cookie: &str) -> Response {
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    set_cookie(&mut response, clear_cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Registrations grouped by connection, in the order of their ids.
pub fn by_connection(
    rows: Vec<WebhookRegistrationRow>,
) -> std::collections::BTreeMap<String, Vec<WebhookRegistrationRow>> {
    let mut grouped = std::collections::BTreeMap::<String, Vec<WebhookRegistrationRow>>::new();
    for row in rows {
        grouped
            .entry(row.connection_id.clone())
            .or_default()
            .push(row);
    }
    grouped
}

/// The parameters of a raw query, the last of each name winning.
pub fn query_params(raw: Option<&str>) -> HashMap<String, String> {
    parse_query(raw.unwrap_or("")).into_iter().collect()
}

pub fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

pub fn set_cookie(response: &mut Response, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        // Names, paths and base64 only: cannot happen, and the value is
        // not logged (it carries the state).
        Err(_) => tracing::error!("the state cookie is not a valid header value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_compare_as_uuids() {
        let u = User {
            id: "u".into(),
            workspaces: vec!["7D1C6AB4-5A8E-4D3E-9A38-0C1F2B3D4E5F".into()],
            brands: None,
        };
        assert!(u.may_use("7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f"));
        assert!(!u.may_use("0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b"));
        // No brand claims: the token restricts no brand (the store does).
        assert!(u.may_use_brand("0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b"));
        let restricted = User {
            brands: Some(vec!["0B5F3F5E1C2D4E6F8A9B1C2D3E4F5A6B".into()]),
            ..u.clone()
        };
        assert!(restricted.may_use_brand("0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b"));
        assert!(!restricted.may_use_brand("7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f"));
        let none = User {
            brands: Some(Vec::new()),
            ..u
        };
        assert!(!none.may_use_brand("0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b"));
    }

    fn jwt_config(audience: Option<&str>, check: bool) -> JwtConfig {
        JwtConfig {
            hs256_secret: Some(Secret::from("s".to_string())),
            audience: audience.map(str::to_owned),
            audience_check: check,
            ..JwtConfig::default()
        }
    }

    #[test]
    fn an_audience_is_required_unless_the_check_is_off() {
        let err = JwtVerifier::new(&jwt_config(None, true))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("--jwt-audience"), "{err}");
        assert!(err.contains("--jwt-audience-check=false"), "{err}");
        assert!(JwtVerifier::new(&jwt_config(Some(" "), true)).is_err());
        assert!(JwtVerifier::new(&jwt_config(Some("ionflux-gateway"), true)).is_ok());
        assert!(JwtVerifier::new(&jwt_config(None, false)).is_ok());
    }

    fn cookie(redirect_uri: &str, secret: &str) -> StateCookie {
        StateCookie::new(redirect_uri, &Secret::from(secret.to_string()), STATE_TTL).unwrap()
    }

    fn cookie_header(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, pair.parse().unwrap());
        h
    }

    #[test]
    fn the_state_cookie_is_signed_scoped_and_lax() {
        let c = cookie(
            "https://gw.example.test/x/integrations/example/oauth/callback",
            "client-secret",
        );
        let set = c.issue("the-state");
        let parsed = Cookie::parse(set.clone()).unwrap();
        assert_eq!(parsed.name(), STATE_COOKIE);
        assert_ne!(parsed.value(), "the-state", "signed, not bare");
        assert_eq!(
            parsed.path(),
            Some("/x/integrations/example/oauth/callback")
        );
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(SameSite::Lax));
        assert_eq!(
            parsed.max_age(),
            Some(cookie::time::Duration::seconds(STATE_TTL.as_secs() as i64))
        );
        let Presented::States(states) = c.presented(&cookie_header(&set)) else {
            panic!("the cookie is presented")
        };
        assert_eq!(states, vec!["the-state".to_string()]);
        // Tampered, or signed under another app's secret: not a state.
        let tampered = set.replacen("the-state", "the-stat3", 1);
        assert!(matches!(
            c.presented(&cookie_header(&tampered)),
            Presented::States(s) if s.is_empty()
        ));
        let other = cookie(
            "https://gw.example.test/x/integrations/example/oauth/callback",
            "another-secret",
        );
        assert!(matches!(
            c.presented(&cookie_header(&other.issue("the-state"))),
            Presented::States(s) if s.is_empty()
        ));
        assert!(matches!(c.presented(&HeaderMap::new()), Presented::Nothing));
        // A plain-http callback (local trials) cannot use a Secure cookie.
        let local = cookie(
            "http://127.0.0.1:8080/integrations/example/oauth/callback",
            "client-secret",
        );
        let parsed = Cookie::parse(local.issue("s")).unwrap();
        assert_ne!(parsed.secure(), Some(true));
        let cleared = Cookie::parse(local.clear()).unwrap();
        assert_eq!(cleared.max_age(), Some(cookie::time::Duration::ZERO));
    }
}
