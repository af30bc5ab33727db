//! `chaos`: the reliability harness by hand. Runs scenarios against real
//! gateway processes and prints one line of counts per scenario and backend;
//! exits non-zero unless every line says `lost=0`.
//!
//!   cargo build -p ionflux-gateway
//!   cargo run -p ionflux-tests --bin chaos -- [--long] [--scenario NAME]... [--backend sqlite|postgres]...
//!
//! Scenarios: kill, broker-down, pg-restart, two-replicas, slow-senders
//! (default: all). Backends: sqlite, postgres (default: both). `--long` runs
//! the long form (minutes per scenario); without it, the short form CI runs.

use anyhow::{Result, bail};
use ionflux_tests::chaos::{self, Backend, Plan, Scenario};

#[tokio::main]
async fn main() -> Result<()> {
    let mut plan = Plan::short();
    let mut scenarios = Vec::new();
    let mut backends = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--long" => plan = Plan::long(),
            "--scenario" => {
                let name = args.next().unwrap_or_default();
                match Scenario::parse(&name) {
                    Some(s) => scenarios.push(s),
                    None => bail!("unknown scenario {name:?}"),
                }
            }
            "--backend" => match args.next().as_deref() {
                Some("sqlite") => backends.push(Backend::Sqlite),
                Some("postgres") => backends.push(Backend::Postgres),
                other => bail!("unknown backend {other:?}"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: chaos [--long] [--scenario kill|broker-down|pg-restart|two-replicas|slow-senders]... [--backend sqlite|postgres]..."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if scenarios.is_empty() {
        scenarios = Scenario::ALL.to_vec();
    }
    if backends.is_empty() {
        backends = Backend::ALL.to_vec();
    }
    let mut failed = 0;
    for backend in &backends {
        for scenario in &scenarios {
            if !scenario.applies_to(*backend) {
                continue;
            }
            let report = chaos::run(*scenario, *backend, &plan).await?;
            println!("{report}");
            if !report.passed() {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} scenario(s) lost acknowledged webhooks or acknowledged abusive requests");
    }
    Ok(())
}
