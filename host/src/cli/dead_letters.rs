//! `dead-letters`: webhooks that could not become events; replay.

use std::io::Write;

use anyhow::{Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::store::{DeadLetterFilter, DeadLetterRow};

use crate::{DeadLettersCommand, open_store};

pub(crate) async fn dead_letters(cfg: &Settings, cmd: &DeadLettersCommand) -> Result<()> {
    match *cmd {
        DeadLettersCommand::Replay {
            ref id,
            all,
            ref reason,
            since,
            until,
        } => {
            let filter = filter(reason, since, until);
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
            ref reason,
            since,
            until,
        } => {
            let store = open_store(cfg).await?;
            let letters = store
                .find_dead_letters(None, &filter(reason, since, until), limit)
                .await?;
            print(letters, json)
        }
    }
}

pub(crate) fn filter(
    reason: &Option<String>,
    since: Option<i64>,
    until: Option<i64>,
) -> DeadLetterFilter {
    DeadLetterFilter {
        reason_code: reason.clone(),
        since,
        until,
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
