//! Keeps the expiring tokens of OAuth connections fresh, whichever
//! platform issued them: only the call to the platform's token endpoint
//! ([`TokenEndpoint`]) differs.
//!
//! Platforms rotate the refresh token on refresh (expiring offline tokens,
//! TikTok Shop's tokens): each refresh answers a new access token
//! *and* a new refresh token, and the old refresh token may stop working.
//! Two rules follow, and this module is built around them.
//!
//! - **One refresh per connection at a time, across replicas.** Two
//!   concurrent refreshes would both spend the same single-use refresh token:
//!   one wins, the other fails, and a careless loser even overwrites the
//!   winner's tokens with nothing (Nango's known race). A refresh therefore
//!   runs only under the connection's database lease (`refresh_lease_until`,
//!   `refresh_lease_owner`), claimed by one conditional UPDATE in a write
//!   transaction, and whoever gets the lease first checks again whether the
//!   refresh is still needed: a caller that waited finds the token another
//!   one just stored.
//! - **Never lose the newest refresh token.** The tokens the platform answers are
//!   encrypted (bound to row and purpose, as `connection` does) and stored
//!   by one UPDATE right after the exchange returns, only if the refresh
//!   token is still the one we spent (compare-and-swap): a reconnect or an
//!   uninstall meanwhile wins, and a key rotation that merely re-encrypted
//!   the same refresh token is recognised and swapped past. An inline
//!   refresh runs in a task of its own, so a caller that gives up (an HTTP
//!   client that hangs up) cannot cut it off between the platform's answer and
//!   our commit.
//!
//! **The crash window.** If the process dies after the platform answered and before
//! the UPDATE commits, the new tokens are gone and the refresh token we still
//! hold has been spent. Whether the platform keeps a spent refresh token valid for
//! a grace period is not something we could confirm from its documentation,
//! so we assume it does not. The lease claim sets `refresh_started_at`, and
//! only the transaction that records the outcome clears it; the next claimant
//! of an expired lease that finds it still set logs the interruption and
//! notes it in `last_refresh_error`, then tries the refresh anyway. If the platform
//! refuses the old token (a refusal only a reconnect mends), the connection turns `refresh_failed`
//! at once and an `integration.error` event is published: an operator sees
//! it, and the merchant must reconnect. If it accepts it, nothing was
//! lost.
//!
//! **Failures.** A transient failure (network, 429, 5xx) is retried with
//! backoff per connection (`refresh_failures`, `next_refresh_at`); after
//! `max_failures` in a row the connection becomes `refresh_failed` and keeps
//! being retried at the longest backoff (a success makes it `active` again).
//! A refusal (400, 401, 403) is permanent: `refresh_failed` at once, no more
//! tries. Either way the transition publishes one `integration.error` event
//! through the sink (at least once: the pending event is kept on the row and
//! its id is derived from the failure, so a retry is the same event).
//! `refresh_failed` connections still accept webhooks: their HMAC does not
//! depend on the access token.
//!
//! No token, refresh token or client secret is ever logged or put in an
//! error or an event.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::pipeline::connection::{self, ACCESS_TOKEN, REFRESH_TOKEN};
use crate::pipeline::event::Topics;
use crate::pipeline::publish::Sink;
use crate::store::oauth::{IntegrationErrorRow, LeaseClaim, RefreshFailure, RefreshRow, TokenSwap};
use crate::store::{Store, StoreError, now_ms};
use crate::support::vault::{Secret, Vault, VaultError};

/// The event type suffix of a connection that can no longer refresh.
pub const INTEGRATION_ERROR_KIND: &str = "integration.error";
/// What the envelope's `metadata.transform` names for gateway-made events.
pub const GATEWAY_PRODUCER: &str = "gateway:token-refresh";

