//! Is this request genuine? The HMAC check every webhook pays before it is
//! stored, on a ~5 KB body; with two secrets it is the rotation window.

mod common;

use criterion::{Throughput, criterion_group, criterion_main};
use ionflux_gateway::providers::shopify::headers as webhook;
use std::hint::black_box;

fn hmac(c: &mut criterion::Criterion) {
    let sample = common::fulfillment();
    let secret = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let signature = webhook::sign(secret, &sample.body);
    let mut group = c.benchmark_group("hmac");
    group.throughput(Throughput::Bytes(sample.body.len() as u64));
    group.bench_function(format!("verify/{}", sample.name), |b| {
        b.iter(|| {
            assert!(webhook::verify(
                [black_box(secret.as_slice())],
                black_box(&sample.body),
                black_box(&signature),
            ))
        })
    });
    group.bench_function(format!("verify_rotation_window/{}", sample.name), |b| {
        let old = b"the previous secret of this app".as_slice();
        b.iter(|| {
            assert!(webhook::verify(
                [black_box(secret.as_slice()), black_box(old)],
                black_box(&sample.body),
                black_box(&signature),
            ))
        })
    });
    group.bench_function(format!("sign/{}", sample.name), |b| {
        b.iter(|| webhook::sign(black_box(secret), black_box(&sample.body)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = hmac
}
criterion_main!(benches);
