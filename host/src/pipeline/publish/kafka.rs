//! The Kafka sink: turns [`Record`]s into acknowledged Kafka records.
//!
//! Invariants this module keeps (DESIGN.md §1, step 6–7):
//! - Every record gets exactly one answer, in the order it was given: a
//!   [`Delivery`] only once the broker acknowledged it with `acks=all`, or an
//!   error that says whether retrying can help.
//! - Records with the same topic and key are enqueued in order, go to the same
//!   partition, and the idempotent producer keeps that order on the wire. If
//!   a record cannot even be enqueued, later records with the same key in the
//!   batch are failed too rather than overtaking it.
//! - Nothing here drops data on its own: when in doubt an error is
//!   [`PublishError::Transient`], and the dispatcher retries. Only properties
//!   of the record itself (too large, invalid topic name) are permanent.
//! - A broker that is down for hours never wedges the sink. librdkafka may
//!   raise a *fatal* error on an idempotent producer after a long outage
//!   (sequence numbers it can no longer reconcile); the producer is then
//!   replaced by a fresh one. Some brokers instead reject the old producer
//!   id forever without librdkafka calling it fatal (tansu with in-memory
//!   storage after a restart answers UNKNOWN_PRODUCER_ID to every epoch
//!   librdkafka bumps locally), so a run of batches in which nothing at all
//!   was delivered also replaces the producer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{Delivery, PublishError, Record, TRACEPARENT};

/// Settings of the Kafka sink. [`KafkaConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, comma separated `host:port`.
    pub brokers: String,
    /// `client.id`, visible in broker logs and quotas.
    pub client_id: String,
    /// How long librdkafka keeps trying one record before it reports a
    /// failure. Past that the dispatcher's own retry with backoff takes over,
    /// so this bounds how long a batch can hang, not how long we keep trying.
    pub message_timeout: Duration,
    /// Create each topic (CreateTopics) before its first produce. Needed for
    /// brokers that do not auto-create topics on produce, tansu among them.
    pub create_topics: bool,
    /// Partitions and replication factor of topics this sink creates.
    pub topic_partitions: i32,
    pub replication_factor: i16,
    /// The largest record the gateway can produce, key and headers
    /// included (see [`largest_record_bytes`]): the producer's
    /// `message.max.bytes`, unless `extra` sets that.
    pub max_record_bytes: usize,
    /// Raw librdkafka properties, applied last so they override every
    /// default here (security settings, `message.max.bytes`, …).
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "ionflux-gateway".to_owned(),
            message_timeout: Duration::from_secs(30),
            create_topics: true,
            topic_partitions: 3,
            replication_factor: 1,
            max_record_bytes: largest_record_bytes(
                crate::api::http::DEFAULT_MAX_BODY_BYTES,
                crate::pipeline::ceilings::Ceilings::default().output_bytes,
            ),
            extra: Vec::new(),
        }
    }
}

/// What one event's record may hold beyond its payload: the envelope and the
/// record headers repeat the inbox row's strings, which are header values of
/// at most 512 bytes each (`webhook`), and the transform's kind and schema
/// version, which `transform::output` bounds; together (escaped, and with
/// Kafka's per-record framing) some 25 KiB at worst.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// The largest event record the gateway can produce: its payload is at most
/// the larger of a webhook body (passed through unchanged) and a call's
/// output ceiling, plus the envelope. Within librdkafka's range for
/// `message.max.bytes` (1000 ..= 1e9), and never below its default.
pub fn largest_record_bytes(max_body_bytes: usize, output_bytes: usize) -> usize {
    max_body_bytes
        .max(output_bytes)
        .saturating_add(RECORD_OVERHEAD_BYTES)
        .clamp(1_000_000, 1_000_000_000)
}

type Producer_ = FutureProducer<SinkContext>;

/// Consecutive batches with deliveries attempted and none acknowledged after
/// which the producer is rebuilt. Low enough that a wedged producer costs
/// only a few message timeouts, high enough that a short outage does not
/// churn producers.
const REBUILD_AFTER_FAILED_BATCHES: u32 = 3;

