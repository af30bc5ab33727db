//! Shopify's published webhook HMAC vectors verify, and any change to the
//! body, the secret or the signature fails.

use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_tests::shared_dir;
use serde_json::Value;

fn vectors() -> Vec<(String, String, String)> {
    let path = shared_dir().join("data/vectors/shopify-hmac.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["webhook"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["secret"].as_str().unwrap().to_string(),
                t["body"].as_str().unwrap().to_string(),
                t["hmac_base64"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn published_vectors_verify() {
    let vectors = vectors();
    assert!(!vectors.is_empty());
    for (secret, body, hmac) in vectors {
        assert_eq!(webhook::sign(secret.as_bytes(), body.as_bytes()), hmac);
        assert!(webhook::verify([secret.as_bytes()], body.as_bytes(), &hmac));
    }
}

#[test]
fn tampering_with_anything_fails() {
    for (secret, body, hmac) in vectors() {
        let mut tampered_body = body.clone().into_bytes();
        tampered_body[0] ^= 1;
        assert!(!webhook::verify([secret.as_bytes()], &tampered_body, &hmac));
        assert!(!webhook::verify(
            [format!("{secret}x").as_bytes()],
            body.as_bytes(),
            &hmac
        ));
        let mut sig = hmac.clone().into_bytes();
        sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
        assert!(!webhook::verify(
            [secret.as_bytes()],
            body.as_bytes(),
            std::str::from_utf8(&sig).unwrap()
        ));
        assert!(!webhook::verify([secret.as_bytes()], body.as_bytes(), ""));
        // the previous secret of a rotation still verifies
        assert!(webhook::verify(
            [b"new-secret".as_slice(), secret.as_bytes()],
            body.as_bytes(),
            &hmac
        ));
    }
}
