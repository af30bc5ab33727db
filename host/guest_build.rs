//! Shared by the build scripts of `host` (built-in transforms) and `tests`
//! (hostile guests): builds guest crates of this workspace as wasm32-wasip2
//! components.
//!
//! A nested cargo with its own target dir never waits on the lock of the
//! build that runs the script. The outer build's compiler settings describe
//! the host, not the guest, so they are removed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` in release mode and returns the folder of the `.wasm`
/// files. Installs the wasm32-wasip2 target through rustup when it is
/// missing, so that a plain `cargo build` works on a fresh machine.
pub fn build(root: &Path, packages: &[&str]) -> PathBuf {
    ensure_target();
    let target_dir = root.join("target").join("guests");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let host_setting = (key.starts_with("CARGO_")
            && !matches!(
                key.as_ref(),
                "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_REGISTRIES_CRATES_IO_PROTOCOL"
            ))
            || matches!(
                key.as_ref(),
                "RUSTFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "RUSTDOCFLAGS"
            );
        if host_setting {
            cmd.env_remove(key.as_ref());
        }
    }
    // Guests ship inside the host binary and are loaded per process: keep
    // them small (no DWARF) whatever the workspace's release profile says.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // One optimisation unit across the guest and its dependencies
        // (serde_json above all): measurably faster transforms for a few
        // more seconds of build.
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    let status = cmd
        .status()
        .expect("failed to run cargo to build the guest components");
    if !status.success() {
        panic!("building {packages:?} for {TARGET} failed (see the cargo output above)");
    }
    target_dir.join(TARGET).join("release")
}

fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let installed = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .and_then(|o| {
            o.status
                .success()
                .then(|| String::from_utf8(o.stdout).ok())?
        })
        .is_some_and(|dir| Path::new(dir.trim()).exists());
    if installed {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!("the {TARGET} target is missing; run `rustup target add {TARGET}`");
    }
}
