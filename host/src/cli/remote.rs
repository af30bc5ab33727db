//! The commands that, given `--admin-url`, go through a running gateway's
//! admin API instead of opening the database: `transforms`, `routes`,
//! `dead-letters`, `events`, `connections` and `webhooks list`/`show`.
//! They need no database URL and no master key, and the token's scope
//! applies (a workspace token sees and changes only its own workspace).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ionflux_gateway::api::admin::body::{
    AddConnectionBody, Credentials, PromoteBody, ReplayBody, RouteBody, ShadowQuery, WebhookSecret,
};
use ionflux_gateway::api::admin_client::{AdminClient, ClientError};
use ionflux_gateway::store::LoggedEvent;
use ionflux_gateway::support::vault::Secret;

use crate::{
    Command, ConnectionsCommand, DeadLettersCommand, EventsCommand, RoutesCommand,
    TransformsCommand, WebhooksCommand,
};

#[derive(Args)]
pub struct RemoteArgs {
    /// A running gateway's admin listener, e.g. `http://127.0.0.1:9090`.
    /// With it, the `transforms`, `routes`, `dead-letters`, `events`,
    /// `connections` and `webhooks list`/`show` commands go through its
    /// admin API: no database URL
    /// and no master key needed, and the token's scope applies.
    #[arg(long, global = true, env = "IONFLUX_ADMIN_URL", value_name = "URL")]
    admin_url: Option<String>,

    /// The bearer token for --admin-url: an operator's, or a workspace's
    /// (`tokens create`). Default: IONFLUX_TOKEN, else IONFLUX_ADMIN_TOKEN
    /// (the operator token a gateway is configured with).
    #[arg(
        long,
        global = true,
        env = "IONFLUX_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

impl RemoteArgs {
    /// The client, when an admin URL was given.
    pub fn client(&self) -> Result<Option<AdminClient>> {
        let Some(url) = self.admin_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        // The server's own operator token: what an operator on the gateway
        // host already has in the environment.
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("IONFLUX_ADMIN_TOKEN").ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .context("--admin-url needs a bearer token: --token or IONFLUX_TOKEN")?;
        Ok(Some(AdminClient::new(url, Secret::from(token))?))
    }
}

/// Runs `command` through the admin API; None when it is not one the API
/// serves (it then runs locally: `transforms new`, `transforms test`,
/// `webhooks send` and every command outside these groups).
pub async fn run(client: &AdminClient, command: &Command) -> Option<Result<()>> {
    let done = match command {
        Command::Transforms(TransformsCommand::New { .. } | TransformsCommand::Test { .. }) => {
            return None;
        }
        Command::Transforms(cmd) => transforms(client, cmd).await,
        Command::Routes(cmd) => routes(client, cmd).await,
        Command::DeadLetters(cmd) => dead_letters(client, cmd).await,
        Command::Events(EventsCommand::Tail {
            limit,
            json,
            follow,
        }) => tail_events(client, *limit, *json, *follow).await,
        Command::Connections(cmd) => connections(client, cmd).await,
        Command::Webhooks(WebhooksCommand::Send { .. }) => return None,
        Command::Webhooks(cmd) => webhooks(client, cmd).await,
        _ => return None,
    };
    Some(done.map_err(explain))
}

/// Turns a refused token into advice, since it is the usual mistake.
fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ClientError>().and_then(ClientError::code) {
        Some("unauthorized") => e.context(
            "the gateway refused the token: check --token / IONFLUX_TOKEN (a token from \
             `tokens create`, or the gateway's IONFLUX_ADMIN_TOKEN)",
        ),
        Some("forbidden") => e.context("this token's workspace may not do that"),
        _ => e,
    }
}

fn print_lines<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for item in items {
        writeln!(out, "{}", serde_json::to_string(&item)?)?;
    }
    out.flush()?;
    Ok(())
}

async fn transforms(client: &AdminClient, cmd: &TransformsCommand) -> Result<()> {
    match cmd {
        TransformsCommand::Push { file, name } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            print_lines([client.push_transform(name, bytes).await?])
        }
        TransformsCommand::List => print_lines(client.transforms().await?.transforms),
        TransformsCommand::Show { digest } => print_lines([client.transform(digest).await?]),
        TransformsCommand::New { .. } | TransformsCommand::Test { .. } => {
            unreachable!("run locally")
        }
    }
}

