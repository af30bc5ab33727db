//! The store writes the hot path in multi-row statements (a group of
//! webhooks per INSERT, a batch of events per INSERT, published rows in two
//! statements). These tests hold them to the one-row semantics they
//! replaced, on whichever backend the suite runs on: ids in arrival order,
//! the first of repeated keys inserted and the rest duplicates, repeated
//! event ids logged once, and every outcome recorded.

use std::time::Duration;

use ionflux_gateway::pipeline::publish::{Delivery, Record, Sink};
use ionflux_gateway::store::{
    Blob, ConnectionRow, DeadLetter, InboxRow, Inserted, Logged, NewWebhook, Outcome, Store, blob,
};
use ionflux_gateway::support::vault::{Secret, Vault};
use ionflux_tests::{TestDatabase, fresh_database};

async fn store_with_connection() -> (TestDatabase, Store, ConnectionRow) {
    let db = fresh_database().await;
    let store = Store::connect(&db.url).await.unwrap();
    let vault = Vault::from_spec(&format!("k1:{}", Vault::generate_key())).unwrap();
    let created = ionflux_gateway::providers::shopify::add_connection(
        &store,
        &vault,
        "batches.myshopify.com",
        &uuid::Uuid::new_v4().to_string(),
        &uuid::Uuid::new_v4().to_string(),
        &Secret::from("secret".to_string()),
    )
    .await
    .unwrap();
    let row = store
        .connection_by_path(&created.secure_path_identifier)
        .await
        .unwrap()
        .unwrap();
    (db, store, row)
}

/// The body of webhook `id`: every other one large enough to be stored
/// compressed, so a group mixes both encodings.
fn body_of(id: &str) -> Vec<u8> {
    if id.len().is_multiple_of(2) {
        format!(r#"{{"id":"{id}","note":"{}"}}"#, "abc".repeat(400)).into_bytes()
    } else {
        id.as_bytes().to_vec()
    }
}

fn bodies(ids: &[impl AsRef<str>]) -> Vec<Blob> {
    ids.iter()
        .map(|id| Blob::encode(&body_of(id.as_ref())))
        .collect()
}

fn webhook<'a>(
    conn: &'a ConnectionRow,
    id: &'a str,
    headers: &'a [(String, String)],
    body: &'a Blob,
) -> NewWebhook<'a> {
    NewWebhook {
        connection: conn,
        webhook_id: id,
        topic: "orders/create",
        api_version: Some("2026-04"),
        occurred_at: None,
        event_id: None,
        trace_id: "0123456789abcdef0123456789abcdef",
        headers,
        body,
        received_at: 1,
    }
}

#[tokio::test]
async fn a_group_keeps_arrival_order_and_one_row_per_webhook_id() {
    let (_db, store, conn) = store_with_connection().await;
    let headers = vec![("x-shopify-topic".to_string(), "orders/create".to_string())];
    let before = Blob::encode(&body_of("stored-before"));
    let Inserted::New(earlier) = store
        .insert_webhook(&webhook(&conn, "stored-before", &headers, &before))
        .await
        .unwrap()
    else {
        panic!("a new webhook id is stored");
    };
    // 37 webhooks: written as chunks of 32, 4 and 1. The 36th repeats the
    // 4th, the 37th one stored before this group.
    let mut ids: Vec<String> = (0..35).map(|i| format!("w{i}")).collect();
    ids.push("w3".into());
    ids.push("stored-before".into());
    let blobs = bodies(&ids);
    let kept = |e| blobs.iter().any(|b| b.encoding == e);
    assert!(kept(blob::Encoding::Zstd) && kept(blob::Encoding::Identity));
    let group: Vec<NewWebhook<'_>> = ids
        .iter()
        .zip(&blobs)
        .map(|(id, body)| webhook(&conn, id, &headers, body))
        .collect();
    let out = store.insert_webhooks(&group).await.unwrap();
    assert_eq!(out.len(), 37);

    let new: Vec<i64> = out[..35]
        .iter()
        .map(|o| match o {
            Inserted::New(id) => *id,
            other => panic!("a first webhook id is new, got {other:?}"),
        })
        .collect();
    assert!(
        new.windows(2).all(|w| w[0] < w[1]),
        "inbox ids follow arrival order (the dispatcher's order): {new:?}"
    );
    assert!(new[0] > earlier);
    assert_eq!(
        out[35],
        Inserted::Duplicate(new[3]),
        "a repeat within the group"
    );
    assert_eq!(
        out[36],
        Inserted::Duplicate(earlier),
        "a repeat of a stored webhook"
    );

    // Each stored row is the webhook it claims to be.
    let rows = store
        .claim("replica-a", 100, Duration::from_secs(30))
        .await
        .unwrap();
    let webhook_ids: Vec<&str> = rows.iter().map(|r| r.webhook_id.as_str()).collect();
    let mut expected = vec!["stored-before"];
    expected.extend(ids[..35].iter().map(String::as_str));
    assert_eq!(webhook_ids, expected);
    // Bodies come back as sent, whichever way each was kept.
    assert!(
        rows.iter()
            .all(|r| r.attempts == 1 && r.body == body_of(&r.webhook_id))
    );
}

