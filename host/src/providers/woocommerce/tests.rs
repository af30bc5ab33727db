use axum::http::HeaderMap;
use serde_json::Value;

use super::*;
use crate::providers::testing::{
    fixture, flipped, header_map, headers_json, keys, request, vectors,
};

const SECRET: &[u8] = b"a test secret, with & and \" in it";

fn sign(body: &[u8], secret: &[u8]) -> String {
    presets::woocommerce().sign(secret, "", "", body).unwrap()
}

fn delivery(topic: &str, body: &[u8]) -> HeaderMap {
    let (resource, event) = topic.split_once('.').unwrap();
    let sig = sign(body, SECRET);
    header_map([
        ("User-Agent", "WooCommerce/9.0.0 Hookshot (WordPress/6.5)"),
        ("Content-Type", "application/json"),
        ("X-WC-Webhook-Source", "https://shop.example/"),
        ("X-WC-Webhook-Topic", topic),
        ("X-WC-Webhook-Resource", resource),
        ("X-WC-Webhook-Event", event),
        ("X-WC-Webhook-Signature", sig.as_str()),
        ("X-WC-Webhook-ID", "31"),
        (
            "X-WC-Webhook-Delivery-ID",
            "8f2c1d9a0b7e4c3d2a1f0e9d8c7b6a59",
        ),
    ])
}

