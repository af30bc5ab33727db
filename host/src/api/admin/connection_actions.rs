//! The connection API: one connection in full, and what may be done to it,
//! for every provider. `GET /admin/v1/connections/{id}` and
//! `POST /admin/v1/connections/{id}/{disconnect|pause|resume|reregister|refresh}`,
//! scoped as every call (a workspace token touches its own workspace's
//! connections only). The CLI's `connections show` and actions run the same
//! functions on the database's host ([`view`], [`act`]).
//!
//! Every action is idempotent and answers the connection as it is after
//! it. The state changes (disconnect, pause, resume, and the token swap of a
//! refresh) write their `integration.*` event in the same transaction
//! (`pipeline::integration`).
//!
//! **Pause** holds the connection's webhooks rather than refusing them:
//! intake goes on verifying, storing and answering 2xx, and the dispatcher
//! claims none of its rows until `resume`, which delivers them in order. A
//! 503 with `Retry-After` would lean on each platform's retry budget instead
//! (WooCommerce disables a webhook after a few failed deliveries, Shopify
//! gives up after hours and warns the app, a generic sender may not retry at
//! all), so a pause longer than that budget would lose webhooks; held, none
//! is lost however long it lasts, and the platform sees nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::body::{ConnectionActionAnswer, ConnectionView, ErrorBody};
use super::{Principal, path};
use crate::api::http::{ApiError, AppState};
use crate::pipeline::connection::{self, WEBHOOK_SECRET};
use crate::pipeline::provider::Providers;
use crate::pipeline::registration::{
    self, ProviderOptions, RegisterError, Registered, Registration, RegistrationError,
};
use crate::providers::refresh::{Refresher, TokenError};
use crate::store::{Changed, Store, StoreError};
use crate::support::vault::Vault;

/// The token refreshers of the platforms whose apps this gateway runs, by
/// provider id.
pub type Refreshers = Arc<HashMap<&'static str, Arc<Refresher>>>;

/// What the actions need, whether the API or the CLI runs them.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub store: &'a Store,
    /// None on the CLI's side without a master key: only `reregister` with
    /// kept credentials needs it.
    pub vault: Option<&'a Vault>,
    pub providers: &'a Providers,
    /// Empty on the CLI's side: a forced refresh needs the app's
    /// credentials, which the running gateway holds.
    pub refreshers: &'a HashMap<&'static str, Arc<Refresher>>,
    pub public_base_url: Option<&'a str>,
    pub provider_options: &'a ProviderOptions,
}

/// The actions, as the URL and the CLI name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Disconnect,
    Pause,
    Resume,
    Reregister,
    Refresh,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Disconnect => "disconnect",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Reregister => "reregister",
            Action::Refresh => "refresh",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no connection has this id")]
    NotFound,
    /// The action does not apply to this connection as it stands.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error("the token refresh failed: {0}")]
    RefreshFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

fn conflict(code: &'static str, message: impl Into<String>) -> ActionError {
    ActionError::Conflict {
        code,
        message: message.into(),
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let message = e.to_string();
        match e {
            ActionError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_connection", message)
            }
            ActionError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ActionError::Registration(RegistrationError::Refused(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "registration_refused", message)
            }
            ActionError::Registration(RegistrationError::Unavailable(_)) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "registration_failed", message)
            }
            ActionError::RefreshFailed(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "refresh_failed", message)
            }
            ActionError::Store(e) => super::store_error(e),
            ActionError::Internal(m) => super::internal(m),
        }
    }
}

