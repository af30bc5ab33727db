//! The admin API (`/admin/v1/…`): transforms, routes, dead letters, the
//! event log and dry runs, described by the OpenAPI document it serves.
//!
//! Who may do what:
//! - an operator (a token of kind `operator`, or `IONFLUX_ADMIN_TOKEN`) may
//!   do everything;
//! - a workspace token touches only its own workspace: its routes, events,
//!   dead letters and stored webhooks, the transforms it uploaded, and the
//!   built-ins;
//! - nobody else: every call needs a token, whoever the peer is. A gateway
//!   with no operator token makes a bootstrap one at start (`server`).
//!
//! The API is served on the admin listener only (`http::admin_router`),
//! never on the public one that takes webhooks.
//!
//! A missing or unknown token is 401 `unauthorized`; a workspace token
//! reaching into another workspace is 403 `forbidden`. Tokens are stored as
//! their sha256 only.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::builtin;
use crate::ceilings::{CeilingOverrides, Ceilings, TenantPolicy};
use crate::dispatch::{Dispatcher, input_of};
use crate::event::{self, Topics, TransformId};
use crate::http::{self, ApiError, AppState};
use crate::registry::{self, RegistryError, RouteSpec};
use crate::route::{BUILTIN_PREFIX, DEFAULT_TRANSFORM, RouteLimits, RouteTable};
use crate::store::ceilings::Deleted;
use crate::store::{ApiTokenRow, DeadLetterRow, LoggedEvent, RouteRow, Store, StoreError};
use crate::transform::{self, Limits, LoadError, Runtime, Transform};
use crate::vault::Secret;

/// Largest component accepted by `POST /admin/v1/transforms`.
pub const MAX_COMPONENT_BYTES: usize = 50 * 1024 * 1024;

/// Every token starts with this, so a leaked one is easy to recognise (and
/// to scan for); the rest is 32 random bytes, base64url without padding.
pub const TOKEN_PREFIX: &str = "ifx_";

const OPENAPI: &str = include_str!("openapi.json");

/// Compiled transforms kept for dry runs. Versions are immutable so entries
/// never go stale; the bound only caps memory.
const LOADED_CACHE_MAX: usize = 64;

/// What the admin API needs beyond the intake's state.
#[derive(Clone)]
pub struct AdminState {
    pub runtime: Runtime,
    pub topics: Topics,
    /// The dispatcher's default limits, so that a dry run behaves as the
    /// real run would.
    pub limits: Limits,
    /// Default ceilings and the upload quota of every workspace.
    pub tenants: TenantPolicy,
    /// When present, route changes are applied at once instead of at the
    /// next periodic refresh. Other replicas pick them up by polling.
    pub dispatcher: Option<Arc<Dispatcher>>,
    loaded: Arc<Mutex<HashMap<String, Transform>>>,
}

impl AdminState {
    pub fn new(
        runtime: Runtime,
        topics: Topics,
        limits: Limits,
        tenants: TenantPolicy,
        dispatcher: Option<Arc<Dispatcher>>,
    ) -> Self {
        Self {
            runtime,
            topics,
            limits,
            tenants,
            dispatcher,
            loaded: Arc::default(),
        }
    }
}

// ---- tokens ----------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("token name must be 1-64 printable characters")]
    InvalidName,
    #[error("a workspace token needs a workspace id")]
    MissingWorkspace,
    #[error("an operator token belongs to no workspace")]
    UnexpectedWorkspace,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Operator,
    Workspace,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Operator => "operator",
            TokenKind::Workspace => "workspace",
        }
    }
}

/// A freshly created token. `token` is the only copy of the plaintext: show
/// it to the user once; it cannot be recovered later.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
    pub workspace_id: Option<String>,
    pub token: Secret,
}

/// Lowercase hex sha256 of a token: what the store keeps and looks up.
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token and returns its id and plaintext (`ifx_…`). Only the hash
/// is stored.
pub async fn create_token(
    store: &Store,
    kind: TokenKind,
    workspace_id: Option<&str>,
    name: &str,
) -> Result<CreatedToken, AdminError> {
    use base64::Engine as _;
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AdminError::InvalidName);
    }
    let workspace_id = workspace_id.filter(|w| !w.is_empty());
    match (kind, workspace_id) {
        (TokenKind::Workspace, None) => return Err(AdminError::MissingWorkspace),
        (TokenKind::Operator, Some(_)) => return Err(AdminError::UnexpectedWorkspace),
        _ => {}
    }
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let row = ApiTokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        kind: kind.as_str().to_string(),
        workspace_id: workspace_id.map(str::to_string),
        created_at: crate::store::now_ms(),
        revoked_at: None,
    };
    store.insert_api_token(&row, &hash_token(&token)).await?;
    Ok(CreatedToken {
        id: row.id,
        name: row.name,
        kind,
        workspace_id: row.workspace_id,
        token: Secret::from(token),
    })
}

