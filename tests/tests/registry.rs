//! Transform operations: validated uploads, routing precedence, and replay
//! of dead letters after the transform is fixed.

use ionflux_gateway::pipeline::registry::{self, RegistryError, RouteSpec};
use ionflux_gateway::pipeline::transform::{LoadError, Runtime, RuntimeConfig};
use ionflux_tests::{Gateway, Hook, Options, broken_wasm, hostile_wasm};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn uploads_are_validated_with_clear_errors() {
    let gw = Gateway::start(Options::default()).await;
    let rt = runtime();
    let store = gw.store();

    let err = registry::push(store, &rt, "junk", b"not wasm at all".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Load(LoadError::NotAComponent(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a WebAssembly component"),
        "{err}"
    );

    // A valid component that implements some other world (here: nothing).
    let err = registry::push(store, &rt, "empty", b"\0asm\x0d\0\x01\0".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Load(LoadError::WrongWorld(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("ionflux:transform"), "{err}");

    let err = registry::push(store, &rt, "broken", broken_wasm())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Smoke(_)), "{err:?}");
    assert!(err.to_string().contains("broken on purpose"), "{err}");

    let err = registry::push(store, &rt, "bad name!", hostile_wasm())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidName(_)), "{err:?}");
    assert!(
        store.transforms().await.unwrap().is_empty(),
        "nothing invalid was stored"
    );

    let pushed = registry::push(store, &rt, "hostile", hostile_wasm())
        .await
        .unwrap();
    assert_eq!(pushed.digest.len(), 64);
    let again = registry::push(store, &rt, "hostile", hostile_wasm())
        .await
        .unwrap();
    assert_eq!(
        again.digest, pushed.digest,
        "versions are named by their bytes"
    );
    assert_eq!(store.transforms().await.unwrap().len(), 1);

    // Routes must name something that exists and carry a JSON object.
    let spec = |transform: &str, config: Option<&str>| RouteSpec {
        topic_pattern: "orders/*".into(),
        transform: transform.into(),
        config: config.map(str::to_string),
        provider: "shopify".into(),
        ..RouteSpec::default()
    };
    for (t, c) in [
        ("builtin:nope", None),
        ("deadbeefdeadbeef", None),
        ("builtin:redact-pii", Some("[1,2]")),
    ] {
        assert!(
            registry::set_route(store, &spec(t, c), "test")
                .await
                .is_err(),
            "{t} {c:?}"
        );
    }
    let row = registry::set_route(store, &spec(&pushed.digest[..12], None), "alice")
        .await
        .unwrap();
    assert_eq!(
        row.transform, pushed.digest,
        "a unique prefix resolves to the digest"
    );
    registry::set_route(store, &spec("builtin:shopify-default", None), "bob")
        .await
        .unwrap();
    let history = store.route_history(10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].actor, "bob");
    assert_eq!(
        history[0].old_transform.as_deref(),
        Some(pushed.digest.as_str())
    );
    assert_eq!(
        history[0].new_transform.as_deref(),
        Some("builtin:shopify-default")
    );
    assert_eq!(history[1].old_transform, None);
    gw.stop().await;
}

