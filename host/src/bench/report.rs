//! What a bench run reports, as JSON (`--json`) and as a summary for people,
//! and the facts about the machine and processes it reads from `/proc`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The whole run: the machine, then each phase that ran.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub gateway: Option<RunReport>,
    pub bare: Option<RunReport>,
    /// Gateway acked/s over bare handler acked/s, when both ran.
    pub gateway_to_bare: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub mem_total_mib: Option<u64>,
    pub kernel: Option<String>,
}

/// One load phase against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// What was measured, e.g. `in-process gateway`, `bare handler`, a URL.
    pub target: String,
    /// `event_log`, `kafka`, or None for the bare handler.
    pub sink: Option<String>,
    /// The database behind the gateway (password redacted), if known.
    pub database: Option<String>,
    pub rate: String,
    /// Latencies are measured from each request's due time (open loop), or
    /// from its send (closed loop, `--rate max`).
    pub loop_kind: &'static str,
    pub connections: usize,
    pub brands: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub payloads: PayloadStats,
    /// Requests of the measured window answered or failed.
    pub sent: u64,
    /// Of those, answered 2xx.
    pub acked: u64,
    /// Window slots a fixed rate asked for but the generator never sent.
    pub not_sent: u64,
    pub errors_total: u64,
    /// By kind: `http_<status>`, `timeout`, `connect: …`, `io: …`.
    pub errors: BTreeMap<String, u64>,
    pub throughput_acked_per_s: f64,
    pub ack_latency_ms: Latency,
    pub lag: Option<LagReport>,
    pub rss: Option<RssReport>,
    pub cpu: Option<CpuReport>,
    /// The 1/5/15-minute load averages when the phase began: anything much
    /// above zero means something else was running, and the numbers are
    /// measured under contention.
    pub load_average_before: Option<[f64; 3]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadStats {
    pub count: usize,
    pub min_bytes: usize,
    pub mean_bytes: usize,
    pub max_bytes: usize,
    pub skipped_lifecycle: usize,
    pub skipped_size: usize,
}

/// Milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_us(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    /// `event_log` (polled every 10 ms: lag has that resolution) or `kafka`.
    pub source: &'static str,
    /// Measured webhooks acked, so expected as events.
    pub expected: u64,
    /// Of those, seen at the sink before the collector gave up.
    pub seen: u64,
    /// Send → event visible at the sink.
    pub latency_ms: Latency,
    /// From the end of the measured window to the last event seen: how long
    /// the dispatcher took to catch up with intake.
    pub drain_s: f64,
    /// Events seen per second from the window's start to the last one: the
    /// dispatcher's sustained rate when it drains a backlog.
    pub events_per_s: f64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RssReport {
    pub pid: u32,
    /// Whether the load generator shares the process (in-process gateway):
    /// then its memory is included.
    pub includes_load_generator: bool,
    /// The kernel's high-water mark (VmHWM). For this process it is reset
    /// before the phase; for another process it covers its whole life.
    pub peak_hwm_mib: Option<f64>,
    /// The largest VmRSS seen, sampled every 100 ms during the phase.
    pub peak_sampled_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub pid: u32,
    pub includes_load_generator: bool,
    /// User + system CPU time of the process over warmup and window.
    pub cpu_s: f64,
    /// `cpu_s` over the wall time: how many cores it kept busy.
    pub cores_busy: f64,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| kib_field(&m, "MemTotal:"))
            .map(|kib| kib / 1024);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `VmRSS` and `VmHWM` of a process, KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<(u64, u64)> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    Some((kib_field(&status, "VmRSS:")?, kib_field(&status, "VmHWM:")?))
}

/// Resets this process's VmHWM to its current RSS, so a phase's peak is its
/// own and not the previous phase's (Linux ≥ 4.0; ignored elsewhere).
pub fn reset_own_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc counts in USER_HZ, which the kernel's ABI fixes at 100.
    Some((utime + stime) / 100.0)
}

pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

impl Report {
    /// The summary for people.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} cores, {}, {} MiB RAM",
            m.nproc,
            m.cpu_model.as_deref().unwrap_or("unknown CPU"),
            m.mem_total_mib.map_or("?".into(), |v| v.to_string())
        );
        for run in [&self.gateway, &self.bare].into_iter().flatten() {
            s.push('\n');
            run.human(&mut s, m.nproc);
        }
        if let Some(ratio) = self.gateway_to_bare {
            let _ = writeln!(
                s,
                "\ngateway / bare handler: {:.1}% of the bare handler's acked/s",
                ratio * 100.0
            );
        }
        s
    }
}

impl RunReport {
    fn human(&self, s: &mut String, nproc: usize) {
        let _ = writeln!(
            s,
            "== {}{}",
            self.target,
            self.sink
                .as_deref()
                .map_or(String::new(), |k| format!(" → {k}"))
        );
        if let Some(db) = &self.database {
            let _ = writeln!(s, "database:    {db}");
        }
        let _ = writeln!(
            s,
            "load:        rate {} ({}), {} connections, {} brands, warmup {:.1}s, window {:.1}s",
            self.rate,
            self.loop_kind,
            self.connections,
            self.brands,
            self.warmup_s,
            self.duration_s
        );
        let p = &self.payloads;
        let _ = writeln!(
            s,
            "payloads:    {} samples, {}–{} bytes (mean {}); skipped {} lifecycle, {} by size",
            p.count, p.min_bytes, p.max_bytes, p.mean_bytes, p.skipped_lifecycle, p.skipped_size
        );
        if let Some(l) = self.load_average_before
            && l[0] > 0.5 * nproc as f64
        {
            let _ = writeln!(
                s,
                "WARNING:     load average {:.2} before the run: measured under contention",
                l[0]
            );
        }
        let _ = writeln!(
            s,
            "throughput:  {:.0} acked/s ({} acked of {} sent, {} errors, {} not sent)",
            self.throughput_acked_per_s, self.acked, self.sent, self.errors_total, self.not_sent
        );
        let a = &self.ack_latency_ms;
        let _ = writeln!(
            s,
            "ack latency: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            a.p50, a.p90, a.p99, a.p999, a.max
        );
        for (kind, n) in &self.errors {
            let _ = writeln!(s, "  error {kind}: {n}");
        }
        if let Some(lag) = &self.lag {
            let l = &lag.latency_ms;
            let _ = writeln!(
                s,
                "end-to-end:  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} of {} events seen in the {}; drained {:.1}s after the window, {:.0} events/s)",
                l.p50,
                l.p90,
                l.p99,
                l.max,
                lag.seen,
                lag.expected,
                lag.source,
                lag.drain_s,
                lag.events_per_s
            );
            for e in &lag.errors {
                let _ = writeln!(s, "  lag collector: {e}");
            }
        }
        if let Some(r) = &self.rss {
            let _ = writeln!(
                s,
                "peak RSS:    {:.1} MiB sampled{} (pid {}{})",
                r.peak_sampled_mib,
                r.peak_hwm_mib
                    .map_or(String::new(), |h| format!(", {h:.1} MiB VmHWM")),
                r.pid,
                if r.includes_load_generator {
                    ", load generator included"
                } else {
                    ""
                }
            );
        }
        if let Some(c) = &self.cpu {
            let _ = writeln!(
                s,
                "cpu:         {:.1} s, {:.2} cores busy (pid {}{})",
                c.cpu_s,
                c.cores_busy,
                c.pid,
                if c.includes_load_generator {
                    ", load generator included"
                } else {
                    ""
                }
            );
        }
    }
}
