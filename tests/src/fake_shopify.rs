//! A local stand-in for Shopify's OAuth and Admin REST endpoints, on
//! loopback, speaking the real paths and shapes:
//!
//! - `POST /{shop}/admin/oauth/access_token` (`{client_id, client_secret,
//!   code, expiring?}` → `{access_token, scope[, expires_in, refresh_token,
//!   refresh_token_expires_in]}`); a code works once;
//! - the same path with `{client_id, client_secret, grant_type:
//!   "refresh_token", refresh_token}`: a refresh. Refresh tokens are single
//!   use and rotated: each refresh answers a new access token and a new
//!   refresh token, and the spent one is refused from then on (400
//!   `invalid_grant`; no grace period, the strictest reading). Refreshes are
//!   counted, and can be told to fail or to hang;
//! - `GET`/`POST /{shop}/admin/api/{version}/webhooks.json`,
//!   `PUT`/`DELETE /{shop}/admin/api/{version}/webhooks/{id}.json`, with
//!   `X-Shopify-Access-Token` checked against the tokens it issued for that
//!   shop. As at Shopify, the subscriptions are the app's in that shop,
//!   listed to any of its tokens; one topic may have several at different
//!   addresses, and a second one of the same (topic, address), created or
//!   moved there, is a `422`.
//! - `GET /{shop}/admin/api/{version}/shop.json` (`{"shop": {…}}`), token
//!   checked likewise; can be told to fail or hang ([`ShopMode`]).
//!
//! - `GET /{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state`:
//!   a merchant who approves at once. It answers a 302 to `redirect_uri` with
//!   `code`, `shop`, `state`, `timestamp` and `hmac` (lowercase hex
//!   HMAC-SHA256 with the client secret over Shopify's canonical query), as
//!   Shopify does after the merchant clicks "Install".
//!
//! The gateway reaches it through `admin_base_url = http://127.0.0.1:PORT/{shop}`
//! (and `authorize_base_url` likewise). It records every call and can be told
//! to fail. The `fake-shopify` binary of this crate serves it on a fixed
//! address for trying the install flow by hand (see the README).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub shop: String,
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeWebhook {
    pub id: u64,
    pub topic: String,
    pub address: String,
}

