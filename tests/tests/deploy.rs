//! The packaging in `deploy/` against the binary it packages.
//!
//! No container engine runs on the CI machine, so the image is tested the
//! way it would run: the Dockerfile is read (user, volume, ports, health
//! check, environment), and its ENTRYPOINT + CMD runs against the debug
//! binary in a directory laid out like the image, with the image's
//! environment (its `/var/lib/ionflux` becomes a temporary directory). That
//! gateway is scraped to prove every metric the Grafana dashboard and the
//! alert rules name exists. The compose file, the systemd unit (checked by
//! `systemd-analyze verify` where it is installed) and the dashboard are
//! read and cross-checked with each other and with the settings the gateway
//! documents. The alert rules themselves are unit-tested by promtool
//! (`deploy/check.sh`, run by tests/scripts/test.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ionflux_gateway::config::DEFAULT_TOML;
use ionflux_gateway::pipeline::connection::Created;
use ionflux_tests::{Conn, Hook, PATIENCE, TestDatabase, fresh_database, gateway_bin, on_postgres};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const ORDER: &[u8] =
    br#"{"id": 820982911946154508, "email": "jon@example.com", "total_price": "10.00"}"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel} is one YAML document");
    docs.remove(0)
}

fn string(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// `IONFLUX_*` names in `text`.
fn ionflux_vars(text: &str) -> BTreeSet<String> {
    identifiers(text, &["IONFLUX_"])
}

/// Identifiers in `text` that start with one of `prefixes` (at a word
/// boundary), e.g. metric names in PromQL.
fn identifiers(text: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = BTreeSet::new();
    for (i, _) in text.char_indices() {
        if i > 0 && text[..i].chars().next_back().is_some_and(word) {
            continue;
        }
        let rest = &text[i..];
        if prefixes.iter().any(|p| rest.starts_with(p)) {
            let end = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
            found.insert(rest[..end].to_string());
        }
    }
    found
}

/// Every variable `deploy/` sets must be one the gateway reads: documented in
/// its defaults (`# env: NAME`), or a typo would be silently ignored.
fn assert_documented(what: &str, vars: impl IntoIterator<Item = String>) {
    for var in vars {
        assert!(
            DEFAULT_TOML.contains(&var),
            "{what} sets {var}, which `ionflux-gateway config defaults` does not document"
        );
    }
}

// ---- the Dockerfile ---------------------------------------------------------

/// One instruction, continuation lines joined and comments left out.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of each stage, from its FROM on.
fn dockerfile() -> Vec<Vec<Instruction>> {
    let text = read("deploy/Dockerfile");
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment lines may sit inside a continued instruction, too.
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
                continue;
            }
            None => pending.push_str(trimmed),
        }
        let line = std::mem::take(&mut pending);
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let ins = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if ins.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(ins);
    }
    stages
}

fn all<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// The last `keyword` of the stage (the one that counts).
fn last<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    all(stage, keyword)
        .pop()
        .unwrap_or_else(|| panic!("the stage has no {keyword}"))
}

/// `["a", "b"]`: exec form, the only form this image uses (no shell in it).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form ({e}): {args}"))
}

