//! `seller_deauthorization`: the seller revoked the app, and TikTok revoked
//! its tokens. Verified, stored and acknowledged like any webhook, it
//! becomes its event through the transform path; only after that event is
//! published does the dispatcher call [`after_finish`], which disconnects
//! the connections the webhook speaks for (`providers::lifecycle::scope`:
//! the one it arrived at, and the shop's other connections only when it was
//! certainly signed with the app's secret) and deletes their tokens and
//! webhook registrations. A reconnect after the webhook arrived is left
//! alone.
//!
//! The effect is the store's uninstall: one transaction that also marks the
//! row applied, harmless to repeat. A crash between the row finishing and
//! the effect leaves the row due; [`apply_due`] picks it up with the next
//! deauthorisation and at every start.

use crate::providers::lifecycle::scope;
use crate::store::oauth::LifecycleScope;
use crate::store::{InboxRow, Outcome, Store, StoreError};

use super::install::ID;

pub const DEAUTHORIZATION: &str = "seller_deauthorization";

/// The dispatcher's hook: when the batch published a deauthorisation,
/// applies every one due. Never fails; errors are logged and the effect
/// stays due.
pub async fn after_finish(store: &Store, finished: &[(&InboxRow, Outcome)]) {
    let any = finished.iter().any(|(row, o)| {
        row.provider == ID && matches!(o, Outcome::Published(_)) && row.topic == DEAUTHORIZATION
    });
    if !any {
        return;
    }
    if let Err(e) = apply_due(store).await {
        tracing::warn!(error = %e, "deauthorisations not applied; retried with the next one or at start");
    }
}

/// Applies every published deauthorisation not yet applied; answers how
/// many.
pub async fn apply_due(store: &Store) -> Result<usize, StoreError> {
    let mut applied = 0;
    loop {
        let rows = store.due_lifecycle_rows(ID, 100).await?;
        if rows.is_empty() {
            return Ok(applied);
        }
        for row in &rows {
            if row.topic == DEAUTHORIZATION {
                let scope = store
                    .secret_owners(&row.connection_id)
                    .await?
                    .map_or(LifecycleScope::Connection, |o| scope(&o, row.received_at));
                let done = store.apply_uninstall(row, scope).await?;
                tracing::info!(inbox_id = row.id, shop = %row.account, ?scope,
                    connections = done.connections, "seller deauthorised: tokens deleted, connection disconnected");
            } else {
                store.mark_lifecycle_applied(row.id).await?;
            }
            applied += 1;
        }
    }
}
