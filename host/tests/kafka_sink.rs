//! The Kafka sink against a real broker (tansu, see tests/scripts/tansu.sh).
//!
//! Needs `IONFLUX_TEST_KAFKA_BROKERS`; without it every test says so and
//! passes, so a plain `cargo test` works on machines without a broker. CI
//! runs `tests/scripts/tansu.sh run cargo test …`, which sets it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ionflux_gateway::pipeline::publish::kafka::{KafkaConfig, KafkaSink};
use ionflux_gateway::pipeline::publish::{PublishError, Record};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

fn brokers() -> Option<String> {
    match std::env::var("IONFLUX_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!(
                "IONFLUX_TEST_KAFKA_BROKERS is not set; skipping (run via tests/scripts/tansu.sh run)"
            );
            None
        }
    }
}

fn unique_topic(prefix: &str) -> String {
    format!("ionflux.test.{prefix}.{}", uuid::Uuid::now_v7().simple())
}

fn record(topic: &str, key: &str, seq: usize) -> Record {
    let event_id = uuid::Uuid::now_v7();
    Record {
        event_id,
        topic: topic.to_owned(),
        key: key.to_owned(),
        payload: format!(r#"{{"event_id":"{event_id}","key":"{key}","seq":{seq}}}"#).into_bytes(),
        headers: vec![
            (
                "event_type".to_owned(),
                format!("ionflux.shopify.ws_1.{key}.orders.created"),
            ),
            ("event_id".to_owned(), event_id.to_string()),
            ("seq".to_owned(), seq.to_string()),
        ],
    }
}

fn seq_of(payload: &[u8]) -> usize {
    let text = std::str::from_utf8(payload).unwrap();
    let tail = text.rsplit_once("\"seq\":").unwrap().1;
    tail.trim_end_matches('}').parse().unwrap()
}

#[tokio::test]
async fn batch_round_trips_with_keys_headers_and_per_key_order() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_topic("roundtrip");
    let sink = KafkaSink::new(KafkaConfig::new(&brokers)).unwrap();

    let keys = [
        "brand-1", "brand-2", "brand-3", "brand-4", "brand-5", "brand-6", "brand-7",
    ];
    let records: Vec<Record> = (0..100)
        .map(|i| record(&topic, keys[i % keys.len()], i))
        .collect();
    let results = sink.send(&records).await;
    assert_eq!(results.len(), records.len());

    let mut partition_of_key: HashMap<&str, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    for (record, result) in records.iter().zip(&results) {
        let delivery = result
            .as_ref()
            .unwrap_or_else(|e| panic!("send failed: {e}"));
        assert_eq!(delivery.topic, topic);
        let partition = *partition_of_key
            .entry(&record.key)
            .or_insert(delivery.partition);
        assert_eq!(delivery.partition, partition, "same key, same partition");
        if let Some(prev) = last_offset.insert(partition, delivery.offset) {
            assert!(
                delivery.offset > prev,
                "offsets grow in send order within a partition"
            );
        }
    }

    // A second batch to the now-known topic goes through without CreateTopics.
    let more: Vec<Record> = (100..110)
        .map(|i| record(&topic, keys[i % keys.len()], i))
        .collect();
    assert!(sink.send(&more).await.iter().all(Result::is_ok));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set(
            "group.id",
            format!("ionflux-test-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();

    let expected: HashMap<String, &Record> = records
        .iter()
        .chain(&more)
        .map(|r| (r.event_id.to_string(), r))
        .collect();
    let mut seen_seq_by_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut received = 0;
    while received < expected.len() {
        // A bound so a broken broker fails the test instead of hanging it.
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("timed out waiting for records")
            .unwrap();
        let headers: Vec<(String, String)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let event_id = &headers.iter().find(|(k, _)| k == "event_id").unwrap().1;
        let original = expected[event_id.as_str()];
        assert_eq!(message.key(), Some(original.key.as_bytes()));
        assert_eq!(message.payload(), Some(original.payload.as_slice()));
        assert_eq!(headers, original.headers);
        assert_eq!(message.partition(), partition_of_key[original.key.as_str()]);
        seen_seq_by_key
            .entry(original.key.clone())
            .or_default()
            .push(seq_of(message.payload().unwrap()));
        received += 1;
    }
    for (key, seqs) in &seen_seq_by_key {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {seqs:?}"
        );
    }
    assert_eq!(seen_seq_by_key.values().map(Vec::len).sum::<usize>(), 110);
    sink.flush(Duration::from_secs(5));
}

#[tokio::test]
async fn invalid_topic_is_permanent_and_does_not_block_the_rest() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_topic("mixed");
    let sink = KafkaSink::new(KafkaConfig::new(&brokers)).unwrap();
    let batch = vec![record("not a valid/topic", "k", 0), record(&topic, "k", 1)];
    let results = sink.send(&batch).await;
    assert!(
        matches!(results[0], Err(PublishError::Permanent(_))),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

#[tokio::test]
async fn ready_reflects_the_broker() {
    let Some(brokers) = brokers() else { return };
    let live = KafkaSink::new(KafkaConfig::new(&brokers)).unwrap();
    assert!(live.ready(Duration::from_secs(10)).await);

    // Port 1 on loopback: nothing listens there, so every connect is refused.
    let dead = KafkaSink::new(KafkaConfig::new("127.0.0.1:1")).unwrap();
    assert!(!dead.ready(Duration::from_secs(2)).await);
}

/// A broker of our own on a free port, stopped on drop, so this test can
/// take it down and bring it up without disturbing the shared one.
struct OwnBroker {
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    fn new() -> Self {
        OwnBroker {
            port: free_port_below_ephemeral_range(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, action: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/tansu.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(action)
            .env("TANSU_PORT", self.port.to_string())
            .env("TANSU_DIR", self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "tansu.sh {action} failed");
    }
}

/// A free port outside Linux's ephemeral range (32768+). While the broker is
/// down, librdkafka reconnects to it over and over; were the port ephemeral,
/// the kernel could pick it as a source port and connect the socket to
/// itself, which then looks like a broker squatting on the port.
fn free_port_below_ephemeral_range() -> u16 {
    let seed = std::process::id() as u16 ^ (uuid::Uuid::new_v4().as_u128() as u16);
    (0..1000)
        .map(|i| 20_000 + seed.wrapping_add(i * 7919) % 10_000)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("no free port in 20000..30000")
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.script("stop");
    }
}

#[tokio::test]
async fn dead_broker_gives_transient_errors_then_recovers() {
    if brokers().is_none() {
        return;
    }
    let broker = OwnBroker::new();
    let topic = unique_topic("outage");

    for create_topics in [true, false] {
        let mut cfg = KafkaConfig::new(broker.address());
        cfg.message_timeout = Duration::from_secs(2);
        cfg.create_topics = create_topics;
        let sink = KafkaSink::new(cfg).unwrap();
        let batch: Vec<Record> = (0..5).map(|i| record(&topic, "brand-1", i)).collect();
        for result in sink.send(&batch).await {
            assert!(
                matches!(result, Err(PublishError::Transient(_))),
                "create_topics={create_topics}: {result:?}"
            );
        }
    }

    let mut cfg = KafkaConfig::new(broker.address());
    cfg.message_timeout = Duration::from_secs(2);
    // librdkafka backs off reconnects up to 10 s by default; keep the test
    // short.
    cfg.extra
        .push(("reconnect.backoff.max.ms".into(), "500".into()));
    let sink = KafkaSink::new(cfg).unwrap();
    assert!(
        sink.send(&[record(&topic, "brand-1", 0)]).await[0]
            .as_ref()
            .is_err_and(|e| matches!(e, PublishError::Transient(_)))
    );

    broker.script("start");
    broker.script("wait");

    // The same sink recovers on its own.
    send_until_ok(&sink, &topic).await;

    // Restart with in-memory storage: the topic and the broker's record of
    // our idempotent producer id are gone, yet the same sink must carry on
    // (re-creating the topic) rather than wedge.
    broker.script("stop");
    broker.script("start");
    broker.script("wait");
    send_until_ok(&sink, &topic).await;
}

/// Retries a one-record batch like the dispatcher would, until it succeeds.
async fn send_until_ok(sink: &KafkaSink, topic: &str) {
    let mut last = None;
    for attempt in 0..15 {
        let results = sink.send(&[record(topic, "brand-1", attempt)]).await;
        match results.into_iter().next().unwrap() {
            Ok(delivery) => {
                assert_eq!(delivery.topic, topic);
                return;
            }
            Err(e) => {
                assert!(matches!(e, PublishError::Transient(_)), "{e:?}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    panic!("no send succeeded after the broker came up: {last:?}");
}
