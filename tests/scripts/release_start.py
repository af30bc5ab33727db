#!/usr/bin/env python3
"""A release build's size and start time (issue 17.3), for BENCHMARKS.md.

    python3 tests/scripts/release_start.py [--runs 7] [--binary PATH]

Builds the release binary (`cargo build --release -p ionflux-gateway`,
unless --binary names one), reports its size as built and stripped (and
the stripped binary gzipped, about what an image layer adds), then times
`serve` from spawn to the first 200 from `/ready`:

- first start: an empty data directory each run (the database, the key
  file and the compiled-transform cache are all made);
- restart: the same data directory again (migrations already applied, the
  transform cache warm).

Each start is the embedded default (SQLite + the event log), the public
listener on a free loopback port, the admin listener off; the gateway is
stopped with SIGTERM between runs. Medians of --runs runs are printed, with
the minimum and maximum. This is a measurement, not a test: nothing here
runs in the test command.

Standard library only, plus `strip` from binutils.
"""

import argparse
import gzip
import http.client
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_WITHIN = 120.0


def build() -> str:
    started = time.monotonic()
    subprocess.run(
        ["cargo", "build", "--release", "-p", "ionflux-gateway"], cwd=ROOT, check=True
    )
    print(f"build: {time.monotonic() - started:.0f} s (depends on what was already built)")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "ionflux-gateway")


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB ({n:,} bytes)"


def sizes(binary: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stripped = os.path.join(tmp, "ionflux-gateway")
        shutil.copy(binary, stripped)
        subprocess.run(["strip", stripped], check=True)
        with open(stripped, "rb") as f:
            packed = len(gzip.compress(f.read(), compresslevel=6))
        print(f"size as built:    {mib(os.path.getsize(binary))}")
        print(f"size stripped:    {mib(os.path.getsize(stripped))}")
        print(f"stripped, gzip -6: {mib(packed)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_once(binary: str, data_dir: str) -> float:
    """Seconds from spawn to the first 200 from /ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    env["RUST_LOG"] = "warn"
    args = [binary, "serve", "--data-dir", data_dir,
            "--listen", f"127.0.0.1:{port}", "--admin-listen", "off"]
    with open(os.path.join(data_dir, "serve.log"), "ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=data_dir, env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        try:
            while not ready(port):
                if proc.poll() is not None:
                    sys.exit(f"serve exited with {proc.returncode}; see {data_dir}/serve.log")
                if time.perf_counter() - started > READY_WITHIN:
                    sys.exit(f"not ready within {READY_WITHIN:.0f} s; see {data_dir}/serve.log")
                time.sleep(0.002)
            took = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return took


def report(name: str, runs: list) -> None:
    ms = sorted(r * 1000 for r in runs)
    print(f"{name}: median {statistics.median(ms):.0f} ms "
          f"(min {ms[0]:.0f}, max {ms[-1]:.0f}, {len(ms)} runs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--binary", help="time this binary; do not build")
    a = p.parse_args()
    binary = a.binary or build()
    print(f"binary: {binary}")
    print(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"load {os.getloadavg()[0]:.2f}")
    sizes(binary)
    with tempfile.TemporaryDirectory(prefix="ionflux-start-") as tmp:
        first = []
        for i in range(a.runs):
            d = os.path.join(tmp, f"fresh-{i}")
            os.mkdir(d)
            first.append(start_once(binary, d))
        report("first start (empty data dir)", first)
        again = os.path.join(tmp, "again")
        os.mkdir(again)
        start_once(binary, again)  # makes the database, the key and the cache
        report("restart (existing database)",
               [start_once(binary, again) for _ in range(a.runs)])


if __name__ == "__main__":
    main()
