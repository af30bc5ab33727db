//! The headers Shopify sends with a webhook, for `webhooks send`.

use crate::pipeline::provider::TestDelivery;
use crate::providers::verify::presets;

use super::headers;

/// The API version named when the caller gives none.
pub const DEFAULT_API_VERSION: &str = "2026-04";

/// `X-Shopify-Topic`, `-Shop-Domain`, `-Webhook-Id`, `-API-Version`,
/// `-Triggered-At`, `-Event-Id` and `-Hmac-Sha256`.
pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    let topic = d
        .topic
        .ok_or("Shopify names the topic in X-Shopify-Topic: give --topic (orders/create)")?;
    let signature = presets::shopify()
        .sign(d.secret, "", "", d.body)
        .ok_or("the secret is not usable as an HMAC key")?;
    let triggered_at = chrono::DateTime::from_timestamp(d.now, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(vec![
        (headers::TOPIC_HEADER.into(), topic.into()),
        (headers::SHOP_HEADER.into(), d.account.into()),
        (headers::WEBHOOK_ID_HEADER.into(), d.delivery_id.into()),
        (
            headers::API_VERSION_HEADER.into(),
            d.api_version.unwrap_or(DEFAULT_API_VERSION).into(),
        ),
        (headers::TRIGGERED_AT_HEADER.into(), triggered_at),
        (
            headers::EVENT_ID_HEADER.into(),
            uuid::Uuid::new_v4().to_string(),
        ),
        (headers::HMAC_HEADER.into(), signature),
    ])
}
