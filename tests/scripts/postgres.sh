#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests, from Debian's
# `postgresql` package (installed here if missing), in a data directory of
# its own: the machine's own clusters are left alone.
#
#   postgres.sh install   apt-get install postgresql (and openssl) if missing
#   postgres.sh start     initdb (first time) and start in the background
#   postgres.sh stop      stop it (no-op if not running)
#   postgres.sh restart   stop fast, then start: for the reliability harness
#   postgres.sh url       print the admin URL (postgres://…/postgres)
#
# Environment: PG_PORT (15432), PG_DIR (/tmp/ionflux-pg). The server trusts
# loopback connections without a password and listens on 127.0.0.1 only.
# It has ssl = on with a certificate for 127.0.0.1 and localhost signed by a
# CA of its own (DATA/tls/ca.pem, beside `SHOW ssl_cert_file`), made on the
# first start by certs.sh; plain connections are still accepted.
set -euo pipefail

PORT="${PG_PORT:-15432}"
DIR="${PG_DIR:-/tmp/ionflux-pg}"
DATA="$DIR/data"
LOG="$DIR/postgres.log"

bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
    done
    return 1
}

# initdb and postgres refuse to run as root; the package's user runs them.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cmd_install() {
    local missing=()
    bindir >/dev/null || missing+=(postgresql)
    # certs.sh makes the server's certificate with it.
    command -v openssl >/dev/null || missing+=(openssl)
    ((${#missing[@]})) || return 0
    echo "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
    bindir >/dev/null
}

cmd_start() {
    cmd_install
    local bin
    bin="$(bindir)"
    mkdir -p "$DIR"
    [[ "$(id -u)" == 0 ]] && chown postgres "$DIR"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        echo "postgres already running on 127.0.0.1:$PORT"
        return 0
    fi
    # The TLS tests (postgres_tls.rs) connect with each sslmode; the key
    # must belong to the server's user and be private to it.
    local tls="$DATA/tls"
    bash "$(dirname "$0")/certs.sh" "$tls"
    [[ "$(id -u)" == 0 ]] && chown -R postgres "$tls"
    # fsync stays on: the tests prove durability, and the harness kills
    # processes, not the machine, so it costs little.
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c ssl=on -c ssl_cert_file=$tls/server.pem -c ssl_key_file=$tls/server.key" start >/dev/null
    echo "postgres running on 127.0.0.1:$PORT"
}

cmd_stop() {
    local bin
    bin="$(bindir)" || return 0
    [[ -f "$DATA/PG_VERSION" ]] || return 0
    as_pg "$bin/pg_ctl" -D "$DATA" -m "${1:-fast}" -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop immediate; cmd_start ;;
    url) echo "postgres://postgres@127.0.0.1:$PORT/postgres" ;;
    *) echo "usage: $0 install|start|stop|restart|url" >&2; exit 2 ;;
esac
