//! The command line as an operator meets it, run as processes of the real
//! binary: only `serve` creates the database and the key file, and in its
//! data directory; secrets can come from files; completions, the man page
//! and the defaults in `--help`; `config check`; `webhooks send` with a
//! built-in sample; `events tail --json` one event per line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ionflux_gateway::store::Store;
use ionflux_tests::{PATIENCE, fresh_database, gateway_bin};

const SHOP: &str = "cli-shop.myshopify.com";

/// Runs the gateway in `cwd` with exactly these variables (none inherited,
/// so that an IONFLUX_* of the machine cannot change the outcome).
fn gateway(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(gateway_bin())
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ionflux-gateway");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A `serve` process, killed if the test fails before stopping it.
struct Serving {
    child: Child,
    log: Arc<Mutex<String>>,
    url: String,
    admin_url: String,
}

impl Serving {
    fn start(cwd: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(gateway_bin())
            .arg("serve")
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().copied())
            .env("IONFLUX_LISTEN", "127.0.0.1:0")
            .env("IONFLUX_ADMIN_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ionflux-gateway serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        // Read to the end, so that the gateway never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for prefix in [
                    "ionflux-gateway listening on ",
                    "admin API and /metrics on ",
                ] {
                    if let Some(url) = line.strip_prefix(prefix) {
                        let _ = tx.send((prefix, url.trim().to_string()));
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (mut url, mut admin_url) = (None, None);
        while url.is_none() || admin_url.is_none() {
            let Ok((prefix, found)) = rx.recv_timeout(PATIENCE) else {
                let _ = child.kill();
                panic!("the gateway did not start:\n{}", log.lock().unwrap());
            };
            if prefix.starts_with("admin") {
                admin_url = Some(found);
            } else {
                url = Some(found);
            }
        }
        Self {
            child,
            log,
            url: url.unwrap(),
            admin_url: admin_url.unwrap(),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn commands_other_than_serve_create_no_database_and_no_key() {
    let cwd = tempfile::tempdir().unwrap();
    let elsewhere = cwd.path().join("not-here");
    let not_here = elsewhere.to_str().unwrap();
    for (args, stdin) in [
        (vec!["connections", "list"], &b""[..]),
        (
            vec![
                "connections",
                "add",
                "--shop",
                SHOP,
                "--workspace",
                "w",
                "--brand",
                "b",
            ],
            b"secret",
        ),
        (vec!["events", "tail"], b""),
        (vec!["routes", "list"], b""),
        (vec!["tokens", "list"], b""),
        (vec!["transforms", "list"], b""),
        (vec!["dead-letters", "list"], b""),
        (vec!["secrets", "reencrypt", "--check"], b""),
        (vec!["keys", "list"], b""),
        (vec!["keys", "rotate"], b""),
        (
            vec![
                "webhooks",
                "send",
                "--shop",
                SHOP,
                "--topic",
                "orders/create",
            ],
            b"",
        ),
    ] {
        for data_dir in [None, Some(not_here)] {
            let env: Vec<(&str, &str)> = data_dir
                .map(|d| ("IONFLUX_DATA_DIR", d))
                .into_iter()
                .collect();
            let out = gateway(cwd.path(), &args, &env, stdin);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {env:?} succeeded");
            // The error names the file it looked for, where it looked.
            let dir = match data_dir {
                Some(d) => d.to_string(),
                None => cwd.path().display().to_string(),
            };
            let named = [
                format!("no database file at {dir}/ionflux.db"),
                format!("no master key file at {dir}/ionflux.key"),
                format!("no master key file at {dir}/./ionflux.key"),
            ];
            assert!(
                named.iter().any(|n| stderr.contains(n.as_str())),
                "{args:?} {env:?}: {stderr}"
            );
            assert!(stderr.contains("serve"), "{args:?}: {stderr}");
        }
        assert!(
            entries(cwd.path()).is_empty(),
            "{args:?} created {:?}",
            entries(cwd.path())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_data_in_the_data_dir_and_the_walk_through_works() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("var/lib/ionflux");
    let data_dir = data_dir.to_str().unwrap().to_string();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin_token");
    // As Docker mounts a secret: a file ending in a newline.
    std::fs::write(&token_file, "admin-token-from-a-file-5c1e\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_string();
    let env = [
        ("IONFLUX_DATA_DIR", data_dir.as_str()),
        ("IONFLUX_ADMIN_TOKEN_FILE", token_file.as_str()),
    ];
    let gw = Serving::start(cwd.path(), &env);
    let written = entries(Path::new(&data_dir));
    assert!(
        written.contains(&"ionflux.db".to_string()) && written.contains(&"ionflux.key".to_string()),
        "{written:?}"
    );
    assert!(entries(cwd.path()).is_empty(), "{:?}", entries(cwd.path()));

    // The admin token came from the file, newline trimmed.
    let client = reqwest::Client::new();
    let events = format!("{}/admin/v1/events", gw.admin_url);
    let status = |token: &'static str| {
        let req = client.get(&events).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("admin-token-from-a-file-5c1e").await, 200);
    assert_eq!(status("admin-token-from-a-file").await, 401);

    // The README's walk-through, from another directory, found by the
    // data directory alone.
    let run = |args: Vec<String>, stdin: &'static [u8]| {
        let cwd = cwd.path().to_path_buf();
        let env = [("IONFLUX_DATA_DIR".to_string(), data_dir.clone())];
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gateway(&cwd, &args, &env, stdin)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let added = run(
        args(&[
            "connections",
            "add",
            "--shop",
            SHOP,
            "--workspace",
            "7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f",
            "--brand",
            "0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b",
        ]),
        b"my_app_secret",
    )
    .await
    .unwrap();
    assert!(ok(&added, "connections add").contains(SHOP));

    // No --file: the built-in orders/create sample (pretty-printed, so its
    // passed-through body has line breaks of its own).
    let sent = run(
        args(&[
            "webhooks",
            "send",
            "--shop",
            SHOP,
            "--topic",
            "orders/create",
            "--gateway-url",
            &gw.url,
        ]),
        b"",
    )
    .await
    .unwrap();
    let sent = ok(&sent, "webhooks send");
    assert!(sent.starts_with("200 "), "{sent}");
    let unknown = run(
        args(&[
            "webhooks",
            "send",
            "--shop",
            SHOP,
            "--topic",
            "carts/create",
            "--gateway-url",
            &gw.url,
        ]),
        b"",
    )
    .await
    .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("--file"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    let deadline = Instant::now() + PATIENCE;
    let tail = loop {
        let out = run(args(&["events", "tail", "--json"]), b"").await.unwrap();
        let out = ok(&out, "events tail --json");
        if !out.is_empty() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "no event within {PATIENCE:?}:\n{}",
            gw.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One event per line, each a whole JSON document, the sample's body in it.
    let events: Vec<serde_json::Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{tail}")))
        .collect();
    assert!(!events.is_empty());
    assert!(
        events.iter().any(|e| e
            .to_string()
            .contains("gid://shopify/Order/820982911946154508")),
        "{tail}"
    );
    drop(gw);
}

#[test]
fn secrets_can_be_given_as_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let keys = write("master_keys", &format!("k1:{key}\nk2:{key}\n"));
    let url = write("database_url", "postgres://gw:pw-file-9d@db:5432/gw\n");
    let token = write("token", "tok-file-31ab\r\n");
    let cwd = dir.path();

    // The master keys: every line, the last one active.
    let out = gateway(
        cwd,
        &["keys", "list"],
        &[("IONFLUX_MASTER_KEYS_FILE", &keys)],
        b"",
    );
    let listed: serde_json::Value = serde_json::from_str(&ok(&out, "keys list")).unwrap();
    assert_eq!(listed["keys"], serde_json::json!(["k1", "k2"]));
    assert_eq!(listed["active"], "k2");

    let show = |env: &[(&str, &str)]| ok(&gateway(cwd, &["config", "show"], env, b""), "show");
    let out = show(&[
        ("IONFLUX_DATABASE_URL_FILE", &url),
        ("IONFLUX_ADMIN_TOKEN_FILE", &token),
        ("IONFLUX_SERVICE_TOKEN_FILE", &token),
        ("IONFLUX_SHOPIFY_CLIENT_SECRET_FILE", &token),
        ("IONFLUX_JWT_HS256_SECRET_FILE", &token),
    ]);
    assert!(
        out.contains("database_url = \"postgres://gw:[redacted]@db:5432/gw\"\n"),
        "{out}"
    );
    for key in [
        "admin_token",
        "service_token",
        "client_secret",
        "jwt_hs256_secret",
    ] {
        assert!(
            out.contains(&format!("{key} = \"[redacted]\"")),
            "{key}: {out}"
        );
    }
    assert!(!out.contains("pw-file-9d") && !out.contains("tok-file-31ab"));
    let unset = show(&[]);
    assert!(unset.contains("admin_token = \"\""), "{unset}");

    // A flag still wins over the file.
    let out = ok(
        &gateway(
            cwd,
            &["config", "show", "--database-url", "sqlite://flag.db"],
            &[("IONFLUX_DATABASE_URL_FILE", &url)],
            b"",
        ),
        "show",
    );
    assert!(out.contains("database_url = \"sqlite://flag.db\""), "{out}");

    // Both ways at once, or a file that is not there: an error naming them.
    let out = gateway(
        cwd,
        &["config", "show"],
        &[
            ("IONFLUX_ADMIN_TOKEN", "tok"),
            ("IONFLUX_ADMIN_TOKEN_FILE", &token),
        ],
        b"",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IONFLUX_ADMIN_TOKEN and IONFLUX_ADMIN_TOKEN_FILE"),
        "{stderr}"
    );
    let out = gateway(
        cwd,
        &["config", "show"],
        &[("IONFLUX_SERVICE_TOKEN_FILE", "/nonexistent/token")],
        b"",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IONFLUX_SERVICE_TOKEN_FILE") && stderr.contains("/nonexistent/token"),
        "{stderr}"
    );
}

#[test]
fn completions_and_a_man_page() {
    let cwd = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ok(
            &gateway(cwd.path(), &["completions", shell], &[], b""),
            shell,
        );
        for word in ["serve", "connections", "webhooks", "data-dir"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let page = ok(&gateway(cwd.path(), &["man"], &[], b""), "man");
    assert!(
        page.starts_with(".ie") || page.contains(".TH ionflux-gateway 1"),
        "{page}"
    );
    for word in ["serve", "connections", "completions", "data\\-dir"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    let dir = cwd.path().join("man1");
    ok(
        &gateway(
            cwd.path(),
            &["man", "--dir", dir.to_str().unwrap()],
            &[],
            b"",
        ),
        "man --dir",
    );
    let pages = entries(&dir);
    for page in [
        "ionflux-gateway.1",
        "ionflux-gateway-serve.1",
        "ionflux-gateway-config-check.1",
    ] {
        assert!(pages.contains(&page.to_string()), "{pages:?}");
    }
    let serve = std::fs::read_to_string(dir.join("ionflux-gateway-serve.1")).unwrap();
    assert!(serve.contains("127.0.0.1:8080"), "{serve}");
}

#[test]
fn help_shows_the_defaults_and_a_config_file_still_wins() {
    let cwd = tempfile::tempdir().unwrap();
    let help = ok(&gateway(cwd.path(), &["serve", "--help"], &[], b""), "help");
    // Each flag's section of the help, up to the next flag.
    let section = |flag: &str| {
        let start = help
            .find(&format!("      --{flag} <"))
            .unwrap_or_else(|| panic!("no --{flag} in\n{help}"));
        let rest = &help[start + 2..];
        rest[..rest.find("\n      --").unwrap_or(rest.len())].to_string()
    };
    for (flag, default) in [
        ("listen", "127.0.0.1:8080"),
        ("admin-listen", "127.0.0.1:9090"),
        ("batch-size", "64"),
        ("claim-lease", "30s"),
        ("max-body-bytes", "5242880"),
        ("http-idle-timeout", "75s"),
        ("shopify-api-version", "2026-04"),
        ("log-filter", "info,sqlx=warn,wasmtime=warn,cranelift=warn"),
    ] {
        assert!(
            section(flag).contains(&format!("[default: {default}]")),
            "--{flag}: {}",
            section(flag)
        );
    }
    assert!(!section("kafka-brokers").contains("[default:"));
    assert!(!section("admin-token").contains("[default:"));

    // Shown, not applied: with no flag, the file's values stand.
    let file = cwd.path().join("gateway.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.9:9999\"\n[dispatch]\nbatch_size = 7\n",
    )
    .unwrap();
    let out = ok(
        &gateway(
            cwd.path(),
            &["config", "show", "--config", file.to_str().unwrap()],
            &[],
            b"",
        ),
        "show",
    );
    assert!(out.contains("listen = \"127.0.0.9:9999\""), "{out}");
    assert!(out.contains("batch_size = 7\n"), "{out}");
}

/// `config check` with the database at `url` and a broker, if any; its
/// exit status and output.
fn check(cwd: &Path, url: &str, brokers: Option<&str>) -> (bool, String) {
    let mut env = vec![
        ("IONFLUX_DATABASE_URL", url),
        (
            "IONFLUX_MASTER_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
    ];
    if let Some(b) = brokers {
        env.push(("IONFLUX_KAFKA_BROKERS", b));
    }
    let out = gateway(cwd, &["config", "check", "--timeout", "3s"], &env, b"");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The line of check `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} check in\n{out}"))
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reaches_the_database_and_the_broker() {
    let cwd = tempfile::tempdir().unwrap();
    let db = fresh_database().await;
    // Made and migrated as `serve` would.
    Store::connect(&db.url).await.unwrap().close().await;

    let (passed, out) = check(cwd.path(), &db.url, None);
    assert!(passed, "{out}");
    assert!(line(&out, "database").starts_with("ok"), "{out}");
    assert!(line(&out, "kafka").starts_with("ok"), "{out}");
    assert!(line(&out, "master").starts_with("ok"), "{out}");

    // A broker that is not there: that check fails, and so does the command.
    let brokers = format!("127.0.0.1:{}", closed_port());
    let (passed, out) = check(cwd.path(), &db.url, Some(&brokers));
    assert!(!passed, "{out}");
    assert!(line(&out, "kafka").starts_with("FAILED"), "{out}");
    assert!(line(&out, "kafka").contains(&brokers), "{out}");
    assert!(line(&out, "database").starts_with("ok"), "{out}");

    // A PostgreSQL server that is not there.
    let url = format!("postgres://postgres@127.0.0.1:{}/ionflux", closed_port());
    let (passed, out) = check(cwd.path(), &url, None);
    assert!(!passed, "{out}");
    assert!(line(&out, "database").starts_with("FAILED"), "{out}");

    // A SQLite file that is not there yet: reported, not created, not a
    // failure (`serve` makes it).
    let missing = format!("sqlite://{}", cwd.path().join("new.db").display());
    let (passed, out) = check(cwd.path(), &missing, None);
    assert!(passed, "{out}");
    assert!(line(&out, "database").starts_with("absent"), "{out}");
    assert!(entries(cwd.path()).is_empty(), "{:?}", entries(cwd.path()));
}

#[test]
fn what_serve_writes_is_ignored_by_git() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Ok(out) = Command::new("git")
        .args(["check-ignore", "--no-index", "ionflux.db", "ionflux.db-wal"])
        .args(["ionflux.db-shm", "ionflux.key", "ionflux-cache/abc.cwasm"])
        .current_dir(&root)
        .output()
    else {
        eprintln!("no git: skipping");
        return;
    };
    let ignored = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ignored.lines().count(), 5, "ignored only:\n{ignored}");
}

/// README's "Connecting other platforms", command by command: each
/// platform connected with `connections add --provider`, a sample sent with
/// `webhooks send --provider` (Wix: a token made by the README's openssl
/// lines, posted), the event read back with `events tail --json --limit 1`,
/// and the README's forged requests answered as it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_throughs_of_other_platforms_work() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let gw = Serving::start(cwd.path(), &[("IONFLUX_DATA_DIR", data_dir.as_str())]);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/providers");
    let f = |path: &str| fixtures.join(path).to_str().unwrap().to_string();
    let (w, b) = (
        "7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f",
        "0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b",
    );
    let run = |args: Vec<String>, stdin: Vec<u8>| {
        let cwd = cwd.path().to_path_buf();
        let env = [
            ("IONFLUX_DATA_DIR".to_string(), data_dir.clone()),
            ("IONFLUX_GATEWAY_URL".to_string(), gw.url.clone()),
        ];
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gateway(&cwd, &args, &env, &stdin)
        })
    };
    let client = reqwest::Client::new();
    let post = |path: String, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut req = client.post(format!("{}{path}", gw.url)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().text().await.unwrap() }
    };

    struct Platform {
        add: Vec<String>,
        secret: Vec<u8>,
        send: Vec<String>,
        kind: &'static str,
        forged_headers: Vec<(&'static str, String)>,
        forged_body: &'static str,
        refusal: &'static str,
    }
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let platforms = vec![
        Platform {
            add: words("connections add --provider woocommerce --account https://shop.example"),
            secret: b"my-super-secret-private-key".to_vec(),
            send: [
                words("webhooks send --provider woocommerce --account https://shop.example --topic order.created --file"),
                vec![f("woocommerce/order.created/1.json")],
            ]
            .concat(),
            kind: "woocommerce.ws_7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f.brand_0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b.order.created",
            forged_headers: vec![
                ("X-WC-Webhook-Topic", "order.created".into()),
                ("X-WC-Webhook-Delivery-ID", "forged-1".into()),
                ("X-WC-Webhook-Signature", "Zm9yZ2Vk".into()),
            ],
            forged_body: r#"{"id":1}"#,
            refusal: r#"{"code":"invalid_signature","message":"the signature does not match"}"#,
        },
        Platform {
            add: words(r#"connections add --provider tiktok_shop --account 7494049642642441621 --settings {"app_key":"my_app_key"}"#),
            secret: b"my_app_secret".to_vec(),
            send: [
                words("webhooks send --provider tiktok_shop --account 7494049642642441621 --file"),
                vec![f("tiktok-shop/ORDER_STATUS_CHANGE/1.json")],
            ]
            .concat(),
            kind: "tiktok_shop.ws_7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f.brand_0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b.order.status_changed",
            forged_headers: vec![("Authorization", "00ff".into())],
            forged_body: r#"{"type":1,"shop_id":"7494049642642441621","data":{}}"#,
            refusal: r#"{"code":"invalid_signature","message":"the signature does not match"}"#,
        },
        Platform {
            add: words("connections add --provider standard_webhooks --account acme-app"),
            secret: b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec(),
            send: [
                words("webhooks send --provider standard_webhooks --account acme-app --file"),
                vec![f("standard-webhooks/contact.created/1.json")],
            ]
            .concat(),
            kind: "standard_webhooks.ws_7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f.brand_0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b.contact.created",
            forged_headers: vec![
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
                ("webhook-timestamp", "1614265330".into()),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
                ),
            ],
            forged_body: r#"{"test": 2432232314}"#,
            refusal: r#"{"code":"invalid_signature","message":"the timestamp is outside the tolerance"}"#,
        },
        Platform {
            add: words("connections add --provider hmac --preset github --account octo-org/hello-world"),
            secret: b"my-repo-webhook-secret".to_vec(),
            send: [
                words("webhooks send --provider hmac --account octo-org/hello-world --topic issues --file"),
                vec![f("github/issues.opened/1.json")],
            ]
            .concat(),
            kind: "hmac.ws_7d1c6ab4-5a8e-4d3e-9a38-0c1f2b3d4e5f.brand_0b5f3f5e-1c2d-4e6f-8a9b-1c2d3e4f5a6b.issues.opened",
            forged_headers: vec![
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", "forged-1".into()),
                ("X-Hub-Signature-256", "sha256=00ff".into()),
            ],
            forged_body: r#"{"ref":"refs/heads/main"}"#,
            refusal: r#"{"code":"invalid_signature","message":"the signature does not match"}"#,
        },
    ];

    let tail = || async {
        let out = run(words("events tail --json --limit 1"), vec![])
            .await
            .unwrap();
        let out = ok(&out, "events tail --json --limit 1");
        serde_json::from_str::<serde_json::Value>(out.trim())
            .unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let wait_for = |kind: String| async move {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = run(words("events tail --json --limit 1"), vec![])
                .await
                .unwrap();
            let out = ok(&out, "events tail");
            if out.contains(&kind) {
                return;
            }
            assert!(Instant::now() < deadline, "no {kind} event: {out}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let connect = |add: Vec<String>, secret: Vec<u8>| {
        let args = [add, words(&format!("--workspace {w} --brand {b}"))].concat();
        let run = &run;
        async move {
            let added = run(args, secret).await.unwrap();
            let added: serde_json::Value =
                serde_json::from_str(ok(&added, "connections add").trim()).unwrap();
            added["webhook_path"].as_str().unwrap().to_string()
        }
    };

    for p in platforms {
        let path = connect(p.add.clone(), p.secret.clone()).await;
        let sent = run(p.send.clone(), vec![]).await.unwrap();
        let sent = ok(&sent, "webhooks send");
        assert!(sent.starts_with(r#"200 {"status":"accepted""#), "{sent}");
        let kind = format!("ionflux.{}", p.kind);
        wait_for(kind.clone()).await;
        let event = tail().await;
        assert_eq!(event["event_type"], kind.as_str());
        let refused = post(path.clone(), p.forged_headers, p.forged_body.into()).await;
        assert_eq!(refused, p.refusal);
        if p.kind.starts_with("woocommerce.") {
            let ping = post(
                path,
                vec![("content-type", "application/x-www-form-urlencoded".into())],
                b"webhook_id=12".to_vec(),
            )
            .await;
            assert_eq!(ping, r#"{"status":"ping"}"#);
        }
    }

    // Wix: the test key pair, and a token made by the README's openssl lines.
    let instance = "3bbcabc7-ebb7-4fc8-8829-13ea0e142123";
    let path = connect(
        words(&format!(
            "connections add --provider wix --account {instance}"
        )),
        std::fs::read(f("wix/test-key.pub.pem")).unwrap(),
    )
    .await;
    let refused = run(
        [
            words(&format!(
                "webhooks send --provider wix --account {instance} --file"
            )),
            vec![f("wix/AppInstalled/1.jwt")],
        ]
        .concat(),
        vec![],
    )
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("private key"));
    let readme = include_str!("../../README.md");
    let script = readme
        .split("```sh\nb64url()")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .map(|body| format!("b64url(){body}"))
        .expect("the README's openssl lines for Wix");
    let made = Command::new("bash")
        .arg("-euc")
        .arg(&script)
        .current_dir(cwd.path())
        .env("F", fixtures.to_str().unwrap())
        .output()
        .expect("bash");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = std::fs::read(cwd.path().join("webhook.jwt")).unwrap();
    let accepted = post(path.clone(), vec![], token).await;
    assert!(
        accepted.starts_with(r#"{"status":"accepted""#),
        "{accepted}"
    );
    wait_for(format!("brand_{b}.app.installed")).await;
    let event = tail().await;
    assert_eq!(event["payload_schema_version"], "v1.wix.unversioned");
    assert_eq!(event["payload_json"]["instanceId"], instance);
    let refused = post(
        path,
        vec![],
        std::fs::read(f("wix/AppInstalled/1.jwt")).unwrap(),
    )
    .await;
    assert_eq!(
        refused,
        r#"{"code":"invalid_signature","message":"the signature does not match"}"#
    );
    drop(gw);
}
