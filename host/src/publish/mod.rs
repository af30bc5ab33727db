//! Has the sink got it? Delivery of finished events to Kafka, or to the
//! embedded event log when no broker is configured.

pub mod kafka;

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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

/// The configured sink. An enum rather than a trait object: there are two
/// kinds, and the dispatcher's hot path stays free of boxing.
pub enum Sink {
    Kafka(kafka::KafkaSink),
    /// The embedded event log (a table), used when no broker is configured.
    Log(crate::store::Store),
}

/// Records appended to the event log but not yet committed, and the store
/// whose transaction holds them: the dispatcher records the rows' outcomes
/// in the same transaction, so that both commit together or neither does.
pub(crate) struct Uncommitted<'a> {
    pub store: &'a crate::store::Store,
    pub tx: crate::store::WriteTx,
}

impl Sink {
    /// Delivers records in order; one result per record, same order.
    pub async fn send(&self, records: &[Record]) -> Vec<Result<Delivery, PublishError>> {
        let (results, uncommitted) = self.send_uncommitted(records).await;
        match uncommitted {
            Some(u) => match u.tx.commit().await {
                Ok(()) => results,
                Err(e) => all_transient(records, e),
            },
            None => results,
        }
    }

    /// As `send`, except that the event log's append is left uncommitted in
    /// the transaction returned with the results (none for Kafka, or when
    /// the append failed).
    pub(crate) async fn send_uncommitted(
        &self,
        records: &[Record],
    ) -> (Vec<Result<Delivery, PublishError>>, Option<Uncommitted<'_>>) {
        match self {
            Sink::Kafka(k) => (k.send(records).await, None),
            Sink::Log(store) => {
                let appended = async {
                    let rows = crate::store::LogRecords::encode(records)?;
                    let mut tx = store.event_log_tx().await?;
                    let deliveries = store.append_events(&mut tx, &rows).await?;
                    Ok::<_, crate::store::StoreError>((tx, deliveries))
                }
                .await;
                match appended {
                    Ok((tx, deliveries)) => (
                        deliveries.into_iter().map(Ok).collect(),
                        Some(Uncommitted { store, tx }),
                    ),
                    Err(e) => (all_transient(records, e), None),
                }
            }
        }
    }

    /// Whether dead letters also go to a dead-letter topic. The event log
    /// needs no such copy: the dead_letters table is its DLQ.
    pub fn has_dlq_topic(&self) -> bool {
        matches!(self, Sink::Kafka(_))
    }

    pub async fn ready(&self, timeout: std::time::Duration) -> bool {
        match self {
            Sink::Kafka(k) => k.ready(timeout).await,
            Sink::Log(store) => store.ping().await.is_ok(),
        }
    }

    pub fn flush(&self, timeout: std::time::Duration) {
        if let Sink::Kafka(k) = self {
            k.flush(timeout);
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => "kafka",
            Sink::Log(_) => "event-log",
        }
    }
}

/// The event log's answer when its transaction failed: every record may
/// succeed on a retry.
fn all_transient(
    records: &[Record],
    e: crate::store::StoreError,
) -> Vec<Result<Delivery, PublishError>> {
    records
        .iter()
        .map(|_| Err(PublishError::Transient(e.to_string())))
        .collect()
}
