//! The PlatformEvent envelope: `event::platform_records` for one transform
//! output, with the body passed through (`Unchanged`, what shopify-default
//! emits) and with a new JSON payload (what redact-pii emits).

mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ionflux_gateway::pipeline::event::{self, Topics, TransformId};
use ionflux_gateway::pipeline::transform::{Event, Payload};

fn platform_records(c: &mut Criterion) {
    let topics = Topics::default();
    let id = TransformId {
        name: "shopify-default",
        digest: "5d41402abc4b2a76b9719d911017c592ae2f8f9f0c6e4e4d8b9e2f1a3c7d9e0b",
    };
    for sample in [common::fulfillment(), common::order()] {
        let row = common::row(&sample);
        let mut group = c.benchmark_group(format!("platform_records/{}", sample.name));
        group.throughput(Throughput::Bytes(row.body.len() as u64));
        let unchanged = vec![Event {
            kind: "orders.created".into(),
            schema_version: "v1.shopify.2024-07".into(),
            payload: Payload::Unchanged,
        }];
        group.bench_function("unchanged", |b| {
            b.iter(|| {
                event::platform_records(black_box(&row), &topics, &id, black_box(&unchanged))
                    .expect("envelopes")
            })
        });
        let json = vec![Event {
            kind: "orders.created".into(),
            schema_version: "v1.shopify.2024-07".into(),
            payload: Payload::Json(row.body.clone()),
        }];
        group.bench_function("json", |b| {
            b.iter(|| {
                event::platform_records(black_box(&row), &topics, &id, black_box(&json))
                    .expect("envelopes")
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = platform_records
}
criterion_main!(benches);
