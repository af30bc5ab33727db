//! The headers a configured HMAC sender sends, for `webhooks send`: the
//! ones its settings say the gateway reads (GitHub's `X-GitHub-Event` and
//! `X-GitHub-Delivery`, a declared topic or delivery header), the
//! scheme's timestamp and id headers, and the signature.

use serde_json::Value;

use crate::pipeline::provider::TestDelivery;
use crate::providers::verify::{Scheme, Timestamp, field_text};

use super::{Locator, source};

pub fn sign_test(d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
    let source = source(d.settings).map_err(|e| e.to_string())?;
    let Scheme::Hmac(spec) = &source.scheme;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| {
        let name = name.to_ascii_lowercase();
        if !headers.iter().any(|(n, _)| *n == name) {
            headers.push((name, value.to_owned()));
        }
    };
    match (&source.topic, d.topic) {
        (Some(Locator::Header { name }), Some(topic)) => set(name, topic),
        (Some(Locator::Header { name }), None) => {
            return Err(format!(
                "this sender names the event in the `{name}` header: give --topic"
            ));
        }
        (Some(Locator::Field { pointer }), Some(_)) => {
            return Err(format!(
                "this sender names the event in the body (`{pointer}`): drop --topic"
            ));
        }
        (None, Some(_)) => {
            return Err("this sender's settings read no topic: drop --topic".into());
        }
        (_, None) => {}
    }
    if let Some(Locator::Header { name }) = &source.delivery {
        set(name, d.delivery_id);
    }
    if let Some(Locator::Header { name }) = &source.account {
        set(name, d.account);
    }
    let now = d.now.to_string();
    if let Some(Locator::Header { name }) = &source.occurred_at {
        set(name, &now);
    }
    if let Some(name) = &spec.id_header {
        set(name, d.delivery_id);
    }
    let timestamp = match &spec.timestamp {
        None => String::new(),
        Some(Timestamp::Pair { .. }) => now,
        Some(Timestamp::Header { name, .. }) => {
            set(name, &now);
            now
        }
        // The body carries it, and the body is sent as given.
        Some(Timestamp::Field { pointer, .. }) => serde_json::from_slice::<Value>(d.body)
            .ok()
            .and_then(|b| field_text(&b, pointer))
            .ok_or_else(|| format!("the body has no timestamp at `{pointer}`"))?,
    };
    let id = spec
        .id_header
        .as_ref()
        .map_or("", |_| d.delivery_id);
    let signature = spec
        .sign(d.secret, id, &timestamp, d.body)
        .ok_or("the secret is not usable as this scheme's key")?;
    set(&spec.header, &signature);
    Ok(headers)
}
