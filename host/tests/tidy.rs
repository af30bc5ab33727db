//! Source rules of `host/src` that no compiler checks (issue 18): the
//! layers are folders, the generic pipeline and the store name no platform,
//! and imports point down (api → providers → pipeline → store, support).
//!
//! Each allow-list names what is still owed and who owes it; an entry that
//! is no longer needed fails too, so the lists only shrink.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` (a file itself when `dir` is one), as paths
/// relative to `src/`, sorted.
fn rust_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    out.sort();
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(src().join(rel)).unwrap()
}

/// Files of `layer` (relative to `src/`) breaking `rule`, checked against
/// `allowed`: every breach must be allowed, and every allowed file must
/// still breach (else its entry is stale).
fn check(layers: &[&str], rule: &str, breaks: impl Fn(&str) -> bool, allowed: &[(&str, &str)]) {
    let files: Vec<String> = layers
        .iter()
        .flat_map(|l| rust_files(&src().join(l)))
        .collect();
    let breaching: Vec<&String> = files.iter().filter(|f| breaks(&read(f))).collect();
    let unexpected: Vec<&&String> = breaching
        .iter()
        .filter(|f| !allowed.iter().any(|(a, _)| *a == f.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{rule}: {unexpected:?}");
    let stale: Vec<&str> = allowed
        .iter()
        .map(|(a, _)| *a)
        .filter(|a| !breaching.iter().any(|f| f.as_str() == *a))
        .collect();
    assert!(
        stale.is_empty(),
        "{rule}: allowed but no longer needed: {stale:?}"
    );
}

#[test]
fn host_src_is_grouped_by_layer() {
    let top: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    // The composition root and the tools; everything else is in a layer.
    let roots = [
        "lib.rs",
        "main.rs",
        "config.rs",
        "server.rs",
        "error.rs",
        "fuzzing.rs",
    ];
    let strays: Vec<&String> = top
        .iter()
        .filter(|n| !roots.contains(&n.as_str()))
        .collect();
    assert!(
        strays.is_empty(),
        "modules outside a layer folder: {strays:?}"
    );
    for layer in ["api", "pipeline", "providers", "store", "support"] {
        assert!(src().join(layer).is_dir(), "no {layer}/");
    }
}

#[test]
fn the_pipeline_and_the_store_name_no_platform() {
    check(
        &["pipeline", "store"],
        "names shopify",
        |text| text.to_ascii_lowercase().contains("shopify"),
        &[
            ("pipeline/dispatch.rs", "test rows"),
            (
                "pipeline/event.rs",
                "the default topic templates, Shopify's metadata names kept for its consumers, and test rows",
            ),
            (
                "pipeline/registry.rs",
                "the smoke call's sample webhook and the builtin's name in a message",
            ),
            (
                "pipeline/route.rs",
                "the fallback DEFAULT_TRANSFORM for an unregistered provider, and tests",
            ),
            ("pipeline/publish/kafka.rs", "a topic name in a test"),
            (
                "pipeline/transform/engine.rs",
                "a measurement of the shopify-default guest (wit18's files)",
            ),
            (
                "pipeline/transform/output.rs",
                "a schema version in a test (wit18's files)",
            ),
            (
                "pipeline/transform/tests.rs",
                "the shopify-default guest's tests (wit18's files)",
            ),
            (
                "pipeline/transform/mod.rs",
                "the 0.1.0 world's field names (wit18's files)",
            ),
            (
                "pipeline/transform/world.rs",
                "the 0.1.0 world's field names (wit18's files)",
            ),
            ("store/blob.rs", "comments and tests"),
            (
                "store/inbox.rs",
                "the inbox's shopify_event_id column (the provider-neutral rename)",
            ),
            ("store/mod.rs", "comments and tests"),
            ("store/oauth.rs", "Shopify's install and lifecycle rows"),
        ],
    );
}

#[test]
fn the_store_imports_no_other_module() {
    check(
        &["store"],
        "the store imports another crate module",
        |text| {
            text.match_indices("crate::")
                .any(|(i, _)| !text[i + "crate::".len()..].starts_with("store"))
        },
        &[],
    );
}

#[test]
fn the_pipeline_imports_no_provider_and_no_api() {
    check(
        &["pipeline"],
        "the pipeline imports a provider or the API",
        |text| text.contains("crate::providers") || text.contains("crate::api"),
        &[(
            "pipeline/publish/kafka.rs",
            "api::http::DEFAULT_MAX_BODY_BYTES sizes the producer's messages",
        )],
    );
}
