#!/usr/bin/env bash
# Checks the observability pack with Prometheus' own tool: the alert rules
# parse, their unit tests (prometheus/alerts.test.yml) pass, and the example
# scrape config is valid. tests/scripts/test.sh runs this; the rest of deploy/
# (image, compose, systemd unit, dashboard) is checked by tests/tests/deploy.rs.
#
# promtool: the one on PATH, else Debian's, taken from the `prometheus`
# package (bookworm: 2.42, a 19 MB download, a few seconds) and unpacked
# under ~/.cache/ionflux. The package is not installed: installing it would
# also enable a Prometheus server on :9090 on a machine with systemd.
set -euo pipefail
cd "$(dirname "$0")/prometheus"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/ionflux/prometheus-deb"
if ! command -v promtool >/dev/null 2>&1; then
    if [[ ! -x "$cache/usr/bin/promtool" ]]; then
        echo "fetching promtool from Debian's prometheus package"
        if ! apt-cache show prometheus >/dev/null 2>&1; then
            apt-get update -qq >/dev/null
        fi
        download="$(mktemp -d)"
        # As root, apt warns that its sandbox user cannot write here; harmless.
        (cd "$download" && apt-get download -qq prometheus 2> >(grep -v unsandboxed >&2))
        mkdir -p "$cache"
        dpkg-deb -x "$download"/prometheus_*.deb "$cache"
        rm -rf -- "$download"
    fi
    PATH="$cache/usr/bin:$PATH"
fi

promtool --version | head -n 1
promtool check rules alerts.yml
promtool test rules alerts.test.yml
promtool check config prometheus.yml
