//! `dead-letters`: webhooks that could not become events; replay.

use std::io::Write;

use anyhow::Result;
use ionflux_gateway::config::Settings;

use crate::{DeadLettersCommand, open_store};

pub(crate) async fn dead_letters(cfg: &Settings, cmd: &DeadLettersCommand) -> Result<()> {
    match *cmd {
        DeadLettersCommand::Replay { ref id, all } => {
            let store = open_store(cfg).await?;
            let ids = (!all).then_some(id.as_slice());
            let replayed = store.replay_dead_letters(ids, None).await?.replayed;
            println!("{}", serde_json::json!({ "replayed": replayed }));
            Ok(())
        }
        DeadLettersCommand::List { limit, json } => {
            let store = open_store(cfg).await?;
            let mut out = std::io::stdout().lock();
            for d in store.dead_letters(limit).await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&d)?)?;
                } else {
                    writeln!(
                        out,
                        "#{} inbox={} topic={} webhook={} {}: {}",
                        d.id, d.inbox_id, d.topic, d.webhook_id, d.reason_code, d.reason
                    )?;
                }
            }
            Ok(())
        }
    }
}
