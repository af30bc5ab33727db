//! The headers a Standard Webhooks sender sends, for `webhooks send`.

use crate::pipeline::provider::TestDelivery;
use crate::providers::verify::presets;

/// `webhook-id`, `webhook-timestamp` (now) and `webhook-signature`
/// (`v1,<base64>` over `{id}.{timestamp}.{body}` with the `whsec_` key).
/// The event type is the body's own `type`.
pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    if d.topic.is_some() {
        return Err("Standard Webhooks senders name the event in the body's `type`: drop --topic".into());
    }
    let timestamp = d.now.to_string();
    let signature = presets::standard_webhooks("webhook")
        .sign(d.secret, d.delivery_id, &timestamp, d.body)
        .ok_or("the secret is not a Standard Webhooks secret (whsec_ and base64)")?;
    Ok(vec![
        ("webhook-id".into(), d.delivery_id.into()),
        ("webhook-timestamp".into(), timestamp),
        ("webhook-signature".into(), signature),
    ])
}
