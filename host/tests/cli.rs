//! The binary as an operator uses it: `connections add` with the secret on
//! stdin, `serve`, a signed webhook, `webhooks send`, `events tail --json`,
//! a forged one that gets 401, `dead-letters list --json`, and a clean stop
//! on SIGTERM.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::support::vault::Vault;

const BIN: &str = env!("CARGO_BIN_EXE_ionflux-gateway");

fn gateway(dir: &Path, keys: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env(
        "IONFLUX_DATABASE_URL",
        format!("sqlite://{}", dir.join("gw.db").display()),
    )
    .env("IONFLUX_MASTER_KEYS", keys)
    .env_remove("IONFLUX_KAFKA_BROKERS")
    // Tests run side by side; nothing here uses the admin API.
    .env("IONFLUX_ADMIN_LISTEN", "off");
    cmd
}

/// The database, as `serve` makes it on its first start: no other command
/// creates one. On a thread of its own, so that async and plain tests can
/// both call it.
fn create_database(dir: &Path) {
    let url = format!("sqlite://{}", dir.join("gw.db").display());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(ionflux_gateway::store::Store::connect(&url))
            .map(drop)
    })
    .join()
    .unwrap()
    .expect("the database is created");
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn operator_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    create_database(dir.path());
    let keys = format!("k1:{}", Vault::generate_key());
    let (workspace, brand) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );

    let mut add = gateway(dir.path(), &keys)
        .args(["connections", "add", "--shop", "cli-shop.myshopify.com"])
        .args(["--workspace", &workspace, "--brand", &brand])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"shpss_cli_secret\n")
        .unwrap();
    let created = lines(&add.wait_with_output().unwrap()).remove(0);
    let path = created["webhook_path"].as_str().unwrap().to_string();
    assert!(created["connection_id"].is_string());
    assert!(path.ends_with(created["secure_path_identifier"].as_str().unwrap()));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = gateway(dir.path(), &keys)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = br#"{"id": 450789469, "total_price": "598.94"}"#;
    let post = |sig: String| {
        client
            .post(format!("{base}{path}"))
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-shop-domain", "cli-shop.myshopify.com")
            .header("x-shopify-webhook-id", uuid::Uuid::new_v4().to_string())
            .header("x-shopify-api-version", "2024-01")
            .header("x-shopify-hmac-sha256", sig)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(
        post(webhook::sign(b"shpss_cli_secret", body))
            .await
            .unwrap()
            .status(),
        200
    );
    let forged = post(webhook::sign(b"guessed", body)).await.unwrap();
    assert_eq!(forged.status(), 401);
    let err: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(err["code"], "invalid_hmac");

    // The same through the binary's own sender, which signs with the stored
    // secret.
    let product = dir.path().join("product.json");
    std::fs::write(
        &product,
        br#"{"id": 632910392, "title": "IPod Nano - 8GB"}"#,
    )
    .unwrap();
    let sent = gateway(dir.path(), &keys)
        .args([
            "webhooks",
            "send",
            "--shop",
            "cli-shop.myshopify.com",
            "--topic",
        ])
        .args(["products/update", "--gateway-url", &base, "--file"])
        .arg(&product)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stdout).starts_with("200 "));

    // The webhooks' events; the gateway's own (`integration.connected`)
    // are left out.
    let tail = || {
        lines(
            &gateway(dir.path(), &keys)
                .args(["events", "tail", "--json", "--limit", "10"])
                .output()
                .unwrap(),
        )
        .into_iter()
        .filter(|e| {
            !e["event_type"]
                .as_str()
                .is_some_and(|t| t.contains(".integration."))
        })
        .collect::<Vec<_>>()
    };
    let mut events = tail();
    while events.len() < 2 {
        assert!(Instant::now() < deadline, "no event appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
        events = tail();
    }
    assert_eq!(events.len(), 2, "the forged webhook made no event");
    assert_eq!(
        events[0]["event_type"],
        format!("ionflux.shopify.ws_{workspace}.brand_{brand}.orders.created")
    );
    assert_eq!(
        events[1]["event_type"],
        format!("ionflux.shopify.ws_{workspace}.brand_{brand}.products.updated")
    );
    assert_eq!(events[1]["payload_json"]["title"], "IPod Nano - 8GB");
    let letters = lines(
        &gateway(dir.path(), &keys)
            .args(["dead-letters", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert!(letters.is_empty());

    let status = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = serve.wait().unwrap();
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
}

#[test]
fn transforms_and_routes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    create_database(dir.path());
    let keys = format!("k1:{}", Vault::generate_key());
    let wasm = dir.path().join("my-redactor.wasm");
    std::fs::write(
        &wasm,
        ionflux_gateway::pipeline::builtin::component("redact-pii").unwrap(),
    )
    .unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let order = dir.path().join("order.json");
    std::fs::write(
        &order,
        br#"{"id": 1, "email": "jon@example.com", "total_price": "5.00"}"#,
    )
    .unwrap();
    let run = |args: &[&str]| gateway(dir.path(), &keys).args(args).output().unwrap();

    // Dry run: no server, no database.
    let events = lines(&run(&[
        "transforms",
        "test",
        wasm.to_str().unwrap(),
        "--fixture",
        order.to_str().unwrap(),
        "--topic",
        "orders/create",
    ]));
    assert_eq!(events.len(), 1);
    assert!(
        events[0]["event_type"]
            .as_str()
            .unwrap()
            .ends_with(".orders.created")
    );
    assert_eq!(
        events[0]["payload_json"],
        serde_json::json!({"id": 1, "total_price": "5.00"})
    );

    let refused = run(&[
        "transforms",
        "push",
        junk.to_str().unwrap(),
        "--name",
        "junk",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a WebAssembly component"));

    let pushed = lines(&run(&[
        "transforms",
        "push",
        wasm.to_str().unwrap(),
        "--name",
        "mine",
    ]));
    let digest = pushed[0]["digest"].as_str().unwrap().to_string();
    let listed = lines(&run(&["transforms", "list"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["digest"], digest.as_str());

    let brand = uuid::Uuid::new_v4().to_string();
    let set = |transform: &str| {
        lines(&run(&[
            "routes",
            "set",
            "--topic",
            "orders/*",
            "--brand",
            &brand,
            "--transform",
            transform,
            "--actor",
            "ci",
        ]))
    };
    set(&digest[..12]);
    set("builtin:shopify-default"); // rollback is a route change
    let routes = lines(&run(&["routes", "list"]));
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["transform"], "builtin:shopify-default");
    let history = lines(&run(&["routes", "history"]));
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["old_transform"], digest.as_str());
    assert_eq!(history[0]["actor"], "ci");
    let shown = lines(&run(&["transforms", "show", &digest[..16]]));
    assert_eq!(shown[0]["transform"]["name"], "mine");

    let replay = lines(&run(&["dead-letters", "replay", "--all"]));
    assert_eq!(replay[0]["replayed"], serde_json::json!([]));

    let token = lines(&run(&[
        "tokens",
        "create",
        "--name",
        "ci",
        "--workspace",
        &brand,
    ]));
    assert!(token[0]["token"].as_str().unwrap().starts_with("ifx_"));
    let id = token[0]["id"].as_str().unwrap().to_string();
    let listed = lines(&run(&["tokens", "list"]));
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].get("token").is_none(),
        "a token is shown only once"
    );
    lines(&run(&["tokens", "revoke", &id]));
    assert!(!run(&["tokens", "revoke", &id]).status.success());
}
