//! `bench`: load-test a gateway (see BENCHMARKS.md).

use std::sync::Arc;

use anyhow::{Result, bail};
use ionflux_gateway::config::{self, Settings};

use crate::{BenchArgs, load_vault, open_store};

pub(crate) async fn bench(
    cfg: &Settings,
    args: &BenchArgs,
    database_url: Option<&str>,
) -> Result<()> {
    use ionflux_gateway::bench::{self, Target};
    let gateway = if args.bare {
        None
    } else if let Some(url) = &args.target {
        Some(Target::Url {
            url: url.clone(),
            store: open_store(cfg).await?,
            vault: Arc::new(load_vault(cfg)?),
            topics: cfg.topics(),
            database: config::redact_url_password(&cfg.database_url),
        })
    } else if args.spawn {
        Some(Target::Spawn {
            settings: Box::new(cfg.clone()),
            database_url: database_url.map(str::to_owned),
        })
    } else {
        bail!("say what to load: --spawn, --target URL, or --bare");
    };
    let report = bench::run(bench::Options {
        gateway,
        bare: args.bare || args.compare_bare,
        brands: args.brands,
        payloads_dir: args.payloads.clone(),
        payload_size: args.payload_size,
        rate: args.rate,
        connections: args.connections,
        duration: args.duration,
        warmup: args.warmup,
        kafka_brokers: args.kafka_brokers.clone(),
        gateway_pid: args.gateway_pid,
        lag: !args.no_lag,
        drain_timeout: args.drain_timeout,
        request_timeout: args.request_timeout,
        client_threads: args.client_threads,
        max_body_bytes: cfg.max_body_bytes,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}
