//! The gateway registers a site's webhooks itself, given the site's REST API
//! keys (`{"consumer_key": "ck_…", "consumer_secret": "cs_…"}`): one webhook
//! per configured topic, delivering to the connection's address, signed with
//! the connection's secret. Idempotent through [`WooCommerceApi::ensure_webhooks`]:
//! a webhook of the same topic and address is reused and its secret set
//! anew, so running it again creates nothing and a changed secret reaches
//! the site.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::WooCommerce;
use super::api::{DEFAULT_TOPICS, WooCommerceApi, WooCommerceError};
use crate::pipeline::registration::{
    Registered, Registering, Registrar, Registration, RegistrationError,
};
use crate::support::vault::Secret;

/// Webhooks the gateway made are named `ionflux <topic>` in the site's
/// settings, so the shop owner knows whose they are.
const NAME_PREFIX: &str = "ionflux";

/// The `[woocommerce]` section of the configuration (documented in
/// `config.default.toml`), handed to the registrar as its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The topics registered at a site.
    pub topics: Vec<String>,
    /// How long one call to a site's REST API may take.
    #[serde(with = "humantime_serde")]
    pub api_timeout: Duration,
    /// Test only: accept `http://` site URLs (a fake site on loopback).
    /// Real WooCommerce takes REST keys over HTTPS only.
    pub allow_plain_http: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            topics: DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect(),
            api_timeout: Duration::from_secs(20),
            allow_plain_http: false,
        }
    }
}

/// The REST API key pair a registration is made with.
struct Keys {
    consumer_key: String,
    consumer_secret: Secret,
}

impl Keys {
    /// Names the field that is wrong, never a value.
    fn read(credentials: &Value) -> Result<Self, String> {
        let obj = credentials.as_object().ok_or(
            "credentials must be an object {\"consumer_key\": \"ck_…\", \"consumer_secret\": \"cs_…\"}",
        )?;
        if let Some(other) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "consumer_key" | "consumer_secret"))
        {
            return Err(format!(
                "credentials: unknown field {other:?} (a WooCommerce site takes consumer_key and consumer_secret)"
            ));
        }
        let field = |name: &str| {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("credentials.{name} must be a non-empty string"))
        };
        Ok(Self {
            consumer_key: field("consumer_key")?.to_owned(),
            consumer_secret: Secret::from(field("consumer_secret")?.to_owned()),
        })
    }
}

impl Registrar for WooCommerce {
    fn check(&self, credentials: &Value, secret: &Secret) -> Result<(), String> {
        Keys::read(credentials)?;
        // See the module doc of `woocommerce`: the site stores the secret
        // HTML-escaped; one without these characters survives unchanged.
        if secret.expose().iter().any(|b| b"&<>\"'".contains(b)) {
            return Err(
                "the webhook secret contains one of & < > \" ', which WooCommerce stores \
                 escaped: leave it out and the gateway chooses one"
                    .into(),
            );
        }
        Ok(())
    }

    fn register<'a>(&'a self, req: Registration<'a>) -> Registering<'a> {
        Box::pin(async move {
            let options: Options = if req.options.is_null() {
                Options::default()
            } else {
                serde_json::from_value(req.options.clone()).map_err(|e| {
                    RegistrationError::Refused(format!("the [woocommerce] settings: {e}"))
                })?
            };
            if options.topics.is_empty() {
                return Err(RegistrationError::Refused(
                    "woocommerce.topics is empty: nothing to register".into(),
                ));
            }
            if !options.allow_plain_http && is_internal(req.account) {
                return Err(RegistrationError::Refused(
                    "the site's address is a loopback, private or link-local one: the gateway \
                     calls only public sites"
                        .into(),
                ));
            }
            let keys = Keys::read(req.credentials).map_err(RegistrationError::Refused)?;
            let mut api = WooCommerceApi::new(options.api_timeout).map_err(classify)?;
            if options.allow_plain_http {
                api = api.allowing_plain_http();
            }
            let site = api
                .site(req.account, &keys.consumer_key, keys.consumer_secret)
                .map_err(classify)?;
            let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
            let ensured = api
                .ensure_webhooks(&site, NAME_PREFIX, &topics, req.address, req.secret)
                .await
                .map_err(classify)?;
            Ok(ensured
                .into_iter()
                .map(|e| Registered {
                    topic: e.webhook.topic,
                    id: e.webhook.id.to_string(),
                    status: e.webhook.status,
                    created: e.created,
                })
                .collect())
        })
    }
}

