use serde::de::DeserializeOwned;

use crate::Error;

/// One HTTP header as received; the host lower-cases names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A verified webhook, from any provider (the `ionflux:transform@0.2.0`
/// record).
///
/// The fields name no platform: Shopify's shop domain is `account_id`, its
/// `X-Shopify-Webhook-Id` the `delivery_id`, its `X-Shopify-Triggered-At`
/// `occurred_at`, and what only Shopify sends (the `X-Shopify-Event-Id`,
/// [`shopify::event_id`](crate::shopify::event_id)) is among the headers.
///
/// Fields are public for reading; the struct is `#[non_exhaustive]` so new
/// fields in the contract do not break transforms. Build one in tests with
/// [`testing::webhook`](crate::testing::webhook) (Shopify) or
/// [`testing::provider_webhook`](crate::testing::provider_webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhook {
    /// `"shopify"`, `"woocommerce"`, `"tiktok-shop"`, `"wix"`, ...
    pub provider: String,
    /// The platform's topic as it names it, e.g. `"orders/create"`.
    pub topic: String,
    /// The account the webhook is about: a shop domain
    /// (`"example.myshopify.com"`), a site, a seller.
    pub account_id: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// The provider's id of this delivery, the same across its retries
    /// (`X-Shopify-Webhook-Id`, ...).
    pub delivery_id: String,
    /// When the event happened, as the provider sent it
    /// (`X-Shopify-Triggered-At`, ...).
    pub occurred_at: Option<String>,
    /// The API version the body follows, when the provider sends one
    /// (`X-Shopify-API-Version`, e.g. `"2024-01"`).
    pub api_version: Option<String>,
    /// The provider's headers the host keeps (for Shopify the
    /// `X-Shopify-*` family), names in lower case.
    pub headers: Vec<Header>,
    /// The body as stored: the request body byte for byte, or the decoded
    /// JSON where the platform wraps it (Wix).
    pub body: Vec<u8>,
}

impl Webhook {
    /// Parses the body as JSON into `T`. Failures are
    /// [`Error::InvalidInput`]: the body is what the sender sent.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::invalid_input(format!("body: {e}")))
    }

    /// Parses the body as an untyped JSON document.
    pub fn json_value(&self) -> Result<serde_json::Value, Error> {
        self.json()
    }

    /// Parses the body as a Shopify [`Order`](crate::shopify::Order), e.g.
    /// for `orders/create` or `orders/paid`. Anything but a JSON object
    /// with order-shaped fields is [`Error::InvalidInput`].
    pub fn order(&self) -> Result<crate::shopify::Order, Error> {
        crate::shopify::resources::from_body(&self.body, "order")
    }

    /// Parses the body as a Shopify [`Product`](crate::shopify::Product),
    /// e.g. for `products/create`. Errors as [`Webhook::order`].
    pub fn product(&self) -> Result<crate::shopify::Product, Error> {
        crate::shopify::resources::from_body(&self.body, "product")
    }

    /// Parses the body as a Shopify [`Customer`](crate::shopify::Customer),
    /// e.g. for `customers/create`. Errors as [`Webhook::order`].
    pub fn customer(&self) -> Result<crate::shopify::Customer, Error> {
        crate::shopify::resources::from_body(&self.body, "customer")
    }

    /// The body as UTF-8 text.
    pub fn body_str(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::invalid_input(format!("body: {e}")))
    }

    /// The first header with this name, compared case-insensitively (the host
    /// lower-cases names, but callers should not have to remember that).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Builder-style setters, mostly for tests. On a Shopify webhook each
    /// one also rewrites the matching `x-shopify-*` header, so the record
    /// and the headers agree.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        let v = self.topic.clone();
        self.set_shopify_header("x-shopify-topic", Some(v));
        self
    }

    pub fn with_account_id(mut self, account: impl Into<String>) -> Self {
        self.account_id = account.into();
        let v = self.account_id.clone();
        self.set_shopify_header("x-shopify-shop-domain", Some(v));
        self
    }

    pub fn with_api_version(mut self, version: Option<&str>) -> Self {
        self.api_version = version.map(str::to_owned);
        self.set_shopify_header("x-shopify-api-version", self.api_version.clone());
        self
    }

    pub fn with_delivery_id(mut self, id: impl Into<String>) -> Self {
        self.delivery_id = id.into();
        let v = self.delivery_id.clone();
        self.set_shopify_header("x-shopify-webhook-id", Some(v));
        self
    }

    pub fn with_occurred_at(mut self, at: Option<&str>) -> Self {
        self.occurred_at = at.map(str::to_owned);
        self.set_shopify_header("x-shopify-triggered-at", self.occurred_at.clone());
        self
    }

    pub fn with_workspace_id(mut self, id: impl Into<String>) -> Self {
        self.workspace_id = id.into();
        self
    }

    pub fn with_brand_id(mut self, id: impl Into<String>) -> Self {
        self.brand_id = id.into();
        self
    }

    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = provider.into();
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets (or, with `None`, removes) a header; the name is lower-cased like
    /// the host does.
    pub fn with_header(mut self, name: &str, value: Option<&str>) -> Self {
        self.set_header(name, value.map(str::to_owned));
        self
    }

    fn set_shopify_header(&mut self, name: &str, value: Option<String>) {
        if self.provider == "shopify" {
            self.set_header(name, value);
        }
    }

    fn set_header(&mut self, name: &str, value: Option<String>) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|h| h.name != name);
        if let Some(value) = value {
            self.headers.push(Header { name, value });
        }
    }

    /// The constructor is crate-private: on wasm only the host makes
    /// webhooks, and natively [`testing`](crate::testing) fills in
    /// realistic defaults.
    #[allow(clippy::too_many_arguments, dead_code)]
    pub(crate) fn from_parts(
        provider: String,
        topic: String,
        account_id: String,
        workspace_id: String,
        brand_id: String,
        delivery_id: String,
        occurred_at: Option<String>,
        api_version: Option<String>,
        headers: Vec<Header>,
        body: Vec<u8>,
    ) -> Self {
        Webhook {
            provider,
            topic,
            account_id,
            workspace_id,
            brand_id,
            delivery_id,
            occurred_at,
            api_version,
            headers,
            body,
        }
    }
}
