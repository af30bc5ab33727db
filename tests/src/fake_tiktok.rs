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
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// A required parameter is missing or the grant type does not match.
pub const CODE_INVALID_PARAM: i64 = 36_004_001;
/// The app key or app secret is wrong.
pub const CODE_INVALID_APP: i64 = 36_004_002;
/// The authorisation code is unknown or was used already.
pub const CODE_INVALID_AUTH_CODE: i64 = 36_004_004;
/// The refresh token is unknown, spent or expired.
pub const CODE_INVALID_REFRESH_TOKEN: i64 = 36_004_005;

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
        }));
        let app = Router::new()
            .route("/api/v2/token/get", get(token_get))
            .route("/api/v2/token/refresh", get(token_refresh))
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
