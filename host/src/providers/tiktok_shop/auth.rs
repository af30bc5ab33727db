//! TikTok Shop's authorisation for partner apps: the seller's authorisation
//! code for tokens, and the refresh that keeps them alive.
//!
//! - `GET {base}/api/v2/token/get?app_key&app_secret&auth_code&grant_type=authorized_code`
//! - `GET {base}/api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token`
//!
//! Both answer the envelope `{code, message, request_id, data}`, where a
//! `code` other than 0 is an error whatever the HTTP status. In `data`,
//! `access_token_expire_in` and `refresh_token_expire_in` are, despite their
//! names, absolute unix times in seconds; they become [`DateTime<Utc>`] here.
//!
//! The base is `https://auth.tiktok-shops.com` ([`DEFAULT_AUTH_BASE`]) and
//! can be pointed at a local fake. TikTok's documented calls carry the app
//! secret and the code or refresh token in the query string: that is their
//! contract, so this client keeps those URLs out of every error (reqwest's
//! `without_url`) and out of logs, and follows no redirect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::providers::outbound::{self, clip};
use crate::support::vault::Secret;

pub const DEFAULT_AUTH_BASE: &str = "https://auth.tiktok-shops.com";

#[derive(Debug, thiserror::Error)]
pub enum TikTokAuthError {
    /// TikTok answered its envelope with `code != 0`: a spent or unknown
    /// authorisation code, a revoked refresh token, wrong app credentials.
    #[error("tiktok shop refused ({code}): {message}")]
    Api {
        code: i64,
        message: String,
        request_id: Option<String>,
    },
    /// An HTTP error status without TikTok's envelope.
    #[error("tiktok shop answered {status}")]
    Status { status: u16 },
    #[error("calling tiktok shop: {0}")]
    Transport(String),
    #[error("tiktok shop's answer was not understood: {0}")]
    Decode(String),
    #[error("http client: {0}")]
    Client(String),
}

impl TikTokAuthError {
    /// Worth trying again: the network, timeouts, throttling and TikTok's own
    /// failures. An `Api` error is TikTok's verdict on what was sent.
    pub fn is_transient(&self) -> bool {
        match self {
            TikTokAuthError::Status { status } => *status == 429 || *status >= 500,
            TikTokAuthError::Transport(_) => true,
            _ => false,
        }
    }
}

pub(super) fn transport(e: reqwest::Error) -> TikTokAuthError {
    // The URL holds the app secret and the code or refresh token.
    TikTokAuthError::Transport(e.without_url().to_string())
}

/// What a code exchange or refresh grants.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: Secret,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: Secret,
    pub refresh_token_expires_at: DateTime<Utc>,
    /// The seller's stable id for this app: what a connection is keyed by.
    pub open_id: String,
    pub seller_name: String,
    pub seller_base_region: Option<String>,
    pub granted_scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawTokens {
    access_token: String,
    access_token_expire_in: i64,
    refresh_token: String,
    refresh_token_expire_in: i64,
    #[serde(default)]
    open_id: String,
    #[serde(default)]
    seller_name: String,
    #[serde(default)]
    seller_base_region: Option<String>,
    #[serde(default)]
    granted_scopes: Vec<String>,
}

/// The partner app's credentials and where TikTok's auth server is.
#[derive(Clone)]
pub struct TikTokAuth {
    client: reqwest::Client,
    base: String,
    app_key: String,
    app_secret: Secret,
}

impl std::fmt::Debug for TikTokAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TikTokAuth")
            .field("base", &self.base)
            .field("app_key", &self.app_key)
            .field("app_secret", &self.app_secret)
            .finish_non_exhaustive()
    }
}

