//! The headers WooCommerce sends with a webhook, for `webhooks send`.

use crate::pipeline::provider::TestDelivery;
use crate::providers::verify::presets;

/// `X-WC-Webhook-Source` (the site), `-Topic`, `-Resource`, `-Event`,
/// `-Delivery-ID` and `-Signature`.
pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    let topic = d.topic.ok_or(
        "WooCommerce names the topic in X-WC-Webhook-Topic: give --topic (order.created)",
    )?;
    // `order.created` is resource `order`, event `created`; an action
    // topic (`action.woocommerce_add_to_cart`) is resource `action`.
    let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
    let signature = presets::woocommerce()
        .sign(d.secret, "", "", d.body)
        .ok_or("the secret is not usable as an HMAC key")?;
    Ok(vec![
        ("x-wc-webhook-source".into(), d.account.into()),
        ("x-wc-webhook-topic".into(), topic.into()),
        ("x-wc-webhook-resource".into(), resource.into()),
        ("x-wc-webhook-event".into(), event.into()),
        ("x-wc-webhook-delivery-id".into(), d.delivery_id.into()),
        ("x-wc-webhook-signature".into(), signature),
    ])
}
