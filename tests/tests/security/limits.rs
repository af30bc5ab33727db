//! The guest and the workspace token against the host's limits (DESIGN §3,
//! §6b, issue 16): a workspace asks for no more than the ceilings an
//! operator set, its hostile guest is dead-lettered with the limit's reason
//! while other workspaces keep flowing and the gateway's memory stays
//! bounded, its uploads are held to a quota and only it may delete them, a
//! component's memories share one cap, and guest text cannot forge log
//! lines.
//!
//! The memory and log tests run the gateway binary as a child process: its
//! peak resident memory (`VmHWM`) and its stderr are its own, whatever
//! else this test binary runs at the same time.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::pipeline::ceilings::{TenantPolicy, UploadQuota};
use ionflux_gateway::store::Store;
use ionflux_gateway::store::ceilings::OwnedPut;
use ionflux_gateway::support::vault::{Secret, Vault};
use ionflux_tests::{
    Conn, Gateway, Hook, Options, PATIENCE, admin_json, admin_upload, free_loopback_addr,
    fresh_database, gateway_bin, hostile_wasm, sha256_hex, test_tenants, workspace_token,
};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "limits-operator-token";

/// Peak resident memory the gateway may reach under the attack. Generous:
/// a gateway at rest, two guests at their 64 MiB memory ceiling and a
/// batch at its 128 MiB output budget stay far below it, while the attack
/// on a gateway without the bounds makes eight webhooks hold a thousand
/// copies of a 256 KiB body each: some 2 GiB.
const MEMORY_BOUND: u64 = 1 << 30;

async fn connect(store: &Store, vault: &Vault, shop: &str) -> Conn {
    let secret = format!("shpss_{}", uuid::Uuid::new_v4().simple());
    let created = ionflux_gateway::providers::shopify::add_connection(
        store,
        vault,
        shop,
        &uuid::Uuid::new_v4().to_string(),
        &uuid::Uuid::new_v4().to_string(),
        &Secret::from(secret.clone()),
    )
    .await
    .unwrap();
    Conn { created, secret }
}

/// A JSON object of about `size` bytes.
fn body_of(size: usize) -> Vec<u8> {
    format!("{{\"id\":1,\"pad\":\"{}\"}}", "x".repeat(size)).into_bytes()
}