#[tokio::test]
async fn the_most_specific_route_serves_each_webhook() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("precedence.myshopify.com").await;
    let other = gw.connect("precedence-other.myshopify.com").await;
    let c = &conn.created;
    let set = |workspace: Option<&str>, brand: Option<&str>, topic: &str, t: &str| RouteSpec {
        workspace_id: workspace.map(str::to_string),
        brand_id: brand.map(str::to_string),
        topic_pattern: topic.into(),
        transform: t.into(),
        provider: "shopify".into(),
        ..RouteSpec::default()
    };
    let store = gw.store();
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    for spec in [
        set(None, None, "*", "builtin:redact-pii"),
        set(Some(&c.workspace_id), None, "orders/*", &hostile),
        set(
            Some(&c.workspace_id),
            Some(&c.brand_id),
            "orders/paid",
            "builtin:shopify-default",
        ),
    ] {
        registry::set_route(store, &spec, "test").await.unwrap();
    }
    gw.running.reload_routes().await.unwrap();

    let cases = [
        (&conn, "orders/paid", "shopify-default"), // brand + exact topic
        (&conn, "orders/create", "hostile"),       // workspace + glob
        (&conn, "products/update", "redact-pii"),  // global
        (&other, "orders/create", "redact-pii"),   // another workspace: global
    ];
    for (conn, topic, _) in cases {
        let (status, _) = gw
            .send(&Hook::shopify(conn, topic, "2024-01", br#"{"id":1}"#))
            .await;
        assert_eq!(status, 200);
    }
    gw.settle().await;
    let events = gw.logged_events().await;
    assert_eq!(events.len(), cases.len());
    for (e, (_, topic, transform)) in events.iter().zip(cases) {
        assert_eq!(e["metadata"]["topic"], topic);
        assert_eq!(e["metadata"]["transform"], transform, "{topic}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn dead_letters_replay_after_the_transform_is_fixed() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("replay-shop.myshopify.com").await;
    let hostile = gw.upload("hostile", &hostile_wasm()).await;
    gw.route_brand(&conn, "*", &hostile, "{}").await;
    let bad = Hook::shopify(&conn, "hostile/trap", "2024-01", br#"{"id":7}"#);
    assert_eq!(gw.send(&bad).await.0, 200);
    gw.settle().await;
    let letters = gw.store().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason_code, "trap");

    // Replaying with the broken route in place fails the same way.
    gw.store().replay_dead_letters(None, None).await.unwrap();
    gw.settle().await;
    assert_eq!(gw.store().dead_letters(10).await.unwrap().len(), 1);
    assert!(gw.logged_events().await.is_empty());

    // Fix: route the brand to a transform that handles it, then replay.
    gw.route_brand(&conn, "*", "builtin:shopify-default", "{}")
        .await;
    let replayed = gw
        .store()
        .replay_dead_letters(Some(&[letters[0].id]), None)
        .await
        .unwrap();
    assert_eq!(replayed.replayed, vec![letters[0].id]);
    gw.settle().await;
    assert!(
        gw.store().dead_letters(10).await.unwrap().is_empty(),
        "resolved"
    );
    let events = gw.logged_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["metadata"]["webhook_id"],
        bad.header("x-shopify-webhook-id").unwrap()
    );
    assert_eq!(events[0]["metadata"]["transform"], "shopify-default");
    gw.stop().await;
}

#[tokio::test]
async fn a_shadow_runs_beside_the_primary_and_can_be_promoted() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("shadow-shop.myshopify.com").await;
    let brand = conn.created.brand_id.clone();
    let route = |shadow: Option<&str>| RouteSpec {
        brand_id: Some(brand.clone()),
        topic_pattern: "*".into(),
        transform: "builtin:shopify-default".into(),
        shadow: shadow.map(str::to_string),
        provider: "shopify".into(),
        ..RouteSpec::default()
    };
    registry::set_route(gw.store(), &route(Some("builtin:redact-pii")), "test")
        .await
        .unwrap();
    gw.running.reload_routes().await.unwrap();

    let with_pii = br#"{"id": 1, "email": "jon@example.com"}"#;
    let without_pii = br#"{"id": 2, "title": "Snowboard"}"#;
    for (topic, body) in [
        ("orders/create", &with_pii[..]),
        ("products/update", &without_pii[..]),
    ] {
        assert_eq!(
            gw.send(&Hook::shopify(&conn, topic, "2024-01", body))
                .await
                .0,
            200
        );
    }
    gw.settle().await;

    // Only the primary published; the shadow's differing output was counted
    // and sampled.
    let events = gw.logged_events().await;
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e["metadata"]["transform"] == "shopify-default")
    );
    assert_eq!(events[0]["payload_json"]["email"], "jon@example.com");
    let stats = gw.store().shadow_stats().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].runs, stats[0].differences), (2, 1));
    let samples = gw.store().shadow_samples(10).await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].topic, "orders/create");
    assert!(samples[0].primary_output.contains("jon@example.com"));
    assert!(!samples[0].shadow_output.contains("jon@example.com"));

    let promoted = registry::promote(gw.store(), "shopify", None, Some(&brand), "*", "test")
        .await
        .unwrap();
    assert_eq!(promoted.transform, "builtin:redact-pii");
    assert_eq!(promoted.shadow_transform, None);
    gw.running.reload_routes().await.unwrap();
    assert_eq!(
        gw.send(&Hook::shopify(&conn, "orders/create", "2024-01", with_pii))
            .await
            .0,
        200
    );
    gw.settle().await;
    let events = gw.logged_events().await;
    assert_eq!(events[2]["metadata"]["transform"], "redact-pii");
    assert!(events[2]["payload_json"].get("email").is_none());
    let history = gw.store().route_history(1).await.unwrap();
    assert_eq!(history[0].old_shadow.as_deref(), Some("builtin:redact-pii"));
    assert_eq!(history[0].new_shadow, None);
    gw.stop().await;
}