fn record(event_id: uuid::Uuid) -> Record {
    Record {
        event_id,
        topic: "events".into(),
        key: "brand-batches".into(),
        payload: format!(r#"{{"event_id":"{event_id}"}}"#).into_bytes(),
        headers: vec![("h".into(), "v".into())],
    }
}

#[tokio::test]
async fn the_event_log_appends_in_order_and_logs_an_event_id_once() {
    let (_db, store, _conn) = store_with_connection().await;
    let log = Sink::Log(store.clone());
    let append = |records: Vec<Record>| {
        let log = &log;
        async move {
            log.send(&records)
                .await
                .into_iter()
                .map(|r| r.expect("appended"))
                .collect::<Vec<Delivery>>()
        }
    };
    let ids: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::now_v7()).collect();
    let first = append(vec![
        record(ids[0]),
        record(ids[1]),
        record(ids[0]),
        record(ids[2]),
    ])
    .await;
    let offsets: Vec<i64> = first.iter().map(|d| d.offset).collect();
    assert!(
        offsets[0] < offsets[1] && offsets[1] < offsets[3],
        "{offsets:?}"
    );
    assert_eq!(
        offsets[2], offsets[0],
        "a repeated event id keeps its first position"
    );

    // A retry after a crash: what was logged keeps its place, the rest follows.
    let again = append(vec![record(ids[1]), record(ids[3])]).await;
    assert_eq!(again[0].offset, offsets[1]);
    assert!(again[1].offset > offsets[3]);

    let logged = store.events_after(0, 100).await.unwrap();
    let logged_ids: Vec<String> = logged.iter().map(|e| e.event_id.clone()).collect();
    let expected: Vec<String> = [ids[0], ids[1], ids[2], ids[3]]
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(logged_ids, expected, "each event once, in append order");
}

/// Webhooks "a", "b" and "c", stored and claimed by replica-a.
async fn claim_three(store: &Store, conn: &ConnectionRow) -> Vec<InboxRow> {
    let headers = Vec::new();
    let ids = ["a", "b", "c"];
    let blobs = bodies(&ids);
    let group: Vec<NewWebhook<'_>> = ids
        .iter()
        .zip(&blobs)
        .map(|(id, body)| webhook(conn, id, &headers, body))
        .collect();
    store.insert_webhooks(&group).await.unwrap();
    let rows = store
        .claim("replica-a", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    rows
}

#[tokio::test]
async fn finishing_a_mixed_batch_records_every_outcome() {
    let (_db, store, conn) = store_with_connection().await;
    let rows = claim_three(&store, &conn).await;
    let delivery = |offset| Delivery {
        topic: "events".into(),
        partition: 0,
        offset,
    };
    let letter = DeadLetter {
        reason_code: "invalid_output".into(),
        reason: "test".into(),
        transform: None,
        transform_digest: None,
    };
    store
        .finish(&[
            (&rows[0], Outcome::Published(vec![delivery(7)])),
            (
                &rows[1],
                Outcome::Dead {
                    deliveries: vec![],
                    letter: letter.clone(),
                },
            ),
            (&rows[2], Outcome::Published(vec![delivery(8), delivery(9)])),
        ])
        .await
        .unwrap();
    store.release_leases("replica-a").await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);

    let state = |id| {
        let store = store.clone();
        async move { store.webhook_state(id).await.unwrap().unwrap() }
    };
    let (_, status, _, _, deliveries) = state("a").await;
    assert_eq!(status, "published");
    let deliveries: serde_json::Value = serde_json::from_str(&deliveries.unwrap()).unwrap();
    assert_eq!(deliveries[0]["offset"], 7);
    let (_, status, _, _, deliveries) = state("c").await;
    assert_eq!(status, "published");
    let deliveries: serde_json::Value = serde_json::from_str(&deliveries.unwrap()).unwrap();
    assert_eq!(deliveries.as_array().map(Vec::len), Some(2));
    assert_eq!(state("b").await.1, "dead");
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].inbox_id, rows[1].id);

    // Replayed and published this time: the dead letter is resolved.
    assert_eq!(store.requeue(&[rows[1].id]).await.unwrap(), 1);
    let again = store
        .claim("replica-a", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store
        .finish(&[(&again[0], Outcome::Published(vec![delivery(10)]))])
        .await
        .unwrap();
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(state("b").await.1, "published");
}

