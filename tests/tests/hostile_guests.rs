//! Hostile guests built by the tests: each sends only its own webhook to the
//! dead letters, with a clear reason, and the next normal webhook is still
//! published. The host never crashes.

use ionflux_tests::{Gateway, Hook, Options, hostile_wasm};

#[tokio::test]
async fn each_hostile_guest_dead_letters_only_its_own_webhook() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("hostile-shop.myshopify.com").await;
    let digest = gw.upload("hostile", &hostile_wasm()).await;
    // A CPU budget well above what the busy guests need on a loaded 2-core
    // debug build, so that each case trips its own limit and not the clock.
    gw.route_brand_with_limits(&conn, "*", &digest, "{}", Some(r#"{"cpu_ms": 1500}"#))
        .await;

    let cases = [
        ("hostile/loop", "timeout"),
        ("hostile/grow", "memory_limit"),
        ("hostile/trap", "trap"),
        ("hostile/huge", "output_too_large"),
        ("hostile/many", "too_many_events"),
        ("hostile/badkind", "invalid_output"),
    ];
    for (topic, code) in cases {
        let hook = Hook::shopify(&conn, topic, "2024-01", br#"{"id":1}"#);
        let (status, _) = gw.send(&hook).await;
        assert_eq!(status, 200, "{topic}");
        let normal = Hook::shopify(&conn, "orders/create", "2024-01", br#"{"id":2}"#);
        assert_eq!(gw.send(&normal).await.0, 200);
        gw.settle().await;

        let letters = gw.store().dead_letters(100).await.unwrap();
        let letter = letters
            .iter()
            .find(|l| l.topic == topic)
            .unwrap_or_else(|| panic!("{topic} was not dead-lettered: {letters:?}"));
        assert_eq!(letter.reason_code, code, "{topic}: {}", letter.reason);
        assert!(!letter.reason.is_empty());
        assert_eq!(letter.transform.as_deref(), Some("hostile"));
        assert_eq!(letter.transform_digest.as_deref(), Some(digest.as_str()));
        let events = gw.logged_events().await;
        let webhook_id = normal.header("x-shopify-webhook-id").unwrap();
        assert!(
            events
                .iter()
                .any(|e| e["metadata"]["webhook_id"] == webhook_id),
            "the normal webhook after {topic} was not published"
        );
    }
    // Only the hostile webhooks were dead-lettered.
    assert_eq!(
        gw.store().dead_letters(100).await.unwrap().len(),
        cases.len()
    );
    gw.stop().await;
}