/// Produces [`Record`]s to Kafka with an idempotent producer.
///
/// Cheap to clone; clones share one producer. Kept to one pointer so that
/// holding it in an enum next to other sinks costs nothing.
#[derive(Clone)]
pub struct KafkaSink {
    inner: Arc<Inner>,
}

impl KafkaSink {
    pub fn new(cfg: KafkaConfig) -> Result<Self, PublishError> {
        Ok(KafkaSink {
            inner: Arc::new(Inner::new(cfg)?),
        })
    }

    /// Produces all records, in order, and waits for every acknowledgement.
    /// Returns one result per record, in the same order.
    ///
    /// Dropping the returned future does not unsend what was already
    /// enqueued; the caller then does not know the outcome and must retry,
    /// which is safe because consumers deduplicate on `event_id`.
    pub async fn send(&self, records: &[Record]) -> Vec<Result<Delivery, PublishError>> {
        self.inner.send(records).await
    }

    /// True when the cluster answers a metadata request within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        self.inner.ready(timeout).await
    }

    /// Waits up to `timeout` for everything enqueued to be acknowledged;
    /// meant for shutdown. Blocks the calling thread.
    pub fn flush(&self, timeout: Duration) {
        self.inner.flush(timeout)
    }
}

struct Inner {
    cfg: KafkaConfig,
    // Swapped wholesale when librdkafka declares the producer dead; a batch
    // holds its own `Arc` so a swap never pulls a producer from under it.
    producer: RwLock<Arc<Producer_>>,
    admin: Option<AdminClient<SinkContext>>,
    // Topics known to exist; a topic with failed records is dropped again
    // (see `forget_failed_topics`).
    known_topics: Mutex<HashSet<String>>,
    failed_batches: AtomicU32,
}

impl Inner {
    fn new(cfg: KafkaConfig) -> Result<Self, PublishError> {
        check_config(&cfg, &builtin_features()?).map_err(PublishError::Permanent)?;
        let producer = build_producer(&cfg)?;
        let admin = if cfg.create_topics {
            let admin = client_config(&cfg, false)
                .create_with_context(SinkContext)
                .map_err(|e| PublishError::Permanent(format!("kafka admin client: {e}")))?;
            Some(admin)
        } else {
            None
        };
        info!(brokers = %cfg.brokers, client_id = %cfg.client_id, "kafka sink created");
        Ok(Inner {
            cfg,
            producer: RwLock::new(Arc::new(producer)),
            admin,
            known_topics: Mutex::new(HashSet::new()),
            failed_batches: AtomicU32::new(0),
        })
    }