/// The connection in full; None when no connection has this id.
pub async fn view(ctx: Context<'_>, id: &str) -> Result<Option<ConnectionView>, ActionError> {
    let Some(d) = ctx.store.connection_detail(id).await? else {
        return Ok(None);
    };
    let registrations = ctx.store.webhook_registrations(id).await?;
    // The refresh's error first (it says whether the API still works), else
    // the newest failed registration's.
    let last_error = d.last_refresh_error.clone().or_else(|| {
        registrations
            .iter()
            .filter(|r| r.status != "registered")
            .filter_map(|r| r.last_error.as_ref().map(|e| (r.updated_at, e)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, e)| format!("registration: {e}"))
    });
    let webhook_path = connection::webhook_path(&d.provider, &d.secure_path_identifier);
    Ok(Some(ConnectionView {
        webhook_url: ctx
            .public_base_url
            .map(|base| registration::address(base, &webhook_path)),
        webhook_path,
        connection_id: d.id,
        provider: d.provider,
        account: d.account,
        workspace_id: d.workspace_id,
        brand_id: d.brand_id,
        status: d.status,
        paused: d.paused_at.is_some(),
        paused_at: d.paused_at,
        paused_by: d.paused_by,
        auth_method: d.auth_method,
        scopes: d.scopes.filter(|s| !s.is_empty()),
        created_at: d.created_at,
        installed_at: d.installed_at,
        installed_by: d.installed_by,
        last_webhook_at: d.last_webhook_at,
        last_error,
        has_access_token: d.has_access_token != 0,
        has_refresh_token: d.has_refresh_token != 0,
        access_token_expires_at: d.access_token_expires_at,
        refreshed_at: d.refreshed_at,
        refresh_failures: d.refresh_failures,
        secure_path_identifier: d.secure_path_identifier,
        registrations,
    }))
}

/// Runs one action on the connection (whose workspace the caller checked)
/// and answers it as it is afterwards.
pub async fn act(
    ctx: Context<'_>,
    id: &str,
    action: Action,
    actor: &str,
) -> Result<ConnectionActionAnswer, ActionError> {
    let before = view(ctx, id).await?.ok_or(ActionError::NotFound)?;
    let gone = matches!(before.status.as_str(), "disconnected" | "redacted");
    let mut registered = None;
    let (changed, message) = match action {
        Action::Disconnect => match ctx.store.disconnect_connection(id, actor).await? {
            Changed::Missing => return Err(ActionError::NotFound),
            Changed::Unchanged => (
                false,
                format!("the connection is already {}", before.status),
            ),
            Changed::Changed => (
                true,
                "disconnected: its tokens are deleted and its webhooks refused (but for the \
                 platform's compliance topics); connect it again to resume"
                    .to_string(),
            ),
        },
        Action::Pause | Action::Resume => {
            let pause = action == Action::Pause;
            match ctx.store.set_connection_paused(id, pause, actor).await? {
                Changed::Missing => return Err(ActionError::NotFound),
                Changed::Unchanged if pause => (false, "the connection is already paused".into()),
                Changed::Unchanged => (false, "the connection is not paused".into()),
                Changed::Changed if pause => (
                    true,
                    "paused: its webhooks are still taken and stored, and held until resume".into(),
                ),
                Changed::Changed => (
                    true,
                    "resumed: the webhooks held meanwhile are being delivered, in order".into(),
                ),
            }
        }
        Action::Reregister => {
            if gone {
                return Err(conflict(
                    "connection_gone",
                    format!(
                        "the connection is {}: connect it again first",
                        before.status
                    ),
                ));
            }
            let (message, done) = reregister(ctx, &before).await?;
            registered = done;
            (true, message)
        }
        Action::Refresh => {
            if gone {
                return Err(conflict(
                    "connection_gone",
                    format!(
                        "the connection is {}: connect it again first",
                        before.status
                    ),
                ));
            }
            if !before.has_refresh_token || before.access_token_expires_at.is_none() {
                return Err(conflict(
                    "not_refreshable",
                    "this connection holds no refresh token or no expiring access token: its \
                     access does not expire, or only a reconnect renews it",
                ));
            }
            let refresher = ctx
                .refreshers
                .get(before.provider.as_str())
                .ok_or_else(|| {
                    conflict(
                        "not_refreshable",
                        format!(
                            "{}'s tokens are refreshed by a running gateway with its app \
                         configured: use --admin-url",
                            before.provider
                        ),
                    )
                })?;
            match refresher.refresh_now(id).await {
                Ok(()) => (true, "the access token was refreshed".to_string()),
                Err(TokenError::NotFound) => return Err(ActionError::NotFound),
                Err(TokenError::Busy) => {
                    return Err(conflict(
                        "refresh_in_progress",
                        "another refresh of this connection is under way; ask again shortly",
                    ));
                }
                Err(e @ (TokenError::NoToken(_) | TokenError::ReconnectNeeded)) => {
                    return Err(conflict("not_refreshable", e.to_string()));
                }
                Err(TokenError::RefreshFailed(why)) => return Err(ActionError::RefreshFailed(why)),
                Err(TokenError::Store(e)) => return Err(e.into()),
                Err(e @ (TokenError::Vault(_) | TokenError::Internal(_))) => {
                    return Err(ActionError::Internal(e.to_string()));
                }
            }
        }
    };
    if changed {
        tracing::info!(connection = %id, action = action.as_str(), actor, "connection action");
    }
    let connection = view(ctx, id).await?.ok_or(ActionError::NotFound)?;
    Ok(ConnectionActionAnswer {
        connection_id: id.to_string(),
        action: action.as_str().into(),
        changed,
        message,
        connection,
        registered,
    })
}

