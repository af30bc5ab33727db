//! The HTTP surface: webhook intake, health, and the admin API (in [`admin`]).
//! Handlers only translate between HTTP and the modules that decide; every
//! error leaves as a status plus `{"code", "message"}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tracing::Instrument;

use crate::api::admin::{self, AdminState};
use crate::pipeline::inbox::{Inbox, IntakeError};
use crate::pipeline::publish::Sink;
use crate::providers::shopify::headers::HeaderError;
use crate::store::Store;
use crate::support::vault::Secret;

mod conn;
pub use conn::{HttpConfig, serve};

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
    pub oauth: Option<Arc<crate::providers::shopify::oauth::OAuth>>,
    /// `GET /integrations/shopify/brands/{brand_id}/shop-details`, behind
    /// the service token.
    pub shop_details: Arc<crate::providers::shopify::shop_details::ShopDetails>,
    /// `/ready` fails while the oldest pending webhook is older than this.
    pub max_backlog_age: Option<Duration>,
}

/// The provider of the only intake endpoint there is, as metrics label it.
const SHOPIFY: &str = "shopify";

/// The public listener: what Shopify, merchants' browsers and other services
/// reach. Nothing here needs an operator, so nothing here can act as one.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let webhooks = Router::new()
        .route(
            "/integrations/shopify/webhooks/{secure_path_identifier}",
            post(
                move |state: State<AppState>, path: Path<String>, request: Request| {
                    shopify_webhook(state, path, request, max_body_bytes)
                },
            ),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(observe_webhook));
    probes(
        Router::new()
            .merge(webhooks)
            .merge(crate::providers::shopify::oauth::router())
            .merge(crate::providers::shopify::shop_details::router()),
    )
    .with_state(state)
}

/// The admin listener: the admin API and `/metrics`, apart from the public
/// one so that a proxy in front of the public port never exposes them.
pub fn admin_router(state: AppState) -> Router {
    probes(
        Router::new()
            .route("/metrics", get(metrics))
            .merge(admin::router()),
    )
    .with_state(state)
}

/// What both listeners answer: the probes, and JSON for everything else.
fn probes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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

/// Times and traces one webhook request from the moment it comes in, before
/// its body is read (a slow upload is part of what Shopify waits for), to
/// the answer. The span's fields are filled in by [`Inbox::accept`] as it
/// learns them; the path identifier is never one of them, since knowing it
/// is half of what it takes to post webhooks.
async fn observe_webhook(request: Request, next: Next) -> Response {
    let started = Instant::now();
    crate::support::metrics::webhook_received(SHOPIFY);
    let span = tracing::info_span!(
        "webhook.intake",
        provider = SHOPIFY,
        connection_id = tracing::field::Empty,
        topic = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        inbox_id = tracing::field::Empty,
        duplicate = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    if response.status().is_success() {
        crate::support::metrics::webhook_acked(SHOPIFY, started.elapsed());
    }
    response
}

async fn shopify_webhook(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    request: Request,
    max_body_bytes: usize,
) -> Result<Json<AcceptedBody>, ApiError> {
    intake(&state, &identifier, request, max_body_bytes)
        .await
        .inspect_err(|e| crate::support::metrics::webhook_rejected(SHOPIFY, e.code))
}

async fn intake(
    state: &AppState,
    identifier: &str,
    request: Request,
    max_body_bytes: usize,
) -> Result<Json<AcceptedBody>, ApiError> {
    // Whom the path names, before a byte of the body is read: a stranger
    // posting megabytes to a made-up path is refused on its headers, and
    // cannot make us take in (or wait for) the body first. The lookup is
    // the inbox's cached one, so a genuine webhook pays nothing for it.
    let recipient = state.inbox.recipient(identifier, request.headers()).await?;
    // A body announced as too large is refused before it is read, too
    // (`DefaultBodyLimit` alone only notices once the limit is crossed).
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is over the size limit",
        ));
    }
    let (mut parts, body) = request.into_parts();
    // The body extractor needs no headers (the length it checks is the
    // body's own), and moving them out spares a copy.
    let headers = std::mem::take(&mut parts.headers);
    // Through the extractor, so that `DefaultBodyLimit` still answers 413.
    let body = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|r| body_error(r, "the body is over the size limit"))?;
    let accepted = state.inbox.accept_for(recipient, &headers, &body).await?;
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

/// Unauthenticated, like `/health`: scrapers seldom carry bearer tokens, and
/// nothing here names a shop, a brand or a secret (labels are provider,
/// topic, reason, transform, sink and outcome only). Where the counts
/// themselves are sensitive, keep `/metrics` off the public edge.
async fn metrics() -> Response {
    match crate::support::metrics::render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "metrics_unavailable", e).into_response()
        }
    }
}

/// Anyone who reaches a listener may call this, as often as they like, so
/// it costs one indexed row read (never a count of the backlog) and answers
/// in fixed words: what went wrong goes to the log, not to the caller.
async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store_unavailable = |e: crate::store::StoreError| {
        tracing::warn!(error = %e, "readiness: the store is not reachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is not reachable",
        )
    };
    // One query per probe: the oldest pending row doubles as the ping.
    // Checked before the sink, because a backlog going stale is what this
    // probe exists to catch whatever the cause, and because the sink's check
    // can take seconds against a dead broker.
    let oldest = state
        .store
        .oldest_pending_received_at()
        .await
        .map_err(store_unavailable)?;
    if let (Some(limit), Some(oldest)) = (state.max_backlog_age, oldest) {
        let age =
            Duration::from_millis(crate::store::now_ms().saturating_sub(oldest).max(0) as u64);
        if age > limit {
            tracing::warn!(?age, ?limit, "readiness: the backlog is too old");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backlog_too_old",
                format!("the oldest pending webhook is older than {limit:?}"),
            ));
        }
    }
    // The event log's readiness is the store's, which was just checked: one
    // query per probe is enough.
    let sink_is_store = matches!(*state.sink, Sink::Log(_));
    if !sink_is_store && !state.sink.ready(Duration::from_secs(2)).await {
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
