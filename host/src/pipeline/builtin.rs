//! The transforms compiled into the binary by build.rs, so that one file
//! serves every topic with no route.

include!(concat!(env!("OUT_DIR"), "/builtin_transforms.rs"));

pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_COMPONENTS.iter().map(|(name, _)| *name)
}

/// `builtin:NAME` of every built-in, for messages that list them.
pub fn references() -> Vec<String> {
    names()
        .map(|n| format!("{}{n}", crate::pipeline::route::BUILTIN_PREFIX))
        .collect()
}

/// The component bytes of a built-in transform.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTIN_COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use crate::pipeline::provider::Provider;
    use crate::pipeline::registry::smoke;
    use crate::pipeline::route::BUILTIN_PREFIX;
    use crate::pipeline::transform::{Input, Limits, Payload, Runtime, RuntimeConfig, World};
    use crate::providers;

    fn runtime() -> Runtime {
        Runtime::new(RuntimeConfig {
            pool_instances: 2,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    }

    /// What the registry asks of an upload, asked of every built-in: it
    /// compiles, implements the latest world and survives the smoke call
    /// (a Shopify order, which the other platforms' built-ins must not trap
    /// on either).
    #[test]
    fn every_builtin_loads_and_passes_the_smoke_call() {
        let runtime = runtime();
        assert!(super::names().count() >= 7);
        for (name, bytes) in super::BUILTIN_COMPONENTS {
            let t = runtime
                .load(name, bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.world(), World::LATEST, "{name}");
            smoke(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_examples_are_not_built_in() {
        assert!(super::component("shopify-default").is_some());
        assert!(super::component("sales-sentinel").is_none());
        let refs = super::references();
        assert!(refs.contains(&"builtin:redact-pii".to_owned()), "{refs:?}");
    }

    /// Every provider's default transform is a reference to a built-in
    /// (`builtin:NAME`, what the dispatcher looks up), so a webhook with no
    /// route of its own has somewhere to go.
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
                name.is_some_and(|n| super::component(n).is_some()),
                "{reference} is not a built-in"
            );
        }
    }

    /// One webhook of each new platform through its built-in as compiled
    /// (the crates' own tests run natively): what the host gets back.
    #[test]
    fn the_platform_defaults_name_their_events() {
        let runtime = runtime();
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
            let t = runtime.load(name, super::component(name).unwrap()).unwrap();
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
}
