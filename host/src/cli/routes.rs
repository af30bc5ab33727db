//! `routes`: which transform serves which topic of a workspace or brand.

use anyhow::Result;
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::registry::{self, RouteSpec};

use crate::{RoutesCommand, open_store};

pub(crate) async fn routes(cfg: &Settings, cmd: &RoutesCommand) -> Result<()> {
    let store = open_store(cfg).await?;
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
            actor,
        } => {
            let spec = RouteSpec {
                provider: provider.clone(),
                workspace_id: workspace.clone(),
                brand_id: brand.clone(),
                topic_pattern: topic.clone(),
                transform: transform.clone(),
                config: config.clone(),
                limits: limits.clone(),
                shadow: shadow.clone(),
            };
            let row = registry::set_route(&store, &spec, actor).await?;
            println!("{}", serde_json::to_string(&row)?);
        }
        RoutesCommand::Promote {
            provider,
            topic,
            workspace,
            brand,
            actor,
        } => {
            let row = registry::promote(
                &store,
                provider,
                workspace.as_deref(),
                brand.as_deref(),
                topic,
                actor,
            )
            .await?;
            println!("{}", serde_json::to_string(&row)?);
        }
        RoutesCommand::Shadow { samples } => {
            for s in store.shadow_stats().await? {
                println!("{}", serde_json::to_string(&s)?);
            }
            if *samples {
                for s in store.shadow_samples(100).await? {
                    println!("{}", serde_json::to_string(&s)?);
                }
            }
        }
        RoutesCommand::List => {
            for r in store.routes().await? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        RoutesCommand::History { limit } => {
            for c in store.route_history(*limit).await? {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
    }
    Ok(())
}