/// When and how hard tokens are refreshed.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Refresh when the access token has less than this left.
    pub lead_time: Duration,
    /// How often the job looks for tokens due.
    pub poll_interval: Duration,
    /// Failures in a row after which a connection is `refresh_failed`.
    pub max_failures: u32,
    /// Backoff after a failure, doubling per failure, capped.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a refresh lease lasts; at least twice the HTTP timeout is
    /// used, so that a lease never runs out under a refresh still waiting
    /// for the platform.
    pub lease: Duration,
    /// `access_token_for` refreshes inline when the token has less than this
    /// left.
    pub inline_margin: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            lead_time: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(30),
            max_failures: 5,
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(120),
            inline_margin: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no connection has this id")]
    NotFound,
    #[error("the connection has no access token (status {0})")]
    NoToken(String),
    #[error("the connection's token cannot be refreshed; the shop must be reconnected")]
    ReconnectNeeded,
    #[error("another refresh of this connection did not finish in time")]
    Busy,
    #[error("refreshing the token failed: {0}")]
    RefreshFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a token does not decrypt: {0}")]
    Vault(#[from] VaultError),
    #[error("internal: {0}")]
    Internal(String),
}

/// What one attempt under the lease came to.
enum Attempt {
    /// A token good for the threshold asked: ours, or one stored meanwhile.
    Token(Secret),
    /// Someone else holds the lease.
    Busy,
    /// The connection changed under us (reconnect, uninstall): read again.
    Changed,
}

/// New tokens a platform answered to a refresh, with absolute expiries
/// (epoch ms; None: not said).
pub struct Refreshed {
    pub access_token: Secret,
    pub access_token_expires_at: Option<i64>,
    /// None: the platform did not rotate it; the one spent stays.
    pub refresh_token: Option<Secret>,
    pub refresh_token_expires_at: Option<i64>,
    /// Empty: unchanged.
    pub scopes: String,
}

/// A refresh the platform did not grant, said without anything secret.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: String,
    /// Only a reconnect mends it (the refresh token or the app is refused).
    pub permanent: bool,
}

pub type RefreshCall<'a> = Pin<Box<dyn Future<Output = Result<Refreshed, Refusal>> + Send + 'a>>;

/// A platform's token endpoint: the one thing about a refresh that differs
/// by platform.
pub trait TokenEndpoint: Send + Sync + 'static {
    /// Spends `refresh_token` of the connection to `account` for new tokens.
    fn refresh<'a>(&'a self, account: &'a str, refresh_token: &'a Secret) -> RefreshCall<'a>;
}

pub struct Refresher {
    store: Store,
    vault: Arc<Vault>,
    /// The platform whose connections this refresher keeps fresh.
    provider: &'static str,
    endpoint: Arc<dyn TokenEndpoint>,
    cfg: RefreshConfig,
    lease: Duration,
    events: OnceLock<(Arc<Sink>, Topics)>,
    wake: Notify,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// True when the token must be refreshed to last `threshold` more.
fn due(row: &RefreshRow, now: i64, threshold: Duration) -> bool {
    matches!(row.access_token_expires_at, Some(t) if t < now + ms(threshold))
}

impl Refresher {
    /// The refresher of `provider`'s OAuth connections, whose tokens
    /// `endpoint` refreshes.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        provider: &'static str,
        endpoint: Arc<dyn TokenEndpoint>,
        cfg: RefreshConfig,
        http_timeout: Duration,
    ) -> Self {
        let lease = cfg
            .lease
            .max(http_timeout.saturating_mul(2) + Duration::from_secs(5));
        Self {
            store,
            vault,
            provider,
            endpoint,
            cfg,
            lease,
            events: OnceLock::new(),
            wake: Notify::new(),
        }
    }

    /// Where `integration.error` events go. Until this is set they wait on
    /// their rows.
    pub fn publish_events_to(&self, sink: Arc<Sink>, topics: Topics) {
        let _ = self.events.set((sink, topics));
    }

    pub fn config(&self) -> &RefreshConfig {
        &self.cfg
    }

    /// The platform whose connections this refresher keeps fresh.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Refreshes the connection's token now, however long it has left (the
    /// connection API's `refresh`): under the lease and through the
    /// compare-and-swap as every refresh, in a task of its own. Answers
    /// once the new token is stored.
    pub async fn refresh_now(self: &Arc<Self>, connection_id: &str) -> Result<(), TokenError> {
        // Long enough that any token is due, short enough not to overflow.
        const ALWAYS: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let me = self.clone();
        let id = connection_id.to_string();
        let attempt = tokio::spawn(async move { me.refresh(&id, ALWAYS).await })
            .await
            .map_err(|e| TokenError::Internal(format!("refresh task: {e}")))??;
        match attempt {
            Attempt::Token(_) => Ok(()),
            Attempt::Busy => Err(TokenError::Busy),
            Attempt::Changed => Err(TokenError::RefreshFailed(
                "the connection changed during the refresh (reconnect, uninstall or redaction)"
                    .into(),
            )),
        }
    }

