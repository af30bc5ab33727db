//! `tokens`: the admin API's bearer tokens (stored hashed, shown once).

use anyhow::{Result, bail};
use ionflux_gateway::api::admin::{self, TokenKind};
use ionflux_gateway::config::Settings;

use crate::{TokensCommand, open_store};

pub(crate) async fn tokens(cfg: &Settings, cmd: &TokensCommand) -> Result<()> {
    let store = open_store(cfg).await?;
    match cmd {
        TokensCommand::Create {
            name,
            operator,
            workspace,
        } => {
            let kind = if *operator {
                TokenKind::Operator
            } else {
                TokenKind::Workspace
            };
            let created = admin::create_token(&store, kind, workspace.as_deref(), name).await?;
            println!(
                "{}",
                serde_json::json!({
                    "id": created.id,
                    "name": created.name,
                    "kind": kind.as_str(),
                    "workspace_id": created.workspace_id,
                    // The only time the token is shown: only its hash is kept.
                    "token": String::from_utf8_lossy(created.token.expose()),
                })
            );
        }
        TokensCommand::List => {
            for t in admin::list_tokens(&store).await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TokensCommand::Revoke { id } => {
            if !admin::revoke_token(&store, id).await? {
                bail!("no live token with id {id}");
            }
            println!("{}", serde_json::json!({ "revoked": id }));
        }
    }
    Ok(())
}
