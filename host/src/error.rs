//! How an HTTP error looks to the caller: a status plus `{"code", "message"}`.
//!
//! Below every router, so that a provider's own routes (Shopify's OAuth
//! install) answer the same way without importing the API layer.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// The token of an `Authorization: Bearer <token>` header, or 401
/// `unauthorized`: `missing` when there is no header, a fixed message when
/// it is not a bearer token. The one reader of bearer tokens, so every
/// plane refuses the same malformed headers the same way.
pub fn bearer_token<'a>(headers: &'a HeaderMap, missing: &str) -> Result<&'a str, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized(missing))?;
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
    Ok(given)
}