/// Every token (never their values), revoked ones included.
pub async fn list_tokens(store: &Store) -> Result<Vec<ApiTokenRow>, AdminError> {
    Ok(store.api_tokens().await?)
}

/// Revokes a token at once. Returns false when no live token has that id.
pub async fn revoke_token(store: &Store, id: &str) -> Result<bool, AdminError> {
    Ok(store.revoke_api_token(id).await?)
}

// ---- authentication --------------------------------------------------------

/// Who is calling, as proven by the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator { actor: String },
    Workspace { actor: String, workspace_id: String },
}

impl Principal {
    /// The workspace the caller is confined to; None for an operator.
    pub fn workspace(&self) -> Option<&str> {
        match self {
            Principal::Operator { .. } => None,
            Principal::Workspace { workspace_id, .. } => Some(workspace_id),
        }
    }

    /// The name recorded in the route history.
    pub fn actor(&self) -> &str {
        match self {
            Principal::Operator { actor } | Principal::Workspace { actor, .. } => actor,
        }
    }

    fn may_touch(&self, workspace: &str) -> Result<(), ApiError> {
        match self.workspace() {
            Some(own) if own != workspace => Err(forbidden("this belongs to another workspace")),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers).await
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    // No anonymous operator, not even from loopback: behind a reverse
    // proxy, a tunnel or a sidecar every caller arrives from 127.0.0.1.
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("an admin bearer token is required"));
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if given.is_empty() {
        return Err(unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    if let Some(configured) = &state.admin_token
        && constant_time_eq(given.as_bytes(), configured.expose())
    {
        return Ok(Principal::Operator {
            actor: "admin-token".into(),
        });
    }
    // Looking up by hash needs no constant-time compare: the database only
    // ever sees the digest, which says nothing about near misses.
    if given.starts_with(TOKEN_PREFIX)
        && let Some(row) = state
            .store
            .api_token_by_hash(&hash_token(given))
            .await
            .map_err(store_error)?
    {
        return match (row.kind.as_str(), row.workspace_id) {
            ("operator", _) => Ok(Principal::Operator { actor: row.name }),
            ("workspace", Some(workspace_id)) => Ok(Principal::Workspace {
                actor: row.name,
                workspace_id,
            }),
            // The schema forbids this; refuse rather than guess a scope.
            _ => Err(unauthorized("the bearer token is not valid")),
        };
    }
    Err(unauthorized("the bearer token is not valid"))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Comparing digests keeps the time independent of where the inputs
    // differ and of their lengths.
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

// ---- errors ----------------------------------------------------------------

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code, message)
}

fn internal(message: impl Into<String>) -> ApiError {
    let message = message.into();
    tracing::error!(error = %message, "admin request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "admin request: store failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

fn registry_error(e: RegistryError) -> ApiError {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let (status, code) = match &e {
        RegistryError::Load(LoadError::NotAComponent(_)) => (unprocessable, "not_a_component"),
        RegistryError::Load(LoadError::Compile(_)) => (unprocessable, "compile_failed"),
        RegistryError::Load(LoadError::WrongWorld(_)) => (unprocessable, "wrong_world"),
        RegistryError::Load(LoadError::Engine(_) | LoadError::Cache(_)) => {
            return internal(e.to_string());
        }
        RegistryError::Smoke(_) => (unprocessable, "smoke_test_failed"),
        RegistryError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
        RegistryError::UnknownTransform(_) => (unprocessable, "unknown_transform"),
        RegistryError::InvalidRoute(_) => (unprocessable, "invalid_route"),
        RegistryError::QuotaExceeded { .. } => (StatusCode::CONFLICT, "upload_quota_exceeded"),
        RegistryError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        RegistryError::Task(_) => return internal(e.to_string()),
    };
    ApiError::new(status, code, e.to_string())
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|r| bad_request(r.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|r| bad_request(r.body_text()))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v).map_err(|r| bad_request(r.body_text()))
}

// ---- router ----------------------------------------------------------------

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/openapi.json", get(openapi))
        .route(
            "/admin/v1/transforms",
            get(list_transforms)
                .post(push_transform)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/admin/v1/transforms/{reference}",
            get(show_transform).delete(delete_transform),
        )
        .route(
            "/admin/v1/workspaces/{workspace_id}/ceilings",
            get(show_ceilings).put(set_ceilings),
        )
        .route("/admin/v1/routes", get(list_routes).put(set_route))
        .route("/admin/v1/routes/promote", post(promote_route))
        .route("/admin/v1/routes/history", get(route_history))
        .route("/admin/v1/dead-letters", get(list_dead_letters))
        .route("/admin/v1/dead-letters/replay", post(replay_dead_letters))
        .route("/admin/v1/events", get(list_events))
        .route("/admin/v1/webhooks/{inbox_id}/dry-run", post(dry_run))
        .route(
            "/admin/v1/connections/{connection_id}/webhooks",
            get(connection_webhooks),
        )
}

/// The document is public: it describes the API, not anyone's data.
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---- transforms ------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
struct TransformItem {
    /// What a route names: the digest, or `builtin:NAME`.
    reference: String,
    digest: String,
    name: String,
    size: i64,
    builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
}

/// The built-ins, with the digests of the bytes compiled into this binary.
static BUILTINS: LazyLock<Vec<TransformItem>> = LazyLock::new(|| {
    builtin::BUILTIN_COMPONENTS
        .iter()
        .map(|(name, bytes)| TransformItem {
            reference: format!("{BUILTIN_PREFIX}{name}"),
            digest: transform::digest(bytes),
            name: (*name).to_string(),
            size: bytes.len() as i64,
            builtin: true,
            created_at: None,
        })
        .collect()
});

/// The stored versions a caller may see: all of them for an operator, the
/// ones it uploaded for a workspace.
async fn visible_transforms(
    store: &Store,
    principal: &Principal,
) -> Result<Vec<TransformItem>, ApiError> {
    let rows = match principal.workspace() {
        None => store.transforms().await,
        Some(ws) => store.workspace_transforms(ws).await,
    }
    .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|t| TransformItem {
            reference: t.digest.clone(),
            digest: t.digest,
            name: t.name,
            size: t.size,
            builtin: false,
            created_at: Some(t.created_at),
        })
        .collect())
}

