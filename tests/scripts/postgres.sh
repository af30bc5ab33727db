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
# first start by certs.sh; plain connections are still accepted, except
# for the role ionflux_tls (password ionflux_tls), which pg_hba.conf admits
# over TLS only, as a managed PostgreSQL does (postgres_tls.rs). `start`
# adds that role and its pg_hba.conf lines to an existing or running server
# too (reloading it, never restarting it).
set -euo pipefail

PORT="${PG_PORT:-15432}"
DIR="${PG_DIR:-/tmp/ionflux-pg}"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
TLS_ROLE=ionflux_tls
HBA_MARK="# ionflux: $TLS_ROLE is admitted over TLS only (added by postgres.sh)"

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

# Puts the TLS-only lines first in pg_hba.conf (the first matching line
# decides): plain TCP and the Unix socket are refused for the role before
# the trust lines initdb wrote could admit it. Succeeds when it changed the
# file, so that a running server is reloaded.
tls_only_hba() {
    local hba="$DATA/pg_hba.conf" lines
    grep -qxF "$HBA_MARK" "$hba" && return 1
    lines="$HBA_MARK
local      all  $TLS_ROLE                 reject
hostnossl  all  $TLS_ROLE  0.0.0.0/0      reject
hostnossl  all  $TLS_ROLE  ::/0           reject
hostssl    all  $TLS_ROLE  127.0.0.0/8    scram-sha-256
hostssl    all  $TLS_ROLE  ::1/128        scram-sha-256
"
    # Rewritten in place, so the file keeps its owner and mode.
    { printf '%s' "$lines"; cat "$hba"; } >"$hba.ionflux-tmp"
    cat "$hba.ionflux-tmp" >"$hba"
    rm -f "$hba.ionflux-tmp"
}

tls_role() {
    as_pg "$1/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 -c "
        DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$TLS_ROLE') THEN
                CREATE ROLE $TLS_ROLE LOGIN PASSWORD '$TLS_ROLE';
            END IF;
        END \$\$;" >/dev/null
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
    local hba_changed=0
    tls_only_hba && hba_changed=1
    if as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        ((hba_changed)) && as_pg "$bin/pg_ctl" -D "$DATA" reload >/dev/null
        tls_role "$bin"
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
    tls_role "$bin"
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
