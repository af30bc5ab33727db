//! The admin API (`/admin/v1/…`): transforms, routes, dead letters, the
//! event log and dry runs, described by the OpenAPI document it serves.
//! That document is generated from the handlers' annotations and the
//! bodies in [`body`]: each handler is mounted and documented by the same
//! `routes!` call, so the router and the document cannot drift.
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
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::api::http::{self, ApiError, AppState};
use crate::pipeline::builtin;
use crate::pipeline::ceilings::{CeilingOverrides, Ceilings, TenantPolicy};
use crate::pipeline::dispatch::{Dispatcher, input_of};
use crate::pipeline::event::{self, Topics, TransformId};
use crate::pipeline::registry::{self, RegistryError, RouteSpec};
use crate::pipeline::route::{BUILTIN_PREFIX, DEFAULT_TRANSFORM, RouteLimits, RouteTable};
use crate::pipeline::transform::{self, Limits, LoadError, Runtime, Transform};
use crate::store::ceilings::Deleted;
use crate::store::{
    ApiTokenRow, DeadLetterFilter, DeadLetterRow, LoggedEvent, RouteRow, Store, StoreError,
};
use crate::support::vault::Secret;

pub mod body;
pub mod connection_actions;
mod connections;
mod shadow;
pub mod webhooks;

use body::{
    ConnectionItem, ConnectionList, ConnectionWebhooks, DeadLetterList, DeadLettersQuery,
    DeletedTransform, DryRunBody, DryRunError, DryRunResult, DryRunTransform, ErrorBody, EventItem,
    EventsPage, EventsQuery, LimitQuery, PromoteBody, ProviderItem, ProviderList, PushQuery,
    PushedTransform, ReplayBody, Replayed, RouteBody, RouteHistory, RouteList, TransformDetail,
    TransformItem, TransformList, WorkspaceCeilings,
};

/// Largest component accepted by `POST /admin/v1/transforms`.
pub const MAX_COMPONENT_BYTES: usize = 50 * 1024 * 1024;

/// Every token starts with this, so a leaked one is easy to recognise (and
/// to scan for); the rest is 32 random bytes, base64url without padding.
pub const TOKEN_PREFIX: &str = "ifx_";

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
    let given = crate::error::bearer_token(headers, "an admin bearer token is required")?;
    if let Some(configured) = &state.admin_token
        && crate::support::constant_time::eq(given.as_bytes(), configured.expose())
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

/// The document's frame; the paths and schemas come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ionflux gateway admin API",
        description = "Transforms, routes, dead letters, the event log and dry runs of an \
                       ionflux gateway, on its admin listener. Every call but this document's \
                       needs `Authorization: Bearer <token>`: an operator token may do \
                       everything, a workspace token only what is its workspace's. Every error \
                       body is `{code, message}`.",
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token (`IONFLUX_ADMIN_TOKEN`, or `tokens create \
                         --operator`) or a workspace token (`tokens create --workspace`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The admin API's routes and their document, built together.
fn build() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi))
        .routes(
            routes!(list_transforms, push_transform)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .routes(routes!(show_transform, delete_transform))
        .routes(routes!(show_ceilings, set_ceilings))
        .routes(routes!(list_routes, set_route))
        .routes(routes!(promote_route))
        .routes(routes!(route_history))
        .routes(routes!(shadow::shadow_runs))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
        .routes(routes!(list_events))
        .routes(routes!(dry_run))
        .routes(routes!(list_providers))
        .routes(routes!(list_connections, connections::add_connection))
        .routes(routes!(connection_webhooks))
        // ---- connection actions ----
        .routes(routes!(connection_actions::show_connection))
        .routes(routes!(connection_actions::disconnect))
        .routes(routes!(connection_actions::pause))
        .routes(routes!(connection_actions::resume))
        .routes(routes!(connection_actions::reregister_webhooks))
        .routes(routes!(connection_actions::refresh))
        // ---- webhooks ----
        .routes(routes!(webhooks::list_webhooks))
        .routes(routes!(webhooks::show_webhook))
        .split_for_parts();
    document_common_errors(&mut doc);
    (router, doc)
}

pub fn router() -> axum::Router<AppState> {
    build().0
}

/// The OpenAPI document of the admin API, as served.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| build().1);
    &DOC
}

/// What every authenticated call may answer besides its own errors, said
/// once here rather than on each handler.
fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        // An operation with its own `security` is the public document.
        for op in operations.into_iter().flatten() {
            if op.security.is_some() {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| error("`unauthorized`: no bearer token, or not a valid one"));
            responses
                .entry("503".into())
                .or_insert_with(|| error("`store_unavailable`: the database cannot be reached"));
        }
    }
}

