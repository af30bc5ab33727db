//! Calls out to a WooCommerce site's REST API (`/wp-json/wc/v3/`) to manage
//! the webhooks a connection receives: list, create, update, delete, and an
//! idempotent "make sure this one exists" used at set-up.
//!
//! Authentication is a REST API key pair (consumer key `ck_…`, consumer
//! secret `cs_…`) sent as HTTP Basic, which WooCommerce accepts over HTTPS
//! only. Over plain HTTP it wants OAuth 1.0a signatures instead; this client
//! does not speak those and refuses `http://` site URLs, unless built with
//! [`WooCommerceApi::allowing_plain_http`] (tests against a loopback fake).
//! The consumer secret and the webhook secret are [`Secret`]s; the Basic
//! header is marked sensitive, redirects are not followed (they would resend
//! it elsewhere), and no error carries a URL or a secret.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::providers::outbound::{self, clip};
use crate::support::vault::Secret;

/// The topics a connection registers by default (`woocommerce.topics`):
/// orders, products, customers and coupons, each created, updated and
/// deleted, and orders restored from the trash.
pub const DEFAULT_TOPICS: [&str; 13] = [
    "order.created",
    "order.updated",
    "order.deleted",
    "order.restored",
    "product.created",
    "product.updated",
    "product.deleted",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
];

/// WooCommerce's largest page (`per_page` is capped at 100).
const PAGE_SIZE: usize = 100;
/// A bound on pages read, so a site that keeps answering full pages cannot
/// hold a set-up forever.
const MAX_PAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum WooCommerceError {
    /// 401/403: the key pair is wrong, revoked, or lacks write permission.
    #[error("woocommerce refused the API keys ({status} {code}): {message}")]
    Auth {
        status: u16,
        code: String,
        message: String,
    },
    /// No WooCommerce REST API at this URL (`rest_no_route`), or no such
    /// webhook. Sites without pretty permalinks serve the API only at
    /// `?rest_route=`, which this client does not try.
    #[error("woocommerce answered 404 {code}: {message}")]
    NotFound { code: String, message: String },
    /// Any other error WooCommerce reported in its `{code, message, data}`
    /// shape (a 400 for a bad topic or delivery URL, a 5xx from the site).
    #[error("woocommerce answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An error status with a body that is not WooCommerce's error shape (a
    /// proxy's page, a PHP fatal error).
    #[error("the site answered {status} without a WooCommerce error body")]
    Status { status: u16 },
    #[error("calling the site: {0}")]
    Transport(String),
    #[error("the site's answer was not understood: {0}")]
    Decode(String),
    #[error("site URL: {0}")]
    SiteUrl(String),
    #[error("http client: {0}")]
    Client(String),
}

impl WooCommerceError {
    /// Worth trying again: the network, timeouts, throttling, the site's own
    /// failures. Refused keys and bad requests are verdicts.
    pub fn is_transient(&self) -> bool {
        match self {
            WooCommerceError::Api { status, .. } | WooCommerceError::Status { status } => {
                *status == 429 || *status >= 500
            }
            WooCommerceError::Transport(_) => true,
            _ => false,
        }
    }

    /// WooCommerce's error code (`woocommerce_rest_authentication_error`,
    /// `rest_no_route`, …), when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            WooCommerceError::Auth { code, .. }
            | WooCommerceError::NotFound { code, .. }
            | WooCommerceError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn transport(e: reqwest::Error) -> WooCommerceError {
    WooCommerceError::Transport(e.without_url().to_string())
}

/// A site and the REST API keys to manage it.
#[derive(Clone)]
pub struct Site {
    /// The site's home URL, with a trailing slash (WordPress may live in a
    /// sub-folder: `https://example.com/shop/`).
    base: Url,
    consumer_key: String,
    consumer_secret: Secret,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The consumer key names the key pair, it does not open anything;
        // still, only the URL is needed to tell sites apart in a log.
        f.debug_struct("Site")
            .field("url", &self.base.as_str())
            .field("consumer_secret", &self.consumer_secret)
            .finish_non_exhaustive()
    }
}

impl Site {
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    fn endpoint(&self, rest: &str) -> Result<Url, WooCommerceError> {
        self.base
            .join(&format!("wp-json/wc/v3/{rest}"))
            .map_err(|e| WooCommerceError::SiteUrl(e.to_string()))
    }
}

/// A webhook as the REST API shows it (the secret is write-only and never
/// comes back).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    pub status: String,
    pub topic: String,
    pub delivery_url: String,
}

/// What [`WooCommerceApi::ensure_webhook`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub webhook: Webhook,
    /// False when a webhook of the same topic and delivery URL was there
    /// already and was reused (its secret and status set anew).
    pub created: bool,
}

#[derive(Deserialize)]
struct RawError {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Clone)]
pub struct WooCommerceApi {
    client: reqwest::Client,
    allow_plain_http: bool,
}

impl WooCommerceApi {
    pub fn new(timeout: Duration) -> Result<Self, WooCommerceError> {
        let client =
            outbound::client(timeout).map_err(|e| WooCommerceError::Client(e.to_string()))?;
        Ok(Self {
            client,
            allow_plain_http: false,
        })
    }