#[derive(Default)]
struct Inner {
    client_id: String,
    client_secret: String,
    /// access token -> shop
    tokens: HashMap<String, String>,
    refresh_tokens: Vec<String>,
    codes_used: HashSet<String>,
    webhooks: HashMap<String, Vec<FakeWebhook>>,
    next_id: u64,
    calls: Vec<Call>,
    exchange_failure: Option<u16>,
    /// refresh token -> shop, for the refresh tokens not yet spent
    live_refresh: HashMap<String, String>,
    /// the refresh token issued last, per shop
    latest_refresh: HashMap<String, String>,
    refresh_calls: u64,
    refreshes_granted: u64,
    refresh_failure: Option<u16>,
    /// seconds an issued access token lives
    token_lifetime: i64,
    /// while true, refresh requests wait
    hang: Option<tokio::sync::watch::Receiver<bool>>,
    /// topic -> how many more creates of it fail with 500
    create_failures: HashMap<String, u32>,
    /// How `shop.json` answers (None: as Shopify does).
    shop_mode: Option<ShopMode>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct FakeShopify {
    pub addr: SocketAddr,
    inner: Shared,
    hang: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeShopify {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeShopify {
    /// Serves on a free loopback port, as the app `client_id`/`client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, client_id, client_secret)
    }

    /// Serves on `listener`, as the app `client_id`/`client_secret`.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        let (hang, hang_rx) = tokio::sync::watch::channel(false);
        let inner: Shared = Arc::new(Mutex::new(Inner {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            next_id: 1_000_000,
            token_lifetime: 3600,
            hang: Some(hang_rx),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{shop}/admin/oauth/authorize", get(authorize))
            .route("/{shop}/admin/oauth/access_token", post(access_token))
            .route(
                "/{shop}/admin/api/{version}/webhooks.json",
                post(create_webhook).get(list_webhooks),
            )
            .route(
                "/{shop}/admin/api/{version}/webhooks/{file}",
                put(update_webhook).delete(delete_webhook),
            )
            .route("/{shop}/admin/api/{version}/shop.json", get(shop_json))
            .with_state(inner.clone());
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            inner,
            hang,
            task,
        }
    }

    /// Access tokens issued from now on live this many seconds.
    pub fn set_token_lifetime(&self, secs: i64) {
        self.inner.lock().unwrap().token_lifetime = secs;
    }

    /// The next refreshes answer this status (None: work again).
    pub fn fail_refresh(&self, status: Option<u16>) {
        self.inner.lock().unwrap().refresh_failure = status;
    }

    /// While on, refresh requests are held unanswered.
    pub fn hang_refresh(&self, on: bool) {
        self.hang.send_replace(on);
    }

    /// Refresh requests received (granted or not).
    pub fn refresh_calls(&self) -> u64 {
        self.inner.lock().unwrap().refresh_calls
    }

    /// Refreshes that answered new tokens.
    pub fn refreshes_granted(&self) -> u64 {
        self.inner.lock().unwrap().refreshes_granted
    }

    /// The refresh token of `shop` issued last, and whether it is unspent.
    pub fn latest_refresh_token(&self, shop: &str) -> Option<(String, bool)> {
        let inner = self.inner.lock().unwrap();
        inner
            .latest_refresh
            .get(shop)
            .map(|t| (t.clone(), inner.live_refresh.contains_key(t)))
    }

    /// Issues an expiring access token and refresh token for `shop` as an
    /// install would, without the OAuth dance: `(access, refresh,
    /// expires_in)`.
    pub fn issue_tokens(&self, shop: &str) -> (String, String, i64) {
        let mut inner = self.inner.lock().unwrap();
        let (access, refresh) = issue(&mut inner, shop);
        (access, refresh, inner.token_lifetime)
    }

    /// What the gateway's `admin_base_url` should be.
    pub fn base_url_template(&self) -> String {
        format!("http://{}/{{shop}}", self.addr)
    }

    /// The next code exchanges answer this status (None: work again).
    pub fn fail_exchange(&self, status: Option<u16>) {
        self.inner.lock().unwrap().exchange_failure = status;
    }

    /// The next `times` creates of `topic` answer 500.
    pub fn fail_webhook_creates(&self, topic: &str, times: u32) {
        self.inner
            .lock()
            .unwrap()
            .create_failures
            .insert(topic.into(), times);
    }

    pub fn webhooks(&self, shop: &str) -> Vec<FakeWebhook> {
        self.inner
            .lock()
            .unwrap()
            .webhooks
            .get(shop)
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Every access and refresh token handed out, for leak checks.
    pub fn issued_tokens(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .tokens
            .keys()
            .cloned()
            .chain(inner.refresh_tokens.iter().cloned())
            .collect()
    }

    /// The task serving the fake; it ends only if serving fails.
    pub async fn serve_forever(mut self) {
        let _ = (&mut self.task).await;
    }

    /// The access tokens issued for `shop`.
    pub fn access_tokens_of(&self, shop: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .tokens
            .iter()
            .filter(|(_, s)| *s == shop)
            .map(|(t, _)| t.clone())
            .collect()
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn record(inner: &mut Inner, method: &'static str, shop: &str, path: String, body: Value) {
    inner.calls.push(Call {
        method,
        shop: shop.to_string(),
        path,
        body,
    });
}

/// A fresh access token and refresh token for `shop`.
fn issue(inner: &mut Inner, shop: &str) -> (String, String) {
    let access = format!("shpat_{}", uuid::Uuid::new_v4().simple());
    inner.tokens.insert(access.clone(), shop.to_string());
    let refresh = format!("shprt_{}", uuid::Uuid::new_v4().simple());
    inner.refresh_tokens.push(refresh.clone());
    inner.live_refresh.insert(refresh.clone(), shop.to_string());
    inner
        .latest_refresh
        .insert(shop.to_string(), refresh.clone());
    (access, refresh)
}

async fn access_token(
    State(shared): State<Shared>,
    Path(shop): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    if body["grant_type"] == "refresh_token" {
        return refresh(shared, shop, body).await;
    }
    let mut inner = shared.lock().unwrap();
    record(
        &mut inner,
        "POST",
        &shop,
        "/admin/oauth/access_token".into(),
        body.clone(),
    );
    if let Some(status) = inner.exchange_failure {
        return error(
            StatusCode::from_u16(status).unwrap(),
            json!({"error": "failure", "error_description": "told to fail"}),
        );
    }
    if body["client_id"] != inner.client_id.as_str()
        || body["client_secret"] != inner.client_secret.as_str()
    {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_client", "error_description": "client credentials are wrong"}),
        );
    }
    let Some(code) = body["code"].as_str().filter(|c| !c.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "code is missing"}),
        );
    };
    if !inner.codes_used.insert(code.to_string()) {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "The authorization code was not found or was already used"}),
        );
    }
    let access = format!("shpat_{}", uuid::Uuid::new_v4().simple());
    inner.tokens.insert(access.clone(), shop.clone());
    let scope = "read_orders,read_products,read_customers";
    if body["expiring"] == 1 {
        let refresh = format!("shprt_{}", uuid::Uuid::new_v4().simple());
        inner.refresh_tokens.push(refresh.clone());
        inner.live_refresh.insert(refresh.clone(), shop.clone());
        inner.latest_refresh.insert(shop.clone(), refresh.clone());
        Json(json!({
            "access_token": access,
            "scope": scope,
            "expires_in": inner.token_lifetime,
            "refresh_token": refresh,
            "refresh_token_expires_in": 7_776_000,
        }))
        .into_response()
    } else {
        Json(json!({"access_token": access, "scope": scope})).into_response()
    }
}

