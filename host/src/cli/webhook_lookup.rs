//! `webhooks list` and `webhooks show`: "where is my webhook?", on the
//! database here or through a gateway's admin API (`--admin-url`), printed
//! the same either way (the answers of `GET /admin/v1/webhooks…`, as JSON
//! lines).

use std::io::Write;

use anyhow::{Result, anyhow};
use clap::Args;
use ionflux_gateway::api::admin::body::{DeadLettersQuery, WebhookPage, WebhooksQuery};
use ionflux_gateway::api::admin::webhooks;
use ionflux_gateway::config::Settings;
use ionflux_gateway::error::ApiError;

use crate::open_store;

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// One connection's webhooks.
    #[arg(long)]
    connection: Option<String>,
    /// One platform's: shopify, woocommerce, tiktok_shop, wix,
    /// standard_webhooks, hmac.
    #[arg(long)]
    provider: Option<String>,
    /// The platform's topic, exactly (orders/create).
    #[arg(long)]
    topic: Option<String>,
    /// pending, published or dead.
    #[arg(long)]
    status: Option<String>,
    /// Received at or after: RFC 3339, epoch ms, or a time ago (`2h`).
    #[arg(long, value_parser = instant)]
    since: Option<i64>,
    /// Received before: RFC 3339, epoch ms, or a time ago (`30m`).
    #[arg(long, value_parser = instant)]
    until: Option<i64>,
    /// The platform's delivery id: X-Shopify-Webhook-Id,
    /// X-WC-Webhook-Delivery-ID, webhook-id, X-GitHub-Delivery, …
    #[arg(long)]
    delivery_id: Option<String>,
    /// At most this many, 1-1000.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// The page after the one that printed this cursor (on stderr).
    #[arg(long)]
    cursor: Option<String>,
}

impl ListArgs {
    pub fn query(&self) -> WebhooksQuery {
        WebhooksQuery {
            connection_id: self.connection.clone(),
            provider: self.provider.clone(),
            topic: self.topic.clone(),
            status: self.status.clone(),
            after: self.since.map(|t| t.to_string()),
            before: self.until.map(|t| t.to_string()),
            delivery_id: self.delivery_id.clone(),
            limit: Some(self.limit),
            cursor: self.cursor.clone(),
        }
    }
}

/// `dead-letters list`'s filters, as the API takes them.
pub fn dead_letters_query(
    limit: i64,
    filter: &super::dead_letters::FilterArgs,
) -> DeadLettersQuery {
    DeadLettersQuery {
        limit: Some(limit),
        reason: filter.reason.clone(),
        after: filter.since.map(|t| t.to_string()),
        before: filter.until.map(|t| t.to_string()),
    }
}

/// A time on the command line, in epoch ms: RFC 3339, epoch ms, or a
/// duration ago (`90s`, `2h`, `1day`).
pub fn instant(given: &str) -> Result<i64, String> {
    if let Ok(ms) = given.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(given) {
        return Ok(t.timestamp_millis());
    }
    let ago = humantime::parse_duration(given).map_err(|_| {
        format!(
            "{given:?} is neither RFC 3339 (2026-12-01T00:00:00Z), epoch ms, nor a time ago (2h)"
        )
    })?;
    Ok(ionflux_gateway::store::now_ms().saturating_sub(ago.as_millis() as i64))
}

/// Prints a page as JSON lines, and where the next one starts on stderr.
pub fn print_page(page: WebhookPage) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for w in &page.webhooks {
        writeln!(out, "{}", serde_json::to_string(w)?)?;
    }
    out.flush()?;
    if let Some(cursor) = page.next_cursor {
        eprintln!("more: --cursor {cursor}");
    }
    Ok(())
}

pub fn print_one<T: serde::Serialize>(item: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(item)?)?;
    out.flush()?;
    Ok(())
}

fn api_error(e: ApiError) -> anyhow::Error {
    anyhow!("{}: {}", e.code, e.message)
}

/// `webhooks list` on the database here (an operator's view).
pub(crate) async fn list(cfg: &Settings, args: &ListArgs) -> Result<()> {
    let store = open_store(cfg).await?;
    let page = webhooks::list(&store, None, &args.query())
        .await
        .map_err(api_error)?;
    print_page(page)
}

/// `webhooks show` on the database here.
pub(crate) async fn show(cfg: &Settings, id: i64, body: bool) -> Result<()> {
    let store = open_store(cfg).await?;
    let detail = webhooks::show(&store, None, id, body)
        .await
        .map_err(api_error)?;
    print_one(&detail)
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn a_time_is_rfc_3339_epoch_ms_or_a_time_ago() {
        assert_eq!(instant("1764547200000"), Ok(1_764_547_200_000));
        assert_eq!(instant("2025-12-01T00:00:00Z"), Ok(1_764_547_200_000));
        let hour_ago = instant("1h").unwrap();
        let now = ionflux_gateway::store::now_ms();
        assert!((now - 3_600_000 - 5_000..=now - 3_600_000).contains(&hour_ago));
        assert!(instant("soon").is_err());
    }
}
