//! The configuration layers as an operator meets them: the real binary's
//! `config show`, run as a process with a config file, environment
//! variables and flags. Defaults < file < environment < flag; an unknown key
//! is an error that names it; secrets never reach the output.

use std::path::Path;

use ionflux_tests::gateway_bin;
use std::process::{Command, Output};

/// Runs the gateway with exactly these variables (none inherited, so an
/// IONFLUX_* or RUST_LOG of the machine cannot change the outcome).
fn gateway(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(gateway_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("running ionflux-gateway")
}

/// `config show` with these arguments and variables; its stdout.
fn show(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["config", "show"];
    all.extend_from_slice(args);
    let out = gateway(&all, env);
    assert!(
        out.status.success(),
        "config show {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The raw TOML value of `key` in `[section]` (None: top level) of a
/// `config show` output.
fn value(toml: &str, section: Option<&str>, key: &str) -> String {
    let mut current: Option<String> = None;
    for line in toml.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_string());
        } else if let Some((k, v)) = line.split_once(" = ")
            && k == key
            && current.as_deref() == section
        {
            return v.to_string();
        }
    }
    panic!("no {section:?}.{key} in:\n{toml}");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn flags_beat_variables_beat_the_file_beats_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "gateway.toml",
        r#"
listen = "127.0.0.2:1001"
max_backlog_age = "9m"
log_format = "json"

[dispatch]
claim_lease = "45s"
batch_size = 7

[kafka]
brokers = "file-broker:9092"
"#,
    );
    let file_arg = ["--config", file.as_str()];

    // Defaults alone: the values written in config.default.toml.
    let out = show(&[], &[]);
    assert_eq!(value(&out, None, "listen"), r#""127.0.0.1:8080""#);
    assert_eq!(
        value(&out, None, "database_url"),
        r#""sqlite://ionflux.db""#
    );
    assert_eq!(value(&out, None, "max_backlog_age"), r#""5m""#);
    assert_eq!(value(&out, None, "database_max_connections"), "16");
    assert_eq!(value(&out, None, "log_format"), r#""text""#);
    assert_eq!(value(&out, None, "otlp_endpoint"), r#""""#);
    assert_eq!(value(&out, Some("dispatch"), "claim_lease"), r#""30s""#);
    assert_eq!(value(&out, Some("dispatch"), "batch_size"), "64");
    assert_eq!(value(&out, Some("dispatch"), "replica"), r#""""#);
    assert_eq!(value(&out, Some("limits"), "cpu"), r#""50ms""#);
    assert_eq!(value(&out, Some("kafka"), "brokers"), r#""""#);

    // The file over the defaults; what it does not name stays default.
    let out = show(&file_arg, &[]);
    assert_eq!(value(&out, None, "listen"), r#""127.0.0.2:1001""#);
    assert_eq!(value(&out, None, "max_backlog_age"), r#""9m""#);
    assert_eq!(value(&out, None, "log_format"), r#""json""#);
    assert_eq!(value(&out, Some("dispatch"), "claim_lease"), r#""45s""#);
    assert_eq!(value(&out, Some("dispatch"), "batch_size"), "7");
    assert_eq!(
        value(&out, Some("kafka"), "brokers"),
        r#""file-broker:9092""#
    );
    assert_eq!(value(&out, Some("dispatch"), "idle_poll"), r#""500ms""#);
    // IONFLUX_CONFIG names the file as well as --config does.
    assert_eq!(show(&[], &[("IONFLUX_CONFIG", &file)]), out);

    // Variables over the file.
    let env = [
        ("IONFLUX_LISTEN", "127.0.0.3:1002"),
        ("IONFLUX_MAX_BACKLOG_AGE", "1m 30s"),
        ("IONFLUX_CLAIM_LEASE", "2m"),
        ("IONFLUX_KAFKA_BROKERS", "env-broker:9092"),
        ("IONFLUX_DATABASE_URL", "sqlite:///var/lib/ionflux/env.db"),
        ("IONFLUX_REPLICA", "env-replica"),
        ("IONFLUX_LOG_FORMAT", "text"),
    ];
    let out = show(&file_arg, &env);
    assert_eq!(value(&out, None, "listen"), r#""127.0.0.3:1002""#);
    assert_eq!(value(&out, None, "max_backlog_age"), r#""1m 30s""#);
    assert_eq!(value(&out, None, "log_format"), r#""text""#);
    assert_eq!(value(&out, Some("dispatch"), "claim_lease"), r#""2m""#);
    assert_eq!(value(&out, Some("dispatch"), "batch_size"), "7");
    assert_eq!(value(&out, Some("dispatch"), "replica"), r#""env-replica""#);
    assert_eq!(
        value(&out, Some("kafka"), "brokers"),
        r#""env-broker:9092""#
    );
    assert_eq!(
        value(&out, None, "database_url"),
        r#""sqlite:///var/lib/ionflux/env.db""#
    );

    // Flags over the variables.
    let out = show(
        &[
            "--config",
            &file,
            "--listen",
            "127.0.0.4:1003",
            "--claim-lease",
            "3s",
            "--kafka-brokers",
            "flag-broker:9092",
            "--database-url",
            "sqlite:///tmp/flag.db",
            "--log-format",
            "json",
        ],
        &env,
    );
    assert_eq!(value(&out, None, "listen"), r#""127.0.0.4:1003""#);
    assert_eq!(value(&out, Some("dispatch"), "claim_lease"), r#""3s""#);
    assert_eq!(
        value(&out, Some("kafka"), "brokers"),
        r#""flag-broker:9092""#
    );
    assert_eq!(
        value(&out, None, "database_url"),
        r#""sqlite:///tmp/flag.db""#
    );
    assert_eq!(value(&out, None, "log_format"), r#""json""#);
    // Untouched by flags: the variable's value.
    assert_eq!(value(&out, None, "max_backlog_age"), r#""1m 30s""#);
}

#[test]
fn the_old_flags_and_variables_still_work() {
    let out = show(
        &["--log-json", "--kafka-property", "linger.ms=5"],
        &[
            ("IONFLUX_KAFKA_PROPERTIES", "acks=all,compression.type=zstd"),
            ("IONFLUX_SHOPIFY_REFRESH_LEAD_SECS", "90"),
            ("IONFLUX_OAUTH_TIMESTAMP_WINDOW_SECS", "60"),
            (
                "IONFLUX_SHOPIFY_WEBHOOK_TOPICS",
                "orders/create,app/uninstalled",
            ),
            ("IONFLUX_MAX_BODY_BYTES", "1024"),
        ],
    );
    assert_eq!(value(&out, None, "log_format"), r#""json""#);
    assert_eq!(value(&out, None, "max_body_bytes"), "1024");
    assert_eq!(value(&out, Some("shopify"), "refresh_lead"), r#""1m 30s""#);
    assert_eq!(value(&out, Some("shopify"), "timestamp_window"), r#""1m""#);
    assert_eq!(
        value(&out, Some("shopify"), "webhook_topics"),
        r#"["orders/create", "app/uninstalled"]"#
    );
    // A flag replaces the variable, as clap reads them.
    assert_eq!(
        value(&out, Some("kafka.properties"), r#""linger.ms""#),
        r#""5""#
    );
    let env_only = show(
        &[],
        &[("IONFLUX_KAFKA_PROPERTIES", "acks=all,compression.type=zstd")],
    );
    assert_eq!(
        value(&env_only, Some("kafka.properties"), r#""compression.type""#),
        r#""zstd""#
    );

    // IONFLUX_LOG sets the filter; RUST_LOG wins over it.
    let out = show(&[], &[("IONFLUX_LOG", "warn")]);
    assert_eq!(value(&out, None, "log_filter"), r#""warn""#);
    let out = show(&[], &[("IONFLUX_LOG", "warn"), ("RUST_LOG", "debug")]);
    assert_eq!(value(&out, None, "log_filter"), r#""debug""#);
}

#[test]
fn an_unknown_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "typo.toml",
        "listen = \"127.0.0.1:9\"\n[dispatch]\nclaim_leese = \"10s\"\n",
    );
    for args in [
        vec!["config", "show", "--config", &file],
        vec!["serve", "--config", &file],
        vec!["--config", &file, "connections", "list"],
    ] {
        let out = gateway(&args, &[]);
        assert!(!out.status.success(), "{args:?} accepted a typo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unknown key `dispatch.claim_leese`") && stderr.contains(&file),
            "{args:?}: {stderr}"
        );
    }

    let file = write(
        dir.path(),
        "bad.toml",
        "[dispatch]\nclaim_lease = \"soon\"\n",
    );
    let out = gateway(&["config", "show", "--config", &file], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("claim_lease"), "{stderr}");

    let out = gateway(
        &["config", "show", "--config", "/nonexistent/ionflux.toml"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ionflux.toml"));
}

#[test]
fn secrets_are_redacted() {
    const SECRETS: [&str; 7] = [
        "admin-token-from-env-91b2",
        "service-token-from-file-47aa",
        "client-secret-from-flag-c3d0",
        "jwt-secret-from-file-0e5f",
        "db-password-5a7c",
        "sasl-password-77e1",
        "ZmFrZS1tYXN0ZXIta2V5LWJ5dGVzLTMyLWxvbmchIQ==",
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "secrets.toml",
        &format!(
            r#"
service_token = "{}"
database_url = "postgres://gateway:{}@db.internal:5432/ionflux"

[shopify]
client_id = "app-client-id"
jwt_hs256_secret = "{}"

[kafka.properties]
"sasl.password" = "{}"
"sasl.username" = "gateway"
"#,
            SECRETS[1], SECRETS[4], SECRETS[3], SECRETS[5]
        ),
    );
    let master_keys = format!("k1:{}", SECRETS[6]);
    let out = gateway(
        &[
            "config",
            "show",
            "--config",
            &file,
            "--shopify-client-secret",
            SECRETS[2],
        ],
        &[
            ("IONFLUX_ADMIN_TOKEN", SECRETS[0]),
            ("IONFLUX_MASTER_KEYS", &master_keys),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} logged:\n{stderr}");
    }
    let redacted = r#""[redacted]""#;
    assert_eq!(value(&stdout, None, "admin_token"), redacted);
    assert_eq!(value(&stdout, None, "service_token"), redacted);
    assert_eq!(value(&stdout, None, "master_keys"), redacted);
    assert_eq!(value(&stdout, Some("shopify"), "client_secret"), redacted);
    assert_eq!(
        value(&stdout, Some("shopify"), "jwt_hs256_secret"),
        redacted
    );
    assert_eq!(
        value(&stdout, Some("kafka.properties"), r#""sasl.password""#),
        redacted
    );
    // What is not secret is still shown, so the output stays useful.
    assert_eq!(
        value(&stdout, None, "database_url"),
        r#""postgres://gateway:[redacted]@db.internal:5432/ionflux""#
    );
    assert_eq!(
        value(&stdout, Some("kafka.properties"), r#""sasl.username""#),
        r#""gateway""#
    );
    assert_eq!(
        value(&stdout, Some("shopify"), "client_id"),
        r#""app-client-id""#
    );
}

#[test]
fn the_documented_defaults_are_printed_whole() {
    let out = gateway(&["config", "defaults"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# env: IONFLUX_CLAIM_LEASE"), "{text}");
    // The defaults file is itself a valid config file.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defaults.toml", &text);
    assert_eq!(show(&["--config", &file], &[]), show(&[], &[]));
}

/// With a JWT key and no audience, `serve` does not start, and says which
/// flag to set (or how to turn the check off explicitly).
#[test]
fn serve_refuses_a_jwt_key_without_an_audience() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let master_keys = format!("k1:{}", "A".repeat(43) + "=");
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--shopify-client-id",
        "demo",
        "--shopify-client-secret",
        "demo_app_secret",
        "--shopify-redirect-uri",
        "http://127.0.0.1:8080/integrations/shopify/auth/callback",
        "--public-base-url",
        "http://127.0.0.1:8080",
        "--jwt-hs256-secret",
        "devsecret",
    ];
    let env = [
        ("IONFLUX_DATABASE_URL", db.as_str()),
        ("IONFLUX_MASTER_KEYS", master_keys.as_str()),
    ];
    let out = gateway(&base, &env);
    assert!(!out.status.success(), "started without an audience");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--jwt-audience") && stderr.contains("--jwt-audience-check=false"),
        "{stderr}"
    );
    // The flag that turns the check off reaches the settings (`config show`
    // takes serve's flags; the settings' own test shows they then pass).
    let mut args = base[1..].to_vec();
    args.push("--jwt-audience-check=false");
    let out = show(&args, &env);
    assert_eq!(value(&out, Some("shopify"), "jwt_audience_check"), "false");
}
