//! Is it safely kept? Intake of one webhook: find the connection, verify the
//! signature, store the raw webhook durably (deduplicated), wake the
//! dispatcher. Only when [`Inbox::accept`] returns `Ok` may the caller answer
//! 2xx: from then on the webhook is ours to deliver.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::pipeline::connection;
use crate::providers::shopify::headers::{self as webhook, HeaderError, ShopifyHeaders};
use crate::store::{self, Blob, ConnectionRow, Inserted, NewWebhook, Store, StoreError};
use crate::support::vault::{Secret, Vault, VaultError};

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
    /// When `secrets` stops being right by itself: a previous secret in it
    /// expires (epoch ms).
    secrets_until: Option<i64>,
    loaded: Instant,
    /// `Store::connections_generation` before it was read: an uninstall
    /// applied by this process since then makes it stale at once.
    generation: u64,
}

/// The connection a webhook's path names, found before its body is read.
pub struct Recipient(Arc<Known>);

pub struct Inbox {
    store: Store,
    vault: Arc<Vault>,
    wake: Arc<Notify>,
    cache: RwLock<HashMap<String, Arc<Known>>>,
    cache_ttl: Duration,
    /// The group-commit writers, chosen round robin.
    writers: Vec<mpsc::Sender<Write>>,
    next_writer: std::sync::atomic::AtomicUsize,
}

/// Webhooks written in one transaction at most: enough to amortise the
/// fsync under a burst, small enough that a group's commit stays short.
const GROUP_MAX: usize = 256;

