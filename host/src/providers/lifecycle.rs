//! Which connections a lifecycle webhook (an uninstall, a redaction, a
//! deauthorisation) speaks for, whichever platform sent it.
//!
//! **A webhook speaks only for the connections its secret verifies.** A
//! manual connection's secret is whatever its tenant chose, and what a
//! platform's signature leaves uncovered (Shopify's topic and shop headers)
//! or covers under a tenant's secret (any envelope) a tenant can sign for
//! any account at its own connection's URL. The effect therefore reaches
//! the connection the webhook arrived at, and the account's other
//! connections only when the webhook was certainly signed with the app's
//! secret, which no tenant holds. See `shopify::lifecycle` and
//! `tiktok_shop::deauthorization` for what each platform does with it.

use crate::pipeline::connection::SECRETS_CACHED_FOR;
use crate::store::oauth::{LifecycleScope, SecretOwners};
use crate::store::{InboxRow, Outcome, Store, StoreError};

/// A lifecycle topic whose effect is the end of the install: the
/// connections the webhook speaks for ([`scope`]) are `disconnected` and
/// lose their tokens and webhook registrations (TikTok Shop's seller
/// deauthorisation, Wix's app removal). A reconnect after the webhook
/// arrived is left alone.
///
/// Applied after the webhook's event is published (the dispatcher calls
/// [`Disconnect::after_finish`] from the provider's `after_publish`), in
/// one transaction with marking the row applied, so repeating it changes
/// nothing; a crash in between leaves the row due, found again by the next
/// such webhook and at every start ([`Disconnect::apply_due`]).
#[derive(Debug, Clone, Copy)]
pub struct Disconnect {
    pub provider: &'static str,
    pub topic: &'static str,
}

impl Disconnect {
    /// The dispatcher's hook: when the batch published this topic, applies
    /// every one due. Never fails; errors are logged and the effect stays
    /// due.
    pub async fn after_finish(&self, store: &Store, finished: &[(&InboxRow, Outcome)]) {
        let any = finished.iter().any(|(row, o)| {
            row.provider == self.provider
                && row.topic == self.topic
                && matches!(o, Outcome::Published(_))
        });
        if !any {
            return;
        }
        if let Err(e) = self.apply_due(store).await {
            tracing::warn!(provider = self.provider, topic = self.topic, error = %e,
                "lifecycle effects not applied; retried with the next one or at start");
        }
    }

    /// Applies every published webhook of this topic not yet applied (the
    /// provider's other due lifecycle rows are marked applied: they have no
    /// effect); answers how many.
    pub async fn apply_due(&self, store: &Store) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let rows = store.due_lifecycle_rows(self.provider, 100).await?;
            if rows.is_empty() {
                return Ok(applied);
            }
            for row in &rows {
                if row.topic == self.topic {
                    let scope = store
                        .secret_owners(&row.connection_id)
                        .await?
                        .map_or(LifecycleScope::Connection, |o| scope(&o, row.received_at));
                    let done = store.apply_uninstall(row, scope).await?;
                    tracing::info!(provider = self.provider, topic = self.topic,
                        inbox_id = row.id, account = %row.account, ?scope,
                        connections = done.connections, "install ended: tokens deleted, connection disconnected");
                } else {
                    store.mark_lifecycle_applied(row.id).await?;
                }
                applied += 1;
            }
        }
    }
}

/// Which connections a lifecycle webhook that arrived at `received_at` at a
/// connection with these secrets speaks for.
///
/// [`LifecycleScope::App`] only when every secret that connection verified
/// with at that moment was the app's client secret: its current secret is
/// the app's and had been current for longer than the intake caches secrets
/// (before that, a replica may still have verified with the secret it
/// replaced, at the old webhook path), and any previous secret still inside
/// its window was the app's too. Anything else is
/// [`LifecycleScope::Connection`]: the webhook may have been signed by a
/// tenant.
pub fn scope(owners: &SecretOwners, received_at: i64) -> LifecycleScope {
    let margin = SECRETS_CACHED_FOR.as_millis() as i64;
    let current_is_app = owners.webhook_secret_owner == "app"
        && owners.webhook_secret_since.saturating_add(margin) <= received_at;
    let previous_verified = owners.has_previous != 0
        && owners
            .previous_webhook_secret_expires_at
            .is_some_and(|until| received_at < until);
    let previous_is_app = owners.previous_webhook_secret_owner.as_deref() == Some("app");
    if current_is_app && (!previous_verified || previous_is_app) {
        LifecycleScope::App
    } else {
        LifecycleScope::Connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(owner: &str, since: i64) -> SecretOwners {
        SecretOwners {
            webhook_secret_owner: owner.into(),
            webhook_secret_since: since,
            has_previous: 0,
            previous_webhook_secret_owner: None,
            previous_webhook_secret_expires_at: None,
        }
    }

    #[test]
    fn only_a_webhook_certainly_signed_by_the_app_speaks_for_the_app() {
        let margin = SECRETS_CACHED_FOR.as_millis() as i64;
        let t = 1_000_000_000;
        // The app's secret, current well before: the app's scope.
        assert_eq!(scope(&owners("app", t - margin), t), LifecycleScope::App);
        // A tenant's secret: only the connection.
        assert_eq!(scope(&owners("tenant", 0), t), LifecycleScope::Connection);
        // The app's secret, but so recently that a cached older secret may
        // have verified it.
        assert_eq!(
            scope(&owners("app", t - margin + 1), t),
            LifecycleScope::Connection
        );
        // A tenant's previous secret inside its window also verified then.
        let mut o = owners("app", 0);
        o.has_previous = 1;
        o.previous_webhook_secret_owner = Some("tenant".into());
        o.previous_webhook_secret_expires_at = Some(t + 1);
        assert_eq!(scope(&o, t), LifecycleScope::Connection);
        // Past its window it no longer counts.
        o.previous_webhook_secret_expires_at = Some(t);
        assert_eq!(scope(&o, t), LifecycleScope::App);
        // A previous secret of unknown owner counts as a tenant's.
        o.previous_webhook_secret_owner = None;
        o.previous_webhook_secret_expires_at = Some(t + 1);
        assert_eq!(scope(&o, t), LifecycleScope::Connection);
        // Without an expiry a previous secret never verified.
        o.previous_webhook_secret_expires_at = None;
        assert_eq!(scope(&o, t), LifecycleScope::App);
        o.previous_webhook_secret_owner = Some("app".into());
        o.previous_webhook_secret_expires_at = Some(t + 1);
        assert_eq!(scope(&o, t), LifecycleScope::App);
    }
}
