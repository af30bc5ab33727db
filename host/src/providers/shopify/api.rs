//! Calls out to Shopify: the OAuth code exchange and webhook subscriptions
//! (Admin REST API). HTTPS with rustls (ring); every call has a timeout.
//!
//! The base URL of a shop is a template, `https://{shop}` in production, so
//! that tests can point it at a local fake (`http://127.0.0.1:PORT/{shop}`).
//! Tokens travel only in bodies and headers, never in URLs, and no error
//! carries them.

use std::time::Duration;

use serde::Deserialize;

use crate::support::vault::Secret;

pub const ACCESS_TOKEN_HEADER: &str = "X-Shopify-Access-Token";

/// The topics subscribed after an install unless configured otherwise. The
/// compliance topics (`customers/data_request`, `customers/redact`,
/// `shop/redact`) are set in the app's configuration, not registered.
pub const DEFAULT_TOPICS: &[&str] = &[
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
    "products/create",
    "products/update",
    "products/delete",
    "customers/create",
    "customers/update",
    "app/uninstalled",
];
pub const DEFAULT_SCOPES: &str = "read_orders,read_products,read_customers";
pub const DEFAULT_API_VERSION: &str = "2026-04";
pub const DEFAULT_ADMIN_BASE_URL: &str = "https://{shop}";

/// How much of an error body is kept in an error message.
const ERROR_BODY_MAX: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    #[error("shopify answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("calling shopify: {0}")]
    Transport(String),
    #[error("shopify's answer was not understood: {0}")]
    Decode(String),
    #[error("http client: {0}")]
    Client(String),
}

impl ShopifyError {
    /// Worth trying again: the network, a timeout, throttling, Shopify's own
    /// failures. A 4xx other than 429 is a verdict.
    pub fn is_transient(&self) -> bool {
        match self {
            ShopifyError::Status { status, .. } => *status == 429 || *status >= 500,
            ShopifyError::Transport(_) => true,
            ShopifyError::Decode(_) | ShopifyError::Client(_) => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ShopifyError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn transport(e: reqwest::Error) -> ShopifyError {
    // Without the URL: it names the shop only, but keep messages uniform.
    ShopifyError::Transport(e.without_url().to_string())
}

/// What the code exchange (or a refresh) answers. An expiring offline token
/// comes with `expires_in` and a refresh token; a non-expiring one has
/// neither.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub scope: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub refresh_token_expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    #[serde(default)]
    scope: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
}

/// A webhook subscription as the REST API shows it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    pub topic: String,
    pub address: String,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Deserialize)]
struct WebhookList {
    webhooks: Vec<Webhook>,
}

#[derive(Deserialize)]
struct WebhookOne {
    webhook: Webhook,
}

#[derive(Debug, Clone)]
pub struct ShopifyApi {
    client: reqwest::Client,
    base_template: String,
    api_version: String,
}

