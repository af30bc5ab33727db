//! The `events` table: the embedded event log, appended to together with the
//! outcomes of the inbox rows the events came from.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::inbox::{InboxRow, Outcome, RELEASE_LEASES_SQL, Tried};
use super::{
    Backend, Blob, DeadLetter, Params, ROWS_PER_STATEMENT, Result, Store, StoreError, WriteTx,
    blob, now_ms,
};

/// One record to produce. `event_id` is carried for correlation only; the
/// record's identity on the wire is the payload's own `event_id` field.
#[derive(Debug, Clone)]
pub struct Record {
    pub event_id: uuid::Uuid,
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces the header `name`, or adds it.
    pub fn set_header(&mut self, name: &str, value: &str) {
        match self.headers.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => value.clone_into(v),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// Where a record landed: topic, partition and offset (Kafka's, or on
/// partition 0 the event log's sequence number).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One record of the embedded event log.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub event_id: String,
    pub topic: String,
    pub key: String,
    pub headers: String,
    pub payload: String,
    pub created_at: i64,
}

impl Store {
    /// Appends records to the event log and records the outcomes of the rows
    /// they came from, in one transaction: both commit or neither does (a
    /// retry). With `owner`, that replica's brand leases are given back in
    /// it too (the batch is recorded, so its brands may go to anyone).
    /// Returns each record's place in the log, in order. An event id
    /// already logged (a retry after a crash) is not appended twice; its
    /// first place is returned.
    pub async fn log_and_finish(
        &self,
        records: &[Record],
        rows: &[Logged<'_>],
        owner: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        self.log_and_finish_tried(records, rows, &[], owner).await
    }

    /// `log_and_finish`, with what each row's attempt ran (`tried[i]` is
    /// `rows[i]`'s), kept in the same transaction.
    pub async fn log_and_finish_tried(
        &self,
        records: &[Record],
        rows: &[Logged<'_>],
        tried: &[Tried],
        owner: Option<&str>,
    ) -> Result<Vec<Delivery>> {
        // Compressed and serialised before the write turn is taken.
        let log = LogRecords::encode(records)?;
        let now = now_ms();
        if let Some(writer) = &self.writer {
            let seqs = writer.log_and_finish(&log, rows, tried, now, owner).await?;
            return Ok(log.deliveries(&seqs));
        }
        let mut tx = self.serial_tx().await?;
        let deliveries = self.append_events(&mut tx, &log, now).await?;
        let outcomes: Vec<_> = rows
            .iter()
            .map(|r| (r.row, r.outcome(&deliveries)))
            .collect();
        self.finish_in(&mut tx, &outcomes, tried).await?;
        if let Some(owner) = owner {
            sqlx::query(RELEASE_LEASES_SQL)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(deliveries)
    }

    /// `log_and_finish`'s append, through sqlx.
    async fn append_events(
        &self,
        tx: &mut WriteTx,
        log: &LogRecords<'_>,
        now: i64,
    ) -> Result<Vec<Delivery>> {
        let mut seqs: std::collections::HashMap<String, i64> =
            std::collections::HashMap::with_capacity(log.rows.len());
        for chunk in log.rows.chunks(ROWS_PER_STATEMENT) {
            let sql = append_events_sql(self.backend, chunk.len());
            let mut q = sqlx::query(&sql);
            for row in chunk {
                let (text, zstd) = row.payload_columns();
                q = q
                    .bind(row.event_id.as_str())
                    .bind(&row.record.topic)
                    .bind(&row.record.key)
                    .bind(row.headers.as_str())
                    .bind(text)
                    .bind(zstd)
                    .bind(row.workspace_id)
                    .bind(now);
            }
            for r in q.fetch_all(&mut **tx).await? {
                seqs.insert(r.try_get(1)?, r.try_get(0)?);
            }
        }
        let mut out = Vec::with_capacity(log.rows.len());
        for row in &log.rows {
            let seq = match seqs.get(&row.event_id) {
                Some(&seq) => seq,
                None => {
                    sqlx::query_scalar(LOGGED_SEQ_SQL)
                        .bind(row.event_id.as_str())
                        .fetch_one(&mut **tx)
                        .await?
                }
            };
            out.push(seq);
        }
        Ok(log.deliveries(&out))
    }

    /// Events after `after_seq`, oldest first.
    pub async fn events_after(&self, after_seq: i64, limit: i64) -> Result<Vec<LoggedEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(logged_event_from)
        .collect()
    }

    /// The newest `limit` events, oldest first.
    pub async fn events_tail(&self, limit: i64) -> Result<Vec<LoggedEvent>> {
        self.events_tail_in(None, limit).await
    }

    /// The newest `limit` events, oldest first: of one workspace, or of all.
    pub async fn events_tail_in(
        &self,
        workspace: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        let filter = if workspace.is_some() {
            "WHERE workspace_id = $2"
        } else {
            ""
        };
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events {filter} ORDER BY seq DESC LIMIT $1");
        let mut query = sqlx::query(&sql).bind(limit);
        if let Some(workspace) = workspace {
            query = query.bind(workspace);
        }
        let mut events = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(logged_event_from)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    /// Events of one workspace after `after_seq`, oldest first. The column
    /// is the envelope's `workspace_id`, which is the host's own (a
    /// transform cannot set it), so it is safe to filter on.
    pub async fn workspace_events_after(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND workspace_id = $2
             ORDER BY seq LIMIT $3"
        ))
        .bind(after_seq)
        .bind(workspace)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(logged_event_from)
        .collect()
    }
}

/// Appends `n` records to the event log: binds event id, topic, key,
/// headers, payload (text), payload (zstd), workspace, created at, per row.
/// Rows take their sequence numbers in VALUES order, which keeps a batch's
/// order in the log; an event id logged before (a retry after a crash)
/// returns nothing and keeps its first place (`LOGGED_SEQ_SQL`).
pub(super) fn append_events_sql(backend: Backend, n: usize) -> String {
    format!(
        "INSERT INTO events (event_id, topic, key, headers, payload, payload_zstd,
            workspace_id, created_at)
         VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING seq, event_id",
        Params::new(backend).values(n, 8)
    )
}

/// Where an event id was logged first.
pub(super) const LOGGED_SEQ_SQL: &str = "SELECT seq FROM events WHERE event_id = $1";

/// Every column `LoggedEvent` is made from, for `logged_event_from`.
const EVENT_COLUMNS: &str = "seq, event_id, topic, key, headers, payload, payload_zstd, created_at";

fn logged_event_from(r: &AnyRow) -> Result<LoggedEvent> {
    let payload = match r.try_get::<Option<Vec<u8>>, _>("payload_zstd")? {
        Some(frame) => String::from_utf8(Blob::decode(blob::Encoding::Zstd.as_str(), frame)?)
            .map_err(|e| StoreError::Corrupt(format!("event payload is not UTF-8: {e}")))?,
        None => r.try_get("payload")?,
    };
    Ok(LoggedEvent {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        topic: r.try_get("topic")?,
        key: r.try_get("key")?,
        headers: r.try_get("headers")?,
        payload,
        created_at: r.try_get("created_at")?,
    })
}

/// A claimed row's share of `Store::log_and_finish`: the records of the
/// batch that are its (its events, or its dead-letter copy) and, for a row
/// dead-lettered, why. A row without a letter is published.
pub struct Logged<'a> {
    pub row: &'a InboxRow,
    pub records: std::ops::Range<usize>,
    pub letter: Option<&'a DeadLetter>,
}

