use serde_json::{Value, json};

use super::*;
use crate::providers::testing::{
    fixture, flipped, header_map, headers_json, keys, request, vectors,
};

const SECRET: &[u8] = b"a test secret";

fn github() -> Value {
    json!({"preset": "github"})
}

#[test]
fn every_github_vector_through_the_preset() {
    let p = ConfiguredHmac;
    let settings = github();
    for (i, v) in vectors(fixture!("vectors/github.json")).iter().enumerate() {
        let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let secret = v.secret.as_deref().unwrap().as_bytes();
        let req = request(&headers, v.body.as_bytes(), 0);
        let want = if v.expect_valid {
            Ok(())
        } else {
            Err(Rejected::Signature)
        };
        assert_eq!(
            p.verify(&req, &keys(&[secret], &settings)),
            want,
            "vector #{i}"
        );
    }
}

#[test]
fn the_published_github_delivery_describes() {
    let p = ConfiguredHmac;
    let settings = github();
    let headers = headers_json(fixture!("github/issues/1.headers.json"));
    let body = fixture!("github/issues/1.json").as_bytes();
    let k = keys(&[b"secretsecret"], &settings);
    let req = request(&headers, body, 0);
    assert_eq!(
        p.verify(&req, &k),
        Ok(()),
        "a form-encoded body is signed as sent"
    );
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, "issues");
    assert_eq!(d.delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    // A preset declares no account: the connection is named by whoever made it.
    assert_eq!(d.account, None);
    assert_eq!(
        d.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        [
            "x-github-delivery",
            "x-github-event",
            "x-github-hook-id",
            "x-github-hook-installation-target-id",
            "x-github-hook-installation-target-type"
        ]
    );
}

