//! `webhooks send`: a test webhook signed as Shopify signs them, from a
//! sample compiled into the binary or a file.

use std::io::Read;

use anyhow::{Context, Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::connection;
use ionflux_gateway::providers::shopify::headers as webhook;

use crate::{WebhooksCommand, load_vault, open_store};

pub(crate) async fn send_webhook(cfg: &Settings, cmd: &WebhooksCommand) -> Result<()> {
    let WebhooksCommand::Send {
        shop,
        brand,
        topic,
        file,
        api_version,
        webhook_id,
        gateway_url,
    } = cmd;
    let store = open_store(cfg).await?;
    let vault = load_vault(cfg)?;
    let shop = shop.to_ascii_lowercase();
    let mut matches: Vec<_> = store
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| c.account == shop && brand.as_ref().is_none_or(|b| &c.brand_id == b))
        .collect();
    let conn = match matches.len() {
        0 => bail!("no connection for {shop}; add one with `connections add`"),
        1 => matches.remove(0),
        _ => bail!("{shop} is connected to several brands; pick one with --brand"),
    };
    let sample = SAMPLE_PAYLOADS.iter().find(|s| s.topic == topic);
    let body = match file {
        Some(file) if file.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => match sample {
            Some(s) => s.body.to_vec(),
            None => bail!(
                "no built-in sample for {topic}; give the body with --file (samples: {})",
                SAMPLE_PAYLOADS
                    .iter()
                    .map(|s| s.topic)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let api_version = match (api_version, file, sample) {
        (Some(v), _, _) => v.as_str(),
        (None, None, Some(s)) => s.api_version,
        _ => "2026-04",
    };
    let secret = connection::webhook_secrets(&vault, &conn)?.remove(0);
    let url = format!(
        "{}{}",
        gateway_url.trim_end_matches('/'),
        connection::webhook_path(&conn.provider, &conn.secure_path_identifier)
    );
    let webhook_id = webhook_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header(webhook::TOPIC_HEADER, topic.as_str())
        .header(webhook::SHOP_HEADER, shop.as_str())
        .header(webhook::WEBHOOK_ID_HEADER, webhook_id.as_str())
        .header(webhook::API_VERSION_HEADER, api_version)
        .header(
            webhook::TRIGGERED_AT_HEADER,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .header(webhook::EVENT_ID_HEADER, uuid::Uuid::new_v4().to_string())
        .header(webhook::HMAC_HEADER, webhook::sign(secret.expose(), &body))
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
