//! The CLI's way to a running gateway: its admin API over HTTP, with the
//! request and response bodies the handlers use ([`crate::api::admin::body`]).
//! It needs no database and no master key, only the admin listener's URL
//! and a bearer token; the token's scope (operator or one workspace) is
//! enforced by the gateway.

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::api::admin::body::{
    AddConnectionBody, AddedConnection, ConnectionActionAnswer, ConnectionList, ConnectionView,
    ConnectionWebhooks, DeadLetterList, DeadLettersQuery, ErrorBody, EventsPage, LimitQuery,
    PromoteBody, PushedTransform, ReplayBody, Replayed, RouteBody, RouteHistory, RouteList,
    ShadowQuery, ShadowReport, TransformDetail, TransformList, WebhookDetail, WebhookPage,
    WebhookShowQuery, WebhooksQuery,
};
use crate::store::RouteRow;
use crate::support::vault::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the admin URL {0:?} is not an http(s) URL")]
    InvalidUrl(String),
    #[error("the admin token is not valid header text")]
    InvalidToken,
    #[error("cannot reach the admin API at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The gateway answered with an error body.
    #[error("{method} {path}: {status} {code}: {message}")]
    Api {
        method: Method,
        path: String,
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("{method} {path}: unexpected answer ({status}): {detail}")]
    Unexpected {
        method: Method,
        path: String,
        status: StatusCode,
        detail: String,
    },
}