#[tokio::test]
async fn a_failed_group_keeps_nothing_and_the_next_one_is_written() {
    let (_db, store, conn) = store_with_connection().await;
    let headers = Vec::new();
    // A connection that is not stored: the inbox's foreign key refuses the
    // group's second row, so the whole group is rolled back.
    let mut gone = conn.clone();
    gone.id = uuid::Uuid::new_v4().to_string();
    let blobs = bodies(&["ok-1", "bad", "ok-2"]);
    let group = vec![
        webhook(&conn, "ok-1", &headers, &blobs[0]),
        webhook(&gone, "bad", &headers, &blobs[1]),
        webhook(&conn, "ok-2", &headers, &blobs[2]),
    ];
    assert!(store.insert_webhooks(&group).await.is_err());
    assert!(
        store
            .claim("replica-a", 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "nothing of a failed group is kept"
    );
    // The writer goes on: the same webhooks, without the bad one, are new.
    let group = vec![
        webhook(&conn, "ok-1", &headers, &blobs[0]),
        webhook(&conn, "ok-2", &headers, &blobs[2]),
    ];
    let out = store.insert_webhooks(&group).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, Inserted::New(_))));
}

#[tokio::test]
async fn the_event_log_and_the_outcomes_are_recorded_together() {
    let (_db, store, conn) = store_with_connection().await;
    let rows = claim_three(&store, &conn).await;
    let letter = DeadLetter {
        reason_code: "invalid_output".into(),
        reason: "test".into(),
        transform: Some("t".into()),
        transform_digest: None,
    };
    // a: one event; b: dead-lettered, no record; c: two events.
    let events: Vec<Record> = (0..3).map(|_| record(uuid::Uuid::now_v7())).collect();
    let logged = store
        .log_and_finish(
            &events,
            &[
                Logged {
                    row: &rows[0],
                    records: 0..1,
                    letter: None,
                },
                Logged {
                    row: &rows[1],
                    records: 1..1,
                    letter: Some(&letter),
                },
                Logged {
                    row: &rows[2],
                    records: 1..3,
                    letter: None,
                },
            ],
            Some("replica-a"),
        )
        .await
        .unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);

    let in_log = store.events_after(0, 10).await.unwrap();
    let offsets: Vec<i64> = in_log.iter().map(|e| e.seq).collect();
    assert_eq!(
        logged.iter().map(|d| d.offset).collect::<Vec<_>>(),
        offsets,
        "each record's place is where the log has it"
    );
    let state = |id| {
        let store = store.clone();
        async move { store.webhook_state(id).await.unwrap().unwrap() }
    };
    let deliveries_of = |json: Option<String>| -> Vec<i64> {
        let v: serde_json::Value = serde_json::from_str(&json.unwrap()).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["offset"].as_i64().unwrap())
            .collect()
    };
    let (_, status, _, _, deliveries) = state("a").await;
    assert_eq!(status, "published");
    assert_eq!(deliveries_of(deliveries), offsets[..1]);
    let (_, status, _, _, deliveries) = state("c").await;
    assert_eq!(status, "published");
    assert_eq!(deliveries_of(deliveries), offsets[1..]);
    let (_, status, _, _, deliveries) = state("b").await;
    assert_eq!(status, "dead");
    assert_eq!(deliveries_of(deliveries), Vec::<i64>::new());
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].inbox_id, letters[0].reason_code.as_str()),
        (rows[1].id, "invalid_output")
    );
    assert_eq!(letters[0].transform.as_deref(), Some("t"));

    // Replayed and published this time: the dead letter is resolved. The
    // brand's lease went with the first batch, so another replica may take it.
    assert_eq!(store.requeue(&[rows[1].id]).await.unwrap(), 1);
    let again = store
        .claim("replica-b", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let replayed = [record(uuid::Uuid::now_v7())];
    store
        .log_and_finish(
            &replayed,
            &[Logged {
                row: &again[0],
                records: 0..1,
                letter: None,
            }],
            None,
        )
        .await
        .unwrap();
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(state("b").await.1, "published");
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 4);
}