    async fn send(&self, records: &[Record]) -> Vec<Result<Delivery, PublishError>> {
        if records.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let producer = self.live_producer();

        let mut results: Vec<Option<Result<Delivery, PublishError>>> =
            records.iter().map(|_| None).collect();

        let topic_failures = self.ensure_topics(records).await;

        let mut pending: Vec<(usize, DeliveryFuture, Span)> = Vec::with_capacity(records.len());
        let mut blocked_keys: HashSet<(&str, &str)> = HashSet::new();
        for (i, record) in records.iter().enumerate() {
            if let Some(failure) = topic_failures.get(record.topic.as_str()) {
                results[i] = Some(Err(failure.to_error()));
                continue;
            }
            let slot = (record.topic.as_str(), record.key.as_str());
            if blocked_keys.contains(&slot) {
                results[i] = Some(Err(PublishError::Transient(
                    "not sent: an earlier record with the same key in this batch failed".into(),
                )));
                continue;
            }
            let span = produce_span(record);
            let traceparent = crate::support::telemetry::traceparent(&span);
            match self
                .enqueue(&producer, record, traceparent.as_deref())
                .instrument(span.clone())
                .await
            {
                Ok(future) => pending.push((i, future, span)),
                Err(e) => {
                    span.record("outcome", error_kind(&e));
                    blocked_keys.insert(slot);
                    results[i] = Some(Err(e));
                }
            }
        }

        let mut delivered = 0;
        let mut transient_failures = 0;
        let mut saw_fatal = false;
        for (i, future, span) in pending {
            let outcome = match future.instrument(span.clone()).await {
                Ok(Ok(delivery)) => {
                    delivered += 1;
                    span.record("partition", delivery.partition);
                    span.record("offset", delivery.offset);
                    span.record("outcome", "acked");
                    Ok(Delivery {
                        topic: records[i].topic.clone(),
                        partition: delivery.partition,
                        offset: delivery.offset,
                    })
                }
                Ok(Err((e, _message))) => {
                    saw_fatal |= code_of(&e) == Some(RDKafkaErrorCode::Fatal);
                    let error = classify(&e);
                    if matches!(error, PublishError::Transient(_)) {
                        transient_failures += 1;
                    }
                    Err(error)
                }
                // Only happens if the producer is destroyed with the record
                // still queued, which we prevent by holding the Arc; be safe.
                Err(_canceled) => Err(PublishError::Transient(
                    "producer shut down before the delivery report".into(),
                )),
            };
            if let Err(e) = &outcome {
                span.record("outcome", error_kind(e));
            }
            results[i] = Some(outcome);
        }

        if saw_fatal || producer.client().fatal_error().is_some() {
            self.replace_producer(producer, "fatal error");
        } else if delivered > 0 {
            self.failed_batches.store(0, Ordering::Relaxed);
        } else if transient_failures > 0 {
            let failed = self.failed_batches.fetch_add(1, Ordering::Relaxed) + 1;
            if failed >= REBUILD_AFTER_FAILED_BATCHES {
                self.replace_producer(producer, "no delivery in consecutive batches");
            }
        }
        self.forget_failed_topics(records, &results);

        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.expect("every record gets an outcome"))
            .collect();
        let failed = results.iter().filter(|r| r.is_err()).count();
        debug!(
            records = records.len(),
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "kafka batch produced"
        );
        if failed > 0 {
            let first = results.iter().find_map(|r| r.as_ref().err());
            debug!(failed, first_error = ?first, "kafka batch had failures");
        }
        results
    }

    async fn ready(&self, timeout: Duration) -> bool {
        let producer = self.live_producer();
        // fetch_metadata blocks its thread for up to `timeout`.
        let result = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
        })
        .await;
        match result {
            Ok(Ok(brokers)) => brokers > 0,
            Ok(Err(e)) => {
                debug!(error = %e, "kafka not ready");
                false
            }
            Err(_) => false,
        }
    }

    fn flush(&self, timeout: Duration) {
        let producer = self.current_producer();
        if let Err(e) = producer.flush(timeout) {
            warn!(error = %e, in_flight = producer.in_flight_count(), "kafka flush incomplete");
        }
    }

    fn current_producer(&self) -> Arc<Producer_> {
        Arc::clone(&self.producer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current producer, replaced first if librdkafka has declared it
    /// dead since the last batch: a fatal producer fails every record.
    fn live_producer(&self) -> Arc<Producer_> {
        let producer = self.current_producer();
        if producer.client().fatal_error().is_some() {
            self.replace_producer(producer, "fatal error");
            return self.current_producer();
        }
        producer
    }

    /// Swaps in a fresh producer if `broken` is still the current one (two
    /// batches can notice the same problem; only the first swaps). Takes the
    /// caller's handle so that it, too, is released off the async workers.
    fn replace_producer(&self, broken: Arc<Producer_>, why: &str) {
        let reason = match broken.client().fatal_error() {
            Some((code, reason)) => format!("{why}: {code:?}: {reason}"),
            None => why.to_owned(),
        };
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current, &broken) {
            return;
        }
        match build_producer(&self.cfg) {
            Ok(fresh) => {
                self.failed_batches.store(0, Ordering::Relaxed);
                warn!(%reason, "replaced the kafka producer with a new one");
                let old = std::mem::replace(&mut *current, Arc::new(fresh));
                drop(current);
                // Destroying a producer purges and joins its threads, which
                // can block; keep that off the async workers.
                let release = move || drop((old, broken));
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => drop(rt.spawn_blocking(release)),
                    Err(_) => release(),
                }
            }
            // Keep the broken one; the next batch tries again.
            Err(e) => error!(%reason, error = %e, "kafka producer could not be recreated"),
        }
    }

    /// Enqueues one record, waiting while librdkafka's local queue is full
    /// (back-pressure, not an error) for at most `message_timeout`.
    /// `traceparent`, when given, replaces the record's own: the produce
    /// span is the parent a consumer should continue from.
    async fn enqueue(
        &self,
        producer: &Producer_,
        record: &Record,
        traceparent: Option<&str>,
    ) -> Result<DeliveryFuture, PublishError> {
        if let Err(reason) = validate_topic_name(&record.topic) {
            return Err(PublishError::Permanent(reason));
        }
        let headers = kafka_headers(record, traceparent);
        let mut message = FutureRecord::to(&record.topic)
            .key(record.key.as_bytes())
            .payload(record.payload.as_slice())
            .headers(headers);
        let deadline = Instant::now() + self.cfg.message_timeout;
        loop {
            match producer.send_result(message) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    message = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(classify(&e)),
            }
        }
    }

    /// Drops topics with failed records from the cache, so the next batch
    /// asks the broker again. A topic can vanish under us (deleted by an
    /// operator, or a broker with in-memory storage restarted), and the
    /// producer then only reports timeouts; without this the sink would
    /// retry into a missing topic forever. CreateTopics on an existing topic
    /// is a cheap no-op.
    fn forget_failed_topics(
        &self,
        records: &[Record],
        results: &[Option<Result<Delivery, PublishError>>],
    ) {
        if self.admin.is_none() {
            return;
        }
        let mut known = self.known_topics.lock().unwrap_or_else(|p| p.into_inner());
        for (record, result) in records.iter().zip(results) {
            if matches!(result, Some(Err(_))) {
                known.remove(&record.topic);
            }
        }
    }

    /// Makes sure every topic in `records` exists (when `create_topics` is
    /// on). Returns the topics that could not be created, with why.
    async fn ensure_topics<'r>(&self, records: &'r [Record]) -> HashMap<&'r str, Failure> {
        let mut failures = HashMap::new();
        let Some(admin) = &self.admin else {
            return failures;
        };
        let missing: Vec<&str> = {
            let known = self.known_topics.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = HashSet::new();
            records
                .iter()
                .map(|r| r.topic.as_str())
                .filter(|t| !known.contains(*t) && seen.insert(*t))
                .collect()
        };
        let mut to_create = Vec::with_capacity(missing.len());
        for topic in missing {
            match validate_topic_name(topic) {
                Ok(()) => to_create.push(topic),
                Err(reason) => {
                    failures.insert(topic, Failure::permanent(reason));
                }
            }
        }
        if to_create.is_empty() {
            return failures;
        }

        let new_topics: Vec<NewTopic<'_>> = to_create
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.cfg.topic_partitions,
                    TopicReplication::Fixed(i32::from(self.cfg.replication_factor)),
                )
            })
            .collect();
        // Bounded like a produce, so a dead broker fails the batch in
        // message_timeout rather than librdkafka's 60 s socket timeout.
        let opts = AdminOptions::new()
            .request_timeout(Some(self.cfg.message_timeout))
            .operation_timeout(Some(self.cfg.message_timeout));
        match admin.create_topics(&new_topics, &opts).await {
            Ok(outcomes) => {
                let mut known = self.known_topics.lock().unwrap_or_else(|p| p.into_inner());
                for outcome in outcomes {
                    match outcome {
                        Ok(name) => {
                            info!(topic = %name, "created kafka topic");
                            known.insert(name);
                        }
                        Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                            known.insert(name);
                        }
                        Err((name, code)) => {
                            warn!(topic = %name, error = ?code, "could not create kafka topic");
                            if let Some(topic) = to_create.iter().find(|t| **t == name) {
                                failures.insert(*topic, Failure::from_code(code, "create topic"));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "kafka CreateTopics failed");
                let failure = Failure::from_error(&e, "create topic");
                for topic in to_create {
                    failures.insert(topic, failure.clone());
                }
            }
        }
        failures
    }
}

