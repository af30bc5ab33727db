//! `prune [--dry-run]`: the retention windows applied once, from the
//! command line, as the server's pruner applies them.

use anyhow::Result;
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::prune;
use ionflux_gateway::store::now_ms;

use crate::open_store;

pub(crate) async fn prune(cfg: &Settings, dry_run: bool) -> Result<()> {
    let store = open_store(cfg).await?;
    let retention = cfg.retention.config();
    let counted = if dry_run {
        prune::dry_run(&store, &retention, now_ms()).await?
    } else {
        prune::prune_once(&store, &retention, now_ms()).await?
    };
    println!(
        "{}",
        serde_json::json!({ "dry_run": dry_run, "rows": counted })
    );
    Ok(())
}
