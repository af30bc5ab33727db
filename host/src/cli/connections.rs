//! `connections`: accounts connected by hand, their webhook registrations.

use std::io::Read;

use anyhow::{Context, Result};
use ionflux_gateway::api::admin;
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::connection;
use ionflux_gateway::providers::shopify::oauth;
use ionflux_gateway::support::vault::Secret;

use crate::{ConnectionsCommand, load_vault, open_store};

/// `connections add` takes the secret on stdin, never as an argument that
/// `ps` or a shell history would show.
pub(crate) fn read_webhook_secret() -> Result<Secret> {
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .context("reading the webhook secret from stdin")?;
    Ok(Secret::from(secret.trim().to_string()))
}

pub(crate) async fn connections(cfg: &Settings, cmd: &ConnectionsCommand) -> Result<()> {
    match cmd {
        ConnectionsCommand::Add {
            provider,
            account,
            workspace,
            brand,
            previous_secret_window,
            ..
        } => {
            let workspace = workspace
                .as_deref()
                .context("--workspace is required without --admin-url")?;
            let providers = ionflux_gateway::providers::all();
            let Some(provider) = providers.iter().find(|p| p.id() == provider) else {
                let known: Vec<_> = providers.iter().map(|p| p.id()).collect();
                anyhow::bail!(
                    "no provider is called {provider:?} (known: {})",
                    known.join(", ")
                );
            };
            let store = open_store(cfg).await?;
            let vault = load_vault(cfg)?;
            let secret = read_webhook_secret()?;
            let settings = cmd.settings().unwrap_or_default();
            let new = connection::NewConnection {
                account,
                workspace,
                brand,
                secret: &secret,
                settings: &settings,
                previous_window: previous_secret_window
                    .unwrap_or(cfg.connections.previous_secret_window),
            };
            let created = connection::add(&store, &vault, provider.as_ref(), &new).await?;
            println!("{}", serde_json::to_string(&created)?);
            Ok(())
        }
        ConnectionsCommand::Webhooks { connection_id } => {
            let store = open_store(cfg).await?;
            for r in oauth::webhook_registrations(&store, connection_id).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        ConnectionsCommand::List => {
            let store = open_store(cfg).await?;
            for c in admin::connections(&store, None).await? {
                println!("{}", serde_json::to_string(&c)?);
            }
            Ok(())
        }
    }
}