/// `ENV K=V K2=V2` lines of the stage, in order.
fn env_of(stage: &[Instruction]) -> Vec<(String, String)> {
    all(stage, "ENV")
        .into_iter()
        .flat_map(|args| args.split_whitespace())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {pair}: use K=V"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// What the tests need to know of the runtime image.
struct Image {
    env: Vec<(String, String)>,
    volume: String,
    workdir: String,
    user: String,
    entrypoint: Vec<String>,
    healthcheck: Vec<String>,
}

fn image() -> Image {
    let stages = dockerfile();
    let runtime = stages.last().expect("a runtime stage");
    let volumes = exec_form(last(runtime, "VOLUME"));
    assert_eq!(volumes.len(), 1, "one volume holds all state: {volumes:?}");
    let mut entrypoint = exec_form(last(runtime, "ENTRYPOINT"));
    entrypoint.extend(exec_form(last(runtime, "CMD")));
    let health = last(runtime, "HEALTHCHECK");
    let (_, command) = health
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {health}"));
    Image {
        env: env_of(runtime),
        volume: volumes[0].clone(),
        workdir: last(runtime, "WORKDIR").to_string(),
        user: last(runtime, "USER").to_string(),
        entrypoint,
        healthcheck: exec_form(command.trim()),
    }
}

impl Image {
    fn env(&self, name: &str) -> &str {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the image sets no {name}"))
    }
}

#[test]
fn image_builds_with_wasm_and_runs_unprivileged_with_state_in_its_volume() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "a multi-stage build");
    let builder = &stages[0];
    let runtime = stages.last().unwrap();

    // The builder: the workspace's compiler (or newer), the wasm target the
    // host's build.rs needs, and the lock file honoured.
    let from = last(builder, "FROM");
    let rust = from
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap_or_else(|| panic!("the builder is an official rust image: {from}"));
    let needed = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("the workspace's rust-version")
        .trim_matches('"')
        .to_string();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        version(rust) >= version(&needed),
        "builder rust {rust} < rust-version {needed}"
    );
    let runs = all(builder, "RUN").join("\n");
    assert!(runs.contains("rustup target add wasm32-wasip2"), "{runs}");
    assert!(
        runs.contains("cargo build --release --locked -p ionflux-gateway"),
        "{runs}"
    );
    // The binary's glibc comes from the builder's Debian release.
    let base = last(runtime, "FROM");
    assert!(
        from.contains("bookworm") && base.contains("debian12"),
        "builder ({from}) and runtime ({base}) on the same Debian release"
    );

    let image = image();
    // Not root, by number (a name would need /etc/passwd to agree).
    let uid = image.user.split(':').next().unwrap();
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER by number: {}", image.user));
    assert_ne!(uid, 0, "the image runs as root");
    // The state directory is the user's; nothing else is.
    let copies = all(runtime, "COPY");
    let chowned: Vec<&&str> = copies.iter().filter(|c| c.contains("--chown")).collect();
    assert_eq!(
        chowned.len(),
        1,
        "only the state directory is chowned: {copies:?}"
    );
    assert!(
        chowned[0].contains(&format!("--chown={}", image.user))
            && chowned[0].trim_end_matches('/').ends_with(&image.volume),
        "{}",
        chowned[0]
    );

    // Every piece of state inside the volume.
    assert_eq!(image.volume, "/var/lib/ionflux");
    assert_eq!(image.workdir, image.volume);
    let db = image.env("IONFLUX_DATABASE_URL");
    assert_eq!(
        db.strip_prefix("sqlite://"),
        Some(format!("{}/ionflux.db", image.volume).as_str())
    );
    for var in ["IONFLUX_MASTER_KEY_FILE", "IONFLUX_CACHE_DIR"] {
        let path = image.env(var);
        assert!(
            path.starts_with(&format!("{}/", image.volume)),
            "{var}={path}"
        );
    }
    // Listening beyond the container's loopback; both ports declared.
    let public: SocketAddr = image.env("IONFLUX_LISTEN").parse().unwrap();
    let admin: SocketAddr = image.env("IONFLUX_ADMIN_LISTEN").parse().unwrap();
    assert!(public.ip().is_unspecified() && admin.ip().is_unspecified());
    let exposed: BTreeSet<u16> = last(runtime, "EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([public.port(), admin.port()]));

    // The health check is the binary itself (no curl in distroless).
    assert_eq!(image.healthcheck[0], image.entrypoint[0]);
    assert_eq!(image.healthcheck[1..], ["healthcheck"]);
    assert_eq!(image.entrypoint[1..], ["serve"]);

    assert_documented(
        "the image",
        image
            .env
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("IONFLUX_")),
    );

    // The build context: sources in, build output and local state out.
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for out in ["/target", ".git", "*.db", "*.key"] {
        assert!(patterns.contains(&out), ".dockerignore lacks {out}");
    }
    for needed in [
        "host",
        "guest-sdk",
        "transforms",
        "wit",
        "migrations",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            !patterns
                .iter()
                .any(|p| p.trim_matches('/') == needed || *p == "*" || *p == "**"),
            ".dockerignore leaves out {needed}, which the build needs"
        );
    }
}