/// The record's headers as Kafka carries them, `traceparent` replaced.
fn kafka_headers(record: &Record, traceparent: Option<&str>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
    let mut has_traceparent = false;
    for (name, value) in &record.headers {
        let value = match traceparent {
            Some(parent) if name == TRACEPARENT => {
                has_traceparent = true;
                parent
            }
            _ => value.as_str(),
        };
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    match traceparent {
        Some(parent) if !has_traceparent => headers.insert(Header {
            key: TRACEPARENT,
            value: Some(parent.as_bytes()),
        }),
        _ => headers,
    }
}

/// A span for one record, from enqueue to the broker's acknowledgement (or
/// the failure). Its parent is the record's `traceparent` (its row's
/// `dispatch.row` span, in the trace of the request that brought the
/// webhook in); the batch's `publish` span, which serves many traces, is
/// only linked.
fn produce_span(record: &Record) -> Span {
    let trace_id = record.header("trace_id").unwrap_or_default();
    let span = info_span!("kafka.produce", topic = %record.topic, event_id = %record.event_id, trace_id,
        partition = tracing::field::Empty, offset = tracing::field::Empty,
        outcome = tracing::field::Empty);
    if let Some(parent) = record
        .header(TRACEPARENT)
        .and_then(crate::support::telemetry::parse_traceparent)
    {
        let publish = Span::current();
        // Without the OpenTelemetry layer there is no trace to join.
        let _ = span.set_parent(parent);
        span.follows_from(&publish);
    }
    span
}

fn error_kind(e: &PublishError) -> &'static str {
    match e {
        PublishError::Transient(_) => "transient_failure",
        PublishError::Permanent(_) => "permanent_failure",
    }
}

