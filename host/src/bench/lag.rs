//! End-to-end lag: from a webhook's send to its PlatformEvent being visible
//! at the sink (the event log table, or a Kafka topic). Each webhook id
//! carries its own send time (micros after the run's base instant), so the
//! collector needs no shared state with the senders: it finds
//! `metadata.webhook_id` in each event and subtracts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::watch;

use super::load::new_histogram;
use crate::store::Store;

/// Where the events of the gateway under test can be read.
pub enum Source {
    /// The embedded event log in this database.
    EventLog(Store),
    /// Kafka topics (one per workspace with the default template).
    Kafka {
        brokers: String,
        topics: Vec<String>,
    },
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::EventLog(_) => "event_log",
            Source::Kafka { .. } => "kafka",
        }
    }
}

/// What a collector saw of the measured webhooks.
pub struct Seen {
    pub lag: Histogram<u64>,
    /// Distinct measured webhooks seen as events.
    pub seen: u64,
    /// When the last of them was seen.
    pub last: Option<Instant>,
    /// Read errors (the sink went away, a poll failed); the collector goes on.
    pub errors: Vec<String>,
}

/// Reads events until `stop` turns true, recording the lag of every event
/// whose webhook id starts with `measured_prefix` (`…-m-`). `base` is the
/// instant the ids' send times count from.
pub async fn collect(
    source: Source,
    measured_prefix: String,
    base: Instant,
    progress: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen {
        lag: new_histogram(),
        seen: 0,
        last: None,
        errors: Vec::new(),
    };
    let mut matcher = Matcher {
        prefix: measured_prefix,
        base,
        ids: HashSet::new(),
    };
    match source {
        Source::EventLog(store) => {
            event_log(&store, &mut matcher, &mut seen, &progress, stop).await
        }
        Source::Kafka { brokers, topics } => {
            kafka(&brokers, &topics, &mut matcher, &mut seen, &progress, stop).await
        }
    }
    seen
}

struct Matcher {
    prefix: String,
    base: Instant,
    /// Slot numbers already counted: Kafka is at-least-once.
    ids: HashSet<u64>,
}

impl Matcher {
    /// Records one event's payload (a PlatformEvent), if it is ours.
    fn observe(&mut self, payload: &str, at: Instant, seen: &mut Seen) {
        let Some((index, sent_us)) = self.parse(payload) else {
            return;
        };
        if !self.ids.insert(index) {
            return;
        }
        let at_us = at.duration_since(self.base).as_micros() as u64;
        seen.lag
            .saturating_record(at_us.saturating_sub(sent_us).max(1));
        seen.seen += 1;
        seen.last = Some(at);
    }

    /// `metadata.webhook_id` found without parsing the envelope: with ~5 KB
    /// payloads a full parse would cost the collector more than the
    /// gateway's own serialisation. The metadata comes after the payload,
    /// so the last occurrence is the envelope's own.
    fn parse(&self, payload: &str) -> Option<(u64, u64)> {
        const KEY: &str = "\"webhook_id\":\"";
        let start = payload.rfind(KEY)? + KEY.len();
        let id = &payload[start..start + payload[start..].find('"')?];
        let rest = id.strip_prefix(self.prefix.as_str())?;
        let (index, sent_us) = rest.split_once('-')?;
        Some((index.parse().ok()?, sent_us.parse().ok()?))
    }
}

/// How often the event log is polled: the resolution of the lag it reports.
const EVENT_LOG_POLL: Duration = Duration::from_millis(10);
/// Events read per query: each carries its whole payload, and with the
/// gateway in-process what the collector holds counts in its RSS.
const EVENT_LOG_PAGE: i64 = 500;

async fn event_log(
    store: &Store,
    matcher: &mut Matcher,
    seen: &mut Seen,
    progress: &watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    // Only what is appended from now on.
    let mut after = match store.events_tail(1).await {
        Ok(tail) => tail.last().map_or(0, |e| e.seq),
        Err(e) => {
            seen.errors.push(format!("reading the event log: {e}"));
            return;
        }
    };
    loop {
        match store.events_after(after, EVENT_LOG_PAGE).await {
            Ok(events) => {
                let now = Instant::now();
                let full = events.len() as i64 == EVENT_LOG_PAGE;
                for e in &events {
                    matcher.observe(&e.payload, now, seen);
                    after = after.max(e.seq);
                }
                progress.send_replace(seen.seen);
                if full {
                    continue;
                }
            }
            Err(e) => {
                if seen.errors.len() < 10 {
                    seen.errors.push(format!("reading the event log: {e}"));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVENT_LOG_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn kafka(
    brokers: &str,
    topics: &[String],
    matcher: &mut Matcher,
    seen: &mut Seen,
    progress: &watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    use rdkafka::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let consumer: StreamConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("ionflux-bench-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            seen.errors.push(format!("kafka consumer: {e}"));
            return;
        }
    };
    // The run's topics are its own (a fresh workspace), so from the
    // beginning is exactly this run. They only exist once the gateway has
    // published to them: wait for their partitions, and assign rather than
    // subscribe, so that no group rebalance delays the first record.
    let mut partitions = rdkafka::TopicPartitionList::new();
    let mut pending: Vec<&String> = topics.iter().collect();
    while !pending.is_empty() {
        let mut left = Vec::new();
        for topic in pending {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(m) => {
                    let ids: Vec<i32> = m
                        .topics()
                        .iter()
                        .filter(|t| t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect();
                    if ids.is_empty() {
                        left.push(topic);
                    }
                    for id in ids {
                        let _ =
                            partitions.add_partition_offset(topic, id, rdkafka::Offset::Beginning);
                    }
                }
                Err(_) => left.push(topic),
            }
        }
        pending = left;
        if !pending.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.wait_for(|s| *s) => {
                    seen.errors.push("the event topics never appeared".into());
                    return;
                }
            }
        }
    }
    if let Err(e) = consumer.assign(&partitions) {
        seen.errors.push(format!("kafka assign: {e}"));
        return;
    }
    loop {
        tokio::select! {
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let now = Instant::now();
                    if let Some(Ok(text)) = m.payload_view::<str>() {
                        matcher.observe(text, now, seen);
                        progress.send_replace(seen.seen);
                    }
                }
                Err(e) => {
                    if seen.errors.len() < 10 {
                        seen.errors.push(format!("kafka: {e}"));
                    }
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_envelope_webhook_id() {
        let m = Matcher {
            prefix: "bench-ab12-m-".into(),
            base: Instant::now(),
            ids: HashSet::new(),
        };
        let event = r#"{"payload_json":{"webhook_id":"bench-ab12-m-1-1"},"metadata":{"webhook_id":"bench-ab12-m-42-123456","inbox_id":1}}"#;
        assert_eq!(m.parse(event), Some((42, 123456)));
        let warmup = r#"{"metadata":{"webhook_id":"bench-ab12-w-42-123456"}}"#;
        assert_eq!(m.parse(warmup), None);
    }
}
