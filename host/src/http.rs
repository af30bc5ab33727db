//! The HTTP surface: webhook intake, health, and the read-only admin API.
//! Handlers only translate between HTTP and the modules that decide; every
//! error leaves as a status plus `{"code", "message"}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::inbox::{Inbox, IntakeError};
use crate::publish::Sink;
use crate::store::Store;
use crate::vault::Secret;
use crate::webhook::HeaderError;

pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub inbox: Arc<Inbox>,
    pub store: Store,
    pub sink: Arc<Sink>,
    /// When set, the admin API wants `Authorization: Bearer <token>`; when
    /// not, it answers loopback clients only.
    pub admin_token: Option<Secret>,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let webhooks = Router::new()
        .route(
            "/integrations/shopify/webhooks/{secure_path_identifier}",
            post(shopify_webhook),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes));
    Router::new()
        .merge(webhooks)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/admin/v1/events", get(admin_events))
        .route("/admin/v1/dead-letters", get(admin_dead_letters))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An error as the API shows it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            code: self.code,
            message: &self.message,
        });
        (self.status, body).into_response()
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        let (status, code) = match &e {
            IntakeError::UnknownConnection => (StatusCode::FORBIDDEN, "unknown_connection"),
            IntakeError::Inactive(_) => (StatusCode::FORBIDDEN, "connection_inactive"),
            IntakeError::ShopMismatch { .. } => (StatusCode::FORBIDDEN, "shop_mismatch"),
            IntakeError::InvalidHmac => (StatusCode::UNAUTHORIZED, "invalid_hmac"),
            IntakeError::Header(HeaderError::Missing(_)) => {
                (StatusCode::BAD_REQUEST, "missing_header")
            }
            IntakeError::Header(HeaderError::Invalid(..)) => {
                (StatusCode::BAD_REQUEST, "invalid_header")
            }
            // Shopify retries anything but 2xx, so "try later" is honest here.
            IntakeError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            IntakeError::Vault(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "webhook intake failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

#[derive(Serialize)]
struct AcceptedBody {
    status: &'static str,
    inbox_id: i64,
}

async fn shopify_webhook(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AcceptedBody>, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "payload_too_large",
                "the body is over the size limit",
            )
        } else {
            ApiError::new(status, "bad_body", rejection.body_text())
        }
    })?;
    let accepted = state.inbox.accept(&identifier, &headers, &body).await?;
    Ok(Json(AcceptedBody {
        status: if accepted.duplicate {
            "duplicate"
        } else {
            "accepted"
        },
        inbox_id: accepted.inbox_id,
    }))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if let Err(e) = state.store.ping().await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ));
    }
    if !state.sink.ready(Duration::from_secs(2)).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sink_unavailable",
            format!("the {} sink is not reachable", state.sink.name()),
        ));
    }
    Ok(Json(
        serde_json::json!({"status": "ready", "sink": state.sink.name()}),
    ))
}

fn authorize_admin(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match &state.admin_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if constant_time_eq(given.as_bytes(), token.expose()) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid admin bearer token is required",
                ))
            }
        }
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API answers loopback clients only unless IONFLUX_ADMIN_TOKEN is set",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Comparing digests keeps the time independent of where the inputs
    // differ and of their lengths.
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
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

async fn admin_events(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    authorize_admin(&state, peer, &headers)?;
    let limit = q.limit.clamp(1, 1000);
    let rows = state
        .store
        .events_after(q.after, limit)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
        })?;
    let next_after = rows.last().map_or(q.after, |r| r.seq);
    let events = rows
        .into_iter()
        .map(|r| {
            Ok(EventItem {
                seq: r.seq,
                topic: r.topic,
                event: RawValue::from_string(r.payload).map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(EventsPage { events, next_after }))
}

async fn admin_dead_letters(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize_admin(&state, peer, &headers)?;
    let rows = state.store.dead_letters(1000).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(serde_json::json!({ "dead_letters": rows })))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