/// A [`PublishError`] that can be handed to several records.
#[derive(Debug, Clone)]
struct Failure {
    permanent: bool,
    message: String,
}

impl Failure {
    fn permanent(message: String) -> Self {
        Failure {
            permanent: true,
            message,
        }
    }

    fn from_code(code: RDKafkaErrorCode, what: &str) -> Self {
        Failure {
            permanent: is_permanent(code),
            message: format!("{what}: {code}"),
        }
    }

    fn from_error(e: &KafkaError, what: &str) -> Self {
        let permanent = code_of(e).is_some_and(is_permanent);
        Failure {
            permanent,
            message: format!("{what}: {e}"),
        }
    }

    fn to_error(&self) -> PublishError {
        if self.permanent {
            PublishError::Permanent(self.message.clone())
        } else {
            PublishError::Transient(self.message.clone())
        }
    }
}

fn code_of(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

/// Errors that resending the same record can never fix. Everything else,
/// including misconfiguration (auth, replication factor), is transient: an
/// operator can fix it and the retry then succeeds, whereas a permanent
/// answer would dead-letter the event.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
    )
}

fn classify(e: &KafkaError) -> PublishError {
    match code_of(e) {
        Some(code) if is_permanent(code) => PublishError::Permanent(e.to_string()),
        _ => PublishError::Transient(e.to_string()),
    }
}

/// Kafka's own topic name rule. Checked locally because brokers differ in
/// how (and whether) they reject bad names, and a bad name is never fixed by
/// retrying.
fn validate_topic_name(topic: &str) -> Result<(), String> {
    let valid_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.is_empty() || topic == "." || topic == ".." || topic.len() > 249 || !valid_chars {
        return Err(format!("invalid topic name {topic:?}"));
    }
    Ok(())
}

