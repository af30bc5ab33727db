//! The platforms' own APIs that a connection's set-up calls, against fakes
//! that speak their endpoints: WooCommerce's webhooks REST API and TikTok
//! Shop's token endpoints.

use std::time::Duration;

use ionflux_gateway::providers::tiktok_shop::auth::{TikTokAuth, TikTokAuthError};
use ionflux_gateway::providers::woocommerce::api::{
    DEFAULT_TOPICS, Site, WooCommerceApi, WooCommerceError,
};
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_tiktok::{self, FakeTikTok, TikTokFailure};
use ionflux_tests::fake_woocommerce::FakeWooCommerce;

const CK: &str = "ck_4a1f0c2e9b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
const CS: &str = "cs_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";
const HOOK_SECRET: &str = "whsec-for-woo-7c1b0e";
const DELIVERY: &str = "https://gw.example/integrations/woocommerce/webhooks/ab12cd34";

fn woo() -> WooCommerceApi {
    WooCommerceApi::new(Duration::from_secs(10))
        .unwrap()
        .allowing_plain_http()
}

fn site(fake: &FakeWooCommerce, key: &str, secret: &str) -> Site {
    woo()
        .site(&fake.site_url(), key, Secret::from(secret.to_string()))
        .unwrap()
}

fn secret(s: &str) -> Secret {
    Secret::from(s.to_string())
}

fn tiktok(base: &str, app_secret: &str) -> TikTokAuth {
    TikTokAuth::new(
        base,
        "app-key-1",
        secret(app_secret),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Fails if any of `needles` shows in `text`.
fn assert_hides(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(!text.contains(n), "{n:?} leaked into {text:?}");
    }
}

#[tokio::test]
async fn woocommerce_webhooks_are_created_listed_and_deleted() {
    let fake = FakeWooCommerce::start(CK, CS).await;
    let api = woo();
    let site = site(&fake, CK, CS);

    let made = api
        .create_webhook(
            &site,
            "ionflux order.created",
            "order.created",
            DELIVERY,
            &secret(HOOK_SECRET),
        )
        .await
        .unwrap();
    assert_eq!(made.topic, "order.created");
    assert_eq!(made.delivery_url, DELIVERY);
    assert_eq!(made.status, "active");
    let held = fake.webhooks();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].secret, HOOK_SECRET,
        "the secret reached WooCommerce"
    );

    let listed = api.list_webhooks(&site).await.unwrap();
    assert_eq!(listed, vec![made.clone()]);

    api.delete_webhook(&site, made.id).await.unwrap();
    assert!(fake.webhooks().is_empty());
    let delete = fake
        .calls()
        .into_iter()
        .find(|c| c.method == "DELETE")
        .unwrap();
    assert_eq!(delete.query.get("force").map(String::as_str), Some("true"));
    // Already gone: nothing to do.
    api.delete_webhook(&site, made.id).await.unwrap();
}

#[tokio::test]
async fn woocommerce_default_topics_are_registered_once_however_often_set_up_runs() {
    let fake = FakeWooCommerce::start(CK, CS).await;
    let api = woo();
    let site = site(&fake, CK, CS);
    // The shop owner's own webhooks, more than one default page of them.
    for i in 0..12 {
        fake.add_webhook(
            "coupon.created",
            &format!("https://elsewhere.example/{i}"),
            "x",
        );
    }
    // One of ours from an earlier attempt, disabled since, secret lost.
    let old = fake.add_webhook("order.updated", DELIVERY, "an-old-secret");

    let first = api
        .ensure_webhooks(
            &site,
            "ionflux",
            &DEFAULT_TOPICS,
            DELIVERY,
            &secret(HOOK_SECRET),
        )
        .await
        .unwrap();
    assert_eq!(first.len(), DEFAULT_TOPICS.len());
    let reused: Vec<_> = first.iter().filter(|e| !e.created).collect();
    assert_eq!(reused.len(), 1, "{first:?}");
    assert_eq!(reused[0].webhook.id, old);

    let second = api
        .ensure_webhooks(
            &site,
            "ionflux",
            &DEFAULT_TOPICS,
            DELIVERY,
            &secret(HOOK_SECRET),
        )
        .await
        .unwrap();
    assert!(second.iter().all(|e| !e.created), "{second:?}");
    let ids = |v: &[_]| {
        let mut ids: Vec<u64> = v
            .iter()
            .map(|e: &ionflux_gateway::providers::woocommerce::api::Ensured| e.webhook.id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&first), ids(&second));

    let ours: Vec<_> = fake
        .webhooks()
        .into_iter()
        .filter(|w| w.delivery_url == DELIVERY)
        .collect();
    assert_eq!(ours.len(), DEFAULT_TOPICS.len(), "no duplicates: {ours:#?}");
    for w in &ours {
        assert_eq!(w.status, "active", "{w:?}");
        assert_eq!(w.secret, HOOK_SECRET, "{w:?}");
    }
    let mut topics: Vec<&str> = ours.iter().map(|w| w.topic.as_str()).collect();
    topics.sort();
    let mut expected = DEFAULT_TOPICS.to_vec();
    expected.sort();
    assert_eq!(topics, expected);
    // The listing read past WordPress's default page of 10.
    assert!(
        fake.calls().iter().any(
            |c| c.method == "GET" && c.query.get("per_page").map(String::as_str) == Some("100")
        )
    );
    assert_eq!(fake.webhooks().len(), 12 + DEFAULT_TOPICS.len());
}

