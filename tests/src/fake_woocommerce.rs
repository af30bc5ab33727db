//! A local stand-in for a WooCommerce site's webhooks REST API, on loopback,
//! speaking the real paths and shapes (`/wp-json/wc/v3/webhooks`):
//!
//! - `GET` lists, paginated as WordPress does (`per_page` default 10, at most
//!   100, `page`; `X-WP-Total` and `X-WP-TotalPages` headers; `status`
//!   filter, default `all`);
//! - `POST` creates (`name`, `topic`, `delivery_url`, `secret`, `status`):
//!   the topic must be a core one (`order|product|customer|coupon` ×
//!   `created|updated|deleted|restored`) or `action.<hook>`, the delivery
//!   URL http(s). Like WooCommerce it does not refuse a second webhook of the
//!   same topic and URL: avoiding duplicates is the client's job;
//! - `GET`/`PUT`/`DELETE /webhooks/{id}`; `DELETE` needs `force=true`
//!   (webhooks cannot be trashed: 501 otherwise).
//!
//! Every call needs HTTP Basic with the site's consumer key and secret.
//! Errors are WooCommerce's `{code, message, data: {status}}` with the codes
//! WooCommerce uses (`woocommerce_rest_authentication_error` for a wrong key
//! or secret, `woocommerce_rest_cannot_view`/`_create` without credentials,
//! `woocommerce_rest_webhook_invalid_id`, `rest_invalid_param`, …). The
//! secret is write-only: never listed, but readable here for assertions.
//! A read-only key can be simulated, and the next calls told to fail.
//!
//! It also delivers as WooCommerce does: the unsigned creation ping
//! (`webhook_id=N`, form-encoded, no `X-WC-*` header; sent when a webhook is
//! created once [`FakeWooCommerce::ping_on_create`] is on, as WooCommerce's
//! REST API does, or by [`FakeWooCommerce::ping`]) and webhooks signed with
//! the secret it was given, with the `X-WC-Webhook-*` headers
//! ([`FakeWooCommerce::deliver`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

/// A webhook as the fake holds it, secret included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeWooWebhook {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub topic: String,
    pub delivery_url: String,
    pub secret: String,
}

impl FakeWooWebhook {
    fn to_json(&self, base: &str) -> Value {
        let (resource, event) = self.topic.split_once('.').unwrap_or(("action", ""));
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "topic": self.topic,
            "resource": resource,
            "event": event,
            "hooks": [],
            "delivery_url": self.delivery_url,
            "date_created": "2026-01-05T10:00:00",
            "date_created_gmt": "2026-01-05T10:00:00",
            "date_modified": "2026-01-05T10:00:00",
            "date_modified_gmt": "2026-01-05T10:00:00",
            "_links": {
                "self": [{"href": format!("{base}/wp-json/wc/v3/webhooks/{}", self.id)}],
                "collection": [{"href": format!("{base}/wp-json/wc/v3/webhooks")}]
            }
        })
    }
}

/// One call the fake received (method, path, query).
#[derive(Debug, Clone)]
pub struct WooCall {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
}

