//! Runs the real guest components (built into target/guests) through the
//! runtime. No timing assertions: limits are checked by their outcome.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn guest(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests/wasm32-wasip2/release")
        .join(format!("{file}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the guest component {} ({e}). Build the guests first, from the \
             workspace root:\n  CARGO_TARGET_DIR=target/guests cargo build --release \
             --target wasm32-wasip2 -p shopify-default -p redact-pii -p hostile-guest",
            path.display()
        )
    })
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        pool_instances: 4,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

const ORDER: &[u8] =
    br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.65"}"#;

fn input<'a>(topic: &'a str, body: &'a [u8]) -> Input<'a> {
    Input {
        provider: "shopify",
        topic,
        shop_domain: "example.myshopify.com",
        workspace_id: "w1",
        brand_id: "b1",
        api_version: Some("2024-01"),
        webhook_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        triggered_at: Some("2024-01-01T00:00:00Z"),
        event_id: Some("98880550-7158-44d4-b7cd-2c97c8a091b5"),
        headers: &[],
        body,
    }
}

/// Generous CPU so that a slow debug build or a busy CI box can not turn a
/// behaviour test into a timeout.
fn relaxed() -> Limits {
    Limits {
        cpu: Duration::from_secs(10),
        ..Limits::default()
    }
}

#[test]
fn shopify_default_maps_orders_create() {
    let rt = runtime();
    let t = rt
        .load("shopify-default", &guest("shopify_default"))
        .unwrap();
    assert_eq!(t.name(), "shopify-default");
    assert_eq!(t.digest().len(), 64);
    assert!(
        t.digest()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );

    let events = t
        .call(&input("orders/create", ORDER), "{}", &relaxed())
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "orders.created");
    assert_eq!(events[0].payload, Payload::Unchanged);
    assert!(!events[0].schema_version.is_empty());
}

/// The body is not the guest's to vouch for: a pass-through of a body that
/// is no JSON object comes out as `Unchanged`, and the envelope refuses it
/// (`event::tests::only_a_json_object_is_enveloped`, and end to end
/// `a_non_json_body_with_a_valid_hmac_goes_to_the_dead_letters`).
#[test]
fn a_non_object_body_is_left_to_the_envelope() {
    let rt = runtime();
    let t = rt
        .load("shopify-default", &guest("shopify_default"))
        .unwrap();
    match t.call(&input("orders/create", b"[1,2,3]"), "{}", &relaxed()) {
        Ok(events) => assert!(events.iter().all(|e| e.payload == Payload::Unchanged)),
        Err(TransformError::InvalidInput(_)) => {}
        other => panic!("expected a pass-through or invalid input, got {other:?}"),
    }
}

/// Each hostile behaviour fails that call only; the same `Transform` then
/// serves a normal webhook.
#[test]
fn hostile_guest_is_contained() {
    let rt = runtime();
    let t = rt.load("hostile", &guest("hostile_guest")).unwrap();

    let check_still_works = |after: &str| {
        let events = t
            .call(&input("orders/create", ORDER), "{}", &relaxed())
            .unwrap_or_else(|e| panic!("normal call after {after} failed: {e}"));
        assert_eq!(events.len(), 1, "after {after}: {events:?}");
    };
    check_still_works("nothing");

    let cases: &[(&str, Limits, &str)] = &[
        ("hostile/loop", Limits::default(), "timeout"),
        ("hostile/grow", relaxed(), "memory_limit"),
        ("hostile/trap", relaxed(), "trap"),
        ("hostile/huge", relaxed(), "output_too_large"),
        ("hostile/many", relaxed(), "too_many_events"),
        ("hostile/badkind", relaxed(), "invalid_output"),
    ];
    for (topic, limits, code) in cases {
        let err = t.call(&input(topic, ORDER), "{}", limits).expect_err(topic);
        assert_eq!(err.code(), *code, "{topic}: {err}");
        match (&err, *topic) {
            (TransformError::Timeout(cpu), _) => assert_eq!(*cpu, limits.cpu),
            (TransformError::MemoryLimit(bytes), _) => assert_eq!(*bytes, limits.memory_bytes),
            (TransformError::TooManyEvents { count, limit }, _) => {
                assert_eq!((*count, *limit), (1000, 100))
            }
            (TransformError::OutputTooLarge { size, limit }, _) => {
                assert!(*size > *limit && *limit == 1 << 20, "{err}")
            }
            _ => {}
        }
        check_still_works(topic);
    }

    // Logging is rate limited, not fatal: the event after the flood arrives.
    let events = t
        .call(&input("hostile/flood", ORDER), "{}", &relaxed())
        .expect("flood");
    assert_eq!(events.len(), 1, "{events:?}");
    check_still_works("hostile/flood");
}