/// Registers the connection's webhooks again: with the API credentials it
/// keeps, through its provider's registrar; else by putting the
/// registrations the gateway keeps back to pending, for the platform's
/// background registrar; a connection with neither had its webhooks set up
/// in the platform's dashboard.
async fn reregister(
    ctx: Context<'_>,
    c: &ConnectionView,
) -> Result<(String, Option<Vec<Registered>>), ActionError> {
    let provider = ctx.providers.get(&c.provider).ok_or_else(|| {
        conflict(
            "unknown_provider",
            format!("no provider is called {:?}", c.provider),
        )
    })?;
    if let Some(registrar) = provider.registrar() {
        let vault = ctx.vault.ok_or_else(|| {
            conflict(
                "no_master_key",
                "registering with the kept credentials needs the master key",
            )
        })?;
        let credentials = connection::api_credentials(ctx.store, vault, &c.connection_id)
            .await
            .map_err(|e| ActionError::Internal(e.to_string()))?
            .ok_or_else(|| {
                conflict(
                    "no_credentials",
                    format!(
                        "this {} connection keeps no API credentials: add it again with \
                         credentials for the gateway to register its webhooks",
                        c.provider
                    ),
                )
            })?;
        let base = ctx.public_base_url.ok_or_else(|| {
            conflict(
                "no_public_base_url",
                "registering webhooks needs the gateway's public address: set \
                 shopify.public_base_url (IONFLUX_PUBLIC_BASE_URL)",
            )
        })?;
        let internal = |e: crate::support::vault::VaultError| ActionError::Internal(e.to_string());
        let row = ctx
            .store
            .connection_by_id(&c.connection_id)
            .await?
            .ok_or(ActionError::NotFound)?;
        let secret = vault
            .decrypt(
                &row.webhook_secret,
                connection::binding(&row.id, WEBHOOK_SECRET),
            )
            .map_err(internal)?;
        let settings = connection::settings(&row);
        let address = registration::address(base, &c.webhook_path);
        let req = Registration {
            account: &row.account,
            settings: &settings,
            secret: &secret,
            address: &address,
            credentials: &credentials,
            options: ctx.provider_options.get(provider.id()),
        };
        let done =
            registration::register_connection(ctx.store, vault, registrar, &c.connection_id, req)
                .await
                .map_err(|e| match e {
                    RegisterError::Registration(e) => ActionError::Registration(e),
                    RegisterError::Connection(e) => ActionError::Internal(e.to_string()),
                })?;
        return Ok((
            format!("{} webhooks registered at the platform", done.len()),
            Some(done),
        ));
    }
    let n = ctx
        .store
        .redo_webhook_registrations(&c.connection_id)
        .await?;
    if n == 0 {
        return Err(conflict(
            "registered_in_dashboard",
            format!(
                "the gateway registers no webhooks for this {} connection: they are set up in \
                 the platform's dashboard (or app settings), with the webhook URL",
                c.provider
            ),
        ));
    }
    Ok((
        format!("{n} webhook registrations put back to pending; the registrar makes them again"),
        None,
    ))
}

// ---- HTTP ------------------------------------------------------------------

fn context(state: &AppState) -> Context<'_> {
    Context {
        store: &state.store,
        vault: Some(&state.vault),
        providers: &state.providers,
        refreshers: &state.refreshers,
        public_base_url: state.public_base_url.as_deref(),
        provider_options: &state.provider_options,
    }
}

