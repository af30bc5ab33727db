//! The HTTP surface: webhook intake, health, and the admin API (in [`admin`]).
//! Handlers only translate between HTTP and the modules that decide; every
//! error leaves as a status plus `{"code", "message"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::admin::{self, AdminState};
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
    /// An operator token for the admin API, beside the stored ones; see
    /// [`admin`] for who may do what.
    pub admin_token: Option<Secret>,
    pub admin: AdminState,
    /// The Shopify OAuth install; None: its routes answer 404
    /// `oauth_not_configured`.
    pub oauth: Option<Arc<crate::oauth::OAuth>>,
    /// `GET /integrations/shopify/brands/{brand_id}/shop-details`, behind
    /// the service token.
    pub shop_details: Arc<crate::shop_details::ShopDetails>,
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
        .merge(admin::router())
        .merge(crate::oauth::router())
        .merge(crate::shop_details::router())
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
    let body = body.map_err(|r| body_error(r, "the body is over the size limit"))?;
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

/// A body that could not be read: 413 with `too_large` when it was over the
/// limit, else the extractor's own status.
pub fn body_error(rejection: BytesRejection, too_large: impl Into<String>) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", too_large)
    } else {
        ApiError::new(status, "bad_body", rejection.body_text())
    }
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