    /// Wakes the job now rather than at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A usable access token of the connection, refreshed first (under the
    /// lease, in a task of its own) when it expires within the inline
    /// margin. When another refresh is under way, waits for it (at most a
    /// lease) and answers the token it stored.
    pub async fn access_token_for(
        self: &Arc<Self>,
        connection_id: &str,
    ) -> Result<Secret, TokenError> {
        let deadline = tokio::time::Instant::now() + self.lease;
        let mut pause = Duration::from_millis(20);
        loop {
            let row = self
                .store
                .refresh_row(connection_id)
                .await?
                .ok_or(TokenError::NotFound)?;
            if matches!(row.status.as_str(), "disconnected" | "redacted") {
                return Err(TokenError::NoToken(row.status));
            }
            let Some(ct) = &row.access_token else {
                return Err(TokenError::NoToken(row.status));
            };
            let now = now_ms();
            if !due(&row, now, self.cfg.inline_margin) {
                return Ok(self
                    .vault
                    .decrypt(ct, connection::binding(&row.id, ACCESS_TOKEN))?);
            }
            let still_valid = row.access_token_expires_at.is_some_and(|t| t > now);
            let refusable = row.refresh_token.is_none()
                || (row.status == "refresh_failed" && row.next_refresh_at.is_none());
            if refusable {
                return if still_valid {
                    Ok(self
                        .vault
                        .decrypt(ct, connection::binding(&row.id, ACCESS_TOKEN))?)
                } else {
                    Err(TokenError::ReconnectNeeded)
                };
            }
            // A task of its own: if our caller is dropped, the refresh still
            // ends with its tokens stored.
            let me = self.clone();
            let id = connection_id.to_string();
            let margin = self.cfg.inline_margin;
            let attempt = tokio::spawn(async move { me.refresh(&id, margin).await })
                .await
                .map_err(|e| TokenError::Internal(format!("refresh task: {e}")))?;
            match attempt {
                Ok(Attempt::Token(t)) => return Ok(t),
                Ok(Attempt::Busy | Attempt::Changed) => {}
                // The old token still works for a little while: use it.
                Err(TokenError::RefreshFailed(_)) if still_valid => {
                    return Ok(self
                        .vault
                        .decrypt(ct, connection::binding(&row.id, ACCESS_TOKEN))?);
                }
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TokenError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Runs the job until `shutdown` turns true. A refresh under way is
    /// finished first (its tokens must be stored).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.publish_pending_errors().await;
            match self.refresh_due(&shutdown).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(connections = n, "token refresh pass"),
                Err(e) => tracing::warn!(error = %e, "token refresh pass failed"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                r = shutdown.wait_for(|stop| *stop) => {
                    if r.is_err() { return; }
                }
            }
        }
    }

    /// One pass: every connection whose token expires within the lead time
    /// and whose next try is due. Answers how many were tried.
    pub async fn refresh_due(&self, shutdown: &watch::Receiver<bool>) -> Result<usize, StoreError> {
        let now = now_ms();
        let ids = self
            .store
            .due_refreshes(self.provider, now, now + ms(self.cfg.lead_time), 100)
            .await?;
        let mut tried = 0;
        for id in ids {
            if *shutdown.borrow() {
                break;
            }
            tried += 1;
            match self.refresh(&id, self.cfg.lead_time).await {
                Ok(_) => {}
                Err(TokenError::Store(e)) => return Err(e),
                Err(e) => tracing::debug!(connection = %id, error = %e, "token not refreshed"),
            }
        }
        Ok(tried)
    }

    /// Claims the lease and, if the token still needs it, refreshes.
    async fn refresh(&self, id: &str, threshold: Duration) -> Result<Attempt, TokenError> {
        let owner = Uuid::new_v4().to_string();
        let now = now_ms();
        let row = match self
            .store
            .claim_refresh_lease(id, &owner, now, now + ms(self.lease))
            .await?
        {
            LeaseClaim::Missing => return Err(TokenError::NotFound),
            LeaseClaim::Held(_) => return Ok(Attempt::Busy),
            LeaseClaim::Claimed(row) => row,
        };
        let result = self.refresh_leased(&owner, &row, threshold).await;
        // Every path that records an outcome releases the lease with it;
        // this covers the others (and is a no-op after those).
        if let Err(e) = self.store.release_refresh_lease(id, &owner).await {
            tracing::warn!(connection = %id, error = %e, "refresh lease not released; it expires");
        }
        result
    }

    async fn refresh_leased(
        &self,
        owner: &str,
        row: &RefreshRow,
        threshold: Duration,
    ) -> Result<Attempt, TokenError> {
        if let Some(started) = row.refresh_started_at {
            tracing::warn!(
                connection = %row.id,
                account = %row.account,
                started_at = started,
                "a previous token refresh was cut off before its outcome was stored; \
                 if the platform had rotated the refresh token, this refresh fails and the account must be reconnected"
            );
            self.store
                .note_interrupted_refresh(
                    &row.id,
                    &format!(
                        "a refresh started at {} (epoch ms) was interrupted before its outcome was stored",
                        started
                    ),
                )
                .await?;
        }
        if matches!(row.status.as_str(), "disconnected" | "redacted") {
            return Err(TokenError::NoToken(row.status.clone()));
        }
        let Some(access_ct) = &row.access_token else {
            return Err(TokenError::NoToken(row.status.clone()));
        };
        if !due(row, now_ms(), threshold) {
            // Another refresh stored a fresh token while we waited.
            return Ok(Attempt::Token(
                self.vault
                    .decrypt(access_ct, connection::binding(&row.id, ACCESS_TOKEN))?,
            ));
        }
        let Some(refresh_ct) = &row.refresh_token else {
            return Err(TokenError::ReconnectNeeded);
        };
        let refresh_token = self
            .vault
            .decrypt(refresh_ct, connection::binding(&row.id, REFRESH_TOKEN))?;
        let answer = self.endpoint.refresh(&row.account, &refresh_token).await;
        match answer {
            Ok(tokens) => {
                self.store_tokens(owner, row, refresh_ct, &refresh_token, tokens)
                    .await
            }
            Err(e) => Err(self.failed(owner, row, &e).await?),
        }
    }

    /// The crash window is here: between the exchange returning and the swap
    /// committing. Nothing but encryption happens in between.
    async fn store_tokens(
        &self,
        owner: &str,
        row: &RefreshRow,
        spent_ct: &str,
        spent: &Secret,
        tokens: Refreshed,
    ) -> Result<Attempt, TokenError> {
        let received = now_ms();
        let access_ct = self.vault.encrypt(
            tokens.access_token.expose(),
            connection::binding(&row.id, ACCESS_TOKEN),
        );
        // A rotated refresh token replaces ours; an answer without one
        // keeps the one we hold.
        let (refresh_plain, refresh_expiry) = match &tokens.refresh_token {
            Some(t) => (t, tokens.refresh_token_expires_at),
            None => (spent, row.refresh_token_expires_at),
        };
        let new_refresh_ct = self.vault.encrypt(
            refresh_plain.expose(),
            connection::binding(&row.id, REFRESH_TOKEN),
        );
        let mut expected = spent_ct.to_string();
        for _ in 0..3 {
            let swapped = self
                .store
                .swap_refreshed_tokens(&TokenSwap {
                    id: &row.id,
                    owner,
                    old_refresh_token: &expected,
                    access_token: &access_ct,
                    access_token_expires_at: tokens.access_token_expires_at,
                    refresh_token: &new_refresh_ct,
                    refresh_token_expires_at: refresh_expiry,
                    scopes: &tokens.scopes,
                    now: received,
                })
                .await?;
            if swapped {
                crate::support::metrics::token_refresh("refreshed");
                tracing::info!(connection = %row.id, account = %row.account, "access token refreshed");
                return Ok(Attempt::Token(tokens.access_token));
            }
            // Lost: either the same refresh token re-encrypted under a new
            // key (swap past it), or the connection really changed.
            let now = self.store.refresh_row(&row.id).await?;
            let same = now
                .as_ref()
                .and_then(|r| r.refresh_token.as_ref())
                .and_then(|ct| {
                    self.vault
                        .decrypt(ct, connection::binding(&row.id, REFRESH_TOKEN))
                        .ok()
                        .filter(|p| p.expose() == spent.expose())
                        .map(|_| ct.clone())
                });
            match same {
                Some(ct) if ct != expected => expected = ct,
                _ => break,
            }
        }
        crate::support::metrics::token_refresh("superseded");
        tracing::warn!(
            connection = %row.id,
            account = %row.account,
            "refreshed tokens not stored: the connection changed meanwhile (reconnect, uninstall or redaction), which wins"
        );
        Ok(Attempt::Changed)
    }

    /// Records a failed refresh; answers the error for the caller.
    async fn failed(
        &self,
        owner: &str,
        row: &RefreshRow,
        e: &Refusal,
    ) -> Result<TokenError, StoreError> {
        let is_permanent = e.permanent;
        let reason = e.reason.clone();
        let failures = row.refresh_failures + 1;
        let exp = (failures - 1).clamp(0, 20) as u32;
        let delay = self
            .cfg
            .min_backoff
            .saturating_mul(1u32 << exp.min(16))
            .min(self.cfg.max_backoff);
        let now = now_ms();
        let recorded = self
            .store
            .record_refresh_failure(&RefreshFailure {
                id: &row.id,
                owner,
                error: &reason,
                permanent: is_permanent,
                max_failures: self.cfg.max_failures as i64,
                retry_at: now + ms(delay),
                now,
            })
            .await?;
        crate::support::metrics::token_refresh(if is_permanent {
            "permanent_failure"
        } else {
            "transient_failure"
        });
        tracing::warn!(
            connection = %row.id,
            account = %row.account,
            error = %reason,
            permanent = is_permanent,
            failures,
            "token refresh failed"
        );
        if recorded.is_some_and(|r| r.became_failed) {
            tracing::error!(connection = %row.id, account = %row.account,
                "connection marked refresh_failed; publishing integration.error");
            self.publish_pending_errors().await;
        }
        Ok(if is_permanent {
            TokenError::ReconnectNeeded
        } else {
            TokenError::RefreshFailed(reason)
        })
    }

    /// Hands every pending `integration.error` event to the sink; those it
    /// takes are marked published. Failures wait for the next pass.
    pub async fn publish_pending_errors(&self) {
        let Some((sink, topics)) = self.events.get() else {
            return;
        };
        let rows = match self.store.pending_integration_errors().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "pending integration errors not read");
                return;
            }
        };
        for row in rows {
            let record = match integration_error_record(&row, topics) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(connection = %row.id, error = %e, "integration.error not built");
                    continue;
                }
            };
            match sink.send(std::slice::from_ref(&record)).await.pop() {
                Some(Ok(_)) => {
                    if let Err(e) = self
                        .store
                        .integration_error_published(&row.id, row.refresh_failed_at)
                        .await
                    {
                        tracing::warn!(connection = %row.id, error = %e, "integration.error published but not marked; it will be sent again");
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(connection = %row.id, error = %e, "integration.error not published; retried next pass")
                }
                None => {}
            }
        }
    }
}

