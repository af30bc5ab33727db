//! Master-key rotation as an operator does it with the binary, on the
//! default key file beside the database: `connections add` → `serve` →
//! `keys rotate` → `secrets reencrypt` (and `--check`) while the server keeps
//! verifying webhooks, including ones under the new key it was not started
//! with.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::providers::shopify::headers as webhook;
use ionflux_gateway::store::Store;
use ionflux_gateway::support::vault::Vault;

const BIN: &str = env!("CARGO_BIN_EXE_ionflux-gateway");

fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("gw.db").display())
}

/// The binary on the default key file (`ionflux.key` beside the database).
fn gateway(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("IONFLUX_DATABASE_URL", database_url(dir))
        .env_remove("IONFLUX_MASTER_KEYS")
        .env_remove("IONFLUX_MASTER_KEY_FILE")
        .env_remove("IONFLUX_KAFKA_BROKERS")
        // Tests run side by side; nothing here uses the admin API.
        .env("IONFLUX_ADMIN_LISTEN", "off");
    cmd
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(ok(out).trim()).expect("one JSON object")
}

/// `connections add` for the shop, in workspace and brand `tenant`.
fn add(dir: &Path, shop: &str, tenant: &str, secret: &str) -> serde_json::Value {
    add_with(gateway(dir), shop, tenant, secret)
}

