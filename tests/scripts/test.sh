#!/usr/bin/env bash
# Runs every test against real parts, on a fresh machine that has only the
# Rust toolchain. Idempotent: what is installed already is left alone.
#
#   1. the wasm32-wasip2 target (guests are real components)
#   2. tansu, a Kafka-compatible broker, started on loopback for the run
#   3. fmt, clippy and the whole workspace's tests
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "broker: tansu"
bash tests/scripts/install-tansu.sh

export TANSU_PORT="${TANSU_PORT:-19092}"
export TANSU_DIR="${TANSU_DIR:-$(mktemp -d /tmp/ionflux-tansu.XXXXXX)}"
bash tests/scripts/tansu.sh start
trap 'bash tests/scripts/tansu.sh stop || true' EXIT
bash tests/scripts/tansu.sh wait
export IONFLUX_TEST_KAFKA_BROKERS="127.0.0.1:${TANSU_PORT}"

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked "$@"