/// Every shared library the binary loads must be in the runtime image:
/// glibc and libgcc_s come with distroless `cc`, libz is copied in by the
/// Dockerfile. A new one (say libssl, from a Cargo feature) fails here
/// until the Dockerfile provides it.
#[test]
fn the_runtime_image_has_every_library_the_binary_links() {
    let Ok(out) = Command::new("ldd").arg(gateway_bin()).output() else {
        eprintln!("ldd is not installed: not checked");
        return;
    };
    assert!(out.status.success(), "ldd failed");
    let provided = [
        "linux-vdso.so",
        "ld-linux",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ];
    let dockerfile = read("deploy/Dockerfile");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let lib = lib.rsplit('/').next().unwrap();
        if lib.is_empty() || provided.iter().any(|p| lib.starts_with(p)) {
            continue;
        }
        assert!(
            dockerfile.contains(lib),
            "the binary needs {lib}, which the runtime image neither has nor gets copied in"
        );
    }
}

// ---- the image's command line, run here -------------------------------------

/// A directory laid out like the image: the volume's stand-in, the image's
/// environment pointed at it, and the image's ports on free ones.
struct ImageLike {
    root: tempfile::TempDir,
    state: PathBuf,
    env: Vec<(String, String)>,
    image: Image,
    public: u16,
    admin: u16,
    child: Option<Child>,
    /// Held for the database's lifetime, on PostgreSQL.
    _db: Option<TestDatabase>,
}

fn free_port() -> u16 {
    ionflux_tests::free_loopback_addr().port()
}