#[test]
fn every_github_sample_signed_with_a_test_secret() {
    let p = ConfiguredHmac;
    let settings = github();
    let spec = presets::github();
    for (event, body) in [
        ("ping", fixture!("github/ping/1.json")),
        ("push", fixture!("github/push/1.json")),
        ("issues", fixture!("github/issues.opened/1.json")),
    ] {
        let sig = spec.sign(SECRET, "", "", body.as_bytes()).unwrap();
        let headers = header_map([
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", "d6b0a2f0-1c1e-11ef-8000-000000000001"),
            ("X-Hub-Signature-256", sig.as_str()),
            ("Content-Type", "application/json"),
        ]);
        let req = request(&headers, body.as_bytes(), 0);
        let k = keys(&[b"the old one", SECRET], &settings);
        assert_eq!(p.verify(&req, &k), Ok(()), "{event}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, event);
        assert_eq!(d.delivery_id, "d6b0a2f0-1c1e-11ef-8000-000000000001");
        assert!(d.headers.iter().all(|(n, _)| n.starts_with("x-github-")));
        let forged = flipped(body.as_bytes(), 10);
        assert_eq!(
            p.verify(&request(&headers, &forged, 0), &k),
            Err(Rejected::Signature)
        );
    }
}

#[test]
fn stripe_through_the_preset() {
    let p = ConfiguredHmac;
    let settings = json!({"preset": "stripe"});
    let v = &vectors(fixture!("vectors/stripe.json"))[0];
    let headers = header_map(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let secret = v.secret.as_deref().unwrap().as_bytes();
    let t = 1_492_774_577;
    let secrets = [secret];
    let k = keys(&secrets, &settings);
    assert_eq!(
        p.verify(&request(&headers, v.body.as_bytes(), t), &k),
        Ok(())
    );
    for now in [t - 301, t + 301] {
        assert_eq!(
            p.verify(&request(&headers, v.body.as_bytes(), now), &k),
            Err(Rejected::Stale)
        );
    }
    let d = p
        .describe(&request(&headers, v.body.as_bytes(), t), &k)
        .unwrap();
    assert_eq!(d.delivery_id, "evt_test_webhook");
    assert_eq!(d.topic, "webhook", "the SDK's payload has no type");

    let spec = presets::stripe();
    for (body, topic) in [
        (fixture!("stripe/_untyped_test_event/1.json"), "webhook"),
        (
            fixture!("stripe/v1.billing.meter.error_report_triggered/1.json"),
            "v1.billing.meter.error_report_triggered",
        ),
    ] {
        let now = 1_700_000_000;
        let sig = spec
            .sign(SECRET, "", &now.to_string(), body.as_bytes())
            .unwrap();
        // A second v1 (an older secret's) and a v0 beside it.
        let header = format!("{sig},v1=00ff,v0=abcd");
        let headers = header_map([("Stripe-Signature", header.as_str())]);
        let k = keys(&[SECRET], &settings);
        let req = request(&headers, body.as_bytes(), now);
        assert_eq!(p.verify(&req, &k), Ok(()), "{topic}");
        let d = p.describe(&req, &k).unwrap();
        assert_eq!(d.topic, topic);
        assert!(d.delivery_id.starts_with("evt_"), "{}", d.delivery_id);
    }
}

#[test]
fn a_source_declared_from_scratch() {
    let p = ConfiguredHmac;
    let settings = json!({
        "verify": {
            "type": "hmac",
            "header": "X-Signature",
            "signed": "{timestamp}.{body}",
            "algorithm": "sha512",
            "encoding": "base64",
            "timestamp": {"from": "header", "name": "X-Timestamp", "tolerance_secs": 60}
        },
        "topic": {"from": "field", "pointer": "/event/name"},
        "account": {"from": "header", "name": "X-Tenant"},
        "occurred_at": {"from": "field", "pointer": "/at"},
        "headers": ["X-Tenant", "x-timestamp"]
    });
    let Scheme::Hmac(spec) = source(&settings).unwrap().scheme;
    let body = br#"{"event":{"name":"invoice.paid"},"at":"2024-05-01T10:00:00Z"}"#;
    let sig = spec.sign(SECRET, "", "1000", body).unwrap();
    let headers = header_map([
        ("X-Signature", sig.as_str()),
        ("X-Timestamp", "1000"),
        ("X-Tenant", "acme"),
        ("Cookie", "never=forwarded"),
    ]);
    let k = keys(&[SECRET], &settings);
    let req = request(&headers, body, 1030);
    assert_eq!(p.verify(&req, &k), Ok(()));
    assert_eq!(
        p.verify(&request(&headers, body, 1061), &k),
        Err(Rejected::Stale)
    );
    let d = p.describe(&req, &k).unwrap();
    assert_eq!(d.topic, "invoice.paid");
    assert_eq!(d.account.as_deref(), Some("acme"));
    assert_eq!(d.occurred_at.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert_eq!(
        d.headers,
        vec![
            ("x-timestamp".to_owned(), "1000".to_owned()),
            ("x-tenant".to_owned(), "acme".to_owned())
        ]
    );
    // No delivery id configured: the digest of the signed bytes, which is
    // the same for the same request and changes with the timestamp.
    assert_eq!(d.delivery_id, spec.signed_digest(&req));
    let again = header_map([("X-Signature", sig.as_str()), ("X-Timestamp", "1001")]);
    assert_ne!(
        p.describe(&request(&again, body, 1030), &k)
            .unwrap()
            .delivery_id,
        d.delivery_id
    );
}

#[test]
fn a_preset_with_parts_overridden() {
    let settings = json!({"preset": "github", "topic": {"from": "field", "pointer": "/action"}, "headers": []});
    let s = source(&settings).unwrap();
    assert_eq!(s.topic, field_at("/action"));
    assert_eq!(s.delivery, header_at("x-github-delivery"));
    assert!(s.headers.is_empty());
}

#[test]
fn settings_mistakes_are_refused_not_guessed() {
    let p = ConfiguredHmac;
    let body = b"{}";
    let headers = header_map([("X-Hub-Signature-256", "sha256=00")]);
    for settings in [
        Value::Null,
        json!({}),
        json!({"preset": "gitlab"}),
        json!({"preset": "github", "extra": 1}),
        json!({"verify": {"type": "hmac", "header": "x", "signed": "{id}.{body}"}}),
        json!({"preset": "github", "topic": {"from": "query", "name": "x"}}),
        json!("github"),
    ] {
        let got = p.verify(&request(&headers, body, 0), &keys(&[SECRET], &settings));
        assert!(
            matches!(got, Err(Rejected::Malformed(_))),
            "{settings}: {got:?}"
        );
        assert!(matches!(
            p.describe(&request(&headers, body, 0), &keys(&[SECRET], &settings)),
            Err(Rejected::Malformed(_))
        ));
    }
}
