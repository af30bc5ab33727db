//! `webhooks send`: a test webhook signed as its platform signs them
//! (`Provider::sign_test`), from a file or one of Shopify's samples
//! compiled into the binary.

use std::io::Read;

use anyhow::{Context, Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::connection;
use ionflux_gateway::pipeline::provider::TestDelivery;
use ionflux_gateway::providers::shopify;

use crate::{WebhooksCommand, load_vault, open_store};

/// An account as typed and as stored compare equal up to case and a
/// trailing slash (a WooCommerce site is stored `https://shop.example/`).
fn same_account(typed: &str, stored: &str) -> bool {
    let norm = |a: &str| a.trim().trim_end_matches('/').to_ascii_lowercase();
    norm(typed) == norm(stored)
}

pub(crate) async fn send_webhook(cfg: &Settings, cmd: &WebhooksCommand) -> Result<()> {
    let WebhooksCommand::Send {
        provider,
        account,
        brand,
        topic,
        file,
        api_version,
        webhook_id,
        gateway_url,
    } = cmd
    else {
        bail!("not `webhooks send`");
    };
    let providers = ionflux_gateway::providers::all();
    let Some(platform) = providers.iter().find(|p| p.id() == provider) else {
        let known: Vec<_> = providers.iter().map(|p| p.id()).collect();
        bail!(
            "no provider is called {provider:?} (known: {})",
            known.join(", ")
        );
    };
    let store = open_store(cfg).await?;
    let vault = load_vault(cfg)?;
    let mut matches: Vec<_> = store
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| {
            c.provider == *provider
                && same_account(account, &c.account)
                && brand.as_ref().is_none_or(|b| &c.brand_id == b)
        })
        .collect();
    let conn = match matches.len() {
        0 => bail!(
            "no {provider} connection for {account}; add one with `connections add --provider {provider}`"
        ),
        1 => matches.remove(0),
        _ => bail!("{account} is connected to several brands; pick one with --brand"),
    };
    let sample = (provider == shopify::ID && file.is_none())
        .then(|| {
            SAMPLE_PAYLOADS
                .iter()
                .find(|s| Some(s.topic) == topic.as_deref())
        })
        .flatten();
    let body = match file {
        Some(file) if file.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => match sample {
            Some(s) => s.body.to_vec(),
            None if provider == shopify::ID => bail!(
                "no built-in sample for {}; give the body with --file (samples: {})",
                topic.as_deref().unwrap_or("no --topic"),
                SAMPLE_PAYLOADS
                    .iter()
                    .map(|s| s.topic)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => bail!("give the body with --file (`-` reads stdin)"),
        },
    };
    let api_version = api_version.as_deref().or(sample.map(|s| s.api_version));
    let secret = connection::webhook_secrets(&vault, &conn)?.remove(0);
    let settings = connection::settings(&conn);
    let webhook_id = webhook_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let headers = platform
        .sign_test(&TestDelivery {
            account: &conn.account,
            settings: &settings,
            secret: secret.expose(),
            topic: topic.as_deref(),
            body: &body,
            delivery_id: &webhook_id,
            api_version,
            now: chrono::Utc::now().timestamp(),
        })
        .map_err(anyhow::Error::msg)?;
    let url = format!(
        "{}{}",
        gateway_url.trim_end_matches('/'),
        connection::webhook_path(&conn.provider, &conn.secure_path_identifier)
    );
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json");
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    println!("{} {}", status.as_u16(), response.text().await?);
    if !status.is_success() {
        bail!("the gateway refused the webhook");
    }
    Ok(())
}

/// A body `webhooks send` sends when given no --file.
struct Sample {
    topic: &'static str,
    api_version: &'static str,
    body: &'static [u8],
}

/// `examples/payloads/shopify` (see its SOURCES.md), compiled in so that
/// the binary alone can send a realistic webhook.
const SAMPLE_PAYLOADS: &[Sample] = &[
    Sample {
        topic: "orders/create",
        api_version: "2026-04",
        body: include_bytes!("../../../examples/payloads/shopify/orders__create.json"),
    },
    Sample {
        topic: "products/update",
        api_version: "2024-07",
        body: include_bytes!("../../../examples/payloads/shopify/products__update.json"),
    },
    Sample {
        topic: "app/uninstalled",
        api_version: "2026-04",
        body: include_bytes!("../../../examples/payloads/shopify/app__uninstalled.json"),
    },
    Sample {
        topic: "shop/redact",
        api_version: "2026-04",
        body: include_bytes!("../../../examples/payloads/shopify/shop__redact.json"),
    },
];