/// Resolves a reference (`builtin:NAME`, a digest, or a unique prefix of at
/// least 12 hex digits) among what the caller may see. Someone else's
/// version is "unknown", so its existence is not revealed.
async fn resolve_visible(
    store: &Store,
    principal: &Principal,
    reference: &str,
) -> Result<TransformItem, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_transform",
            format!("no transform {reference:?} that this token may use"),
        )
    };
    if reference.starts_with(BUILTIN_PREFIX) {
        return BUILTINS
            .iter()
            .find(|b| b.reference == reference)
            .cloned()
            .ok_or_else(unknown);
    }
    let wanted = reference.to_ascii_lowercase();
    let mut matches: Vec<TransformItem> = visible_transforms(store, principal)
        .await?
        .into_iter()
        .filter(|t| t.digest == wanted || (wanted.len() >= 12 && t.digest.starts_with(&wanted)))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(unknown()),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_transform",
            format!("{reference:?} is the prefix of several digests; give more of it"),
        )),
    }
}

async fn list_transforms(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut items = BUILTINS.clone();
    items.extend(visible_transforms(&state.store, &principal).await?);
    Ok(Json(serde_json::json!({ "transforms": items })))
}

#[derive(Deserialize)]
struct PushQuery {
    name: Option<String>,
}

async fn push_transform(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<PushQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = query(q)?
        .name
        .ok_or_else(|| bad_request("give the transform a name: ?name=NAME"))?;
    let body = body.map_err(|r| {
        http::body_error(
            r,
            format!("a component may be at most {MAX_COMPONENT_BYTES} bytes"),
        )
    })?;
    if body.is_empty() {
        return Err(bad_request(
            "the body must be the component's .wasm bytes (application/wasm)",
        ));
    }
    let runtime = &state.admin.runtime;
    let pushed = match principal.workspace() {
        None => registry::push(&state.store, runtime, &name, body.to_vec()).await,
        Some(ws) => {
            let quota = state.admin.tenants.upload_quota;
            registry::push_for_workspace(&state.store, runtime, &name, body.to_vec(), ws, quota)
                .await
        }
    }
    .map_err(registry_error)?;
    tracing::info!(digest = %pushed.digest, name = %pushed.name, actor = principal.actor(),
        "transform uploaded over the admin API");
    Ok(Json(serde_json::json!({
        "reference": pushed.digest,
        "digest": pushed.digest,
        "name": pushed.name,
        "size": pushed.size,
    })))
}

