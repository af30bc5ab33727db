//! Runs the real guest components (built into target/guests) through the
//! runtime. No timing assertions: limits are checked by their outcome.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::pipeline::transform::World;

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
        account_id: "example.myshopify.com",
        workspace_id: "w1",
        brand_id: "b1",
        api_version: Some("2024-01"),
        delivery_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        occurred_at: Some("2024-01-01T00:00:00Z"),
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

/// A component of two core instances with a memory each, built by hand: the
/// first one's `transform` has the second grow its memory by `grow_pages`
/// pages, then grows its own by as much, trapping if either is refused, and
/// returns no events. What a real component with an adapter module (or
/// several modules) can do, with nothing else in the way.
fn two_memories(grow_pages: i32) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CanonicalOption, CodeSection, ComponentBuilder, ComponentExportKind,
        ComponentValType, ConstExpr, EntityType, ExportKind, ExportSection, Function,
        FunctionSection, GlobalSection, GlobalType, ImportSection, MemArg, MemorySection,
        MemoryType, Module, ModuleArg, PrimitiveValType, TypeSection, ValType,
    };
    let memory = |pages| MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    };

    // The second instance: a memory, and a way to grow it.
    let mut second = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    second.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    second.section(&funcs);
    let mut memories = MemorySection::new();
    memories.memory(memory(1));
    second.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("grow", ExportKind::Func, 0);
    exports.export("mem", ExportKind::Memory, 0);
    second.section(&exports);
    let mut code = CodeSection::new();
    let mut grow = Function::new([]);
    grow.instructions().local_get(0).memory_grow(0).end();
    code.function(&grow);
    second.section(&code);

    // The first: the canonical ABI's memory, a bump allocator, `transform`.
    let mut first = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]); // grow, transform
    types.ty().function([ValType::I32; 4], [ValType::I32]); // realloc
    first.section(&types);
    let mut imports = ImportSection::new();
    imports.import("second", "grow", EntityType::Function(0));
    first.section(&imports);
    let mut funcs = FunctionSection::new();
    funcs.function(1); // 1: realloc
    funcs.function(0); // 2: transform
    first.section(&funcs);
    let mut memories = MemorySection::new();
    memories.memory(memory(2));
    first.section(&memories);
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );
    first.section(&globals);
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("realloc", ExportKind::Func, 1);
    exports.export("transform", ExportKind::Func, 2);
    first.section(&exports);
    let mut code = CodeSection::new();
    // realloc(old, old_size, align, size): p = (next + align - 1) & -align.
    let mut realloc = Function::new([(1, ValType::I32)]);
    realloc
        .instructions()
        .global_get(0)
        .local_get(2)
        .i32_add()
        .i32_const(1)
        .i32_sub()
        .i32_const(0)
        .local_get(2)
        .i32_sub()
        .i32_and()
        .local_tee(4)
        .local_get(3)
        .i32_add()
        .global_set(0)
        .local_get(4)
        .end();
    code.function(&realloc);
    let at = |offset| MemArg {
        offset,
        align: 0,
        memory_index: 0,
    };
    let mut transform = Function::new([]);
    transform
        .instructions()
        .i32_const(grow_pages)
        .call(0)
        .i32_const(-1)
        .i32_eq()
        .if_(BlockType::Empty)
        .unreachable()
        .end()
        .i32_const(grow_pages)
        .memory_grow(0)
        .i32_const(-1)
        .i32_eq()
        .if_(BlockType::Empty)
        .unreachable()
        .end()
        // ok(list of no events) at 16: case 0, then (pointer, length).
        .i32_const(16)
        .i32_const(0)
        .i32_store8(at(0))
        .i32_const(16)
        .i32_const(0)
        .i32_store(at(4))
        .i32_const(16)
        .i32_const(0)
        .i32_store(at(8))
        .i32_const(16)
        .end();
    code.function(&transform);
    first.section(&code);

    let mut c = ComponentBuilder::default();
    let second_module = c.core_module(Some("second"), &second);
    let first_module = c.core_module(Some("first"), &first);
    let second_instance = c.core_instantiate(Some("second"), second_module, []);
    let first_instance = c.core_instantiate(
        Some("first"),
        first_module,
        [("second", ModuleArg::Instance(second_instance))],
    );
    let core_memory = c.core_alias_export(None, first_instance, "memory", ExportKind::Memory);
    let core_realloc = c.core_alias_export(None, first_instance, "realloc", ExportKind::Func);
    let core_transform = c.core_alias_export(None, first_instance, "transform", ExportKind::Func);

    // The world's types, each exported so that the function may name it.
    let string = ComponentValType::Primitive(PrimitiveValType::String);
    let bytes = {
        let (i, t) = c.type_defined(None);
        t.list(PrimitiveValType::U8);
        ComponentValType::Type(i)
    };
    let maybe_string = {
        let (i, t) = c.type_defined(None);
        t.option(string);
        ComponentValType::Type(i)
    };
    let named = |c: &mut ComponentBuilder, name: &str, ty: u32| {
        ComponentValType::Type(c.export(name, ComponentExportKind::Type, ty, None))
    };
    let (header, t) = c.type_defined(None);
    t.record([("name", string), ("value", string)]);
    let header = named(&mut c, "header", header);
    let (headers, t) = c.type_defined(None);
    t.list(header);
    let (webhook, t) = c.type_defined(None);
    t.record([
        ("provider", string),
        ("topic", string),
        ("shop-domain", string),
        ("workspace-id", string),
        ("brand-id", string),
        ("api-version", maybe_string),
        ("webhook-id", string),
        ("triggered-at", maybe_string),
        ("event-id", maybe_string),
        ("headers", ComponentValType::Type(headers)),
        ("body", bytes),
    ]);
    let webhook = named(&mut c, "webhook", webhook);
    let (payload, t) = c.type_defined(None);
    t.variant([("unchanged", None), ("json", Some(bytes))]);
    let payload = named(&mut c, "payload", payload);
    let (event, t) = c.type_defined(None);
    t.record([
        ("kind", string),
        ("schema-version", string),
        ("payload", payload),
    ]);
    let event = named(&mut c, "event", event);
    let (error, t) = c.type_defined(None);
    t.variant([("invalid-input", Some(string)), ("failed", Some(string))]);
    let error = named(&mut c, "transform-error", error);
    let (events, t) = c.type_defined(None);
    t.list(event);
    let (outcome, t) = c.type_defined(None);
    t.result(Some(ComponentValType::Type(events)), Some(error));
    let (func_type, mut t) = c.type_function(None);
    t.params([("input", webhook)])
        .result(Some(ComponentValType::Type(outcome)));
    let lifted = c.lift_func(
        Some("transform"),
        core_transform,
        func_type,
        [
            CanonicalOption::UTF8,
            CanonicalOption::Memory(core_memory),
            CanonicalOption::Realloc(core_realloc),
        ],
    );
    c.export("transform", ComponentExportKind::Func, lifted, None);
    c.finish()
}

