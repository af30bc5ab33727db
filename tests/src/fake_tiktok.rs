//! A local stand-in for TikTok Shop's authorisation server
//! (`auth.tiktok-shops.com`), on loopback, speaking its documented paths and
//! envelope:
//!
//! - `GET /api/v2/token/get?app_key&app_secret&auth_code&grant_type=authorized_code`
//! - `GET /api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token`
//!
//! Both answer HTTP 200 with `{code, message, request_id, data}`; `code` 0
//! carries `data` = `{access_token, access_token_expire_in, refresh_token,
//! refresh_token_expire_in, open_id, seller_name, seller_base_region,
//! user_type, granted_scopes}`, the two `*_expire_in` being absolute unix
//! seconds as at TikTok. Anything else is refused with a non-zero `code` and
//! no `data`. The numeric codes below are this fake's own (TikTok's docs
//! list codes per API; the client must not depend on particular values).
//!
//! And TikTok Shop's Open API (`open-api.tiktokglobalshop.com`), checking
//! `app_key`, `timestamp` (within five minutes), `sign` (computed here from
//! TikTok's documented recipe, apart from the gateway's code) and the
//! `x-tts-access-token` as TikTok does:
//!
//! - `GET /authorization/202309/shops`: the shops given to the token's
//!   seller with [`FakeTikTok::set_shops`], each with its cipher.
//! - `PUT /event/202309/webhooks?shop_cipher`: `{address, event_type}` for a
//!   shop of the token's seller; [`FakeTikTok::webhooks`] shows them.
//!
//! [`deliver`] posts a webhook to the gateway as TikTok does.
//!
//! State: an authorisation code, issued with [`FakeTikTok::issue_code`],
//! works once. Each refresh answers a new access token and a new refresh
//! token, and the spent refresh token is refused from then on (the strictest
//! reading of rotation). It can be told to fail the next calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A required parameter is missing or the grant type does not match.
pub const CODE_INVALID_PARAM: i64 = 36_004_001;
/// The app key or app secret is wrong.
pub const CODE_INVALID_APP: i64 = 36_004_002;
/// The authorisation code is unknown or was used already.
pub const CODE_INVALID_AUTH_CODE: i64 = 36_004_004;
/// The refresh token is unknown, spent or expired.
pub const CODE_INVALID_REFRESH_TOKEN: i64 = 36_004_005;
/// An Open API request's `sign` does not match (TikTok's own code).
pub const CODE_INVALID_SIGN: i64 = 106_001;
/// An Open API request's access token is missing or unknown.
pub const CODE_INVALID_ACCESS_TOKEN: i64 = 105_002;
/// The timestamp is missing or more than five minutes off.
pub const CODE_INVALID_TIMESTAMP: i64 = 106_002;
/// The shop cipher names no shop of the token's seller.
pub const CODE_INVALID_SHOP: i64 = 105_005;

/// A shop as Get Authorized Shops lists it.
#[derive(Debug, Clone)]
pub struct FakeShop {
    pub id: String,
    pub name: String,
    pub cipher: String,
}

/// How the next calls fail.
#[derive(Debug, Clone)]
pub enum TikTokFailure {
    /// An envelope with this non-zero code and message.
    Code(i64, String),
    /// This HTTP status with a body that is not the envelope.
    Http(u16),
}

#[derive(Debug, Clone)]
struct Seller {
    open_id: String,
    seller_name: String,
}

struct Inner {
    app_key: String,
    app_secret: String,
    /// unspent code -> seller
    codes: HashMap<String, Seller>,
    spent_codes: HashSet<String>,
    /// live refresh token -> seller
    refresh: HashMap<String, Seller>,
    /// live access token -> open_id
    access: HashMap<String, String>,
    issued: Vec<String>,
    access_lifetime: i64,
    refresh_lifetime: i64,
    counter: u64,
    token_calls: u64,
    refresh_calls: u64,
    failure: Option<(TikTokFailure, u32)>,
    /// open_id -> its shops
    shops: HashMap<String, Vec<FakeShop>>,
    /// (shop id, event type) -> address
    webhooks: BTreeMap<(String, String), String>,
    /// Open API requests refused for their signature.
    bad_signs: u64,
}