/// The merchant approves at once: back to the app's `redirect_uri` with a
/// fresh code and the query signed as Shopify signs it.
async fn authorize(
    State(shared): State<Shared>,
    Path(shop): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.lock().unwrap();
    let mut recorded = json!(q);
    recorded["state"] = json!("[redacted]");
    record(
        &mut inner,
        "GET",
        &shop,
        "/admin/oauth/authorize".into(),
        recorded,
    );
    let field = |name: &str| q.get(name).map(String::as_str).unwrap_or("");
    if field("client_id") != inner.client_id {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Oauth error invalid_request: The client_id is unknown"}),
        );
    }
    let Ok(mut back) = reqwest::Url::parse(field("redirect_uri")) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Oauth error invalid_request: The redirect_uri is missing or not a URL"}),
        );
    };
    let code = uuid::Uuid::new_v4().simple().to_string();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let pairs: Vec<(String, String)> = [
        ("code", code.as_str()),
        ("shop", shop.as_str()),
        ("state", field("state")),
        ("timestamp", timestamp.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let hmac = ionflux_gateway::providers::shopify::oauth::sign_query(
        inner.client_secret.as_bytes(),
        &pairs,
    );
    back.query_pairs_mut()
        .extend_pairs(&pairs)
        .append_pair("hmac", &hmac);
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, back.to_string())],
    )
        .into_response()
}

/// `grant_type=refresh_token`: spends the refresh token, answers new ones.
async fn refresh(shared: Shared, shop: String, body: Value) -> Response {
    let hang = {
        let mut inner = shared.lock().unwrap();
        inner.refresh_calls += 1;
        let mut redacted = body.clone();
        redacted["refresh_token"] = json!("[redacted]");
        redacted["client_secret"] = json!("[redacted]");
        record(
            &mut inner,
            "POST",
            &shop,
            "/admin/oauth/access_token".into(),
            redacted,
        );
        inner.hang.clone()
    };
    if let Some(mut hang) = hang {
        let _ = hang.wait_for(|on| !*on).await;
    }
    let mut inner = shared.lock().unwrap();
    if let Some(status) = inner.refresh_failure {
        return error(
            StatusCode::from_u16(status).unwrap(),
            json!({"error": "failure", "error_description": "told to fail"}),
        );
    }
    if body["client_id"] != inner.client_id.as_str()
        || body["client_secret"] != inner.client_secret.as_str()
    {
        return error(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "client credentials are wrong"}),
        );
    }
    let token = body["refresh_token"].as_str().unwrap_or("");
    if inner.live_refresh.get(token) != Some(&shop) {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "the refresh token is invalid, expired or already used"}),
        );
    }
    inner.live_refresh.remove(token);
    inner.refreshes_granted += 1;
    let (access, refresh) = issue(&mut inner, &shop);
    Json(json!({
        "access_token": access,
        "scope": "read_orders,read_products,read_customers",
        "expires_in": inner.token_lifetime,
        "refresh_token": refresh,
        "refresh_token_expires_in": 7_776_000,
    }))
    .into_response()
}