/// The memory cap is one budget for all of a component's memories: two
/// memories that each stay under it cannot use it twice over.
#[test]
fn the_memory_cap_covers_all_of_a_components_memories_together() {
    let rt = runtime();
    // 20 MiB each: under a 32 MiB cap alone, over it together.
    let t = rt.load("two-memories", &two_memories(320)).unwrap();
    let call = |memory_bytes: usize| {
        let limits = Limits {
            memory_bytes,
            ..relaxed()
        };
        t.call(&input("orders/create", ORDER), "{}", &limits)
    };
    let err = call(32 << 20).unwrap_err();
    assert!(
        matches!(err, TransformError::MemoryLimit(n) if n == 32 << 20),
        "{err:?}"
    );
    // With room for both, the same call succeeds: the cap refused it.
    assert_eq!(call(48 << 20).unwrap(), vec![]);
}

/// A guest binary checked in under `tests/fixtures/guests/` (how each was
/// built: the README there).
fn fixture_guest(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/guests")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A component that exports one empty instance under `name`, and nothing
/// else.
fn exporting_instance(name: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentExportKind, ComponentExportSection, ComponentInstanceSection,
    };
    let mut component = Component::new();
    let mut instances = ComponentInstanceSection::new();
    instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
    component.section(&instances);
    let mut exports = ComponentExportSection::new();
    exports.export(name, ComponentExportKind::Instance, 0, None);
    component.section(&exports);
    component.finish()
}

#[test]
fn the_world_is_read_off_the_components_exports() {
    let rt = runtime();
    for (name, bytes, world) in [
        ("shopify-default", guest("shopify_default"), World::V0_2),
        ("redact-pii", guest("redact_pii"), World::V0_2),
        ("echo-0.1.0", fixture_guest("echo-0.1.0.wasm"), World::V0_1),
        ("echo-0.2.0", fixture_guest("echo-0.2.0.wasm"), World::V0_2),
    ] {
        let t = rt.load(name, &bytes).unwrap();
        assert_eq!(t.world(), world, "{name}");
    }
    assert_eq!(World::LATEST, World::V0_2, "the SDK's, and the built-ins'");
    for w in World::ALL {
        assert_eq!(World::parse(w.as_str()), Some(w));
    }
    assert_eq!(World::V0_1.as_str(), "ionflux:transform@0.1.0");
    assert_eq!(World::V0_2.to_string(), "ionflux:transform@0.2.0");
}

