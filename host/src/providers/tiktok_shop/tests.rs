use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;
use crate::providers::testing::{
    fixture, flipped, header_map, headers_json, keys, request, vectors,
};
use crate::providers::verify::{ENVELOPE_ERROR_HEADER, INVALID_ENVELOPE};

const SECRET: &[u8] = b"test app secret";

fn sign(app_key: &str, secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(app_key.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn settings() -> Value {
    json!({"app_key": "test_app_key"})
}

#[test]
fn every_vector() {
    let p = TikTokShop;
    for (i, v) in vectors(fixture!("vectors/tiktok-shop.json"))
        .iter()
        .enumerate()
    {
        let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let settings = json!({"app_key": v.app_key});
        let secret = v.secret.as_deref().unwrap().as_bytes();
        let req = request(&headers, v.body.as_bytes(), 0);
        let secrets = [secret];
        let k = keys(&secrets, &settings);
        assert_eq!(p.verify(&req, &k), Ok(()), "vector #{i}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, "order_status_change");
    }
}

#[test]
fn the_published_delivery_describes() {
    let p = TikTokShop;
    let headers = headers_json(fixture!("tiktok-shop/ORDER_STATUS_CHANGE/2.headers.json"));
    let body = fixture!("tiktok-shop/ORDER_STATUS_CHANGE/2.json").trim_end();
    let settings = json!({"app_key": "abcdef"});
    let k = keys(&[b"old", b"123"], &settings);
    let req = request(&headers, body.as_bytes(), 0);
    assert_eq!(p.verify(&req, &k), Ok(()));
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, "order_status_change");
    assert_eq!(d.delivery_id, "7380066284010030890");
    assert_eq!(d.account.as_deref(), Some("7495540735365777507"));
    assert_eq!(d.occurred_at.as_deref(), Some("2024-06-13T19:06:25Z"));
    assert!(
        d.headers.is_empty(),
        "the Authorization header is the signature"
    );
}

#[test]
fn every_sample_signed_with_a_test_secret() {
    let p = TikTokShop;
    let settings = settings();
    for (body, topic, delivery) in [
        (
            fixture!("tiktok-shop/ORDER_STATUS_CHANGE/1.json"),
            "order_status_change",
            Some("7327112393057371910"),
        ),
        (
            fixture!("tiktok-shop/ORDER_STATUS_CHANGE/2.json"),
            "order_status_change",
            Some("7380066284010030890"),
        ),
        (
            fixture!("tiktok-shop/RECIPIENT_ADDRESS_UPDATE/1.json"),
            "recipient_address_update",
            None,
        ),
        (
            fixture!("tiktok-shop/PRODUCT_STATUS_CHANGE/1.json"),
            "product_status_change",
            Some("7327112393057371910"),
        ),
        (
            fixture!("tiktok-shop/UPCOMING_AUTHORIZATION_EXPIRATION/1.json"),
            "upcoming_authorization_expiration",
            Some("7327112393057371910"),
        ),
        (
            fixture!("tiktok-shop/CANCELLATION_STATUS_CHANGE/1.json"),
            "cancellation_status_change",
            Some("7327112393057371910"),
        ),
        (
            fixture!("tiktok-shop/PRODUCT_INFORMATION_CHANGE/1.json"),
            "product_information_change",
            Some("7327112393057371910"),
        ),
        (
            fixture!("tiktok-shop/PRODUCT_CREATION/1.json"),
            "product_creation",
            Some("7327112393057371910"),
        ),
    ] {
        let sig = sign("test_app_key", SECRET, body.as_bytes());
        let headers = header_map([("Authorization", sig.as_str())]);
        let req = request(&headers, body.as_bytes(), 0);
        let k = keys(&[SECRET], &settings);
        assert_eq!(p.verify(&req, &k), Ok(()), "{topic}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, topic);
        assert!(d.account.is_some());
        match delivery {
            Some(id) => assert_eq!(d.delivery_id, id),
            // No notification id: a digest of the signed bytes, the same on
            // every retry.
            None => {
                assert_eq!(d.delivery_id.len(), 64);
                assert_eq!(d.delivery_id, p.describe(&req, &k).unwrap().delivery_id);
            }
        }
    }
}

#[test]
fn the_unparsable_sample_is_stored_for_a_dead_letter_not_refused() {
    let p = TikTokShop;
    let settings = settings();
    let body = fixture!("tiktok-shop/RETURN_STATUS_CHANGE/1.json").as_bytes();
    assert!(
        serde_json::from_slice::<Value>(body).is_err(),
        "as TikTok publishes it"
    );
    let sig = sign("test_app_key", SECRET, body);
    let headers = header_map([("Authorization", sig.as_str())]);
    let req = request(&headers, body, 0);
    let k = keys(&[SECRET], &settings);
    assert_eq!(p.verify(&req, &k), Ok(()));
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, INVALID_ENVELOPE);
    assert_eq!(d.delivery_id, sha256_hex(&[b"test_app_key", body]));
    assert_eq!(d.headers.len(), 1);
    assert_eq!(d.headers[0].0, ENVELOPE_ERROR_HEADER);
    assert!(d.headers[0].1.contains("not JSON"), "{}", d.headers[0].1);
    assert!(!p.lifecycle_topic(&d.topic));
    // The same for JSON that is no envelope.
    for body in [
        &b"[1,2]"[..],
        b"{\"type\":\"1\"}",
        b"{\"data\":{}}",
        b"{\"type\":-1}",
    ] {
        let d = p.describe(&request(&headers, body, 0), &k).unwrap();
        assert_eq!(d.topic, INVALID_ENVELOPE, "{body:?}");
    }
}

#[test]
fn topics_and_lifecycle() {
    let p = TikTokShop;
    assert_eq!(topic(6), "seller_deauthorization");
    assert_eq!(topic(99), "type_99");
    assert!(p.lifecycle_topic(&topic(6)));
    assert!(!p.lifecycle_topic(&topic(1)));
    use crate::pipeline::provider::Standing;
    assert!(p.accepts(Standing::Gone, "seller_deauthorization"));
    assert!(!p.accepts(Standing::Gone, "order_status_change"));
    let body = br#"{"type":6,"tts_notification_id":"1","shop_id":"7494049642642441621","timestamp":1644412885,"data":{}}"#;
    let settings = settings();
    let d = p
        .describe(&request(&header_map([]), body, 0), &keys(&[], &settings))
        .unwrap();
    assert_eq!(d.topic, "seller_deauthorization");
}

#[test]
fn forged_and_malformed_are_refused() {
    let p = TikTokShop;
    let settings = settings();
    let body = fixture!("tiktok-shop/ORDER_STATUS_CHANGE/2.json").as_bytes();
    let sig = sign("test_app_key", SECRET, body);
    let headers = header_map([("Authorization", sig.as_str())]);
    let k = keys(&[SECRET], &settings);
    for at in [0, 40, body.len() - 1] {
        assert_eq!(
            p.verify(&request(&headers, &flipped(body, at), 0), &k),
            Err(Rejected::Signature)
        );
    }
    assert_eq!(
        p.verify(&request(&headers, body, 0), &keys(&[b"wrong"], &settings)),
        Err(Rejected::Signature)
    );
    // Another app's key is another MAC.
    let other = json!({"app_key": "other_app"});
    assert_eq!(
        p.verify(&request(&headers, body, 0), &keys(&[SECRET], &other)),
        Err(Rejected::Signature)
    );
    // The uppercase spelling of the same MAC is still the MAC.
    let upper = header_map([("Authorization", sig.to_uppercase().as_str())]);
    assert_eq!(p.verify(&request(&upper, body, 0), &k), Ok(()));
    for bad in ["", "Bearer abc", "zz", &sig[..62]] {
        let h = header_map([("Authorization", bad)]);
        assert_eq!(
            p.verify(&request(&h, body, 0), &k),
            Err(Rejected::Signature),
            "{bad}"
        );
    }
    assert_eq!(
        p.verify(&request(&header_map([]), body, 0), &k),
        Err(Rejected::Signature)
    );
    for settings in [
        Value::Null,
        json!({}),
        json!({"app_key": ""}),
        json!({"app_key": 5}),
    ] {
        assert!(matches!(
            p.verify(&request(&headers, body, 0), &keys(&[SECRET], &settings)),
            Err(Rejected::Malformed(_))
        ));
    }
}