/// The shop the token was issued for must be this one.
fn authorized(inner: &Inner, shop: &str, headers: &HeaderMap) -> bool {
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    inner.tokens.get(token).is_some_and(|s| s == shop)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
    )
}

fn webhook_json(w: &FakeWebhook, version: &str) -> Value {
    json!({
        "id": w.id,
        "address": w.address,
        "topic": w.topic,
        "created_at": "2026-05-01T10:00:00-04:00",
        "updated_at": "2026-05-01T10:00:00-04:00",
        "format": "json",
        "fields": [],
        "metafield_namespaces": [],
        "api_version": version,
        "private_metafield_namespaces": [],
    })
}

async fn list_webhooks(
    State(inner): State<Shared>,
    Path((shop, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    record(
        &mut inner,
        "GET",
        &shop,
        format!("/admin/api/{version}/webhooks.json"),
        Value::Null,
    );
    if !authorized(&inner, &shop, &headers) {
        return unauthorized();
    }
    let list: Vec<Value> = inner
        .webhooks
        .get(&shop)
        .map(|ws| ws.iter().map(|w| webhook_json(w, &version)).collect())
        .unwrap_or_default();
    Json(json!({"webhooks": list})).into_response()
}

async fn create_webhook(
    State(inner): State<Shared>,
    Path((shop, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let mut inner = inner.lock().unwrap();
    record(
        &mut inner,
        "POST",
        &shop,
        format!("/admin/api/{version}/webhooks.json"),
        body.clone(),
    );
    if !authorized(&inner, &shop, &headers) {
        return unauthorized();
    }
    let w = &body["webhook"];
    let (Some(topic), Some(address)) = (w["topic"].as_str(), w["address"].as_str()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": {"topic": ["can't be blank"], "address": ["can't be blank"]}}),
        );
    };
    if w["format"] != "json" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": {"format": ["is not included in the list"]}}),
        );
    }
    if let Some(left) = inner.create_failures.get_mut(topic)
        && *left > 0
    {
        *left -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"errors": "Internal Server Error"}),
        );
    }
    let (topic, address) = (topic.to_string(), address.to_string());
    let list = inner.webhooks.entry(shop.clone()).or_default();
    if list
        .iter()
        .any(|x| x.topic == topic && x.address == address)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": {"address": ["for this topic has already been taken"]}}),
        );
    }
    inner.next_id += 1;
    let created = FakeWebhook {
        id: inner.next_id,
        topic,
        address,
    };
    inner
        .webhooks
        .entry(shop)
        .or_default()
        .push(created.clone());
    (
        StatusCode::CREATED,
        Json(json!({"webhook": webhook_json(&created, &version)})),
    )
        .into_response()
}

fn webhook_id(file: &str) -> Option<u64> {
    file.strip_suffix(".json")?.parse().ok()
}

async fn update_webhook(
    State(inner): State<Shared>,
    Path((shop, version, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let mut inner = inner.lock().unwrap();
    record(
        &mut inner,
        "PUT",
        &shop,
        format!("/admin/api/{version}/webhooks/{file}"),
        body.clone(),
    );
    if !authorized(&inner, &shop, &headers) {
        return unauthorized();
    }
    let not_found = || error(StatusCode::NOT_FOUND, json!({"errors": "Not Found"}));
    let Some(id) = webhook_id(&file) else {
        return not_found();
    };
    let Some(address) = body["webhook"]["address"].as_str() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": {"address": ["can't be blank"]}}),
        );
    };
    let Some(list) = inner.webhooks.get_mut(&shop) else {
        return not_found();
    };
    let Some(topic) = list.iter().find(|w| w.id == id).map(|w| w.topic.clone()) else {
        return not_found();
    };
    if list
        .iter()
        .any(|w| w.id != id && w.topic == topic && w.address == address)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"errors": {"address": ["for this topic has already been taken"]}}),
        );
    }
    let w = list.iter_mut().find(|w| w.id == id).expect("found above");
    w.address = address.to_string();
    let w = w.clone();
    Json(json!({"webhook": webhook_json(&w, &version)})).into_response()
}

