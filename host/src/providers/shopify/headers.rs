//! Is this request genuine? Shopify webhook signatures and headers.
//!
//! Shopify signs the raw body: `X-Shopify-Hmac-Sha256 =
//! base64(HMAC-SHA256(app secret, body))`. The body must be verified exactly
//! as received, before any parsing, and compared in constant time.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HMAC_HEADER: &str = "x-shopify-hmac-sha256";
pub const TOPIC_HEADER: &str = "x-shopify-topic";
pub const SHOP_HEADER: &str = "x-shopify-shop-domain";
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
pub const API_VERSION_HEADER: &str = "x-shopify-api-version";
pub const TRIGGERED_AT_HEADER: &str = "x-shopify-triggered-at";
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";

/// base64(HMAC-SHA256(secret, body)), as Shopify sends it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// True when `signature` (the header value) matches the body under any of
/// `secrets` (current and previous, for rotation). Every candidate is checked
/// in constant time; a malformed header simply fails.
pub fn verify<'a>(
    secrets: impl IntoIterator<Item = &'a [u8]>,
    body: &[u8],
    signature: &str,
) -> bool {
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut ok = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(body);
        // No early exit: the time taken does not reveal which secret matched.
        ok |= mac.verify_slice(&expected).is_ok();
    }
    ok
}

/// What the handler needs from Shopify's headers, checked for presence and
/// shape. The HMAC header is read separately, before these are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyHeaders {
    pub topic: String,
    pub shop_domain: String,
    pub webhook_id: String,
    pub api_version: Option<String>,
    pub triggered_at: Option<String>,
    pub event_id: Option<String>,
    /// Every `x-shopify-*` header except the signature, lower-cased names,
    /// in the order received: handed to transforms and kept in the inbox.
    pub selected: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {0} is not valid: {1}")]
    Invalid(&'static str, &'static str),
}

const MAX_HEADER_VALUE: usize = 512;

impl ShopifyHeaders {
    pub fn parse(headers: &HeaderMap) -> Result<Self, HeaderError> {
        let required = |name: &'static str| -> Result<String, HeaderError> {
            match optional(headers, name)? {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(HeaderError::Missing(name)),
            }
        };
        let topic = required(TOPIC_HEADER)?;
        if !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'))
        {
            return Err(HeaderError::Invalid(TOPIC_HEADER, "unexpected characters"));
        }
        let shop_domain = required(SHOP_HEADER)?.to_ascii_lowercase();
        if !is_shop_domain(&shop_domain) {
            return Err(HeaderError::Invalid(
                SHOP_HEADER,
                "not a *.myshopify.com domain",
            ));
        }
        let webhook_id = required(WEBHOOK_ID_HEADER)?;
        let selected = headers
            .iter()
            .filter(|(name, _)| {
                let name = name.as_str();
                name.starts_with("x-shopify-") && name != HMAC_HEADER
            })
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect();
        Ok(Self {
            topic,
            shop_domain,
            webhook_id,
            api_version: optional(headers, API_VERSION_HEADER)?,
            triggered_at: optional(headers, TRIGGERED_AT_HEADER)?,
            event_id: optional(headers, EVENT_ID_HEADER)?,
            selected,
        })
    }
}

fn optional(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, HeaderError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| HeaderError::Invalid(name, "not visible ASCII"))?
                .trim();
            if v.len() > MAX_HEADER_VALUE {
                return Err(HeaderError::Invalid(name, "too long"));
            }
            Ok(Some(v.to_string()))
        }
    }
}

/// Shopify's rule for shop domains: `^[a-zA-Z0-9][a-zA-Z0-9-_]*\.myshopify\.com$`.
pub fn is_shop_domain(domain: &str) -> bool {
    let Some(name) = domain.strip_suffix(".myshopify.com") else {
        return false;
    };
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sign_and_verify_agree() {
        let sig = sign(b"secret", b"{}");
        assert!(verify([b"secret".as_slice()], b"{}", &sig));
        assert!(!verify([b"other".as_slice()], b"{}", &sig));
        assert!(!verify([b"secret".as_slice()], b"{ }", &sig));
    }

    #[test]
    fn previous_secret_still_verifies() {
        let sig = sign(b"old", b"body");
        assert!(verify(
            [b"new".as_slice(), b"old".as_slice()],
            b"body",
            &sig
        ));
    }

    #[test]
    fn malformed_signatures_fail() {
        for sig in ["", "not base64!!", "AAAA", "===="] {
            assert!(!verify([b"secret".as_slice()], b"{}", sig), "{sig}");
        }
    }

    #[test]
    fn shop_domains() {
        assert!(is_shop_domain("my-shop_1.myshopify.com"));
        assert!(!is_shop_domain("-shop.myshopify.com"));
        assert!(!is_shop_domain(".myshopify.com"));
        assert!(!is_shop_domain("shop.example.com"));
        assert!(!is_shop_domain("a.b.myshopify.com"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn parses_shopify_headers() {
        let h = ShopifyHeaders::parse(&headers(&[
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "Shop.myshopify.com"),
            ("x-shopify-webhook-id", "b54557e4"),
            ("x-shopify-api-version", "2024-01"),
            ("x-shopify-hmac-sha256", "sig"),
            ("content-type", "application/json"),
        ]))
        .unwrap();
        assert_eq!(h.topic, "orders/create");
        assert_eq!(h.shop_domain, "shop.myshopify.com");
        assert_eq!(h.api_version.as_deref(), Some("2024-01"));
        assert!(h.selected.iter().all(|(n, _)| n != HMAC_HEADER));
        assert_eq!(h.selected.len(), 4);
    }

    #[test]
    fn missing_headers_are_named() {
        let err = ShopifyHeaders::parse(&headers(&[("x-shopify-shop-domain", "s.myshopify.com")]))
            .unwrap_err();
        assert_eq!(err, HeaderError::Missing(TOPIC_HEADER));
        let err =
            ShopifyHeaders::parse(&headers(&[("x-shopify-topic", "orders/create")])).unwrap_err();
        assert_eq!(err, HeaderError::Missing(SHOP_HEADER));
    }
}
