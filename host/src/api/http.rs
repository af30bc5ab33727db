//! The HTTP surface: webhook intake, health, and the admin API (in
//! [`super::admin`]).
//! Handlers only translate between HTTP and the modules that decide; every
//! error leaves as a status plus `{"code", "message"}`.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tracing::Instrument;

pub use super::AppState;
pub use crate::error::{ApiError, body_error};

use crate::api::admin;
use crate::pipeline::inbox::IntakeError;
use crate::pipeline::provider::{Providers, Rejected};
use crate::pipeline::publish::Sink;

mod conn;
pub use conn::{HttpConfig, serve};

pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Where every provider's webhooks come in: the provider's URL segment and
/// the connection's secret path identifier.
pub const WEBHOOK_PATH: &str = "/integrations/{provider}/webhooks/{secure_path_identifier}";

/// The public listener: what the platforms, merchants' browsers and other
/// services reach. Nothing here needs an operator, so nothing here can act
/// as one. `providers` are the platforms' own routes (an OAuth install),
/// finished, merged as they are.
pub fn router(state: AppState, max_body_bytes: usize, providers: Router) -> Router {
    let known = state.providers.clone();
    let webhooks = Router::new()
        .route(
            WEBHOOK_PATH,
            post(
                move |state: State<AppState>, path: Path<(String, String)>, request: Request| {
                    webhook(state, path, request, max_body_bytes)
                },
            ),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            observe_webhook(known.clone(), request, next)
        }));
    probes(Router::new().merge(webhooks))
        .with_state(state)
        .merge(providers)
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

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        let (status, code) = match &e {
            IntakeError::NoSuchEndpoint => (StatusCode::NOT_FOUND, "not_found"),
            IntakeError::UnknownConnection => (StatusCode::FORBIDDEN, "unknown_connection"),
            IntakeError::Inactive(_) => (StatusCode::FORBIDDEN, "connection_inactive"),
            IntakeError::AccountMismatch { codes, .. } => {
                (StatusCode::FORBIDDEN, codes.account_mismatch)
            }
            IntakeError::Rejected { why, codes } => match why {
                Rejected::Signature | Rejected::Stale => {
                    (StatusCode::UNAUTHORIZED, codes.signature)
                }
                Rejected::MissingHeader(_) => (StatusCode::BAD_REQUEST, "missing_header"),
                Rejected::InvalidHeader(..) => (StatusCode::BAD_REQUEST, "invalid_header"),
                Rejected::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            },
            // Platforms retry anything but 2xx, so "try later" is honest here.
            IntakeError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            IntakeError::Vault(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "webhook intake failed");
        }
        let message = match e {
            // Never a hint that the path exists for another provider.
            IntakeError::NoSuchEndpoint => "no such endpoint".to_string(),
            e => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

#[derive(Serialize)]
struct AcceptedBody {
    status: &'static str,
    /// None for a ping, which is answered and never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    inbox_id: Option<i64>,
}

/// The provider a webhook path names, as metrics label it: only registered
/// ones, so that made-up paths cannot grow the label set.
fn provider_label(providers: &Providers, path: &str) -> &'static str {
    let segment = path
        .strip_prefix("/integrations/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    providers.get(segment).map_or("unknown", |p| p.id())
}

/// Times and traces one webhook request from the moment it comes in, before
/// its body is read (a slow upload is part of what the platform waits for),
/// to the answer. The span's fields are filled in by
/// [`crate::pipeline::inbox::Inbox::accept`] as it learns them; the path
/// identifier is never one of them, since knowing it is half of what it
/// takes to post webhooks.
async fn observe_webhook(providers: Providers, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let provider = provider_label(&providers, request.uri().path());
    crate::support::metrics::webhook_received(provider);
    let span = tracing::info_span!(
        "webhook.intake",
        provider,
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
        crate::support::metrics::webhook_acked(provider, started.elapsed());
    }
    response
}

async fn webhook(
    State(state): State<AppState>,
    Path((provider, identifier)): Path<(String, String)>,
    request: Request,
    max_body_bytes: usize,
) -> Result<Json<AcceptedBody>, ApiError> {
    let label = provider_label(&state.providers, request.uri().path());
    intake(&state, &provider, &identifier, request, max_body_bytes)
        .await
        .inspect_err(|e| crate::support::metrics::webhook_rejected(label, e.code))
}

async fn intake(
    state: &AppState,
    provider: &str,
    identifier: &str,
    request: Request,
    max_body_bytes: usize,
) -> Result<Json<AcceptedBody>, ApiError> {
    // Whom the path names, before a byte of the body is read: a stranger
    // posting megabytes to a made-up path is refused on its headers, and
    // cannot make us take in (or wait for) the body first. The lookup is
    // the inbox's cached one, so a genuine webhook pays nothing for it.
    let recipient = state
        .inbox
        .recipient(provider, identifier, request.headers())
        .await?;
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
    let Some(accepted) = state.inbox.accept_for(recipient, &headers, &body).await? else {
        return Ok(Json(AcceptedBody {
            status: "ping",
            inbox_id: None,
        }));
    };
    Ok(Json(AcceptedBody {
        status: if accepted.duplicate {
            "duplicate"
        } else {
            "accepted"
        },
        inbox_id: Some(accepted.inbox_id),
    }))
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