impl TikTokAuth {
    pub fn new(
        base: &str,
        app_key: &str,
        app_secret: Secret,
        timeout: Duration,
    ) -> Result<Self, TikTokAuthError> {
        let client =
            outbound::client(timeout).map_err(|e| TikTokAuthError::Client(e.to_string()))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            app_key: app_key.to_string(),
            app_secret,
        })
    }

    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    /// The seller's authorisation code (from the redirect after they
    /// authorise the app) for tokens. A code works once.
    pub async fn exchange_code(&self, auth_code: &str) -> Result<Tokens, TikTokAuthError> {
        self.token_call(
            "/api/v2/token/get",
            "auth_code",
            auth_code,
            "authorized_code",
        )
        .await
    }

    /// New tokens for a refresh token. The answer's refresh token replaces
    /// the one sent: keep it, the old one may be refused from now on.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens, TikTokAuthError> {
        let token = std::str::from_utf8(refresh_token.expose())
            .map_err(|_| TikTokAuthError::Client("the refresh token is not UTF-8".into()))?;
        self.token_call(
            "/api/v2/token/refresh",
            "refresh_token",
            token,
            "refresh_token",
        )
        .await
    }

    async fn token_call(
        &self,
        path: &str,
        grant_name: &str,
        grant: &str,
        grant_type: &str,
    ) -> Result<Tokens, TikTokAuthError> {
        let secret = std::str::from_utf8(self.app_secret.expose())
            .map_err(|_| TikTokAuthError::Client("the app secret is not UTF-8".into()))?;
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header("accept", "application/json")
            .query(&[
                ("app_key", self.app_key.as_str()),
                ("app_secret", secret),
                (grant_name, grant),
                ("grant_type", grant_type),
            ])
            .send()
            .await
            .map_err(transport)?;
        let raw: RawTokens = serde_json::from_value(read_envelope(resp).await?)
            .map_err(|e| TikTokAuthError::Decode(e.to_string()))?;
        tokens(raw)
    }
}

/// The `data` of TikTok's envelope `{code, message, request_id, data}`
/// (`Value::Null` when absent), or the error it or the status says. Every
/// TikTok API answers this way, the auth server's and the Open API's.
pub(super) async fn read_envelope(
    resp: reqwest::Response,
) -> Result<serde_json::Value, TikTokAuthError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    let envelope: Envelope = match serde_json::from_slice(&bytes) {
        Ok(e) => e,
        Err(_) if !status.is_success() => {
            return Err(TikTokAuthError::Status {
                status: status.as_u16(),
            });
        }
        Err(e) => return Err(TikTokAuthError::Decode(e.to_string())),
    };
    if envelope.code != 0 {
        return Err(TikTokAuthError::Api {
            code: envelope.code,
            message: clip(envelope.message),
            request_id: envelope.request_id,
        });
    }
    if !status.is_success() {
        return Err(TikTokAuthError::Status {
            status: status.as_u16(),
        });
    }
    Ok(envelope.data.unwrap_or_default())
}

fn tokens(raw: RawTokens) -> Result<Tokens, TikTokAuthError> {
    if raw.access_token.is_empty() || raw.refresh_token.is_empty() {
        return Err(TikTokAuthError::Decode("an empty token".into()));
    }
    let at = |secs: i64, what: &str| {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .ok_or_else(|| TikTokAuthError::Decode(format!("{what} is not a unix time")))
    };
    Ok(Tokens {
        access_token: Secret::from(raw.access_token),
        access_token_expires_at: at(raw.access_token_expire_in, "access_token_expire_in")?,
        refresh_token: Secret::from(raw.refresh_token),
        refresh_token_expires_at: at(raw.refresh_token_expire_in, "refresh_token_expire_in")?,
        open_id: raw.open_id,
        seller_name: raw.seller_name,
        seller_base_region: raw.seller_base_region.filter(|r| !r.is_empty()),
        granted_scopes: raw.granted_scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_absolute_unix_seconds() {
        let raw: RawTokens = serde_json::from_value(serde_json::json!({
            "access_token": "ROW_abc",
            "access_token_expire_in": 1_660_556_783,
            "refresh_token": "RFT_def",
            "refresh_token_expire_in": 1_691_227_202,
            "open_id": "7010736057180325637",
            "seller_name": "Jjj test shop",
            "seller_base_region": "ID",
            "user_type": 0,
            "granted_scopes": ["seller.order.info"]
        }))
        .unwrap();
        let t = tokens(raw).unwrap();
        assert_eq!(
            t.access_token_expires_at.to_rfc3339(),
            "2022-08-15T09:46:23+00:00"
        );
        assert_eq!(t.refresh_token_expires_at.timestamp(), 1_691_227_202);
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("ROW_abc") && !debug.contains("RFT_def"),
            "{debug}"
        );
    }
}