struct Inner {
    base: String,
    consumer_key: String,
    consumer_secret: String,
    read_only: bool,
    webhooks: BTreeMap<u64, FakeWooWebhook>,
    next_id: u64,
    calls: Vec<WooCall>,
    /// (status, how many more calls answer it)
    failure: Option<(u16, u32)>,
    ping_on_create: bool,
    /// (webhook id, the status its delivery URL answered the ping with; 0:
    /// no answer)
    pings: Vec<(u64, u16)>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct FakeWooCommerce {
    pub addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWooCommerce {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeWooCommerce {
    /// A site on a free loopback port whose REST API key is
    /// `consumer_key`/`consumer_secret` (read/write).
    pub async fn start(consumer_key: &str, consumer_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner: Shared = Arc::new(Mutex::new(Inner {
            base: format!("http://{addr}"),
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            read_only: false,
            webhooks: BTreeMap::new(),
            // WooCommerce webhooks are posts: ids are large and not from 1.
            next_id: 140,
            calls: Vec::new(),
            failure: None,
            ping_on_create: false,
            pings: Vec::new(),
        }));
        let app = Router::new()
            .route(
                "/wp-json/wc/v3/webhooks",
                get(list_webhooks).post(create_webhook),
            )
            .route(
                "/wp-json/wc/v3/webhooks/{id}",
                get(get_webhook).put(update_webhook).delete(delete_webhook),
            )
            .fallback(no_route)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// The site URL to give the client.
    pub fn site_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key's permissions become read only (or read/write again).
    pub fn set_read_only(&self, on: bool) {
        self.inner.lock().unwrap().read_only = on;
    }

    /// The next `times` calls answer `status` with a WooCommerce error body.
    pub fn fail_next(&self, status: u16, times: u32) {
        self.inner.lock().unwrap().failure = Some((status, times));
    }

    pub fn webhooks(&self) -> Vec<FakeWooWebhook> {
        self.inner
            .lock()
            .unwrap()
            .webhooks
            .values()
            .cloned()
            .collect()
    }

    /// Adds a webhook as the shop owner would in WooCommerce's settings.
    pub fn add_webhook(&self, topic: &str, delivery_url: &str, secret: &str) -> u64 {
        let mut inner = self.inner.lock().unwrap();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.webhooks.insert(
            id,
            FakeWooWebhook {
                id,
                name: format!("added by hand {id}"),
                status: "disabled".into(),
                topic: topic.into(),
                delivery_url: delivery_url.into(),
                secret: secret.into(),
            },
        );
        id
    }

    pub fn calls(&self) -> Vec<WooCall> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Whether creating a webhook pings its delivery URL (off by default:
    /// the API tests deliver to addresses nobody serves).
    pub fn ping_on_create(&self, on: bool) {
        self.inner.lock().unwrap().ping_on_create = on;
    }

    /// The pings sent: (webhook id, the status answered; 0: none).
    pub fn pings(&self) -> Vec<(u64, u16)> {
        self.inner.lock().unwrap().pings.clone()
    }

    /// Pings webhook `id`'s delivery URL as WooCommerce does when a webhook
    /// is created; answers the status (0: no answer).
    pub async fn ping(&self, id: u64) -> u16 {
        let url = self.inner.lock().unwrap().webhooks[&id]
            .delivery_url
            .clone();
        let status = send_ping(id, &url).await;
        self.inner.lock().unwrap().pings.push((id, status));
        status
    }

    /// Delivers `body` to the active webhook of `topic`, as WooCommerce
    /// does: signed with the webhook's secret, with its `X-WC-Webhook-*`
    /// headers. Answers the status and body of the delivery URL's answer.
    pub async fn deliver(&self, topic: &str, body: &[u8]) -> (u16, String) {
        let (hook, source) = {
            let inner = self.inner.lock().unwrap();
            let hook = inner
                .webhooks
                .values()
                .find(|w| w.topic == topic && w.status == "active")
                .unwrap_or_else(|| panic!("no active webhook of {topic}"))
                .clone();
            (hook, format!("{}/", inner.base))
        };
        let (resource, event) = hook.topic.split_once('.').unwrap_or(("action", ""));
        let signature = ionflux_gateway::providers::verify::presets::woocommerce()
            .sign(hook.secret.as_bytes(), "", "", body)
            .expect("an HMAC signs with any key");
        let resp = reqwest::Client::new()
            .post(&hook.delivery_url)
            .header("user-agent", USER_AGENT)
            .header("content-type", "application/json")
            .header("x-wc-webhook-source", source)
            .header("x-wc-webhook-topic", &hook.topic)
            .header("x-wc-webhook-resource", resource)
            .header("x-wc-webhook-event", event)
            .header("x-wc-webhook-signature", signature)
            .header("x-wc-webhook-id", hook.id.to_string())
            .header(
                "x-wc-webhook-delivery-id",
                uuid::Uuid::new_v4().simple().to_string(),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("the delivery URL answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

const USER_AGENT: &str = "WooCommerce/9.8.1 Hookshot (WordPress/6.8.1)";

/// WooCommerce's ping: `webhook_id=<id>`, form-encoded, unsigned.
async fn send_ping(id: u64, url: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("user-agent", USER_AGENT)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("webhook_id={id}"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// WooCommerce's error answer, `{code, message, data: {status}}`.
struct WcError {
    status: u16,
    code: &'static str,
    message: String,
}

impl IntoResponse for WcError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({
            "code": self.code,
            "message": self.message,
            "data": {"status": status.as_u16()},
        });
        (status, Json(body)).into_response()
    }
}

fn wc_err(status: u16, code: &'static str, message: &str) -> WcError {
    WcError {
        status,
        code,
        message: message.into(),
    }
}

fn wc_error(status: u16, code: &'static str, message: &str) -> Response {
    wc_err(status, code, message).into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Records the call, then answers what WooCommerce would before the handler
/// runs: an injected failure, or an authentication error.
fn admit(
    inner: &mut Inner,
    headers: &HeaderMap,
    method: &str,
    path: String,
    query: &BTreeMap<String, String>,
    access: Access,
) -> Result<(), WcError> {
    inner.calls.push(WooCall {
        method: method.into(),
        path,
        query: query.clone(),
    });
    if let Some((status, times)) = inner.failure {
        inner.failure = (times > 1).then(|| (status, times - 1));
        return Err(wc_err(
            status,
            "internal_server_error",
            "There has been a critical error on this website.",
        ));
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((key, secret)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
        // Not logged in: WordPress's permission callback speaks.
        let (code, message) = match access {
            Access::Read => (
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            ),
            Access::Write => (
                "woocommerce_rest_cannot_create",
                "Sorry, you are not allowed to create resources.",
            ),
        };
        return Err(wc_err(401, code, message));
    };
    if key != inner.consumer_key {
        return Err(wc_err(
            401,
            "woocommerce_rest_authentication_error",
            "Consumer key is invalid.",
        ));
    }
    if secret != inner.consumer_secret {
        return Err(wc_err(
            401,
            "woocommerce_rest_authentication_error",
            "Consumer secret is invalid.",
        ));
    }
    if access == Access::Write && inner.read_only {
        return Err(wc_err(
            401,
            "woocommerce_rest_authentication_error",
            "The API key provided does not have write permissions.",
        ));
    }
    Ok(())
}

fn valid_topic(topic: &str) -> bool {
    if let Some(hook) = topic.strip_prefix("action.") {
        return !hook.is_empty();
    }
    matches!(
        topic.split_once('.'),
        Some((
            "order" | "product" | "customer" | "coupon",
            "created" | "updated" | "deleted" | "restored"
        ))
    )
}

fn valid_status(status: &str) -> bool {
    matches!(status, "active" | "paused" | "disabled")
}

async fn list_webhooks(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let path = "/wp-json/wc/v3/webhooks".to_string();
    if let Err(r) = admit(&mut inner, &headers, "GET", path, &query, Access::Read) {
        return r.into_response();
    }
    let number = |name: &str, default: usize| match query.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            wc_err(
                400,
                "rest_invalid_param",
                &format!("Invalid parameter(s): {name}"),
            )
        }),
    };
    let per_page = match number("per_page", 10) {
        Ok(n) if n <= 100 => n,
        Ok(_) => {
            return wc_error(400, "rest_invalid_param", "Invalid parameter(s): per_page");
        }
        Err(r) => return r.into_response(),
    };
    let page = match number("page", 1) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let status = query.get("status").map_or("all", String::as_str);
    if status != "all" && !valid_status(status) {
        return wc_error(400, "rest_invalid_param", "Invalid parameter(s): status");
    }
    // WordPress's default order: newest first.
    let matching: Vec<&FakeWooWebhook> = inner
        .webhooks
        .values()
        .rev()
        .filter(|w| status == "all" || w.status == status)
        .collect();
    let total = matching.len();
    let total_pages = total.div_ceil(per_page);
    if page > total_pages.max(1) {
        return wc_error(
            400,
            "rest_post_invalid_page_number",
            "The page number requested is larger than the number of pages available.",
        );
    }
    let body: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|w| w.to_json(&inner.base))
        .collect();
    (
        [
            ("x-wp-total", total.to_string()),
            ("x-wp-totalpages", total_pages.to_string()),
        ],
        Json(body),
    )
        .into_response()
}

async fn create_webhook(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let (response, ping) = create(&shared, &headers, body);
    // WooCommerce pings the new webhook before it answers.
    if let Some((id, url)) = ping {
        let status = send_ping(id, &url).await;
        shared.lock().unwrap().pings.push((id, status));
    }
    response
}

/// The create, and what to ping then: (id, delivery URL).
fn create(
    shared: &Shared,
    headers: &HeaderMap,
    body: Option<Json<Value>>,
) -> (Response, Option<(u64, String)>) {
    let mut inner = shared.lock().unwrap();
    let ping = inner.ping_on_create;
    match create_locked(&mut inner, headers, body) {
        Ok((id, url, response)) => (response, ping.then_some((id, url))),
        Err(e) => (e.into_response(), None),
    }
}

fn create_locked(
    inner: &mut Inner,
    headers: &HeaderMap,
    body: Option<Json<Value>>,
) -> Result<(u64, String, Response), WcError> {
    let path = "/wp-json/wc/v3/webhooks".to_string();
    admit(
        inner,
        headers,
        "POST",
        path,
        &BTreeMap::new(),
        Access::Write,
    )?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    let missing: Vec<&str> = ["topic", "delivery_url"]
        .into_iter()
        .filter(|f| field(f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(wc_err(
            400,
            "rest_missing_callback_param",
            &format!("Missing parameter(s): {}", missing.join(", ")),
        ));
    }
    let topic = field("topic").unwrap_or_default();
    if !valid_topic(topic) {
        return Err(wc_err(
            400,
            "woocommerce_rest_webhook_invalid_topic",
            "Webhook topic is required and must be valid.",
        ));
    }
    let delivery_url = field("delivery_url").unwrap_or_default();
    if !(delivery_url.starts_with("https://") || delivery_url.starts_with("http://")) {
        return Err(wc_err(
            400,
            "rest_invalid_param",
            "Invalid parameter(s): delivery_url",
        ));
    }
    let status = field("status").unwrap_or("active");
    if !valid_status(status) {
        return Err(wc_err(
            400,
            "rest_invalid_param",
            "Invalid parameter(s): status",
        ));
    }
    let id = inner.next_id;
    inner.next_id += 1;
    let webhook = FakeWooWebhook {
        id,
        name: field("name").unwrap_or("Webhook").into(),
        status: status.into(),
        topic: topic.into(),
        delivery_url: delivery_url.into(),
        // WooCommerce derives one from the user when none is given.
        secret: field("secret").unwrap_or("derived-from-user").into(),
    };
    let json = webhook.to_json(&inner.base);
    let url = webhook.delivery_url.clone();
    inner.webhooks.insert(id, webhook);
    Ok((id, url, (StatusCode::CREATED, Json(json)).into_response()))
}

fn invalid_id() -> Response {
    wc_error(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
}

async fn get_webhook(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let path = format!("/wp-json/wc/v3/webhooks/{id}");
    if let Err(r) = admit(
        &mut inner,
        &headers,
        "GET",
        path,
        &BTreeMap::new(),
        Access::Read,
    ) {
        return r.into_response();
    }
    match id
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.webhooks.get(&id))
    {
        Some(w) => Json(w.to_json(&inner.base)).into_response(),
        None => invalid_id(),
    }
}

async fn update_webhook(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let path = format!("/wp-json/wc/v3/webhooks/{id}");
    if let Err(r) = admit(
        &mut inner,
        &headers,
        "PUT",
        path,
        &BTreeMap::new(),
        Access::Write,
    ) {
        return r.into_response();
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    if field("topic").is_some_and(|t| !valid_topic(t)) {
        return wc_error(
            400,
            "woocommerce_rest_webhook_invalid_topic",
            "Webhook topic is required and must be valid.",
        );
    }
    if field("status").is_some_and(|s| !valid_status(s)) {
        return wc_error(400, "rest_invalid_param", "Invalid parameter(s): status");
    }
    let base = inner.base.clone();
    let Some(w) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.webhooks.get_mut(&id))
    else {
        return invalid_id();
    };
    if let Some(v) = field("name") {
        w.name = v.into();
    }
    if let Some(v) = field("topic") {
        w.topic = v.into();
    }
    if let Some(v) = field("delivery_url") {
        w.delivery_url = v.into();
    }
    if let Some(v) = field("secret") {
        w.secret = v.into();
    }
    if let Some(v) = field("status") {
        w.status = v.into();
    }
    Json(w.to_json(&base)).into_response()
}

async fn delete_webhook(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let path = format!("/wp-json/wc/v3/webhooks/{id}");
    if let Err(r) = admit(&mut inner, &headers, "DELETE", path, &query, Access::Write) {
        return r.into_response();
    }
    let Some(id) = id
        .parse::<u64>()
        .ok()
        .filter(|id| inner.webhooks.contains_key(id))
    else {
        return invalid_id();
    };
    if !matches!(query.get("force").map(String::as_str), Some("true" | "1")) {
        return wc_error(
            501,
            "woocommerce_rest_trash_not_supported",
            "Webhooks do not support trashing.",
        );
    }
    let base = inner.base.clone();
    let w = inner.webhooks.remove(&id).expect("checked above");
    Json(w.to_json(&base)).into_response()
}

async fn no_route() -> Response {
    wc_error(
        404,
        "rest_no_route",
        "No route was found matching the URL and request method.",
    )
}
