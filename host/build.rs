//! Builds the built-in transforms as WebAssembly components and embeds them
//! in the binary, so that a single `ionflux-gateway` file serves every topic
//! with no route and no extra files to ship. How the guests are built:
//! guest_build.rs.
//!
//! A built-in is any crate under `transforms/` whose Cargo.toml says
//! `[package.metadata.ionflux] builtin = true`: adding a platform's transform
//! touches its own folder only, not this file nor the workspace's members.

use std::env;
use std::path::{Path, PathBuf};

mod guest_build;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["wit", "guest-sdk", "transforms"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=guest_build.rs");
    println!("cargo:rerun-if-env-changed=IONFLUX_GUEST_DIR");
    rustc_version();

    let builtins = builtins(&root.join("transforms"));
    let packages: Vec<&str> = builtins.iter().map(String::as_str).collect();
    // An escape hatch for packagers who build the guests separately.
    let wasm_dir = match env::var_os("IONFLUX_GUEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => guest_build::build(&root, &packages),
    };

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut listing = String::from("/// (name, component bytes) of every built-in transform.\n");
    listing.push_str("pub static BUILTIN_COMPONENTS: &[(&str, &[u8])] = &[\n");
    for package in &builtins {
        // A cdylib's file is named after its package, `-` as `_`.
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
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

/// The package names of the built-in crates under `dir`, in the order of
/// their folder names so the binary's list is the same on every machine.
fn builtins(dir: &Path) -> Vec<String> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    folders.sort();
    let mut names = Vec::new();
    for folder in folders {
        let path = folder.join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let manifest: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
        let package = manifest.get("package").and_then(toml::Value::as_table);
        let builtin = package
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("ionflux"))
            .and_then(|i| i.get("builtin"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        if !builtin {
            continue;
        }
        let name = package
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{} has no package name", path.display()));
        names.push(name.to_owned());
    }
    if names.is_empty() {
        panic!("no crate under {} is a built-in transform", dir.display());
    }
    names
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
