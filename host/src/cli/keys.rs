//! `keys` and `secrets`: master keys (never shown) and the stored secrets under them.

use anyhow::{Context, Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::support::vault::Vault;

use crate::{
    KeysCommand, SecretsCommand, WHERE_THE_DATA_IS, load_vault, master_key_file, open_store,
};

pub(crate) fn keys(cfg: &Settings, cmd: &KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::List => {
            let vault = load_vault(cfg)?;
            println!(
                "{}",
                serde_json::json!({
                    "keys": vault.key_ids(),
                    "active": vault.active_key_id(),
                    "key_file": vault.key_file(),
                })
            );
        }
        KeysCommand::Rotate => {
            if cfg.master_keys.is_empty() && !cfg.master_key_command.trim().is_empty() {
                bail!(
                    "the master keys come from master_key_command, which this command cannot \
                     change. To rotate: add a key (`openssl rand -base64 32`) as a new last \
                     `id:base64key` line where that command reads them (keep the old lines: \
                     the last one is active), restart every gateway, then run \
                     `ionflux-gateway secrets reencrypt`."
                );
            }
            if !cfg.master_keys.is_empty() {
                let ids = Vault::from_spec(cfg.master_keys.expose())
                    .map(|v| v.key_ids())
                    .unwrap_or_default();
                let next = (1..)
                    .map(|n| format!("k{}", ids.len() + n))
                    .find(|id| !ids.contains(id))
                    .expect("an unused id");
                bail!(
                    "the master keys come from IONFLUX_MASTER_KEYS (or --master-keys, or \
                     master_keys in the config file), which this command cannot change. \
                     To rotate: generate a key (`openssl rand -base64 32`), append \
                     `,{next}:<that key>` to the master keys (keep the old entries: the last \
                     one is active), restart every gateway with it, then run \
                     `ionflux-gateway secrets reencrypt` with the same master keys."
                );
            }
            let path = master_key_file(cfg)?;
            if !path.exists() {
                bail!(
                    "no master key file at {} (nothing to rotate): {WHERE_THE_DATA_IS}",
                    std::path::absolute(&path).unwrap_or(path).display()
                );
            }
            let id = Vault::append_new_key(&path)
                .with_context(|| format!("master key file {}", path.display()))?;
            let vault = Vault::from_file(&path)?;
            println!(
                "{}",
                serde_json::json!({
                    "key_id": id,
                    "active": vault.active_key_id(),
                    "keys": vault.key_ids(),
                    "key_file": path,
                })
            );
            eprintln!(
                "new writes now use key {id}; gateways reading {} take it up within \
                 seconds. Back the file up, then run `ionflux-gateway secrets reencrypt`; \
                 once `secrets reencrypt --check` passes, older keys may be removed.",
                path.display()
            );
        }
    }
    Ok(())
}

pub(crate) async fn secrets(cfg: &Settings, cmd: &SecretsCommand) -> Result<()> {
    use ionflux_gateway::support::secrets::{self, Options, SECRET_COLUMNS};
    let SecretsCommand::Reencrypt { check, batch } = *cmd;
    let store = open_store(cfg).await?;
    let vault = load_vault(cfg)?;
    let report = secrets::run(
        &store,
        &vault,
        SECRET_COLUMNS,
        Options {
            batch,
            check_only: check,
        },
    )
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    if report.failed > 0 {
        bail!(
            "{} stored secret(s) cannot be decrypted (see `failures`)",
            report.failed
        );
    }
    if check && !report.all_current() {
        bail!(
            "{} stored secret(s) are not under the active key {}; run `secrets reencrypt`",
            report.on_old_keys,
            report.active_key
        );
    }
    if !report.all_current() {
        bail!(
            "{} stored secret(s) are still under an older key (changed meanwhile); run again",
            report.on_old_keys
        );
    }
    Ok(())
}