/// Whether a site URL names this host or a private network by itself
/// (`localhost`, an IP literal of loopback, private, link-local, unique
/// local or unspecified ranges): whoever may add a connection must not make
/// the gateway call its neighbours. A public name that resolves to such an
/// address is not caught here.
fn is_internal(site: &str) -> bool {
    use std::net::IpAddr;
    let Ok(url) = reqwest::Url::parse(site.trim()) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    // The URL parser wrote IPv4 literals in dotted form and IPv6 in brackets.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match literal.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        Ok(ip) => ip,
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            return name == "localhost" || name.ends_with(".localhost");
        }
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The site's verdicts (refused keys, a bad topic, no REST API there) are
/// refusals; the network, throttling, the site's own failures and answers
/// not understood are worth a retry. No message carries a URL or a secret.
fn classify(e: WooCommerceError) -> RegistrationError {
    let message = format!("the WooCommerce site: {e}");
    match e {
        WooCommerceError::Decode(_) | WooCommerceError::Client(_) => {
            RegistrationError::Unavailable(message)
        }
        e if e.is_transient() => RegistrationError::Unavailable(message),
        _ => RegistrationError::Refused(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(s: &str) -> Secret {
        Secret::from(s.to_string())
    }

    #[test]
    fn credentials_are_checked_without_being_quoted() {
        let ok = json!({"consumer_key": "ck_1", "consumer_secret": "cs_2"});
        assert!(WooCommerce.check(&ok, &secret("abc123")).is_ok());
        for bad in [
            json!("ck_1:cs_2"),
            json!({"consumer_key": "ck_1"}),
            json!({"consumer_key": "ck_1", "consumer_secret": ""}),
            json!({"consumer_key": "ck_1", "consumer_secret": "cs_2", "x": "cs_2"}),
        ] {
            let err = WooCommerce.check(&bad, &secret("abc")).unwrap_err();
            assert!(!err.contains("cs_2") && !err.contains("ck_1"), "{err}");
        }
        let err = WooCommerce.check(&ok, &secret("a&b")).unwrap_err();
        assert!(err.contains("escaped"), "{err}");
    }

    #[test]
    fn the_site_verdicts_are_refusals_and_its_failures_are_not() {
        let refused = classify(WooCommerceError::Auth {
            status: 401,
            code: "woocommerce_rest_authentication_error".into(),
            message: "Consumer key is invalid.".into(),
        });
        assert!(matches!(refused, RegistrationError::Refused(_)));
        let failed = classify(WooCommerceError::Status { status: 500 });
        assert!(matches!(failed, RegistrationError::Unavailable(_)));
        let unreachable = classify(WooCommerceError::Transport("refused".into()));
        assert!(matches!(unreachable, RegistrationError::Unavailable(_)));
    }

    #[test]
    fn internal_addresses_are_told_apart() {
        for internal in [
            "https://127.0.0.1/",
            "https://10.1.2.3/shop/",
            "https://192.168.0.10",
            "https://169.254.169.254/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://localhost:8443/",
        ] {
            assert!(is_internal(internal), "{internal}");
        }
        for public in [
            "https://shop.example/",
            "https://93.184.215.14/",
            "https://[2606:4700::1]/",
        ] {
            assert!(!is_internal(public), "{public}");
        }
    }

    #[test]
    fn options_come_from_their_section_or_default() {
        let options = Options::default();
        let round: Options =
            serde_json::from_value(serde_json::to_value(&options).unwrap()).unwrap();
        assert_eq!(round, options);
        assert_eq!(options.topics.len(), DEFAULT_TOPICS.len());
        let partial: Options = serde_json::from_value(json!({"allow_plain_http": true})).unwrap();
        assert!(partial.allow_plain_http);
        assert_eq!(partial.topics, options.topics);
    }
}