impl ImageLike {
    async fn new() -> Self {
        let image = image();
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join(image.volume.trim_start_matches('/'));
        std::fs::create_dir_all(&state).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let (public, admin) = (free_port(), free_port());
        let volume = state.display().to_string();
        let mut env: Vec<(String, String)> = image
            .env
            .iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "IONFLUX_LISTEN" => with_port(v, public),
                    "IONFLUX_ADMIN_LISTEN" => with_port(v, admin),
                    _ => v.replace(&image.volume, &volume),
                };
                (k.clone(), v)
            })
            .collect();
        // On PostgreSQL, as in deploy/docker-compose.yml: only the database
        // moves; key and cache stay in the volume.
        let db = if on_postgres() {
            let db = fresh_database().await;
            env.push(("IONFLUX_DATABASE_URL".into(), db.url.clone()));
            Some(db)
        } else {
            None
        };
        Self {
            root,
            state,
            env,
            image,
            public,
            admin,
            child: None,
            _db: db,
        }
    }

    /// `argv` as the image would run it: its binary is the debug build, the
    /// environment is the image's alone, the working directory its WORKDIR.
    fn command(&self, argv: &[String]) -> Command {
        assert_eq!(argv[0], self.image.entrypoint[0]);
        let mut cmd = Command::new(gateway_bin());
        cmd.args(&argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(
                self.root
                    .path()
                    .join(self.image.workdir.trim_start_matches('/')),
            );
        cmd
    }

    fn healthy(&self) -> bool {
        self.command(&self.image.healthcheck)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running the health check")
            .success()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("gateway.log")).unwrap_or_default()
    }

    /// Starts ENTRYPOINT + CMD and waits for the health check to pass.
    fn start(&mut self) {
        let log = std::fs::File::create(self.root.path().join("gateway.log")).unwrap();
        let child = self
            .command(&self.image.entrypoint)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the gateway");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.healthy() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the gateway exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "never healthy:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, as `docker stop` sends; answers the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("started");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("no exit within {PATIENCE:?} of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    async fn scrape(&self) -> String {
        let resp = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .expect("the admin listener answers");
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// `connections add`, run as `docker exec` would: the same binary and
    /// environment.
    fn connect(&self, shop: &str) -> Conn {
        use std::io::Write;
        let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let argv: Vec<String> = [
            self.image.entrypoint[0].as_str(),
            "connections",
            "add",
            "--shop",
            shop,
            "--workspace",
            &uuid::Uuid::new_v4().to_string(),
            "--brand",
            &uuid::Uuid::new_v4().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut child = self
            .command(&argv)
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
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "connections add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("connections add prints JSON");
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {v}"))
                .to_string()
        };
        Conn {
            created: Created {
                connection_id: field("connection_id"),
                secure_path_identifier: field("secure_path_identifier"),
                webhook_path: field("webhook_path"),
                provider: field("provider"),
                account: field("account"),
                workspace_id: field("workspace_id"),
                brand_id: field("brand_id"),
                created: true,
            },
            secret,
        }
    }

    async fn send(&self, hook: &Hook<'_>) -> u16 {
        let client = reqwest::Client::new();
        let mut req = client.post(self.url(&hook.path)).body(hook.body.clone());
        for (k, v) in &hook.headers {
            req = req.header(*k, v);
        }
        req.send()
            .await
            .expect("the public listener answers")
            .status()
            .as_u16()
    }
}

impl Drop for ImageLike {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `0.0.0.0:8080` → `0.0.0.0:PORT`: the image's host, a free port.
fn with_port(addr: &str, port: u16) -> String {
    let mut addr: SocketAddr = addr.parse().unwrap();
    addr.set_port(port);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_command_line_serves_keeps_state_in_the_volume_and_passes_its_healthcheck() {
    let mut gw = ImageLike::new().await;
    assert!(!gw.healthy(), "the health check passes with no gateway");
    gw.start();

    // Both listeners answer beyond loopback's name (bound to 0.0.0.0).
    let health = reqwest::get(gw.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(gw.scrape().await.contains("ionflux_build_info{"));

    // The state is where the image's environment says: the volume.
    let key = PathBuf::from(
        gw.env
            .iter()
            .find(|(k, _)| k == "IONFLUX_MASTER_KEY_FILE")
            .map(|(_, v)| v.clone())
            .unwrap(),
    );
    assert!(key.starts_with(&gw.state), "{}", key.display());
    let conn = gw.connect("deploy-shop.myshopify.com");
    assert!(key.exists(), "the master key is made in the volume");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private: {mode:o}");
    }
    if !on_postgres() {
        assert!(gw.state.join("ionflux.db").exists());
    }
    // Nothing was written outside the volume (the log is the test's own).
    let outside: Vec<_> = std::fs::read_dir(gw.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "var" && n != "gateway.log")
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the volume: {outside:?}"
    );

    let status = gw
        .send(&Hook::shopify(&conn, "orders/create", "2024-01", ORDER))
        .await;
    assert_eq!(status, 200, "{}", gw.log());

    // docker stop: SIGTERM, a clean exit, and the health check fails after.
    let exit = gw.stop();
    assert!(exit.success(), "{exit}:\n{}", gw.log());
    assert!(!gw.healthy());
}

// ---- the metrics the dashboard and the alerts use ------------------------------

/// Metric names in PromQL of the dashboard and the alert rules.
fn metrics_used() -> BTreeSet<String> {
    let mut used = identifiers(
        &read("deploy/grafana/ionflux-gateway.json"),
        &["ionflux_", "process_"],
    );
    used.extend(identifiers(
        &read("deploy/prometheus/alerts.yml"),
        &["ionflux_", "process_"],
    ));
    used
}

/// Sample names of the exposition text (`name{labels} value`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let used = metrics_used();
    // A sanity check of the scan: both files name metrics of every kind.
    for name in [
        "ionflux_webhook_ack_seconds_bucket",
        "ionflux_inbox_oldest_pending_age_seconds",
        "ionflux_token_refreshes_total",
        "ionflux_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(name), "{name} not found in {used:?}");
    }

    let mut gw = ImageLike::new().await;
    gw.start();
    let conn = gw.connect("metrics-deploy.myshopify.com");
    let good = Hook::shopify(&conn, "orders/create", "2024-01", ORDER);
    let forged = Hook::shopify(&conn, "orders/create", "2024-01", ORDER)
        .set_header("x-shopify-hmac-sha256", "bm90IHRoZSBzaWduYXR1cmU=");
    // Genuine, but no event can be made of it: a dead letter.
    let unusable = Hook::shopify(&conn, "orders/create", "2024-01", b"not json");
    for (hook, want) in [(&good, 200), (&good, 200), (&forged, 401), (&unusable, 200)] {
        assert_eq!(gw.send(hook).await, want, "{}", gw.log());
    }

    // Publishing, dead-lettering and the backlog sampler (every 5 s) happen
    // after the answers: wait for them.
    let deadline = Instant::now() + PATIENCE;
    let (text, missing) = loop {
        let text = gw.scrape().await;
        let names = exported(&text);
        let missing: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break (text, missing.into_iter().cloned().collect::<Vec<_>>());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts use metrics the gateway does not export: {missing:?}\n{text}"
    );

    // The build is named.
    let build = text
        .lines()
        .find(|l| l.starts_with("ionflux_build_info{"))
        .unwrap();
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.ends_with(" 1"),
        "{build}"
    );
    assert!(gw.stop().success());
}

// ---- the Grafana dashboard ---------------------------------------------------

