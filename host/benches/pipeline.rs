//! The whole path of a webhook without HTTP, through the library as the
//! gateway runs it on the embedded default: inbox insert (committed) →
//! claim → shopify-default in a fresh wasm instance → PlatformEvent →
//! event-log append → finish, on SQLite in a temporary file.
//!
//! `batch_1` is one webhook at a time, `batch_64` inserts 64 (one
//! transaction each, as 64 requests would) and dispatches them as one claim,
//! as the dispatcher does under load. Throughput is per webhook.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ionflux_gateway::pipeline::builtin;
use ionflux_gateway::pipeline::dispatch::input_of;
use ionflux_gateway::pipeline::event::{self, Topics, TransformId};
use ionflux_gateway::pipeline::publish::Sink;
use ionflux_gateway::pipeline::transform::{Limits, Runtime, RuntimeConfig, Transform};
use ionflux_gateway::store::{Blob, ConnectionRow, Outcome, Store};

struct Path {
    store: Store,
    sink: Sink,
    conn: ConnectionRow,
    transform: Transform,
    topics: Topics,
    limits: Limits,
    sample: common::Sample,
}

const OWNER: &str = "bench-replica";
const LEASE: Duration = Duration::from_secs(30);

impl Path {
    async fn webhooks(&self, n: usize, next_id: &mut u64) {
        for _ in 0..n {
            *next_id += 1;
            let id = format!("bench-{}-{next_id}", std::process::id());
            let headers = common::headers(&self.sample, &id);
            let body = Blob::encode(&self.sample.body);
            self.store
                .insert_webhook(&common::new_webhook(
                    &self.conn,
                    &self.sample,
                    &id,
                    &headers,
                    &body,
                ))
                .await
                .expect("insert");
        }
        let rows = self
            .store
            .claim(OWNER, n as i64, LEASE)
            .await
            .expect("claim");
        assert_eq!(rows.len(), n, "every inserted webhook is claimed");
        let id = TransformId {
            name: self.transform.name(),
            digest: self.transform.digest(),
        };
        let mut records = Vec::with_capacity(n);
        for row in &rows {
            let events = self
                .transform
                .call(&input_of(row), "{}", &self.limits)
                .expect("maps");
            records.extend(
                event::platform_records(row, &self.topics, &id, &events).expect("envelopes"),
            );
        }
        let deliveries = self.sink.send(&records).await;
        let outcomes: Vec<_> = rows
            .iter()
            .zip(deliveries)
            .map(|(row, d)| (row, Outcome::Published(vec![d.expect("appended")])))
            .collect();
        self.store.finish(&outcomes).await.expect("finish");
        self.store.release_leases(OWNER).await.expect("release");
    }
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, conn) = rt.block_on(common::temp_store(dir.path()));
    let runtime = Runtime::new(RuntimeConfig {
        pool_instances: 4,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let transform = runtime
        .load(
            "shopify-default",
            builtin::component("shopify-default").expect("built in"),
        )
        .expect("loads");
    let path = Path {
        sink: Sink::Log(store.clone()),
        store,
        conn,
        transform,
        topics: Topics::default(),
        limits: Limits::default(),
        sample: common::fulfillment(),
    };
    let mut next_id = 0u64;
    let mut group = c.benchmark_group(format!("pipeline/sqlite_event_log/{}", path.sample.name));
    group.sample_size(10);
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        path.webhooks(batch, &mut next_id).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = pipeline
}
criterion_main!(benches);
