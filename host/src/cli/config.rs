//! `config check`: the effective settings, then what they name, reached.

use std::time::Duration;

use anyhow::{Result, bail};
use ionflux_gateway::config::{self, Settings};
use ionflux_gateway::store::StoreError;
use ionflux_gateway::support::vault::Vault;

use crate::given_key_source;

/// `config check`: one line per check, `ok`, `absent` (not there yet;
/// `serve` creates it) or `FAILED`, then an error when one failed.
pub(crate) async fn config_check(cfg: &Settings, timeout: Duration) -> Result<()> {
    let mut failed = Vec::new();
    let mut report = |name: &'static str, outcome: Result<String, String>| {
        let (status, detail) = match outcome {
            Ok(detail) => match detail.strip_prefix("absent: ") {
                Some(rest) => ("absent", rest.to_owned()),
                None => ("ok", detail),
            },
            Err(detail) => {
                failed.push(name);
                ("FAILED", detail)
            }
        };
        println!("{status:<7}{name:<11}{detail}");
    };
    report("settings", Ok("valid".into()));

    let shown = config::redact_url_password(&cfg.database_url);
    let probe = tokio::time::timeout(timeout, ionflux_gateway::store::probe(&cfg.database_url));
    report(
        "database",
        match probe.await {
            Ok(Ok(_)) => Ok(format!("{shown} answers")),
            Ok(Err(StoreError::NoDatabase(path))) => Ok(format!(
                "absent: no database file at {} yet; `serve` creates it",
                path.display()
            )),
            Ok(Err(e)) => Err(format!("{shown}: {e}")),
            Err(_) => Err(format!("{shown}: no answer within {timeout:?}")),
        },
    );

    report(
        "master key",
        if let Some(source) = given_key_source(cfg) {
            let from = source.describe();
            Vault::from_source(source.as_ref())
                .map(|v| format!("{from}: active key {}", v.active_key_id()))
                .map_err(|e| format!("{from}: {e}"))
        } else {
            match cfg.master_key_file() {
                None => Err(
                    "set master_key_file, master_key_command or master_keys for this database"
                        .into(),
                ),
                Some(path) if !path.exists() => Ok(format!(
                    "absent: no key file at {} yet; `serve` creates it",
                    path.display()
                )),
                Some(path) => Vault::from_file(&path)
                    .map(|v| format!("{}: active key {}", path.display(), v.active_key_id()))
                    .map_err(|e| format!("{}: {e}", path.display())),
            }
        },
    );

    report(
        "kafka",
        match cfg.kafka() {
            None => Ok("not configured: events go to the embedded event log".into()),
            Some(kafka) => {
                let brokers = kafka.brokers.clone();
                match ionflux_gateway::pipeline::publish::kafka::KafkaSink::new(kafka) {
                    Err(e) => Err(format!("{brokers}: {e}")),
                    Ok(sink) if sink.ready(timeout).await => Ok(format!("{brokers} answers")),
                    Ok(_) => Err(format!(
                        "{brokers}: no broker answered a metadata request within {timeout:?}"
                    )),
                }
            }
        },
    );

    report(
        "shopify",
        match cfg.shopify() {
            Ok(None) => Ok("not configured: OAuth install off".into()),
            Ok(Some(s)) => Ok(format!("app {}", s.client_id)),
            Err(e) => Err(e.to_string()),
        },
    );

    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