    /// Accepts `http://` site URLs. Real WooCommerce refuses Basic
    /// authentication there, so this is for fakes on loopback only.
    pub fn allowing_plain_http(mut self) -> Self {
        self.allow_plain_http = true;
        self
    }

    /// Checks the site URL (absolute, https unless allowed otherwise, no
    /// credentials, query or fragment) and pairs it with the keys.
    pub fn site(
        &self,
        site_url: &str,
        consumer_key: &str,
        consumer_secret: Secret,
    ) -> Result<Site, WooCommerceError> {
        let mut base = Url::parse(site_url.trim())
            .map_err(|e| WooCommerceError::SiteUrl(format!("not a URL: {e}")))?;
        match base.scheme() {
            "https" => {}
            "http" if self.allow_plain_http => {}
            "http" => {
                return Err(WooCommerceError::SiteUrl(
                    "http:// would send the API keys in the clear (WooCommerce accepts \
                     them as HTTP Basic over HTTPS only); use https://"
                        .into(),
                ));
            }
            other => {
                return Err(WooCommerceError::SiteUrl(format!(
                    "scheme {other} is neither https nor http"
                )));
            }
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(WooCommerceError::SiteUrl("no host".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(WooCommerceError::SiteUrl(
                "credentials belong in the API keys, not the URL".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(WooCommerceError::SiteUrl(
                "a site URL has no query or fragment".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if consumer_key.is_empty() || consumer_secret.expose().is_empty() {
            return Err(WooCommerceError::SiteUrl(
                "the consumer key and secret are both needed".into(),
            ));
        }
        Ok(Site {
            base,
            consumer_key: consumer_key.to_string(),
            consumer_secret,
        })
    }

    fn request(
        &self,
        method: Method,
        site: &Site,
        rest: &str,
    ) -> Result<reqwest::RequestBuilder, WooCommerceError> {
        let secret = std::str::from_utf8(site.consumer_secret.expose()).map_err(|_| {
            WooCommerceError::Client("the consumer secret is not valid UTF-8".into())
        })?;
        // reqwest marks the Basic header sensitive.
        Ok(self
            .client
            .request(method, site.endpoint(rest)?)
            .header("accept", "application/json")
            .basic_auth(&site.consumer_key, Some(secret)))
    }

    /// `GET /wp-json/wc/v3/webhooks`, every page, whatever the status.
    pub async fn list_webhooks(&self, site: &Site) -> Result<Vec<Webhook>, WooCommerceError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let resp = self
                .request(Method::GET, site, "webhooks")?
                .query(&[
                    ("per_page", PAGE_SIZE.to_string()),
                    ("page", page.to_string()),
                    ("status", "all".to_string()),
                ])
                .send()
                .await
                .map_err(transport)?;
            let total_pages = resp
                .headers()
                .get("x-wp-totalpages")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            let batch: Vec<Webhook> = decode(resp).await?;
            let short = batch.len() < PAGE_SIZE;
            all.extend(batch);
            if short || total_pages.is_some_and(|t| page >= t) {
                return Ok(all);
            }
        }
        Err(WooCommerceError::Decode(format!(
            "more than {} webhooks",
            MAX_PAGES * PAGE_SIZE
        )))
    }

    /// `POST /wp-json/wc/v3/webhooks`, active at once. WooCommerce pings the
    /// delivery URL (an unsigned form-encoded `webhook_id=…`) as it does.
    pub async fn create_webhook(
        &self,
        site: &Site,
        name: &str,
        topic: &str,
        delivery_url: &str,
        secret: &Secret,
    ) -> Result<Webhook, WooCommerceError> {
        let body = webhook_body(name, topic, Some(delivery_url), secret)?;
        let resp = self
            .request(Method::POST, site, "webhooks")?
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        decode(resp).await
    }

    /// `PUT /wp-json/wc/v3/webhooks/{id}`: a new name and secret, and active
    /// again (WooCommerce disables a webhook after repeated failed
    /// deliveries).
    pub async fn update_webhook(
        &self,
        site: &Site,
        id: u64,
        name: &str,
        topic: &str,
        secret: &Secret,
    ) -> Result<Webhook, WooCommerceError> {
        let body = webhook_body(name, topic, None, secret)?;
        let resp = self
            .request(Method::PUT, site, &format!("webhooks/{id}"))?
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        decode(resp).await
    }

    /// `DELETE /wp-json/wc/v3/webhooks/{id}?force=true` (webhooks cannot be
    /// trashed, so `force` is required). One already gone is not an error.
    pub async fn delete_webhook(&self, site: &Site, id: u64) -> Result<(), WooCommerceError> {
        let resp = self
            .request(Method::DELETE, site, &format!("webhooks/{id}"))?
            .query(&[("force", "true")])
            .send()
            .await
            .map_err(transport)?;
        match decode::<serde_json::Value>(resp).await {
            Ok(_) => Ok(()),
            Err(WooCommerceError::NotFound { code, .. })
                if code == "woocommerce_rest_webhook_invalid_id" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure one webhook of `topic` delivers to `delivery_url`, signed
    /// with `secret`. An existing one (same topic, same URL) is reused: its
    /// secret cannot be read back, so it is set anew and the webhook made
    /// active. Otherwise one is created. Running it twice leaves one webhook.
    pub async fn ensure_webhook(
        &self,
        site: &Site,
        name: &str,
        topic: &str,
        delivery_url: &str,
        secret: &Secret,
    ) -> Result<Ensured, WooCommerceError> {
        let existing = self.list_webhooks(site).await?;
        self.ensure_in(site, &existing, name, topic, delivery_url, secret)
            .await
    }

    /// [`ensure_webhook`](Self::ensure_webhook) for every topic, with one
    /// listing. Stops at the first failure; what was done before it stays
    /// done, and a second run picks up from there without duplicates.
    pub async fn ensure_webhooks(
        &self,
        site: &Site,
        name_prefix: &str,
        topics: &[&str],
        delivery_url: &str,
        secret: &Secret,
    ) -> Result<Vec<Ensured>, WooCommerceError> {
        let existing = self.list_webhooks(site).await?;
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            let name = format!("{name_prefix} {topic}");
            out.push(
                self.ensure_in(site, &existing, &name, topic, delivery_url, secret)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn ensure_in(
        &self,
        site: &Site,
        existing: &[Webhook],
        name: &str,
        topic: &str,
        delivery_url: &str,
        secret: &Secret,
    ) -> Result<Ensured, WooCommerceError> {
        let same = existing
            .iter()
            .find(|w| w.topic == topic && same_url(&w.delivery_url, delivery_url));
        match same {
            Some(w) => Ok(Ensured {
                webhook: self.update_webhook(site, w.id, name, topic, secret).await?,
                created: false,
            }),
            None => Ok(Ensured {
                webhook: self
                    .create_webhook(site, name, topic, delivery_url, secret)
                    .await?,
                created: true,
            }),
        }
    }
}

/// WordPress stores the delivery URL through `esc_url_raw`, which may
/// normalise it; compare the parsed forms, and the strings if either does
/// not parse.
fn same_url(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn webhook_body(
    name: &str,
    topic: &str,
    delivery_url: Option<&str>,
    secret: &Secret,
) -> Result<serde_json::Value, WooCommerceError> {
    let secret = std::str::from_utf8(secret.expose())
        .map_err(|_| WooCommerceError::Client("the webhook secret is not valid UTF-8".into()))?;
    let mut body = serde_json::json!({
        "name": name,
        "topic": topic,
        "secret": secret,
        "status": "active",
    });
    if let Some(url) = delivery_url {
        body["delivery_url"] = serde_json::json!(url);
    }
    Ok(body)
}

/// WooCommerce's errors are `{code, message, data: {status}}`; the HTTP
/// status is the one that counts (it is the same as `data.status`).
async fn status_error(resp: reqwest::Response) -> WooCommerceError {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let Ok(raw) = serde_json::from_slice::<RawError>(&bytes) else {
        return WooCommerceError::Status {
            status: status.as_u16(),
        };
    };
    let (code, message) = (clip(raw.code), clip(raw.message));
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => WooCommerceError::Auth {
            status: status.as_u16(),
            code,
            message,
        },
        StatusCode::NOT_FOUND => WooCommerceError::NotFound { code, message },
        _ => WooCommerceError::Api {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, WooCommerceError> {
    if !resp.status().is_success() {
        return Err(status_error(resp).await);
    }
    let bytes = resp.bytes().await.map_err(transport)?;
    // serde's message names the field, never the value.
    serde_json::from_slice(&bytes).map_err(|e| WooCommerceError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> WooCommerceApi {
        WooCommerceApi::new(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let secret = || Secret::from("cs_x".to_string());
        let err = api()
            .site("http://shop.example", "ck_x", secret())
            .unwrap_err();
        assert!(matches!(err, WooCommerceError::SiteUrl(_)), "{err}");
        assert!(
            api()
                .allowing_plain_http()
                .site("http://127.0.0.1:1", "ck_x", secret())
                .is_ok()
        );
        for bad in [
            "ftp://shop.example",
            "https://user:pw@shop.example",
            "https://shop.example/?a=b",
            "shop.example",
        ] {
            assert!(api().site(bad, "ck_x", secret()).is_err(), "{bad}");
        }
        assert!(api().site("https://shop.example", "", secret()).is_err());
    }

    #[test]
    fn the_api_lives_under_the_site_folder() {
        let site = api()
            .site(
                "https://example.com/shop",
                "ck_x",
                Secret::from("cs_x".to_string()),
            )
            .unwrap();
        assert_eq!(
            site.endpoint("webhooks").unwrap().as_str(),
            "https://example.com/shop/wp-json/wc/v3/webhooks"
        );
        let debug = format!("{site:?}");
        assert!(!debug.contains("cs_x"), "{debug}");
    }

    #[test]
    fn delivery_urls_compare_parsed() {
        assert!(same_url("https://Gw.example/a", "https://gw.example/a"));
        assert!(!same_url("https://gw.example/a", "https://gw.example/b"));
    }
}