/// One webhook handed to a writer, owned, with where its outcome goes.
struct Write {
    connection: Arc<Known>,
    webhook_id: String,
    topic: String,
    api_version: Option<String>,
    triggered_at: Option<String>,
    shopify_event_id: Option<String>,
    trace_id: String,
    headers: Vec<(String, String)>,
    body: Blob,
    received_at: i64,
    done: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// Group commit: takes whatever webhooks wait (one, under light load, so
/// nobody waits for company), writes them in one transaction and answers
/// each. Under a burst, one fsync serves many acknowledgements, which is
/// what lets the durable intake rate exceed the disk's sync rate.
async fn write_groups(store: Store, mut queue: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while queue.recv_many(&mut group, GROUP_MAX).await > 0 {
        let rows: Vec<NewWebhook<'_>> = group
            .iter()
            .map(|w| NewWebhook {
                connection: &w.connection.row,
                webhook_id: &w.webhook_id,
                topic: &w.topic,
                api_version: w.api_version.as_deref(),
                triggered_at: w.triggered_at.as_deref(),
                shopify_event_id: w.shopify_event_id.as_deref(),
                trace_id: &w.trace_id,
                headers: &w.headers,
                body: &w.body,
                received_at: w.received_at,
            })
            .collect();
        let result = store.insert_webhooks(&rows).await;
        drop(rows);
        match result {
            Ok(outcomes) => {
                for (w, outcome) in group.drain(..).zip(outcomes) {
                    // The request may have gone away; the row is kept anyway.
                    let _ = w.done.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, webhooks = group.len(), "inbox group commit failed");
                let reason = e.to_string();
                for w in group.drain(..) {
                    let _ = w.done.send(Err(StoreError::Batch(reason.clone())));
                }
            }
        }
    }
}

impl Inbox {
    /// Starts the group-commit writers (must run inside a tokio runtime):
    /// one on SQLite, which has one writer at a time anyway, a few on
    /// PostgreSQL, which commits in parallel.
    pub fn new(store: Store, vault: Arc<Vault>, wake: Arc<Notify>) -> Self {
        let writers = match store.backend() {
            store::Backend::Sqlite => 1,
            store::Backend::Postgres => 4,
        };
        let writers = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(GROUP_MAX * 4);
                tokio::spawn(write_groups(store.clone(), rx));
                tx
            })
            .collect();
        Self {
            writers,
            next_writer: Default::default(),
            store,
            vault,
            wake,
            cache: RwLock::default(),
            // Short, so a rotated secret or a disconnect made elsewhere (another
            // replica, the CLI) takes effect fast; an uninstall or redaction
            // applied by this process takes effect at once.
            cache_ttl: connection::SECRETS_CACHED_FOR,
        }
    }

    /// Finds the connection, verifies and stores one webhook: the whole
    /// intake of a request already read, as [`Inbox::recipient`] then
    /// [`Inbox::accept_for`].
    pub async fn accept(
        &self,
        identifier: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, IntakeError> {
        let recipient = self.recipient(identifier, headers).await?;
        self.accept_for(recipient, headers, body).await
    }

    /// What can be decided from the path and the headers alone, before the
    /// body is read: the connection the path names, and whether it takes
    /// this topic.
    pub async fn recipient(
        &self,
        identifier: &str,
        headers: &HeaderMap,
    ) -> Result<Recipient, IntakeError> {
        // Fields of the caller's span (`webhook.intake` in `http`), filled
        // in as they become known; the identifier itself is never one.
        let known = self.connection(identifier).await?;
        tracing::Span::current().record("connection_id", known.row.id.as_str());
        let topic = headers
            .get(webhook::TOPIC_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::providers::shopify::lifecycle::accepts_webhook(&known.row.status, topic) {
            return Err(IntakeError::Inactive(known.row.status.clone()));
        }
        Ok(Recipient(known))
    }

    /// Verifies the webhook for the connection [`Inbox::recipient`] found,
    /// and stores it.
    pub async fn accept_for(
        &self,
        recipient: Recipient,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Accepted, IntakeError> {
        let span = tracing::Span::current();
        let known = recipient.0;
        let signature = headers
            .get(webhook::HMAC_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(IntakeError::InvalidHmac)?;
        if !webhook::verify(known.secrets.iter().map(Secret::expose), body, signature) {
            return Err(IntakeError::InvalidHmac);
        }
        crate::support::metrics::webhook_verified(&known.row.provider);
        let h = ShopifyHeaders::parse(headers)?;
        span.record("topic", h.topic.as_str());
        // The app secret is shared by every shop of the app, so a genuine
        // webhook of shop A could be replayed at shop B's path: refuse it.
        if h.shop_domain != known.row.shop_domain {
            return Err(IntakeError::ShopMismatch { got: h.shop_domain });
        }
        // Stored with the row: the dispatcher's spans carry it too, which is
        // how a trace is followed from this request to the broker's ack.
        // When spans are exported it is this request's own OTLP trace id,
        // so the collector shows the dispatch in the same trace.
        let trace_id = crate::support::telemetry::current_trace_id();
        span.record("trace_id", trace_id.as_str());
        let (done, outcome) = oneshot::channel();
        let write = Write {
            connection: known.clone(),
            webhook_id: h.webhook_id,
            topic: h.topic.clone(),
            api_version: h.api_version,
            triggered_at: h.triggered_at,
            shopify_event_id: h.event_id,
            trace_id: trace_id.clone(),
            headers: h.selected,
            // Compressed here, on the request's own task: the group
            // commit's one writer then moves a fraction of the bytes.
            body: Blob::encode(body),
            received_at: store::now_ms(),
            done,
        };
        let n = self
            .next_writer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gone = || StoreError::Batch("the inbox writer stopped".into());
        self.writers[n % self.writers.len()]
            .send(write)
            .await
            .map_err(|_| gone())?;
        let inserted = outcome.await.map_err(|_| gone())??;
        let duplicate = matches!(inserted, Inserted::Duplicate(_));
        span.record("duplicate", duplicate);
        crate::support::metrics::webhook_stored(&known.row.provider, &h.topic, duplicate);
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
            && k.secrets_until.is_none_or(|t| store::now_ms() < t)
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
        let secrets = connection::webhook_secrets_at(&self.vault, &row, store::now_ms())?;
        let known = Arc::new(Known {
            row,
            secrets: secrets.secrets,
            secrets_until: secrets.valid_until,
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
