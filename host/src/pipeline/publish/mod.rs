//! Has the sink got it? Delivery of finished events to Kafka, or to the
//! embedded event log when no broker is configured.

pub mod kafka;

// Kept in the store, whose event log appends them; named here too, where
// producing them is the subject.
pub use crate::store::{Delivery, Record};

/// The W3C trace context header a record carries, so that a consumer can
/// continue the webhook's trace.
pub const TRACEPARENT: &str = "traceparent";

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

impl Sink {
    /// Delivers records in order; one result per record, same order.
    pub async fn send(&self, records: &[Record]) -> Vec<Result<Delivery, PublishError>> {
        match self {
            Sink::Kafka(k) => k.send(records).await,
            Sink::Log(store) => match store.log_and_finish(records, &[], None).await {
                Ok(deliveries) => deliveries.into_iter().map(Ok).collect(),
                Err(e) => all_transient(records, e),
            },
        }
    }

    /// The store the event log is kept in, when that is the sink: the
    /// dispatcher then appends and records the rows' outcomes together
    /// (`Store::log_and_finish`).
    pub fn event_log(&self) -> Option<&crate::store::Store> {
        match self {
            Sink::Log(store) => Some(store),
            Sink::Kafka(_) => None,
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
pub(crate) fn all_transient(
    records: &[Record],
    e: crate::store::StoreError,
) -> Vec<Result<Delivery, PublishError>> {
    records
        .iter()
        .map(|_| Err(PublishError::Transient(e.to_string())))
        .collect()
}
