//! The intake contract of DESIGN §1, over real HTTP, on the embedded default
//! (SQLite + event log): every refusal has its status and JSON code, nothing
//! refused is stored, and duplicates make no second event.

use ionflux_tests::{Gateway, Hook, Options};

const ORDER: &[u8] =
    br#"{"id": 820982911946154508, "email": "jon@example.com", "total_price": "10.00"}"#;

#[tokio::test]
async fn a_signed_webhook_becomes_one_platform_event() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("intake-shop.myshopify.com").await;
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let (status, body) = gw.send(&hook).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    gw.settle().await;

    let events = gw.logged_events().await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let c = &conn.created;
    assert_eq!(
        e["event_type"],
        format!(
            "ionflux.shopify.ws_{}.brand_{}.orders.created",
            c.workspace_id, c.brand_id
        )
    );
    assert_eq!(e["workspace_id"], c.workspace_id.as_str());
    assert_eq!(e["brand_id"], c.brand_id.as_str());
    assert_eq!(e["payload_schema_version"], "v1.shopify.2024-01");
    assert_eq!(e["source_service_name"], "ShopifyIntegrationService");
    assert_eq!(e["event_timestamp"], "2026-11-23T10:00:00.000Z");
    assert_eq!(e["metadata"]["topic"], "orders/create");
    assert_eq!(e["metadata"]["shop_domain"], "intake-shop.myshopify.com");
    assert_eq!(e["metadata"]["account"], "intake-shop.myshopify.com");
    assert_eq!(
        e["metadata"]["webhook_id"],
        hook.header("x-shopify-webhook-id").unwrap()
    );
    assert_eq!(e["metadata"]["transform"], "shopify-default");
    // The payload is the body byte for byte: the 64-bit id keeps its digits.
    let raw = gw.store().events_tail(1).await.unwrap().remove(0).payload;
    assert!(
        raw.contains(r#""payload_json":{"id": 820982911946154508,"#),
        "{raw}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_repeated_webhook_id_is_acknowledged_but_not_processed_again() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("dup-shop.myshopify.com").await;
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let (s1, b1) = gw.send(&hook).await;
    let (s2, b2) = gw.send(&hook).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1["status"], "accepted");
    assert_eq!(b2["status"], "duplicate");
    assert_eq!(b1["inbox_id"], b2["inbox_id"]);
    gw.settle().await;
    // and once more after it was published
    let (s3, b3) = gw.send(&hook).await;
    assert_eq!((s3, b3["status"].as_str()), (200, Some("duplicate")));
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn refusals_have_status_and_json_code_and_store_nothing() {
    let gw = Gateway::start(Options {
        max_body_bytes: Some(64 * 1024),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("refuse-shop.myshopify.com").await;
    let other = gw.connect("other-shop.myshopify.com").await;
    let good = || Hook::shopify(&conn, "orders/create", "2024-01", ORDER);

    let cases: Vec<(&str, Hook, u16, &str)> = vec![
        (
            "unknown path",
            Hook {
                path: "/integrations/shopify/webhooks/doesnotexist".into(),
                ..good()
            },
            403,
            "unknown_connection",
        ),
        (
            "missing hmac",
            good().without_header("x-shopify-hmac-sha256"),
            401,
            "invalid_hmac",
        ),
        (
            "garbage hmac",
            good().set_header("x-shopify-hmac-sha256", "not base64 at all"),
            401,
            "invalid_hmac",
        ),
        (
            "signed by another secret",
            {
                let h = Hook::shopify(&other, "orders/create", "2024-01", ORDER);
                let sig = h.header("x-shopify-hmac-sha256").unwrap().to_string();
                good().set_header("x-shopify-hmac-sha256", sig)
            },
            401,
            "invalid_hmac",
        ),
        (
            "tampered body",
            Hook {
                body: ORDER
                    .iter()
                    .map(|b| if *b == b'1' { b'2' } else { *b })
                    .collect(),
                ..good()
            },
            401,
            "invalid_hmac",
        ),
        (
            "missing topic",
            good().without_header("x-shopify-topic"),
            400,
            "missing_header",
        ),
        (
            "missing shop",
            good().without_header("x-shopify-shop-domain"),
            400,
            "missing_header",
        ),
        (
            "missing webhook id",
            good().without_header("x-shopify-webhook-id"),
            400,
            "missing_header",
        ),
        (
            "another shop's webhook replayed here",
            good().set_header("x-shopify-shop-domain", "other-shop.myshopify.com"),
            403,
            "shop_mismatch",
        ),
        (
            "over the body limit",
            {
                let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(100 * 1024));
                Hook::shopify(&conn, "orders/create", "2024-01", big.as_bytes())
            },
            413,
            "payload_too_large",
        ),
    ];
    for (name, hook, status, code) in cases {
        let (got, body) = gw.send(&hook).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    assert_eq!(gw.store().pending_count().await.unwrap(), 0);
    gw.settle().await;
    assert!(gw.logged_events().await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_non_json_body_with_a_valid_hmac_goes_to_the_dead_letters() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("nonjson-shop.myshopify.com").await;
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", b"this is not json");
    let (status, _) = gw.send(&hook).await;
    assert_eq!(status, 200);
    // the next normal webhook is unaffected
    let (status, _) = gw
        .send(&Hook::shopify(&conn, "orders/paid", "2024-01", ORDER))
        .await;
    assert_eq!(status, 200);
    gw.settle().await;

    let letters = gw.store().dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0].webhook_id,
        hook.header("x-shopify-webhook-id").unwrap()
    );
    assert_eq!(letters[0].reason_code, "invalid_output");
    assert!(letters[0].reason.contains("JSON"), "{}", letters[0].reason);
    let events = gw.logged_events().await;
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["event_type"]
            .as_str()
            .unwrap()
            .ends_with(".orders.paid")
    );
    gw.stop().await;
}

#[tokio::test]
async fn health_ready_admin_and_unknown_routes() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("admin-shop.myshopify.com").await;
    gw.send(&Hook::shopify(
        &conn,
        "products/update",
        "2025-10",
        br#"{"id":1}"#,
    ))
    .await;
    gw.settle().await;

    let get = |path: &str| {
        let url = gw.url(path);
        let admin_url = gw.admin_url(path);
        let token = gw.operator_token.clone().unwrap();
        let client = gw.client.clone();
        let admin = path.starts_with("/admin/");
        async move {
            // The admin API lives on the admin listener, the probes on both.
            let r = if admin {
                client.get(admin_url).bearer_auth(token).send().await
            } else {
                client.get(url).send().await
            }
            .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(get("/health").await.0, 200);
    let (status, ready) = get("/ready").await;
    assert_eq!((status, ready["sink"].as_str()), (200, Some("event-log")));
    let (status, page) = get("/admin/v1/events?after=0&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert!(
        page["events"][0]["event"]["event_type"]
            .as_str()
            .unwrap()
            .ends_with(".products.updated")
    );
    let next = page["next_after"].as_i64().unwrap();
    let (_, empty) = get(&format!("/admin/v1/events?after={next}")).await;
    assert!(empty["events"].as_array().unwrap().is_empty());
    let (status, body) = get("/nope").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_trickles_its_request_head_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("trickle.myshopify.com").await;
    let addr = gw.running.addr;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /integrations/shopify/webhooks/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    // Meanwhile a normal webhook is served as usual.
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", br#"{"id":1}"#);
    assert_eq!(gw.send(&hook).await.0, 200);

    // The head never completes: the gateway closes the connection (after
    // its head timeout) instead of holding it open forever.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(ionflux_tests::PATIENCE, async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the trickling connection was closed");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_webhooks_are_each_stored_once_even_when_written_in_one_group() {
    let gw = std::sync::Arc::new(Gateway::start(Options::default()).await);
    let conn = std::sync::Arc::new(gw.connect("burst.myshopify.com").await);
    // 100 distinct webhooks, and one webhook id sent 20 times at once: the
    // group commit must store 101 rows and answer every request 200.
    let repeated = Hook::shopify(&conn, "orders/create", "2024-01", br#"{"id":0}"#);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (gw, conn) = (gw.clone(), conn.clone());
        tasks.spawn(async move {
            let body = format!(r#"{{"id":{}}}"#, i + 1);
            let hook = Hook::shopify(&conn, "orders/create", "2024-01", body.as_bytes());
            gw.send(&hook).await
        });
    }
    for _ in 0..20 {
        let gw = gw.clone();
        let hook = Hook {
            path: repeated.path.clone(),
            headers: repeated.headers.clone(),
            body: repeated.body.clone(),
        };
        tasks.spawn(async move { gw.send(&hook).await });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(answer) = tasks.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        ids.insert(body["inbox_id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 101, "one row per distinct webhook id");
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), 101);
}

#[tokio::test]
async fn an_intake_only_replica_acknowledges_and_leaves_publishing_to_another() {
    let intake = Gateway::start(Options {
        dispatch: Some(false),
        ..Options::default()
    })
    .await;
    let conn = intake.connect("intake-only.myshopify.com").await;
    for i in 0..3 {
        let body = format!(r#"{{"id":{i}}}"#);
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", body.as_bytes());
        let (status, body) = intake.send(&hook).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(intake.store().pending_count().await.unwrap(), 3);
    assert!(intake.logged_events().await.is_empty());

    // A replica with dispatch on, over the same database, publishes them.
    let publisher = Gateway::start_with_vault(
        Options {
            database_url: Some(intake.database_url.clone()),
            ..Options::default()
        },
        intake.vault.clone(),
    )
    .await;
    publisher.settle().await;
    assert_eq!(publisher.logged_events().await.len(), 3);
    publisher.stop().await;
    intake.stop().await;
}

/// Issue 18: intake is `/integrations/{provider}/webhooks/{id}`. A genuine
/// webhook posted under another provider's segment, or one that does not
/// exist, is answered as an unknown path (404 `not_found`, no hint that
/// the identifier exists) and stores nothing; Shopify's own path goes on.
#[tokio::test]
async fn the_path_names_the_connections_provider_or_nothing() {
    let gw = Gateway::start(Options::default()).await;
    let conn = gw.connect("provider-path.myshopify.com").await;
    let id = &conn.created.secure_path_identifier;
    for provider in ["woocommerce", "nosuchplatform", "Shopify"] {
        let mut hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
        hook.path = format!("/integrations/{provider}/webhooks/{id}");
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 404, "{provider}: {body}");
        assert_eq!(body["code"], "not_found", "{provider}");
        assert_eq!(body["message"], "no such endpoint", "{provider}");
    }
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    assert_eq!(hook.path, format!("/integrations/shopify/webhooks/{id}"));
    let (status, body) = gw.send(&hook).await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), 1);
    gw.stop().await;
}
