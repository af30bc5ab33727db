//! The two calls of TikTok Shop's Open API the install needs, signed as
//! TikTok signs every Open API request:
//!
//! - `GET /authorization/202309/shops`: the shops the seller authorised the
//!   app for, each with its `cipher` (what shop-level calls name it by).
//! - `PUT /event/202309/webhooks?shop_cipher`: body `{address, event_type}`,
//!   the one address of that event type for the shop (a second call moves
//!   it, so repeating it is harmless).
//!
//! Every request carries `app_key`, `timestamp` (unix seconds) and `sign`
//! in the query, and the seller's access token in `x-tts-access-token`.
//! `sign` is the lowercase hex HMAC-SHA256, keyed with the app secret, of
//! `app_secret + path + (each query parameter but sign and access_token,
//! sorted by name, as name + value) + body + app_secret`.
//!
//! The base is `https://open-api.tiktokglobalshop.com`
//! ([`DEFAULT_OPEN_API_BASE`]) and can be pointed at a local fake. Answers
//! are TikTok's envelope, read as the auth client reads it; no token,
//! secret or signature goes into an error or a log.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::auth::{TikTokAuthError, read_envelope, transport};
use crate::providers::outbound;
use crate::support::vault::Secret;

pub const DEFAULT_OPEN_API_BASE: &str = "https://open-api.tiktokglobalshop.com";
pub const AUTHORIZED_SHOPS_PATH: &str = "/authorization/202309/shops";
pub const WEBHOOKS_PATH: &str = "/event/202309/webhooks";

/// A shop the seller authorised the app for.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizedShop {
    /// The shop id: webhooks' `shop_id`, a connection's account.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub region: String,
    /// Names the shop in shop-level calls (webhook registration).
    #[serde(default)]
    pub cipher: String,
}

#[derive(Deserialize)]
struct Shops {
    #[serde(default)]
    shops: Vec<AuthorizedShop>,
}

/// TikTok's `sign` of a request: see the module's documentation.
/// `params` are the query's, in any order; `sign` and `access_token` among
/// them are left out.
pub fn sign(app_secret: &[u8], path: &str, params: &[(&str, &str)], body: &[u8]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "sign" && *k != "access_token")
        .collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(app_secret).expect("HMAC accepts keys of any length");
    mac.update(app_secret);
    mac.update(path.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac.update(body);
    mac.update(app_secret);
    hex::encode(mac.finalize().into_bytes())
}

/// The partner app's client of the Open API.
#[derive(Clone)]
pub struct OpenApi {
    client: reqwest::Client,
    base: String,
    app_key: String,
    app_secret: Secret,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field("base", &self.base)
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

impl OpenApi {
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

    /// The shops the seller whose token this is authorised the app for.
    pub async fn authorized_shops(
        &self,
        access_token: &Secret,
    ) -> Result<Vec<AuthorizedShop>, TikTokAuthError> {
        let data = self
            .call(
                reqwest::Method::GET,
                AUTHORIZED_SHOPS_PATH,
                &[],
                None,
                access_token,
            )
            .await?;
        let shops: Shops =
            serde_json::from_value(data).map_err(|e| TikTokAuthError::Decode(e.to_string()))?;
        Ok(shops.shops)
    }

    /// Points the shop's webhooks of `event_type` at `address`.
    pub async fn set_webhook(
        &self,
        access_token: &Secret,
        shop_cipher: &str,
        event_type: &str,
        address: &str,
    ) -> Result<(), TikTokAuthError> {
        let body = serde_json::json!({ "address": address, "event_type": event_type });
        self.call(
            reqwest::Method::PUT,
            WEBHOOKS_PATH,
            &[("shop_cipher", shop_cipher)],
            Some(&body),
            access_token,
        )
        .await
        .map(|_| ())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        access_token: &Secret,
    ) -> Result<serde_json::Value, TikTokAuthError> {
        let token = std::str::from_utf8(access_token.expose())
            .map_err(|_| TikTokAuthError::Client("the access token is not UTF-8".into()))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut params: Vec<(&str, &str)> =
            vec![("app_key", &self.app_key), ("timestamp", &timestamp)];
        params.extend_from_slice(extra);
        let signature = sign(self.app_secret.expose(), path, &params, body.as_bytes());
        params.push(("sign", &signature));
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .query(&params)
            .header("accept", "application/json")
            .header("x-tts-access-token", token);
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        read_envelope(req.send().await.map_err(transport)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed apart from this code (Python's hmac over the documented
    /// concatenation), so that a mistake in either shows.
    #[test]
    fn the_sign_is_tiktoks() {
        let params = [
            ("timestamp", "1700000000"),
            ("app_key", "29a39d"),
            ("shop_cipher", "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3"),
            ("access_token", "never-signed"),
            ("sign", "never-signed"),
        ];
        let body = br#"{"address":"https://gw.example.test/x","event_type":"ORDER_STATUS_CHANGE"}"#;
        assert_eq!(
            sign(b"e59af8", WEBHOOKS_PATH, &params, body),
            "01f93c0c915f387c3a63664895054a2c94fc28f2cc650873c4e4518cd7fc7201"
        );
        // Order of the parameters does not matter; the body does.
        let mut reversed = params;
        reversed.reverse();
        assert_eq!(
            sign(b"e59af8", WEBHOOKS_PATH, &reversed, body),
            sign(b"e59af8", WEBHOOKS_PATH, &params, body)
        );
        assert_ne!(
            sign(b"e59af8", WEBHOOKS_PATH, &params, b"{}"),
            sign(b"e59af8", WEBHOOKS_PATH, &params, body)
        );
    }
}