impl ShopifyApi {
    pub fn new(
        base_template: &str,
        api_version: &str,
        timeout: Duration,
    ) -> Result<Self, ShopifyError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A redirect would resend the token somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ionflux-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ShopifyError::Client(e.to_string()))?;
        Ok(Self {
            client,
            base_template: base_template.trim_end_matches('/').to_string(),
            api_version: api_version.to_string(),
        })
    }

    /// The shop's base URL: the template with `{shop}` replaced.
    pub fn base(&self, shop: &str) -> String {
        self.base_template.replace("{shop}", shop)
    }

    fn api(&self, shop: &str, rest: &str) -> String {
        format!("{}/admin/api/{}/{rest}", self.base(shop), self.api_version)
    }

    /// An Admin API request to `/admin/api/{version}/{rest}`, authenticated
    /// with the shop's access token (marked sensitive, so never logged).
    fn admin(
        &self,
        method: reqwest::Method,
        shop: &str,
        rest: &str,
        token: &Secret,
    ) -> Result<reqwest::RequestBuilder, ShopifyError> {
        Ok(self
            .client
            .request(method, self.api(shop, rest))
            .header(ACCESS_TOKEN_HEADER, header_value(token)?))
    }

    /// `POST /admin/oauth/access_token`: the authorization code for tokens.
    pub async fn exchange_code(
        &self,
        shop: &str,
        client_id: &str,
        client_secret: &Secret,
        code: &str,
        expiring: bool,
    ) -> Result<TokenResponse, ShopifyError> {
        let secret = String::from_utf8_lossy(client_secret.expose());
        let mut body = serde_json::json!({
            "client_id": client_id,
            "client_secret": secret,
            "code": code,
        });
        if expiring {
            body["expiring"] = serde_json::json!(1);
        }
        self.token_call(shop, &body).await
    }

    /// `POST /admin/oauth/access_token` with `grant_type=refresh_token`: a
    /// new access token (and a new refresh token, which replaces the old).
    pub async fn refresh_token(
        &self,
        shop: &str,
        client_id: &str,
        client_secret: &Secret,
        refresh_token: &Secret,
    ) -> Result<TokenResponse, ShopifyError> {
        let body = serde_json::json!({
            "client_id": client_id,
            "client_secret": String::from_utf8_lossy(client_secret.expose()),
            "grant_type": "refresh_token",
            "refresh_token": String::from_utf8_lossy(refresh_token.expose()),
        });
        self.token_call(shop, &body).await
    }

    async fn token_call(
        &self,
        shop: &str,
        body: &serde_json::Value,
    ) -> Result<TokenResponse, ShopifyError> {
        let url = format!("{}/admin/oauth/access_token", self.base(shop));
        let resp = self
            .client
            .post(url)
            .header("accept", "application/json")
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let raw: RawToken = decode(resp).await?;
        if raw.access_token.is_empty() {
            return Err(ShopifyError::Decode("empty access_token".into()));
        }
        Ok(TokenResponse {
            access_token: Secret::from(raw.access_token),
            scope: raw.scope,
            expires_in: raw.expires_in,
            refresh_token: raw
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::from),
            refresh_token_expires_in: raw.refresh_token_expires_in,
        })
    }

    /// `GET /admin/api/{version}/webhooks.json`: every subscription of the
    /// app on this shop.
    pub async fn list_webhooks(
        &self,
        shop: &str,
        token: &Secret,
    ) -> Result<Vec<Webhook>, ShopifyError> {
        let resp = self
            .admin(reqwest::Method::GET, shop, "webhooks.json", token)?
            .query(&[("limit", "250")])
            .send()
            .await
            .map_err(transport)?;
        Ok(decode::<WebhookList>(resp).await?.webhooks)
    }

    /// `POST /admin/api/{version}/webhooks.json`.
    pub async fn create_webhook(
        &self,
        shop: &str,
        token: &Secret,
        topic: &str,
        address: &str,
    ) -> Result<Webhook, ShopifyError> {
        let body = serde_json::json!({
            "webhook": {"topic": topic, "address": address, "format": "json"}
        });
        let resp = self
            .admin(reqwest::Method::POST, shop, "webhooks.json", token)?
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        Ok(decode::<WebhookOne>(resp).await?.webhook)
    }

    /// `PUT /admin/api/{version}/webhooks/{id}.json`: a new address.
    pub async fn update_webhook_address(
        &self,
        shop: &str,
        token: &Secret,
        id: u64,
        address: &str,
    ) -> Result<Webhook, ShopifyError> {
        let body = serde_json::json!({"webhook": {"id": id, "address": address}});
        let resp = self
            .admin(
                reqwest::Method::PUT,
                shop,
                &format!("webhooks/{id}.json"),
                token,
            )?
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        Ok(decode::<WebhookOne>(resp).await?.webhook)
    }

    /// `DELETE /admin/api/{version}/webhooks/{id}.json`.
    pub async fn delete_webhook(
        &self,
        shop: &str,
        token: &Secret,
        id: u64,
    ) -> Result<(), ShopifyError> {
        let resp = self
            .admin(
                reqwest::Method::DELETE,
                shop,
                &format!("webhooks/{id}.json"),
                token,
            )?
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.is_success() || status.as_u16() == 404 {
            return Ok(());
        }
        Err(status_error(resp).await)
    }

    /// `GET /admin/api/{version}/shop.json`: the shop object, as Shopify
    /// shows it (`{"shop": {…}}` unwrapped).
    pub async fn shop(
        &self,
        shop: &str,
        token: &Secret,
    ) -> Result<serde_json::Value, ShopifyError> {
        let resp = self
            .admin(reqwest::Method::GET, shop, "shop.json", token)?
            .send()
            .await
            .map_err(transport)?;
        let mut body: serde_json::Value = decode(resp).await?;
        match body.get_mut("shop").map(serde_json::Value::take) {
            Some(shop @ serde_json::Value::Object(_)) => Ok(shop),
            _ => Err(ShopifyError::Decode("no shop object in the answer".into())),
        }
    }
}

fn header_value(token: &Secret) -> Result<reqwest::header::HeaderValue, ShopifyError> {
    let mut v = reqwest::header::HeaderValue::from_bytes(token.expose())
        .map_err(|_| ShopifyError::Client("the access token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

async fn status_error(resp: reqwest::Response) -> ShopifyError {
    let status = resp.status().as_u16();
    let mut body = resp.text().await.unwrap_or_default();
    if body.len() > ERROR_BODY_MAX {
        let mut end = ERROR_BODY_MAX;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push('…');
    }
    ShopifyError::Status { status, body }
}

async fn decode<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, ShopifyError> {
    if !resp.status().is_success() {
        return Err(status_error(resp).await);
    }
    let bytes = resp.bytes().await.map_err(transport)?;
    // serde's message names the field, never the value.
    serde_json::from_slice(&bytes).map_err(|e| ShopifyError::Decode(e.to_string()))
}
