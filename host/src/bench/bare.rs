//! The upper bound: an axum handler on the gateway's webhook route that
//! verifies the HMAC of the body against one known secret and answers 200,
//! storing nothing. What the gateway adds on top of this (connection lookup,
//! header checks, the durable inbox, the dispatcher competing for the same
//! cores) is what the comparison measures.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::providers::shopify::headers as webhook;

pub struct Bare {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

/// The same answer body as the gateway's, so both send as many bytes back.
#[derive(serde::Serialize)]
struct Accepted {
    status: &'static str,
    inbox_id: i64,
}

async fn handle(
    State(secret): State<Arc<[u8]>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Accepted>, StatusCode> {
    let signature = headers
        .get(webhook::HMAC_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if !webhook::verify([secret.as_ref()], &body, signature) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(Json(Accepted {
        status: "accepted",
        inbox_id: 0,
    }))
}

impl Bare {
    /// Serves on a free loopback port until [`Bare::stop`].
    pub async fn start(secret: &[u8], max_body_bytes: usize) -> std::io::Result<Self> {
        let app = Router::new()
            .route(
                &crate::pipeline::connection::webhook_path(
                    crate::providers::shopify::ID,
                    "{identifier}",
                ),
                post(handle),
            )
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(Arc::<[u8]>::from(secret));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, mut rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Self { addr, stop, server })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}
