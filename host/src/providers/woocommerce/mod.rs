//! WooCommerce: `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, raw
//! body)), the topic, delivery id and site in `X-WC-Webhook-*` headers, and
//! an unsigned creation ping that must be answered 200.
//!
//! The secret is used exactly as the connection holds it. WooCommerce
//! stores a webhook's secret HTML-escaped (`&` as `&amp;`, quotes as
//! entities) and signs with `wp_specialchars_decode(secret)`, i.e. with the
//! secret as the merchant typed it. So the trap lands where the connection
//! is made, not here: a secret copied from the database or from a REST
//! response that returns it escaped will never verify. Connection setup
//! must store the unescaped secret, and when the gateway creates the webhook
//! itself it should choose a secret with none of `&<>"'` in it.
//!
//! Connected by hand (the site URL and the secret typed in WooCommerce's
//! settings), or by the site's REST API keys: the gateway then chooses the
//! secret and registers one webhook per topic itself ([`registration`]).
//!
//! There is no timestamp: WooCommerce offers no replay protection beyond
//! the inbox's deduplication on the delivery id.

use std::sync::LazyLock;

use crate::pipeline::provider::{
    Checked, Described, Incoming, Keys, Proposed, Provider, Rejected, SetUp, no_settings,
};
use crate::pipeline::registration::Registrar;
use crate::providers::verify::{HmacSpec, header, presets, select_headers, sha256_hex};

static SPEC: LazyLock<HmacSpec> = LazyLock::new(presets::woocommerce);

const SIGNATURE: &str = "x-wc-webhook-signature";
const TOPIC: &str = "x-wc-webhook-topic";
const DELIVERY: &str = "x-wc-webhook-delivery-id";
const SOURCE: &str = "x-wc-webhook-source";

pub struct WooCommerce;

/// A site's canonical address, as connections store it and as
/// `X-WC-Webhook-Source` (WordPress's `home_url('/')`) is compared with it:
/// lower-case scheme and host, no query, one trailing slash.
pub fn site_url(site: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(site.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url.to_string())
}

impl Provider for WooCommerce {
    fn id(&self) -> &'static str {
        "woocommerce"
    }

    /// `webhook_id=<n>`, form-encoded, with no `X-WC-*` header at all: what
    /// WooCommerce posts when a webhook is created, unsigned, and it
    /// disables the webhook unless the answer is 200.
    fn is_ping(&self, req: &Incoming<'_>) -> bool {
        let Some(id) = req.body.strip_prefix(b"webhook_id=") else {
            return false;
        };
        !id.is_empty()
            && id.len() <= 20
            && id.iter().all(u8::is_ascii_digit)
            && !req
                .headers
                .keys()
                .any(|name| name.as_str().starts_with("x-wc-"))
    }

    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected> {
        SPEC.verify(req, keys.secrets)
    }

    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String> {
        let account = site_url(proposed.account).ok_or_else(|| {
            format!(
                "{:?} is not a site URL (expected https://shop.example/)",
                proposed.account
            )
        })?;
        if !no_settings(proposed.settings) {
            return Err("a WooCommerce connection takes no settings".into());
        }
        Ok(Checked {
            account,
            settings: None,
        })
    }

    fn describe(&self, req: &Incoming<'_>, _keys: &Keys<'_>) -> Result<Described, Rejected> {
        let topic = header(req, TOPIC)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Rejected::Malformed(format!("the `{TOPIC}` header is missing")))?;
        // Always sent since WooCommerce 2.2; should one be missing, a digest
        // of the body still deduplicates exact retries.
        let delivery_id = header(req, DELIVERY)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| sha256_hex(&[req.body]));
        Ok(Described {
            topic: topic.to_owned(),
            delivery_id,
            // Compared with the connection's site: an address that does not
            // parse is kept as sent, and so cannot match.
            account: header(req, SOURCE)
                .filter(|s| !s.is_empty())
                .map(|s| site_url(s).unwrap_or_else(|| s.to_owned())),
            api_version: None,
            occurred_at: None,
            event_id: None,
            headers: select_headers(req, |name| {
                name.starts_with("x-wc-webhook-") && name != SIGNATURE
            }),
            body: None,
        })
    }

    fn sign_test(&self, d: &crate::pipeline::provider::TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        send::sign_test(d)
    }

    fn default_transform(&self) -> &'static str {
        "builtin:woocommerce-default"
    }

    fn registrar(&self) -> Option<&dyn Registrar> {
        Some(self)
    }

    fn set_up(&self) -> &'static [SetUp] {
        &[SetUp::Credentials, SetUp::Secret]
    }
}

pub mod api;
pub mod registration;
pub mod send;

#[cfg(test)]
mod tests;