fn client_config(cfg: &KafkaConfig, producer: bool) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id);
    if producer {
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                cfg.message_timeout.as_millis().to_string(),
            )
            // Same key → same partition as the Java client computes, so
            // producers in other languages agree with us on placement.
            .set("partitioner", "murmur2_random")
            // librdkafka's default (1,000,000) is below a large webhook
            // passed through: such events would all be dead letters.
            .set("message.max.bytes", cfg.max_record_bytes.to_string());
    }
    for (key, value) in &cfg.extra {
        config.set(key, value);
    }
    config
}

/// The value of a librdkafka property in `extra` (the last one wins, as
/// librdkafka applies them in order); `names` are aliases of one property.
fn property<'c>(cfg: &'c KafkaConfig, names: &[&str]) -> Option<&'c str> {
    cfg.extra
        .iter()
        .rev()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.trim())
}

/// `builtin.features` of the librdkafka linked in: what it was built with.
fn builtin_features() -> Result<String, PublishError> {
    ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map_err(|e| PublishError::Permanent(format!("kafka: reading builtin.features: {e}")))
}

/// Checks at start what librdkafka would otherwise report only as brokers
/// that never connect: a security protocol or SASL mechanism this build of
/// librdkafka lacks (`builtin`, its `builtin.features`). Also warns when
/// the properties cap `message.max.bytes` below the largest record.
fn check_config(cfg: &KafkaConfig, builtin: &str) -> Result<(), String> {
    let has = |feature: &str| builtin.split(',').any(|f| f.trim() == feature);
    let protocol = property(cfg, &["security.protocol"]).map(str::to_ascii_lowercase);
    let (tls, sasl) = match protocol.as_deref() {
        None | Some("plaintext") => (false, false),
        Some("ssl") => (true, false),
        Some("sasl_plaintext") => (false, true),
        Some("sasl_ssl") => (true, true),
        // librdkafka names the valid values when it refuses this one.
        Some(_) => (false, false),
    };
    let protocol = protocol.unwrap_or_default();
    if tls && !has("ssl") {
        return Err(format!(
            "kafka: security.protocol={protocol} needs TLS, and this build of librdkafka \
             has no SSL support (builtin.features: {builtin})"
        ));
    }
    if sasl {
        let mechanism =
            property(cfg, &["sasl.mechanism", "sasl.mechanisms"]).map(str::to_ascii_uppercase);
        let Some(mechanism) = mechanism else {
            if has("sasl_gssapi") {
                return Ok(());
            }
            return Err(format!(
                "kafka: security.protocol={protocol} without sasl.mechanism means GSSAPI \
                 (Kerberos), which this build of librdkafka does not include; set \
                 sasl.mechanism to PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
            ));
        };
        let feature = match mechanism.as_str() {
            "PLAIN" => "sasl_plain",
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => "sasl_scram",
            "OAUTHBEARER" => "sasl_oauthbearer",
            "GSSAPI" => "sasl_gssapi",
            other => {
                return Err(format!(
                    "kafka: unknown sasl.mechanism {other:?}; librdkafka supports PLAIN, \
                     SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER and GSSAPI"
                ));
            }
        };
        if !has(feature) {
            return Err(format!(
                "kafka: sasl.mechanism={mechanism} needs librdkafka's {feature}, which this \
                 build does not include (builtin.features: {builtin})"
            ));
        }
        let oidc = property(cfg, &["sasl.oauthbearer.method"])
            .is_some_and(|m| m.eq_ignore_ascii_case("oidc"));
        if mechanism == "OAUTHBEARER" && oidc && !has("oidc") {
            return Err(format!(
                "kafka: sasl.oauthbearer.method=oidc needs librdkafka's HTTP client (curl), \
                 which this build does not include (builtin.features: {builtin}); fetch \
                 tokens another way or use SCRAM"
            ));
        }
    }
    let capped = property(cfg, &["message.max.bytes"]).and_then(|v| v.parse::<usize>().ok());
    if let Some(capped) = capped.filter(|c| *c < cfg.max_record_bytes) {
        warn!(
            message_max_bytes = capped,
            largest_record = cfg.max_record_bytes,
            "kafka: message.max.bytes is below the largest record the gateway can produce; \
             larger events will be dead letters (publish_rejected)"
        );
    }
    Ok(())
}