/// `connections add` run by `cmd` (the binary with its environment set).
fn add_with(mut cmd: Command, shop: &str, tenant: &str, secret: &str) -> serde_json::Value {
    let mut child = cmd
        .args(["connections", "add", "--shop", shop])
        .args(["--workspace", tenant, "--brand", tenant])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(secret.as_bytes())
        .unwrap();
    json(&child.wait_with_output().unwrap())
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `serve` run by `cmd` on a free loopback port, once it answers; its base
/// URL.
async fn serve(mut cmd: Command) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = cmd
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

fn send(dir: &Path, base: &str, shop: &str, body: &Path) -> Output {
    gateway(dir)
        .args([
            "webhooks",
            "send",
            "--shop",
            shop,
            "--topic",
            "orders/create",
        ])
        .args(["--gateway-url", base, "--file"])
        .arg(body)
        .output()
        .unwrap()
}

#[tokio::test]
async fn rotate_and_reencrypt_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let key_file = dir.join("ionflux.key");
    let body = dir.join("order.json");
    std::fs::write(&body, br#"{"id": 450789469, "total_price": "598.94"}"#).unwrap();

    // The database and the key file, as `serve` makes them on its first
    // start (no other command creates them).
    Vault::from_file_or_create(&key_file).unwrap();
    Store::connect(&database_url(dir)).await.unwrap();
    // Two shops under k1; the first one's secret rotated, so it has a
    // previous secret too.
    let tenant = uuid();
    add(dir, "keys-a.myshopify.com", &tenant, "shpss_a_first");
    let a = add(dir, "keys-a.myshopify.com", &tenant, "shpss_a_second");
    assert_eq!(a["created"], false);
    add(dir, "keys-b.myshopify.com", &tenant, "shpss_b");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().lines().count(),
        1
    );

    let (mut serve, base) = serve(gateway(dir)).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    assert!(ok(&send(dir, &base, "keys-a.myshopify.com", &body)).starts_with("200 "));
    sent += 1;

    // Before the rotation everything is under the active key: --check
    // passes. After it, --check fails until `secrets reencrypt` ran.
    ok(&gateway(dir)
        .args(["secrets", "reencrypt", "--check"])
        .output()
        .unwrap());
    let rotated = gateway(dir).args(["keys", "rotate"]).output().unwrap();
    let rotated_json = json(&rotated);
    assert_eq!(rotated_json["key_id"], "k2");
    assert_eq!(rotated_json["active"], "k2");
    assert_eq!(rotated_json["keys"], serde_json::json!(["k1", "k2"]));
    let file = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(file.lines().count(), 2, "the old key is kept");
    for line in file.lines() {
        let key = line.split_once(':').unwrap().1;
        assert!(!String::from_utf8_lossy(&rotated.stdout).contains(key));
        assert!(!String::from_utf8_lossy(&rotated.stderr).contains(key));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let listed = json(&gateway(dir).args(["keys", "list"]).output().unwrap());
    assert_eq!(listed["keys"], serde_json::json!(["k1", "k2"]));
    assert_eq!(listed["active"], "k2");

    // The server still serves between rotate and reencrypt.
    assert!(ok(&send(dir, &base, "keys-b.myshopify.com", &body)).starts_with("200 "));
    sent += 1;

    let stale = gateway(dir)
        .args(["secrets", "reencrypt", "--check"])
        .output()
        .unwrap();
    assert!(!stale.status.success(), "rows are still under k1");
    let counts: serde_json::Value = serde_json::from_slice(&stale.stdout).unwrap();
    assert_eq!(counts["on_old_keys"], 3);
    assert_eq!(counts["reencrypted"], 0);

    let report = json(
        &gateway(dir)
            .args(["secrets", "reencrypt", "--batch", "2"])
            .output()
            .unwrap(),
    );
    assert_eq!(report["scanned"], 3, "{report}");
    assert_eq!(report["reencrypted"], 3, "{report}");
    assert_eq!(report["already_current"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let again = json(
        &gateway(dir)
            .args(["secrets", "reencrypt"])
            .output()
            .unwrap(),
    );
    assert_eq!(again["reencrypted"], 0);
    assert_eq!(again["already_current"], 3);
    ok(&gateway(dir)
        .args(["secrets", "reencrypt", "--check"])
        .output()
        .unwrap());

    // Every stored ciphertext is under k2, readable with k2 alone.
    let store = Store::connect(&database_url(dir)).await.unwrap();
    let rows = store.list_connections().await.unwrap();
    assert_eq!(rows.len(), 2);
    let k2_line = file.lines().find(|l| l.starts_with("k2:")).unwrap();
    let only_k2 = Vault::from_spec(k2_line).unwrap();
    for row in &rows {
        assert!(row.webhook_secret.starts_with("v1.k2."));
        if let Some(prev) = &row.previous_webhook_secret {
            assert!(prev.starts_with("v1.k2."));
        }
        ionflux_gateway::pipeline::connection::webhook_secrets(&only_k2, row).unwrap();
    }
    let listed = ok(&gateway(dir).args(["connections", "list"]).output().unwrap());
    assert_eq!(listed.lines().count(), 2);

    // The running server (started with k1 only) verifies webhooks of rows
    // under k2: one re-encrypted, one added after the rotation, and one
    // signed with a previous secret straight over HTTP.
    assert!(ok(&send(dir, &base, "keys-a.myshopify.com", &body)).starts_with("200 "));
    sent += 1;
    let c = add(dir, "keys-c.myshopify.com", &tenant, "shpss_c");
    assert!(ok(&send(dir, &base, "keys-c.myshopify.com", &body)).starts_with("200 "));
    sent += 1;
    let path = a["webhook_path"].as_str().unwrap();
    let order = br#"{"id": 1}"#;
    let resp = client
        .post(format!("{base}{path}"))
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-shop-domain", "keys-a.myshopify.com")
        .header("x-shopify-webhook-id", uuid())
        .header("x-shopify-api-version", "2024-01")
        .header(
            "x-shopify-hmac-sha256",
            webhook::sign(b"shpss_a_first", order),
        )
        .body(order.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sent += 1;
    assert!(c["webhook_path"].is_string());

    let tail = || {
        ok(&gateway(dir)
            .args(["events", "tail", "--json", "--limit", "100"])
            .output()
            .unwrap())
        .lines()
        // The gateway's own `integration.connected` is not a webhook's.
        .filter(|l| !l.contains(".integration."))
        .count()
    };
    while tail() < sent {
        assert!(Instant::now() < deadline, "not every webhook was published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tail(), sent);

    // With the keys in the environment there is no file to change: a clear
    // refusal, and no key on any output.
    let env_keys = format!("k1:{}", Vault::generate_key());
    let refused = gateway(dir)
        .env("IONFLUX_MASTER_KEYS", &env_keys)
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("IONFLUX_MASTER_KEYS"), "{stderr}");
    assert!(stderr.contains("k2:"), "{stderr}");
    assert!(refused.stdout.is_empty());
    assert!(!stderr.contains(env_keys.split_once(':').unwrap().1));
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        file,
        "the key file is untouched"
    );

    let status = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(serve.wait().unwrap().success());
}

/// Master keys from a secrets manager: a command prints them (here `cat` of
/// a file standing in for `vault kv get …`). No key file is read or made,
/// and every command and `serve` agree on the keys.
#[tokio::test]
async fn a_command_provides_the_master_keys_to_every_command_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let held = dir.join("held-by-the-secrets-manager");
    std::fs::write(&held, format!("k1:{}\n", Vault::generate_key())).unwrap();
    let command = format!("cat '{}'", held.display());
    let with_command = |cmd: &mut Command| {
        cmd.env("IONFLUX_MASTER_KEY_COMMAND", &command);
    };
    Store::connect(&database_url(dir)).await.unwrap();

    let mut adding = gateway(dir);
    with_command(&mut adding);
    add_with(
        adding,
        "cmd-keys.myshopify.com",
        &uuid(),
        "shpss_from_command",
    );

    let mut command_gateway = gateway(dir);
    with_command(&mut command_gateway);
    let (mut serve, base) = serve(command_gateway).await;
    let body = dir.join("order.json");
    std::fs::write(&body, br#"{"id": 1}"#).unwrap();
    let mut send_cmd = gateway(dir);
    with_command(&mut send_cmd);
    let sent = send_cmd
        .args(["webhooks", "send", "--shop", "cmd-keys.myshopify.com"])
        .args(["--topic", "orders/create", "--gateway-url", &base, "--file"])
        .arg(&body)
        .output()
        .unwrap();
    assert!(
        ok(&sent).starts_with("200 "),
        "signed with the secret the command's key decrypts"
    );
    assert!(!dir.join("ionflux.key").exists(), "no key file is made");

    // A command that fails stops the start, saying why.
    let mut broken = gateway(dir);
    broken.env(
        "IONFLUX_MASTER_KEY_COMMAND",
        "echo 'vault: permission denied' >&2; exit 2",
    );
    // `webhooks send` signs with the stored secret, so it needs the keys.
    let out = broken
        .args(["webhooks", "send", "--shop", "cmd-keys.myshopify.com"])
        .args(["--topic", "orders/create", "--gateway-url", &base, "--file"])
        .arg(&body)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _ = serve.kill();
    let _ = serve.wait();
}
