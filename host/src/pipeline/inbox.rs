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
use crate::pipeline::provider::{Incoming, Keys, Provider, Providers, Rejected, Standing};
use crate::store::{self, Blob, ConnectionRow, Inserted, NewWebhook, Store, StoreError};
use crate::support::vault::{Secret, Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The path's provider is not registered, or is not the connection's:
    /// answered as a path that does not exist, which is what it is.
    #[error("no such endpoint")]
    NoSuchEndpoint,
    #[error("no connection has this webhook path")]
    UnknownConnection,
    #[error("the connection is {0}")]
    Inactive(String),
    /// The provider refused the request; `codes` names the answer's code
    /// where the platform has its own.
    #[error("{why}")]
    Rejected {
        why: Rejected,
        codes: crate::pipeline::provider::Codes,
    },
    #[error("the webhook is for account {got:?}, but this path belongs to another account")]
    AccountMismatch {
        got: String,
        codes: crate::pipeline::provider::Codes,
    },
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
    /// The row's settings, parsed once.
    settings: serde_json::Value,
    /// When `secrets` stops being right by itself: a previous secret in it
    /// expires (epoch ms).
    secrets_until: Option<i64>,
    loaded: Instant,
    /// `Store::connections_generation` before it was read: an uninstall
    /// applied by this process since then makes it stale at once.
    generation: u64,
}

/// The connection a webhook's path names, found before its body is read,
/// and the provider that reads its webhooks.
pub struct Recipient {
    known: Arc<Known>,
    provider: Arc<dyn Provider>,
    standing: Standing,
}

/// What a connection's status lets in: None, nothing at all.
fn standing(status: &str) -> Option<Standing> {
    match status {
        // A failed token refresh does not touch webhook secrets, so intake
        // goes on.
        "active" | "refresh_failed" => Some(Standing::Active),
        "disconnected" | "redacted" => Some(Standing::Gone),
        _ => None,
    }
}

pub struct Inbox {
    providers: Providers,
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
    occurred_at: Option<String>,
    event_id: Option<String>,
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
                occurred_at: w.occurred_at.as_deref(),
                event_id: w.event_id.as_deref(),
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
    pub fn new(store: Store, vault: Arc<Vault>, wake: Arc<Notify>, providers: Providers) -> Self {
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
            providers,
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
        provider: &str,
        identifier: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<Accepted>, IntakeError> {
        let recipient = self.recipient(provider, identifier, headers).await?;
        self.accept_for(recipient, headers, body).await
    }

    /// What can be decided from the path and the headers alone, before the
    /// body is read: the connection the path names, that `provider` (the
    /// path's) is the connection's, and whether it takes this topic when
    /// the headers say it.
    pub async fn recipient(
        &self,
        provider: &str,
        identifier: &str,
        headers: &HeaderMap,
    ) -> Result<Recipient, IntakeError> {
        // Not even a query for a provider that does not exist.
        let provider = self
            .providers
            .get(provider)
            .ok_or(IntakeError::NoSuchEndpoint)?
            .clone();
        // Fields of the caller's span (`webhook.intake` in `http`), filled
        // in as they become known; the identifier itself is never one.
        let known = self.connection(identifier).await?;
        if known.row.provider != provider.id() {
            return Err(IntakeError::NoSuchEndpoint);
        }
        tracing::Span::current().record("connection_id", known.row.id.as_str());
        let inactive = || IntakeError::Inactive(known.row.status.clone());
        let standing = standing(&known.row.status).ok_or_else(inactive)?;
        if let Some(topic) = provider.topic_in_headers(headers)
            && !provider.accepts(standing, &topic)
        {
            return Err(inactive());
        }
        Ok(Recipient {
            known,
            provider,
            standing,
        })
    }

    /// Verifies the webhook for the connection [`Inbox::recipient`] found,
    /// and stores it.
    /// Answers None for a request the provider says is no webhook (a
    /// ping): nothing is stored, and the caller answers 200.
    pub async fn accept_for(
        &self,
        recipient: Recipient,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<Accepted>, IntakeError> {
        let span = tracing::Span::current();
        let Recipient {
            known,
            provider,
            standing,
        } = recipient;
        let codes = provider.codes();
        let rejected = |why| IntakeError::Rejected { why, codes };
        let req = Incoming {
            headers,
            body,
            now: store::now_ms() / 1000,
        };
        if provider.is_ping(&req) {
            return Ok(None);
        }
        let secrets: Vec<&[u8]> = known.secrets.iter().map(Secret::expose).collect();
        let keys = Keys {
            secrets: &secrets,
            settings: &known.settings,
        };
        provider.verify(&req, &keys).map_err(rejected)?;
        crate::support::metrics::webhook_verified(&known.row.provider);
        let d = provider.describe(&req, &keys).map_err(rejected)?;
        span.record("topic", d.topic.as_str());
        // A platform's secret may be shared by every account of an app, so
        // a genuine webhook of account A could be replayed at account B's
        // path: refuse it.
        if let Some(account) = &d.account
            && !known.row.account.is_empty()
            && *account != known.row.account
        {
            return Err(IntakeError::AccountMismatch {
                got: account.clone(),
                codes,
            });
        }
        if !provider.accepts(standing, &d.topic) {
            return Err(IntakeError::Inactive(known.row.status.clone()));
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
            webhook_id: d.delivery_id,
            topic: d.topic.clone(),
            api_version: d.api_version,
            occurred_at: d.occurred_at,
            event_id: d.event_id,
            trace_id: trace_id.clone(),
            headers: d.headers,
            // Compressed here, on the request's own task: the group
            // commit's one writer then moves a fraction of the bytes.
            body: Blob::encode(d.body.as_deref().unwrap_or(body)),
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
        crate::support::metrics::webhook_stored(&known.row.provider, &d.topic, duplicate);
        Ok(Some(match inserted {
            Inserted::New(inbox_id) => {
                span.record("inbox_id", inbox_id);
                self.wake.notify_one();
                tracing::debug!(inbox_id, trace_id, topic = %d.topic, "webhook stored");
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
        }))
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
            settings: connection::settings(&row),
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
