//! Builds the built-in transforms (`transforms/shopify-default`,
//! `transforms/redact-pii`) as WebAssembly components and embeds them in the
//! binary, so that a single `ionflux-gateway` file serves every topic with no
//! route and no extra files to ship. How the guests are built: guest_build.rs.

use std::env;
use std::path::PathBuf;

mod guest_build;

const GUESTS: &[(&str, &str)] = &[
    ("shopify-default", "shopify_default"),
    ("redact-pii", "redact_pii"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["wit", "guest-sdk", "transforms"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=guest_build.rs");
    println!("cargo:rerun-if-env-changed=IONFLUX_GUEST_DIR");
    rustc_version();

    // An escape hatch for packagers who build the guests separately.
    let wasm_dir = match env::var_os("IONFLUX_GUEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => guest_build::build(&root, &packages()),
    };

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut listing = String::from("/// (name, component bytes) of every built-in transform.\n");
    listing.push_str("pub static BUILTIN_COMPONENTS: &[(&str, &[u8])] = &[\n");
    for (package, file) in GUESTS {
        let wasm = wasm_dir.join(format!("{file}.wasm"));
        if !wasm.exists() {
            panic!("built-in transform {} is missing", wasm.display());
        }
        listing.push_str(&format!(
            "    ({package:?}, include_bytes!({:?})),\n",
            wasm.display().to_string()
        ));
    }
    listing.push_str("];\n");
    std::fs::write(out.join("builtin_transforms.rs"), listing).unwrap();
}

fn packages() -> Vec<&'static str> {
    GUESTS.iter().map(|(package, _)| *package).collect()
}

/// The compiler's version for `ionflux_build_info` (metrics.rs). A new
/// compiler reruns every build script, so this stays true.
fn rustc_version() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(version) = text
        .split_whitespace()
        .nth(1)
        .filter(|_| out.status.success())
    {
        println!("cargo:rustc-env=IONFLUX_RUSTC_VERSION={version}");
    }
}