impl ClientError {
    /// The API's error code, when the gateway answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one gateway's admin API, holding one bearer token.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

impl AdminClient {
    /// `base` is the admin listener, e.g. `http://127.0.0.1:9090` (a path
    /// prefix, for a gateway behind a proxy, is kept).
    pub fn new(base: &str, token: Secret) -> Result<Self, ClientError> {
        let mut url = Url::parse(base).map_err(|_| ClientError::InvalidUrl(base.into()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(ClientError::InvalidUrl(base.into()));
        }
        // Segments are appended to the base's path: drop a trailing slash
        // so `http://h/` and `http://h` mean the same.
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        if std::str::from_utf8(token.expose()).is_err() {
            return Err(ClientError::InvalidToken);
        }
        Ok(Self {
            http: reqwest::Client::new(),
            base: url,
            token,
        })
    }

    /// `/admin/v1/` followed by `segments`, each percent-encoded as needed
    /// (a reference or id can never reach another path).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let token = String::from_utf8_lossy(self.token.expose());
        self.http
            .request(method, self.url(segments))
            .bearer_auth(token)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let request = request.build().map_err(|source| ClientError::Unreachable {
            url: self.base.to_string(),
            source,
        })?;
        let (method, path) = (request.method().clone(), request.url().path().to_string());
        let response =
            self.http
                .execute(request)
                .await
                .map_err(|source| ClientError::Unreachable {
                    url: self.base.to_string(),
                    source,
                })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.to_string(),
                source,
            })?;
        let unexpected = |detail: String| ClientError::Unexpected {
            method: method.clone(),
            path: path.clone(),
            status,
            detail,
        };
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ClientError::Api {
                    method,
                    path,
                    status,
                    code: e.code,
                    message: e.message,
                },
                Err(_) => unexpected(String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| unexpected(e.to_string()))
    }

    // ---- transforms --------------------------------------------------------

    pub async fn transforms(&self) -> Result<TransformList, ClientError> {
        self.send(self.request(Method::GET, &["transforms"])).await
    }

    pub async fn push_transform(
        &self,
        name: &str,
        component: Vec<u8>,
    ) -> Result<PushedTransform, ClientError> {
        let request = self
            .request(Method::POST, &["transforms"])
            .query(&[("name", name)])
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(component);
        self.send(request).await
    }

    pub async fn transform(&self, reference: &str) -> Result<TransformDetail, ClientError> {
        self.send(self.request(Method::GET, &["transforms", reference]))
            .await
    }

    // ---- routes ------------------------------------------------------------

    pub async fn routes(&self) -> Result<RouteList, ClientError> {
        self.send(self.request(Method::GET, &["routes"])).await
    }

    pub async fn set_route(&self, body: &RouteBody) -> Result<RouteRow, ClientError> {
        self.send(self.request(Method::PUT, &["routes"]).json(body))
            .await
    }

    pub async fn promote_route(&self, body: &PromoteBody) -> Result<RouteRow, ClientError> {
        self.send(
            self.request(Method::POST, &["routes", "promote"])
                .json(body),
        )
        .await
    }

    pub async fn route_history(&self, limit: i64) -> Result<RouteHistory, ClientError> {
        let query = LimitQuery { limit: Some(limit) };
        self.send(
            self.request(Method::GET, &["routes", "history"])
                .query(&query),
        )
        .await
    }

    pub async fn shadow_runs(&self, query: &ShadowQuery) -> Result<ShadowReport, ClientError> {
        self.send(
            self.request(Method::GET, &["routes", "shadow"])
                .query(query),
        )
        .await
    }

    // ---- dead letters ------------------------------------------------------

    pub async fn dead_letters(
        &self,
        query: &DeadLettersQuery,
    ) -> Result<DeadLetterList, ClientError> {
        self.send(self.request(Method::GET, &["dead-letters"]).query(query))
            .await
    }

    pub async fn replay_dead_letters(&self, body: &ReplayBody) -> Result<Replayed, ClientError> {
        self.send(
            self.request(Method::POST, &["dead-letters", "replay"])
                .json(body),
        )
        .await
    }

    // ---- webhooks ----------------------------------------------------------

    pub async fn webhooks(&self, query: &WebhooksQuery) -> Result<WebhookPage, ClientError> {
        self.send(self.request(Method::GET, &["webhooks"]).query(query))
            .await
    }

    pub async fn webhook(&self, inbox_id: i64, body: bool) -> Result<WebhookDetail, ClientError> {
        let query = WebhookShowQuery { body };
        self.send(
            self.request(Method::GET, &["webhooks", &inbox_id.to_string()])
                .query(&query),
        )
        .await
    }

    // ---- events ------------------------------------------------------------

    /// Events after `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<EventsPage, ClientError> {
        let query = [("after", after), ("limit", limit)];
        self.send(self.request(Method::GET, &["events"]).query(&query))
            .await
    }

    /// The newest `limit` events, oldest first.
    pub async fn newest_events(&self, limit: i64) -> Result<EventsPage, ClientError> {
        let query = [("limit", limit.to_string()), ("newest", "true".into())];
        self.send(self.request(Method::GET, &["events"]).query(&query))
            .await
    }

    // ---- connections -------------------------------------------------------

    pub async fn connections(&self) -> Result<ConnectionList, ClientError> {
        self.send(self.request(Method::GET, &["connections"])).await
    }

    /// Connects a shop (or rotates its secret): the secret travels in the
    /// body only, to the gateway that encrypts it.
    pub async fn add_connection(
        &self,
        body: &AddConnectionBody,
    ) -> Result<AddedConnection, ClientError> {
        self.send(self.request(Method::POST, &["connections"]).json(body))
            .await
    }

    pub async fn connection(&self, connection_id: &str) -> Result<ConnectionView, ClientError> {
        self.send(self.request(Method::GET, &["connections", connection_id]))
            .await
    }

    /// `disconnect`, `pause`, `resume`, `reregister` or `refresh`.
    pub async fn connection_action(
        &self,
        connection_id: &str,
        action: &str,
    ) -> Result<ConnectionActionAnswer, ClientError> {
        self.send(self.request(Method::POST, &["connections", connection_id, action]))
            .await
    }

    pub async fn connection_webhooks(
        &self,
        connection_id: &str,
    ) -> Result<ConnectionWebhooks, ClientError> {
        self.send(self.request(Method::GET, &["connections", connection_id, "webhooks"]))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> AdminClient {
        AdminClient::new(base, Secret::from("t".to_string())).unwrap()
    }

    #[test]
    fn paths_are_appended_to_the_base_and_segments_encoded() {
        assert_eq!(
            client("http://127.0.0.1:9090").url(&["routes"]).as_str(),
            "http://127.0.0.1:9090/admin/v1/routes"
        );
        assert_eq!(
            client("https://gw.example/ops/").url(&["routes"]).as_str(),
            "https://gw.example/ops/admin/v1/routes"
        );
        assert_eq!(
            client("http://h")
                .url(&["transforms", "../../x?y#z"])
                .as_str(),
            "http://h/admin/v1/transforms/..%2F..%2Fx%3Fy%23z"
        );
    }

    #[test]
    fn only_http_urls_are_accepted() {
        for bad in ["", "127.0.0.1:9090", "ftp://h", "mailto:a@b"] {
            assert!(
                AdminClient::new(bad, Secret::from("t".to_string())).is_err(),
                "{bad}"
            );
        }
    }
}
