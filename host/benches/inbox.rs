//! Is it safely kept? One `Store::insert_webhook` (a committed, fsync'd
//! transaction) on SQLite in a temporary file, and on PostgreSQL when
//! `IONFLUX_BENCH_POSTGRES` holds a URL (skipped otherwise).
//!
//! `concurrent_8` runs eight inserts at a time, as eight HTTP requests
//! would: the time per webhook shows whether commits are shared (they are
//! not on SQLite: one writer, one fsync per transaction).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ionflux_gateway::store::{Blob, ConnectionRow, Store};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn webhook_id() -> String {
    format!(
        "bench-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

async fn insert(store: &Store, conn: &ConnectionRow, sample: &common::Sample) {
    let id = webhook_id();
    let headers = common::headers(sample, &id);
    let body = Blob::encode(&sample.body);
    store
        .insert_webhook(&common::new_webhook(conn, sample, &id, &headers, &body))
        .await
        .expect("insert");
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    conn: &ConnectionRow,
) {
    let sample = common::fulfillment();
    let mut group = c.benchmark_group(format!("inbox_insert/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function(sample.name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    insert(store, conn, &sample).await;
                }
                start.elapsed()
            })
        })
    });
    // Per webhook, eight in flight at a time.
    group.bench_function(format!("concurrent_8/{}", sample.name), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(8);
                    let batch: Vec<_> = (0..n).map(|_| insert(store, conn, &sample)).collect();
                    futures_join_all(batch).await;
                    left -= n;
                }
                start.elapsed()
            })
        })
    });
    // Per webhook, 32 in one `insert_webhooks` call: the intake's group
    // commit under load (one transaction, one fsync for the lot).
    group.bench_function(format!("group_32/{}", sample.name), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(32);
                    let ids: Vec<String> = (0..n).map(|_| webhook_id()).collect();
                    let headers: Vec<_> =
                        ids.iter().map(|id| common::headers(&sample, id)).collect();
                    let bodies: Vec<_> = ids.iter().map(|_| Blob::encode(&sample.body)).collect();
                    let rows: Vec<_> = ids
                        .iter()
                        .zip(&headers)
                        .zip(&bodies)
                        .map(|((id, h), body)| common::new_webhook(conn, &sample, id, h, body))
                        .collect();
                    store.insert_webhooks(&rows).await.expect("insert");
                    left -= n;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// Polls the futures concurrently on this task, as `join_all` would,
/// without a futures dependency for one line.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

fn inbox(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, conn) = rt.block_on(common::temp_store(dir.path()));
    bench_backend(c, "sqlite", &rt, &store, &conn);
    drop(store);

    match std::env::var("IONFLUX_BENCH_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => {
            let store = rt.block_on(Store::connect(&url)).expect("postgres store");
            let conn = rt.block_on(common::add_connection(&store));
            bench_backend(c, "postgres", &rt, &store, &conn);
        }
        _ => eprintln!(
            "inbox_insert/postgres skipped: set IONFLUX_BENCH_POSTGRES to a postgres:// URL"
        ),
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = inbox
}
criterion_main!(benches);
