//! Master-key rotation for what is stored: moves every vault ciphertext in
//! the database to the active key, while gateways keep serving.
//!
//! Every encrypted column is listed once, in [`SECRET_COLUMNS`]; a new
//! encrypted column is one more line there. Each row is decrypted with the key
//! it names and encrypted again under the active key with the same binding
//! (purpose, row id), then written back only if the column still holds the
//! ciphertext that was read (compare-and-swap): a secret a running gateway
//! wrote meanwhile (a rotation, a token refresh) is never overwritten. A row
//! that lost such a race is read again and retried.
//!
//! Runs are idempotent: rows already under the active key are only counted.
//! Nothing here logs or returns a plaintext or a key.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::store::secrets::{SECRET_COLUMNS, SecretColumn};
use crate::store::{Store, StoreError};
use crate::support::vault::{Binding, Vault};

/// Rows read (and written) per batch; each batch's writes are one short
/// transaction.
pub const DEFAULT_BATCH: i64 = 200;
/// How often one row is retried when a concurrent write keeps replacing it.
const MAX_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run found. Every scanned row is counted in exactly one of
/// `reencrypted`, `already_current`, `on_old_keys` and `failed`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReencryptReport {
    pub scanned: u64,
    /// Moved to the active key by this run.
    pub reencrypted: u64,
    /// Under the active key already (or emptied meanwhile): nothing to do.
    pub already_current: u64,
    /// Still under another key: a check run's "to do", or rows a concurrent
    /// writer kept replacing.
    pub on_old_keys: u64,
    /// Could not be decrypted (unknown key, wrong binding, corrupt).
    pub failed: u64,
    pub active_key: String,
    /// Rows by the key id they were found under.
    pub by_key: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
}

impl ReencryptReport {
    /// True when every stored secret is readable with the active key alone,
    /// so older keys may be removed from the key file.
    pub fn all_current(&self) -> bool {
        self.on_old_keys == 0 && self.failed == 0
    }
}

/// A row that could not be decrypted; which one and why, never its value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub table: String,
    pub column: String,
    pub id: String,
    pub error: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub batch: i64,
    /// Only look: count what a run would move, verify every row decrypts,
    /// write nothing.
    pub check_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            check_only: false,
        }
    }
}

/// Moves every stored ciphertext to the active key.
pub async fn reencrypt_all(store: &Store, vault: &Vault) -> Result<ReencryptReport, SecretsError> {
    run(store, vault, SECRET_COLUMNS, Options::default()).await
}

/// Counts and verifies without writing; see [`ReencryptReport::all_current`].
pub async fn check(store: &Store, vault: &Vault) -> Result<ReencryptReport, SecretsError> {
    run(
        store,
        vault,
        SECRET_COLUMNS,
        Options {
            check_only: true,
            ..Options::default()
        },
    )
    .await
}

/// What to do with one ciphertext.
enum Plan {
    Current,
    Move(String),
    Stale,
    Failed(String),
}

fn plan(vault: &Vault, active: &str, col: &SecretColumn, id: &str, ct: &str, check: bool) -> Plan {
    let binding = Binding {
        purpose: col.purpose,
        row_id: id,
    };
    // Decrypting every row, current ones too, verifies the whole store.
    let plain = match vault.decrypt(ct, binding) {
        Ok(p) => p,
        Err(e) => return Plan::Failed(e.to_string()),
    };
    if Vault::key_id_of(ct) == Some(active) {
        Plan::Current
    } else if check {
        Plan::Stale
    } else {
        let fresh = vault.encrypt(plain.expose(), binding);
        if Vault::key_id_of(&fresh) == Some(active) {
            Plan::Move(fresh)
        } else {
            // The vault followed its file to a newer key mid-run; the next
            // run moves this row.
            Plan::Stale
        }
    }
}

/// As [`reencrypt_all`] / [`check`], over the given columns.
pub async fn run(
    store: &Store,
    vault: &Vault,
    columns: &[SecretColumn],
    opts: Options,
) -> Result<ReencryptReport, SecretsError> {
    let active = vault.active_key_id();
    let mut report = ReencryptReport {
        active_key: active.clone(),
        ..ReencryptReport::default()
    };
    let batch = opts.batch.max(1);
    for col in columns {
        let mut after: Option<String> = None;
        loop {
            let rows = store.secret_batch(col, after.as_deref(), batch).await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            let full = rows.len() as i64 == batch;
            let mut swaps = Vec::new();
            for (id, ct) in rows {
                report.scanned += 1;
                let key = Vault::key_id_of(&ct).unwrap_or("(malformed)").to_string();
                *report.by_key.entry(key).or_default() += 1;
                match plan(vault, &active, col, &id, &ct, opts.check_only) {
                    Plan::Current => report.already_current += 1,
                    Plan::Stale => report.on_old_keys += 1,
                    Plan::Failed(error) => fail(&mut report, col, &id, error),
                    Plan::Move(fresh) => swaps.push((id, ct, fresh)),
                }
            }
            if !swaps.is_empty() {
                let swapped = store.swap_secrets(col, &swaps).await?;
                for ((id, _, _), won) in swaps.into_iter().zip(swapped) {
                    if won {
                        report.reencrypted += 1;
                    } else {
                        retry(store, vault, &active, col, &id, &mut report).await?;
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(report)
}

/// A row a concurrent writer changed between our read and our write: read
/// it again and decide afresh.
async fn retry(
    store: &Store,
    vault: &Vault,
    active: &str,
    col: &SecretColumn,
    id: &str,
    report: &mut ReencryptReport,
) -> Result<(), SecretsError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(ct) = store.secret_value(col, id).await? else {
            // Emptied or deleted meanwhile: nothing left under an old key.
            report.already_current += 1;
            return Ok(());
        };
        match plan(vault, active, col, id, &ct, false) {
            Plan::Current => {
                report.already_current += 1;
                return Ok(());
            }
            Plan::Stale => {
                report.on_old_keys += 1;
                return Ok(());
            }
            Plan::Failed(error) => {
                fail(report, col, id, error);
                return Ok(());
            }
            Plan::Move(fresh) => {
                let swaps = [(id.to_string(), ct, fresh)];
                if store.swap_secrets(col, &swaps).await?[0] {
                    report.reencrypted += 1;
                    return Ok(());
                }
            }
        }
    }
    tracing::warn!(
        table = col.table,
        column = col.column,
        id,
        "secret kept changing under re-encryption; left for the next run"
    );
    report.on_old_keys += 1;
    Ok(())
}

fn fail(report: &mut ReencryptReport, col: &SecretColumn, id: &str, error: String) {
    tracing::warn!(
        table = col.table,
        column = col.column,
        id,
        %error,
        "stored secret cannot be decrypted"
    );
    report.failed += 1;
    report.failures.push(Failure {
        table: col.table.into(),
        column: col.column.into(),
        id: id.into(),
        error,
    });
}
