//! `Provider::sign_test`: what `webhooks send` signs must verify and
//! describe as the platform's own webhook would, and a changed body must not.

use serde_json::{Value, json};

use crate::pipeline::provider::{Described, Provider, TestDelivery};
use crate::providers::testing::{flipped, header_map, keys, request};
use crate::providers::{
    hmac::ConfiguredHmac, shopify::Shopify, standard_webhooks::StandardWebhooks,
    tiktok_shop::TikTokShop, wix::Wix, woocommerce::WooCommerce,
};

const NOW: i64 = 1_767_000_000;

fn delivery<'a>(
    account: &'a str,
    settings: &'a Value,
    secret: &'a str,
    topic: Option<&'a str>,
    body: &'a [u8],
) -> TestDelivery<'a> {
    TestDelivery {
        account,
        settings,
        secret: secret.as_bytes(),
        topic,
        body,
        delivery_id: "delivery-1",
        api_version: None,
        now: NOW,
    }
}

/// Signs `d`, then checks the request verifies with the secret, not with
/// another, nor with its body changed; returns what it describes.
fn round_trip(p: &dyn Provider, d: &TestDelivery<'_>) -> Described {
    let signed = p.sign_test(d).unwrap_or_else(|e| panic!("{}: {e}", p.id()));
    let headers = header_map(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let secrets: &[&[u8]] = &[d.secret];
    let keys = keys(secrets, d.settings);
    let req = request(&headers, d.body, NOW + 1);
    p.verify(&req, &keys)
        .unwrap_or_else(|e| panic!("{}: {e}", p.id()));
    let other: &[&[u8]] = &[b"another secret"];
    assert!(
        p.verify(&req, &crate::providers::testing::keys(other, d.settings))
            .is_err()
    );
    let changed = flipped(d.body, 3);
    assert!(p.verify(&request(&headers, &changed, NOW), &keys).is_err());
    p.describe(&req, &keys).unwrap()
}

#[test]
fn shopify_woocommerce_and_github_name_the_topic_and_delivery_in_headers() {
    let body = br#"{"id":1}"#;
    let none = Value::Null;
    let d = round_trip(
        &Shopify,
        &delivery("a.myshopify.com", &none, "s", Some("orders/create"), body),
    );
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("orders/create", "delivery-1")
    );
    assert_eq!(d.account.as_deref(), Some("a.myshopify.com"));
    assert_eq!(d.api_version.as_deref(), Some("2026-04"));

    let d = round_trip(
        &WooCommerce,
        &delivery(
            "https://shop.example/",
            &none,
            "s",
            Some("order.created"),
            body,
        ),
    );
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("order.created", "delivery-1")
    );
    assert_eq!(d.account.as_deref(), Some("https://shop.example/"));

    let github = json!({"preset": "github"});
    let d = round_trip(
        &ConfiguredHmac,
        &delivery("acme/app", &github, "s", Some("push"), body),
    );
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("push", "delivery-1")
    );
    for p in [&Shopify as &dyn Provider, &WooCommerce, &ConfiguredHmac] {
        let settings = if p.id() == "hmac" { &github } else { &none };
        let err = p
            .sign_test(&delivery("a", settings, "s", None, body))
            .unwrap_err();
        assert!(err.contains("--topic"), "{}: {err}", p.id());
    }
}

#[test]
fn tiktok_standard_webhooks_and_stripe_read_the_event_from_the_body() {
    let body = br#"{"type":1,"tts_notification_id":"n1","shop_id":"7494","timestamp":1644412885,"data":{}}"#;
    let tiktok = json!({"app_key": "abcdef"});
    let d = round_trip(&TikTokShop, &delivery("7494", &tiktok, "123", None, body));
    assert_eq!(d.topic, "order_status_change");

    let body = br#"{"type":"contact.created","data":{}}"#;
    let none = Value::Null;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let d = round_trip(&StandardWebhooks, &delivery("s", &none, secret, None, body));
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("contact.created", "delivery-1")
    );

    let stripe = json!({"preset": "stripe"});
    let body = br#"{"id":"evt_1","type":"invoice.paid","created":1767000000}"#;
    let d = round_trip(
        &ConfiguredHmac,
        &delivery("acct", &stripe, "whsec_x", None, body),
    );
    assert_eq!(
        (d.topic.as_str(), d.delivery_id.as_str()),
        ("invoice.paid", "evt_1")
    );
    for (p, settings) in [
        (&TikTokShop as &dyn Provider, &tiktok),
        (&StandardWebhooks, &none),
        (&ConfiguredHmac, &stripe),
    ] {
        let err = p
            .sign_test(&delivery("a", settings, secret, Some("x"), body))
            .unwrap_err();
        assert!(err.contains("drop --topic"), "{}: {err}", p.id());
    }
}

#[test]
fn a_declared_scheme_gets_its_timestamp_id_and_topic_headers() {
    let settings = json!({
        "verify": {"type": "hmac", "header": "X-Sig", "prefix": "t=", "signed": "{id}:{timestamp}:{body}",
                   "id_header": "X-Id", "timestamp": {"from": "header", "name": "X-Time", "tolerance_secs": 60}},
        "topic": {"from": "header", "name": "X-Event"},
        "account": {"from": "header", "name": "X-Account"}
    });
    let d = round_trip(
        &ConfiguredHmac,
        &delivery("store-9", &settings, "k", Some("Order Created"), b"{}"),
    );
    assert_eq!(d.topic, "Order Created");
    assert_eq!(d.account.as_deref(), Some("store-9"));
}

#[test]
fn wix_signs_with_its_own_key_so_nothing_is_signed_for_it() {
    let err = Wix::new()
        .sign_test(&delivery("i", &Value::Null, "pem", None, b"x"))
        .unwrap_err();
    assert!(err.contains("private key") && err.contains("wix"), "{err}");
}