type Shared = Arc<Mutex<Inner>>;

pub struct FakeTikTok {
    pub addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTikTok {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTikTok {
    /// TikTok's auth server for the partner app `app_key`/`app_secret`.
    pub async fn start(app_key: &str, app_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner: Shared = Arc::new(Mutex::new(Inner {
            app_key: app_key.into(),
            app_secret: app_secret.into(),
            codes: HashMap::new(),
            spent_codes: HashSet::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            issued: Vec::new(),
            // TikTok's are about a week and a year.
            access_lifetime: 7 * 24 * 3600,
            refresh_lifetime: 365 * 24 * 3600,
            counter: 0,
            token_calls: 0,
            refresh_calls: 0,
            failure: None,
            shops: HashMap::new(),
            webhooks: BTreeMap::new(),
            bad_signs: 0,
        }));
        let app = Router::new()
            .route("/api/v2/token/get", get(token_get))
            .route("/api/v2/token/refresh", get(token_refresh))
            .route("/authorization/202309/shops", get(authorized_shops))
            .route("/event/202309/webhooks", put(update_webhook))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, task }
    }

    /// What the client's auth base URL should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An authorisation code, as TikTok hands one to the app's redirect URL
    /// after the seller authorises it.
    pub fn issue_code(&self, open_id: &str, seller_name: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        let code = next_token(&mut inner, "AUTHCODE");
        inner.codes.insert(
            code.clone(),
            Seller {
                open_id: open_id.into(),
                seller_name: seller_name.into(),
            },
        );
        code
    }

    /// The shops the seller `open_id` has authorised the app for.
    pub fn set_shops(&self, open_id: &str, shops: &[FakeShop]) {
        self.inner
            .lock()
            .unwrap()
            .shops
            .insert(open_id.into(), shops.to_vec());
    }

    /// The webhook addresses a shop has, by event type.
    pub fn webhooks(&self, shop_id: &str) -> BTreeMap<String, String> {
        self.inner
            .lock()
            .unwrap()
            .webhooks
            .iter()
            .filter(|((shop, _), _)| shop == shop_id)
            .map(|((_, event), address)| (event.clone(), address.clone()))
            .collect()
    }

    /// Open API requests refused because their `sign` did not match.
    pub fn bad_signs(&self) -> u64 {
        self.inner.lock().unwrap().bad_signs
    }

    /// Every refresh token stops working (the seller revoked the app).
    pub fn revoke_refresh_tokens(&self) {
        self.inner.lock().unwrap().refresh.clear();
    }

    /// Lifetimes (seconds) of the tokens issued from now on.
    pub fn set_lifetimes(&self, access: i64, refresh: i64) {
        let mut inner = self.inner.lock().unwrap();
        inner.access_lifetime = access;
        inner.refresh_lifetime = refresh;
    }

    /// The next `times` calls fail this way.
    pub fn fail_next(&self, failure: TikTokFailure, times: u32) {
        self.inner.lock().unwrap().failure = Some((failure, times));
    }

    /// Whether `token` is an access token the fake issued (they live until
    /// they expire; a refresh does not end them).
    pub fn access_token_is_live(&self, token: &str) -> bool {
        self.inner.lock().unwrap().access.contains_key(token)
    }

    /// Whether `token` is a refresh token not yet spent.
    pub fn refresh_token_is_live(&self, token: &str) -> bool {
        self.inner.lock().unwrap().refresh.contains_key(token)
    }

    /// Every code and token handed out, for leak checks.
    pub fn issued(&self) -> Vec<String> {
        self.inner.lock().unwrap().issued.clone()
    }

    /// (code exchanges, refreshes) received, granted or not.
    pub fn calls(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap();
        (inner.token_calls, inner.refresh_calls)
    }
}

fn next_token(inner: &mut Inner, prefix: &str) -> String {
    inner.counter += 1;
    let token = format!(
        "{prefix}_{}_{}",
        inner.counter,
        uuid::Uuid::new_v4().simple()
    );
    inner.issued.push(token.clone());
    token
}

fn envelope(code: i64, message: &str, data: Option<Value>) -> Response {
    let mut body = json!({
        "code": code,
        "message": message,
        "request_id": uuid::Uuid::new_v4().simple().to_string(),
    });
    if let Some(data) = data {
        body["data"] = data;
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// Everything checked before the grant itself: an injected failure, the
/// parameters, the app's credentials.
fn admit(
    inner: &mut Inner,
    q: &BTreeMap<String, String>,
    grant_name: &str,
    grant_type: &str,
) -> Result<String, Box<Response>> {
    if let Some((failure, times)) = inner.failure.take() {
        if times > 1 {
            inner.failure = Some((failure.clone(), times - 1));
        }
        return Err(Box::new(match failure {
            TikTokFailure::Code(code, message) => envelope(code, &message, None),
            TikTokFailure::Http(status) => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                "upstream unavailable",
            )
                .into_response(),
        }));
    }
    let get = |name: &str| q.get(name).filter(|v| !v.is_empty());
    for name in ["app_key", "app_secret", grant_name, "grant_type"] {
        if get(name).is_none() {
            return Err(Box::new(envelope(
                CODE_INVALID_PARAM,
                &format!("Invalid parameter: {name} is required"),
                None,
            )));
        }
    }
    if get("grant_type").map(String::as_str) != Some(grant_type) {
        return Err(Box::new(envelope(
            CODE_INVALID_PARAM,
            &format!("Invalid parameter: grant_type must be {grant_type}"),
            None,
        )));
    }
    if get("app_key") != Some(&inner.app_key) || get("app_secret") != Some(&inner.app_secret) {
        return Err(Box::new(envelope(
            CODE_INVALID_APP,
            "Invalid app_key or app_secret",
            None,
        )));
    }
    Ok(get(grant_name).cloned().unwrap_or_default())
}

fn grant(inner: &mut Inner, seller: Seller) -> Response {
    let access = next_token(inner, "ROW");
    let refresh = next_token(inner, "RFT");
    let now = chrono_now();
    inner.access.insert(access.clone(), seller.open_id.clone());
    inner.refresh.insert(refresh.clone(), seller.clone());
    envelope(
        0,
        "success",
        Some(json!({
            "access_token": access,
            "access_token_expire_in": now + inner.access_lifetime,
            "refresh_token": refresh,
            "refresh_token_expire_in": now + inner.refresh_lifetime,
            "open_id": seller.open_id,
            "seller_name": seller.seller_name,
            "seller_base_region": "GB",
            "user_type": 0,
            "granted_scopes": ["seller.order.info", "seller.product.basic"]
        })),
    )
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn token_get(
    State(inner): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.token_calls += 1;
    let code = match admit(&mut inner, &q, "auth_code", "authorized_code") {
        Ok(code) => code,
        Err(r) => return *r,
    };
    match inner.codes.remove(&code) {
        Some(seller) => {
            inner.spent_codes.insert(code);
            grant(&mut inner, seller)
        }
        None if inner.spent_codes.contains(&code) => {
            envelope(CODE_INVALID_AUTH_CODE, "auth_code has been used", None)
        }
        None => envelope(CODE_INVALID_AUTH_CODE, "Invalid auth_code", None),
    }
}

async fn token_refresh(
    State(inner): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.refresh_calls += 1;
    let token = match admit(&mut inner, &q, "refresh_token", "refresh_token") {
        Ok(token) => token,
        Err(r) => return *r,
    };
    let Some(seller) = inner.refresh.remove(&token) else {
        return envelope(
            CODE_INVALID_REFRESH_TOKEN,
            "Invalid or expired refresh_token",
            None,
        );
    };
    grant(&mut inner, seller)
}

// ---- the Open API ------------------------------------------------------------------

/// TikTok's `sign`: hex HMAC-SHA256 keyed with the app secret over
/// `secret + path + sorted(name + value, but sign and access_token) + body +
/// secret`. Written here from TikTok's documentation, apart from the
/// gateway's implementation.
pub fn open_api_sign(
    app_secret: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> String {
    let mut message = Vec::new();
    message.extend_from_slice(app_secret.as_bytes());
    message.extend_from_slice(path.as_bytes());
    // A BTreeMap iterates sorted by name.
    for (k, v) in query {
        if k != "sign" && k != "access_token" {
            message.extend_from_slice(k.as_bytes());
            message.extend_from_slice(v.as_bytes());
        }
    }
    message.extend_from_slice(body);
    message.extend_from_slice(app_secret.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).unwrap();
    mac.update(&message);
    hex::encode(mac.finalize().into_bytes())
}

/// The Open API's checks, in TikTok's order; the seller's open_id.
fn admit_open_api(
    inner: &mut Inner,
    uri: &Uri,
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Box<Response>> {
    let refuse = |code, message: &str| Err(Box::new(envelope(code, message, None)));
    if q.get("app_key") != Some(&inner.app_key) {
        return refuse(CODE_INVALID_APP, "Invalid app_key");
    }
    let timestamp: Option<i64> = q.get("timestamp").and_then(|t| t.parse().ok());
    if timestamp.is_none_or(|t| (chrono_now() - t).abs() > 300) {
        return refuse(CODE_INVALID_TIMESTAMP, "Invalid timestamp");
    }
    let expected = open_api_sign(&inner.app_secret, uri.path(), q, body);
    if q.get("sign") != Some(&expected) {
        inner.bad_signs += 1;
        return refuse(CODE_INVALID_SIGN, "Invalid sign");
    }
    let token = headers
        .get("x-tts-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match inner.access.get(token) {
        Some(open_id) => Ok(open_id.clone()),
        None => refuse(CODE_INVALID_ACCESS_TOKEN, "Invalid access_token"),
    }
}

async fn authorized_shops(
    State(inner): State<Shared>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let open_id = match admit_open_api(&mut inner, &uri, &q, &headers, b"") {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let shops: Vec<Value> = inner
        .shops
        .get(&open_id)
        .into_iter()
        .flatten()
        .map(|s| {
            json!({"id": s.id, "name": s.name, "region": "GB", "seller_type": "LOCAL",
                "cipher": s.cipher, "code": format!("GBLC{}", s.id)})
        })
        .collect();
    envelope(0, "Success", Some(json!({ "shops": shops })))
}

async fn update_webhook(
    State(inner): State<Shared>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let open_id = match admit_open_api(&mut inner, &uri, &q, &headers, &body) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let cipher = q.get("shop_cipher").cloned().unwrap_or_default();
    let Some(shop) = inner
        .shops
        .get(&open_id)
        .and_then(|shops| shops.iter().find(|s| s.cipher == cipher))
        .cloned()
    else {
        return envelope(CODE_INVALID_SHOP, "Invalid shop_cipher", None);
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(address), Some(event_type)) =
        (parsed["address"].as_str(), parsed["event_type"].as_str())
    else {
        return envelope(
            CODE_INVALID_PARAM,
            "address and event_type are required",
            None,
        );
    };
    inner
        .webhooks
        .insert((shop.id, event_type.into()), address.into());
    envelope(0, "Success", Some(json!({})))
}

// ---- webhooks ----------------------------------------------------------------------

/// TikTok's webhook signature: `Authorization` = lowercase hex
/// HMAC-SHA256(app secret, app key + body).
pub fn webhook_signature(app_key: &str, app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).unwrap();
    mac.update(app_key.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The envelope TikTok posts: `{type, tts_notification_id, shop_id,
/// timestamp, data}`.
pub fn envelope_body(kind: u64, shop_id: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "tts_notification_id": uuid::Uuid::new_v4().simple().to_string(),
        "shop_id": shop_id,
        "timestamp": chrono_now(),
        "data": data,
    }))
    .unwrap()
}

/// Posts `body` to `url` as TikTok posts a webhook.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    app_key: &str,
    app_secret: &str,
    body: &[u8],
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "authorization",
            webhook_signature(app_key, app_secret, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}
