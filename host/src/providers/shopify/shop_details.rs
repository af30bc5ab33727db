//! `GET /integrations/shopify/brands/{brand_id}/shop-details`: the shop
//! behind a brand's connection, live from Shopify's Admin API
//! (`shop.json`), for other services of the platform.
//!
//! - Callers are services, not people: `Authorization: Bearer <service
//!   token>` (`IONFLUX_SERVICE_TOKEN`), compared in constant time. Without a
//!   configured token nobody gets in.
//! - The brand's active connection is looked up on every request (so an
//!   uninstall shows at once); only Shopify's answer is cached, per
//!   connection, for a short while and in a bounded map.
//! - A brand belongs to the workspace of its oldest connection; only that
//!   workspace's connections are answered, so a brand id that someone else
//!   connected too (before installs checked brand ownership, or by hand)
//!   never yields another tenant's shop.
//! - Errors say what the caller can do: `not_connected` (404), the
//!   connection is not active (409 `connection_inactive`), the token is no
//!   longer valid and the merchant must reconnect (409
//!   `reconnect_required`), or Shopify cannot be reached right now (502
//!   `shopify_unavailable`).
//!
//! The access token is decrypted for the call only; it is never logged or
//! put in an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ID as SHOPIFY;
use crate::error::ApiError;
use crate::pipeline::connection::{self, ConnectionError};
use crate::providers::shopify::api::{ShopifyApi, ShopifyError};
use crate::store::{ConnectionRow, Store};
use crate::support::vault::{Secret, Vault};

pub const PATH: &str = "/integrations/shopify/brands/{brand_id}/shop-details";
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;

/// Where and how to reach Shopify, and how long answers are kept.
#[derive(Debug, Clone)]
pub struct ShopDetailsConfig {
    /// `https://{shop}` in production; a local fake in tests.
    pub admin_base_url: String,
    pub api_version: String,
    /// Timeout of the call to Shopify.
    pub http_timeout: Duration,
    pub cache_ttl: Duration,
    /// At most this many shops are cached.
    pub cache_entries: usize,
    /// The bearer token other services present; None: the endpoint refuses
    /// everyone.
    pub service_token: Option<Secret>,
}

impl Default for ShopDetailsConfig {
    fn default() -> Self {
        Self {
            admin_base_url: super::api::DEFAULT_ADMIN_BASE_URL.into(),
            api_version: super::api::DEFAULT_API_VERSION.into(),
            http_timeout: Duration::from_secs(10),
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            service_token: None,
        }
    }
}

struct Cached {
    at: Instant,
    shop_domain: String,
    shop: serde_json::Value,
}