async fn show_transform(
    State(state): State<AppState>,
    principal: Principal,
    reference: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reference = path(reference)?;
    let item = resolve_visible(&state.store, &principal, &reference)
        .await
        .map_err(|e| {
            if e.code == "unknown_transform" {
                not_found("unknown_transform", e.message)
            } else {
                e
            }
        })?;
    let routes: Vec<RouteRow> = scoped_routes(&state.store, &principal)
        .await?
        .into_iter()
        .filter(|r| r.transform == item.reference)
        .collect();
    let mut body = serde_json::to_value(&item).map_err(|e| internal(e.to_string()))?;
    body["routes"] = serde_json::to_value(routes).map_err(|e| internal(e.to_string()))?;
    if principal.workspace().is_none() && !item.builtin {
        let owners = state
            .store
            .transform_owners(&item.digest)
            .await
            .map_err(store_error)?;
        body["uploaded_by_workspaces"] = serde_json::json!(owners);
    }
    Ok(Json(body))
}

/// `DELETE /admin/v1/transforms/{reference}`: a workspace gives up a version
/// it uploaded (its bytes go once nobody owns or runs them); an operator
/// deletes any version. Refused while a route the caller can see runs it.
async fn delete_transform(
    State(state): State<AppState>,
    principal: Principal,
    reference: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reference = path(reference)?;
    if reference.starts_with(BUILTIN_PREFIX) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "builtin_transform",
            "a built-in transform is part of the gateway and cannot be deleted",
        ));
    }
    let unknown = |message: String| not_found("unknown_transform", message);
    let item = resolve_visible(&state.store, &principal, &reference)
        .await
        .map_err(|e| {
            if e.code == "unknown_transform" {
                unknown(e.message)
            } else {
                e
            }
        })?;
    let digest = item.digest;
    match state
        .store
        .delete_transform(&digest, principal.workspace())
        .await
        .map_err(store_error)?
    {
        Deleted::Unknown => Err(unknown(format!(
            "no transform {reference:?} that this token may delete"
        ))),
        Deleted::InUse(routes) => {
            let users: Vec<String> = routes
                .iter()
                .map(|r| {
                    format!(
                        "route {} (workspace {:?}, brand {:?}, topic {:?})",
                        r.id, r.workspace_id, r.brand_id, r.topic_pattern
                    )
                })
                .collect();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "transform_in_use",
                format!(
                    "{digest} is still run by {}: route those elsewhere (or drop their shadow) \
                     first",
                    users.join(", ")
                ),
            ))
        }
        Deleted::Removed { component } => {
            if component {
                state.admin.runtime.evict_cached(&digest);
            }
            state
                .admin
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&digest);
            tracing::info!(%digest, actor = principal.actor(), workspace = ?principal.workspace(),
                component_deleted = component, "transform deleted over the admin API");
            Ok(Json(serde_json::json!({ "deleted": digest })))
        }
    }
}

// ---- ceilings --------------------------------------------------------------

/// A workspace's ceilings: the configured defaults with what an operator
/// set for it over them.
async fn ceilings_of(state: &AppState, workspace: &str) -> Result<Ceilings, ApiError> {
    let row = state
        .store
        .workspace_ceilings(workspace)
        .await
        .map_err(store_error)?;
    let defaults = state.admin.tenants.ceilings;
    Ok(row.map_or(defaults, |r| CeilingOverrides::from_row(&r).over(&defaults)))
}

fn above_ceiling(workspace: &str, e: crate::ceilings::AboveCeiling) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "limit_above_ceiling",
        format!(
            "{e}; only an operator can raise it (GET /admin/v1/workspaces/{workspace}/ceilings \
             shows them)"
        ),
    )
}

/// Workspace ids are opaque to the gateway; these bounds only keep junk out
/// of the table.
fn workspace_param(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let id = path(id)?;
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(bad_request("a workspace id is 1-128 printable characters"));
    }
    Ok(id)
}