impl Logged<'_> {
    /// The row's outcome, given where the batch's records were logged.
    pub(super) fn outcome(&self, deliveries: &[Delivery]) -> Outcome {
        let deliveries = deliveries[self.records.clone()].to_vec();
        match self.letter {
            Some(letter) => Outcome::Dead {
                deliveries,
                letter: letter.clone(),
            },
            None => Outcome::Published(deliveries),
        }
    }
}

/// Records made ready for the event log before the write turn is taken:
/// payloads compressed and headers serialised, so that the transaction
/// itself only moves bytes.
pub(super) struct LogRecords<'a> {
    pub(super) rows: Vec<LogRow<'a>>,
}

pub(super) struct LogRow<'a> {
    pub(super) record: &'a Record,
    pub(super) event_id: String,
    pub(super) headers: String,
    pub(super) payload: Blob,
    pub(super) workspace_id: Option<&'a str>,
}

impl<'a> LogRecords<'a> {
    fn encode(records: &'a [Record]) -> Result<Self> {
        let rows = records
            .iter()
            .map(|r| {
                // Readers get the payload back as text.
                std::str::from_utf8(&r.payload)
                    .map_err(|e| StoreError::Corrupt(format!("event payload is not UTF-8: {e}")))?;
                Ok(LogRow {
                    record: r,
                    event_id: r.event_id.to_string(),
                    headers: serde_json::to_string(&r.headers).expect("headers serialise"),
                    payload: Blob::encode(&r.payload),
                    workspace_id: r
                        .headers
                        .iter()
                        .find(|(k, _)| k == "workspace_id")
                        .map(|(_, v)| v.as_str()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { rows })
    }

    /// The records' places in the log, from their sequence numbers.
    fn deliveries(&self, seqs: &[i64]) -> Vec<Delivery> {
        self.rows
            .iter()
            .zip(seqs)
            .map(|(row, &offset)| Delivery {
                topic: row.record.topic.clone(),
                partition: 0,
                offset,
            })
            .collect()
    }
}

impl LogRow<'_> {
    /// The payload as the `payload` (text) and `payload_zstd` columns hold it.
    pub(super) fn payload_columns(&self) -> (&str, Option<&[u8]>) {
        match self.payload.encoding {
            // Checked to be UTF-8 when the rows were made.
            blob::Encoding::Identity => (
                std::str::from_utf8(&self.payload.bytes).unwrap_or_default(),
                None,
            ),
            blob::Encoding::Zstd => ("", Some(self.payload.bytes.as_slice())),
        }
    }
}