/// The gateway binary serving a database the test prepared, its stderr in
/// a file. Killed on drop.
struct Spawned {
    child: Child,
    base: String,
    admin_base: String,
    stderr: PathBuf,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Spawned {
    async fn start(database_url: &str, master_keys: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let (addr, admin_addr) = (free_loopback_addr(), free_loopback_addr());
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IONFLUX_DATABASE_URL", database_url)
            .env("IONFLUX_MASTER_KEYS", master_keys)
            .env("IONFLUX_LISTEN", addr.to_string())
            .env("IONFLUX_ADMIN_LISTEN", admin_addr.to_string())
            .env("IONFLUX_ADMIN_TOKEN", OPERATOR)
            .env("IONFLUX_CACHE_DIR", dir.path().join("cache"))
            .env("IONFLUX_LOG", "info,sqlx=warn,wasmtime=warn,cranelift=warn")
            // A loaded 2-core test machine must not turn an ordinary
            // webhook into a timeout (the ceiling admits the default).
            .env("IONFLUX_LIMIT_CPU", "2s")
            .env("IONFLUX_CEILING_CPU", "5s")
            .env("IONFLUX_IDLE_POLL", "50ms")
            .env("IONFLUX_MIN_BACKOFF", "50ms")
            .env("IONFLUX_MAX_BACKOFF", "500ms")
            // The tests here count webhooks' events only.
            .env("IONFLUX_INTEGRATION_EVENTS", "false")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the gateway binary starts");
        let gw = Spawned {
            child,
            base: format!("http://{addr}"),
            admin_base: format!("http://{admin_addr}"),
            stderr,
            client: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = gw.client.get(gw.url("/health")).send().await
                && r.status().is_success()
            {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not come up: {}",
                gw.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base)
    }

    fn stderr_text(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.stderr)
            .and_then(|mut f| f.read_to_string(&mut text))
            .unwrap();
        text
    }

    /// Peak resident set size of the process, from /proc, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status of the gateway");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    async fn send(&self, hook: &Hook<'_>) {
        let mut req = self
            .client
            .post(self.url(&hook.path))
            .header("content-type", "application/json")
            .body(hook.body.clone());
        for (k, v) in &hook.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    async fn admin(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.admin_url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn upload(&self, token: &str, bytes: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client
            .post(self.admin_url("/admin/v1/transforms?name=hostile"))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until no stored webhook is pending.
async fn settle(store: &Store) {
    let deadline = Instant::now() + PATIENCE;
    while store.pending_count().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "webhooks still pending after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The attack of issue 16: a workspace token uploads a guest that passes the
/// upload's smoke call and misbehaves only under its route's config (fans
/// out a thousand `unchanged` copies of a 256 KiB body, spins, allocates),
/// routes its brand with the largest limits its ceilings allow (and is
/// refused above them), and sends webhooks. They are dead-lettered with
/// each limit's reason, another workspace's webhooks are published, and the
/// gateway's peak memory stays bounded.
#[tokio::test]
async fn a_hostile_guest_at_its_workspaces_ceilings_is_dead_lettered_and_memory_stays_bounded() {
    let db = fresh_database().await;
    let key = format!("k1:{}", Vault::generate_key());
    let vault = Vault::from_spec(&key).unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let hostile = connect(&store, &vault, "hostile-limits.myshopify.com").await;
    let benign = connect(&store, &vault, "benign-limits.myshopify.com").await;
    let ws = hostile.created.workspace_id.clone();
    let team = workspace_token(&store, &ws, "hostile-team").await;
    let other_team = workspace_token(&store, &benign.created.workspace_id, "benign-team").await;
    let gw = Spawned::start(&db.url, &key, &[]).await;

    // The operator sets the workspace's ceilings; the team reads its own,
    // may not raise them, and may not read another workspace's.
    let ceilings = json!({
        "cpu_ms": 1000,
        "memory_bytes": 64 << 20,
        "max_events": 1000,
        "output_bytes": 4 << 20,
    });
    let path = format!("/admin/v1/workspaces/{ws}/ceilings");
    let (status, set) = gw
        .admin(Method::PUT, &path, OPERATOR, Some(ceilings.clone()))
        .await;
    assert_eq!(status, 200, "{set}");
    let (status, own) = gw.admin(Method::GET, &path, &team, None).await;
    assert_eq!((status, &own["ceilings"]), (200, &ceilings), "{own}");
    let raised = json!({"max_events": 1_000_000});
    let (status, err) = gw.admin(Method::PUT, &path, &team, Some(raised)).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = gw.admin(Method::GET, &path, &other_team, None).await;
    assert_eq!(status, 403);

    // The guest passes the upload's smoke call: it behaves with `{}`.
    let (status, pushed) = gw.upload(&team, hostile_wasm()).await;
    assert_eq!(status, 200, "{pushed}");
    let digest = pushed["digest"].as_str().unwrap().to_string();

    // One over any ceiling is refused; the ceilings themselves are allowed.
    let config = json!({"fan_out": 1000, "spin": true, "allocate": true});
    let route = |limits: Value| {
        json!({
            "brand_id": hostile.created.brand_id,
            "topic_pattern": "*",
            "transform": digest,
            "config": config,
            "limits": limits,
        })
    };
    for field in ["cpu_ms", "memory_bytes", "max_events", "output_bytes"] {
        let mut above = ceilings.clone();
        above[field] = json!(ceilings[field].as_u64().unwrap() + 1);
        let (status, err) = gw
            .admin(Method::PUT, "/admin/v1/routes", &team, Some(route(above)))
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("limit_above_ceiling")),
            "{field}: {err}"
        );
        assert!(err["message"].as_str().unwrap().contains(field), "{err}");
    }
    let (status, saved) = gw
        .admin(
            Method::PUT,
            "/admin/v1/routes",
            &team,
            Some(route(ceilings.clone())),
        )
        .await;
    assert_eq!(status, 200, "{saved}");

    // The hostile brand: eight fan-outs, a spin, an allocation; the other
    // workspace's webhooks in between.
    let big = body_of(256 << 10);
    let mut benign_ids = Vec::new();
    for topic in ["orders/create"; 8]
        .into_iter()
        .chain(["orders/updated", "orders/paid"])
    {
        gw.send(&Hook::shopify(&hostile, topic, "2024-01", &big))
            .await;
        let hook = Hook::shopify(&benign, "orders/create", "2024-01", br#"{"id":2}"#);
        benign_ids.push(hook.header("x-shopify-webhook-id").unwrap().to_string());
        gw.send(&hook).await;
    }
    settle(&store).await;

    let letters = store.workspace_dead_letters(&ws, 100).await.unwrap();
    let codes = |topic: &str| -> Vec<&str> {
        letters
            .iter()
            .filter(|l| l.topic == topic)
            .map(|l| l.reason_code.as_str())
            .collect()
    };
    assert_eq!(
        codes("orders/create"),
        vec!["output_too_large"; 8],
        "{letters:?}"
    );
    assert_eq!(codes("orders/updated"), vec!["timeout"], "{letters:?}");
    assert_eq!(codes("orders/paid"), vec!["memory_limit"], "{letters:?}");
    let too_large = letters.iter().find(|l| l.topic == "orders/create").unwrap();
    assert!(
        too_large.reason.contains(&(4 << 20).to_string()),
        "{}",
        too_large.reason
    );

    // A dry run above the ceilings is refused too.
    let (status, dry) = gw
        .admin(
            Method::POST,
            &format!("/admin/v1/webhooks/{}/dry-run", too_large.inbox_id),
            &team,
            Some(json!({"limits": {"max_events": 1001}})),
        )
        .await;
    assert_eq!(
        (status, dry["code"].as_str()),
        (403, Some("limit_above_ceiling")),
        "{dry}"
    );

    let published: Vec<String> = store
        .workspace_events_after(&benign.created.workspace_id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.payload).unwrap();
            v["metadata"]["webhook_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(published, benign_ids, "the other workspace kept flowing");
    assert!(
        store
            .workspace_dead_letters(&benign.created.workspace_id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let peak = gw.peak_rss();
    eprintln!("gateway peak RSS: {} MiB", peak >> 20);
    assert!(
        peak < MEMORY_BOUND,
        "the gateway's peak RSS was {} MiB, over {} MiB",
        peak >> 20,
        MEMORY_BOUND >> 20
    );
}

/// Ceilings are enforced at run time, on every route of the workspace:
/// lowering one clamps a route saved before, and a route an operator made
/// for the workspace's brand (which an operator may give any limits) runs
/// under them all the same.
#[tokio::test]
async fn lowering_a_ceiling_clamps_routes_already_saved_including_the_operators() {
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..Options::default()
    })
    .await;
    let conn = gw.connect("clamped-limits.myshopify.com").await;
    let ws = conn.created.workspace_id.clone();
    let team = workspace_token(gw.store(), &ws, "team").await;
    let (status, pushed) = admin_upload(&gw, "hostile", Some(&team), hostile_wasm()).await;
    assert_eq!(status, 200, "{pushed}");
    let digest = pushed["digest"].as_str().unwrap();
    // One webhook through the brand's route: its events, or why not.
    let fan_out = || async {
        let hook = Hook::shopify(&conn, "orders/create", "2024-01", br#"{"id":3}"#);
        assert_eq!(gw.send(&hook).await.0, 200);
        gw.settle().await;
        let id = hook.header("x-shopify-webhook-id").unwrap().to_string();
        let events = gw
            .logged_events()
            .await
            .into_iter()
            .filter(|e| e["metadata"]["webhook_id"] == id.as_str())
            .count();
        let letter = gw
            .store()
            .dead_letters(1000)
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.webhook_id == id)
            .map(|l| l.reason_code);
        (events, letter)
    };

    let (status, route) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(&team),
        Some(json!({
            "brand_id": conn.created.brand_id,
            "topic_pattern": "orders/create",
            "transform": digest,
            "config": {"fan_out": 50},
            "limits": {"max_events": 100},
        })),
    )
    .await;
    assert_eq!(status, 200, "{route}");
    assert_eq!(fan_out().await, (50, None));

    let path = format!("/admin/v1/workspaces/{ws}/ceilings");
    let (status, set) = admin_json(
        &gw,
        Method::PUT,
        &path,
        Some(OPERATOR),
        Some(json!({"max_events": 10})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["ceilings"]["max_events"], 10);
    assert_eq!(
        set["ceilings"]["cpu_ms"],
        test_tenants().ceilings.cpu_ms,
        "the others keep the defaults: {set}"
    );
    assert_eq!(
        fan_out().await,
        (0, Some("too_many_events".to_string())),
        "the saved route is held to the lowered ceiling"
    );

    // The operator's own route for the brand, with more than the ceiling.
    let (status, route) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        Some(OPERATOR),
        Some(json!({
            "workspace_id": ws,
            "brand_id": conn.created.brand_id,
            "topic_pattern": "orders/create",
            "transform": digest,
            "config": {"fan_out": 50},
            "limits": {"max_events": 1000},
        })),
    )
    .await;
    assert_eq!(status, 200, "an operator may save it: {route}");
    assert_eq!(
        fan_out().await,
        (0, Some("too_many_events".to_string())),
        "and it runs under the ceiling"
    );

    // Back to the defaults: the route runs again.
    let (status, _) = admin_json(&gw, Method::PUT, &path, Some(OPERATOR), Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(fan_out().await, (50, None));
    gw.stop().await;
}

/// A component of the same world whose bytes differ: a custom section.
fn variant(n: u8) -> Vec<u8> {
    let mut bytes = hostile_wasm();
    let name = b"limits-test";
    let payload = [&[name.len() as u8][..], name, &[n]].concat();
    bytes.push(0); // custom section
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    bytes
}

/// A workspace's uploads are held to its quota, and it may delete its own
/// unused versions (only those: another workspace's upload is unknown to
/// it, and a version a route runs is kept), which frees its quota.
#[tokio::test]
async fn uploads_are_held_to_a_quota_and_only_their_workspace_deletes_them_unused() {
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        tenants: Some(TenantPolicy {
            upload_quota: UploadQuota {
                transforms: 2,
                bytes: 1 << 30,
            },
            ..test_tenants()
        }),
        ..Options::default()
    })
    .await;
    let a = gw.connect("quota-a.myshopify.com").await;
    let b = gw.connect("quota-b.myshopify.com").await;
    let ta = workspace_token(gw.store(), &a.created.workspace_id, "a").await;
    let tb = workspace_token(gw.store(), &b.created.workspace_id, "b").await;
    let (ta, tb) = (Some(ta.as_str()), Some(tb.as_str()));
    let upload = |token, n| admin_upload(&gw, "v", token, variant(n));
    let digest = |n| sha256_hex(&variant(n));

    assert_eq!(upload(ta, 1).await.0, 200);
    assert_eq!(upload(ta, 2).await.0, 200);
    let (status, err) = upload(ta, 3).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("upload_quota_exceeded")),
        "{err}"
    );
    assert!(err["message"].as_str().unwrap().contains("DELETE"), "{err}");
    assert_eq!(
        upload(ta, 1).await.0,
        200,
        "the same bytes again cost nothing"
    );
    // The quota is per workspace, and B's copy of A's bytes is B's.
    assert_eq!(upload(tb, 2).await.0, 200);
    let (status, usage) = admin_json(
        &gw,
        Method::GET,
        &format!("/admin/v1/workspaces/{}/ceilings", a.created.workspace_id),
        ta,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(usage["uploads"]["transforms"], 2, "{usage}");
    assert_eq!(usage["upload_quota"]["transforms"], 2, "{usage}");

    // A runs version 1.
    let (status, _) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        ta,
        Some(json!({"topic_pattern": "*", "transform": digest(1)})),
    )
    .await;
    assert_eq!(status, 200);
    let delete = |token, reference: String| {
        let gw = &gw;
        async move {
            admin_json(
                gw,
                Method::DELETE,
                &format!("/admin/v1/transforms/{reference}"),
                token,
                None,
            )
            .await
        }
    };
    let (status, err) = delete(ta, digest(1)).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("transform_in_use")),
        "{err}"
    );
    // B cannot delete A's upload: to B it does not exist.
    let (status, err) = delete(tb, digest(1)).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("unknown_transform"))
    );
    let (status, _) = delete(tb, "builtin:redact-pii".into()).await;
    assert_eq!(status, 409);

    // Unrouted, A deletes it; its quota has room again.
    let (status, _) = admin_json(
        &gw,
        Method::PUT,
        "/admin/v1/routes",
        ta,
        Some(json!({"topic_pattern": "*", "transform": "builtin:shopify-default"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, deleted) = delete(ta, digest(1)).await;
    assert_eq!(
        (status, deleted["deleted"].as_str()),
        (200, Some(digest(1).as_str()))
    );
    assert!(
        gw.store()
            .transform_component(&digest(1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(upload(ta, 3).await.0, 200);

    // A deleting the bytes B also uploaded leaves B's copy alone.
    assert_eq!(delete(ta, digest(2)).await.0, 200);
    assert!(
        gw.store()
            .transform_component(&digest(2))
            .await
            .unwrap()
            .is_some()
    );
    let (status, shown) = admin_json(
        &gw,
        Method::GET,
        &format!("/admin/v1/transforms/{}", digest(2)),
        tb,
        None,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    // An operator deletes any unused version.
    assert_eq!(delete(Some(OPERATOR), digest(2)).await.0, 200);
    assert!(
        gw.store()
            .transform_component(&digest(2))
            .await
            .unwrap()
            .is_none()
    );

    // The byte quota, at the store: checked in the same transaction.
    let bytes = variant(9);
    let put = gw
        .store()
        .put_owned_transform(
            &sha256_hex(&bytes),
            "v",
            &bytes,
            &a.created.workspace_id,
            100,
            bytes.len() as i64,
        )
        .await
        .unwrap();
    assert!(matches!(put, OwnedPut::OverQuota(_)), "{put:?}");
    gw.stop().await;
}

/// A guest's log line, its error and its panic message (its stderr) carry a
/// newline and a whole fake log line after it; the gateway's log has no line
/// that starts with the fake one.
#[tokio::test]
async fn guest_text_cannot_forge_log_lines() {
    const FORGED: &str =
        "2026-11-23T10:00:00.000000Z  WARN ionflux_gateway::api::admin: forged line";
    let db = fresh_database().await;
    let key = format!("k1:{}", Vault::generate_key());
    let vault = Vault::from_spec(&key).unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    let conn = connect(&store, &vault, "forger.myshopify.com").await;
    let team = workspace_token(&store, &conn.created.workspace_id, "forgers").await;
    let gw = Spawned::start(&db.url, &key, &[]).await;

    let (status, pushed) = gw.upload(&team, hostile_wasm()).await;
    assert_eq!(status, 200, "{pushed}");
    let (status, route) = gw
        .admin(
            Method::PUT,
            "/admin/v1/routes",
            &team,
            Some(json!({
                "topic_pattern": "*",
                "transform": pushed["digest"],
                "config": {"forge": format!("innocent\n{FORGED}\r\n{FORGED}")},
            })),
        )
        .await;
    assert_eq!(status, 200, "{route}");
    for topic in ["forge/log", "forge/fail", "forge/panic"] {
        gw.send(&Hook::shopify(&conn, topic, "2024-01", br#"{"id":4}"#))
            .await;
    }
    settle(&store).await;
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");

    let log = gw.stderr_text();
    let forged: Vec<&str> = log
        .lines()
        .filter(|l| l.trim_start_matches('\r').starts_with(FORGED))
        .collect();
    assert!(
        forged.is_empty(),
        "forged lines in the log: {forged:?}\n{log}"
    );
    // The text did reach the log, escaped: the guest's line, the error and
    // the panic.
    let mentions = log.lines().filter(|l| l.contains("forged line")).count();
    assert!(mentions >= 3, "{log}");
}
