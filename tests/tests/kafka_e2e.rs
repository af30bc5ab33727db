//! Real Shopify payloads in over HTTP, PlatformEvents out of a real broker
//! (tansu on loopback, started by tests/scripts/test.sh).

use std::collections::HashMap;

use ionflux_tests::{
    Gateway, Hook, Options, OwnBroker, consume, kafka_brokers, shopify_fixtures, test_topics,
};
use serde_json::Value;

/// The mapping the built-in transform must implement, written out again
/// independently of it.
fn expected_kind(topic: &str) -> String {
    match topic.split_once('/') {
        Some((entity, action)) => {
            let action = match action {
                "create" => "created",
                "update" => "updated",
                "delete" => "deleted",
                other => other,
            };
            format!("{entity}.{action}")
        }
        None => topic.to_string(),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn every_shopify_sample_comes_back_from_the_broker_as_a_platform_event() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let topics = test_topics();
    let gw = Gateway::start(Options {
        kafka: Some(brokers.clone()),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("fixtures-shop.myshopify.com").await;
    let c = conn.created.clone();
    let fixtures = shopify_fixtures();
    let mut sent = HashMap::new();
    let mut inbox_ids = Vec::new();
    for f in &fixtures {
        let hook = Hook::shopify(&conn, &f.topic, &f.api_version, &f.body);
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{}: {body}", f.file);
        inbox_ids.push(body["inbox_id"].as_i64().unwrap());
        sent.insert(
            hook.header("x-shopify-webhook-id").unwrap().to_string(),
            f.clone(),
        );
    }
    gw.settle().await;
    assert!(gw.store().dead_letters(10).await.unwrap().is_empty());

    let topic = topics.events.replace("{workspace_id}", &c.workspace_id);
    let records = consume(&brokers, &topic, fixtures.len()).await;
    let mut by_webhook = HashMap::new();
    for r in &records {
        let e = &r.value;
        let webhook_id = e["metadata"]["webhook_id"].as_str().unwrap();
        let f = &sent[webhook_id];
        let kind = expected_kind(&f.topic);
        let event_type = format!(
            "ionflux.shopify.ws_{}.brand_{}.{kind}",
            c.workspace_id, c.brand_id
        );
        assert_eq!(e["event_type"], event_type.as_str(), "{}", f.file);
        assert_eq!(e["workspace_id"], c.workspace_id.as_str());
        assert_eq!(e["brand_id"], c.brand_id.as_str());
        let schema = format!("v1.shopify.{}", f.api_version);
        assert_eq!(e["payload_schema_version"], schema.as_str(), "{}", f.file);
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(e["payload_json"], body, "{}", f.file);
        assert_eq!(e["metadata"]["topic"], f.topic.as_str());
        assert!(uuid::Uuid::parse_str(e["event_id"].as_str().unwrap()).is_ok());
        assert_eq!(r.key.as_deref(), Some(c.brand_id.as_str()));
        assert_eq!(header(&r.headers, "event_type"), Some(event_type.as_str()));
        assert_eq!(
            header(&r.headers, "payload_schema_version"),
            Some(schema.as_str())
        );
        assert_eq!(
            header(&r.headers, "workspace_id"),
            Some(c.workspace_id.as_str())
        );
        assert!(header(&r.headers, "trace_id").is_some_and(|t| !t.is_empty()));
        // CloudEvents 1.0, Kafka protocol binding, binary mode: the value is
        // the event's data (the PlatformEvent), its attributes are headers.
        assert_eq!(header(&r.headers, "ce_specversion"), Some("1.0"));
        assert_eq!(header(&r.headers, "ce_id"), e["event_id"].as_str());
        assert_eq!(header(&r.headers, "ce_type"), Some(event_type.as_str()));
        assert_eq!(
            header(&r.headers, "ce_source"),
            Some("/shopify/fixtures-shop.myshopify.com")
        );
        assert_eq!(header(&r.headers, "ce_time"), e["event_timestamp"].as_str());
        assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
        let trace_id = e["metadata"]["trace_id"].as_str().unwrap();
        assert!(
            header(&r.headers, "traceparent")
                .is_some_and(|t| t.starts_with(&format!("00-{trace_id}-"))),
            "{:?}",
            r.headers
        );
        by_webhook.insert(webhook_id.to_string(), e["event_id"].clone());
    }
    assert_eq!(
        by_webhook.len(),
        fixtures.len(),
        "every webhook exactly once"
    );

    // A retry (the row is processed again, as after a crash before it was
    // marked) publishes the same event_id.
    let first = gw.store().events_tail(0).await.unwrap();
    assert!(
        first.is_empty(),
        "Kafka mode writes nothing to the event log"
    );
    let requeued = gw.store().requeue(&inbox_ids[..1]).await.unwrap();
    assert_eq!(requeued, 1);
    gw.settle().await;
    let again = consume(&brokers, &topic, fixtures.len() + 1).await;
    let last = &again.last().unwrap().value;
    let webhook_id = last["metadata"]["webhook_id"].as_str().unwrap();
    assert_eq!(
        last["event_id"], by_webhook[webhook_id],
        "event_id is stable across a retry"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_letter_reaches_the_dlq_topic_with_its_reason() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let topics = test_topics();
    let gw = Gateway::start(Options {
        kafka: Some(brokers.clone()),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("dlq-shop.myshopify.com").await;
    let hook = Hook::shopify(&conn, "orders/create", "2024-01", b"<xml>not json</xml>");
    assert_eq!(gw.send(&hook).await.0, 200);
    gw.settle().await;
    let dlq = topics
        .dead_letters
        .replace("{workspace_id}", &conn.created.workspace_id);
    let records = consume(&brokers, &dlq, 1).await;
    let d = &records[0].value;
    assert_eq!(d["reason_code"], "invalid_output");
    assert_eq!(
        d["webhook_id"],
        hook.header("x-shopify-webhook-id").unwrap()
    );
    assert_eq!(d["body"], "<xml>not json</xml>");
    // A dead letter is a report for an operator, not a CloudEvent; it keeps
    // its trace so the failure can be found from it.
    let headers = &records[0].headers;
    assert!(
        headers.iter().all(|(k, _)| !k.starts_with("ce_")),
        "{headers:?}"
    );
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    assert_eq!(header(headers, "reason_code"), Some("invalid_output"));
    let trace_id = header(headers, "trace_id").unwrap();
    assert!(
        header(headers, "traceparent").is_some_and(|t| t.starts_with(&format!("00-{trace_id}-"))),
        "{headers:?}"
    );
    assert_eq!(gw.store().dead_letters(10).await.unwrap().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn webhooks_acknowledged_while_the_broker_is_down_are_all_published_when_it_returns() {
    // Part of the real-broker suite: only where tansu is available.
    if kafka_brokers().is_none() {
        return;
    }
    let broker = OwnBroker::reserve();
    let topics = test_topics();
    let gw = Gateway::start(Options {
        kafka: Some(broker.brokers()),
        topics: Some(topics.clone()),
        ..Options::default()
    })
    .await;
    let ready = gw.client.get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready without a broker");

    let conn = gw.connect("outage-shop.myshopify.com").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = format!(r#"{{"id": {i}}}"#);
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", body.as_bytes());
        assert_eq!(
            gw.send(&hook).await.0,
            200,
            "acknowledged while the broker is down"
        );
        ids.push(hook.header("x-shopify-webhook-id").unwrap().to_string());
    }
    assert!(gw.store().pending_count().await.unwrap() > 0);

    broker.start();
    gw.settle().await;
    assert!(gw.store().dead_letters(10).await.unwrap().is_empty());
    let topic = topics
        .events
        .replace("{workspace_id}", &conn.created.workspace_id);
    let records = consume(&broker.brokers(), &topic, ids.len()).await;
    let mut got: Vec<String> = records
        .iter()
        .map(|r| {
            r.value["metadata"]["webhook_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    got.dedup();
    ids.sort();
    assert_eq!(got, ids);
    // One brand, one key: the events kept the order they were received in.
    let order: Vec<i64> = records
        .iter()
        .map(|r| r.value["payload_json"]["id"].as_i64().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    gw.stop().await;
}
