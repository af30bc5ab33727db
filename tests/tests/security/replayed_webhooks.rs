//! A merchant may deliver webhooks for its own connection, and may never
//! affect another's (DESIGN §6b). A webhook delivered again is the common
//! case of that: Shopify retries a delivery that is still being answered,
//! and anyone who captured one signed webhook can send it again, as often
//! and as concurrently as they like. Each copy must be answered 200 (the
//! first `accepted`, the rest `duplicate`), stored and published once, and
//! none may cost another merchant's webhooks their acknowledgement.
//!
//! It is the PostgreSQL run that matters most: there, copies of one webhook
//! land in different group commits at the same moment, which is what once
//! deadlocked two groups and failed every webhook in the losing one with a
//! 503. The requests below come in rounds of hundreds at once, so that the
//! inbox's writers always have several groups in flight that share ids.

use std::collections::HashMap;
use std::sync::Arc;

use ionflux_tests::{Gateway, Hook, Options};

/// Rounds of concurrent requests.
const ROUNDS: usize = 5;
/// Replayed webhook ids per round, each sent `COPIES` times at once.
const REPLAYED: usize = 40;
const COPIES: usize = 8;
/// Unique webhooks of the other merchant per round, sent alongside.
const BYSTANDERS: usize = 200;

fn copy(hook: &Hook<'static>) -> Hook<'static> {
    Hook {
        path: hook.path.clone(),
        headers: hook.headers.clone(),
        body: hook.body.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_webhooks_are_stored_once_and_fail_nobody() {
    let gw = Arc::new(
        Gateway::start(Options {
            admin_token: Some("replayed-webhooks-operator-token".into()),
            ..Options::default()
        })
        .await,
    );
    let replayed = gw.connect("replayed.myshopify.com").await;
    let bystander = gw.connect("bystander.myshopify.com").await;

    // webhook id -> (answers "accepted", answers "duplicate", inbox ids)
    let mut seen: HashMap<String, (usize, usize, Vec<i64>)> = HashMap::new();
    let mut bystander_ids = Vec::new();
    for round in 0..ROUNDS {
        let mut requests = Vec::new();
        for i in 0..REPLAYED {
            let body = format!(r#"{{"id": {}, "round": {round}, "replayed": true}}"#, i);
            let hook = Hook::shopify(&replayed, "orders/create", "2024-01", body.as_bytes());
            for _ in 0..COPIES {
                requests.push((true, copy(&hook)));
            }
        }
        for i in 0..BYSTANDERS {
            let body = format!(r#"{{"id": {}, "round": {round}}}"#, i);
            let hook = Hook::shopify(&bystander, "orders/create", "2024-01", body.as_bytes());
            bystander_ids.push(hook.header("x-shopify-webhook-id").unwrap().to_string());
            requests.push((false, hook));
        }
        // Interleaved, so that every group mixes both merchants and copies
        // of one id go to different writers.
        let mut shuffled: Vec<_> = requests
            .into_iter()
            .map(|r| (uuid::Uuid::new_v4().as_u128(), r))
            .collect();
        shuffled.sort_by_key(|(key, _)| *key);
        let mut tasks = tokio::task::JoinSet::new();
        for (_, (is_replayed, hook)) in shuffled {
            let gw = gw.clone();
            tasks.spawn(async move {
                let (status, body) = gw.send(&hook).await;
                let id = hook.header("x-shopify-webhook-id").unwrap().to_string();
                (is_replayed, id, status, body)
            });
        }
        while let Some(answer) = tasks.join_next().await {
            let (is_replayed, id, status, body) = answer.unwrap();
            assert_eq!(
                status,
                200,
                "round {round}: a {} webhook was answered {status}: {body}",
                if is_replayed {
                    "replayed"
                } else {
                    "bystander's"
                }
            );
            let inbox_id = body["inbox_id"].as_i64().expect("an inbox id");
            if !is_replayed {
                assert_eq!(body["status"], "accepted", "{body}");
                continue;
            }
            let entry = seen.entry(id).or_default();
            match body["status"].as_str() {
                Some("accepted") => entry.0 += 1,
                Some("duplicate") => entry.1 += 1,
                other => panic!("unexpected status {other:?}: {body}"),
            }
            entry.2.push(inbox_id);
        }
    }

    assert_eq!(seen.len(), ROUNDS * REPLAYED);
    for (id, (accepted, duplicate, inbox_ids)) in &seen {
        assert_eq!(
            (*accepted, *duplicate),
            (1, COPIES - 1),
            "webhook {id}: accepted once, duplicate for every other copy"
        );
        assert!(
            inbox_ids.iter().all(|i| *i == inbox_ids[0]),
            "webhook {id}: every copy names the one stored row: {inbox_ids:?}"
        );
    }

    // Each webhook published once: the replayed ones and the bystander's.
    gw.settle().await;
    let mut published: HashMap<String, usize> = HashMap::new();
    for event in gw.logged_events().await {
        let id = event["metadata"]["webhook_id"]
            .as_str()
            .unwrap()
            .to_string();
        *published.entry(id).or_default() += 1;
    }
    assert_eq!(published.len(), ROUNDS * (REPLAYED + BYSTANDERS));
    assert!(
        seen.keys()
            .chain(&bystander_ids)
            .all(|id| published.get(id) == Some(&1)),
        "every webhook is published exactly once"
    );

    Arc::try_unwrap(gw)
        .ok()
        .expect("no request outlives its round")
        .stop()
        .await;
}
