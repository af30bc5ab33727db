//! Builds the hostile and broken guests the tests throw at the host.

use std::env;
use std::path::PathBuf;

#[path = "../host/guest_build.rs"]
mod guest_build;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["wit", "guest-sdk", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=../host/guest_build.rs");
    let dir = guest_build::build(&root, &["hostile-guest", "broken-guest"]);
    for (env, file) in [
        ("HOSTILE_GUEST_WASM", "hostile_guest.wasm"),
        ("BROKEN_GUEST_WASM", "broken_guest.wasm"),
    ] {
        println!("cargo:rustc-env={env}={}", dir.join(file).display());
    }
}
