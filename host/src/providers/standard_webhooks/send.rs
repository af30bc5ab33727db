//! The headers a Standard Webhooks sender sends, for `webhooks send`.

use crate::pipeline::provider::TestDelivery;

/// `webhook-id`, `webhook-timestamp` (now) and `webhook-signature`
/// (`v1,<base64>` over `{id}.{timestamp}.{body}` with the `whsec_` key).
/// The event type is the body's own `type`.
pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    if d.topic.is_some() {
        return Err("Standard Webhooks senders name the event in the body's `type`: drop --topic".into());
    }
    if super::asymmetric::is_public_key(d.secret) {
        return Err("this connection verifies Ed25519 (v1a) signatures made with the sender's \
                    private key, which the gateway does not hold: send a webhook it delivered"
            .into());
    }
    let timestamp = d.now.to_string();
    let signature = super::spec("webhook")
        .sign(d.secret, d.delivery_id, &timestamp, d.body)
        .ok_or("the secret is not a Standard Webhooks secret (whsec_ and base64)")?;
    Ok(vec![
        ("webhook-id".into(), d.delivery_id.into()),
        ("webhook-timestamp".into(), timestamp),
        ("webhook-signature".into(), signature),
    ])
}
