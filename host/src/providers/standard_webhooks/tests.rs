use serde_json::Value;

use super::*;
use crate::providers::testing::{
    fixture, flipped, header_map, headers_json, keys, request, vectors,
};

const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

fn signed(prefix: &str, id: &str, body: &[u8], ts: i64) -> axum::http::HeaderMap {
    let ts = ts.to_string();
    let sig = presets::standard_webhooks(prefix)
        .sign(SECRET, id, &ts, body)
        .unwrap();
    header_map([
        (format!("{prefix}-id").as_str(), id),
        (format!("{prefix}-timestamp").as_str(), ts.as_str()),
        (format!("{prefix}-signature").as_str(), sig.as_str()),
        ("content-type", "application/json"),
    ])
}

#[test]
fn every_official_vector() {
    let p = StandardWebhooks;
    for (i, v) in vectors(fixture!("vectors/standard-webhooks.json"))
        .iter()
        .enumerate()
    {
        let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let now: i64 = v.headers["webhook-timestamp"].parse().unwrap();
        let secret = v.secret.as_deref().unwrap().as_bytes();
        let req = request(&headers, v.body.as_bytes(), now);
        let got = p.verify(&req, &keys(&[secret], &Value::Null));
        let want = if v.expect_valid {
            Ok(())
        } else {
            Err(Rejected::Signature)
        };
        assert_eq!(got, want, "vector #{i}");
        if v.expect_valid {
            let d = p.describe(&req, &keys(&[secret], &Value::Null)).unwrap();
            assert_eq!(d.delivery_id, v.headers["webhook-id"]);
        }
    }
    // OpenAI's vector names its event `type`.
    let v = &vectors(fixture!("vectors/standard-webhooks.json"))[2];
    let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let req = request(&headers, v.body.as_bytes(), 1_750_861_210);
    let d = p.describe(&req, &keys(&[], &Value::Null)).unwrap();
    assert_eq!(d.topic, "response.completed");
    assert_eq!(
        d.event_id.as_deref(),
        Some("evt_685c059ae3a481909bdc86819b066fb6")
    );
    assert_eq!(d.occurred_at.as_deref(), Some("2025-06-25T14:20:10Z"));
}

#[test]
fn the_svix_sample_verifies_with_svix_headers() {
    let p = StandardWebhooks;
    let headers = headers_json(fixture!("standard-webhooks/ping/1.headers.json"));
    let body = fixture!("standard-webhooks/ping/1.json")
        .trim_end()
        .as_bytes();
    let secret = b"whsec_plJ3nmyCDGBKInavdOK15jsl";
    let req = request(&headers, body, 1_731_705_121);
    let secrets: [&[u8]; 1] = [secret];
    let k = keys(&secrets, &Value::Null);
    assert_eq!(p.verify(&req, &k), Ok(()));
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, "ping");
    assert_eq!(d.delivery_id, "msg_loFOjxBNrRLzqYUf");
    assert_eq!(
        d.headers,
        vec![
            ("svix-id".to_owned(), "msg_loFOjxBNrRLzqYUf".to_owned()),
            ("svix-timestamp".to_owned(), "1731705121".to_owned()),
        ]
    );
}

#[test]
fn every_sample_signed_with_a_test_secret() {
    let p = StandardWebhooks;
    let samples = [
        (
            fixture!("standard-webhooks/contact.created/1.json"),
            "contact.created",
        ),
        (
            fixture!("standard-webhooks/contact.created/3.json"),
            "contact.created",
        ),
        (
            fixture!("standard-webhooks/example.event/1.json"),
            "example.event",
        ),
        (fixture!("standard-webhooks/ping/1.json"), "ping"),
    ];
    for prefix in ["webhook", "svix"] {
        for (body, topic) in samples {
            let headers = signed(
                prefix,
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                body.as_bytes(),
                NOW,
            );
            let req = request(&headers, body.as_bytes(), NOW + 1);
            let k = keys(&[b"whsec_b2xkIHNlY3JldA==", SECRET], &Value::Null);
            assert_eq!(p.verify(&req, &k), Ok(()), "{topic} with {prefix}-*");
            let d = p.describe(&req, &k).unwrap();
            assert_eq!(d.topic, topic);
            assert_eq!(d.delivery_id, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
            assert!(d.headers.iter().all(|(n, _)| !n.ends_with("-signature")));
            assert!(d.body.is_none());
            if topic != "ping" {
                assert_eq!(
                    d.occurred_at.as_deref(),
                    Some("2022-11-03T20:26:10.344522Z")
                );
            }
        }
    }
}

#[test]
fn the_sample_with_an_ed25519_entry_verifies_on_its_v1_entry() {
    let p = StandardWebhooks;
    let body = fixture!("standard-webhooks/contact.created/3.json").trim_end();
    let original = headers_json(fixture!("standard-webhooks/contact.created/3.headers.json"));
    let ts = original["webhook-timestamp"].to_str().unwrap();
    let id = original["webhook-id"].to_str().unwrap();
    let v1 = presets::standard_webhooks("webhook")
        .sign(SECRET, id, ts, body.as_bytes())
        .unwrap();
    // The published v1a entry stays beside our v1 one, as a sender signing
    // both ways would send it.
    let v1a = original["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap();
    let both = format!("{v1a} {v1}");
    let headers = header_map([
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", both.as_str()),
    ]);
    let req = request(&headers, body.as_bytes(), ts.parse().unwrap());
    assert_eq!(p.verify(&req, &keys(&[SECRET], &Value::Null)), Ok(()));
}

#[test]
fn forged_stale_and_malformed_are_refused() {
    let p = StandardWebhooks;
    let body = fixture!("standard-webhooks/example.event/1.json").as_bytes();
    let headers = signed("webhook", "msg_1", body, NOW);
    let k = keys(&[SECRET], &Value::Null);
    for at in [0, 7, body.len() - 1] {
        let forged = flipped(body, at);
        assert_eq!(
            p.verify(&request(&headers, &forged, NOW), &k),
            Err(Rejected::Signature)
        );
    }
    assert_eq!(
        p.verify(
            &request(&headers, body, NOW),
            &keys(&[b"whsec_b2xkIHNlY3JldA=="], &Value::Null)
        ),
        Err(Rejected::Signature)
    );
    for now in [NOW - 301, NOW + 301] {
        assert_eq!(
            p.verify(&request(&headers, body, now), &k),
            Err(Rejected::Stale)
        );
    }
    for now in [NOW - 300, NOW + 300] {
        assert_eq!(p.verify(&request(&headers, body, now), &k), Ok(()));
    }
    // A replay under another id is a forgery: the id is signed.
    let mut replay = headers.clone();
    replay.insert("webhook-id", "msg_2".parse().unwrap());
    assert_eq!(
        p.verify(&request(&replay, body, NOW), &k),
        Err(Rejected::Signature)
    );
    let none = header_map([]);
    assert_eq!(
        p.verify(&request(&none, body, NOW), &k),
        Err(Rejected::Signature)
    );
    assert!(matches!(
        p.describe(&request(&none, body, NOW), &k),
        Err(Rejected::Malformed(_))
    ));
    // A body that is not JSON still describes: the topic says so.
    let headers = signed("webhook", "msg_3", b"\xff\xfe", NOW);
    let d = p
        .describe(&request(&headers, b"\xff\xfe", NOW), &k)
        .unwrap();
    assert_eq!(d.topic, "webhook");
    assert_eq!(d.occurred_at.as_deref(), Some("2023-11-14T22:13:20Z"));
}
