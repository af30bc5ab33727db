//! The CLI against a running gateway, through its admin API: the real
//! binary with nothing but `--admin-url` (or `IONFLUX_ADMIN_URL`) and a
//! token in its environment: no database URL, no master key, and it leaves
//! no `ionflux.db` or `ionflux.key` behind. A workspace token sees only its
//! own workspace; a wrong token is a clear failure.

use std::path::Path;

use ionflux_tests::{Conn, Gateway, Hook, Options, gateway_bin, hostile_wasm};
use serde_json::Value;

const OPERATOR: &str = "configured-operator-token";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as JSON lines.
    fn lines(&self) -> Vec<Value> {
        assert!(self.ok, "the command failed: {}", self.stderr);
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs the binary in `dir` with an empty environment but for the admin
/// URL and, when given, the token.
async fn cli(gw: &Gateway, dir: &Path, token: Option<&str>, args: &[&str]) -> Run {
    cli_with_stdin(gw, dir, token, args, "").await
}

/// [`cli`], with `stdin` as the command's standard input.
async fn cli_with_stdin(
    gw: &Gateway,
    dir: &Path,
    token: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(gateway_bin());
    cmd.env_clear()
        .current_dir(dir)
        .env("IONFLUX_ADMIN_URL", gw.admin_url(""))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(token) = token {
        cmd.env("IONFLUX_TOKEN", token);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    // A command that reads nothing may exit before the write: not an error.
    let _ = input.write_all(stdin.as_bytes()).await;
    drop(input);
    let out = child.wait_with_output().await.expect("the binary runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

async fn workspace_token(gw: &Gateway, conn: &Conn, name: &str) -> String {
    ionflux_tests::workspace_token(gw.store(), &conn.created.workspace_id, name).await
}

/// `connections add` with `secret` on stdin.
async fn add(
    gw: &Gateway,
    dir: &Path,
    token: Option<&str>,
    shop: &str,
    brand: String,
    extra: &[&str],
    secret: &str,
) -> Run {
    let mut args = vec!["connections", "add", "--shop", shop, "--brand", &brand];
    args.extend(extra);
    cli_with_stdin(gw, dir, token, &args, secret).await
}

/// A gateway with an operator token and two workspaces, A and B, each with
/// a connected shop and a workspace token of its own.
async fn two_teams(prefix: &str) -> (Gateway, Conn, Conn, String, String) {
    let gw = Gateway::start(Options {
        admin_token: Some(OPERATOR.into()),
        ..Options::default()
    })
    .await;
    let a = gw.connect(&format!("{prefix}-team-a.myshopify.com")).await;
    let b = gw.connect(&format!("{prefix}-team-b.myshopify.com")).await;
    let ta = workspace_token(&gw, &a, "team-a").await;
    let tb = workspace_token(&gw, &b, "team-b").await;
    (gw, a, b, ta, tb)
}

async fn deliver(gw: &Gateway, conn: &Conn, topic: &str) {
    let (status, body) = gw
        .send(&Hook::shopify(conn, topic, "2024-01", br#"{"id":1}"#))
        .await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
}

#[tokio::test]
async fn the_cli_operates_a_running_gateway_through_its_admin_api() {
    let (gw, a, b, ta, tb) = two_teams("cli").await;
    let (ws_a, ws_b) = (&a.created.workspace_id, &b.created.workspace_id);
    let (ta, tb, op) = (Some(ta.as_str()), Some(tb.as_str()), Some(OPERATOR));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wasm = d.join("hostile.wasm");
    std::fs::write(&wasm, hostile_wasm()).unwrap();

    // Team A pushes a transform and routes its workspace to it.
    let pushed = cli(
        &gw,
        d,
        ta,
        &[
            "transforms",
            "push",
            wasm.to_str().unwrap(),
            "--name",
            "hostile",
        ],
    )
    .await
    .lines();
    let digest = pushed[0]["digest"].as_str().unwrap().to_string();
    let route = cli(
        &gw,
        d,
        ta,
        &[
            "routes",
            "set",
            "--topic",
            "*",
            "--transform",
            &digest[..12],
        ],
    )
    .await
    .lines();
    assert_eq!(route[0]["workspace_id"], *ws_a, "the token's own workspace");
    assert_eq!(route[0]["transform"], digest);
    let listed = cli(&gw, d, ta, &["transforms", "list"]).await.lines();
    assert!(listed.iter().any(|t| t["digest"] == digest), "{listed:?}");
    let listed = cli(&gw, d, tb, &["transforms", "list"]).await.lines();
    assert!(listed.iter().all(|t| t["builtin"] == true), "{listed:?}");
    let shown = cli(&gw, d, ta, &["transforms", "show", &digest])
        .await
        .lines();
    assert_eq!(shown[0]["routes"].as_array().unwrap().len(), 1);

    // Routes are scoped: B sees none of A's, the operator sees them.
    assert_eq!(cli(&gw, d, ta, &["routes", "list"]).await.lines().len(), 1);
    assert!(
        cli(&gw, d, tb, &["routes", "list"])
            .await
            .lines()
            .is_empty()
    );
    let all = cli(&gw, d, op, &["routes", "list"]).await.lines();
    assert_eq!(all.len(), 1);
    let history = cli(&gw, d, ta, &["routes", "history"]).await.lines();
    assert_eq!(
        history[0]["actor"], "team-a",
        "recorded as the token's name"
    );
    let refused = cli(
        &gw,
        d,
        ta,
        &[
            "routes",
            "set",
            "--topic",
            "*",
            "--transform",
            "builtin:redact-pii",
        ]
        .into_iter()
        .chain(["--workspace", ws_b])
        .collect::<Vec<_>>(),
    )
    .await;
    assert!(!refused.ok);
    assert!(refused.stderr.contains("forbidden"), "{}", refused.stderr);

    // A's webhook fails in its transform: a dead letter only A sees.
    deliver(&gw, &a, "hostile/trap").await;
    let letters = cli(&gw, d, ta, &["dead-letters", "list", "--json"])
        .await
        .lines();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason_code"], "trap");
    assert!(
        cli(&gw, d, tb, &["dead-letters", "list", "--json"])
            .await
            .lines()
            .is_empty()
    );
    let text = cli(&gw, d, ta, &["dead-letters", "list"]).await;
    assert!(text.ok && text.stdout.contains("trap"), "{}", text.stdout);

    // B cannot replay it; A routes back to the built-in and replays it.
    let id = letters[0]["id"].to_string();
    let refused = cli(&gw, d, tb, &["dead-letters", "replay", "--id", &id]).await;
    assert!(!refused.ok && refused.stderr.contains("forbidden"));
    cli(
        &gw,
        d,
        ta,
        &[
            "routes",
            "set",
            "--topic",
            "*",
            "--transform",
            "builtin:shopify-default",
        ],
    )
    .await
    .lines();
    let replayed = cli(&gw, d, ta, &["dead-letters", "replay", "--all"])
        .await
        .lines();
    assert_eq!(replayed[0]["replayed"][0], letters[0]["id"]);
    gw.settle().await;

    // The event it became, in A's tail only.
    deliver(&gw, &b, "orders/create").await;
    let events = cli(&gw, d, ta, &["events", "tail", "--json", "--limit", "10"])
        .await
        .lines();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["workspace_id"], *ws_a);
    assert_eq!(events[0]["metadata"]["transform"], "shopify-default");
    let events = cli(&gw, d, op, &["events", "tail", "--json"]).await.lines();
    assert_eq!(events.len(), 2);
    let text = cli(&gw, d, op, &["events", "tail", "--limit", "1"]).await;
    assert!(text.ok, "{}", text.stderr);
    assert_eq!(text.stdout.lines().count(), 1);
    assert!(text.stdout.contains(".orders.created"), "{}", text.stdout);

    // Connections and their webhook registrations: each team its own.
    let conns = cli(&gw, d, ta, &["connections", "list"]).await.lines();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["account"], "cli-team-a.myshopify.com");
    let a_id = conns[0]["connection_id"].as_str().unwrap().to_string();
    assert_eq!(
        cli(&gw, d, op, &["connections", "list"])
            .await
            .lines()
            .len(),
        2
    );
    let registrations = cli(&gw, d, ta, &["connections", "webhooks", &a_id]).await;
    assert!(
        registrations.lines().is_empty(),
        "a manual connection has none"
    );
    let refused = cli(&gw, d, tb, &["connections", "webhooks", &a_id]).await;
    assert!(!refused.ok && refused.stderr.contains("forbidden"));

    // A wrong token, or none, is a clear failure.
    let wrong = cli(&gw, d, Some("ifx_wrong"), &["routes", "list"]).await;
    assert!(!wrong.ok);
    assert!(wrong.stdout.is_empty());
    assert!(
        wrong.stderr.contains("refused the token") && wrong.stderr.contains("unauthorized"),
        "{}",
        wrong.stderr
    );
    let none = cli(&gw, d, None, &["routes", "list"]).await;
    assert!(
        !none.ok && none.stderr.contains("IONFLUX_TOKEN"),
        "{}",
        none.stderr
    );
    // No database and no key were made where the CLI ran.
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("hostile.wasm")]);
    gw.stop().await;
}

/// `connections add` and `routes shadow`, the two commands that needed the
/// database, through the API: the secret goes to the gateway on stdin and
/// in the request body, never back; a workspace token adds only to its own
/// workspace, and only brands no other workspace holds.
#[tokio::test]
async fn connections_are_added_and_shadows_read_through_the_admin_api() {
    let (gw, a, b, ta, tb) = two_teams("add").await;
    let (ws_a, ws_b) = (&a.created.workspace_id, &b.created.workspace_id);
    let (ta, tb, op) = (Some(ta.as_str()), Some(tb.as_str()), Some(OPERATOR));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "shpss_added-over-the-api";
    let brand = uuid::Uuid::new_v4().to_string();
    // Team A connects a new shop: its own workspace, no --workspace needed.
    let added = add(
        &gw,
        d,
        ta,
        "new-shop.myshopify.com",
        brand.clone(),
        &[],
        secret,
    )
    .await
    .lines();
    assert_eq!(added.len(), 1);
    let added = &added[0];
    assert_eq!(added["workspace_id"], *ws_a);
    assert_eq!(added["brand_id"], brand.as_str());
    assert_eq!(added["created"], true);
    let path = added["webhook_path"].as_str().unwrap();
    assert!(
        path.starts_with("/integrations/shopify/webhooks/"),
        "{path}"
    );
    let conn = Conn {
        created: ionflux_gateway::pipeline::connection::Created {
            connection_id: added["connection_id"].as_str().unwrap().into(),
            secure_path_identifier: added["secure_path_identifier"].as_str().unwrap().into(),
            webhook_path: path.into(),
            provider: "shopify".into(),
            account: "new-shop.myshopify.com".into(),
            workspace_id: ws_a.clone(),
            brand_id: brand.clone(),
            created: true,
        },
        secret: secret.into(),
    };
    // The gateway stored the secret it was sent: a webhook it signs is taken.
    let (status, body) = gw
        .send(&Hook::shopify(
            &conn,
            "orders/create",
            "2024-01",
            br#"{"id":7}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");

    // Again for the same shop and brand: the secret is rotated, same URL.
    let rotated = add(
        &gw,
        d,
        ta,
        "new-shop.myshopify.com",
        brand.clone(),
        &[],
        "shpss_second",
    )
    .await
    .lines();
    assert_eq!(rotated[0]["created"], false);
    assert_eq!(rotated[0]["connection_id"], added["connection_id"]);

    // Workspace scoping: A cannot add into B's workspace, B cannot take A's
    // brand, and B's token does not get to rotate A's connection.
    let into_b = add(
        &gw,
        d,
        ta,
        "x.myshopify.com",
        uuid::Uuid::new_v4().to_string(),
        &["--workspace", ws_b.as_str()],
        secret,
    )
    .await;
    let take_brand = add(&gw, d, tb, "y.myshopify.com", brand.clone(), &[], secret).await;
    let rotate_a = add(
        &gw,
        d,
        tb,
        "new-shop.myshopify.com",
        brand.clone(),
        &[],
        secret,
    )
    .await;
    for refused in [&into_b, &take_brand, &rotate_a] {
        assert!(!refused.ok && refused.stdout.is_empty());
        assert!(refused.stderr.contains("403"), "{}", refused.stderr);
        assert!(refused.stderr.contains("forbidden"), "{}", refused.stderr);
        assert!(!refused.stderr.contains(secret), "{}", refused.stderr);
    }
    // A workspace may not keep a replaced secret alive longer than the
    // gateway allows; an operator names the workspace.
    let long = add(
        &gw,
        d,
        ta,
        "new-shop.myshopify.com",
        brand.clone(),
        &["--previous-secret-window", "30d"],
        secret,
    )
    .await;
    assert!(
        !long.ok && long.stderr.contains("forbidden"),
        "{}",
        long.stderr
    );
    let nameless = add(
        &gw,
        d,
        op,
        "z.myshopify.com",
        uuid::Uuid::new_v4().to_string(),
        &[],
        secret,
    )
    .await;
    assert!(
        !nameless.ok && nameless.stderr.contains("workspace_id is required"),
        "{}",
        nameless.stderr
    );
    let by_operator = add(
        &gw,
        d,
        op,
        "z.myshopify.com",
        uuid::Uuid::new_v4().to_string(),
        &["--workspace", ws_b.as_str()],
        secret,
    )
    .await
    .lines();
    assert_eq!(by_operator[0]["workspace_id"], *ws_b);
    let empty = add(
        &gw,
        d,
        ta,
        "w.myshopify.com",
        uuid::Uuid::new_v4().to_string(),
        &[],
        "",
    )
    .await;
    assert!(
        !empty.ok && empty.stderr.contains("empty"),
        "{}",
        empty.stderr
    );
    let b_sees: Vec<Value> = cli(&gw, d, tb, &["connections", "list"]).await.lines();
    assert_eq!(b_sees.len(), 2, "B's own and the operator's: {b_sees:?}");

    // A shadow of A's own upload beside the built-in, on a webhook where
    // they differ (the route's config has the hostile guest fan out; the
    // built-in makes one event).
    let wasm = d.join("hostile.wasm");
    std::fs::write(&wasm, hostile_wasm()).unwrap();
    let pushed = cli(
        &gw,
        d,
        ta,
        &[
            "transforms",
            "push",
            wasm.to_str().unwrap(),
            "--name",
            "hostile",
        ],
    )
    .await
    .lines();
    let digest = pushed[0]["digest"].as_str().unwrap().to_string();
    cli(
        &gw,
        d,
        ta,
        &[
            "routes",
            "set",
            "--topic",
            "*",
            "--transform",
            "builtin:shopify-default",
            "--shadow",
            &digest,
            "--config",
            r#"{"fan_out":2}"#,
        ],
    )
    .await
    .lines();
    let (status, body) = gw
        .send(&Hook::shopify(
            &a,
            "orders/create",
            "2024-01",
            br#"{"id":1}"#,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    gw.settle().await;
    let seen = cli(&gw, d, ta, &["routes", "shadow", "--samples"])
        .await
        .lines();
    let (stats, samples): (Vec<_>, Vec<_>) = seen.iter().partition(|l| l.get("runs").is_some());
    assert_eq!(stats.len(), 1, "{seen:?}");
    assert_eq!(stats[0]["shadow_transform"], digest.as_str());
    assert_eq!(stats[0]["runs"], 1);
    assert_eq!(stats[0]["differences"], 1);
    assert_eq!(samples.len(), 1, "{seen:?}");
    assert_eq!(samples[0]["topic"], "orders/create");
    let counters_only = cli(&gw, d, ta, &["routes", "shadow"]).await.lines();
    assert_eq!(counters_only.len(), 1, "{counters_only:?}");
    assert!(
        cli(&gw, d, tb, &["routes", "shadow", "--samples"])
            .await
            .lines()
            .is_empty(),
        "B sees none of A's shadow runs"
    );
    assert_eq!(
        cli(&gw, d, op, &["routes", "shadow", "--samples"])
            .await
            .lines()
            .len(),
        2
    );

    // No database and no key were made where the CLI ran.
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("hostile.wasm")]);
    gw.stop().await;
}
