use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::providers::testing::{fixture, header_map, keys, request, vectors};
use crate::providers::verify::ENVELOPE_ERROR_HEADER;

const TEST_KEY: &str = fixture!("wix/test-key.pem");
const TEST_PUB: &[u8] = fixture!("wix/test-key.pub.pem").as_bytes();

fn claims_of(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `claims` signed as Wix signs, with the test key.
fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test".into());
    let key = EncodingKey::from_rsa_pem(TEST_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn published_key() -> String {
    vectors(fixture!("vectors/wix.json"))[0]
        .public_key_pem
        .clone()
        .unwrap()
}

#[test]
fn the_vector_verifies_with_the_published_key() {
    let p = Wix::new();
    let v = &vectors(fixture!("vectors/wix.json"))[0];
    let pem = v.public_key_pem.as_deref().unwrap().as_bytes();
    let headers = header_map([]);
    let iat = 1_640_788_554;
    let exp = 1_644_388_554;
    for now in [iat, exp, exp + LEEWAY_SECS, iat - LEEWAY_SECS] {
        let req = request(&headers, v.body.as_bytes(), now);
        assert_eq!(
            p.verify(&req, &keys(&[pem], &Value::Null)),
            Ok(()),
            "now {now}"
        );
    }
    // Past `exp`, or signed in the future: stale.
    for now in [
        exp + LEEWAY_SECS + 1,
        iat - LEEWAY_SECS - 1,
        i64::MAX,
        i64::MIN,
    ] {
        let req = request(&headers, v.body.as_bytes(), now);
        assert_eq!(
            p.verify(&req, &keys(&[pem], &Value::Null)),
            Err(Rejected::Stale),
            "now {now}"
        );
    }
    // The sample file is the same delivery.
    assert_eq!(fixture!("wix/AppInstalled/1.jwt").trim(), v.body);
}

#[test]
fn the_three_levels_decode_into_one_object() {
    let p = Wix::new();
    let body = fixture!("wix/AppInstalled/1.jwt").as_bytes();
    let d = p
        .describe(&request(&header_map([]), body, 0), &keys(&[], &Value::Null))
        .unwrap();
    assert_eq!(d.topic, "AppInstalled");
    assert_eq!(
        d.account.as_deref(),
        Some("3bbcabc7-ebb7-4fc8-8829-13ea0e142123")
    );
    assert_eq!(d.delivery_id, sha256_hex(&[body.trim_ascii()]));
    let stored: Value = serde_json::from_slice(d.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        stored,
        json!({
            "eventType": "AppInstalled",
            "instanceId": "3bbcabc7-ebb7-4fc8-8829-13ea0e142123",
            "data": {
                "appId": "5bc2062d-010b-448c-a62a-d6bb269c5a4c",
                "originInstanceId": "07864c16-3a6f-4dd2-9973-028705762b2c"
            }
        })
    );
}

#[test]
fn every_sample_signed_with_a_test_key() {
    let p = Wix::new();
    let published = published_key();
    for (sample, topic, delivery, account) in [
        (
            fixture!("wix/AppInstalled/1.jwt"),
            "AppInstalled",
            None,
            "3bbcabc7-ebb7-4fc8-8829-13ea0e142123",
        ),
        (
            fixture!("wix/AppInstalled/2.jwt"),
            "AppInstalled",
            Some("wId_1754753183650_-1582422945__tyVHu"),
            "5ef50f11-aebf-46d0-ab6e-59a516d914d3",
        ),
        (
            fixture!("wix/wix.crm.inbox.v2.message_message_sent_to_business/1.jwt"),
            "wix.crm.inbox.v2.message_message_sent_to_business",
            Some("95c2f87d-ae78-4df9-aa21-95189231d6f7"),
            "7151a04d-addc-46bb-a56d-59c9162b56c6",
        ),
    ] {
        let claims = claims_of(sample);
        let token = sign(&claims);
        let now = claims["iat"].as_i64().unwrap();
        let headers = header_map([]);
        let req = request(&headers, token.as_bytes(), now);
        // Rotation: the app's old key beside the current one.
        let secrets = [published.as_bytes(), TEST_PUB];
        let k = keys(&secrets, &Value::Null);
        assert_eq!(p.verify(&req, &k), Ok(()), "{topic}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, topic);
        assert_eq!(d.account.as_deref(), Some(account));
        match delivery {
            Some(id) => assert_eq!(d.delivery_id, id),
            None => assert_eq!(d.delivery_id.len(), 64),
        }
        let stored: Value = serde_json::from_slice(d.body.as_deref().unwrap()).unwrap();
        assert!(stored["data"].is_object(), "{topic}: inner data decoded");
        assert!(!p.lifecycle_topic(&d.topic));
    }
    // The pretty-printed event reads like any other.
    let token = sign(&claims_of(fixture!(
        "wix/wix.crm.inbox.v2.message_message_sent_to_business/1.jwt"
    )));
    let d = p
        .describe(
            &request(&header_map([]), token.as_bytes(), 0),
            &keys(&[], &Value::Null),
        )
        .unwrap();
    assert_eq!(
        d.occurred_at.as_deref(),
        Some("2021-12-29T09:54:27.272823Z")
    );
    assert_eq!(
        d.event_id.as_deref(),
        Some("95c2f87d-ae78-4df9-aa21-95189231d6f7")
    );
    let stored: Value = serde_json::from_slice(d.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        stored["data"]["actionEvent"]["body"]["message"]["direction"],
        "PARTICIPANT_TO_BUSINESS"
    );
    let token = sign(&claims_of(fixture!("wix/AppInstalled/2.jwt")));
    let d = p
        .describe(
            &request(&header_map([]), token.as_bytes(), 0),
            &keys(&[], &Value::Null),
        )
        .unwrap();
    let stored: Value = serde_json::from_slice(d.body.as_deref().unwrap()).unwrap();
    assert_eq!(stored["identity"]["identityType"], "WIX_USER");
}

#[test]
fn app_removed_is_a_lifecycle_topic() {
    let p = Wix::new();
    let claims = json!({
        "data": json!({
            "eventType": "AppRemoved",
            "instanceId": "5ef50f11-aebf-46d0-ab6e-59a516d914d3",
            "data": json!({"appId": "efa507f6-bf43-4e7e-a023-34e9a7f719b9"}).to_string(),
        }).to_string(),
        "iat": 100,
        "exp": 200,
    });
    let token = sign(&claims);
    let headers = header_map([]);
    let req = request(&headers, token.as_bytes(), 150);
    let k = keys(&[TEST_PUB], &Value::Null);
    assert_eq!(p.verify(&req, &k), Ok(()));
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, "AppRemoved");
    assert!(p.lifecycle_topic(&d.topic));
    assert!(p.accepts(crate::pipeline::provider::Standing::Gone, &d.topic));
}

#[test]
fn forged_and_malformed_are_refused() {
    let p = Wix::new();
    let v = &vectors(fixture!("vectors/wix.json"))[0];
    let pem = v.public_key_pem.as_deref().unwrap().as_bytes();
    let now = 1_640_788_554;
    let headers = header_map([]);
    let secrets = [pem];
    let k = keys(&secrets, &Value::Null);
    // One character changed in each segment.
    let token = v.body.as_bytes();
    let dots: Vec<usize> = (0..token.len()).filter(|&i| token[i] == b'.').collect();
    for at in [5, dots[0] + 5, dots[1] + 5, token.len() - 3] {
        let mut forged = token.to_vec();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            p.verify(&request(&headers, &forged, now), &k),
            Err(Rejected::Signature),
            "changed at {at}"
        );
    }
    // Signed by another key.
    let other = sign(&claims_of(&v.body));
    assert_eq!(
        p.verify(&request(&headers, other.as_bytes(), now), &k),
        Err(Rejected::Signature)
    );
    assert_eq!(
        p.verify(
            &request(&headers, other.as_bytes(), now),
            &keys(&[], &Value::Null)
        ),
        Err(Rejected::Signature)
    );
    // The public key used as an HMAC secret (the classic alg confusion).
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims_of(&v.body),
        &EncodingKey::from_secret(pem),
    )
    .unwrap();
    assert_eq!(
        p.verify(&request(&headers, hs.as_bytes(), now), &k),
        Err(Rejected::Signature)
    );
    for body in [&b""[..], b"not a jwt", b"a.b.c", b"\xff\xfe", b"a.b.c.d"] {
        assert_eq!(
            p.verify(&request(&headers, body, now), &k),
            Err(Rejected::Signature)
        );
        let d = p.describe(&request(&headers, body, now), &k).unwrap();
        assert_eq!(d.topic, INVALID_ENVELOPE);
        assert_eq!(d.headers[0].0, ENVELOPE_ERROR_HEADER);
    }
    // A key that is no PEM matches nothing.
    let token = v.body.as_bytes();
    assert_eq!(
        p.verify(
            &request(&headers, token, now),
            &keys(&[b"not a key"], &Value::Null)
        ),
        Err(Rejected::Signature)
    );
    // Genuine, but without `exp`.
    let token = sign(&json!({"data": "{}", "iat": 1}));
    assert!(matches!(
        p.verify(
            &request(&headers, token.as_bytes(), 1),
            &keys(&[TEST_PUB], &Value::Null)
        ),
        Err(Rejected::Malformed(_))
    ));
    // Genuine, but the claims hold no envelope: stored for a dead letter.
    for claims in [
        json!({"data": "not json", "exp": 9}),
        json!({"exp": 9}),
        json!({"data": "[1]", "exp": 9}),
    ] {
        let token = sign(&claims);
        let d = p
            .describe(
                &request(&headers, token.as_bytes(), 1),
                &keys(&[], &Value::Null),
            )
            .unwrap();
        assert_eq!(d.topic, INVALID_ENVELOPE, "{claims}");
    }
}

#[test]
fn the_parsed_key_is_cached_by_its_pem() {
    let p = Wix::new();
    let a = p.key(TEST_PUB).unwrap();
    let b = p.key(TEST_PUB).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let published = published_key();
    let c = p.key(published.as_bytes()).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(
        p.key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .is_none()
    );
    assert_eq!(p.keys.lock().unwrap().len(), 2);
}