/// The document is public: it describes the API, not anyone's data.
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)),
)]
async fn openapi() -> Response {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        openapi_document()
            .to_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str()).into_response()
}

// ---- transforms ------------------------------------------------------------

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
            // Built by build.rs from this checkout's guest SDK.
            world: Some(transform::World::LATEST.as_str().to_string()),
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
    let worlds = store.transform_worlds().await.map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|t| TransformItem {
            reference: t.digest.clone(),
            world: worlds.get(&t.digest).cloned(),
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

/// The built-ins and the stored versions the caller may see.
#[utoipa::path(
    get,
    path = "/admin/v1/transforms",
    tag = "transforms",
    responses((status = 200, body = TransformList)),
)]
async fn list_transforms(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TransformList>, ApiError> {
    let mut transforms = BUILTINS.clone();
    transforms.extend(visible_transforms(&state.store, &principal).await?);
    Ok(Json(TransformList { transforms }))
}

/// Uploads a component: it must compile, implement the transform world and
/// survive a smoke call; it is stored as an immutable version named by its
/// digest. A workspace's uploads are held to its quota.
#[utoipa::path(
    post,
    path = "/admin/v1/transforms",
    tag = "transforms",
    params(PushQuery),
    request_body(
        description = "The component's .wasm bytes (at most 50 MiB)",
        content(("application/wasm")),
    ),
    responses(
        (status = 200, body = PushedTransform),
        (status = 400, description = "`bad_request` (no name, empty body), `invalid_name`", body = ErrorBody),
        (status = 409, description = "`upload_quota_exceeded`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`not_a_component`, `compile_failed`, `wrong_world`, `smoke_test_failed`", body = ErrorBody),
    ),
)]
async fn push_transform(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<PushQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushedTransform>, ApiError> {
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
    tracing::info!(digest = %pushed.digest, name = %pushed.name, world = %pushed.world,
        actor = principal.actor(), "transform uploaded over the admin API");
    Ok(Json(PushedTransform {
        reference: pushed.digest.clone(),
        digest: pushed.digest,
        name: pushed.name,
        size: pushed.size,
        world: Some(pushed.world.as_str().to_string()),
    }))
}

/// One version (by digest, unique prefix of 12+ hex digits, or
/// `builtin:NAME`) and the routes running it.
#[utoipa::path(
    get,
    path = "/admin/v1/transforms/{reference}",
    tag = "transforms",
    params(("reference" = String, Path, description = "A digest, a unique prefix of 12+ hex digits, or `builtin:NAME`")),
    responses(
        (status = 200, body = TransformDetail),
        (status = 404, description = "`unknown_transform`", body = ErrorBody),
        (status = 422, description = "`ambiguous_transform`", body = ErrorBody),
    ),
)]
async fn show_transform(
    State(state): State<AppState>,
    principal: Principal,
    reference: Result<Path<String>, PathRejection>,
) -> Result<Json<TransformDetail>, ApiError> {
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
    let uploaded_by_workspaces = if principal.workspace().is_none() && !item.builtin {
        Some(
            state
                .store
                .transform_owners(&item.digest)
                .await
                .map_err(store_error)?,
        )
    } else {
        None
    };
    Ok(Json(TransformDetail {
        transform: item,
        routes,
        uploaded_by_workspaces,
    }))
}