#[test]
fn every_verified_vector() {
    let p = WooCommerce;
    let mut checked = 0;
    for (i, v) in vectors(fixture!("vectors/woocommerce.json"))
        .iter()
        .enumerate()
    {
        let Some(secret) = &v.secret else {
            continue;
        };
        let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = request(&headers, v.body.as_bytes(), 0);
        assert_eq!(
            p.verify(&req, &keys(&[secret.as_bytes()], &Value::Null)),
            Ok(()),
            "vector #{i}"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn the_published_deliveries_verify_and_describe_as_sent() {
    let p = WooCommerce;
    for (headers, body, delivery) in [
        (
            fixture!("woocommerce/action.woocommerce_add_to_cart/1.headers.json"),
            fixture!("woocommerce/action.woocommerce_add_to_cart/1.json"),
            "378",
        ),
        (
            fixture!("woocommerce/action.woocommerce_add_to_cart/2.headers.json"),
            fixture!("woocommerce/action.woocommerce_add_to_cart/2.json"),
            "380",
        ),
    ] {
        let headers = headers_json(headers);
        let body = body.trim_end().as_bytes();
        let req = request(&headers, body, 0);
        let k = keys(
            &[b"old secret", b"my-super-secret-private-key"],
            &Value::Null,
        );
        assert_eq!(p.verify(&req, &k), Ok(()));
        assert!(!p.is_ping(&req));
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, "action.woocommerce_add_to_cart");
        assert_eq!(d.delivery_id, delivery);
        assert_eq!(d.account, None, "WooCommerce 2.3 sent no source");
        assert_eq!(
            d.headers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            // In the order received (the fixture loader sorts them).
            [
                "x-wc-webhook-delivery-id",
                "x-wc-webhook-event",
                "x-wc-webhook-id",
                "x-wc-webhook-resource",
                "x-wc-webhook-topic",
            ]
        );
    }
}

#[test]
fn every_sample_signed_with_a_test_secret() {
    let p = WooCommerce;
    for (topic, body) in [
        (
            "order.created",
            fixture!("woocommerce/order.created/1.json"),
        ),
        (
            "order.updated",
            fixture!("woocommerce/order.updated/1.json"),
        ),
        (
            "order.updated",
            fixture!("woocommerce/order.updated/3.json"),
        ),
        (
            "product.created",
            fixture!("woocommerce/product.created/1.json"),
        ),
        (
            "customer.created",
            fixture!("woocommerce/customer.created/1.json"),
        ),
        (
            "action.woocommerce_add_to_cart",
            fixture!("woocommerce/action.woocommerce_add_to_cart/1.json"),
        ),
    ] {
        let headers = delivery(topic, body.as_bytes());
        let req = request(&headers, body.as_bytes(), 0);
        let k = keys(&[SECRET], &Value::Null);
        assert_eq!(p.verify(&req, &k), Ok(()), "{topic}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, topic);
        assert_eq!(d.delivery_id, "8f2c1d9a0b7e4c3d2a1f0e9d8c7b6a59");
        assert_eq!(d.account.as_deref(), Some("https://shop.example/"));
        assert!(d.headers.iter().all(|(n, _)| n != "x-wc-webhook-signature"));
    }
    // The published log of order.updated/1 (its secret unknown) describes
    // from its own headers.
    let published = headers_json(fixture!("woocommerce/order.updated/1.headers.json"));
    let d = p
        .describe(&request(&published, b"{}", 0), &keys(&[], &Value::Null))
        .unwrap();
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("order.updated", "54")
    );
    assert_eq!(d.account.as_deref(), Some("http://example.com/"));
}

#[test]
fn forged_and_malformed_are_refused() {
    let p = WooCommerce;
    let body = fixture!("woocommerce/order.updated/3.json").as_bytes();
    let headers = delivery("order.updated", body);
    let k = keys(&[SECRET], &Value::Null);
    for at in [0, 100, body.len() - 1] {
        assert_eq!(
            p.verify(&request(&headers, &flipped(body, at), 0), &k),
            Err(Rejected::Signature)
        );
    }
    assert_eq!(
        p.verify(
            &request(&headers, body, 0),
            &keys(&[b"another secret"], &Value::Null)
        ),
        Err(Rejected::Signature)
    );
    // The HTML-escaped form of the secret is another key.
    assert_eq!(
        p.verify(
            &request(&headers, body, 0),
            &keys(
                &[b"a test secret, with &amp; and &quot; in it"],
                &Value::Null
            )
        ),
        Err(Rejected::Signature)
    );
    let unsigned = header_map([("X-WC-Webhook-Topic", "order.updated")]);
    assert_eq!(
        p.verify(&request(&unsigned, body, 0), &k),
        Err(Rejected::Signature)
    );
    let garbage = header_map([("X-WC-Webhook-Signature", "not base64 at all")]);
    assert_eq!(
        p.verify(&request(&garbage, body, 0), &k),
        Err(Rejected::Signature)
    );
    // Genuine but without a topic: nothing to route on.
    let sig = sign(body, SECRET);
    let topicless = header_map([("X-WC-Webhook-Signature", sig.as_str())]);
    assert_eq!(p.verify(&request(&topicless, body, 0), &k), Ok(()));
    assert!(matches!(
        p.describe(&request(&topicless, body, 0), &k),
        Err(Rejected::Malformed(_))
    ));
    // Without a delivery id, a digest of the body stands in.
    let no_delivery = header_map([
        ("X-WC-Webhook-Signature", sig.as_str()),
        ("X-WC-Webhook-Topic", "order.updated"),
    ]);
    let d = p.describe(&request(&no_delivery, body, 0), &k).unwrap();
    assert_eq!(d.delivery_id, sha256_hex(&[body]));
}

#[test]
fn the_creation_ping() {
    let p = WooCommerce;
    let form = header_map([
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "WordPress/6.5; https://shop.example"),
    ]);
    assert!(p.is_ping(&request(&form, b"webhook_id=31", 0)));
    assert!(p.is_ping(&request(&header_map([]), b"webhook_id=1", 0)));
    for body in [
        &b"webhook_id="[..],
        b"webhook_id=3a",
        b"webhook_id=1&x=2",
        b"webhook_id=123456789012345678901",
        b"{\"webhook_id\":1}",
        b"",
    ] {
        assert!(!p.is_ping(&request(&form, body, 0)), "{body:?}");
    }
    // Anything carrying WooCommerce's headers is a delivery, to be verified.
    let signed = header_map([("X-WC-Webhook-Topic", "order.created")]);
    assert!(!p.is_ping(&request(&signed, b"webhook_id=31", 0)));
}
