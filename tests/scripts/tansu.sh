#!/usr/bin/env bash
# A throwaway Kafka-compatible broker (tansu, in-memory storage) on loopback
# for the integration tests.
#
#   tansu.sh start   start in the background (no-op if already running)
#   tansu.sh wait    block until the port accepts connections (bounded)
#   tansu.sh stop    stop it (no-op if not running)
#   tansu.sh status  exit 0 if running
#   tansu.sh run CMD...  start + wait, run CMD with IONFLUX_TEST_KAFKA_BROKERS
#                    set, then stop (only if this call started the broker)
#
# Environment: TANSU_PORT (19092), TANSU_ADVERTISED_PORT (the port clients are
# told to use; a proxy's, for the reliability harness's broker outages;
# default TANSU_PORT), TANSU_DIR (/tmp/ionflux-tansu) for the pid
# file and log, TANSU_WAIT_SECS (60), TANSU_BIN (tansu from PATH or
# ~/.cargo/bin), TANSU_AUTHENTICATION (non-empty: clients must authenticate
# with SASL; tansu 0.6 offers SCRAM-SHA-256/512 and OAUTHBEARER, not PLAIN,
# and memory:// keeps no SCRAM users, so every login is refused).
#
# The memory:// engine forgets every topic and record when the broker stops,
# which is what tests want: each start is a clean cluster.
set -euo pipefail

PORT="${TANSU_PORT:-19092}"
DIR="${TANSU_DIR:-/tmp/ionflux-tansu}"
WAIT_SECS="${TANSU_WAIT_SECS:-60}"
PID_FILE="$DIR/tansu.pid"
LOG_FILE="$DIR/tansu.log"
# Loopback only: the broker has no authentication and must never be reachable
# from outside this machine.
HOST=127.0.0.1

find_bin() {
    if [[ -n "${TANSU_BIN:-}" ]]; then
        echo "$TANSU_BIN"
    elif command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
    else
        echo "tansu not found; run tests/scripts/install-tansu.sh" >&2
        return 1
    fi
}

running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid belonging to some other program.
    grep -q tansu "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

cmd_start() {
    local bin pid
    if pid="$(running_pid)"; then
        echo "tansu already running (pid $pid) on $HOST:$PORT"
        return 0
    fi
    if port_open; then
        echo "port $HOST:$PORT is already in use by another process" >&2
        return 1
    fi
    bin="$(find_bin)"
    mkdir -p "$DIR"
    # tansu reads its settings from the environment as well as flags; unset
    # the ones that could redirect it (a stray OTEL endpoint, a schema
    # registry) so the broker is the same on every machine.
    env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
        -u STORAGE_ENGINE -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
        RUST_LOG="${TANSU_LOG:-warn}" \
        setsid "$bin" broker \
        --cluster-id ionflux-test \
        --listener-url "tcp://$HOST:$PORT" \
        --advertised-listener-url "tcp://$HOST:${TANSU_ADVERTISED_PORT:-$PORT}" \
        --storage-engine memory://tansu/ \
        ${TANSU_AUTHENTICATION:+--authentication} \
        </dev/null >"$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "tansu started (pid $pid) on $HOST:$PORT, log $LOG_FILE"
}

cmd_wait() {
    local deadline=$((SECONDS + WAIT_SECS))
    while ! port_open; do
        # Just after `start` the broker may still be between its execs (env,
        # setsid, tansu), when /proc/PID/cmdline can read empty: only a miss
        # that persists means it is gone.
        if ! running_pid >/dev/null && ! { sleep 0.5; running_pid >/dev/null || port_open; }; then
            echo "tansu is not running; last log lines:" >&2
            tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "tansu did not open $HOST:$PORT within ${WAIT_SECS}s" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "tansu ready on $HOST:$PORT"
}

cmd_stop() {
    local pid i
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        echo "tansu not running"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "tansu stopped (pid $pid)"
}

cmd_run() {
    local started=0 rc=0
    running_pid >/dev/null || started=1
    cmd_start
    # Stop the broker even when the command fails, but only if we started it.
    if ((started)); then trap cmd_stop EXIT; fi
    cmd_wait
    IONFLUX_TEST_KAFKA_BROKERS="$HOST:$PORT" "$@" || rc=$?
    return "$rc"
}

case "${1:-}" in
start) cmd_start ;;
wait) cmd_wait ;;
stop) cmd_stop ;;
status) running_pid >/dev/null && echo "running" || { echo "stopped"; exit 1; } ;;
run)
    shift
    [[ $# -gt 0 ]] || { echo "usage: $0 run CMD..." >&2; exit 2; }
    cmd_run "$@"
    ;;
*)
    echo "usage: $0 start|wait|stop|status|run CMD..." >&2
    exit 2
    ;;
esac
