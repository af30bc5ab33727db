use super::presets;
use super::*;
use crate::providers::testing::{fixture, flipped, header_map, request, vectors};

fn check_vectors(spec: &HmacSpec, json: &str, now: impl Fn(&BTreeMapLike) -> i64) -> usize {
    let mut checked = 0;
    for (i, v) in vectors(json).iter().enumerate() {
        let (Some(secret), Some(true) | None) = (&v.secret, v.verified) else {
            continue;
        };
        let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = request(&headers, v.body.as_bytes(), now(&v.headers));
        let got = spec.verify(&req, &[secret.as_bytes()]);
        if v.expect_valid {
            assert_eq!(got, Ok(()), "vector #{i} should verify");
        } else {
            assert_eq!(got, Err(Rejected::Signature), "vector #{i} should fail");
        }
        checked += 1;
    }
    checked
}

type BTreeMapLike = std::collections::BTreeMap<String, String>;

fn timestamp_of(headers: &BTreeMapLike, name: &str) -> i64 {
    headers[name].parse().unwrap()
}

#[test]
fn github_vectors() {
    let n = check_vectors(&presets::github(), fixture!("vectors/github.json"), |_| 0);
    assert_eq!(n, 4);
}

#[test]
fn standard_webhooks_vectors() {
    let spec = crate::providers::standard_webhooks::spec("webhook");
    let n = check_vectors(&spec, fixture!("vectors/standard-webhooks.json"), |h| {
        timestamp_of(h, "webhook-timestamp")
    });
    assert_eq!(n, 7);
}

#[test]
fn woocommerce_vectors() {
    let n = check_vectors(
        &presets::woocommerce(),
        fixture!("vectors/woocommerce.json"),
        |_| 0,
    );
    assert_eq!(
        n, 3,
        "the two vectors with an unknown secret are shape only"
    );
}

#[test]
fn stripe_vector_and_its_tolerance_both_ways() {
    let spec = presets::stripe();
    let v = &vectors(fixture!("vectors/stripe.json"))[0];
    let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let secret = v.secret.as_deref().unwrap().as_bytes();
    let t = 1_492_774_577;
    for now in [t, t - 300, t + 300] {
        let req = request(&headers, v.body.as_bytes(), now);
        assert_eq!(spec.verify(&req, &[secret]), Ok(()), "now = t{:+}", now - t);
    }
    for now in [t - 301, t + 301] {
        let req = request(&headers, v.body.as_bytes(), now);
        assert_eq!(spec.verify(&req, &[secret]), Err(Rejected::Stale));
    }
    // The key is the whole `whsec_…` string: decoding it, as Standard
    // Webhooks does, must not verify.
    let decoded = HmacSpec {
        key: KeyEncoding::Whsec,
        ..spec.clone()
    };
    let req = request(&headers, v.body.as_bytes(), t);
    assert_eq!(decoded.verify(&req, &[secret]), Err(Rejected::Signature));
    // sign reproduces the vector's header.
    assert_eq!(
        spec.sign(secret, "", "1492774577", v.body.as_bytes())
            .as_deref(),
        Some(v.headers["Stripe-Signature"].as_str())
    );
}

#[test]
fn stale_and_future_standard_webhooks_are_refused_after_the_mac() {
    let spec = crate::providers::standard_webhooks::spec("webhook");
    let v = &vectors(fixture!("vectors/standard-webhooks.json"))[0];
    let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let secret = v.secret.as_deref().unwrap().as_bytes();
    let ts = 1_614_265_330;
    for now in [ts - 301, ts + 301, 0, i64::MAX, i64::MIN] {
        let req = request(&headers, v.body.as_bytes(), now);
        assert_eq!(spec.verify(&req, &[secret]), Err(Rejected::Stale));
    }
    // A forged one is a signature failure whatever the clock says.
    let forged = flipped(v.body.as_bytes(), 3);
    let req = request(&headers, &forged, ts + 10_000);
    assert_eq!(spec.verify(&req, &[secret]), Err(Rejected::Signature));
}

#[test]
fn rotation_and_every_algorithm_and_key_encoding() {
    let body = br#"{"hello":"world"}"#;
    for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
        for (key, secret) in [
            (KeyEncoding::Raw, &b"raw secret"[..]),
            (KeyEncoding::Base64, b"c2VjcmV0IGtleQ=="),
            (KeyEncoding::Base64, b"c2VjcmV0IGtleQ"),
            (KeyEncoding::Whsec, b"whsec_c2VjcmV0IGtleQ=="),
        ] {
            for encoding in [Encoding::Hex, Encoding::Base64] {
                let spec = HmacSpec {
                    algorithm,
                    key,
                    encoding,
                    header: "x-sig".into(),
                    ..presets::github()
                };
                let sig = spec.sign(secret, "", "", body).unwrap();
                let headers = header_map([("X-Sig", sig.as_str())]);
                let req = request(&headers, body, 0);
                for secrets in [&[secret, b"old"][..], &[b"new", secret], &[secret]] {
                    assert_eq!(spec.verify(&req, secrets), Ok(()), "{algorithm:?} {key:?}");
                }
                assert_eq!(spec.verify(&req, &[b"wrong"]), Err(Rejected::Signature));
                assert_eq!(spec.verify(&req, &[]), Err(Rejected::Signature));
                let forged = flipped(body, 5);
                let req = request(&headers, &forged, 0);
                assert_eq!(spec.verify(&req, &[secret]), Err(Rejected::Signature));
            }
        }
    }
}