#[tokio::test]
async fn woocommerce_errors_are_typed() {
    let fake = FakeWooCommerce::start(CK, CS).await;
    let api = woo();

    for (key, secret_) in [("ck_wrong", CS), (CK, "cs_wrong")] {
        let err = api
            .list_webhooks(&site(&fake, key, secret_))
            .await
            .unwrap_err();
        match &err {
            WooCommerceError::Auth {
                status: 401, code, ..
            } => {
                assert_eq!(code, "woocommerce_rest_authentication_error")
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_transient());
        assert_hides(&format!("{err} {err:?}"), &[CS, "cs_wrong"]);
    }

    let good = site(&fake, CK, CS);
    fake.set_read_only(true);
    let err = api
        .create_webhook(&good, "n", "order.created", DELIVERY, &secret(HOOK_SECRET))
        .await
        .unwrap_err();
    assert!(matches!(err, WooCommerceError::Auth { .. }), "{err:?}");
    fake.set_read_only(false);

    let err = api
        .create_webhook(&good, "n", "order.shipped", DELIVERY, &secret(HOOK_SECRET))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("woocommerce_rest_webhook_invalid_topic"));
    assert!(
        matches!(err, WooCommerceError::Api { status: 400, .. }),
        "{err:?}"
    );

    fake.fail_next(500, 1);
    let err = api.list_webhooks(&good).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(api.list_webhooks(&good).await.is_ok(), "one failure only");

    // A site with no WooCommerce REST API under it.
    let elsewhere = api
        .site(&format!("{}/blog", fake.site_url()), CK, secret(CS))
        .unwrap();
    let err = api.list_webhooks(&elsewhere).await.unwrap_err();
    assert_eq!(err.code(), Some("rest_no_route"));
    assert!(matches!(err, WooCommerceError::NotFound { .. }), "{err:?}");

    // Nothing listening: a transport error, without the URL.
    let closed = ionflux_tests::free_loopback_addr();
    let err = api
        .list_webhooks(
            &api.site(&format!("http://{closed}"), CK, secret(CS))
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WooCommerceError::Transport(_)), "{err:?}");
    assert!(err.is_transient());

    // Plain http is refused outside tests.
    let strict = WooCommerceApi::new(Duration::from_secs(10)).unwrap();
    assert!(matches!(
        strict.site(&fake.site_url(), CK, secret(CS)),
        Err(WooCommerceError::SiteUrl(_))
    ));
    assert_hides(&format!("{good:?} {api:?}"), &[CS, HOOK_SECRET]);
}