async fn delete_webhook(
    State(inner): State<Shared>,
    Path((shop, version, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    record(
        &mut inner,
        "DELETE",
        &shop,
        format!("/admin/api/{version}/webhooks/{file}"),
        Value::Null,
    );
    if !authorized(&inner, &shop, &headers) {
        return unauthorized();
    }
    let id = webhook_id(&file);
    let Some(list) = inner.webhooks.get_mut(&shop) else {
        return error(StatusCode::NOT_FOUND, json!({"errors": "Not Found"}));
    };
    let before = list.len();
    list.retain(|w| Some(w.id) != id);
    if list.len() == before {
        return error(StatusCode::NOT_FOUND, json!({"errors": "Not Found"}));
    }
    Json(json!({})).into_response()
}

// ---- shop.json (shop details) ------------------------------------------------

/// How `GET /{shop}/admin/api/{version}/shop.json` answers, when not as
/// Shopify does: with this status, or not before the caller gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopMode {
    Status(u16),
    Hang,
}

impl FakeShopify {
    /// How the next `shop.json` calls answer (None: as Shopify does).
    pub fn set_shop_mode(&self, mode: Option<ShopMode>) {
        self.inner.lock().unwrap().shop_mode = mode;
    }

    /// Forgets an access token, as Shopify does when it is revoked or the app
    /// is uninstalled: calls with it get 401.
    pub fn revoke_access_token(&self, token: &str) {
        self.inner.lock().unwrap().tokens.remove(token);
    }

    /// How many `shop.json` calls the fake received.
    pub fn shop_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.path.ends_with("/shop.json"))
            .count()
    }
}

/// The shop object the fake answers for `shop`, with the fields of Shopify's
/// REST `shop.json`.
pub fn shop_object(shop: &str) -> Value {
    let name = shop.trim_end_matches(".myshopify.com");
    json!({
        "id": 548380009,
        "name": name,
        "email": format!("owner@{name}.example"),
        "domain": shop,
        "myshopify_domain": shop,
        "province": "California",
        "country": "US",
        "country_code": "US",
        "country_name": "United States",
        "address1": "1 Infinite Loop",
        "city": "Cupertino",
        "zip": "95014",
        "phone": "1231231234",
        "currency": "USD",
        "money_format": "${{amount}}",
        "iana_timezone": "America/New_York",
        "timezone": "(GMT-05:00) Eastern Time (US & Canada)",
        "primary_locale": "en",
        "plan_name": "enterprise",
        "plan_display_name": "Shopify Plus",
        "shop_owner": "John Smith",
        "created_at": "2026-01-01T14:36:54-05:00",
        "updated_at": "2026-05-01T10:00:00-04:00",
        "has_storefront": true,
        "password_enabled": false,
        "checkout_api_supported": true,
        "setup_required": false,
    })
}

