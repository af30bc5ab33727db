//! `connections`: accounts connected by hand, their webhook registrations.

use std::io::Read;

use anyhow::{Context, Result};
use ionflux_gateway::api::admin;
use ionflux_gateway::api::admin::connection_actions as actions;
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::connection;
use ionflux_gateway::pipeline::provider::Proposed;
use ionflux_gateway::pipeline::registration::{self, Registration};
use ionflux_gateway::providers::shopify::oauth;
use ionflux_gateway::support::vault::Secret;
use serde_json::{Value, json};

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

/// The API credentials `connections add` registers with: `--consumer-key`
/// and the consumer secret from `--consumer-secret-file`, else
/// `IONFLUX_CONSUMER_SECRET` (never an argument, which `ps` would show).
/// None without `--consumer-key`.
pub(crate) fn credentials(cmd: &ConnectionsCommand) -> Result<Option<Value>> {
    let ConnectionsCommand::Add { register, .. } = cmd else {
        return Ok(None);
    };
    let Some(key) = &register.consumer_key else {
        return Ok(None);
    };
    let secret = match &register.consumer_secret_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the consumer secret from {}", path.display()))?,
        None => std::env::var(CONSUMER_SECRET_VARIABLE).with_context(|| {
            format!("--consumer-key needs the consumer secret: --consumer-secret-file or {CONSUMER_SECRET_VARIABLE}")
        })?,
    };
    let secret = secret.trim();
    anyhow::ensure!(!secret.is_empty(), "the consumer secret is empty");
    Ok(Some(
        json!({"consumer_key": key.trim(), "consumer_secret": secret}),
    ))
}

const CONSUMER_SECRET_VARIABLE: &str = "IONFLUX_CONSUMER_SECRET";

/// What the connection actions need on the database's host, from the
/// configuration. The master key is optional: only `reregister` with kept
/// credentials needs it. No token refresher: the app's credentials are the
/// running gateway's, so a refresh is asked of it (`--admin-url`).
struct Local {
    store: ionflux_gateway::store::Store,
    vault: Option<ionflux_gateway::support::vault::Vault>,
    providers: ionflux_gateway::pipeline::provider::Providers,
    refreshers: std::collections::HashMap<
        &'static str,
        std::sync::Arc<ionflux_gateway::providers::refresh::Refresher>,
    >,
    public_base_url: Option<String>,
    options: registration::ProviderOptions,
}

impl Local {
    async fn open(cfg: &Settings) -> Result<Self> {
        Ok(Self {
            store: open_store(cfg).await?,
            vault: load_vault(cfg).ok(),
            providers: ionflux_gateway::pipeline::provider::Providers::new(
                ionflux_gateway::providers::all(),
            ),
            refreshers: Default::default(),
            public_base_url: cfg.public_base_url(),
            options: cfg.provider_options(),
        })
    }

    fn context(&self) -> actions::Context<'_> {
        actions::Context {
            store: &self.store,
            vault: self.vault.as_ref(),
            providers: &self.providers,
            refreshers: &self.refreshers,
            public_base_url: self.public_base_url.as_deref(),
            provider_options: &self.options,
        }
    }
}

/// An action's error as the API says it: `code: message`.
fn action_error(e: actions::ActionError) -> anyhow::Error {
    let api = ionflux_gateway::api::http::ApiError::from(e);
    anyhow::anyhow!("{}: {}", api.code, api.message)
}

pub(crate) async fn connections(cfg: &Settings, cmd: &ConnectionsCommand) -> Result<()> {
    match cmd {
        ConnectionsCommand::Add {
            provider,
            account,
            workspace,
            brand,
            previous_secret_window,
            register,
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
            let credentials = credentials(cmd)?;
            let store = open_store(cfg).await?;
            let vault = load_vault(cfg)?;
            let settings = cmd.settings().unwrap_or_default();
            let (secret, registering) = match &credentials {
                None => (read_webhook_secret()?, None),
                Some(credentials) => {
                    let registrar = provider.registrar().with_context(|| {
                        format!(
                            "{}'s webhooks are set up in its own dashboard: leave out \
                             --consumer-key and give the secret on stdin",
                            provider.id()
                        )
                    })?;
                    let base = register
                        .public_base_url
                        .clone()
                        .or_else(|| cfg.public_base_url())
                        .context(
                            "registering webhooks needs the gateway's public address: \
                             --public-base-url or shopify.public_base_url",
                        )?;
                    // The connection's current secret when it exists, so
                    // that running this again changes nothing.
                    let checked = provider
                        .check_connection(&Proposed {
                            account,
                            settings: &settings,
                            secret: b"-",
                        })
                        .map_err(anyhow::Error::msg)?;
                    let brand = uuid::Uuid::parse_str(brand.trim())
                        .context("--brand must be a UUID")?
                        .to_string();
                    let existing = store
                        .connection_for_shop(provider.id(), &checked.account, &brand)
                        .await?;
                    let secret = registration::secret_for(&vault, existing.as_ref())?;
                    registrar
                        .check(credentials, &secret)
                        .map_err(anyhow::Error::msg)?;
                    (secret, Some((registrar, credentials, base)))
                }
            };
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
            let mut out = serde_json::to_value(&created)?;
            if let Some((registrar, credentials, base)) = registering {
                let address = registration::address(&base, &created.webhook_path);
                let options = cfg.provider_options();
                let req = Registration {
                    account: &created.account,
                    settings: &settings,
                    secret: &secret,
                    address: &address,
                    credentials,
                    options: options.get(provider.id()),
                };
                let registered = registration::register_connection(
                    &store,
                    &vault,
                    registrar,
                    &created.connection_id,
                    req,
                )
                .await
                .with_context(|| {
                    format!(
                        "registering the webhooks (the connection {} is saved; run the same \
                         command again to retry)",
                        created.connection_id
                    )
                })?;
                out["registrations"] = serde_json::to_value(registered)?;
            }
            println!("{out}");
            Ok(())
        }
        ConnectionsCommand::Webhooks { connection_id } => {
            let store = open_store(cfg).await?;
            for r in oauth::webhook_registrations(&store, connection_id).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        ConnectionsCommand::Show { connection_id } => {
            let local = Local::open(cfg).await?;
            let view = actions::view(local.context(), connection_id)
                .await
                .map_err(action_error)?
                .with_context(|| format!("no connection has the id {connection_id}"))?;
            println!("{}", serde_json::to_string(&view)?);
            Ok(())
        }
        ConnectionsCommand::Disconnect { .. }
        | ConnectionsCommand::Pause { .. }
        | ConnectionsCommand::Resume { .. }
        | ConnectionsCommand::Reregister { .. }
        | ConnectionsCommand::Refresh { .. } => {
            let (action, id) = cmd.action().expect("an action");
            let local = Local::open(cfg).await?;
            let answer = actions::act(local.context(), id, action, "cli")
                .await
                .map_err(action_error)?;
            println!("{}", serde_json::to_string(&answer)?);
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
