//! What verifying one webhook costs on each platform beyond Shopify, on a
//! published sample: the HMAC schemes (one secret, and two for a rotation
//! window), Standard Webhooks' Ed25519 `v1a` entries under `whpk_` keys, a
//! configurable source that reads its settings per request, and Wix's RS256
//! check with its parsed key cached and without.

mod common;

use std::hint::black_box;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use ionflux_gateway::pipeline::provider::{Incoming, Keys, Provider};
use ionflux_gateway::providers::verify::presets;
use ionflux_gateway::providers::{
    hmac as configured, standard_webhooks, tiktok_shop, wix, woocommerce,
};
use serde_json::{Value, json};
use sha2::Sha256;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/providers/",
            $path
        ))
    };
}

const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD: &[u8] = b"whsec_b2xkIHNlY3JldCBvZiB0aGlzIGFwcA==";
const NOW: i64 = 1_700_000_000;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

/// Verifies `req` with the current secret, then with the old one first.
fn bench(
    c: &mut Criterion,
    name: &str,
    provider: &dyn Provider,
    req: Incoming<'_>,
    settings: &Value,
) {
    bench_keys(c, name, provider, req, settings, SECRET, OLD);
}

/// [`bench`] with other keys than the HMAC secrets.
fn bench_keys(
    c: &mut Criterion,
    name: &str,
    provider: &dyn Provider,
    req: Incoming<'_>,
    settings: &Value,
    current: &[u8],
    old: &[u8],
) {
    let mut group = c.benchmark_group("providers");
    group.throughput(Throughput::Bytes(req.body.len() as u64));
    for (label, secrets) in [
        ("verify", &[current][..]),
        ("verify_rotation_window", &[old, current]),
    ] {
        let keys = Keys { secrets, settings };
        assert_eq!(provider.verify(&req, &keys), Ok(()), "{name}");
        group.bench_function(format!("{label}/{name}"), |b| {
            b.iter(|| provider.verify(black_box(&req), black_box(&keys)))
        });
    }
    group.finish();
}

fn providers(c: &mut Criterion) {
    let body = fixture!("woocommerce/order.created/1.json").as_bytes();
    let sig = presets::woocommerce().sign(SECRET, "", "", body).unwrap();
    let h = headers(&[
        ("x-wc-webhook-signature", &sig),
        ("x-wc-webhook-topic", "order.created"),
    ]);
    let req = Incoming {
        headers: &h,
        body,
        now: NOW,
    };
    bench(
        c,
        "woocommerce",
        &woocommerce::WooCommerce,
        req,
        &Value::Null,
    );

    let body = fixture!("tiktok-shop/ORDER_STATUS_CHANGE/2.json").as_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(b"app_key");
    mac.update(body);
    let sig = hex::encode(mac.finalize().into_bytes());
    let h = headers(&[("authorization", &sig)]);
    let req = Incoming {
        headers: &h,
        body,
        now: NOW,
    };
    bench(
        c,
        "tiktok_shop",
        &tiktok_shop::TikTokShop,
        req,
        &json!({"app_key": "app_key"}),
    );

    let body = fixture!("standard-webhooks/contact.created/1.json").as_bytes();
    let ts = NOW.to_string();
    let sig = ionflux_gateway::providers::standard_webhooks::spec("webhook")
        .sign(SECRET, "msg_1", &ts, body)
        .unwrap();
    let h = headers(&[
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &sig),
    ]);
    let req = Incoming {
        headers: &h,
        body,
        now: NOW,
    };
    bench(
        c,
        "standard_webhooks",
        &standard_webhooks::StandardWebhooks,
        req,
        &Value::Null,
    );

    // The same sample as a `v1a` (Ed25519) entry under a `whpk_` key: a
    // public-key verification where the entry above is one HMAC.
    let body = fixture!("standard-webhooks/contact.created/1.json").as_bytes();
    let signer = standard_webhooks::Signer::from_seed(b"ionflux-bench-ed25519-seed-00001");
    let old = standard_webhooks::Signer::from_seed(b"ionflux-bench-ed25519-seed-00000");
    let entry = signer.entry("msg_1", &ts, body);
    let h = headers(&[
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &entry),
    ]);
    let req = Incoming {
        headers: &h,
        body,
        now: NOW,
    };
    bench_keys(
        c,
        "standard_webhooks_v1a",
        &standard_webhooks::StandardWebhooks,
        req,
        &Value::Null,
        signer.public_key().as_bytes(),
        old.public_key().as_bytes(),
    );

    let body = fixture!("github/push/1.json").as_bytes();
    let sig = presets::github().sign(SECRET, "", "", body).unwrap();
    let h = headers(&[("x-hub-signature-256", &sig), ("x-github-event", "push")]);
    let req = Incoming {
        headers: &h,
        body,
        now: NOW,
    };
    bench(
        c,
        "hmac_github_preset",
        &configured::ConfiguredHmac,
        req,
        &json!({"preset": "github"}),
    );

    // Wix: the published vector and key, at the token's issue time.
    let vector: Value = serde_json::from_str(fixture!("vectors/wix.json")).unwrap();
    let body = vector[0]["body"].as_str().unwrap().as_bytes();
    let pem = vector[0]["public_key_pem"].as_str().unwrap().as_bytes();
    let h = HeaderMap::new();
    let req = Incoming {
        headers: &h,
        body,
        now: 1_640_788_554,
    };
    let settings = Value::Null;
    let secrets = [pem];
    let keys = Keys {
        secrets: &secrets,
        settings: &settings,
    };
    let cached = wix::Wix::new();
    assert_eq!(cached.verify(&req, &keys), Ok(()));
    let mut group = c.benchmark_group("providers");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("verify/wix_cached_key", |b| {
        b.iter(|| cached.verify(black_box(&req), black_box(&keys)))
    });
    group.bench_function("verify/wix_uncached_key", |b| {
        b.iter(|| wix::Wix::new().verify(black_box(&req), black_box(&keys)))
    });
    group.bench_function("describe/wix", |b| {
        b.iter(|| cached.describe(black_box(&req), black_box(&keys)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = providers
}
criterion_main!(benches);
