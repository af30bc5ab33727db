//! Shopify: webhook signatures and headers, the OAuth install, token
//! refresh, the lifecycle webhooks and the shop-details endpoint.
//!
//! [`Shopify`] is what the pipeline sees of it: `X-Shopify-Hmac-Sha256`
//! over the raw body with the connection's current and previous secrets,
//! the `X-Shopify-*` headers for topic, delivery id and shop, the
//! compliance topics still taken once uninstalled, and
//! `builtin:shopify-default`. Its own HTTP routes (install, callback, shop
//! details) come back from [`routes`] as a finished router.

pub mod api;
pub mod headers;
pub mod lifecycle;
pub mod oauth;
pub mod refresh;
pub mod send;
pub mod shop_details;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;

use crate::pipeline::connection::{self, ConnectionError, Created, NewConnection};
use crate::pipeline::provider::{
    AfterPublish, Checked, Codes, Described, Incoming, Keys, Proposed, Provider, Rejected, SetUp,
    no_settings,
};
use crate::store::{InboxRow, Outcome, Store};
use crate::support::vault::{Secret, Vault};
use headers::{HeaderError, ShopifyHeaders};

/// The `provider` column and URL segment.
pub const ID: &str = "shopify";

/// Shopify as the pipeline sees it.
pub struct Shopify;

/// Connects a shop by hand with the webhook secret the merchant's custom app
/// shows (or rotates it, for a shop and brand already connected), with the
/// default window for the replaced secret.
pub async fn add_connection(
    store: &Store,
    vault: &Vault,
    shop: &str,
    workspace: &str,
    brand: &str,
    secret: &Secret,
) -> Result<Created, ConnectionError> {
    let new = NewConnection {
        account: shop,
        workspace,
        brand,
        secret,
        settings: &serde_json::Value::Null,
        previous_window: connection::DEFAULT_PREVIOUS_SECRET_WINDOW,
    };
    connection::add(store, vault, &Shopify, &new).await
}

impl Provider for Shopify {
    fn id(&self) -> &'static str {
        ID
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        let signature = req
            .headers
            .get(headers::HMAC_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(Rejected::Signature)?;
        if headers::verify(keys.secrets.iter().copied(), req.body, signature) {
            Ok(())
        } else {
            Err(Rejected::Signature)
        }
    }

    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        let shop = proposed.account.trim().to_ascii_lowercase();
        if !headers::is_shop_domain(&shop) {
            return Err(format!(
                "{shop:?} is not a valid shop domain (expected NAME.myshopify.com)"
            ));
        }
        if !no_settings(proposed.settings) {
            return Err("a Shopify connection takes no settings".into());
        }
        Ok(Checked {
            account: shop,
            settings: None,
        })
    }

    fn describe(&self, req: &Incoming<'_>, _keys: &Keys<'_>) -> Result<Described, Rejected> {
        let h = ShopifyHeaders::parse(req.headers).map_err(|e| match e {
            HeaderError::Missing(name) => Rejected::MissingHeader(name),
            HeaderError::Invalid(name, why) => Rejected::InvalidHeader(name, why),
        })?;
        Ok(Described {
            topic: h.topic,
            delivery_id: h.webhook_id,
            account: Some(h.shop_domain),
            api_version: h.api_version,
            occurred_at: h.triggered_at,
            event_id: h.event_id,
            headers: h.selected,
            body: None,
        })
    }

    fn set_up(&self) -> &'static [SetUp] {
        &[SetUp::Oauth, SetUp::Secret]
    }

    fn topic_in_headers(&self, headers: &HeaderMap) -> Option<String> {
        // An absent topic is an empty one: a gone connection refuses it on
        // its headers, as it always has, before the body is read.
        Some(
            headers
                .get(headers::TOPIC_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        )
    }

    /// Once uninstalled, only the compliance topics: Shopify sends them
    /// after an uninstall (`shop/redact` 48 hours later) and requires a 200.
    fn lifecycle_topic(&self, topic: &str) -> bool {
        lifecycle::COMPLIANCE_TOPICS.contains(&topic)
    }

    fn sign_test(&self, d: &crate::pipeline::provider::TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        send::sign_test(d)
    }

    fn default_transform(&self) -> &'static str {
        "builtin:shopify-default"
    }

    fn codes(&self) -> Codes {
        Codes {
            signature: "invalid_hmac",
            account_mismatch: "shop_mismatch",
        }
    }

    fn after_publish<'a>(
        &'a self,
        store: &'a Store,
        finished: &'a [(&'a InboxRow, Outcome)],
    ) -> AfterPublish<'a> {
        Box::pin(lifecycle::after_finish(store, finished))
    }

    fn recover<'a>(&'a self, store: &'a Store) -> AfterPublish<'a> {
        Box::pin(async move {
            if let Err(e) = lifecycle::apply_due(store).await {
                tracing::warn!(error = %e, "lifecycle effects not applied at start");
            }
        })
    }
}

/// Shopify's own routes, finished: the OAuth install and callback (404
/// `oauth_not_configured` without an app) and the shop-details endpoint.
pub fn routes(oauth: Option<Arc<oauth::OAuth>>, details: Arc<shop_details::ShopDetails>) -> Router {
    oauth::router(oauth).merge(shop_details::router(details))
}