/// The `integration.error` PlatformEvent of a connection that went
/// `refresh_failed`: the same envelope as a webhook's events (built by
/// `event::platform_record` from a stand-in row), type
/// `ionflux.{provider}.ws_{w}.brand_{b}.integration.error`, payload
/// `{connection_id, shop_domain, status, reason, failures}`, no secrets. Its
/// id and bytes depend only on the connection and the failure's time, so a
/// retry is the same event.
pub fn integration_error_record(
    row: &IntegrationErrorRow,
    topics: &Topics,
) -> Result<crate::pipeline::publish::Record, serde_json::Error> {
    let payload = serde_json::to_vec(&serde_json::json!({
        "connection_id": row.id,
        "shop_domain": row.account,
        "status": "refresh_failed",
        "reason": row.last_refresh_error.as_deref().unwrap_or("token refresh failed"),
        "failures": row.refresh_failures,
    }))?;
    crate::pipeline::integration::gateway_record(
        &crate::pipeline::integration::GatewayEvent {
            connection_id: &row.id,
            provider: &row.provider,
            account: &row.account,
            workspace_id: &row.workspace_id,
            brand_id: &row.brand_id,
            key: &format!("{INTEGRATION_ERROR_KIND}:{}", row.refresh_failed_at),
            topic: "ionflux/integration_error",
            at: row.refresh_failed_at,
            producer: GATEWAY_PRODUCER,
            kind: INTEGRATION_ERROR_KIND,
            payload: &payload,
        },
        topics,
    )
}