fn build_producer(cfg: &KafkaConfig) -> Result<Producer_, PublishError> {
    client_config(cfg, true)
        .create_with_context(SinkContext)
        .map_err(|e| PublishError::Permanent(format!("kafka producer: {e}")))
}

/// Routes librdkafka's logs and errors into `tracing`. Its default context
/// logs every "all brokers down" at error level through the `log` crate,
/// which during a long outage is noise in the wrong place.
#[derive(Clone, Copy)]
struct SinkContext;

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if code_of(&error) == Some(RDKafkaErrorCode::Fatal) {
            error!(target: "librdkafka", %error, reason, "librdkafka fatal error");
        } else {
            // Connection failures repeat for as long as a broker is down and
            // are already reflected in delivery results.
            warn!(target: "librdkafka", %error, reason, "librdkafka error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    fn record(topic: &str, key: &str, n: usize) -> Record {
        Record {
            event_id: uuid::Uuid::now_v7(),
            topic: topic.to_owned(),
            key: key.to_owned(),
            payload: format!("{{\"n\":{n}}}").into_bytes(),
            headers: vec![("n".to_owned(), n.to_string())],
        }
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("ionflux.shopify.ws_1.events_raw").is_ok());
        assert!(validate_topic_name("a-b_C.9").is_ok());
        for bad in ["", ".", "..", "has space", "slash/x", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn classification() {
        let permanent = |c| classify(&KafkaError::MessageProduction(c));
        assert!(matches!(
            permanent(RDKafkaErrorCode::MessageSizeTooLarge),
            PublishError::Permanent(_)
        ));
        assert!(matches!(
            permanent(RDKafkaErrorCode::InvalidTopic),
            PublishError::Permanent(_)
        ));
        for transient in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                matches!(permanent(transient), PublishError::Transient(_)),
                "{transient:?}"
            );
        }
    }

    fn mock_sink<C: ClientContext>(mock: &MockCluster<'_, C>) -> KafkaSink {
        let mut cfg = KafkaConfig::new(mock.bootstrap_servers());
        // The mock cluster has no CreateTopics handler; it auto-creates.
        cfg.create_topics = false;
        cfg.message_timeout = Duration::from_secs(10);
        KafkaSink::new(cfg).unwrap()
    }

    #[tokio::test]
    async fn oversized_record_is_permanent_and_blocks_its_key_only() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 3, 1).unwrap();
        let sink = mock_sink(&mock);
        let mut big = record("t", "a", 0);
        big.payload = vec![b'x'; sink.inner.cfg.max_record_bytes + 1];
        let batch = vec![big, record("t", "a", 1), record("t", "b", 2)];
        let results = sink.send(&batch).await;
        assert!(
            matches!(results[0], Err(PublishError::Permanent(_))),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(results[1], Err(PublishError::Transient(_))),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
    }

    #[tokio::test]
    async fn the_largest_event_fits_the_producer() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 3, 1).unwrap();
        let sink = mock_sink(&mock);
        // A webhook body of the largest size passed through unchanged (over
        // librdkafka's default message.max.bytes of 1,000,000), with headers
        // at the most the envelope bound allows for them.
        let mut big = record("t", "a", 0);
        big.payload = vec![b'x'; crate::api::http::DEFAULT_MAX_BODY_BYTES + 20 * 1024];
        big.headers = (0..8).map(|i| (format!("h{i}"), "v".repeat(512))).collect();
        let results = sink.send(&[big]).await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
    }

    #[test]
    fn largest_record_follows_body_and_output_limits() {
        assert_eq!(largest_record_bytes(5 << 20, 4 << 20), (5 << 20) + 65536);
        assert_eq!(largest_record_bytes(1 << 20, 8 << 20), (8 << 20) + 65536);
        // Never below librdkafka's default, never above its maximum.
        assert_eq!(largest_record_bytes(1000, 1000), 1_000_000);
        assert_eq!(largest_record_bytes(usize::MAX, 0), 1_000_000_000);
    }

    fn with(props: &[(&str, &str)]) -> KafkaConfig {
        let mut cfg = KafkaConfig::new("b:9092");
        cfg.extra = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cfg
    }

    #[test]
    fn security_settings_are_checked_against_builtin_features() {
        // What librdkafka 2.12 reports when built with OpenSSL, and without.
        let tls = "gzip,snappy,ssl,sasl,regex,lz4,sasl_plain,sasl_scram,plugins,sasl_oauthbearer";
        let plain = "gzip,snappy,sasl,regex,lz4,sasl_plain,plugins";
        let ok = |props: &[(&str, &str)], builtin| check_config(&with(props), builtin);

        assert!(ok(&[], plain).is_ok());
        assert!(ok(&[("security.protocol", "PLAINTEXT")], plain).is_ok());
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "scram-sha-512", "OAUTHBEARER"] {
            let props = [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", mechanism),
            ];
            assert!(ok(&props, tls).is_ok(), "{mechanism}");
        }
        assert!(ok(&[("security.protocol", "ssl")], tls).is_ok());
        // The plural spelling is an alias; the last setting wins.
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.mechanisms", "PLAIN"),
        ];
        assert!(ok(&props, tls).is_ok());

        let err = ok(&[("security.protocol", "SSL")], plain).unwrap_err();
        assert!(err.contains("no SSL support"), "{err}");
        let props = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
        ];
        let err = ok(&props, plain).unwrap_err();
        assert!(err.contains("sasl_scram"), "{err}");
        // librdkafka's default mechanism is GSSAPI, which needs Cyrus SASL.
        let err = ok(&[("security.protocol", "SASL_SSL")], tls).unwrap_err();
        assert!(err.contains("without sasl.mechanism means GSSAPI"), "{err}");
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "GSSAPI"),
        ];
        assert!(ok(&props, tls).unwrap_err().contains("sasl_gssapi"));
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-1"),
        ];
        assert!(
            ok(&props, tls)
                .unwrap_err()
                .contains("unknown sasl.mechanism")
        );
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
        ];
        assert!(ok(&props, tls).unwrap_err().contains("oidc"));
    }

    #[test]
    fn this_build_has_tls_and_sasl() {
        let builtin = builtin_features().unwrap();
        for feature in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(
                builtin.split(',').any(|f| f == feature),
                "{feature} missing from {builtin}"
            );
        }
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ];
        // The producer and admin client are made without contacting the
        // (nonexistent) broker.
        assert!(KafkaSink::new(with(&props)).is_ok());
        let err = KafkaSink::new(with(&[("security.protocol", "SASL_SSL")]))
            .err()
            .expect("GSSAPI is refused at start");
        assert!(err.to_string().contains("GSSAPI"), "{err}");
    }

    #[tokio::test]
    async fn fatal_producer_is_replaced() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 3, 1).unwrap();
        let sink = mock_sink(&mock);
        assert!(sink.send(&[record("t", "k", 0)]).await[0].is_ok());

        let before = sink.inner.current_producer();
        let reason = std::ffi::CString::new("test-induced").unwrap();
        // SAFETY: the pointer is a live producer handle held by `before`.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                before.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        assert!(before.client().fatal_error().is_some());

        // The next batch notices the dead producer before producing, and
        // goes through a fresh one.
        let results = sink.send(&[record("t", "k", 1)]).await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(!Arc::ptr_eq(&before, &sink.inner.current_producer()));
    }
}
