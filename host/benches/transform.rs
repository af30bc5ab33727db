//! What event does it become? The built-in transforms through wasmtime,
//! with a fresh instance per call as the dispatcher runs them
//! (`Runtime::load` of the embedded component, then `Transform::call`),
//! against the same mapping compiled natively from the guest crates.
//!
//! The native side:
//! - `native/shopify-default`: the crate's exported `transform`.
//! - `native/redact-pii`: the crate's exported `transform`. Off wasm the
//!   SDK's test host prints each guest log line to stderr and keeps it in a
//!   thread-local list (cleared here every call), so this one pays for a
//!   `debug!` line the wasm side hands to a rate-limited host log.
//! - `native_nolog/redact-pii`: the same steps (default rules, parse,
//!   redact, serialise, `shopify::event`) without that log line: the fair
//!   "native mapping" to set the wasm call against.
//!
//! Both sides build the webhook from the same borrowed row: the wasm call
//! copies the body into guest memory, the native one into a `Webhook`.

mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ionflux_gateway::pipeline::builtin;
use ionflux_gateway::pipeline::dispatch::input_of;
use ionflux_gateway::pipeline::transform::{Limits, Runtime, RuntimeConfig, Transform};
use ionflux_gateway::store::InboxRow;
use ionflux_guest::{Event, Webhook, shopify, testing};

fn load(runtime: &Runtime, name: &str) -> Transform {
    let bytes = builtin::component(name).expect("a built-in transform");
    runtime.load(name, bytes).expect("the built-in loads")
}

/// The guest-side view of the row: the SDK's test webhook (six
/// `x-shopify-*` headers, as the row has) with the row's topic, version and
/// body. `Webhook` can only be built through the SDK off wasm.
fn guest_webhook(row: &InboxRow) -> Webhook {
    testing::webhook(&row.topic, row.body.clone()).with_api_version(row.api_version.as_deref())
}

/// redact-pii's transform for a route without config, minus its log line.
fn redact_nolog(input: Webhook) -> ionflux_guest::Result<Event> {
    let rules = redact_pii::Rules::new(redact_pii::DEFAULT_FIELDS);
    let mut body = input.json_value()?;
    rules.redact(&mut body);
    let bytes = serde_json::to_vec(&body).map_err(ionflux_guest::Error::failed)?;
    Ok(shopify::event(&input).json_bytes(bytes))
}

fn transforms(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig {
        pool_instances: 4,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let shopify_default = load(&runtime, "shopify-default");
    let redact = load(&runtime, "redact-pii");
    let limits = Limits::default();

    for sample in [common::fulfillment(), common::order()] {
        let row = common::row(&sample);
        let mut group = c.benchmark_group(format!("transform/{}", sample.name));
        group.throughput(Throughput::Bytes(row.body.len() as u64));

        group.bench_function("wasm_fresh_instance/shopify-default", |b| {
            b.iter(|| {
                shopify_default
                    .call(&input_of(black_box(&row)), "{}", &limits)
                    .expect("maps")
            })
        });
        group.bench_function("native/shopify-default", |b| {
            b.iter(|| shopify_default::transform(guest_webhook(black_box(&row))).expect("maps"))
        });

        group.bench_function("wasm_fresh_instance/redact-pii", |b| {
            b.iter(|| {
                redact
                    .call(&input_of(black_box(&row)), "{}", &limits)
                    .expect("redacts")
            })
        });
        group.bench_function("native/redact-pii", |b| {
            b.iter(|| {
                let e = redact_pii::transform(guest_webhook(black_box(&row))).expect("redacts");
                testing::take_logs();
                e
            })
        });
        group.bench_function("native_nolog/redact-pii", |b| {
            b.iter(|| redact_nolog(guest_webhook(black_box(&row))).expect("redacts"))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = transforms
}
criterion_main!(benches);
