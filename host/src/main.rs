//! `ionflux-gateway`: the binary's edge. Parses the command line, sets up
//! logging, and hands over to the library; errors become `anyhow` only here.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ionflux_gateway::admin::{self, TokenKind};
use ionflux_gateway::dispatch;
use ionflux_gateway::dispatch::DispatchConfig;
use ionflux_gateway::event::{self, TransformId};
use ionflux_gateway::event::{DEFAULT_DLQ_TEMPLATE, DEFAULT_TOPIC_TEMPLATE, Topics};
use ionflux_gateway::http::DEFAULT_MAX_BODY_BYTES;
use ionflux_gateway::oauth::{self, ShopifyConfig};
use ionflux_gateway::publish::kafka::KafkaConfig;
use ionflux_gateway::registry::{self, RouteSpec};
use ionflux_gateway::server::{self, Config};
use ionflux_gateway::store::InboxRow;
use ionflux_gateway::store::{LoggedEvent, Store};
use ionflux_gateway::transform::{Limits, Runtime, RuntimeConfig, Transform};
use ionflux_gateway::vault::{Secret, Vault};
use ionflux_gateway::{connection, webhook};

#[derive(Parser)]
#[command(
    name = "ionflux-gateway",
    version,
    about = "Shopify webhooks in, sandboxed WebAssembly transforms, Kafka out."
)]
struct Cli {
    /// Where state lives. SQLite is the embedded default.
    #[arg(
        long,
        global = true,
        env = "IONFLUX_DATABASE_URL",
        default_value = "sqlite://ionflux.db"
    )]
    database_url: String,

    /// Master keys as `id:base64key` entries (comma separated); the last one
    /// encrypts new secrets. Overrides --master-key-file.
    #[arg(
        long,
        global = true,
        env = "IONFLUX_MASTER_KEYS",
        hide_env_values = true
    )]
    master_keys: Option<String>,

    /// File of `id:base64key` lines. Default: `ionflux.key` beside the
    /// SQLite database, created with a fresh key on first use.
    #[arg(long, global = true, env = "IONFLUX_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and publish events.
    Serve(Box<ServeArgs>),
    /// Manage shop connections.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Read the embedded event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Inspect webhooks that could not become events.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Send test webhooks, signed as Shopify signs them.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Upload, inspect and try transform components.
    #[command(subcommand)]
    Transforms(TransformsCommand),
    /// Route topics of a workspace or brand to transforms.
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Admin API tokens (stored hashed; shown once).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Master keys (never shown): list ids, rotate.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Stored secrets: move them to the active master key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Append a fresh key to the key file and make it the active one for new
    /// writes; old keys stay, so old rows still decrypt. Prints the new key
    /// id (never the key). Gateways reading the same file take it up on
    /// their own; then run `secrets reencrypt`.
    Rotate,
    /// The configured key ids, oldest first; the last one is active.
    List,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every stored secret that is not under the active key,
    /// while gateways keep serving (a concurrent write always wins). Prints
    /// counts as JSON; idempotent.
    Reencrypt {
        /// Write nothing; exit non-zero unless every stored secret is under
        /// the active key and decrypts (then older keys may be removed).
        #[arg(long)]
        check: bool,
        /// Rows per batch (one short write transaction each).
        #[arg(long, default_value_t = ionflux_gateway::secrets::DEFAULT_BATCH)]
        batch: i64,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token and print it once. An operator token may do
    /// everything; a workspace token only touches its own workspace.
    Create {
        #[arg(long)]
        name: String,
        /// Make an operator token.
        #[arg(
            long,
            conflicts_with = "workspace",
            required_unless_present = "workspace"
        )]
        operator: bool,
        /// Make a token for this workspace.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Tokens (never their values), one JSON object per line.
    List,
    /// Revoke a token at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum TransformsCommand {
    /// Create a transform crate from the guest SDK's template; it builds to
    /// a component with `cargo build --release --target wasm32-wasip2`.
    New {
        /// Crate name, e.g. `vip-orders`.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The guest SDK to depend on (default: this checkout's guest-sdk).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Validate a component (compiles, implements the world, survives a
    /// smoke call) and store it as an immutable version named by its digest.
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Stored versions, newest first, one JSON object per line.
    List,
    /// One stored version.
    Show { digest: String },
    /// Run a component locally on a payload and print the events it would
    /// produce. Needs no server and no database.
    Test {
        file: PathBuf,
        #[arg(long)]
        fixture: PathBuf,
        #[arg(long)]
        topic: String,
        /// The route config the transform sees.
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, default_value = "2026-04")]
        api_version: String,
        #[arg(long, default_value = "dry-run.myshopify.com")]
        shop: String,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Create or replace the route for a scope and topic pattern. Running
    /// gateways pick it up within a second; rollback is another `set`.
    Set {
        /// Topic or glob, e.g. `orders/create`, `orders/*`, `*`.
        #[arg(long)]
        topic: String,
        /// A digest from `transforms push` (or a unique prefix of 12+ hex
        /// digits), or `builtin:shopify-default`, `builtin:redact-pii`.
        #[arg(long)]
        transform: String,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        brand: Option<String>,
        /// JSON object handed to the transform.
        #[arg(long)]
        config: Option<String>,
        /// JSON, e.g. `{"cpu_ms": 100, "memory_bytes": 67108864}`.
        #[arg(long)]
        limits: Option<String>,
        /// A candidate that runs beside the transform on the same webhooks
        /// without publishing; see `routes shadow`, then `routes promote`.
        #[arg(long)]
        shadow: Option<String>,
        /// Who made the change, for the history.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Make a route's shadow its transform.
    Promote {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        brand: Option<String>,
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Shadow run counters (and, with --samples, differing outputs).
    Shadow {
        #[arg(long)]
        samples: bool,
    },
    /// Every route, one JSON object per line.
    List,
    /// Route changes, newest first.
    History {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Sign a payload with a connection's stored secret and POST it to a
    /// running gateway, with the headers Shopify sends (a local stand-in
    /// for `shopify app webhook trigger`).
    Send {
        /// The connected shop (NAME.myshopify.com).
        #[arg(long)]
        shop: String,
        /// When the shop is connected to several brands.
        #[arg(long)]
        brand: Option<String>,
        #[arg(long)]
        topic: String,
        /// The body; `-` reads stdin.
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value = "2026-04")]
        api_version: String,
        /// Default: a fresh UUID. Reuse one to see deduplication.
        #[arg(long)]
        webhook_id: Option<String>,
        #[arg(
            long,
            env = "IONFLUX_GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway_url: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "IONFLUX_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Kafka bootstrap servers. Without it, events go to the embedded event
    /// log (`events tail`, `GET /admin/v1/events`).
    #[arg(long, env = "IONFLUX_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Extra librdkafka properties, `key=value`, repeatable.
    #[arg(
        long = "kafka-property",
        env = "IONFLUX_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    kafka_properties: Vec<String>,
    #[arg(long, env = "IONFLUX_TOPIC_TEMPLATE", default_value = DEFAULT_TOPIC_TEMPLATE)]
    topic_template: String,
    #[arg(long, env = "IONFLUX_DLQ_TOPIC_TEMPLATE", default_value = DEFAULT_DLQ_TEMPLATE)]
    dlq_topic_template: String,
    /// Largest webhook body accepted; larger ones get 413.
    #[arg(long, env = "IONFLUX_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Bearer token for the admin API; without it only loopback may use it.
    #[arg(long, env = "IONFLUX_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Bearer token other services present to
    /// `GET /integrations/shopify/brands/{brand_id}/shop-details`; without
    /// it that endpoint refuses everyone.
    #[arg(long, env = "IONFLUX_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<String>,
    /// Where compiled transforms are cached, by digest.
    #[arg(long, env = "IONFLUX_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "IONFLUX_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    shopify: ShopifyArgs,
}

/// The Shopify app, for the OAuth install flow. Without a client id the
/// OAuth routes answer 404 and connections are made by hand.
#[derive(Args)]
struct ShopifyArgs {
    #[arg(long, env = "IONFLUX_SHOPIFY_CLIENT_ID")]
    shopify_client_id: Option<String>,
    /// The app's client secret; Shopify also signs webhooks with it.
    #[arg(long, env = "IONFLUX_SHOPIFY_CLIENT_SECRET", hide_env_values = true)]
    shopify_client_secret: Option<String>,
    #[arg(long, env = "IONFLUX_SHOPIFY_SCOPES")]
    shopify_scopes: Option<String>,
    /// Where Shopify sends the merchant back: this gateway's
    /// /integrations/shopify/auth/callback, as the public sees it.
    #[arg(long, env = "IONFLUX_SHOPIFY_REDIRECT_URI")]
    shopify_redirect_uri: Option<String>,
    /// This gateway's public base URL; webhook addresses are built on it.
    #[arg(long, env = "IONFLUX_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Admin API base, `{shop}` filled in (a local stand-in for tests).
    #[arg(long, env = "IONFLUX_SHOPIFY_ADMIN_BASE_URL")]
    shopify_admin_base_url: Option<String>,
    /// Where merchants are sent to authorize, `{shop}` filled in.
    #[arg(long, env = "IONFLUX_SHOPIFY_AUTHORIZE_BASE_URL")]
    shopify_authorize_base_url: Option<String>,
    #[arg(long, env = "IONFLUX_SHOPIFY_API_VERSION")]
    shopify_api_version: Option<String>,
    /// Ask for expiring offline tokens with refresh tokens (Shopify's 2026
    /// default for new public apps).
    #[arg(long, env = "IONFLUX_SHOPIFY_EXPIRING_TOKENS")]
    shopify_expiring_tokens: Option<bool>,
    /// After a successful install, redirect here instead of answering JSON.
    #[arg(long, env = "IONFLUX_OAUTH_FRONTEND_REDIRECT")]
    oauth_frontend_redirect: Option<String>,
    #[arg(long, env = "IONFLUX_OAUTH_TIMESTAMP_WINDOW_SECS")]
    oauth_timestamp_window_secs: Option<u64>,
    /// Topics registered after an install, comma separated.
    #[arg(long, env = "IONFLUX_SHOPIFY_WEBHOOK_TOPICS", value_delimiter = ',')]
    shopify_webhook_topics: Vec<String>,
    /// Shared secret of the user service's HS256 JWTs.
    #[arg(long, env = "IONFLUX_JWT_HS256_SECRET", hide_env_values = true)]
    jwt_hs256_secret: Option<String>,
    /// PEM public key of the user service's RS256 JWTs.
    #[arg(long, env = "IONFLUX_JWT_RS256_PUBLIC_KEY_FILE")]
    jwt_rs256_public_key_file: Option<PathBuf>,
    #[arg(long, env = "IONFLUX_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    #[arg(long, env = "IONFLUX_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Refresh an expiring access token when it has less than this left.
    #[arg(long, env = "IONFLUX_SHOPIFY_REFRESH_LEAD_SECS")]
    shopify_refresh_lead_secs: Option<u64>,
    /// How often the refresh job looks for tokens due.
    #[arg(long, env = "IONFLUX_SHOPIFY_REFRESH_POLL_SECS")]
    shopify_refresh_poll_secs: Option<u64>,
    /// Failed refreshes in a row before a connection is `refresh_failed`
    /// and an `integration.error` event is published.
    #[arg(long, env = "IONFLUX_SHOPIFY_REFRESH_MAX_FAILURES")]
    shopify_refresh_max_failures: Option<u32>,
}

impl ShopifyArgs {
    fn config(&self) -> Result<Option<ShopifyConfig>> {
        let Some(client_id) = &self.shopify_client_id else {
            return Ok(None);
        };
        let need = |v: &Option<String>, flag: &str| {
            v.clone()
                .with_context(|| format!("--{flag} is required with --shopify-client-id"))
        };
        let mut cfg = ShopifyConfig::new(
            client_id.clone(),
            Secret::from(need(&self.shopify_client_secret, "shopify-client-secret")?),
            need(&self.shopify_redirect_uri, "shopify-redirect-uri")?,
            need(&self.public_base_url, "public-base-url")?,
        );
        if let Some(v) = &self.shopify_scopes {
            cfg.scopes = v.clone();
        }
        if let Some(v) = &self.shopify_admin_base_url {
            cfg.admin_base_url = v.clone();
        }
        if let Some(v) = &self.shopify_authorize_base_url {
            cfg.authorize_base_url = v.clone();
        }
        if let Some(v) = &self.shopify_api_version {
            cfg.api_version = v.clone();
        }
        if let Some(v) = self.shopify_expiring_tokens {
            cfg.expiring_tokens = v;
        }
        if let Some(v) = self.oauth_timestamp_window_secs {
            cfg.timestamp_window = Duration::from_secs(v);
        }
        if !self.shopify_webhook_topics.is_empty() {
            cfg.webhook_topics = self.shopify_webhook_topics.clone();
        }
        cfg.frontend_redirect = self.oauth_frontend_redirect.clone();
        cfg.jwt.hs256_secret = self.jwt_hs256_secret.clone().map(Secret::from);
        cfg.jwt.rs256_public_key_pem = match &self.jwt_rs256_public_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        };
        if let Some(v) = self.shopify_refresh_lead_secs {
            cfg.refresh.lead_time = Duration::from_secs(v);
        }
        if let Some(v) = self.shopify_refresh_poll_secs {
            cfg.refresh.poll_interval = Duration::from_secs(v);
        }
        if let Some(v) = self.shopify_refresh_max_failures {
            cfg.refresh.max_failures = v;
        }
        cfg.jwt.issuer = self.jwt_issuer.clone();
        cfg.jwt.audience = self.jwt_audience.clone();
        Ok(Some(cfg))
    }
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Connect a shop by hand; reads the app's webhook secret from stdin.
    Add {
        #[arg(long)]
        shop: String,
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        brand: String,
    },
    /// One JSON object per connection: status, `auth_method` (`manual` or
    /// `oauth`) and `has_tokens`; secrets are never shown.
    List,
    /// The webhook registrations of a connection made by OAuth, one JSON
    /// object per topic with its status.
    Webhooks { connection_id: String },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print the newest events, oldest first.
    Tail {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// One PlatformEvent JSON per line.
        #[arg(long)]
        json: bool,
        /// Keep printing new events as they arrive.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// Unresolved dead letters, oldest first.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Run dead letters again through today's routes (e.g. after fixing a
    /// transform); what now succeeds is published with its original event id.
    Replay {
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_default_sigpipe();
    }
    let json_logs = matches!(&cli.command, Command::Serve(a) if a.log_json);
    init_tracing(json_logs);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(cli))
}