#[test]
fn trap_message_carries_guest_stderr() {
    let rt = runtime();
    let t = rt.load("hostile", &guest("hostile_guest")).unwrap();
    let err = t
        .call(&input("hostile/trap", ORDER), "{}", &relaxed())
        .unwrap_err();
    let TransformError::Trap(message) = &err else {
        panic!("expected a trap, got {err:?}")
    };
    // A Rust guest panics through std, which prints to stderr before
    // aborting; that text is what makes a dead letter understandable.
    assert!(message.contains("stderr: "), "{message}");
    assert!(message.contains("panicked"), "{message}");
}

#[test]
fn memory_limit_is_per_call_setting() {
    let rt = runtime();
    let t = rt.load("hostile", &guest("hostile_guest")).unwrap();
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..relaxed()
    };
    let err = t
        .call(&input("hostile/grow", ORDER), "{}", &limits)
        .unwrap_err();
    assert!(
        matches!(err, TransformError::MemoryLimit(n) if n == 8 << 20),
        "{err:?}"
    );
}

#[test]
fn more_callers_than_pool_slots_wait_instead_of_failing() {
    let rt = Runtime::new(RuntimeConfig {
        pool_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let t = rt
        .load("shopify-default", &guest("shopify_default"))
        .unwrap();
    std::thread::scope(|s| {
        let handles = (0..8)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..4 {
                        t.call(&input("orders/create", ORDER), "{}", &relaxed())
                            .unwrap();
                    }
                })
            })
            .collect::<Vec<_>>();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn transform_outlives_runtime_handle() {
    let t = {
        let rt = runtime();
        rt.load("hostile", &guest("hostile_guest")).unwrap()
    };
    // The ticker must still be running, or this would never return.
    let err = t
        .call(&input("hostile/loop", ORDER), "{}", &Limits::default())
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
}

#[test]
fn not_a_component() {
    let rt = runtime();
    let core_module = b"\0asm\x01\0\0\0";
    for (what, bytes) in [
        (
            "random bytes",
            &b"\x8f\x13 definitely not wasm \x00\xff"[..],
        ),
        ("empty", &b""[..]),
        ("core module", &core_module[..]),
    ] {
        match rt.load("x", bytes) {
            Err(LoadError::NotAComponent(_)) => {}
            Err(e) => panic!("{what}: {e:?}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    }
}

#[test]
fn component_of_another_world_is_rejected() {
    let rt = runtime();
    // The smallest valid component: it exports nothing.
    match rt.load("empty", b"\0asm\x0d\0\x01\0") {
        Err(LoadError::WrongWorld(_)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded a component without the transform export"),
    }
    match rt.load("broken", b"\0asm\x0d\0\x01\0\xff\xff") {
        Err(LoadError::Compile(_)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded a broken component"),
    }
}

#[test]
fn compiled_code_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RuntimeConfig {
        pool_instances: 2,
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeConfig::default()
    };
    let bytes = guest("shopify_default");

    let first = Runtime::new(cfg.clone())
        .unwrap()
        .load("d", &bytes)
        .unwrap();
    assert!(!first.from_cache());
    let artifacts = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].starts_with(first.digest()), "{artifacts:?}");
    assert!(artifacts[0].ends_with(".cwasm"), "{artifacts:?}");

    // A fresh runtime, as after a restart, loads the artifact.
    let second = Runtime::new(cfg.clone())
        .unwrap()
        .load("d", &bytes)
        .unwrap();
    assert!(second.from_cache());
    assert_eq!(second.digest(), first.digest());
    let events = second
        .call(&input("orders/create", ORDER), "{}", &relaxed())
        .unwrap();
    assert_eq!(events[0].kind, "orders.created");

    // A damaged artifact is replaced, not fatal.
    let path = dir.path().join("cache").join(&artifacts[0]);
    std::fs::write(&path, b"garbage").unwrap();
    let third = Runtime::new(cfg.clone())
        .unwrap()
        .load("d", &bytes)
        .unwrap();
    assert!(!third.from_cache());
    assert!(
        Runtime::new(cfg)
            .unwrap()
            .load("d", &bytes)
            .unwrap()
            .from_cache()
    );
}

#[test]
fn dropping_the_runtime_stops_the_ticker() {
    // Would hang if the ticker thread ignored the stop signal.
    drop(runtime());
}

#[test]
fn deadline_rounds_up_to_whole_ticks() {
    let ms = Duration::from_millis;
    assert_eq!(engine::deadline_ticks(ms(50), ms(1)), 50);
    assert_eq!(
        engine::deadline_ticks(Duration::from_micros(50_500), ms(1)),
        51
    );
    assert_eq!(engine::deadline_ticks(Duration::ZERO, ms(1)), 1);
    assert_eq!(engine::deadline_ticks(ms(5), ms(10)), 1);
}

#[test]
fn error_codes_are_stable() {
    let d = Duration::from_millis(1);
    let all = [
        (TransformError::Timeout(d), "timeout"),
        (TransformError::MemoryLimit(1), "memory_limit"),
        (TransformError::Trap(String::new()), "trap"),
        (
            TransformError::OutputTooLarge { size: 2, limit: 1 },
            "output_too_large",
        ),
        (
            TransformError::TooManyEvents { count: 2, limit: 1 },
            "too_many_events",
        ),
        (
            TransformError::InvalidOutput(String::new()),
            "invalid_output",
        ),
        (TransformError::InvalidInput(String::new()), "invalid_input"),
        (TransformError::Failed(String::new()), "failed"),
        (TransformError::Instantiate(String::new()), "instantiate"),
    ];
    for (error, code) in all {
        assert_eq!(error.code(), code);
    }
}

#[test]
fn log_messages_are_truncated_and_escaped() {
    let long = "é".repeat(1000);
    let out = engine::sanitize(&long);
    assert!(out.len() <= 1024 + '…'.len_utf8(), "{}", out.len());
    assert!(out.ends_with('…'));
    assert_eq!(engine::sanitize("a\nb\u{1b}c"), "a\\nb\\u{1b}c");
}

/// The route's config reaches the guest through the `config` import, and a
/// guest's own refusal comes back as its error, not as a trap.
#[test]
fn config_reaches_the_guest() {
    let rt = runtime();
    let t = rt.load("redact-pii", &guest("redact_pii")).unwrap();
    let payload = |config: &str| -> serde_json::Value {
        let events = t
            .call(&input("orders/create", ORDER), config, &relaxed())
            .unwrap();
        assert_eq!(events[0].kind, "orders.created");
        let Payload::Json(bytes) = &events[0].payload else {
            panic!("expected a new payload, got {events:?}")
        };
        serde_json::from_slice(bytes).unwrap()
    };

    let default = payload("{}");
    assert!(default.get("email").is_none(), "{default}");
    assert!(default.get("total_price").is_some(), "{default}");

    let custom = payload(r#"{"fields":["total_price"]}"#);
    assert!(custom.get("email").is_some(), "{custom}");
    assert!(custom.get("total_price").is_none(), "{custom}");

    let err = t
        .call(
            &input("orders/create", ORDER),
            r#"{"feilds":[]}"#,
            &relaxed(),
        )
        .unwrap_err();
    assert!(matches!(err, TransformError::Failed(_)), "{err:?}");

    let err = t
        .call(&input("orders/create", b"not json"), "{}", &relaxed())
        .unwrap_err();
    assert!(matches!(err, TransformError::InvalidInput(_)), "{err:?}");
}