/// The endpoint's state: what it reads, how it calls out, what it keeps.
pub struct ShopDetails {
    store: Store,
    vault: Arc<Vault>,
    /// With an OAuth app configured, tokens come through its refresher, so
    /// an access token that just expired is refreshed rather than reported
    /// as needing a reconnect.
    oauth: Option<Arc<crate::providers::shopify::oauth::OAuth>>,
    api: ShopifyApi,
    service_token: Option<Secret>,
    ttl: Duration,
    max_entries: usize,
    /// connection id -> Shopify's last answer.
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for ShopDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopDetails")
            .field("service_token", &self.service_token)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShopDetailsError {
    #[error("the brand id must be a UUID")]
    InvalidBrand,
    #[error("no {SHOPIFY} connection for this brand")]
    NotConnected,
    #[error("the brand's connection is {0}, not active")]
    Inactive(String),
    #[error("{0}")]
    ReconnectRequired(&'static str),
    #[error("shopify is unavailable: {0}")]
    Unavailable(String),
    #[error("shopify refused the request: {0}")]
    Shopify(String),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

impl From<ShopDetailsError> for ApiError {
    fn from(e: ShopDetailsError) -> Self {
        let (status, code) = match &e {
            ShopDetailsError::InvalidBrand => (StatusCode::BAD_REQUEST, "invalid_brand_id"),
            ShopDetailsError::NotConnected => (StatusCode::NOT_FOUND, "not_connected"),
            ShopDetailsError::Inactive(_) => (StatusCode::CONFLICT, "connection_inactive"),
            ShopDetailsError::ReconnectRequired(_) => (StatusCode::CONFLICT, "reconnect_required"),
            ShopDetailsError::Unavailable(_) => (StatusCode::BAD_GATEWAY, "shopify_unavailable"),
            ShopDetailsError::Shopify(_) => (StatusCode::BAD_GATEWAY, "shopify_error"),
            ShopDetailsError::Connection(ConnectionError::Store(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            ShopDetailsError::Connection(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        // Shopify's failures were logged where they happened.
        if status.is_server_error()
            && !matches!(
                e,
                ShopDetailsError::Unavailable(_) | ShopDetailsError::Shopify(_)
            )
        {
            tracing::warn!(error = %e, code, "shop details failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// What the endpoint answers.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub brand_id: String,
    pub connection_id: String,
    pub shop_domain: String,
    /// Shopify's shop object, as Shopify sent it.
    pub shop: serde_json::Value,
    /// True when this came from the cache rather than a call just made.
    pub cached: bool,
}

impl ShopDetails {
    pub fn new(
        cfg: ShopDetailsConfig,
        store: Store,
        vault: Arc<Vault>,
        oauth: Option<Arc<crate::providers::shopify::oauth::OAuth>>,
    ) -> Result<Self, ShopifyError> {
        let api = ShopifyApi::new(&cfg.admin_base_url, &cfg.api_version, cfg.http_timeout)?;
        Ok(Self {
            store,
            vault,
            oauth,
            api,
            service_token: cfg.service_token.filter(|t| !t.expose().is_empty()),
            ttl: cfg.cache_ttl,
            max_entries: cfg.cache_entries.max(1),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Is this `Authorization` header the service token?
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(configured) = &self.service_token else {
            return Err(unauthorized(
                "this gateway has no service token configured (IONFLUX_SERVICE_TOKEN)",
            ));
        };
        let given = crate::error::bearer_token(headers, "a service bearer token is required")?;
        if crate::support::constant_time::eq(given.as_bytes(), configured.expose()) {
            Ok(())
        } else {
            Err(unauthorized("the service token is not valid"))
        }
    }

    /// A usable access token, refreshed first when it is about to expire.
    async fn token(&self, connection_id: &str) -> Result<Option<Secret>, ShopDetailsError> {
        use crate::providers::shopify::refresh::TokenError;
        let Some(oauth) = &self.oauth else {
            return Ok(connection::access_token(&self.store, &self.vault, connection_id).await?);
        };
        match oauth.access_token_for(connection_id).await {
            Ok(token) => Ok(Some(token)),
            Err(TokenError::NotFound) => Err(ShopDetailsError::NotConnected),
            Err(TokenError::NoToken(_)) => Ok(None),
            Err(TokenError::ReconnectNeeded) => Err(ShopDetailsError::ReconnectRequired(
                "the connection's token can no longer be refreshed; the merchant must reconnect",
            )),
            Err(e @ (TokenError::Busy | TokenError::RefreshFailed(_))) => {
                Err(ShopDetailsError::Unavailable(e.to_string()))
            }
            Err(TokenError::Store(e)) => Err(ShopDetailsError::Connection(e.into())),
            Err(TokenError::Vault(e)) => Err(ShopDetailsError::Connection(e.into())),
            Err(e @ TokenError::Internal(_)) => Err(ShopDetailsError::Unavailable(e.to_string())),
        }
    }

    /// The shop of the brand's connection (to `shop`, when given), from the
    /// cache when fresh, else from Shopify.
    pub async fn get(&self, brand: &str, shop: Option<&str>) -> Result<Answer, ShopDetailsError> {
        let brand = Uuid::parse_str(brand)
            .map_err(|_| ShopDetailsError::InvalidBrand)?
            .to_string();
        let conn = self.connection(&brand, shop).await?;
        if let Some((shop_domain, shop)) = self.cached(&conn.id) {
            tracing::debug!(brand_id = %brand, connection_id = %conn.id, cached = true, "shop details");
            return Ok(Answer {
                brand_id: brand,
                connection_id: conn.id,
                shop_domain,
                shop,
                cached: true,
            });
        }
        let Some(token) = self.token(&conn.id).await? else {
            return Err(ShopDetailsError::ReconnectRequired(
                "the connection has no access token; connect the store through the OAuth install",
            ));
        };
        let shop = match self.api.shop(&conn.account, &token).await {
            Ok(shop) => shop,
            Err(e) => {
                self.forget(&conn.id);
                tracing::warn!(
                    connection_id = %conn.id,
                    shop = %conn.account,
                    error = %e,
                    "shop.json failed"
                );
                return Err(match e {
                    ShopifyError::Status { status: 401, .. } => {
                        ShopDetailsError::ReconnectRequired(
                            "shopify no longer accepts the connection's access token; \
                             the merchant must reconnect the store",
                        )
                    }
                    e if e.is_transient() => ShopDetailsError::Unavailable(e.to_string()),
                    e => ShopDetailsError::Shopify(e.to_string()),
                });
            }
        };
        self.remember(&conn.id, &conn.account, &shop);
        tracing::debug!(brand_id = %brand, connection_id = %conn.id, cached = false, "shop details");
        Ok(Answer {
            brand_id: brand,
            connection_id: conn.id,
            shop_domain: conn.account,
            shop,
            cached: false,
        })
    }

    /// The brand's connection: the newest active one of the brand's
    /// workspace (to `shop`, when given).
    async fn connection(
        &self,
        brand: &str,
        shop: Option<&str>,
    ) -> Result<ConnectionRow, ShopDetailsError> {
        let shop = shop.map(|s| s.trim().to_ascii_lowercase());
        let all = self
            .store
            .connections_for_brand(SHOPIFY, brand)
            .await
            .map_err(ConnectionError::Store)?;
        // Newest first, so the owner (the oldest) is the last.
        let owner = all.last().map(|c| c.workspace_id.clone());
        let rows: Vec<ConnectionRow> = all
            .into_iter()
            .filter(|c| Some(&c.workspace_id) == owner.as_ref())
            .filter(|c| shop.as_deref().is_none_or(|s| c.account == s))
            .collect();
        if let Some(active) = rows.iter().find(|c| c.status == "active") {
            return Ok(active.clone());
        }
        match rows.into_iter().next() {
            Some(c) => Err(ShopDetailsError::Inactive(c.status)),
            None => Err(ShopDetailsError::NotConnected),
        }
    }

    fn cached(&self, connection_id: &str) -> Option<(String, serde_json::Value)> {
        let cache = self.cache.lock().unwrap();
        cache
            .get(connection_id)
            .filter(|c| c.at.elapsed() < self.ttl)
            .map(|c| (c.shop_domain.clone(), c.shop.clone()))
    }

    fn remember(&self, connection_id: &str, shop_domain: &str, shop: &serde_json::Value) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= self.max_entries && !cache.contains_key(connection_id) {
            cache.retain(|_, c| c.at.elapsed() < self.ttl);
            while cache.len() >= self.max_entries {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, c)| c.at)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => cache.remove(&k),
                    None => break,
                };
            }
        }
        cache.insert(
            connection_id.to_string(),
            Cached {
                at: Instant::now(),
                shop_domain: shop_domain.to_string(),
                shop: shop.clone(),
            },
        );
    }

    fn forget(&self, connection_id: &str) {
        self.cache.lock().unwrap().remove(connection_id);
    }

    /// How many shops are cached now.
    pub fn cached_entries(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

// ---- HTTP ----------------------------------------------------------------------

pub fn router(details: Arc<ShopDetails>) -> Router {
    Router::new()
        .route(PATH, get(shop_details))
        .with_state(details)
}

#[derive(Debug, Deserialize)]
struct ShopQuery {
    /// Which of the brand's shops, when it has several.
    shop: Option<String>,
}

async fn shop_details(
    State(details): State<Arc<ShopDetails>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ShopQuery>, QueryRejection>,
) -> Result<Json<Answer>, ApiError> {
    details.authorize(&headers)?;
    let Path(brand) =
        path.map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text()))?;
    let Query(q) =
        query.map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text()))?;
    Ok(Json(details.get(&brand, q.shop.as_deref()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn details(entries: usize, ttl: Duration) -> (tempfile::TempDir, ShopDetails) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        let vault = Arc::new(Vault::from_spec(&format!("k1:{}", Vault::generate_key())).unwrap());
        let cfg = ShopDetailsConfig {
            cache_entries: entries,
            cache_ttl: ttl,
            service_token: Some(Secret::from("svc-token".to_string())),
            ..ShopDetailsConfig::default()
        };
        (dir, ShopDetails::new(cfg, store, vault, None).unwrap())
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_forgets() {
        let (_dir, d) = details(3, Duration::from_secs(60)).await;
        for i in 0..10 {
            d.remember(
                &format!("c{i}"),
                "s.myshopify.com",
                &serde_json::json!({"id": i}),
            );
            assert!(d.cached_entries() <= 3);
        }
        assert_eq!(d.cached("c9").unwrap().1["id"], 9);
        assert!(d.cached("c0").is_none());
        d.forget("c9");
        assert!(d.cached("c9").is_none());
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() {
        let (_dir, d) = details(3, Duration::ZERO).await;
        d.remember("c", "s.myshopify.com", &serde_json::json!({}));
        assert!(d.cached("c").is_none());
    }

    #[tokio::test]
    async fn only_the_service_token_is_let_in() {
        let (_dir, d) = details(3, Duration::from_secs(60)).await;
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(d.authorize(&with("Bearer svc-token")).is_ok());
        assert!(d.authorize(&with("Bearer svc-tokeN")).is_err());
        assert!(d.authorize(&with("svc-token")).is_err());
        assert!(d.authorize(&HeaderMap::new()).is_err());
    }
}
