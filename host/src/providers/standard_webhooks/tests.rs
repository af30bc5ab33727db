use serde_json::Value;

use super::*;
use crate::providers::testing::{
    fixture, flipped, header_map, headers_json, keys, request, vectors,
};

const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;

fn signed(prefix: &str, id: &str, body: &[u8], ts: i64) -> axum::http::HeaderMap {
    let ts = ts.to_string();
    let sig = spec(prefix)
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
    let v1 = spec("webhook")
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

/// A request signed at `NOW` verifies up to five minutes either side of it
/// and is `Stale` a second further.
fn five_minutes_either_way(headers: &axum::http::HeaderMap, body: &[u8], k: &Keys<'_>) {
    let p = StandardWebhooks;
    for now in [NOW - 301, NOW + 301] {
        assert_eq!(
            p.verify(&request(headers, body, now), k),
            Err(Rejected::Stale)
        );
    }
    for now in [NOW - 300, NOW + 300] {
        assert_eq!(p.verify(&request(headers, body, now), k), Ok(()));
    }
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
    five_minutes_either_way(&headers, body, &k);
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

// ---- v1a: Ed25519 entries and whpk_ keys ----------------------------------------

/// A fixed seed, so every signature below is the same on every run.
const SEED: [u8; 32] = *b"ionflux-test-ed25519-seed-000001";
const OTHER_SEED: [u8; 32] = *b"ionflux-test-ed25519-seed-000002";

fn signer() -> Signer {
    Signer::from_seed(&SEED)
}

/// Standard Webhooks headers under `prefix` with `signature` as given.
fn with_signature(prefix: &str, id: &str, ts: i64, signature: &str) -> axum::http::HeaderMap {
    let ts = ts.to_string();
    header_map([
        (format!("{prefix}-id").as_str(), id),
        (format!("{prefix}-timestamp").as_str(), ts.as_str()),
        (format!("{prefix}-signature").as_str(), signature),
    ])
}

#[test]
fn the_published_ed25519_vector_verifies() {
    // standard-webhooks/standard-webhooks, libraries/go/webhook_asymmetric_test.go
    // (TestAsymmetricWebhookSign, commit 5fb2ce93): the seed is the base64
    // `VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=`. The library publishes
    // no public key; this one is the seed's, derived here and, apart, by
    // Python's `cryptography`.
    const PUBLIC: &str = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
    const ENTRY: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    let library = Signer::from_seed(b"TESTSIGNINGKEYDONOTUSETHISFORANY");
    assert_eq!(library.public_key(), PUBLIC);
    assert_eq!(library.entry(id, &ts.to_string(), body), ENTRY);

    let p = StandardWebhooks;
    let headers = with_signature("webhook", id, ts, ENTRY);
    let secrets = [PUBLIC.as_bytes()];
    let k = keys(&secrets, &Value::Null);
    assert_eq!(p.verify(&request(&headers, body, ts), &k), Ok(()));
    assert_eq!(
        p.verify(&request(&headers, &flipped(body, 3), ts), &k),
        Err(Rejected::Signature)
    );
    // The library's own "invalid signature" and "partial signature" cases.
    for bad in ["v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v1a,"] {
        let headers = with_signature("webhook", id, ts, bad);
        assert_eq!(
            p.verify(&request(&headers, body, ts), &k),
            Err(Rejected::Signature),
            "{bad}"
        );
    }
}

#[test]
fn every_sample_signed_with_a_test_key_pair() {
    let p = StandardWebhooks;
    let public = signer().public_key();
    let other = Signer::from_seed(&OTHER_SEED).public_key();
    for prefix in ["webhook", "svix"] {
        for body in [
            fixture!("standard-webhooks/contact.created/1.json"),
            fixture!("standard-webhooks/contact.created/3.json"),
            fixture!("standard-webhooks/example.event/1.json"),
            fixture!("standard-webhooks/ping/1.json"),
        ] {
            let body = body.as_bytes();
            let entry = signer().entry("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", &NOW.to_string(), body);
            let headers = with_signature(prefix, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW, &entry);
            let req = request(&headers, body, NOW + 1);
            // Alone, after a rotated-out key, and beside a `whsec_` secret.
            for secrets in [
                &[public.as_bytes()][..],
                &[other.as_bytes(), public.as_bytes()],
                &[SECRET, public.as_bytes()],
                &[public.as_bytes(), SECRET],
            ] {
                let k = keys(secrets, &Value::Null);
                assert_eq!(p.verify(&req, &k), Ok(()), "{prefix}-*");
                let d = p.describe(&req, &k).unwrap();
                assert_eq!(d.delivery_id, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
                assert!(d.headers.iter().all(|(n, _)| !n.ends_with("-signature")));
            }
        }
    }
}

#[test]
fn each_kind_of_entry_verifies_with_its_own_kind_of_key() {
    let p = StandardWebhooks;
    let body = fixture!("standard-webhooks/contact.created/1.json").as_bytes();
    let ts = NOW.to_string();
    let public = signer().public_key();
    let v1 = spec("webhook")
        .signature(SECRET, "msg_1", &ts, body)
        .unwrap();
    let v1a = signer().entry("msg_1", &ts, body);
    let wrong_v1 = spec("webhook")
        .signature(b"whsec_b2xkIHNlY3JldA==", "msg_1", &ts, body)
        .unwrap();
    let wrong_v1a = Signer::from_seed(&OTHER_SEED).entry("msg_1", &ts, body);
    let both: [&[u8]; 2] = [SECRET, public.as_bytes()];
    type Case<'a> = (String, &'a [&'a [u8]], Result<(), Rejected>);
    let cases: [Case<'_>; 9] = [
        // A genuine entry of either kind wins beside a wrong one of the other.
        (format!("{wrong_v1} {v1a}"), &both, Ok(())),
        (format!("{v1a} {wrong_v1}"), &both, Ok(())),
        (format!("{wrong_v1a} {v1}"), &both, Ok(())),
        (format!("{wrong_v1} {v1a}"), &[public.as_bytes()], Ok(())),
        // A key of one kind never verifies the other kind of entry.
        (v1a.clone(), &[SECRET], Err(Rejected::Signature)),
        (v1.clone(), &[public.as_bytes()], Err(Rejected::Signature)),
        // Unknown versions are ignored, even carrying a good signature.
        (
            format!("v2,{} {wrong_v1}", &v1a[4..]),
            &both,
            Err(Rejected::Signature),
        ),
        (
            format!("v1b,{} v1,", &v1a[4..]),
            &both,
            Err(Rejected::Signature),
        ),
        (format!("v2,x {v1a} v9"), &both, Ok(())),
    ];
    for (signature, secrets, want) in cases {
        let headers = with_signature("webhook", "msg_1", NOW, &signature);
        let got = p.verify(&request(&headers, body, NOW), &keys(secrets, &Value::Null));
        assert_eq!(got, want, "{signature}");
    }
}

#[test]
fn v1a_forged_wrong_key_stale_and_future_are_refused() {
    let p = StandardWebhooks;
    let body = fixture!("standard-webhooks/example.event/1.json").as_bytes();
    let entry = signer().entry("msg_1", &NOW.to_string(), body);
    let headers = with_signature("webhook", "msg_1", NOW, &entry);
    let public = signer().public_key();
    let secrets = [public.as_bytes()];
    let k = keys(&secrets, &Value::Null);
    for at in [0, 7, body.len() - 1] {
        assert_eq!(
            p.verify(&request(&headers, &flipped(body, at), NOW), &k),
            Err(Rejected::Signature)
        );
    }
    let other = Signer::from_seed(&OTHER_SEED).public_key();
    assert_eq!(
        p.verify(
            &request(&headers, body, NOW),
            &keys(&[other.as_bytes()], &Value::Null)
        ),
        Err(Rejected::Signature)
    );
    five_minutes_either_way(&headers, body, &k);
    // The id and the timestamp are signed: neither can be replaced.
    let replay = with_signature("webhook", "msg_2", NOW, &entry);
    assert_eq!(
        p.verify(&request(&replay, body, NOW), &k),
        Err(Rejected::Signature)
    );
    let moved = with_signature("webhook", "msg_1", NOW + 60, &entry);
    assert_eq!(
        p.verify(&request(&moved, body, NOW + 60), &k),
        Err(Rejected::Signature)
    );
}

#[test]
fn malformed_v1a_entries_and_whpk_keys_are_refused() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    let p = StandardWebhooks;
    let body = fixture!("standard-webhooks/ping/1.json").as_bytes();
    let ts = NOW.to_string();
    let entry = signer().entry("msg_1", &ts, body);
    let sig = STANDARD.decode(&entry[4..]).unwrap();
    let public = signer().public_key();
    let secrets = [public.as_bytes()];
    let k = keys(&secrets, &Value::Null);
    // S + L (the group order, little-endian) satisfies the same equation:
    // a second spelling of a genuine signature, which must not verify.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut high_s = sig.clone();
    let mut carry = 0u16;
    for (s, l) in high_s[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let entries = [
        "v1a,".to_owned(),
        "v1a".to_owned(),
        "v1a,!!!not base64!!!".to_owned(),
        format!("v1a,{}", STANDARD.encode(&sig[..63])),
        format!("v1a,{}", STANDARD.encode([&sig[..], &[0]].concat())),
        format!("v1a,{}", STANDARD.encode(high_s)),
        format!("v1a,{}", STANDARD.encode([0u8; 64])),
        // Padding is required of signatures, as the libraries' decoders do.
        format!("v1a,{}", STANDARD_NO_PAD.encode(&sig)),
        format!("v1a,{}", &entry[4..entry.len() - 2]),
        format!("V1A,{}", &entry[4..]),
        // At most four `v1a` entries are tried from one header.
        format!("{0} {0} {0} {0} {entry}", "v1a,AAAA"),
    ];
    for signature in &entries {
        let headers = with_signature("webhook", "msg_1", NOW, signature);
        assert_eq!(
            p.verify(&request(&headers, body, NOW), &k),
            Err(Rejected::Signature),
            "{signature}"
        );
    }

    let headers = with_signature("webhook", "msg_1", NOW, &entry);
    let key = STANDARD.decode(&public[5..]).unwrap();
    let keys_that_match_nothing = [
        "whpk_".to_owned(),
        "whpk_!!!".to_owned(),
        format!("whpk_{}", STANDARD.encode(&key[..31])),
        format!("whpk_{}", STANDARD.encode([&key[..], &[0]].concat())),
        format!("whpk_{}", STANDARD.encode([0xffu8; 32])),
        // The bare base64 is read as a `whsec_`-less HMAC secret, and the
        // sender's secret key (which a connection should never be given)
        // as nothing at all.
        public[5..].to_owned(),
        format!("whsk_{}", STANDARD.encode(SEED)),
        format!("whsec_{}", &public[5..]),
    ];
    for secret in &keys_that_match_nothing {
        assert_eq!(
            p.verify(
                &request(&headers, body, NOW),
                &keys(&[secret.as_bytes()], &Value::Null)
            ),
            Err(Rejected::Signature),
            "{secret}"
        );
    }
    // The key is read as `whsec_` secrets are: unpadded base64 and
    // surrounding whitespace are fine.
    for secret in [
        format!("whpk_{}", STANDARD_NO_PAD.encode(&key)),
        format!("  {public}\n"),
    ] {
        assert_eq!(
            p.verify(
                &request(&headers, body, NOW),
                &keys(&[secret.as_bytes()], &Value::Null)
            ),
            Ok(()),
            "{secret}"
        );
    }
    // Missing id or timestamp: the same 400 as for `v1` entries.
    let no_id = header_map([
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", &entry),
    ]);
    assert!(matches!(
        p.verify(&request(&no_id, body, NOW), &k),
        Err(Rejected::Malformed(_))
    ));
    let no_ts = header_map([("webhook-id", "msg_1"), ("webhook-signature", &entry)]);
    assert!(matches!(
        p.verify(&request(&no_ts, body, NOW), &k),
        Err(Rejected::Malformed(_))
    ));
}
