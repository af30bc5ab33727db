//! Where the vault's ciphertexts are stored, and the SQL that re-encrypts
//! them under the active master key (for the crate's `secrets`, the
//! rotation). Table and column names come from [`SECRET_COLUMNS`]
//! (compile-time constants) and are checked to be plain identifiers before
//! they are put into a statement; every value is bound.

use super::{Result, Store, StoreError};

// The purposes ciphertexts are bound to (with the row id), one per column.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
pub const PREVIOUS_WEBHOOK_SECRET: &str = "previous_webhook_secret";
pub const ACCESS_TOKEN: &str = "access_token";
pub const REFRESH_TOKEN: &str = "refresh_token";

/// One encrypted column: where it lives and what its ciphertexts are bound
/// to (`purpose`, and the row's `id_column` as row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretColumn {
    pub table: &'static str,
    pub id_column: &'static str,
    pub column: &'static str,
    pub purpose: &'static str,
}

impl SecretColumn {
    pub const fn new(
        table: &'static str,
        id_column: &'static str,
        column: &'static str,
        purpose: &'static str,
    ) -> Self {
        Self {
            table,
            id_column,
            column,
            purpose,
        }
    }
}

/// Every column that holds vault ciphertexts. NULLs are skipped.
pub const SECRET_COLUMNS: &[SecretColumn] = &[
    SecretColumn::new("connections", "id", "webhook_secret", WEBHOOK_SECRET),
    SecretColumn::new(
        "connections",
        "id",
        "previous_webhook_secret",
        PREVIOUS_WEBHOOK_SECRET,
    ),
    SecretColumn::new("connections", "id", "access_token", ACCESS_TOKEN),
    SecretColumn::new("connections", "id", "refresh_token", REFRESH_TOKEN),
];

/// The identifiers of `col`, checked.
fn idents(col: &SecretColumn) -> Result<(&'static str, &'static str, &'static str)> {
    for name in [col.table, col.id_column, col.column] {
        let plain = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain {
            return Err(StoreError::Corrupt(format!(
                "{name:?} is not a plain SQL identifier"
            )));
        }
    }
    Ok((col.table, col.id_column, col.column))
}

impl Store {
    /// Up to `limit` (row id, ciphertext) pairs of a secret column, in id
    /// order, after the row id `after` (keyset paging, so rows written while
    /// a run pages through are neither skipped twice nor read twice). NULLs
    /// are skipped. Row ids come back as text, as the vault binds them.
    pub async fn secret_batch(
        &self,
        col: &SecretColumn,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let (table, id, column) = idents(col)?;
        let rows: Vec<(String, String)> = match after {
            None => {
                let sql = format!(
                    "SELECT CAST({id} AS TEXT), {column} FROM {table}
                     WHERE {column} IS NOT NULL ORDER BY {id} LIMIT $1"
                );
                sqlx::query_as(&sql)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(after) => {
                let sql = format!(
                    "SELECT CAST({id} AS TEXT), {column} FROM {table}
                     WHERE {column} IS NOT NULL AND {id} > $1 ORDER BY {id} LIMIT $2"
                );
                sqlx::query_as(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// The ciphertext one row holds now (None: NULL, or no such row).
    pub async fn secret_value(&self, col: &SecretColumn, row_id: &str) -> Result<Option<String>> {
        let (table, id, column) = idents(col)?;
        let sql = format!("SELECT {column} FROM {table} WHERE {id} = $1");
        let value: Option<Option<String>> = sqlx::query_scalar(&sql)
            .bind(row_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.flatten())
    }

    /// Compare-and-swap of ciphertexts, one write transaction for the lot:
    /// each `(row id, expected, replacement)` is written only if the column
    /// still holds `expected`. Answers, per entry, whether it was written; a
    /// `false` means someone else wrote the row meanwhile, and their value
    /// stands.
    pub async fn swap_secrets(
        &self,
        col: &SecretColumn,
        swaps: &[(String, String, String)],
    ) -> Result<Vec<bool>> {
        let (table, id, column) = idents(col)?;
        let sql = format!("UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3");
        let mut tx = self.write_tx().await?;
        let mut written = Vec::with_capacity(swaps.len());
        for (row_id, expected, replacement) in swaps {
            let done = sqlx::query(&sql)
                .bind(replacement)
                .bind(row_id)
                .bind(expected)
                .execute(&mut *tx)
                .await?;
            written.push(done.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(written)
    }
}