/// Rust ignores SIGPIPE, so `ionflux-gateway events tail | head` would end in
/// a "broken pipe" panic. The one-shot commands take the default (exit
/// quietly when the reader goes away); `serve` keeps ignoring it, as a
/// server must not die because a client hung up.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IONFLUX_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn"));
    // Logs go to stderr so that `--json` output on stdout stays parseable.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(ref args) => serve(&cli, args).await,
        Command::Connections(ConnectionsCommand::Add {
            ref shop,
            ref workspace,
            ref brand,
        }) => {
            let store = open_store(&cli).await?;
            let vault = load_vault(&cli)?;
            let mut secret = String::new();
            std::io::stdin()
                .read_to_string(&mut secret)
                .context("reading the webhook secret from stdin")?;
            let secret = Secret::from(secret.trim().to_string());
            let created = connection::add(&store, &vault, shop, workspace, brand, &secret).await?;
            println!("{}", serde_json::to_string(&created)?);
            Ok(())
        }
        Command::Connections(ConnectionsCommand::Webhooks { ref connection_id }) => {
            let store = open_store(&cli).await?;
            for r in oauth::webhook_registrations(&store, connection_id).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Command::Connections(ConnectionsCommand::List) => {
            let store = open_store(&cli).await?;
            for c in store.list_connections().await? {
                // How it was made and whether it holds tokens, never the
                // tokens themselves.
                let tokens = store.connection_tokens(&c.id).await?;
                let auth_method = tokens.as_ref().map(|t| t.auth_method.clone());
                let has_tokens = tokens
                    .as_ref()
                    .is_some_and(|t| t.access_token.is_some() || t.refresh_token.is_some());
                println!(
                    "{}",
                    serde_json::json!({
                        "connection_id": c.id,
                        "shop_domain": c.shop_domain,
                        "workspace_id": c.workspace_id,
                        "brand_id": c.brand_id,
                        "secure_path_identifier": c.secure_path_identifier,
                        "webhook_path": connection::webhook_path(&c.secure_path_identifier),
                        "status": c.status,
                        "auth_method": auth_method,
                        "has_tokens": has_tokens,
                    })
                );
            }
            Ok(())
        }
        Command::Events(EventsCommand::Tail {
            limit,
            json,
            follow,
        }) => {
            let store = open_store(&cli).await?;
            tail_events(&store, limit, json, follow).await
        }
        Command::Webhooks(ref cmd) => send_webhook(&cli, cmd).await,
        Command::Transforms(ref cmd) => transforms(&cli, cmd).await,
        Command::Routes(ref cmd) => routes(&cli, cmd).await,
        Command::Tokens(ref cmd) => tokens(&cli, cmd).await,
        Command::Keys(ref cmd) => keys(&cli, cmd),
        Command::Secrets(ref cmd) => secrets(&cli, cmd).await,
        Command::DeadLetters(DeadLettersCommand::Replay { ref id, all }) => {
            let store = open_store(&cli).await?;
            let ids = (!all).then_some(id.as_slice());
            let replayed = store.replay_dead_letters(ids).await?;
            println!("{}", serde_json::json!({ "replayed": replayed }));
            Ok(())
        }
        Command::DeadLetters(DeadLettersCommand::List { limit, json }) => {
            let store = open_store(&cli).await?;
            let mut out = std::io::stdout().lock();
            for d in store.dead_letters(limit).await? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&d)?)?;
                } else {
                    writeln!(
                        out,
                        "#{} inbox={} topic={} webhook={} {}: {}",
                        d.id, d.inbox_id, d.topic, d.webhook_id, d.reason_code, d.reason
                    )?;
                }
            }
            Ok(())
        }
    }
}

