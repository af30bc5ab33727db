//! The header TikTok Shop sends with a webhook, for `webhooks send`.

use serde_json::Value;

use crate::pipeline::provider::TestDelivery;
use crate::providers::verify::{Encoding, HmacSpec, presets};

/// `Authorization`: lower-case hex HMAC-SHA256 of the app key followed by
/// the body, under the app secret. The event type, shop and notification id
/// are the body's own.
pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    if d.topic.is_some() {
        return Err("TikTok Shop names the event in the body's `type`: drop --topic".into());
    }
    let app_key = d
        .settings
        .get("app_key")
        .and_then(Value::as_str)
        .ok_or("the connection has no `app_key` setting")?;
    // The MAC of `app_key + body` is the MAC of one message, their
    // concatenation: the plain `{body}` scheme signs it as is.
    let spec = HmacSpec {
        header: "authorization".into(),
        prefix: None,
        encoding: Encoding::Hex,
        ..presets::github()
    };
    let signed = [app_key.as_bytes(), d.body].concat();
    let signature = spec
        .sign(d.secret, "", "", &signed)
        .ok_or("the secret is not usable as an HMAC key")?;
    Ok(vec![("authorization".into(), signature)])
}
