//! Shopify's token endpoint for the shared refresher
//! ([`crate::providers::refresh`]): `POST /admin/oauth/access_token` with
//! `grant_type=refresh_token`, answering relative expiries. A 400, 401 or
//! 403 is a refusal only a reconnect mends.

use std::sync::Arc;
use std::time::Duration;

use crate::providers::refresh::{RefreshCall, Refreshed, Refusal, TokenEndpoint};
use crate::providers::shopify::api::{ShopifyApi, ShopifyError};
use crate::store::{Store, now_ms};
use crate::support::vault::{Secret, Vault};

pub use crate::providers::refresh::{
    GATEWAY_PRODUCER, INTEGRATION_ERROR_KIND, RefreshConfig, Refresher, TokenError,
    integration_error_record,
};

/// Shopify's refresh call for one app.
struct ShopifyTokens {
    api: ShopifyApi,
    client_id: String,
    client_secret: Secret,
}

/// What Shopify's refusal or failure is, without anything secret: the status
/// alone for an answer (its body is Shopify's), the transport error (no URL).
fn describe(e: &ShopifyError) -> String {
    match e {
        ShopifyError::Status { status, .. } => format!("shopify answered {status}"),
        other => other.to_string(),
    }
}

/// Only a reconnect mends these: the refresh token or the app is refused.
fn permanent(e: &ShopifyError) -> bool {
    matches!(e.status(), Some(400 | 401 | 403))
}

impl TokenEndpoint for ShopifyTokens {
    fn refresh<'a>(&'a self, shop: &'a str, refresh_token: &'a Secret) -> RefreshCall<'a> {
        Box::pin(async move {
            let tokens = self
                .api
                .refresh_token(shop, &self.client_id, &self.client_secret, refresh_token)
                .await
                .map_err(|e| Refusal {
                    reason: describe(&e),
                    permanent: permanent(&e),
                })?;
            let received = now_ms();
            let expiry = |secs: Option<i64>| secs.map(|s| received + s.saturating_mul(1000));
            Ok(Refreshed {
                access_token: tokens.access_token,
                access_token_expires_at: expiry(tokens.expires_in),
                refresh_token: tokens.refresh_token,
                refresh_token_expires_at: expiry(tokens.refresh_token_expires_in),
                scopes: tokens.scope,
            })
        })
    }
}

/// The refresher of this app's Shopify connections.
pub fn refresher(
    store: Store,
    vault: Arc<Vault>,
    api: ShopifyApi,
    client_id: String,
    client_secret: Secret,
    cfg: RefreshConfig,
    http_timeout: Duration,
) -> Refresher {
    let endpoint = Arc::new(ShopifyTokens {
        api,
        client_id,
        client_secret,
    });
    Refresher::new(store, vault, super::ID, endpoint, cfg, http_timeout)
}
