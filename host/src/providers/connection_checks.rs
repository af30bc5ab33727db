//! What each provider accepts as a connection made by hand: the account's
//! shape and canonical spelling, the settings, the secret.

use serde_json::{Value, json};

use crate::pipeline::provider::{Checked, Proposed, Provider};
use crate::providers::testing::fixture;
use crate::providers::{
    hmac::ConfiguredHmac, shopify::Shopify, standard_webhooks::StandardWebhooks,
    tiktok_shop::TikTokShop, wix::Wix, woocommerce::WooCommerce,
};

fn check(
    p: &dyn Provider,
    account: &str,
    settings: Value,
    secret: &str,
) -> Result<Checked, String> {
    p.check_connection(&Proposed {
        account,
        settings: &settings,
        secret: secret.as_bytes(),
    })
}

fn account(p: &dyn Provider, account: &str, settings: Value, secret: &str) -> String {
    check(p, account, settings, secret)
        .unwrap_or_else(|e| panic!("{}: {account:?} refused: {e}", p.id()))
        .account
}

#[test]
fn shopify_takes_a_shop_domain_lower_cased_and_no_settings() {
    assert_eq!(
        account(&Shopify, " Acme.MyShopify.com ", Value::Null, "s"),
        "acme.myshopify.com"
    );
    assert!(check(&Shopify, "acme.example.com", Value::Null, "s").is_err());
    assert!(check(&Shopify, "acme.myshopify.com", json!({"app_key": "k"}), "s").is_err());
}

#[test]
fn woocommerce_takes_a_site_url_spelled_as_its_webhooks_say_it() {
    for (given, stored) in [
        ("https://Shop.Example", "https://shop.example/"),
        ("https://shop.example/", "https://shop.example/"),
        (
            "http://shop.example/store?x=1",
            "http://shop.example/store/",
        ),
        (
            "https://shop.example:8443/wp",
            "https://shop.example:8443/wp/",
        ),
    ] {
        assert_eq!(account(&WooCommerce, given, Value::Null, "s"), stored);
    }
    for bad in ["shop.example", "ftp://shop.example/", "https://", ""] {
        assert!(
            check(&WooCommerce, bad, Value::Null, "s").is_err(),
            "{bad:?}"
        );
    }
    // The header WooCommerce sends is compared in the same spelling.
    assert_eq!(
        super::woocommerce::site_url("http://localhost/"),
        Some("http://localhost/".into())
    );
}

#[test]
fn tiktok_shop_needs_its_app_key_and_a_shop_id() {
    let c = check(
        &TikTokShop,
        "7494049642642441621",
        json!({"app_key": " abc "}),
        "s",
    )
    .unwrap();
    assert_eq!(c.account, "7494049642642441621");
    assert_eq!(c.settings, Some(json!({"app_key": "abc"})));
    assert!(check(&TikTokShop, "7494", Value::Null, "s").is_err());
    assert!(check(&TikTokShop, "7494", json!({"app_key": ""}), "s").is_err());
    assert!(check(&TikTokShop, "7494", json!({"app_key": "k", "x": 1}), "s").is_err());
    assert!(check(&TikTokShop, "74 94", json!({"app_key": "k"}), "s").is_err());
}

#[test]
fn wix_takes_an_instance_id_and_the_apps_public_key() {
    let public = fixture!("wix/test-key.pub.pem");
    let instance = "7C1A8B4E-0D5F-4B8E-9D1F-2C3A4B5C6D7E";
    assert_eq!(
        account(&Wix::new(), instance, Value::Null, public),
        instance.to_ascii_lowercase()
    );
    let err = check(&Wix::new(), instance, Value::Null, "not a key").unwrap_err();
    assert!(err.contains("public key"), "{err}");
    assert!(
        !err.contains("not a key"),
        "the secret is never quoted: {err}"
    );
    assert!(check(&Wix::new(), "site-1", Value::Null, public).is_err());
}

#[test]
fn standard_webhooks_takes_a_whsec_secret_and_a_name() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(
        account(&StandardWebhooks, " billing-app ", Value::Null, secret),
        "billing-app"
    );
    let err = check(&StandardWebhooks, "billing-app", Value::Null, "whsec_!!!").unwrap_err();
    assert!(!err.contains("!!!"), "{err}");
    assert!(check(&StandardWebhooks, "", Value::Null, secret).is_err());
    // An Ed25519 sender: its public key, never its private one.
    let public =
        crate::providers::standard_webhooks::asymmetric::Signer::from_seed(&[7; 32]).public_key();
    assert!(check(&StandardWebhooks, "billing-app", Value::Null, &public).is_ok());
    assert!(check(&StandardWebhooks, "billing-app", Value::Null, "whpk_AAAA").is_err());
    let err = check(&StandardWebhooks, "billing-app", Value::Null, "whsk_AAAA").unwrap_err();
    assert!(err.contains("whpk_"), "{err}");
    assert!(check(&StandardWebhooks, "a\nb", Value::Null, secret).is_err());
}

#[test]
fn an_hmac_sender_declares_how_it_signs_and_bad_declarations_are_refused_at_once() {
    let c = check(
        &ConfiguredHmac,
        "octo/repo",
        json!({"preset": "github"}),
        "s",
    )
    .unwrap();
    assert_eq!(c.account, "octo/repo");
    assert_eq!(c.settings, Some(json!({"preset": "github"})));
    assert!(check(&ConfiguredHmac, "octo/repo", Value::Null, "s").is_err());
    assert!(check(&ConfiguredHmac, "octo/repo", json!({"preset": "nope"}), "s").is_err());
    assert!(
        check(
            &ConfiguredHmac,
            "octo/repo",
            json!({"presets": "github"}),
            "s"
        )
        .is_err()
    );
}
