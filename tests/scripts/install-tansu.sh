#!/usr/bin/env bash
# Installs the tansu broker (Apache-2.0, Kafka wire compatible) that the Kafka
# integration tests run against. Idempotent: a matching binary is left alone,
# so CI can call this on every run and only pay for the build once per cache.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
# dynostore provides the memory:// engine the tests use; postgres matches the
# feature set the production notes were measured with (DESIGN.md §8).
TANSU_FEATURES="${TANSU_FEATURES:-dynostore,postgres}"

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

installed_version() {
    local bin
    for bin in "$(command -v tansu 2>/dev/null || true)" "$cargo_bin/tansu"; do
        if [[ -n "$bin" && -x "$bin" ]]; then
            # `tansu --version` prints "tansu X.Y.Z".
            "$bin" --version 2>/dev/null | awk '{print $2; exit}'
            return 0
        fi
    done
    return 1
}

if v="$(installed_version)" && [[ "$v" == "$TANSU_VERSION" ]]; then
    echo "tansu $TANSU_VERSION already installed"
    exit 0
fi

echo "installing tansu $TANSU_VERSION (features: $TANSU_FEATURES)"
cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES"