async fn ceilings_body(state: &AppState, workspace: &str) -> Result<serde_json::Value, ApiError> {
    let store = &state.store;
    let row = store
        .workspace_ceilings(workspace)
        .await
        .map_err(store_error)?;
    let tenants = &state.admin.tenants;
    let overrides = row
        .as_ref()
        .map(CeilingOverrides::from_row)
        .unwrap_or_default();
    let uploads = store.upload_usage(workspace).await.map_err(store_error)?;
    Ok(serde_json::json!({
        "workspace_id": workspace,
        "ceilings": overrides.over(&tenants.ceilings),
        "overrides": overrides,
        "defaults": tenants.ceilings,
        "updated_at": row.map(|r| r.updated_at),
        "upload_quota": tenants.upload_quota,
        "uploads": uploads,
    }))
}

/// `GET /admin/v1/workspaces/{workspace_id}/ceilings`: an operator reads any
/// workspace's, a workspace token its own.
async fn show_ceilings(
    State(state): State<AppState>,
    principal: Principal,
    workspace_id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let workspace = workspace_param(workspace_id)?;
    principal.may_touch(&workspace)?;
    Ok(Json(ceilings_body(&state, &workspace).await?))
}

/// `PUT /admin/v1/workspaces/{workspace_id}/ceilings`: operators only. The
/// body names the ceilings to set; one left out (or null) takes the
/// configured default again. Applies to routes already saved, at once on
/// this replica and within a route poll on the others.
async fn set_ceilings(
    State(state): State<AppState>,
    principal: Principal,
    workspace_id: Result<Path<String>, PathRejection>,
    body: Result<Json<CeilingOverrides>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let workspace = workspace_param(workspace_id)?;
    if let Principal::Workspace { .. } = principal {
        return Err(forbidden("only an operator sets a workspace's ceilings"));
    }
    let overrides = json_body(body)?;
    overrides.validate().map_err(|message| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ceilings",
            message,
        )
    })?;
    state
        .store
        .set_workspace_ceilings(&workspace, overrides.to_columns(), principal.actor())
        .await
        .map_err(store_error)?;
    reload_routes(&state).await;
    tracing::info!(workspace = %workspace, ceilings = ?overrides, actor = principal.actor(),
        "workspace ceilings set over the admin API");
    Ok(Json(ceilings_body(&state, &workspace).await?))
}

// ---- routes ----------------------------------------------------------------

/// A workspace sees the routes of its own workspace; global and brand-only
/// routes are the operator's.
async fn scoped_routes(store: &Store, principal: &Principal) -> Result<Vec<RouteRow>, ApiError> {
    let routes = store.routes().await.map_err(store_error)?;
    Ok(match principal.workspace() {
        None => routes,
        Some(ws) => routes
            .into_iter()
            .filter(|r| r.workspace_id == ws)
            .collect(),
    })
}

