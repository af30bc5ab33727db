#!/usr/bin/env bash
# Runs every test against real parts, on a fresh machine that has only the
# Rust toolchain. Idempotent: what is installed already is left alone.
#
#   1. the wasm32-wasip2 target (guests are real components)
#   2. Debian packages: openssl (test certificates) and stunnel4 (a TLS
#      proxy in front of the broker), with postgresql in the same apt run
#   3. tansu, a Kafka-compatible broker, started on loopback for the run
#   4. PostgreSQL (Debian's package), started on loopback in a data
#      directory of the run's own, with ssl = on
#   5. promtool (from Debian's prometheus package) for deploy/'s alert rules
#   6. fmt, clippy, then the whole workspace's tests twice: on SQLite, and
#      again with every gateway on PostgreSQL (the reliability harness, which
#      covers both backends itself, runs once)
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm32-wasip2 target, rustfmt, clippy"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# A CI run builds once from nothing: incremental caches would only cost disk
# (about a quarter of target/), and CI machines share theirs.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL=0
fi

# The broker's and the database's directories are this run's own unless the
# caller names them; the run removes what it made, so repeated runs on one
# machine don't pile up data directories (PostgreSQL's is ~700 MB by the end).
made_dirs=()
cleanup() {
    bash tests/scripts/tansu.sh stop || true
    [[ -n "${PG_DIR:-}" ]] && { bash tests/scripts/postgres.sh stop || true; }
    if ((${#made_dirs[@]})); then
        rm -rf -- "${made_dirs[@]}"
    fi
}
trap cleanup EXIT

step "packages: openssl, stunnel4, postgresql"
# One apt run for all three when any is missing (about 30 s on a fresh
# machine; stunnel4 and openssl are under 1 MB).
apt_missing=()
command -v openssl >/dev/null || apt_missing+=(openssl)
command -v stunnel4 >/dev/null || apt_missing+=(stunnel4)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_missing+=(postgresql)
if ((${#apt_missing[@]})); then
    echo "installing ${apt_missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

step "broker: tansu"
bash tests/scripts/install-tansu.sh

export TANSU_PORT="${TANSU_PORT:-19092}"
if [[ -z "${TANSU_DIR:-}" ]]; then
    TANSU_DIR="$(mktemp -d /tmp/ionflux-tansu.XXXXXX)"
    made_dirs+=("$TANSU_DIR")
fi
export TANSU_DIR
bash tests/scripts/tansu.sh start
bash tests/scripts/tansu.sh wait
export IONFLUX_TEST_KAFKA_BROKERS="127.0.0.1:${TANSU_PORT}"

step "database: postgresql"
export PG_PORT="${PG_PORT:-15432}"
if [[ -z "${PG_DIR:-}" ]]; then
    PG_DIR="$(mktemp -d /tmp/ionflux-pg.XXXXXX)"
    made_dirs+=("$PG_DIR")
fi
export PG_DIR
bash tests/scripts/postgres.sh start

step "deploy: alert rules (promtool check and unit tests)"
bash deploy/check.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests on SQLite"
# The reliability harness runs gateway processes: build the binary first.
cargo build -p ionflux-gateway --locked
cargo test --workspace --locked "$@"

step "tests on PostgreSQL"
IONFLUX_TEST_POSTGRES="$(bash tests/scripts/postgres.sh url)" \
    cargo test --workspace --locked "$@" -- --skip every_scenario_loses_nothing
