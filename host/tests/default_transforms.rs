//! Which transform a provider's webhooks run when no route names one: every
//! provider's default is a built-in, discovered by build.rs from the crates
//! under `transforms/`, and each names its platform's events through its
//! compiled component (the crates' own tests run natively).

use ionflux_gateway::pipeline::builtin;
use ionflux_gateway::pipeline::provider::Provider;
use ionflux_gateway::pipeline::route::BUILTIN_PREFIX;
use ionflux_gateway::pipeline::transform::{Input, Limits, Payload, Runtime, RuntimeConfig};
use ionflux_gateway::providers;

/// A `builtin:NAME` reference (what the dispatcher looks up), so a webhook
/// with no route of its own has somewhere to go.
#[test]
fn every_providers_default_transform_is_built_in() {
    let defaults = [
        providers::shopify::Shopify.default_transform(),
        providers::woocommerce::WooCommerce.default_transform(),
        providers::tiktok_shop::TikTokShop.default_transform(),
        providers::wix::Wix::new().default_transform(),
        providers::standard_webhooks::StandardWebhooks.default_transform(),
        providers::hmac::ConfiguredHmac.default_transform(),
    ];
    for reference in defaults {
        let name = reference.strip_prefix(BUILTIN_PREFIX);
        assert!(
            name.is_some_and(|n| builtin::component(n).is_some()),
            "{reference} is not a built-in"
        );
    }
}

/// build.rs takes the crates that say `builtin = true`, and only those.
#[test]
fn the_examples_are_not_built_in() {
    assert!(builtin::component("redact-pii").is_some());
    assert!(builtin::component("sales-sentinel").is_none());
    let refs = builtin::references();
    assert!(
        refs.contains(&"builtin:shopify-default".to_owned()),
        "{refs:?}"
    );
    assert_eq!(refs.len(), builtin::names().count());
}

#[test]
fn the_platform_defaults_name_their_events() {
    let runtime = Runtime::new(RuntimeConfig {
        pool_instances: 2,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    // (built-in, provider, topic, GitHub's header?, body, kind)
    let cases = [
        (
            "woocommerce-default",
            "woocommerce",
            "order.created",
            false,
            r#"{"id":727}"#,
            "order.created",
        ),
        (
            "tiktok-shop-default",
            "tiktok_shop",
            "order_status_change",
            false,
            r#"{"type":1,"data":{}}"#,
            "order.status_changed",
        ),
        (
            "wix-default",
            "wix",
            "AppInstalled",
            false,
            r#"{"eventType":"AppInstalled","data":{}}"#,
            "app.installed",
        ),
        (
            "standard-webhooks-default",
            "standard_webhooks",
            "contact.created",
            false,
            r#"{"type":"contact.created"}"#,
            "contact.created",
        ),
        (
            "hmac-default",
            "hmac",
            "issues",
            true,
            r#"{"action":"opened"}"#,
            "issues.opened",
        ),
        (
            "hmac-default",
            "hmac",
            "push",
            false,
            r#"{"ref":"x"}"#,
            "push.received",
        ),
    ];
    for (name, provider, topic, github, body, kind) in cases {
        let t = runtime
            .load(name, builtin::component(name).unwrap())
            .unwrap();
        let headers: Vec<(String, String)> = if github {
            vec![("x-github-event".to_owned(), topic.to_owned())]
        } else {
            Vec::new()
        };
        let input = Input {
            provider,
            topic,
            account_id: "account",
            workspace_id: "w1",
            brand_id: "b1",
            api_version: None,
            delivery_id: "d1",
            occurred_at: None,
            event_id: None,
            headers: &headers,
            body: body.as_bytes(),
        };
        let events = t
            .call(&input, "{}", &Limits::default())
            .unwrap_or_else(|e| panic!("{name} {topic}: {e}"));
        assert_eq!(events.len(), 1, "{name} {topic}");
        assert_eq!(events[0].kind, kind, "{name} {topic}");
        assert_eq!(
            events[0].schema_version,
            format!("v1.{provider}.unversioned"),
            "{name} {topic}"
        );
        assert_eq!(events[0].payload, Payload::Unchanged, "{name} {topic}");
    }
}
