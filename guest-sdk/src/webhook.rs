use serde::de::DeserializeOwned;

use crate::Error;

/// One HTTP header as received; the host lower-cases names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A verified webhook, exactly as the platform sent it.
///
/// Fields are public for reading; the struct is `#[non_exhaustive]` so new
/// fields in the contract do not break transforms. Build one in tests with
/// [`testing::webhook`](crate::testing::webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhook {
    /// `"shopify"`.
    pub provider: String,
    /// Platform topic, e.g. `"orders/create"`.
    pub topic: String,
    /// e.g. `"example.myshopify.com"`.
    pub shop_domain: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// `X-Shopify-API-Version`, e.g. `"2024-01"`.
    pub api_version: Option<String>,
    /// `X-Shopify-Webhook-Id`.
    pub webhook_id: String,
    /// `X-Shopify-Triggered-At`, as sent.
    pub triggered_at: Option<String>,
    /// `X-Shopify-Event-Id`.
    pub event_id: Option<String>,
    /// Selected headers (the `X-Shopify-*` family).
    pub headers: Vec<Header>,
    /// The raw request body, byte for byte.
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

    /// Builder-style setters, mostly for tests. Each one also rewrites the
    /// matching `x-shopify-*` header so the record and the headers agree.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        let v = self.topic.clone();
        self.set_header("x-shopify-topic", Some(v));
        self
    }

    pub fn with_shop_domain(mut self, shop: impl Into<String>) -> Self {
        self.shop_domain = shop.into();
        let v = self.shop_domain.clone();
        self.set_header("x-shopify-shop-domain", Some(v));
        self
    }

    pub fn with_api_version(mut self, version: Option<&str>) -> Self {
        self.api_version = version.map(str::to_owned);
        self.set_header("x-shopify-api-version", self.api_version.clone());
        self
    }

    pub fn with_webhook_id(mut self, id: impl Into<String>) -> Self {
        self.webhook_id = id.into();
        let v = self.webhook_id.clone();
        self.set_header("x-shopify-webhook-id", Some(v));
        self
    }

    pub fn with_triggered_at(mut self, at: Option<&str>) -> Self {
        self.triggered_at = at.map(str::to_owned);
        self.set_header("x-shopify-triggered-at", self.triggered_at.clone());
        self
    }

    pub fn with_event_id(mut self, id: Option<&str>) -> Self {
        self.event_id = id.map(str::to_owned);
        self.set_header("x-shopify-event-id", self.event_id.clone());
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

    fn set_header(&mut self, name: &str, value: Option<String>) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|h| h.name != name);
        if let Some(value) = value {
            self.headers.push(Header { name, value });
        }
    }

    /// The constructor is crate-private: on wasm only the host makes
    /// webhooks, and natively [`testing::webhook`](crate::testing::webhook)
    /// fills in realistic defaults.
    #[allow(clippy::too_many_arguments, dead_code)]
    pub(crate) fn from_parts(
        provider: String,
        topic: String,
        shop_domain: String,
        workspace_id: String,
        brand_id: String,
        api_version: Option<String>,
        webhook_id: String,
        triggered_at: Option<String>,
        event_id: Option<String>,
        headers: Vec<Header>,
        body: Vec<u8>,
    ) -> Self {
        Webhook {
            provider,
            topic,
            shop_domain,
            workspace_id,
            brand_id,
            api_version,
            webhook_id,
            triggered_at,
            event_id,
            headers,
            body,
        }
    }
}
