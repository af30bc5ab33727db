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