async fn shop_json(
    State(inner): State<Shared>,
    Path((shop, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mode = {
        let mut inner = inner.lock().unwrap();
        record(
            &mut inner,
            "GET",
            &shop,
            format!("/admin/api/{version}/shop.json"),
            Value::Null,
        );
        if !authorized(&inner, &shop, &headers) {
            return unauthorized();
        }
        inner.shop_mode
    };
    match mode {
        None => Json(json!({"shop": shop_object(&shop)})).into_response(),
        Some(ShopMode::Status(429)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2.0")],
            Json(json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."})),
        )
            .into_response(),
        Some(ShopMode::Status(status)) => error(
            StatusCode::from_u16(status).unwrap(),
            json!({"errors": "told to fail"}),
        ),
        Some(ShopMode::Hang) => {
            // Longer than any timeout a test gives the gateway.
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            error(StatusCode::GATEWAY_TIMEOUT, json!({"errors": "too late"}))
        }
    }
}

/// The `aud` of the test suite's user-service tokens, and the audience its
/// gateways require.
pub const JWT_AUDIENCE: &str = "ionflux-gateway";

/// The `name=value` of the OAuth state cookie an initiate answer sets, as a
/// browser would send it back (`Cookie:`); None when it sets none.
pub fn state_cookie(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .find(|pair| {
            pair.split_once('=').is_some_and(|(name, _)| {
                name == ionflux_gateway::providers::shopify::oauth::STATE_COOKIE
            })
        })
        .map(str::to_string)
}

/// The test suite's Shopify app, pointed at a fake: every retry, backoff and
/// poll shortened so that background work happens within a test, and HS256
/// user-service tokens signed with `jwt_secret` for [`JWT_AUDIENCE`]. Tests
/// adjust fields after.
pub fn app_config(
    fake: &FakeShopify,
    client: (&str, &str),
    public_base: &str,
    jwt_secret: &str,
) -> ionflux_gateway::providers::shopify::oauth::ShopifyConfig {
    use ionflux_gateway::providers::shopify::oauth::{
        JwtConfig, RegistrationConfig, ShopifyConfig,
    };
    use ionflux_gateway::providers::shopify::refresh::RefreshConfig;
    use ionflux_gateway::support::vault::Secret;
    use std::time::Duration;

    let (client_id, client_secret) = client;
    let mut cfg = ShopifyConfig::new(
        client_id,
        Secret::from(client_secret.to_string()),
        format!(
            "{public_base}{}",
            ionflux_gateway::providers::shopify::oauth::CALLBACK_PATH
        ),
        public_base,
    );
    cfg.admin_base_url = fake.base_url_template();
    cfg.http_timeout = Duration::from_secs(10);
    cfg.registration = RegistrationConfig {
        attempts_per_run: 2,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        retry_after: Duration::from_millis(100),
        max_retry_after: Duration::from_millis(500),
        poll_interval: Duration::from_millis(100),
    };
    cfg.refresh = RefreshConfig {
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..RefreshConfig::default()
    };
    cfg.jwt = JwtConfig {
        hs256_secret: Some(Secret::from(jwt_secret.to_string())),
        audience: Some(JWT_AUDIENCE.into()),
        ..JwtConfig::default()
    };
    cfg
}

/// Connects `shop` as the OAuth callback would, with tokens this fake issued
/// (so they refresh and call the Admin API here); answers (connection id,
/// webhook path).
pub async fn install_with_issued_tokens(
    store: &ionflux_gateway::store::Store,
    vault: &ionflux_gateway::support::vault::Vault,
    fake: &FakeShopify,
    shop: &str,
    client_secret: &str,
) -> (String, String) {
    use ionflux_gateway::pipeline::connection::{self, InstallTarget, OAuthInstall, OAuthTokens};
    use ionflux_gateway::support::vault::Secret;

    let (access, refresh, expires_in) = fake.issue_tokens(shop);
    let now = ionflux_gateway::store::now_ms();
    let installed = connection::install_oauth(
        store,
        vault,
        &ionflux_gateway::providers::shopify::Shopify,
        &InstallTarget {
            account: shop,
            workspace: &uuid::Uuid::new_v4().to_string(),
            brand: &uuid::Uuid::new_v4().to_string(),
            installed_by: "user-1",
        },
        &Secret::from(client_secret.to_string()),
        &OAuthTokens {
            access_token: Secret::from(access),
            access_token_expires_at: Some(now + expires_in * 1000),
            refresh_token: Some(Secret::from(refresh)),
            refresh_token_expires_at: Some(now + 90 * 24 * 3600 * 1000),
            scopes: "read_orders".into(),
        },
        &serde_json::Value::Null,
    )
    .await
    .expect("installed");
    let OAuthInstall::Installed(c) = installed else {
        panic!("expected a new installation")
    };
    (c.connection_id, c.webhook_path)
}