#[tokio::test]
async fn tiktok_code_exchange_and_rotating_refresh() {
    let fake = FakeTikTok::start("app-key-1", "app-secret-1").await;
    let auth = tiktok(&fake.base_url(), "app-secret-1");
    fake.set_lifetimes(3600, 86_400);
    let code = fake.issue_code("7010736057180325637", "Jjj test shop");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let tokens = auth.exchange_code(&code).await.unwrap();
    assert_eq!(tokens.open_id, "7010736057180325637");
    assert_eq!(tokens.seller_name, "Jjj test shop");
    let access = String::from_utf8(tokens.access_token.expose().to_vec()).unwrap();
    assert!(fake.access_token_is_live(&access));
    // Absolute times, about an hour and a day away.
    let lives = |at: i64| at - before;
    assert!((3500..=3700).contains(&lives(tokens.access_token_expires_at.timestamp())));
    assert!((86_300..=86_500).contains(&lives(tokens.refresh_token_expires_at.timestamp())));

    // The code works once.
    let err = auth.exchange_code(&code).await.unwrap_err();
    match &err {
        TikTokAuthError::Api {
            code, request_id, ..
        } => {
            assert_eq!(*code, fake_tiktok::CODE_INVALID_AUTH_CODE);
            assert!(request_id.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());

    // A refresh rotates: new tokens, and the spent refresh token is refused.
    let refreshed = auth.refresh(&tokens.refresh_token).await.unwrap();
    assert_ne!(
        refreshed.access_token.expose(),
        tokens.access_token.expose()
    );
    assert_ne!(
        refreshed.refresh_token.expose(),
        tokens.refresh_token.expose()
    );
    assert_eq!(refreshed.open_id, tokens.open_id);
    let err = auth.refresh(&tokens.refresh_token).await.unwrap_err();
    assert!(
        matches!(err, TikTokAuthError::Api { code, .. } if code == fake_tiktok::CODE_INVALID_REFRESH_TOKEN),
        "{err:?}"
    );
    let again = auth.refresh(&refreshed.refresh_token).await.unwrap();
    assert_eq!(again.open_id, tokens.open_id);
    assert_eq!(fake.calls(), (2, 3));

    // No code, secret or token shows in anything printable.
    let printed = format!("{auth:?} {tokens:?} {refreshed:?} {again:?} {err} {err:?}");
    let mut hidden: Vec<String> = fake.issued();
    hidden.push("app-secret-1".into());
    let hidden: Vec<&str> = hidden.iter().map(String::as_str).collect();
    assert_hides(&printed, &hidden);
}

#[tokio::test]
async fn tiktok_refusals_and_failures_are_typed() {
    let fake = FakeTikTok::start("app-key-1", "app-secret-1").await;
    let wrong = tiktok(&fake.base_url(), "not-the-secret");
    let code = fake.issue_code("open-1", "Shop One");
    let err = wrong.exchange_code(&code).await.unwrap_err();
    assert!(
        matches!(err, TikTokAuthError::Api { code, .. } if code == fake_tiktok::CODE_INVALID_APP),
        "{err:?}"
    );
    assert_hides(
        &format!("{err} {err:?} {wrong:?}"),
        &["not-the-secret", &code],
    );

    let auth = tiktok(&fake.base_url(), "app-secret-1");
    // code != 0 is an error even with HTTP 200 and whatever the message.
    fake.fail_next(TikTokFailure::Code(105_002, "system busy".into()), 1);
    let err = auth.exchange_code(&code).await.unwrap_err();
    match &err {
        TikTokAuthError::Api { code, message, .. } => {
            assert_eq!((*code, message.as_str()), (105_002, "system busy"))
        }
        other => panic!("{other:?}"),
    }
    // A gateway error page is a transient status, not a verdict.
    fake.fail_next(TikTokFailure::Http(502), 1);
    let err = auth.exchange_code(&code).await.unwrap_err();
    assert!(
        matches!(err, TikTokAuthError::Status { status: 502 }),
        "{err:?}"
    );
    assert!(err.is_transient());
    // Failures spent no code: it still works.
    auth.exchange_code(&code).await.unwrap();

    // An unknown refresh token.
    let err = auth.refresh(&secret("RFT_never_issued")).await.unwrap_err();
    assert!(matches!(err, TikTokAuthError::Api { .. }), "{err:?}");

    // Nothing listening: transport, and the URL (with the app secret in its
    // query) is not in the message.
    let closed = ionflux_tests::free_loopback_addr();
    let gone = tiktok(&format!("http://{closed}"), "app-secret-1");
    let err = gone.exchange_code("AUTHCODE_x").await.unwrap_err();
    assert!(matches!(err, TikTokAuthError::Transport(_)), "{err:?}");
    assert_hides(&format!("{err} {err:?}"), &["app-secret-1", "AUTHCODE_x"]);
}