/// Every query object in the dashboard (panel targets and query variables).
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => queries(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_is_importable_with_any_prometheus_data_source() {
    let dash: Value = serde_json::from_str(&read("deploy/grafana/ionflux-gateway.json"))
        .expect("the dashboard is JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    // No fixed data source: a variable of type datasource the panels use.
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds["query"], "prometheus");
    let reference = format!("${{{}}}", ds["name"].as_str().unwrap());
    assert!(
        dash.get("__inputs").is_none(),
        "no import-time inputs: the variable picks the data source"
    );

    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_i64().expect("a panel id")),
            "duplicate id: {title}"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][k].is_i64(), "{title}: gridPos.{k}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], reference.as_str(), "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], reference.as_str(), "{title}");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
            assert!(t["refId"].is_string(), "{title}");
        }
    }
    for var in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(var["datasource"]["uid"], reference.as_str());
    }

    // The panels the operators of this kind of service look for.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Acknowledgement latency",
        "Oldest pending webhook",
        "Transform duration p99 by transform",
        "Dead letters by reason",
        "Publish latency",
        "Records published and retries",
        "Token refreshes by outcome",
        "HTTP connections closed by the server",
        "Build",
    ] {
        assert!(titles.contains(&want), "no panel {want:?}: {titles:?}");
    }

    // Every query parses as PromQL, Grafana's variables filled in.
    let mut exprs = Vec::new();
    queries(&dash, &mut exprs);
    let Some(promtool) = promtool() else {
        eprintln!("promtool is not installed (deploy/check.sh fetches it): PromQL not parsed");
        return;
    };
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    // JSON is YAML.
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a dashboard query is not PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// promtool on PATH, or where deploy/check.sh unpacks it.
fn promtool() -> Option<PathBuf> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool".into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    let bin = cache.join("ionflux/prometheus-deb/usr/bin/promtool");
    bin.exists().then_some(bin)
}

// ---- compose ---------------------------------------------------------------------