#[test]
fn malformed_headers_are_refused_with_the_right_variant() {
    let spec = crate::providers::standard_webhooks::spec("webhook");
    let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = b"{}";
    let sig = spec.sign(secret, "msg_1", "100", body).unwrap();
    let cases: Vec<(Vec<(&str, &str)>, Rejected)> = vec![
        (vec![], Rejected::Signature),
        (
            vec![("webhook-id", "msg_1"), ("webhook-timestamp", "100")],
            Rejected::Signature,
        ),
        (
            vec![("webhook-signature", &sig), ("webhook-timestamp", "100")],
            Rejected::Malformed("the `webhook-id` header is missing".into()),
        ),
        (
            vec![("webhook-signature", &sig), ("webhook-id", "msg_1")],
            Rejected::Malformed("the `webhook-timestamp` header is missing".into()),
        ),
        (
            vec![
                ("webhook-signature", "v1,not base64!"),
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "100"),
            ],
            Rejected::Signature,
        ),
        (
            vec![
                ("webhook-signature", "v2,abc v1a,abc"),
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "100"),
            ],
            Rejected::Signature,
        ),
    ];
    for (headers, want) in cases {
        let map = header_map(headers.clone());
        assert_eq!(
            spec.verify(&request(&map, body, 100), &[secret]),
            Err(want),
            "{headers:?}"
        );
    }
    // A timestamp that is not a number, under a valid MAC (the text is
    // what is signed), is malformed rather than stale.
    let sig = spec.sign(secret, "msg_1", "soon", body).unwrap();
    let map = header_map([
        ("webhook-signature", sig.as_str()),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "soon"),
    ]);
    assert!(matches!(
        spec.verify(&request(&map, body, 100), &[secret]),
        Err(Rejected::Malformed(_))
    ));
    // A secret that is not base64 matches nothing, and does not panic.
    let map = header_map([
        ("webhook-signature", sig.as_str()),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "100"),
    ]);
    assert_eq!(
        spec.verify(&request(&map, body, 100), &[b"whsec_%%%"]),
        Err(Rejected::Signature)
    );
}

#[test]
fn a_timestamp_in_the_body() {
    let spec = HmacSpec {
        header: "x-sig".into(),
        timestamp: Some(Timestamp::Field {
            pointer: "/ts".into(),
            tolerance_secs: 60,
        }),
        ..presets::github()
    };
    let body = br#"{"ts":1000}"#;
    let sig = spec.sign(b"k", "", "", body).unwrap();
    let map = header_map([("x-sig", sig.as_str())]);
    assert_eq!(spec.verify(&request(&map, body, 1000), &[b"k"]), Ok(()));
    assert_eq!(
        spec.verify(&request(&map, body, 1061), &[b"k"]),
        Err(Rejected::Stale)
    );
    let map = header_map([("x-sig", "sha256=00")]);
    assert!(matches!(
        spec.verify(&request(&map, b"not json", 1000), &[b"k"]),
        Err(Rejected::Malformed(_))
    ));
}

#[test]
fn specs_are_data_and_mistakes_are_refused() {
    for spec in [
        presets::github(),
        presets::stripe(),
        crate::providers::standard_webhooks::spec("svix"),
        presets::shopify(),
        presets::woocommerce(),
    ] {
        spec.check().unwrap();
        let scheme = Scheme::Hmac(spec);
        let json = serde_json::to_value(&scheme).unwrap();
        assert_eq!(serde_json::from_value::<Scheme>(json).unwrap(), scheme);
    }
    let stripe: Scheme = serde_json::from_value(serde_json::json!({
        "type": "hmac",
        "header": "Stripe-Signature",
        "signed": "{timestamp}.{body}",
        "signatures": {"split": "pairs", "separator": ",", "key": "v1"},
        "timestamp": {"from": "pair", "key": "t", "tolerance_secs": 300}
    }))
    .unwrap();
    assert_eq!(
        stripe,
        Scheme::Hmac(HmacSpec {
            header: "Stripe-Signature".into(),
            ..presets::stripe()
        })
    );
    for bad in [
        serde_json::json!({"type": "hmac", "header": "x", "prefx": "sha256="}),
        serde_json::json!({"type": "hmac", "header": "x", "algorithm": "md5"}),
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{timestamp}"}),
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{body}{body}"}),
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{nonce}.{body}"}),
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{body"}),
        serde_json::json!({"type": "hmac", "header": "x", "timestamp": {"from": "header", "name": "t"}}),
        serde_json::json!({"type": "hmac", "header": "x", "timestamp": {"from": "header", "name": "t", "tolerance_secs": 1, "x": 1}}),
        serde_json::json!({"type": "rsa", "header": "x"}),
    ] {
        assert!(
            serde_json::from_value::<Scheme>(bad.clone()).is_err(),
            "{bad}"
        );
    }
    for bad in [
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{id}.{body}"}),
        serde_json::json!({"type": "hmac", "header": "x", "signed": "{timestamp}.{body}"}),
        serde_json::json!({"type": "hmac", "header": "x", "timestamp": {"from": "pair", "key": "t", "tolerance_secs": 1}}),
        serde_json::json!({"type": "hmac", "header": " "}),
        serde_json::json!({"type": "hmac", "header": "x", "signatures": {"split": "separator", "separator": ""}}),
    ] {
        let scheme: Scheme = serde_json::from_value(bad.clone()).unwrap();
        assert!(scheme.check().is_err(), "{bad}");
    }
}

#[test]
fn signed_digest_is_stable_and_covers_the_signed_bytes() {
    let spec = presets::github();
    let map = header_map([]);
    let a = spec.signed_digest(&request(&map, b"body", 1));
    assert_eq!(a, spec.signed_digest(&request(&map, b"body", 99)));
    assert_ne!(a, spec.signed_digest(&request(&map, b"bodY", 1)));
    assert_eq!(a.len(), 64);
}
