//! `ionflux-gateway bench` as an operator runs it: an in-process gateway on
//! the embedded default (temporary SQLite, event log), a short open-loop
//! load, and the JSON report. Only the report's shape and the absence of
//! errors are checked, never how fast anything was.

use std::process::Command;

use ionflux_tests::{gateway_bin, shared_dir};
use serde_json::Value;

#[test]
fn bench_spawn_reports_json_without_errors() {
    let cwd = tempfile::tempdir().unwrap();
    let payloads = shared_dir().join("data/shopify-webhooks");
    let out = Command::new(gateway_bin())
        .args([
            "bench",
            "--spawn",
            "--duration",
            "2s",
            "--rate",
            "200",
            "--json",
        ])
        .arg("--payloads")
        .arg(&payloads)
        // Nothing of the machine's IONFLUX_* or RUST_LOG may change the run.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(cwd.path())
        .output()
        .expect("running ionflux-gateway bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {stdout}"));

    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(report["bare"].is_null(), "no bare phase was asked for");
    let g = &report["gateway"];
    assert_eq!(g["sink"], "event_log");
    assert_eq!(g["rate"], "200/s");
    assert!(g["payloads"]["count"].as_u64().unwrap() > 0);

    let acked = g["acked"].as_u64().unwrap();
    assert!(acked > 0, "nothing was acked: {g}");
    assert_eq!(g["sent"].as_u64().unwrap(), acked, "{g}");
    assert_eq!(g["errors_total"], 0, "{g}");
    assert_eq!(g["errors"], serde_json::json!({}), "{g}");
    assert_eq!(g["not_sent"], 0, "{g}");
    assert!(g["throughput_acked_per_s"].as_f64().unwrap() > 0.0);

    for key in ["count", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(
            g["ack_latency_ms"][key].is_number(),
            "ack_latency_ms.{key}: {g}"
        );
        assert!(
            g["lag"]["latency_ms"][key].is_number(),
            "lag.latency_ms.{key}: {g}"
        );
    }
    assert_eq!(g["ack_latency_ms"]["count"].as_u64().unwrap(), acked);
    // Every acked webhook became an event in the log, and the collector
    // found each one by its webhook id.
    assert_eq!(g["lag"]["source"], "event_log");
    assert_eq!(g["lag"]["expected"].as_u64().unwrap(), acked, "{g}");
    assert_eq!(g["lag"]["seen"].as_u64().unwrap(), acked, "{g}");
    assert_eq!(g["lag"]["errors"], serde_json::json!([]), "{g}");

    assert!(g["rss"]["peak_hwm_mib"].as_f64().unwrap() > 0.0, "{g}");
    assert!(g["cpu"]["cpu_s"].is_number(), "{g}");
}