/// `DELETE /admin/v1/transforms/{reference}`: a workspace gives up a version
/// it uploaded (its bytes go once nobody owns or runs them); an operator
/// deletes any version. Refused while a route the caller can see runs it.
#[utoipa::path(
    delete,
    path = "/admin/v1/transforms/{reference}",
    tag = "transforms",
    params(("reference" = String, Path, description = "A digest or a unique prefix of 12+ hex digits")),
    responses(
        (status = 200, body = DeletedTransform),
        (status = 404, description = "`unknown_transform`", body = ErrorBody),
        (status = 409, description = "`transform_in_use`, `builtin_transform`", body = ErrorBody),
        (status = 422, description = "`ambiguous_transform`", body = ErrorBody),
    ),
)]
async fn delete_transform(
    State(state): State<AppState>,
    principal: Principal,
    reference: Result<Path<String>, PathRejection>,
) -> Result<Json<DeletedTransform>, ApiError> {
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
            Ok(Json(DeletedTransform { deleted: digest }))
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

fn above_ceiling(workspace: &str, e: crate::pipeline::ceilings::AboveCeiling) -> ApiError {
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

async fn ceilings_body(state: &AppState, workspace: &str) -> Result<WorkspaceCeilings, ApiError> {
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
    Ok(WorkspaceCeilings {
        workspace_id: workspace.to_string(),
        ceilings: overrides.over(&tenants.ceilings),
        overrides,
        defaults: tenants.ceilings,
        updated_at: row.map(|r| r.updated_at),
        upload_quota: tenants.upload_quota,
        uploads,
    })
}

/// `GET /admin/v1/workspaces/{workspace_id}/ceilings`: an operator reads any
/// workspace's, a workspace token its own.
#[utoipa::path(
    get,
    path = "/admin/v1/workspaces/{workspace_id}/ceilings",
    tag = "workspaces",
    params(("workspace_id" = String, Path)),
    responses(
        (status = 200, body = WorkspaceCeilings),
        (status = 400, description = "`bad_request`: not a workspace id", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace", body = ErrorBody),
    ),
)]
async fn show_ceilings(
    State(state): State<AppState>,
    principal: Principal,
    workspace_id: Result<Path<String>, PathRejection>,
) -> Result<Json<WorkspaceCeilings>, ApiError> {
    let workspace = workspace_param(workspace_id)?;
    principal.may_touch(&workspace)?;
    Ok(Json(ceilings_body(&state, &workspace).await?))
}

/// `PUT /admin/v1/workspaces/{workspace_id}/ceilings`: operators only. The
/// body names the ceilings to set; one left out (or null) takes the
/// configured default again. Applies to routes already saved, at once on
/// this replica and within a route poll on the others.
#[utoipa::path(
    put,
    path = "/admin/v1/workspaces/{workspace_id}/ceilings",
    tag = "workspaces",
    params(("workspace_id" = String, Path)),
    request_body = CeilingOverrides,
    responses(
        (status = 200, body = WorkspaceCeilings),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden`: operators only", body = ErrorBody),
        (status = 422, description = "`invalid_ceilings`", body = ErrorBody),
    ),
)]
async fn set_ceilings(
    State(state): State<AppState>,
    principal: Principal,
    workspace_id: Result<Path<String>, PathRejection>,
    body: Result<Json<CeilingOverrides>, JsonRejection>,
) -> Result<Json<WorkspaceCeilings>, ApiError> {
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

/// The routing table: an operator's whole, a workspace's own routes.
#[utoipa::path(
    get,
    path = "/admin/v1/routes",
    tag = "routes",
    responses((status = 200, body = RouteList)),
)]
async fn list_routes(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<RouteList>, ApiError> {
    let routes = scoped_routes(&state.store, &principal).await?;
    Ok(Json(RouteList { routes }))
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

/// Creates or replaces the route of a scope and topic pattern; it applies
/// to the next webhook.
#[utoipa::path(
    put,
    path = "/admin/v1/routes",
    tag = "routes",
    request_body = RouteBody,
    responses(
        (status = 200, description = "The route as saved", body = RouteRow),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden` (another workspace), `limit_above_ceiling`", body = ErrorBody),
        (status = 422, description = "`unknown_transform`, `ambiguous_transform`, `invalid_route`", body = ErrorBody),
    ),
)]
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
    known_provider(&state, &body.provider)?;
    let spec = RouteSpec {
        provider: body.provider,
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

/// A route for a provider this gateway does not take webhooks from would
/// never match: refused, so a typo cannot pass for a route.
fn known_provider(state: &AppState, provider: &str) -> Result<(), ApiError> {
    match state.providers.get(provider) {
        Some(_) => Ok(()),
        None => Err(bad_request(format!("no provider is called {provider:?}"))),
    }
}

/// Makes a route's shadow its transform.
#[utoipa::path(
    post,
    path = "/admin/v1/routes/promote",
    tag = "routes",
    request_body = PromoteBody,
    responses(
        (status = 200, description = "The route as saved", body = RouteRow),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace", body = ErrorBody),
        (status = 422, description = "`invalid_route`: no such route, or it has no shadow", body = ErrorBody),
    ),
)]
async fn promote_route(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<PromoteBody>, JsonRejection>,
) -> Result<Json<RouteRow>, ApiError> {
    let body = json_body(body)?;
    let workspace_id = route_scope(&principal, body.workspace_id, "promoting a route")?;
    let row = registry::promote(
        &state.store,
        &body.provider,
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

/// How far back a workspace's history is searched; the table is shared and
/// small (one row per route change), so filtering after the read is fine.
const HISTORY_SCAN: i64 = 10_000;

/// Route changes, newest first (a workspace's own).
#[utoipa::path(
    get,
    path = "/admin/v1/routes/history",
    tag = "routes",
    params(LimitQuery),
    responses(
        (status = 200, body = RouteHistory),
        (status = 400, description = "`bad_request`", body = ErrorBody),
    ),
)]
async fn route_history(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> Result<Json<RouteHistory>, ApiError> {
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
    Ok(Json(RouteHistory { history: changes }))
}

// ---- dead letters ----------------------------------------------------------

/// Unresolved dead letters, oldest first (a workspace's own), by reason and
/// time when asked.
#[utoipa::path(
    get,
    path = "/admin/v1/dead-letters",
    tag = "dead letters",
    params(DeadLettersQuery),
    responses(
        (status = 200, body = DeadLetterList),
        (status = 400, description = "`bad_request`", body = ErrorBody),
    ),
)]
async fn list_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<DeadLettersQuery>, QueryRejection>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let filter = DeadLetterFilter {
        reason_code: q.reason.filter(|r| !r.is_empty()),
        since: webhooks::instant("after", q.after.as_deref())?,
        until: webhooks::instant("before", q.before.as_deref())?,
    };
    let rows: Vec<DeadLetterRow> = state
        .store
        .find_dead_letters(principal.workspace(), &filter, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(DeadLetterList { dead_letters: rows }))
}

