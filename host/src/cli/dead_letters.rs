//! `dead-letters`: webhooks that could not become events; replay.

use std::io::Write;

use anyhow::{Result, bail};
use clap::Args;
use ionflux_gateway::config::Settings;
use ionflux_gateway::store::{DeadLetterFilter, DeadLetterRow};

use crate::{DeadLettersCommand, open_store};

pub(crate) async fn dead_letters(cfg: &Settings, cmd: &DeadLettersCommand) -> Result<()> {
    match *cmd {
        DeadLettersCommand::Replay {
            ref id,
            all,
            ref filter,
        } => {
            let filter = filter.store();
            let ids = selection(id, all, &filter)?;
            let store = open_store(cfg).await?;
            let replayed = store
                .replay_dead_letters_matching(ids, None, &filter)
                .await?
                .replayed;
            println!("{}", serde_json::json!({ "replayed": replayed }));
            Ok(())
        }
        DeadLettersCommand::List {
            limit,
            json,
            ref filter,
        } => {
            let store = open_store(cfg).await?;
            let letters = store
                .find_dead_letters(None, &filter.store(), limit)
                .await?;
            print(letters, json)
        }
    }
}

/// Which dead letters `list` and `replay` take, by reason and time.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only this reason_code (trap, invalid_output, …).
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead-lettered at or after: RFC 3339, epoch ms, or a time ago (2h).
    #[arg(long, value_parser = super::webhook_lookup::instant)]
    pub since: Option<i64>,
    /// Dead-lettered before: RFC 3339, epoch ms, or a time ago.
    #[arg(long, value_parser = super::webhook_lookup::instant)]
    pub until: Option<i64>,
}

impl FilterArgs {
    pub fn store(&self) -> DeadLetterFilter {
        DeadLetterFilter {
            reason_code: self.reason.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

/// Which letters a replay names: `--id`s, or all (None); with neither, the
/// filters alone select.
pub(crate) fn selection<'a>(
    id: &'a [i64],
    all: bool,
    filter: &DeadLetterFilter,
) -> Result<Option<&'a [i64]>> {
    if id.is_empty() && !all && *filter == DeadLetterFilter::default() {
        bail!("say which: --id, --all, or a filter (--reason, --since, --until)");
    }
    Ok((!id.is_empty()).then_some(id))
}

pub(crate) fn print(letters: Vec<DeadLetterRow>, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for d in letters {
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
