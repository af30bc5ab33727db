//! Is it safely kept? Intake of one webhook: find the connection, verify the
//! signature, store the raw webhook durably (deduplicated), wake the
//! dispatcher. Only when [`Inbox::accept`] returns `Ok` may the caller answer
//! 2xx: from then on the webhook is ours to deliver.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use tokio::sync::Notify;

use crate::connection;
use crate::store::{self, ConnectionRow, Inserted, NewWebhook, Store, StoreError};
use crate::vault::{Secret, Vault, VaultError};
use crate::webhook::{self, HeaderError, ShopifyHeaders};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("no connection has this webhook path")]
    UnknownConnection,
    #[error("the connection is {0}")]
    Inactive(String),
    #[error("the HMAC signature is missing or does not match the body")]
    InvalidHmac,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the webhook is for shop {got:?}, but this path belongs to another shop")]
    ShopMismatch { got: String },
    #[error("storing the webhook failed: {0}")]
    Store(#[from] StoreError),
    #[error("the connection's secret cannot be read: {0}")]
    Vault(#[from] VaultError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub inbox_id: i64,
    pub duplicate: bool,
}

/// A connection with its secrets decrypted, cached briefly so that a burst
/// of webhooks does not decrypt per request.
struct Known {
    row: ConnectionRow,
    secrets: Vec<Secret>,
    loaded: Instant,
    /// `Store::connections_generation` before it was read: an uninstall
    /// applied by this process since then makes it stale at once.
    generation: u64,
}

pub struct Inbox {
    store: Store,
    vault: Arc<Vault>,
    wake: Arc<Notify>,
    cache: RwLock<HashMap<String, Arc<Known>>>,
    cache_ttl: Duration,
}

impl Inbox {
    pub fn new(store: Store, vault: Arc<Vault>, wake: Arc<Notify>) -> Self {
        Self {
            store,
            vault,
            wake,
            cache: RwLock::default(),
            // Short, so a rotated secret or a disconnect made elsewhere (another
            // replica, the CLI) takes effect fast; an uninstall or redaction
            // applied by this process takes effect at once.
            cache_ttl: Duration::from_secs(10),
        }
    }

    pub async fn accept(
        &self,
        identifier: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, IntakeError> {
        // Fields of the caller's span (`webhook.intake` in `http`), filled
        // in as they become known; the identifier itself is never one.
        let span = tracing::Span::current();
        let known = self.connection(identifier).await?;
        span.record("connection_id", known.row.id.as_str());
        let topic = headers
            .get(webhook::TOPIC_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::lifecycle::accepts_webhook(&known.row.status, topic) {
            return Err(IntakeError::Inactive(known.row.status.clone()));
        }
        let signature = headers
            .get(webhook::HMAC_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(IntakeError::InvalidHmac)?;
        if !webhook::verify(known.secrets.iter().map(Secret::expose), body, signature) {
            return Err(IntakeError::InvalidHmac);
        }
        crate::metrics::webhook_verified(&known.row.provider);
        let h = ShopifyHeaders::parse(headers)?;
        span.record("topic", h.topic.as_str());
        // The app secret is shared by every shop of the app, so a genuine
        // webhook of shop A could be replayed at shop B's path: refuse it.
        if h.shop_domain != known.row.shop_domain {
            return Err(IntakeError::ShopMismatch { got: h.shop_domain });
        }
        // Stored with the row: the dispatcher's spans carry it too, which is
        // how a trace is followed from this request to the broker's ack.
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        span.record("trace_id", trace_id.as_str());
        let inserted = self
            .store
            .insert_webhook(&NewWebhook {
                connection: &known.row,
                webhook_id: &h.webhook_id,
                topic: &h.topic,
                api_version: h.api_version.as_deref(),
                triggered_at: h.triggered_at.as_deref(),
                shopify_event_id: h.event_id.as_deref(),
                trace_id: &trace_id,
                headers: &h.selected,
                body,
                received_at: store::now_ms(),
            })
            .await?;
        let duplicate = matches!(inserted, Inserted::Duplicate(_));
        span.record("duplicate", duplicate);
        crate::metrics::webhook_stored(&known.row.provider, &h.topic, duplicate);
        Ok(match inserted {
            Inserted::New(inbox_id) => {
                span.record("inbox_id", inbox_id);
                self.wake.notify_one();
                tracing::debug!(inbox_id, trace_id, topic = %h.topic, "webhook stored");
                Accepted {
                    inbox_id,
                    duplicate: false,
                }
            }
            Inserted::Duplicate(inbox_id) => {
                span.record("inbox_id", inbox_id);
                Accepted {
                    inbox_id,
                    duplicate: true,
                }
            }
        })
    }

    async fn connection(&self, identifier: &str) -> Result<Arc<Known>, IntakeError> {
        let generation = self.store.connections_generation();
        if let Some(k) = self.cache.read().unwrap().get(identifier)
            && k.loaded.elapsed() < self.cache_ttl
            && k.generation == generation
        {
            return Ok(k.clone());
        }
        // Identifiers are long random strings: anything else is not ours, and
        // need not cost a query.
        if identifier.len() > 128 || !identifier.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(IntakeError::UnknownConnection);
        }
        let row = self
            .store
            .connection_by_path(identifier)
            .await?
            .ok_or(IntakeError::UnknownConnection)?;
        let secrets = connection::webhook_secrets(&self.vault, &row)?;
        let known = Arc::new(Known {
            row,
            secrets,
            loaded: Instant::now(),
            generation,
        });
        let mut cache = self.cache.write().unwrap();
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(identifier.to_string(), known.clone());
        Ok(known)
    }
}
