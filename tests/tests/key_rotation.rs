//! Master-key rotation without downtime (issue 4): stored secrets move from
//! the old key to the new one while the gateway keeps taking webhooks, a
//! secret written by the gateway meanwhile is never overwritten, a row that
//! cannot be decrypted is reported and skipped, and a gateway reading a key
//! file takes up a key appended to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ionflux_gateway::pipeline::connection::{self, WEBHOOK_SECRET};
use ionflux_gateway::store::Store;
use ionflux_gateway::support::secrets::{self, Options as RunOptions, SECRET_COLUMNS};
use ionflux_gateway::support::vault::{Secret, Vault};
use ionflux_tests::{Conn, Gateway, Hook, Options};

const ORDER: &[u8] = br#"{"id": 450789469, "total_price": "598.94"}"#;

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A connection encrypted with `vault`, straight into the store (as a
/// gateway of an earlier key generation would have written it).
async fn connect(store: &Store, vault: &Vault, shop: &str) -> Conn {
    let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
    let created = ionflux_gateway::providers::shopify::add_connection(
        store,
        vault,
        shop,
        &uuid(),
        &uuid(),
        &Secret::from(secret.clone()),
    )
    .await
    .expect("connection added");
    Conn { created, secret }
}

/// The same shop and brand with a new secret: the old one becomes
/// `previous` and keeps verifying.
async fn rotate_secret(store: &Store, vault: &Vault, conn: &Conn) -> Conn {
    let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
    let c = &conn.created;
    let created = ionflux_gateway::providers::shopify::add_connection(
        store,
        vault,
        &c.account,
        &c.workspace_id,
        &c.brand_id,
        &Secret::from(secret.clone()),
    )
    .await
    .expect("secret rotated");
    assert!(!created.created);
    Conn { created, secret }
}

fn signed_with(conn: &Conn, secret: &str) -> Conn {
    Conn {
        created: conn.created.clone(),
        secret: secret.to_string(),
    }
}

/// Sends signed webhooks round-robin over `conns` until `done` is set (and
/// at least `min` were sent); answers every status.
async fn stream(gw: &Gateway, conns: &[Conn], done: &AtomicBool, min: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut i = 0;
    while !done.load(Ordering::SeqCst) || statuses.len() < min {
        let hook = Hook::shopify(&conns[i % conns.len()], "orders/create", "2024-01", ORDER);
        let (status, body) = gw.send(&hook).await;
        assert_eq!(status, 200, "{body}");
        statuses.push(status);
        i += 1;
        tokio::task::yield_now().await;
    }
    statuses
}

async fn send_all(gw: &Gateway, conns: &[Conn]) -> usize {
    for conn in conns {
        let (status, body) = gw
            .send(&Hook::shopify(conn, "orders/create", "2024-01", ORDER))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    conns.len()
}

fn assert_all_on(store_rows: &[ionflux_gateway::store::ConnectionRow], prefix: &str) {
    for row in store_rows {
        assert!(row.webhook_secret.starts_with(prefix), "{}", row.id);
        if let Some(prev) = &row.previous_webhook_secret {
            assert!(prev.starts_with(prefix), "{}", row.id);
        }
    }
}

#[tokio::test]
async fn reencrypt_while_serving_never_drops_a_webhook() {
    let (k1, k2) = (Vault::generate_key(), Vault::generate_key());
    let old = Vault::from_spec(&format!("k1:{k1}")).unwrap();
    let both = Arc::new(Vault::from_spec(&format!("k1:{k1},k2:{k2}")).unwrap());
    let only_new = Vault::from_spec(&format!("k2:{k2}")).unwrap();
    let gw = Gateway::start_with_vault(Options::default(), both.clone()).await;

    // 30 connections under k1; every third has a previous secret too.
    let mut conns = Vec::new();
    let mut previous = Vec::new();
    for i in 0..30 {
        let conn = connect(gw.store(), &old, &format!("rot-{i}.myshopify.com")).await;
        if i % 3 == 0 {
            let newer = rotate_secret(gw.store(), &old, &conn).await;
            previous.push(signed_with(&newer, &conn.secret));
            conns.push(newer);
        } else {
            conns.push(conn);
        }
    }
    assert_all_on(&gw.store().list_connections().await.unwrap(), "v1.k1.");
    // Warm: the gateway has these cached when re-encryption starts. Cold:
    // first read from the database after it (under k2).
    let (warm, cold) = conns.split_at(15);
    let mut sent = send_all(&gw, warm).await;

    // The operator's process: its own pool on the same database.
    let operator = Store::connect(&gw.database_url).await.unwrap();
    let done = AtomicBool::new(false);
    let mut warm_and_previous: Vec<Conn> = warm.iter().map(|c| signed_with(c, &c.secret)).collect();
    warm_and_previous.extend(previous.iter().map(|c| signed_with(c, &c.secret)));
    // Meanwhile the gateway side rotates some secrets under the new key:
    // those writes must survive the re-encryption.
    // (Only ones without a previous secret, so that every secret a test
    // webhook below is signed with still verifies.)
    let rotated_meanwhile: Vec<&Conn> = cold
        .iter()
        .filter(|c| {
            !previous
                .iter()
                .any(|p| p.created.connection_id == c.created.connection_id)
        })
        .step_by(3)
        .collect();
    assert!(rotated_meanwhile.len() >= 3);
    let (statuses, report, fresh) = tokio::join!(
        stream(&gw, &warm_and_previous, &done, 60),
        async {
            let report = secrets::run(
                &operator,
                &both,
                SECRET_COLUMNS,
                RunOptions {
                    batch: 7,
                    check_only: false,
                },
            )
            .await
            .unwrap();
            done.store(true, Ordering::SeqCst);
            report
        },
        async {
            let mut fresh = Vec::new();
            for conn in &rotated_meanwhile {
                fresh.push(rotate_secret(gw.store(), &both, conn).await);
                tokio::task::yield_now().await;
            }
            fresh
        },
    );
    sent += statuses.len();
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.active_key, "k2");
    assert_eq!(
        report.scanned,
        report.reencrypted + report.already_current + report.on_old_keys
    );
    assert!(report.reencrypted > 0, "{report:?}");

    // Cold connections, the ones rotated meanwhile (old and new secret),
    // and the warm ones again.
    sent += send_all(&gw, cold).await;
    sent += send_all(&gw, &fresh).await;
    sent += send_all(&gw, &previous).await;
    sent += send_all(&gw, warm).await;
    gw.settle().await;
    assert_eq!(
        gw.logged_events().await.len(),
        sent,
        "every webhook published"
    );

    // Everything is on k2, readable without k1, and the rotations made
    // during the run are the values that stand.
    let rows = gw.store().list_connections().await.unwrap();
    assert_eq!(rows.len(), 30);
    assert_all_on(&rows, "v1.k2.");
    for conn in &conns {
        let row = rows
            .iter()
            .find(|r| r.id == conn.created.connection_id)
            .unwrap();
        let stored = connection::webhook_secrets(&only_new, row).unwrap();
        match fresh
            .iter()
            .find(|f| f.created.connection_id == conn.created.connection_id)
        {
            Some(f) => {
                assert_eq!(stored[0].expose(), f.secret.as_bytes());
                assert_eq!(stored[1].expose(), conn.secret.as_bytes());
            }
            None => assert_eq!(stored[0].expose(), conn.secret.as_bytes()),
        }
    }

    let check = secrets::check(&operator, &both).await.unwrap();
    assert!(check.all_current(), "{check:?}");
    assert_eq!(check.by_key.keys().collect::<Vec<_>>(), ["k2"]);
    // Idempotent: a second run has nothing to do.
    let again = secrets::reencrypt_all(&operator, &both).await.unwrap();
    assert_eq!(again.reencrypted, 0);
    assert_eq!(again.already_current, again.scanned);
    assert_eq!(again.scanned, check.scanned);
    gw.stop().await;
}

#[tokio::test]
async fn a_concurrent_write_wins_and_a_broken_row_is_reported() {
    let (k1, k2) = (Vault::generate_key(), Vault::generate_key());
    let old = Vault::from_spec(&format!("k1:{k1}")).unwrap();
    let both = Vault::from_spec(&format!("k1:{k1},k2:{k2}")).unwrap();
    let gw = Gateway::start_with_vault(Options::default(), Arc::new(both)).await;
    let both = Vault::from_spec(&format!("k1:{k1},k2:{k2}")).unwrap();
    let store = gw.store();
    let a = connect(store, &old, "cas-a.myshopify.com").await;
    let b = connect(store, &old, "cas-b.myshopify.com").await;
    let c = connect(store, &old, "cas-c.myshopify.com").await;
    let col = &SECRET_COLUMNS[0];
    assert_eq!(col.column, WEBHOOK_SECRET);
    let id_a = a.created.connection_id.clone();
    let stale = store.secret_value(col, &id_a).await.unwrap().unwrap();

    // Compare-and-swap: a value read before someone else's write never
    // replaces that write.
    let newer = rotate_secret(store, &both, &a).await;
    let after_write = store.secret_value(col, &id_a).await.unwrap().unwrap();
    let reencrypted = both.encrypt(
        a.secret.as_bytes(),
        connection::binding(&id_a, WEBHOOK_SECRET),
    );
    let swapped = store
        .swap_secrets(col, &[(id_a.clone(), stale, reencrypted)])
        .await
        .unwrap();
    assert_eq!(swapped, [false]);
    assert_eq!(
        store.secret_value(col, &id_a).await.unwrap().unwrap(),
        after_write
    );
    let row = store
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == id_a)
        .unwrap();
    assert_eq!(
        connection::webhook_secrets(&both, &row).unwrap()[0].expose(),
        newer.secret.as_bytes()
    );

    // B's secret copied into C's row does not decrypt there (the binding
    // is the row): reported by id and column, the rest still moves.
    let id_b = b.created.connection_id.clone();
    let id_c = c.created.connection_id.clone();
    let b_ct = store.secret_value(col, &id_b).await.unwrap().unwrap();
    let c_ct = store.secret_value(col, &id_c).await.unwrap().unwrap();
    assert_eq!(
        store
            .swap_secrets(col, &[(id_c.clone(), c_ct, b_ct)])
            .await
            .unwrap(),
        [true]
    );
    let report = secrets::reencrypt_all(store, &both).await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.failures[0].id, id_c);
    assert_eq!(report.failures[0].column, "webhook_secret");
    assert_eq!(report.failures[0].table, "connections");
    let printed = serde_json::to_string(&report).unwrap();
    for secret in [&a.secret, &b.secret, &c.secret, &newer.secret, &k1, &k2] {
        assert!(
            !printed.contains(secret.as_str()),
            "the report leaks nothing"
        );
    }
    assert!(!report.all_current());
    // B moved; both of A's columns were written under k2 by the rotation.
    assert_eq!(
        (report.scanned, report.reencrypted, report.already_current),
        (4, 1, 2),
        "{report:?}"
    );
    let check = secrets::check(store, &both).await.unwrap();
    assert_eq!((check.failed, check.on_old_keys), (1, 0), "{check:?}");
    assert!(!check.all_current());
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_on_a_key_file_takes_up_an_appended_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ionflux.key");
    let (vault, created) = Vault::from_file_or_create(&key_file).unwrap();
    assert!(created);
    let vault = Arc::new(vault);
    let gw = Gateway::start_with_vault(Options::default(), vault.clone()).await;
    let mut conns = Vec::new();
    for i in 0..10 {
        conns.push(connect(gw.store(), &vault, &format!("file-{i}.myshopify.com")).await);
    }
    let (warm, cold) = conns.split_at(5);
    let mut sent = send_all(&gw, warm).await;

    // The operator: `keys rotate`, then `secrets reencrypt`, in another
    // process with its own view of the file and its own pool.
    let new_id = Vault::append_new_key(&key_file).unwrap();
    assert_eq!(new_id, "k2");
    let operator_vault = Vault::from_file(&key_file).unwrap();
    let operator = Store::connect(&gw.database_url).await.unwrap();
    let done = AtomicBool::new(false);
    let (statuses, report) = tokio::join!(stream(&gw, warm, &done, 40), async {
        let r = secrets::reencrypt_all(&operator, &operator_vault)
            .await
            .unwrap();
        done.store(true, Ordering::SeqCst);
        r
    });
    sent += statuses.len();
    assert_eq!(report.reencrypted, 10, "{report:?}");

    // Rows under k2 (cold ones, and one added by the operator under k2)
    // verify in the gateway, which started knowing only k1.
    sent += send_all(&gw, cold).await;
    let late = connect(&operator, &operator_vault, "file-late.myshopify.com").await;
    sent += send_all(&gw, std::slice::from_ref(&late)).await;
    assert_eq!(vault.key_ids(), ["k1", "k2"]);
    assert_eq!(vault.active_key_id(), "k2");
    gw.settle().await;
    assert_eq!(gw.logged_events().await.len(), sent);
    assert_all_on(&gw.store().list_connections().await.unwrap(), "v1.k2.");
    assert!(
        secrets::check(&operator, &operator_vault)
            .await
            .unwrap()
            .all_current()
    );
    gw.stop().await;
}