/// Runs dead letters again through today's routes; what now succeeds is
/// published with its original event id.
#[utoipa::path(
    post,
    path = "/admin/v1/dead-letters/replay",
    tag = "dead letters",
    request_body = ReplayBody,
    responses(
        (status = 200, body = Replayed),
        (status = 400, description = "`bad_request`: both `ids` and `all`, or none of `ids`, `all` and a filter; a time that is neither RFC 3339 nor epoch ms", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace's; nothing was replayed", body = ErrorBody),
    ),
)]
async fn replay_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let body = json_body(body)?;
    let store = &state.store;
    let filter = DeadLetterFilter {
        reason_code: body.reason.filter(|r| !r.is_empty()),
        since: webhooks::instant("since", body.since.as_deref())?,
        until: webhooks::instant("until", body.until.as_deref())?,
    };
    // Filters alone select every letter they match.
    let filtered = filter != DeadLetterFilter::default();
    let ids = match (body.ids, body.all) {
        (Some(_), true) => return Err(bad_request("give either `ids` or `all: true`, not both")),
        (None, false) if !filtered => {
            return Err(bad_request(
                "give `ids`, `all: true`, or a filter (`reason`, `since`, `until`)",
            ));
        }
        (ids, _) => ids,
    };
    // The workspace is checked inside the replay's own transaction: a check
    // made before it could pass on an id another workspace's letter takes
    // a moment later.
    let outcome = store
        .replay_dead_letters_matching(ids.as_deref(), principal.workspace(), &filter)
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
    Ok(Json(Replayed { replayed }))
}

// ---- events ----------------------------------------------------------------

