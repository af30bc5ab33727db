//! Hot swap across replicas: two gateway processes on one database, a steady
//! stream of webhooks, and 100 route changes between two transform versions.
//! No webhook is lost or published twice, every event was made by exactly
//! one whole version, and the last change reaches both replicas without a
//! restart.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::registry::{self, RouteSpec};
use ionflux_gateway::pipeline::{builtin, transform};
use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::store::Store;
use ionflux_gateway::support::vault::Vault;

const BIN: &str = env!("CARGO_BIN_EXE_ionflux-gateway");
const SECRET: &[u8] = b"shpss_swap_secret";
const SHOP: &str = "swap-shop.myshopify.com";

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_load_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let keys = format!("k1:{}", Vault::generate_key());
    let cmd = || {
        let mut c = Command::new(BIN);
        c.env("IONFLUX_DATABASE_URL", &db)
            .env("IONFLUX_MASTER_KEYS", &keys)
            .env_remove("IONFLUX_KAFKA_BROKERS")
            // Two replicas side by side; nothing here uses the admin API.
            .env("IONFLUX_ADMIN_LISTEN", "off");
        c
    };
    // The database, as `serve` makes it on its first start (no other
    // command creates it).
    let store = Store::connect(&db).await.unwrap();

    let mut add = cmd()
        .args(["connections", "add", "--shop", SHOP])
        .args(["--workspace", &uuid::Uuid::new_v4().to_string()])
        .args(["--brand", &uuid::Uuid::new_v4().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(SECRET).unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success());
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = created["webhook_path"].as_str().unwrap().to_string();
    let brand = created["brand_id"].as_str().unwrap().to_string();

    // Version B: a different build than the built-in default (it redacts).
    let v2 = builtin::component("redact-pii").unwrap();
    let v2_digest = transform::digest(v2);
    store
        .put_transform(&v2_digest, "redact-v2", v2)
        .await
        .unwrap();

    let replicas: Vec<Replica> = (0..2)
        .map(|_| {
            let port = free_port();
            let child = cmd()
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Replica {
                child,
                base: format!("http://127.0.0.1:{port}"),
            }
        })
        .collect();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &replicas {
        while client
            .get(format!("{}/ready", r.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "replica did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let send = {
        let client = client.clone();
        let path = path.clone();
        move |base: String, n: usize| {
            let client = client.clone();
            let url = format!("{base}{path}");
            async move {
                let webhook_id = format!("swap-{n}");
                let body = format!(r#"{{"id": {n}, "email": "buyer{n}@example.com"}}"#);
                let status = client
                    .post(&url)
                    .header(webhook::TOPIC_HEADER, "orders/create")
                    .header(webhook::SHOP_HEADER, SHOP)
                    .header(webhook::WEBHOOK_ID_HEADER, &webhook_id)
                    .header(webhook::API_VERSION_HEADER, "2026-04")
                    .header(webhook::HMAC_HEADER, webhook::sign(SECRET, body.as_bytes()))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status();
                (webhook_id, status.as_u16())
            }
        }
    };

    // The stream: round-robin over the replicas until the swapper is done.
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let sender = tokio::spawn({
        let send = send.clone();
        let bases = bases.clone();
        async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !*done_rx.borrow_and_update() {
                let (id, status) = send(bases[n % bases.len()].clone(), n).await;
                assert_eq!(status, 200);
                acked.push(id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        }
    });

    let route = |transform: &str| RouteSpec {
        provider: "shopify".into(),
        brand_id: Some(brand.clone()),
        topic_pattern: "*".into(),
        transform: transform.into(),
        ..RouteSpec::default()
    };
    for i in 0..100 {
        let t = if i % 2 == 0 {
            v2_digest.as_str()
        } else {
            "builtin:shopify-default"
        };
        registry::set_route(&store, &route(t), "swapper")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The 100th change left the default in place; one more makes v2 final.
    registry::set_route(&store, &route(&v2_digest), "swapper")
        .await
        .unwrap();
    done_tx.send(true).unwrap();
    let mut acked = sender.await.unwrap();
    assert!(acked.len() > 100, "a steady stream ran during the swaps");

    // Both replicas pick up the final table without a restart. Waiting a
    // moment first is not a timing assertion: it gives the one-second
    // propagation bound room on a loaded machine.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut last = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let (id, status) = send(base.clone(), 1_000_000 + i).await;
        assert_eq!(status, 200);
        last.push(id.clone());
        acked.push(id);
    }

    let mut events = Vec::new();
    while events.len() < acked.len() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "only {} of {} events arrived",
            events.len(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The gateway's own events (`integration.connected`) are not the
        // webhooks'.
        events = store
            .events_after(0, 1_000_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| !e.payload.contains("\"transform\":\"gateway:"))
            .collect();
    }

    let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        let id = v["metadata"]["webhook_id"].as_str().unwrap().to_string();
        // Each event comes from one whole version: v2 redacts, the default
        // does not.
        match v["metadata"]["transform"].as_str().unwrap() {
            "redact-v2" => assert!(v["payload_json"].get("email").is_none(), "{id}"),
            "shopify-default" => assert!(v["payload_json"]["email"].is_string(), "{id}"),
            other => panic!("unexpected transform {other}"),
        }
        assert!(seen.insert(id.clone(), v).is_none(), "{id} published twice");
    }
    acked.sort();
    let mut published: Vec<String> = seen.keys().cloned().collect();
    published.sort();
    assert_eq!(published, acked, "every acknowledged webhook, exactly once");
    for id in &last {
        assert_eq!(seen[id]["metadata"]["transform"], "redact-v2", "{id}");
    }
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert!(store.route_history(1000).await.unwrap().len() >= 101);

    for r in &replicas {
        let status = Command::new("kill")
            .args(["-TERM", &r.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for mut r in replicas {
        assert!(r.child.wait().unwrap().success(), "clean stop on SIGTERM");
    }
}