#[test]
fn an_unknown_version_or_a_lookalike_is_refused_by_name() {
    let rt = runtime();
    let future = exporting_instance("ionflux:transform/transformer@0.3.0");
    match rt.load("future", &future) {
        Err(LoadError::WrongWorld(why)) => assert!(
            why.contains("ionflux:transform/transformer@0.3.0")
                && why.contains("ionflux:transform@0.1.0")
                && why.contains("ionflux:transform@0.2.0"),
            "{why}"
        ),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded a component of an unknown version"),
    }
    // The right name with the wrong contents: caught by the bindings' type
    // check, not taken on the name's word.
    let lookalike = exporting_instance("ionflux:transform/transformer@0.2.0");
    match rt.load("lookalike", &lookalike) {
        Err(LoadError::WrongWorld(why)) => assert!(why.contains("0.2.0"), "{why}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("loaded an empty instance as a transformer"),
    }
}

/// The echo guests' payload for the `echo/input` topic: the input record
/// as their world names it.
fn echo(t: &Transform, input: &Input<'_>) -> serde_json::Value {
    let events = t.call(input, "{}", &relaxed()).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "echo.input");
    match &events[0].payload {
        Payload::Json(bytes) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn both_worlds_get_the_same_webhook_under_their_own_names() {
    let rt = runtime();
    let headers = vec![
        ("x-shopify-topic".to_string(), "echo/input".to_string()),
        (
            "x-shopify-event-id".to_string(),
            "98880550-7158-44d4-b7cd-2c97c8a091b5".to_string(),
        ),
    ];
    let shopify = Input {
        headers: &headers,
        ..input("echo/input", ORDER)
    };
    let pairs = serde_json::json!([
        ["x-shopify-topic", "echo/input"],
        ["x-shopify-event-id", "98880550-7158-44d4-b7cd-2c97c8a091b5"],
    ]);
    let body = std::str::from_utf8(ORDER).unwrap();

    let old = rt
        .load("echo-0.1.0", &fixture_guest("echo-0.1.0.wasm"))
        .unwrap();
    assert_eq!(
        echo(&old, &shopify),
        serde_json::json!({
            "world": "0.1.0",
            "provider": "shopify",
            "topic": "echo/input",
            "shop_domain": "example.myshopify.com",
            "workspace_id": "w1",
            "brand_id": "b1",
            "api_version": "2024-01",
            "webhook_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "triggered_at": "2024-01-01T00:00:00Z",
            "event_id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
            "headers": pairs,
            "body": body,
        })
    );

    let new = rt
        .load("echo-0.2.0", &fixture_guest("echo-0.2.0.wasm"))
        .unwrap();
    assert_eq!(
        echo(&new, &shopify),
        serde_json::json!({
            "world": "0.2.0",
            "provider": "shopify",
            "topic": "echo/input",
            "account_id": "example.myshopify.com",
            "workspace_id": "w1",
            "brand_id": "b1",
            "api_version": "2024-01",
            "delivery_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "occurred_at": "2024-01-01T00:00:00Z",
            "event_id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
            "headers": pairs,
            "body": body,
        })
    );

    // Another provider's webhook reaches a 0.1.0 guest too, its account and
    // delivery under Shopify's names.
    let woo = Input {
        provider: "woocommerce",
        account_id: "https://shop.example.com/",
        delivery_id: "54",
        api_version: None,
        occurred_at: None,
        event_id: None,
        headers: &[],
        ..input("echo/input", b"{}")
    };
    let seen = echo(&old, &woo);
    assert_eq!(
        (
            &seen["provider"],
            &seen["shop_domain"],
            &seen["webhook_id"],
            &seen["event_id"]
        ),
        (
            &serde_json::json!("woocommerce"),
            &serde_json::json!("https://shop.example.com/"),
            &serde_json::json!("54"),
            &serde_json::Value::Null
        )
    );
}

/// The frozen 0.1.0 guest, the frozen 0.2.0 one and the built-in make the
/// same events of the same webhooks.
#[test]
fn a_0_1_0_guest_makes_the_events_the_built_in_makes() {
    let rt = runtime();
    let builtin = rt
        .load("shopify-default", &guest("shopify_default"))
        .unwrap();
    let old = rt
        .load("echo-0.1.0", &fixture_guest("echo-0.1.0.wasm"))
        .unwrap();
    let new = rt
        .load("echo-0.2.0", &fixture_guest("echo-0.2.0.wasm"))
        .unwrap();
    for (topic, api_version) in [
        ("orders/create", Some("2024-01")),
        ("products/update", None),
        ("app/uninstalled", Some("2026-04")),
    ] {
        let webhook = Input {
            api_version,
            ..input(topic, ORDER)
        };
        let expected = builtin.call(&webhook, "{}", &relaxed()).unwrap();
        assert_eq!(
            old.call(&webhook, "{}", &relaxed()).unwrap(),
            expected,
            "{topic}"
        );
        assert_eq!(
            new.call(&webhook, "{}", &relaxed()).unwrap(),
            expected,
            "{topic}"
        );
    }
}