/// The connection, once the caller may touch its workspace (404 first: an
/// unknown id says nothing about other workspaces).
async fn scoped(
    state: &AppState,
    principal: &Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<(String, ConnectionView), ApiError> {
    let id = path(id)?;
    let view = view(context(state), &id)
        .await?
        .ok_or(ActionError::NotFound)?;
    principal.may_touch(&view.workspace_id)?;
    Ok((id, view))
}

/// `GET /admin/v1/connections/{connection_id}`.
#[utoipa::path(
    get,
    path = "/admin/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, body = ConnectionView),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
    ),
)]
pub(super) async fn show_connection(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(scoped(&state, &principal, id).await?.1))
}

async fn run(
    state: AppState,
    principal: Principal,
    id: Result<Path<String>, PathRejection>,
    action: Action,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    let (id, _) = scoped(&state, &principal, id).await?;
    Ok(Json(
        act(context(&state), &id, action, principal.actor()).await?,
    ))
}

/// `POST /admin/v1/connections/{connection_id}/disconnect`.
#[utoipa::path(
    post,
    path = "/admin/v1/connections/{connection_id}/disconnect",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, description = "Disconnected (`changed`), or already disconnected or redacted: status `disconnected`, tokens deleted, registrations forgotten; its webhooks are answered as a gone connection's (403 `connection_inactive`, but for the platform's compliance topics); `integration.disconnected` is published", body = ConnectionActionAnswer),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
    ),
)]
pub(super) async fn disconnect(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    run(state, principal, id, Action::Disconnect).await
}

/// `POST /admin/v1/connections/{connection_id}/pause`.
#[utoipa::path(
    post,
    path = "/admin/v1/connections/{connection_id}/pause",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, description = "Paused (`changed`), or already paused. Webhooks are still verified, stored and answered 2xx, and held (not transformed or published) until `resume`; `integration.paused` is published", body = ConnectionActionAnswer),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
    ),
)]
pub(super) async fn pause(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    run(state, principal, id, Action::Pause).await
}

/// `POST /admin/v1/connections/{connection_id}/resume`.
#[utoipa::path(
    post,
    path = "/admin/v1/connections/{connection_id}/resume",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, description = "Resumed (`changed`), or not paused: the webhooks held meanwhile are delivered in order; `integration.resumed` is published", body = ConnectionActionAnswer),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
    ),
)]
pub(super) async fn resume(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    run(state, principal, id, Action::Resume).await
}

/// `POST /admin/v1/connections/{connection_id}/reregister`.
#[utoipa::path(
    post,
    path = "/admin/v1/connections/{connection_id}/reregister",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, description = "Registered again with the API credentials the connection keeps (`registered`), or its registrations put back to pending for the platform's background registrar", body = ConnectionActionAnswer),
        (status = 400, description = "`registration_refused`: the platform refused the credentials or the registration", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
        (status = 409, description = "`registered_in_dashboard`: the gateway registers none of its webhooks (set up in the platform's dashboard); `no_credentials`; `no_public_base_url`; `connection_gone`: disconnected or redacted", body = ErrorBody),
        (status = 502, description = "`registration_failed`: the platform could not be reached", body = ErrorBody),
    ),
)]
pub(super) async fn reregister_webhooks(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    run(state, principal, id, Action::Reregister).await
}

/// `POST /admin/v1/connections/{connection_id}/refresh`.
#[utoipa::path(
    post,
    path = "/admin/v1/connections/{connection_id}/refresh",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, description = "The access token was refreshed now, through the shared refresher (lease, compare-and-swap); `integration.token_refreshed` is published", body = ConnectionActionAnswer),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
        (status = 409, description = "`not_refreshable`: no refresh token, no app of its platform configured, or a refusal only a reconnect mends; `refresh_in_progress`; `connection_gone`", body = ErrorBody),
        (status = 502, description = "`refresh_failed`: the platform could not be reached or failed", body = ErrorBody),
    ),
)]
pub(super) async fn refresh(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionActionAnswer>, ApiError> {
    run(state, principal, id, Action::Refresh).await
}