#[test]
fn compose_wires_the_gateway_to_postgres_and_the_broker() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = &compose["services"];
    let gateway = &services["gateway"];
    let image = image();

    // Built from this repository with this Dockerfile.
    let context = repo()
        .join("deploy")
        .join(string(&gateway["build"]["context"]));
    assert!(
        context
            .join(string(&gateway["build"]["dockerfile"]))
            .ends_with("deploy/Dockerfile")
    );
    assert!(
        context.join("Cargo.lock").exists(),
        "the context is the repository root"
    );

    let env = gateway["environment"]
        .as_hash()
        .expect("gateway environment");
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (string(k), string(v))).collect();
    assert_documented("compose", env.keys().cloned());

    // PostgreSQL: the URL's host, user, password and database are the
    // postgres service's.
    let url = &env["IONFLUX_DATABASE_URL"];
    let pg = &services["postgres"];
    let pg_env = |k: &str| string(&pg["environment"][k]);
    let expected = format!(
        "postgres://{}:{}@postgres:5432/{}",
        pg_env("POSTGRES_USER"),
        pg_env("POSTGRES_PASSWORD"),
        pg_env("POSTGRES_DB")
    );
    assert_eq!(url, &expected);

    // The broker: what the gateway dials is what Redpanda advertises.
    let brokers = &env["IONFLUX_KAFKA_BROKERS"];
    let command: Vec<String> = services["redpanda"]["command"]
        .as_vec()
        .expect("redpanda command")
        .iter()
        .map(string)
        .collect();
    let advertised = command
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-kafka-addr="))
        .expect("an advertised address");
    let advertised = advertised.rsplit("://").next().unwrap();
    assert_eq!(brokers, advertised);

    // Started once both are healthy.
    for dep in ["postgres", "redpanda"] {
        assert_eq!(
            string(&gateway["depends_on"][dep]["condition"]),
            "service_healthy"
        );
        assert!(
            !services[dep]["healthcheck"]["test"].is_badvalue(),
            "{dep} health check"
        );
    }

    // Only the public listener is published; the admin one is not.
    let admin_port = image
        .env("IONFLUX_ADMIN_LISTEN")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let public_port = image
        .env("IONFLUX_LISTEN")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let ports: Vec<String> = gateway["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(string)
        .collect();
    assert_eq!(ports, [format!("{public_port}:{public_port}")]);
    for (name, service) in services.as_hash().unwrap() {
        for p in service["ports"].as_vec().into_iter().flatten() {
            let p = string(p);
            assert!(
                !p.ends_with(&format!(":{admin_port}")) || string(name) != "gateway",
                "the admin listener is published: {p}"
            );
            // Anything else published is on the host's loopback.
            if string(name) != "gateway" {
                assert!(
                    p.starts_with("127.0.0.1:"),
                    "{} publishes {p}",
                    string(name)
                );
            }
        }
    }

    // The state volume is mounted where the image keeps state.
    let volumes: Vec<String> = gateway["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .map(string)
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.split(':').nth(1) == Some(image.volume.as_str())),
        "{volumes:?}"
    );

    // Prometheus scrapes the admin listener as the job the alerts expect,
    // and every file mounted from deploy/ exists.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let job = &prom["scrape_configs"][0];
    assert_eq!(string(&job["job_name"]), "ionflux-gateway");
    assert!(read("deploy/prometheus/alerts.yml").contains(r#"job="ionflux-gateway""#));
    assert_eq!(
        string(&job["static_configs"][0]["targets"][0]),
        format!("gateway:{admin_port}")
    );
    for name in ["prometheus", "grafana"] {
        for v in services[name]["volumes"].as_vec().unwrap() {
            let source = string(v);
            let source = source.split(':').next().unwrap();
            let path = repo().join("deploy").join(source);
            assert!(path.exists(), "{name} mounts {source}, which is missing");
        }
    }
}

// ---- systemd -------------------------------------------------------------------------

/// `[Section]` → key → values (a key may repeat).
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        sections
            .entry(current.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    sections
}

#[test]
fn the_systemd_unit_is_hardened_and_keeps_state_in_its_state_directory() {
    let text = read("deploy/ionflux-gateway.service");
    let unit = unit_file(&text);
    let service = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("[Service] has no {k}"));
        v.last().unwrap()
    };

    assert_eq!(one("ExecStart"), "/usr/local/bin/ionflux-gateway serve");
    assert!(one("DynamicUser") == "yes" || service.contains_key("User"));
    assert_eq!(one("StateDirectory"), "ionflux");
    let state = "/var/lib/ionflux";
    assert_eq!(one("WorkingDirectory"), state);
    // The same layout as the image.
    let env: BTreeMap<&str, &str> = service["Environment"]
        .iter()
        .map(|e| e.split_once('=').unwrap())
        .collect();
    assert_documented("the unit", env.keys().map(|k| k.to_string()));
    let image = image();
    for var in [
        "IONFLUX_DATABASE_URL",
        "IONFLUX_MASTER_KEY_FILE",
        "IONFLUX_CACHE_DIR",
    ] {
        assert_eq!(env[var], image.env(var), "{var}: unit and image differ");
    }
    assert!(
        one("EnvironmentFile")
            .trim_start_matches('-')
            .starts_with(&format!("/etc/{}/", one("ConfigurationDirectory")))
    );
    // Room for http.max_connections (10,000 by default).
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() > 10_000);

    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    assert!(service["SystemCallFilter"].contains(&"@system-service".to_string()));
    // wasmtime maps the code it compiles executable: W^X would break every
    // transform.
    assert!(
        !service.contains_key("MemoryDenyWriteExecute"),
        "MemoryDenyWriteExecute breaks wasmtime's JIT"
    );
    assert!(
        !service.contains_key("ProcSubset"),
        "ProcSubset=pid hides /proc/stat from the process metrics"
    );
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // The env file example names only settings the gateway reads.
    let example = read("deploy/ionflux-gateway.env.example");
    assert_documented("the env file example", ionflux_vars(&example));

    // systemd's own verdict, where systemd is installed: no unknown key, no
    // bad value. The unit names the installed binary; point it at this one.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ionflux-gateway.service");
    let bin = gateway_bin().display().to_string();
    std::fs::write(&copy, text.replace("/usr/local/bin/ionflux-gateway", &bin)).unwrap();
    match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
    {
        Err(_) => eprintln!("systemd-analyze is not installed: the unit was linted only"),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Warnings about this unit come with its path; other units of
            // the machine are not our business.
            let ours: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("ionflux-gateway.service"))
                .collect();
            assert!(
                out.status.success() && ours.is_empty(),
                "systemd-analyze verify:\n{stderr}"
            );
        }
    }
}