async fn list_routes(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let routes = scoped_routes(&state.store, &principal).await?;
    Ok(Json(serde_json::json!({ "routes": routes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    workspace_id: Option<String>,
    brand_id: Option<String>,
    topic_pattern: String,
    transform: String,
    config: Option<serde_json::Value>,
    limits: Option<serde_json::Value>,
    shadow: Option<String>,
}

/// The workspace a route change is for, after checking the caller may make
/// it. A workspace token's routes are always inside its workspace.
fn route_scope(
    principal: &Principal,
    workspace_id: Option<String>,
    what: &str,
) -> Result<Option<String>, ApiError> {
    let workspace_id = workspace_id.filter(|w| !w.is_empty());
    match (principal.workspace(), workspace_id) {
        (None, ws) => Ok(ws),
        (Some(own), None) => Ok(Some(own.to_string())),
        (Some(own), Some(ws)) if ws == own => Ok(Some(ws)),
        (Some(_), Some(_)) => Err(forbidden(format!(
            "{what} of another workspace needs that workspace's token"
        ))),
    }
}

/// For a workspace token, the reference must be something it may use; the
/// digest it resolves to is what gets saved. Operators are checked by the
/// registry against every stored version.
async fn usable_reference(
    store: &Store,
    principal: &Principal,
    reference: String,
) -> Result<String, ApiError> {
    match principal {
        Principal::Operator { .. } => Ok(reference),
        Principal::Workspace { .. } => Ok(resolve_visible(store, principal, &reference)
            .await?
            .reference),
    }
}

async fn reload_routes(state: &AppState) {
    if let Some(d) = &state.admin.dispatcher
        && let Err(e) = d.reload_routes().await
    {
        // Not fatal: the periodic refresh retries.
        tracing::warn!(error = %e, "routes not reloaded after an admin change");
    }
}

async fn set_route(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<RouteBody>, JsonRejection>,
) -> Result<Json<RouteRow>, ApiError> {
    let body = json_body(body)?;
    let workspace_id = route_scope(&principal, body.workspace_id, "a route")?;
    // A workspace asks within its ceilings; an operator may save more, and
    // the run is held to the ceilings all the same. Limits that do not
    // parse are left to the registry, which says why.
    if let (Some(ws), Some(limits)) = (principal.workspace(), &body.limits)
        && let Ok(limits) = serde_json::from_value::<RouteLimits>(limits.clone())
    {
        ceilings_of(&state, ws)
            .await?
            .check(&limits)
            .map_err(|e| above_ceiling(ws, e))?;
    }
    let transform = usable_reference(&state.store, &principal, body.transform).await?;
    let shadow = match body.shadow {
        Some(s) => Some(usable_reference(&state.store, &principal, s).await?),
        None => None,
    };
    let spec = RouteSpec {
        workspace_id,
        brand_id: body.brand_id.filter(|b| !b.is_empty()),
        topic_pattern: body.topic_pattern,
        transform,
        config: body.config.map(|c| c.to_string()),
        limits: body.limits.map(|l| l.to_string()),
        shadow,
    };
    let row = registry::set_route(&state.store, &spec, principal.actor())
        .await
        .map_err(registry_error)?;
    reload_routes(&state).await;
    tracing::info!(workspace = %row.workspace_id, brand = %row.brand_id,
        topic = %row.topic_pattern, transform = %row.transform, actor = principal.actor(),
        "route set over the admin API");
    Ok(Json(row))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    workspace_id: Option<String>,
    brand_id: Option<String>,
    topic_pattern: String,
}

async fn promote_route(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<PromoteBody>, JsonRejection>,
) -> Result<Json<RouteRow>, ApiError> {
    let body = json_body(body)?;
    let workspace_id = route_scope(&principal, body.workspace_id, "promoting a route")?;
    let row = registry::promote(
        &state.store,
        workspace_id.as_deref(),
        body.brand_id.as_deref().filter(|b| !b.is_empty()),
        &body.topic_pattern,
        principal.actor(),
    )
    .await
    .map_err(registry_error)?;
    reload_routes(&state).await;
    Ok(Json(row))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<i64>,
}

/// How far back a workspace's history is searched; the table is shared and
/// small (one row per route change), so filtering after the read is fine.
const HISTORY_SCAN: i64 = 10_000;

async fn route_history(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query(q)?.limit.unwrap_or(100).clamp(1, 1000);
    let changes = match principal.workspace() {
        None => state.store.route_history(limit).await,
        Some(_) => state.store.route_history(HISTORY_SCAN).await,
    }
    .map_err(store_error)?;
    let changes: Vec<_> = changes
        .into_iter()
        .filter(|c| principal.workspace().is_none_or(|ws| c.workspace_id == ws))
        .take(limit as usize)
        .collect();
    Ok(Json(serde_json::json!({ "history": changes })))
}

// ---- dead letters ----------------------------------------------------------

async fn list_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query(q)?.limit.unwrap_or(1000).clamp(1, 10_000);
    let rows: Vec<DeadLetterRow> = match principal.workspace() {
        None => state.store.dead_letters(limit).await,
        Some(ws) => state.store.workspace_dead_letters(ws, limit).await,
    }
    .map_err(store_error)?;
    Ok(Json(serde_json::json!({ "dead_letters": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
}

async fn replay_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = json_body(body)?;
    let store = &state.store;
    let ids = match (body.ids, body.all) {
        (Some(_), true) => return Err(bad_request("give either `ids` or `all: true`, not both")),
        (None, false) => return Err(bad_request("give `ids` or `all: true`")),
        (ids, _) => ids,
    };
    // The workspace is checked inside the replay's own transaction: a check
    // made before it could pass on an id another workspace's letter takes
    // a moment later.
    let outcome = store
        .replay_dead_letters(ids.as_deref(), principal.workspace())
        .await
        .map_err(store_error)?;
    if !outcome.foreign.is_empty() {
        return Err(forbidden(format!(
            "dead letters {:?} belong to another workspace; nothing was replayed",
            outcome.foreign
        )));
    }
    let replayed = outcome.replayed;
    tracing::info!(
        count = replayed.len(),
        actor = principal.actor(),
        "dead letters replayed"
    );
    Ok(Json(serde_json::json!({ "replayed": replayed })))
}

// ---- events ----------------------------------------------------------------

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_events_limit")]
    limit: i64,
}

fn default_events_limit() -> i64 {
    100
}

#[derive(Serialize)]
struct EventItem {
    seq: i64,
    topic: String,
    event: Box<RawValue>,
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<EventItem>,
    /// Pass as `after` to get the next page.
    next_after: i64,
}

async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.clamp(1, 1000);
    let rows: Vec<LoggedEvent> = match principal.workspace() {
        None => state.store.events_after(q.after, limit).await,
        Some(ws) => state.store.workspace_events_after(ws, q.after, limit).await,
    }
    .map_err(store_error)?;
    let next_after = rows.last().map_or(q.after, |r| r.seq);
    let events = rows
        .into_iter()
        .map(|r| {
            Ok(EventItem {
                seq: r.seq,
                topic: r.topic,
                event: RawValue::from_string(r.payload).map_err(|e| internal(e.to_string()))?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(EventsPage { events, next_after }))
}

// ---- dry run ---------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DryRunBody {
    /// Default: what the routing table picks for the webhook.
    transform: Option<String>,
    /// Default: the route's config (`{}` with an explicit transform).
    config: Option<serde_json::Value>,
    /// Overrides of the default limits, as a route's `limits`.
    limits: Option<RouteLimits>,
}

#[derive(Serialize)]
struct DryRunTransform {
    reference: String,
    name: String,
    digest: String,
}

#[derive(Serialize)]
struct DryRunError {
    code: String,
    message: String,
}

#[derive(Serialize)]
struct DryRunResult {
    inbox_id: i64,
    transform: DryRunTransform,
    /// The topic the events would go to.
    topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Box<RawValue>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<DryRunError>,
}

/// Runs a stored webhook through a transform and answers with the events it
/// would become, exactly as the dispatcher would build them (same ids), but
/// publishes and records nothing.
async fn dry_run(
    State(state): State<AppState>,
    principal: Principal,
    inbox_id: Result<Path<i64>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DryRunResult>, ApiError> {
    let inbox_id = path(inbox_id)?;
    let body = body.map_err(|r| bad_request(r.body_text()))?;
    // An empty body means "all defaults", so a bare POST works.
    let body: DryRunBody = if body.iter().all(u8::is_ascii_whitespace) {
        DryRunBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("body: {e}")))?
    };
    let store = &state.store;
    let row = store
        .inbox_row(inbox_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found("unknown_webhook", format!("no stored webhook {inbox_id}")))?;
    principal.may_touch(&row.workspace_id)?;

    let base = &state.admin.limits;
    let (reference, route_config, limits) = match &body.transform {
        Some(reference) => {
            let item = resolve_visible(store, &principal, reference).await?;
            (item.reference, "{}".to_string(), base.clone())
        }
        None => {
            let rows = store.routes().await.map_err(store_error)?;
            let table = RouteTable::from_rows(&rows).map_err(|e| internal(e.to_string()))?;
            match table.resolve(&row.provider, &row.workspace_id, &row.brand_id, &row.topic) {
                Some(r) => (
                    r.transform.clone(),
                    r.config.to_string(),
                    r.limits.apply(base),
                ),
                None => (
                    DEFAULT_TRANSFORM.to_string(),
                    "{}".to_string(),
                    base.clone(),
                ),
            }
        }
    };
    let ceilings = ceilings_of(&state, &row.workspace_id).await?;
    if let (Some(ws), Some(requested)) = (principal.workspace(), &body.limits) {
        ceilings
            .check(requested)
            .map_err(|e| above_ceiling(ws, e))?;
    }
    // Held to the webhook's workspace's ceilings, as the real run is.
    let limits = ceilings.clamp(&body.limits.map_or(limits.clone(), |l| l.apply(&limits)));
    let config = match body.config {
        Some(c) if c.is_object() => c.to_string(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                "config must be a JSON object",
            ));
        }
        None => route_config,
    };

    let t = load_transform(&state, &reference).await?;
    let row = Arc::new(row);
    let (job_row, job_t) = (row.clone(), t.clone());
    let result =
        tokio::task::spawn_blocking(move || job_t.call(&input_of(&job_row), &config, &limits))
            .await
            .map_err(|e| internal(format!("transform task failed: {e}")))?;

    let topics = &state.admin.topics;
    let id = TransformId {
        name: t.name(),
        digest: t.digest(),
    };
    let (events, error) = match result {
        Err(e) => (
            None,
            Some(DryRunError {
                code: e.code().into(),
                message: e.to_string(),
            }),
        ),
        Ok(events) => match event::platform_records(&row, topics, &id, &events) {
            Err((index, e)) => (
                None,
                Some(DryRunError {
                    code: "invalid_output".into(),
                    message: format!("event {index} cannot be enveloped: {e}"),
                }),
            ),
            Ok(records) => {
                let events = records
                    .into_iter()
                    .map(|r| {
                        let text =
                            String::from_utf8(r.payload).map_err(|e| internal(e.to_string()))?;
                        RawValue::from_string(text).map_err(|e| internal(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                (Some(events), None)
            }
        },
    };
    Ok(Json(DryRunResult {
        inbox_id: row.id,
        transform: DryRunTransform {
            reference,
            name: t.name().to_string(),
            digest: t.digest().to_string(),
        },
        topic: topics.events_for(&row),
        events,
        error,
    }))
}

/// A compiled transform by reference, from the dry-run cache or compiled now
/// (off the async threads: compiling takes a while).
async fn load_transform(state: &AppState, reference: &str) -> Result<Transform, ApiError> {
    let cache = &state.admin.loaded;
    if let Some(t) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(reference)
    {
        return Ok(t.clone());
    }
    let (name, bytes): (String, Vec<u8>) = match reference.strip_prefix(BUILTIN_PREFIX) {
        Some(name) => match builtin::component(name) {
            Some(bytes) => (name.to_string(), bytes.to_vec()),
            None => return Err(unavailable(format!("no built-in transform {reference:?}"))),
        },
        None => state
            .store
            .transform_component(reference)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unavailable(format!("no stored transform {reference}")))?,
    };
    let runtime = state.admin.runtime.clone();
    let t = tokio::task::spawn_blocking(move || runtime.load(&name, &bytes))
        .await
        .map_err(|e| internal(format!("compiling task failed: {e}")))?
        .map_err(|e| unavailable(format!("transform {reference} does not load: {e}")))?;
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= LOADED_CACHE_MAX {
        cache.clear();
    }
    cache.insert(reference.to_string(), t.clone());
    Ok(t)
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "transform_unavailable",
        message,
    )
}

// ---- webhook registrations of OAuth connections --------------------------------

/// `GET /admin/v1/connections/{connection_id}/webhooks`: how each topic's
/// subscription at Shopify stands (scoped to the connection's workspace).
async fn connection_webhooks(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path(id)?;
    let Some(conn) = state
        .store
        .connection_by_id(&id)
        .await
        .map_err(store_error)?
    else {
        return Err(not_found("unknown_connection", "no connection has this id"));
    };
    principal.may_touch(&conn.workspace_id)?;
    let registrations = crate::oauth::webhook_registrations(&state.store, &id)
        .await
        .map_err(store_error)?;
    Ok(Json(serde_json::json!({
        "connection_id": conn.id,
        "shop_domain": conn.shop_domain,
        "registrations": registrations,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        (dir, store)
    }

    #[test]
    fn tokens_are_hashed_as_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn created_tokens_are_stored_hashed_and_checked_for_scope() {
        let (_dir, store) = store().await;
        let t = create_token(&store, TokenKind::Workspace, Some("ws-1"), "team")
            .await
            .unwrap();
        let plain = std::str::from_utf8(t.token.expose()).unwrap().to_string();
        assert!(plain.starts_with(TOKEN_PREFIX));
        assert_eq!(plain.len(), TOKEN_PREFIX.len() + 43);
        assert!(!format!("{t:?}").contains(&plain), "Debug never shows it");
        let row = store
            .api_token_by_hash(&hash_token(&plain))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.kind.as_str(), row.workspace_id.as_deref()),
            ("workspace", Some("ws-1"))
        );
        assert!(revoke_token(&store, &t.id).await.unwrap());
        assert!(!revoke_token(&store, &t.id).await.unwrap());
        assert!(
            store
                .api_token_by_hash(&hash_token(&plain))
                .await
                .unwrap()
                .is_none()
        );

        for (kind, ws, name) in [
            (TokenKind::Workspace, None, "x"),
            (TokenKind::Workspace, Some(""), "x"),
            (TokenKind::Operator, Some("ws"), "x"),
            (TokenKind::Operator, None, ""),
            (TokenKind::Operator, None, "line\nbreak"),
        ] {
            assert!(
                create_token(&store, kind, ws, name).await.is_err(),
                "{name:?}"
            );
        }
    }
}