async fn routes(client: &AdminClient, cmd: &RoutesCommand) -> Result<()> {
    match cmd {
        RoutesCommand::Set {
            provider,
            topic,
            transform,
            workspace,
            brand,
            config,
            limits,
            shadow,
            actor: _,
        } => {
            let json = |what: &str, text: &Option<String>| -> Result<Option<serde_json::Value>> {
                text.as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .with_context(|| format!("--{what} is not JSON"))
            };
            // The history records the token's name: the gateway knows who
            // is calling, so `--actor` is not sent.
            let body = RouteBody {
                provider: provider.clone(),
                workspace_id: workspace.clone(),
                brand_id: brand.clone(),
                topic_pattern: topic.clone(),
                transform: transform.clone(),
                config: json("config", config)?,
                limits: json("limits", limits)?,
                shadow: shadow.clone(),
            };
            print_lines([client.set_route(&body).await?])
        }
        RoutesCommand::Promote {
            provider,
            topic,
            workspace,
            brand,
            actor: _,
        } => {
            let body = PromoteBody {
                provider: provider.clone(),
                workspace_id: workspace.clone(),
                brand_id: brand.clone(),
                topic_pattern: topic.clone(),
            };
            print_lines([client.promote_route(&body).await?])
        }
        RoutesCommand::List => print_lines(client.routes().await?.routes),
        RoutesCommand::History { limit } => {
            print_lines(client.route_history(*limit).await?.history)
        }
        RoutesCommand::Shadow { samples } => {
            let query = ShadowQuery {
                samples: *samples,
                limit: None,
            };
            let report = client.shadow_runs(&query).await?;
            print_lines(report.stats)?;
            print_lines(report.samples)
        }
    }
}

async fn dead_letters(client: &AdminClient, cmd: &DeadLettersCommand) -> Result<()> {
    match cmd {
        DeadLettersCommand::List {
            limit,
            json,
            filter,
        } => {
            let query = super::webhook_lookup::dead_letters_query(*limit, filter);
            let letters = client.dead_letters(&query).await?.dead_letters;
            super::dead_letters::print(letters, *json)
        }
        DeadLettersCommand::Replay { id, all, filter } => {
            let ids = super::dead_letters::selection(id, *all, &filter.store())?;
            let body = ReplayBody {
                ids: ids.map(<[i64]>::to_vec),
                all: *all,
                reason: filter.reason.clone(),
                since: filter.since.map(|t| t.to_string()),
                until: filter.until.map(|t| t.to_string()),
            };
            print_lines([client.replay_dead_letters(&body).await?])
        }
    }
}

async fn webhooks(client: &AdminClient, cmd: &WebhooksCommand) -> Result<()> {
    match cmd {
        WebhooksCommand::List(args) => {
            super::webhook_lookup::print_page(client.webhooks(&args.query()).await?)
        }
        WebhooksCommand::Show { id, body } => {
            super::webhook_lookup::print_one(&client.webhook(*id, *body).await?)
        }
        WebhooksCommand::Send { .. } => unreachable!("run locally"),
    }
}

async fn tail_events(client: &AdminClient, limit: i64, json: bool, follow: bool) -> Result<()> {
    let page = client.newest_events(limit.clamp(1, 1000)).await?;
    let mut last = page.next_after;
    print(page.events, json)?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let page = client.events_after(last, 1000).await?;
        last = page.next_after.max(last);
        print(page.events, json)?;
    }
}

/// Printed exactly as `events tail` prints the local log (only the
/// sequence number and the payload are shown).
fn print(events: Vec<ionflux_gateway::api::admin::body::EventItem>, json: bool) -> Result<()> {
    let events = events
        .into_iter()
        .map(|e| LoggedEvent {
            seq: e.seq,
            topic: e.topic,
            payload: e.event.get().to_string(),
            event_id: String::new(),
            key: String::new(),
            headers: String::new(),
            created_at: 0,
        })
        .collect();
    super::events::print_events(events, json).map(drop)
}

async fn connections(client: &AdminClient, cmd: &ConnectionsCommand) -> Result<()> {
    match cmd {
        ConnectionsCommand::List => print_lines(client.connections().await?.connections),
        ConnectionsCommand::Show { connection_id } => {
            print_lines([client.connection(connection_id).await?])
        }
        ConnectionsCommand::Disconnect { .. }
        | ConnectionsCommand::Pause { .. }
        | ConnectionsCommand::Resume { .. }
        | ConnectionsCommand::Reregister { .. }
        | ConnectionsCommand::Refresh { .. } => {
            let (action, id) = cmd.action().expect("an action");
            print_lines([client.connection_action(id, action.as_str()).await?])
        }
        ConnectionsCommand::Webhooks { connection_id } => print_lines(
            client
                .connection_webhooks(connection_id)
                .await?
                .registrations,
        ),
        ConnectionsCommand::Add {
            provider,
            account,
            workspace,
            brand,
            previous_secret_window,
            ..
        } => {
            // The secret goes to the gateway, which encrypts it with its
            // master key: this side needs none. With API credentials, the
            // gateway chooses the secret and registers the webhooks.
            let credentials = super::connections::credentials(cmd)?;
            let webhook_secret = match credentials {
                Some(_) => None,
                None => Some(WebhookSecret(super::connections::read_webhook_secret()?)),
            };
            let body = AddConnectionBody {
                provider: provider.clone(),
                account: account.clone(),
                settings: cmd.settings(),
                workspace_id: workspace.clone(),
                brand_id: brand.clone(),
                webhook_secret,
                credentials: credentials.map(Credentials),
                previous_secret_window_secs: previous_secret_window.map(|w| w.as_secs()),
            };
            print_lines([client.add_connection(&body).await?])
        }
    }
}