fn runtime_for(cli: &Cli) -> Result<Runtime> {
    Ok(Runtime::new(RuntimeConfig {
        pool_instances: 4,
        cache_dir: sqlite_dir(&cli.database_url).map(|d| d.join("ionflux-cache")),
        ..RuntimeConfig::default()
    })?)
}

/// The template's files, embedded so that the binary alone can scaffold.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../guest-sdk/template/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../guest-sdk/template/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../guest-sdk/template/.gitignore"),
    ),
    (
        "src/lib.rs",
        include_str!("../../guest-sdk/template/src/lib.rs"),
    ),
];

fn new_transform(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("{name:?} is not a good crate name: use lower-case letters, digits, - and _");
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the guest SDK is not at {}; pass --sdk PATH to your checkout's guest-sdk",
            sdk.display()
        )
    })?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    for (file, text) in TEMPLATE {
        let text = text
            .replace("\"my-transform\"", &format!("{name:?}"))
            .replace("# my-transform", &format!("# {name}"))
            .replace("my_transform", &name.replace('-', "_"))
            .replace(
                "ionflux-guest = { path = \"../guest-sdk\" }",
                &format!("ionflux-guest = {{ path = {sdk_path:?} }}"),
            );
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("template files are in a folder"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

async fn transforms(cli: &Cli, cmd: &TransformsCommand) -> Result<()> {
    match cmd {
        TransformsCommand::New { name, dir, sdk } => {
            let dir = new_transform(name, dir.as_deref(), sdk.as_deref())?;
            let wasm = format!(
                "{}/target/wasm32-wasip2/release/{}.wasm",
                dir.display(),
                name.replace('-', "_")
            );
            println!(
                "{}",
                serde_json::json!({
                    "dir": dir,
                    "test": format!("cd {} && cargo test", dir.display()),
                    "build": format!(
                        "cd {} && cargo build --release --target wasm32-wasip2",
                        dir.display()
                    ),
                    "component": wasm,
                })
            );
        }
        TransformsCommand::Push { file, name } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let store = open_store(cli).await?;
            let pushed = registry::push(&store, &runtime_for(cli)?, name, bytes).await?;
            println!("{}", serde_json::to_string(&pushed)?);
        }
        TransformsCommand::List => {
            for t in open_store(cli).await?.transforms().await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TransformsCommand::Show { digest } => {
            let store = open_store(cli).await?;
            let Some(t) = store
                .transforms()
                .await?
                .into_iter()
                .find(|t| t.digest.starts_with(&digest.to_ascii_lowercase()))
            else {
                bail!("no stored transform {digest}");
            };
            let routes: Vec<_> = store
                .routes()
                .await?
                .into_iter()
                .filter(|r| r.transform == t.digest)
                .collect();
            println!(
                "{}",
                serde_json::json!({ "transform": t, "routes": routes })
            );
        }
        TransformsCommand::Test {
            file,
            fixture,
            topic,
            config,
            api_version,
            shop,
        } => {
            let component =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let body =
                std::fs::read(fixture).with_context(|| format!("reading {}", fixture.display()))?;
            let runtime = Runtime::new(RuntimeConfig {
                pool_instances: 1,
                ..RuntimeConfig::default()
            })?;
            let name = file
                .file_stem()
                .map_or("transform".into(), |s| s.to_string_lossy().into_owned());
            let t = runtime.load(&name, &component)?;
            for line in dry_run(&t, topic, api_version, shop, config, body)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// Runs one webhook through a transform as the dispatcher would, returning
/// the PlatformEvents (JSON) it would publish. Ids are placeholders.
fn dry_run(
    t: &Transform,
    topic: &str,
    api_version: &str,
    shop: &str,
    config: &str,
    body: Vec<u8>,
) -> Result<Vec<String>> {
    let nil = uuid::Uuid::nil().to_string();
    let row = InboxRow {
        id: 0,
        connection_id: nil.clone(),
        provider: connection::SHOPIFY.into(),
        workspace_id: nil.clone(),
        brand_id: nil,
        webhook_id: "dry-run".into(),
        topic: topic.into(),
        shop_domain: shop.into(),
        api_version: Some(api_version.into()),
        triggered_at: None,
        shopify_event_id: None,
        trace_id: "dry-run".into(),
        headers: vec![
            ("x-shopify-topic".into(), topic.into()),
            ("x-shopify-api-version".into(), api_version.into()),
        ],
        body,
        received_at: chrono::Utc::now().timestamp_millis(),
        attempts: 0,
    };
    let events = t
        .call(&dispatch::input_of(&row), config, &Limits::default())
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let id = TransformId {
        name: t.name(),
        digest: t.digest(),
    };
    event::platform_records(&row, &Topics::default(), &id, &events)
        .map_err(|(index, e)| anyhow::anyhow!("event {index}: {e}"))?
        .into_iter()
        .map(|r| Ok(String::from_utf8(r.payload)?))
        .collect()
}

async fn tokens(cli: &Cli, cmd: &TokensCommand) -> Result<()> {
    let store = open_store(cli).await?;
    match cmd {
        TokensCommand::Create {
            name,
            operator,
            workspace,
        } => {
            let kind = if *operator {
                TokenKind::Operator
            } else {
                TokenKind::Workspace
            };
            let created = admin::create_token(&store, kind, workspace.as_deref(), name).await?;
            println!(
                "{}",
                serde_json::json!({
                    "id": created.id,
                    "name": created.name,
                    "kind": kind.as_str(),
                    "workspace_id": created.workspace_id,
                    // The only time the token is shown: only its hash is kept.
                    "token": String::from_utf8_lossy(created.token.expose()),
                })
            );
        }
        TokensCommand::List => {
            for t in admin::list_tokens(&store).await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TokensCommand::Revoke { id } => {
            if !admin::revoke_token(&store, id).await? {
                bail!("no live token with id {id}");
            }
            println!("{}", serde_json::json!({ "revoked": id }));
        }
    }
    Ok(())
}

/// The key file `load_vault` reads when no `IONFLUX_MASTER_KEYS` is given.
fn master_key_file(cli: &Cli) -> Result<PathBuf> {
    match (&cli.master_key_file, sqlite_dir(&cli.database_url)) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(dir)) => Ok(dir.join("ionflux.key")),
        (None, None) => bail!("set --master-key-file for this database"),
    }
}

fn keys(cli: &Cli, cmd: &KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::List => {
            let vault = load_vault(cli)?;
            println!(
                "{}",
                serde_json::json!({
                    "keys": vault.key_ids(),
                    "active": vault.active_key_id(),
                    "key_file": vault.key_file(),
                })
            );
        }
        KeysCommand::Rotate => {
            if let Some(spec) = &cli.master_keys {
                let ids = Vault::from_spec(spec)
                    .map(|v| v.key_ids())
                    .unwrap_or_default();
                let next = (1..)
                    .map(|n| format!("k{}", ids.len() + n))
                    .find(|id| !ids.contains(id))
                    .expect("an unused id");
                bail!(
                    "the master keys come from IONFLUX_MASTER_KEYS (or --master-keys), which \
                     this command cannot change. To rotate: generate a key \
                     (`openssl rand -base64 32`), append `,{next}:<that key>` to \
                     IONFLUX_MASTER_KEYS (keep the old entries: the last one is active), \
                     restart every gateway with it, then run \
                     `ionflux-gateway secrets reencrypt` with the same IONFLUX_MASTER_KEYS."
                );
            }
            let path = master_key_file(cli)?;
            if !path.exists() {
                bail!(
                    "no master key file at {} (nothing to rotate; it is created with the \
                     first key on first use)",
                    path.display()
                );
            }
            let id = Vault::append_new_key(&path)
                .with_context(|| format!("master key file {}", path.display()))?;
            let vault = Vault::from_file(&path)?;
            println!(
                "{}",
                serde_json::json!({
                    "key_id": id,
                    "active": vault.active_key_id(),
                    "keys": vault.key_ids(),
                    "key_file": path,
                })
            );
            eprintln!(
                "new writes now use key {id}; gateways reading {} take it up within \
                 seconds. Back the file up, then run `ionflux-gateway secrets reencrypt`; \
                 once `secrets reencrypt --check` passes, older keys may be removed.",
                path.display()
            );
        }
    }
    Ok(())
}

async fn secrets(cli: &Cli, cmd: &SecretsCommand) -> Result<()> {
    use ionflux_gateway::secrets::{self, Options, SECRET_COLUMNS};
    let SecretsCommand::Reencrypt { check, batch } = *cmd;
    let store = open_store(cli).await?;
    let vault = load_vault(cli)?;
    let report = secrets::run(
        &store,
        &vault,
        SECRET_COLUMNS,
        Options {
            batch,
            check_only: check,
        },
    )
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    if report.failed > 0 {
        bail!(
            "{} stored secret(s) cannot be decrypted (see `failures`)",
            report.failed
        );
    }
    if check && !report.all_current() {
        bail!(
            "{} stored secret(s) are not under the active key {}; run `secrets reencrypt`",
            report.on_old_keys,
            report.active_key
        );
    }
    if !report.all_current() {
        bail!(
            "{} stored secret(s) are still under an older key (changed meanwhile); run again",
            report.on_old_keys
        );
    }
    Ok(())
}

async fn routes(cli: &Cli, cmd: &RoutesCommand) -> Result<()> {
    let store = open_store(cli).await?;
    match cmd {
        RoutesCommand::Set {
            topic,
            transform,
            workspace,
            brand,
            config,
            limits,
            shadow,
            actor,
        } => {
            let spec = RouteSpec {
                workspace_id: workspace.clone(),
                brand_id: brand.clone(),
                topic_pattern: topic.clone(),
                transform: transform.clone(),
                config: config.clone(),
                limits: limits.clone(),
                shadow: shadow.clone(),
            };
            let row = registry::set_route(&store, &spec, actor).await?;
            println!("{}", serde_json::to_string(&row)?);
        }
        RoutesCommand::Promote {
            topic,
            workspace,
            brand,
            actor,
        } => {
            let row =
                registry::promote(&store, workspace.as_deref(), brand.as_deref(), topic, actor)
                    .await?;
            println!("{}", serde_json::to_string(&row)?);
        }
        RoutesCommand::Shadow { samples } => {
            for s in store.shadow_stats().await? {
                println!("{}", serde_json::to_string(&s)?);
            }
            if *samples {
                for s in store.shadow_samples(100).await? {
                    println!("{}", serde_json::to_string(&s)?);
                }
            }
        }
        RoutesCommand::List => {
            for r in store.routes().await? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        RoutesCommand::History { limit } => {
            for c in store.route_history(*limit).await? {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
    }
    Ok(())
}

async fn send_webhook(cli: &Cli, cmd: &WebhooksCommand) -> Result<()> {
    let WebhooksCommand::Send {
        shop,
        brand,
        topic,
        file,
        api_version,
        webhook_id,
        gateway_url,
    } = cmd;
    let store = open_store(cli).await?;
    let vault = load_vault(cli)?;
    let shop = shop.to_ascii_lowercase();
    let mut matches: Vec<_> = store
        .list_connections()
        .await?
        .into_iter()
        .filter(|c| c.shop_domain == shop && brand.as_ref().is_none_or(|b| &c.brand_id == b))
        .collect();
    let conn = match matches.len() {
        0 => bail!("no connection for {shop}; add one with `connections add`"),
        1 => matches.remove(0),
        _ => bail!("{shop} is connected to several brands; pick one with --brand"),
    };
    let body = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
    };
    let secret = connection::webhook_secrets(&vault, &conn)?.remove(0);
    let url = format!(
        "{}{}",
        gateway_url.trim_end_matches('/'),
        connection::webhook_path(&conn.secure_path_identifier)
    );
    let webhook_id = webhook_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header(webhook::TOPIC_HEADER, topic.as_str())
        .header(webhook::SHOP_HEADER, shop.as_str())
        .header(webhook::WEBHOOK_ID_HEADER, webhook_id.as_str())
        .header(webhook::API_VERSION_HEADER, api_version.as_str())
        .header(
            webhook::TRIGGERED_AT_HEADER,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .header(webhook::EVENT_ID_HEADER, uuid::Uuid::new_v4().to_string())
        .header(webhook::HMAC_HEADER, webhook::sign(secret.expose(), &body))
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    println!("{} {}", status.as_u16(), response.text().await?);
    if !status.is_success() {
        bail!("the gateway refused the webhook");
    }
    Ok(())
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<()> {
    let vault = Arc::new(load_vault(cli)?);
    let kafka = args.kafka_brokers.as_ref().map(|brokers| {
        let extra = args
            .kafka_properties
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        KafkaConfig {
            extra,
            ..KafkaConfig::new(brokers.clone())
        }
    });
    let cache_dir = args
        .cache_dir
        .clone()
        .or_else(|| sqlite_dir(&cli.database_url).map(|d| d.join("ionflux-cache")));
    let config = Config {
        database_url: cli.database_url.clone(),
        listen: args.listen,
        kafka,
        topics: Topics {
            events: args.topic_template.clone(),
            dead_letters: args.dlq_topic_template.clone(),
        },
        max_body_bytes: args.max_body_bytes,
        vault,
        admin_token: args.admin_token.clone().map(Secret::from),
        dispatch: DispatchConfig::default(),
        runtime: RuntimeConfig {
            cache_dir,
            ..RuntimeConfig::default()
        },
        shopify: args.shopify.config()?,
        service_token: args.service_token.clone().map(Secret::from),
        max_backlog_age: None,
        database_max_connections: 16,
    };
    let running = server::start(config).await?;
    eprintln!("ionflux-gateway listening on http://{}", running.addr);
    shutdown_signal().await;
    tracing::info!("shutting down: intake stops, work in hand finishes");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn tail_events(store: &Store, limit: i64, json: bool, follow: bool) -> Result<()> {
    let mut last = print_events(store.events_tail(limit.max(0)).await?, json)?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = print_events(store.events_after(last, 1000).await?, json)?.max(last);
    }
}

/// Prints events and returns the last sequence number printed (0 if none).
fn print_events(events: Vec<LoggedEvent>, json: bool) -> Result<i64> {
    let mut last = 0;
    let mut out = std::io::stdout().lock();
    for e in events {
        last = e.seq;
        if json {
            writeln!(out, "{}", e.payload)?;
        } else {
            let v: serde_json::Value = serde_json::from_str(&e.payload)?;
            writeln!(
                out,
                "#{} {} {} {}",
                e.seq,
                v["event_timestamp"].as_str().unwrap_or(""),
                v["event_type"].as_str().unwrap_or(""),
                v["event_id"].as_str().unwrap_or("")
            )?;
        }
    }
    out.flush()?;
    Ok(last)
}

async fn open_store(cli: &Cli) -> Result<Store> {
    Store::connect(&cli.database_url)
        .await
        .with_context(|| format!("opening {}", cli.database_url))
}

fn load_vault(cli: &Cli) -> Result<Vault> {
    if let Some(spec) = &cli.master_keys {
        return Ok(Vault::from_spec(spec)?);
    }
    let path = match &cli.master_key_file {
        Some(p) => p.clone(),
        None => match sqlite_dir(&cli.database_url) {
            Some(dir) => dir.join("ionflux.key"),
            None => bail!("set IONFLUX_MASTER_KEYS or --master-key-file for this database"),
        },
    };
    let (vault, created) = Vault::from_file_or_create(&path)
        .with_context(|| format!("master key file {}", path.display()))?;
    if created {
        tracing::warn!(path = %path.display(), "created a new master key; back it up: secrets cannot be read without it");
    }
    Ok(vault)
}

/// The folder of a SQLite database file, for files that belong beside it.
fn sqlite_dir(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.starts_with(':') {
        return None;
    }
    let dir = Path::new(path).parent()?;
    Some(if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    })
}