/// The embedded event log, oldest first (a workspace's own events).
#[utoipa::path(
    get,
    path = "/admin/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, body = EventsPage),
        (status = 400, description = "`bad_request`", body = ErrorBody),
    ),
)]
async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.clamp(1, 1000);
    let store = &state.store;
    let rows: Vec<LoggedEvent> = match (principal.workspace(), q.newest) {
        (None, false) => store.events_after(q.after, limit).await,
        (workspace, true) => store.events_tail_in(workspace, limit).await,
        (Some(ws), false) => store.workspace_events_after(ws, q.after, limit).await,
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

/// Runs a stored webhook through a transform and answers with the events it
/// would become, exactly as the dispatcher would build them (same ids), but
/// publishes and records nothing.
#[utoipa::path(
    post,
    path = "/admin/v1/webhooks/{inbox_id}/dry-run",
    tag = "webhooks",
    params(("inbox_id" = i64, Path, description = "A stored webhook")),
    request_body(content = DryRunBody, description = "May be empty: all defaults"),
    responses(
        (status = 200, description = "The events, or why the transform failed", body = DryRunResult),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden` (another workspace's webhook), `limit_above_ceiling`", body = ErrorBody),
        (status = 404, description = "`unknown_webhook`", body = ErrorBody),
        (status = 422, description = "`unknown_transform`, `ambiguous_transform`, `invalid_config`, `transform_unavailable`", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/admin/v1/connections/{connection_id}/webhooks",
    tag = "connections",
    params(("connection_id" = String, Path)),
    responses(
        (status = 200, body = ConnectionWebhooks),
        (status = 403, description = "`forbidden`: another workspace's", body = ErrorBody),
        (status = 404, description = "`unknown_connection`", body = ErrorBody),
    ),
)]
async fn connection_webhooks(
    principal: Principal,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConnectionWebhooks>, ApiError> {
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
    let registrations = state
        .store
        .webhook_registrations(&id)
        .await
        .map_err(store_error)?;
    Ok(Json(ConnectionWebhooks {
        connection_id: conn.id,
        account: conn.account,
        registrations,
    }))
}

/// `GET /admin/v1/providers`: the platforms this gateway takes webhooks
/// from, and how a connection of each is made. Any token may read it.
#[utoipa::path(
    get,
    path = "/admin/v1/providers",
    tag = "connections",
    responses((status = 200, body = ProviderList)),
)]
async fn list_providers(
    _principal: Principal,
    State(state): State<AppState>,
) -> Json<ProviderList> {
    let providers = state
        .providers
        .iter()
        .map(|p| ProviderItem {
            id: p.id().into(),
            default_transform: p.default_transform().into(),
            set_up: p
                .set_up()
                .iter()
                .map(|s| {
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect(),
        })
        .collect();
    Json(ProviderList { providers })
}

/// `GET /admin/v1/connections`: an operator's every connection, a
/// workspace's own.
#[utoipa::path(
    get,
    path = "/admin/v1/connections",
    tag = "connections",
    responses((status = 200, body = ConnectionList)),
)]
async fn list_connections(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<ConnectionList>, ApiError> {
    let connections = connections(&state.store, principal.workspace())
        .await
        .map_err(store_error)?;
    Ok(Json(ConnectionList { connections }))
}

/// The connections (of one workspace, or all) as `connections list` and
/// the API show them: how each was made and whether it holds tokens,
/// never the secrets or tokens themselves.
pub async fn connections(
    store: &Store,
    workspace: Option<&str>,
) -> Result<Vec<ConnectionItem>, StoreError> {
    // One query for them all (the connection API's detail rows).
    let mut items = Vec::new();
    for c in store.connection_details(workspace).await? {
        items.push(ConnectionItem {
            webhook_path: crate::pipeline::connection::webhook_path(
                &c.provider,
                &c.secure_path_identifier,
            ),
            auth_method: c.auth_method,
            has_tokens: c.has_access_token != 0 || c.has_refresh_token != 0,
            paused: c.paused_at.is_some(),
            last_webhook_at: c.last_webhook_at,
            connection_id: c.id,
            provider: c.provider,
            account: c.account,
            workspace_id: c.workspace_id,
            brand_id: c.brand_id,
            secure_path_identifier: c.secure_path_identifier,
            status: c.status,
        });
    }
    Ok(items)
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

    fn document() -> serde_json::Value {
        serde_json::to_value(openapi_document()).unwrap()
    }

    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in found {
            let pointer = r.strip_prefix('#').expect("local references only");
            assert!(doc.pointer(pointer).is_some(), "{r} resolves");
        }
    }

    #[test]
    fn every_operation_documents_its_parameters_bodies_errors_and_security() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            let templated: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{method} {path}");
                let params: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(params, templated, "{what}: path parameters");
                let responses = op["responses"].as_object().unwrap();
                let ok = &responses["200"]["content"]["application/json"]["schema"];
                assert!(ok.is_object(), "{what}: a 200 body");
                if path == "/admin/v1/openapi.json" {
                    assert_eq!(op["security"], serde_json::json!([{}]), "public");
                    continue;
                }
                assert!(op.get("security").is_none(), "{what}: the bearer scheme");
                for (status, response) in responses {
                    if status != "200" {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{what} {status}"
                        );
                    }
                }
                for status in ["401", "503"] {
                    assert!(responses.contains_key(status), "{what}: {status}");
                }
                // The connection actions take no body: the path says it all.
                let action = path.starts_with("/admin/v1/connections/{connection_id}/")
                    && path != "/admin/v1/connections/{connection_id}/webhooks";
                if ["put", "post"].contains(&method.as_str()) && !action {
                    assert!(op["requestBody"].is_object(), "{what}: a request body");
                }
            }
        }
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
