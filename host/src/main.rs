//! `ionflux-gateway`: the binary's edge. Defines and parses the command
//! line, sets up logging, and hands each command to its module in [`cli`];
//! errors become `anyhow` only in the binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ionflux_gateway::config::{self, SecretValue, Settings};
use ionflux_gateway::store::{Open, Store, StoreError};
use ionflux_gateway::support::telemetry::{self, LogFormat};
use ionflux_gateway::support::vault::{CommandKeys, InlineKeys, KeySource, Vault};

mod cli;

#[derive(Parser)]
#[command(
    name = "ionflux-gateway",
    version,
    about = "Shopify webhooks in, sandboxed WebAssembly transforms, Kafka out.",
    after_help = "Settings come from built-in defaults, then a config file (--config or \
                  IONFLUX_CONFIG), then IONFLUX_* variables, then flags. \
                  `ionflux-gateway config defaults` documents every key."
)]
struct Cli {
    /// A config file layered over the built-in defaults; for every command
    /// (`serve --config` works too).
    #[arg(long = "config", env = "IONFLUX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Where `serve` keeps its SQLite database, master key file and
    /// transform cache; the other commands look for them there. Default:
    /// the working directory.
    #[arg(long, global = true, env = "IONFLUX_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Where state lives. SQLite is the embedded default (`ionflux.db` in
    /// the data directory).
    #[arg(long, global = true, env = "IONFLUX_DATABASE_URL")]
    database_url: Option<String>,

    /// Master keys as `id:base64key` entries (comma separated); the last one
    /// encrypts new secrets. Overrides --master-key-file.
    #[arg(
        long,
        global = true,
        env = "IONFLUX_MASTER_KEYS",
        hide_env_values = true
    )]
    master_keys: Option<String>,

    /// File of `id:base64key` lines. Default: `ionflux.key` in the data
    /// directory, created with a fresh key by the first `serve`.
    #[arg(long, global = true, env = "IONFLUX_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,

    /// A command whose output is the master keys (`id:base64key` lines),
    /// e.g. a secrets manager's CLI. Overrides --master-key-file.
    #[arg(long, global = true, env = "IONFLUX_MASTER_KEY_COMMAND")]
    master_key_command: Option<String>,

    /// Log format: `text` or `json`.
    #[arg(long, global = true, env = "IONFLUX_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,

    /// Log as JSON lines (the same as `--log-format json`).
    #[arg(
        long,
        global = true,
        env = "IONFLUX_LOG_JSON",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    log_json: Option<bool>,

    /// Log filter, `tracing` env-filter syntax; RUST_LOG wins when set.
    #[arg(long, global = true, env = "IONFLUX_LOG")]
    log_filter: Option<String>,

    #[command(flatten)]
    remote: cli::remote::RemoteArgs,

    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected `text` or `json`".into()),
    }
}

impl Cli {
    /// The serve-like flags of this command line, if it has them.
    fn serve_args(&self) -> Option<&ServeArgs> {
        match &self.command {
            Command::Serve(a) | Command::Config(ConfigCommand::Show(a)) => Some(a.as_ref()),
            Command::Config(ConfigCommand::Check(a)) => Some(&a.serve),
            _ => None,
        }
    }

    /// The effective settings: defaults, config file, then environment and
    /// flags (clap gives a flag precedence over its variable).
    fn settings(&self) -> Result<Settings> {
        let file = self
            .serve_args()
            .and_then(|a| a.config.clone())
            .or_else(|| self.config.clone())
            .filter(|p| !p.as_os_str().is_empty());
        let mut s = Settings::load(file.as_deref())?;
        // The variables' layer: `IONFLUX_…_FILE` secrets, then (through
        // clap) the variables themselves and the flags.
        s.apply_secret_files(|name| std::env::var_os(name))?;
        set_path(&mut s.data_dir, &self.data_dir);
        set(&mut s.database_url, &self.database_url);
        set_secret(&mut s.master_keys, &self.master_keys);
        set_path(&mut s.master_key_file, &self.master_key_file);
        set(&mut s.master_key_command, &self.master_key_command);
        if let Some(json) = self.log_json {
            s.log_format = if json {
                LogFormat::Json
            } else {
                LogFormat::Text
            };
        }
        set(&mut s.log_format, &self.log_format);
        set(&mut s.log_filter, &self.log_filter);
        // RUST_LOG is the ecosystem's switch: whoever sets it means it.
        if let Ok(filter) = std::env::var("RUST_LOG")
            && !filter.trim().is_empty()
        {
            s.log_filter = filter;
        }
        s.apply_otel_env(&telemetry::OtelEnv::from_process());
        if let Some(a) = self.serve_args() {
            a.apply(&mut s)?;
        }
        if let Command::Prune(a) = &self.command {
            a.retention.apply(&mut s);
        }
        s.resolve_paths();
        s.validate()?;
        Ok(s)
    }
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
    /// Send test webhooks, signed as their platform signs them.
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
    /// The effective settings and the documented defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Load-test a gateway (or the bare HMAC handler, its upper bound) with
    /// signed sample webhooks; see BENCHMARKS.md.
    Bench(Box<BenchArgs>),
    /// Print a shell completion script, e.g.
    /// `ionflux-gateway completions bash > /etc/bash_completion.d/ionflux-gateway`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::aot::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write `ionflux-gateway.1`, `ionflux-gateway-serve.1`, … here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Apply the retention windows now (`[retention]`), as the server's
    /// pruner does; `--dry-run` counts what would go, per table.
    Prune(Box<PruneArgs>),
    /// Exit 0 if the gateway on this machine answers its public `/health`
    /// with 200, else 1: a container's HEALTHCHECK, where there is no curl.
    Healthcheck(HealthcheckArgs),
}

/// `healthcheck`: which gateway to ask. It opens no database and reads no key.
#[derive(Args)]
struct HealthcheckArgs {
    /// The gateway's public address (its `listen`; default: the config's).
    /// An unspecified host (0.0.0.0, ::) is asked on loopback.
    #[arg(long, env = "IONFLUX_LISTEN")]
    listen: Option<SocketAddr>,
    /// `/health` (the process serves) or `/ready` (also its database,
    /// broker and backlog, which a restart would not mend).
    #[arg(long, default_value = "/health")]
    path: String,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// `bench`: what to load, how hard, and what to compare it with.
#[derive(Args)]
struct BenchArgs {
    /// Start a gateway in-process: on a temporary SQLite file with the event
    /// log sink (the embedded default), on --database-url when given, or
    /// publishing to --kafka-brokers.
    #[arg(long, conflicts_with = "target")]
    spawn: bool,
    /// A running gateway, e.g. `http://127.0.0.1:8080`. The bench connects
    /// its brands in that gateway's database (--database-url and the master
    /// key, as for `connections add`).
    #[arg(long)]
    target: Option<String>,
    /// Only the bare handler: HMAC verify and 200, no storage.
    #[arg(long, conflicts_with_all = ["spawn", "target", "compare_bare"])]
    bare: bool,
    /// After the gateway, drive the bare handler with the same load and
    /// print the ratio.
    #[arg(long)]
    compare_bare: bool,
    /// Brands (connections, each with its own secret) to spread webhooks over.
    #[arg(long, default_value_t = 8)]
    brands: usize,
    /// Sample payloads: SOURCES.tsv plus files, or `topic__name/*.json`.
    /// Default: ../shared/data/shopify-webhooks.
    #[arg(long, value_name = "DIR")]
    payloads: Option<PathBuf>,
    /// Only payloads of this size: `MAX` or `MIN-MAX`, bytes or `k` (KiB),
    /// e.g. `4k-7k`.
    #[arg(long, value_name = "RANGE")]
    payload_size: Option<ionflux_gateway::bench::SizeRange>,
    /// Requests per second (`2000`, `2000/s`; open loop) or `max`.
    #[arg(long, default_value = "max")]
    rate: ionflux_gateway::bench::Rate,
    /// HTTP/1.1 keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The measured window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before the window, not measured.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Kafka: where a --spawn gateway publishes, and where the end-to-end
    /// lag is read from (else the event log table).
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// The gateway's pid (with --target), for its peak RSS and CPU.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Do not measure the end-to-end lag.
    #[arg(long)]
    no_lag: bool,
    /// Longest wait after the window for the last events to reach the sink.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Threads of the load generator's own runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
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
        #[arg(long, default_value_t = ionflux_gateway::support::secrets::DEFAULT_BATCH)]
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
        /// The platform whose webhooks the route serves.
        #[arg(long, default_value = "shopify")]
        provider: String,
        /// Topic or glob, e.g. `orders/create`, `orders/*`, `*`.
        #[arg(long)]
        topic: String,
        /// A digest from `transforms push` (or a unique prefix of 12+ hex
        /// digits), or a built-in: `builtin:shopify-default`, `builtin:redact-pii`,
        /// `builtin:<platform>-default`, ...
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
        #[arg(long, default_value = "shopify")]
        provider: String,
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
    /// running gateway with the headers its platform sends (a local
    /// stand-in for `shopify app webhook trigger`, GitHub's "Redeliver").
    ///
    /// Headers set: Shopify X-Shopify-Topic, -Shop-Domain, -Webhook-Id,
    /// -API-Version, -Triggered-At, -Event-Id, -Hmac-Sha256; WooCommerce
    /// X-WC-Webhook-Source, -Topic, -Resource, -Event, -Delivery-ID,
    /// -Signature; TikTok Shop Authorization; Standard Webhooks webhook-id,
    /// webhook-timestamp, webhook-signature; HMAC senders their scheme's
    /// (GitHub X-GitHub-Event, X-GitHub-Delivery, X-Hub-Signature-256;
    /// Stripe Stripe-Signature). Wix signs with its own private key: post a
    /// webhook it delivered instead.
    Send {
        /// The platform: shopify, woocommerce, tiktok_shop,
        /// standard_webhooks or hmac.
        #[arg(long, default_value = "shopify")]
        provider: String,
        /// The connected account, as `connections add` was given it (a shop
        /// domain, a site URL, a shop id, a sender's name).
        #[arg(long, visible_alias = "shop")]
        account: String,
        /// When the account is connected to several brands.
        #[arg(long)]
        brand: Option<String>,
        /// For platforms that name it in a header: Shopify (orders/create),
        /// WooCommerce (order.created), GitHub (push). The others read it
        /// from the body.
        #[arg(long)]
        topic: Option<String>,
        /// The body; `-` reads stdin. Shopify's default: the built-in
        /// sample of the topic (orders/create, products/update,
        /// app/uninstalled, shop/redact; the files of
        /// examples/payloads/shopify). Required for other platforms.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Shopify's X-Shopify-API-Version. Default: the built-in sample's,
        /// else 2026-04.
        #[arg(long)]
        api_version: Option<String>,
        /// The delivery id. Default: a fresh UUID. Reuse one to see
        /// deduplication.
        #[arg(long)]
        webhook_id: Option<String>,
        #[arg(
            long,
            env = "IONFLUX_GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway_url: String,
    },
    /// Stored webhooks, newest first, one JSON line each (never a body):
    /// find one by its platform's delivery id (`--delivery-id`, Shopify's
    /// X-Shopify-Webhook-Id), connection, topic, status or time. With more
    /// than `--limit`, stderr says which `--cursor` gives the next page.
    List(cli::webhook_lookup::ListArgs),
    /// One stored webhook's life as one JSON line: how it was received,
    /// each attempt (route, transform, error), the event ids it became or
    /// its dead letter.
    Show {
        /// The inbox id (`webhooks list`'s `id`).
        id: i64,
        /// Also the body as received.
        #[arg(long)]
        body: bool,
    },
}

/// The settings `serve` takes on the command line. Each one overrides its
/// key of the config file; `config show` accepts the same flags.
#[derive(Args)]
struct ServeArgs {
    /// A config file layered over the built-in defaults (`config defaults`
    /// prints them, documented; `config show` prints the result).
    #[arg(long = "config", env = "IONFLUX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public HTTP address: webhooks, OAuth, shop details, health.
    #[arg(long, env = "IONFLUX_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin HTTP address: the admin API and /metrics; "off" for none.
    #[arg(long, env = "IONFLUX_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Kafka bootstrap servers. Without it, events go to the embedded event
    /// log (`events tail`, `GET /admin/v1/events`).
    #[arg(long, env = "IONFLUX_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Extra librdkafka properties, `key=value`, repeatable; added to the
    /// config file's `[kafka.properties]`.
    #[arg(
        long = "kafka-property",
        env = "IONFLUX_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    kafka_properties: Vec<String>,
    /// How long librdkafka tries one record before reporting it failed.
    #[arg(long, env = "IONFLUX_KAFKA_MESSAGE_TIMEOUT", value_parser = humantime::parse_duration)]
    kafka_message_timeout: Option<Duration>,
    /// Event topic; `{provider}`, `{workspace_id}`, `{brand_id}` filled in.
    #[arg(long, env = "IONFLUX_TOPIC_TEMPLATE")]
    topic_template: Option<String>,
    /// Dead-letter topic, same placeholders.
    #[arg(long, env = "IONFLUX_DLQ_TOPIC_TEMPLATE")]
    dlq_topic_template: Option<String>,
    /// Largest webhook body accepted; larger ones get 413.
    #[arg(long, env = "IONFLUX_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// `/ready` fails while the oldest pending webhook is older; 0s: not
    /// checked.
    #[arg(long, env = "IONFLUX_MAX_BACKLOG_AGE", value_parser = humantime::parse_duration)]
    max_backlog_age: Option<Duration>,
    /// Publish the connections' `integration.*` events
    /// (`connections.integration_events`).
    #[arg(long, env = "IONFLUX_INTEGRATION_EVENTS")]
    integration_events: Option<bool>,
    /// Connections in the database pool.
    #[arg(long, env = "IONFLUX_DATABASE_MAX_CONNECTIONS")]
    database_max_connections: Option<u32>,
    /// Operator bearer token for the admin API; without it (and with no
    /// operator token created) a bootstrap token is printed at first start.
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
    /// OTLP/HTTP collector to export trace spans to, e.g.
    /// `http://localhost:4318`. Default: no export.
    #[arg(long, env = "IONFLUX_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// `service.name` of exported spans.
    #[arg(long, env = "IONFLUX_OTLP_SERVICE_NAME")]
    otlp_service_name: Option<String>,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    dispatch: DispatchArgs,
    #[command(flatten)]
    shopify: ShopifyArgs,
    #[command(flatten)]
    woocommerce: WooCommerceArgs,
    #[command(flatten)]
    tiktok_shop: TikTokShopArgs,
    #[command(flatten)]
    retention: RetentionArgs,
}

/// `prune`: the windows are the configuration's, unless given here.
#[derive(Args)]
struct PruneArgs {
    /// Count what would be removed, per table, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    retention: RetentionArgs,
}

/// What is kept, and for how long (`[retention]`): a duration, or `off`.
#[derive(Args)]
#[command(next_help_heading = "Retention")]
struct RetentionArgs {
    /// Published webhooks (rows), after they finished; at least the dedup window.
    #[arg(long, env = "IONFLUX_RETENTION_INBOX", value_parser = window)]
    retention_inbox: Option<Window>,
    /// Bodies and headers of published webhooks.
    #[arg(long, env = "IONFLUX_RETENTION_INBOX_BODIES", value_parser = window)]
    retention_inbox_bodies: Option<Window>,
    /// The least time a finished webhook's dedup key is kept.
    #[arg(long, env = "IONFLUX_RETENTION_DEDUP_WINDOW", value_parser = humantime::parse_duration)]
    retention_dedup_window: Option<Duration>,
    /// Event-log records.
    #[arg(long, env = "IONFLUX_RETENTION_EVENTS", value_parser = window)]
    retention_events: Option<Window>,
    /// Unresolved dead letters.
    #[arg(long, env = "IONFLUX_RETENTION_DEAD_LETTERS", value_parser = window)]
    retention_dead_letters: Option<Window>,
    /// Dead letters a replay resolved.
    #[arg(long, env = "IONFLUX_RETENTION_RESOLVED_DEAD_LETTERS", value_parser = window)]
    retention_resolved_dead_letters: Option<Window>,
    /// How often the pruner runs; 0s: never.
    #[arg(long, env = "IONFLUX_RETENTION_INTERVAL", value_parser = humantime::parse_duration)]
    retention_interval: Option<Duration>,
    /// Rows per prune transaction.
    #[arg(long, env = "IONFLUX_RETENTION_BATCH_SIZE")]
    retention_batch_size: Option<u32>,
}

/// A retention window from the command line: a duration, or `off`.
#[derive(Clone)]
struct Window(Option<Duration>);

fn window(text: &str) -> Result<Window, String> {
    config::window::parse(text).map(Window)
}

impl RetentionArgs {
    fn apply(&self, s: &mut Settings) {
        let r = &mut s.retention;
        let set_window = |slot: &mut Option<Duration>, value: &Option<Window>| {
            if let Some(Window(w)) = value {
                *slot = *w;
            }
        };
        set_window(&mut r.inbox, &self.retention_inbox);
        set_window(&mut r.inbox_bodies, &self.retention_inbox_bodies);
        set(&mut r.dedup_window, &self.retention_dedup_window);
        set_window(&mut r.events, &self.retention_events);
        set_window(&mut r.dead_letters, &self.retention_dead_letters);
        set_window(
            &mut r.resolved_dead_letters,
            &self.retention_resolved_dead_letters,
        );
        set(&mut r.interval, &self.retention_interval);
        set(&mut r.batch_size, &self.retention_batch_size);
    }
}

/// WooCommerce sites connected with their REST API keys (`[woocommerce]`).
#[derive(Args)]
#[command(next_help_heading = "WooCommerce")]
struct WooCommerceArgs {
    /// Topics registered at a site, comma separated.
    #[arg(long, env = "IONFLUX_WOOCOMMERCE_TOPICS", value_delimiter = ',')]
    woocommerce_topics: Vec<String>,
    /// How long one call to a site's REST API may take.
    #[arg(long, env = "IONFLUX_WOOCOMMERCE_API_TIMEOUT", value_parser = humantime::parse_duration)]
    woocommerce_api_timeout: Option<Duration>,
    /// Tests only: accept http:// site URLs (a fake site on loopback).
    #[arg(long, env = "IONFLUX_WOOCOMMERCE_ALLOW_PLAIN_HTTP")]
    woocommerce_allow_plain_http: Option<bool>,
}

impl WooCommerceArgs {
    fn apply(&self, s: &mut Settings) {
        let w = &mut s.woocommerce;
        if !self.woocommerce_topics.is_empty() {
            w.topics = self.woocommerce_topics.clone();
        }
        set(&mut w.api_timeout, &self.woocommerce_api_timeout);
        set(&mut w.allow_plain_http, &self.woocommerce_allow_plain_http);
    }
}

/// How the HTTP listener treats connections (`[http]` in the config file).
#[derive(Args)]
#[command(next_help_heading = "HTTP connections")]
struct HttpArgs {
    /// Connections served at once; more are reset on accept.
    #[arg(long, env = "IONFLUX_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// How long a new connection may take to show its protocol (first
    /// bytes; HTTP/2: the whole preface).
    #[arg(long, env = "IONFLUX_HTTP_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    http_handshake_timeout: Option<Duration>,
    /// How long an HTTP/1 request head may take from its first byte.
    #[arg(long, env = "IONFLUX_HTTP_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    http_header_timeout: Option<Duration>,
    /// A connection with no request in flight this long is closed.
    #[arg(long, env = "IONFLUX_HTTP_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    http_idle_timeout: Option<Duration>,
    /// How long a webhook request may take, body included; then 408.
    #[arg(long, env = "IONFLUX_HTTP_WEBHOOK_TIMEOUT", value_parser = humantime::parse_duration)]
    http_webhook_timeout: Option<Duration>,
    /// HTTP/2 ping interval; 0s: no pings.
    #[arg(long, env = "IONFLUX_HTTP2_KEEP_ALIVE_INTERVAL", value_parser = humantime::parse_duration)]
    http2_keep_alive_interval: Option<Duration>,
    /// An HTTP/2 ping unanswered this long closes the connection.
    #[arg(long, env = "IONFLUX_HTTP2_KEEP_ALIVE_TIMEOUT", value_parser = humantime::parse_duration)]
    http2_keep_alive_timeout: Option<Duration>,
    /// Streams one HTTP/2 connection may have open at once.
    #[arg(long, env = "IONFLUX_HTTP2_MAX_CONCURRENT_STREAMS")]
    http2_max_concurrent_streams: Option<u32>,
}

impl HttpArgs {
    fn apply(&self, s: &mut Settings) {
        let h = &mut s.http;
        set(&mut h.max_connections, &self.http_max_connections);
        set(&mut h.handshake_timeout, &self.http_handshake_timeout);
        set(&mut h.header_timeout, &self.http_header_timeout);
        set(&mut h.idle_timeout, &self.http_idle_timeout);
        set(&mut h.webhook_timeout, &self.http_webhook_timeout);
        set(
            &mut h.http2_keep_alive_interval,
            &self.http2_keep_alive_interval,
        );
        set(
            &mut h.http2_keep_alive_timeout,
            &self.http2_keep_alive_timeout,
        );
        set(
            &mut h.http2_max_concurrent_streams,
            &self.http2_max_concurrent_streams,
        );
    }
}

/// How stored webhooks become events.
#[derive(Args)]
#[command(next_help_heading = "Dispatch")]
struct DispatchArgs {
    /// false: only take webhooks in; a replica with dispatch on publishes
    /// them.
    #[arg(long, env = "IONFLUX_DISPATCH")]
    dispatch: Option<bool>,
    /// This replica's name in brand leases. Default: host name and port.
    #[arg(long, env = "IONFLUX_REPLICA")]
    replica: Option<String>,
    /// How long a brand lease lasts unless renewed.
    #[arg(long, env = "IONFLUX_CLAIM_LEASE", value_parser = humantime::parse_duration)]
    claim_lease: Option<Duration>,
    /// Webhooks claimed per round trip.
    #[arg(long, env = "IONFLUX_BATCH_SIZE")]
    batch_size: Option<i64>,
    /// Transforms running at once; 0: one per CPU.
    #[arg(long, env = "IONFLUX_DISPATCH_CONCURRENCY")]
    dispatch_concurrency: Option<usize>,
    /// How often to look for work when nothing woke the dispatcher.
    #[arg(long, env = "IONFLUX_IDLE_POLL", value_parser = humantime::parse_duration)]
    idle_poll: Option<Duration>,
    /// First retry backoff of a failed webhook.
    #[arg(long, env = "IONFLUX_MIN_BACKOFF", value_parser = humantime::parse_duration)]
    min_backoff: Option<Duration>,
    /// Longest retry backoff.
    #[arg(long, env = "IONFLUX_MAX_BACKOFF", value_parser = humantime::parse_duration)]
    max_backoff: Option<Duration>,
    /// The most transform output one batch may hold in memory, bytes.
    #[arg(long, env = "IONFLUX_BATCH_BYTES")]
    batch_bytes: Option<usize>,
    /// Default memory ceiling of a transform call, bytes.
    #[arg(long, env = "IONFLUX_LIMIT_MEMORY_BYTES")]
    limit_memory_bytes: Option<usize>,
    /// Default time budget of a transform call.
    #[arg(long, env = "IONFLUX_LIMIT_CPU", value_parser = humantime::parse_duration)]
    limit_cpu: Option<Duration>,
    /// Default output bytes of a transform call.
    #[arg(long, env = "IONFLUX_LIMIT_OUTPUT_BYTES")]
    limit_output_bytes: Option<usize>,
    /// Default events per transform call.
    #[arg(long, env = "IONFLUX_LIMIT_MAX_EVENTS")]
    limit_max_events: Option<usize>,
    /// Default guest log lines kept per call.
    #[arg(long, env = "IONFLUX_LIMIT_LOG_LINES")]
    limit_log_lines: Option<u32>,
    /// Default ceiling of every workspace: time budget of a call.
    #[arg(long, env = "IONFLUX_CEILING_CPU", value_parser = humantime::parse_duration)]
    ceiling_cpu: Option<Duration>,
    /// Default ceiling of every workspace: memory of a call, bytes.
    #[arg(long, env = "IONFLUX_CEILING_MEMORY_BYTES")]
    ceiling_memory_bytes: Option<usize>,
    /// Default ceiling of every workspace: events per call.
    #[arg(long, env = "IONFLUX_CEILING_MAX_EVENTS")]
    ceiling_max_events: Option<usize>,
    /// Default ceiling of every workspace: output bytes of a call.
    #[arg(long, env = "IONFLUX_CEILING_OUTPUT_BYTES")]
    ceiling_output_bytes: Option<usize>,
    /// Transform versions a workspace may keep uploaded.
    #[arg(long, env = "IONFLUX_QUOTA_TRANSFORMS")]
    quota_transforms: Option<u64>,
    /// Bytes of transform versions a workspace may keep uploaded.
    #[arg(long, env = "IONFLUX_QUOTA_TRANSFORM_BYTES")]
    quota_transform_bytes: Option<u64>,
}

/// The Shopify app, for the OAuth install flow. Without a client id the
/// OAuth routes answer 404 and connections are made by hand.
#[derive(Args)]
#[command(next_help_heading = "Shopify app")]
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
    /// The `aud` a JWT must carry; required with a JWT key unless
    /// --jwt-audience-check=false.
    #[arg(long, env = "IONFLUX_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// false: accept JWTs for any audience (no --jwt-audience needed).
    #[arg(long, env = "IONFLUX_JWT_AUDIENCE_CHECK")]
    jwt_audience_check: Option<bool>,
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

/// Overwrites `slot` when the flag or its variable was given.
fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *slot = v.clone();
    }
}

fn set_secret(slot: &mut SecretValue, value: &Option<String>) {
    if let Some(v) = value {
        *slot = SecretValue::from(v.clone());
    }
}

fn set_path(slot: &mut String, value: &Option<PathBuf>) {
    if let Some(p) = value {
        *slot = p.to_string_lossy().into_owned();
    }
}

fn set_secs(slot: &mut Duration, value: Option<u64>) {
    if let Some(s) = value {
        *slot = Duration::from_secs(s);
    }
}

impl ServeArgs {
    fn apply(&self, s: &mut Settings) -> Result<()> {
        set(&mut s.listen, &self.listen);
        set(&mut s.admin_listen, &self.admin_listen);
        set(&mut s.kafka.brokers, &self.kafka_brokers);
        for kv in self
            .kafka_properties
            .iter()
            .filter(|kv| !kv.trim().is_empty())
        {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--kafka-property expects key=value, got {kv:?}"))?;
            s.kafka
                .properties
                .insert(k.trim().to_string(), v.trim().to_string());
        }
        set(&mut s.kafka.message_timeout, &self.kafka_message_timeout);
        set(&mut s.topic_template, &self.topic_template);
        set(&mut s.dlq_topic_template, &self.dlq_topic_template);
        set(&mut s.max_body_bytes, &self.max_body_bytes);
        set(&mut s.max_backlog_age, &self.max_backlog_age);
        set(
            &mut s.connections.integration_events,
            &self.integration_events,
        );
        set(
            &mut s.database_max_connections,
            &self.database_max_connections,
        );
        set_secret(&mut s.admin_token, &self.admin_token);
        set_secret(&mut s.service_token, &self.service_token);
        set_path(&mut s.cache_dir, &self.cache_dir);
        if self.otlp_endpoint.is_some() {
            s.otlp_endpoint_is_traces_url = false;
        }
        set(&mut s.otlp_endpoint, &self.otlp_endpoint);
        set(&mut s.otlp_service_name, &self.otlp_service_name);
        self.http.apply(s);
        self.dispatch.apply(s);
        self.retention.apply(s);
        self.shopify.apply(s);
        self.woocommerce.apply(s);
        self.tiktok_shop.apply(s);
        Ok(())
    }
}

impl DispatchArgs {
    fn apply(&self, s: &mut Settings) {
        let d = &mut s.dispatch;
        set(&mut d.enabled, &self.dispatch);
        set(&mut d.replica, &self.replica);
        set(&mut d.claim_lease, &self.claim_lease);
        set(&mut d.batch_size, &self.batch_size);
        set(&mut d.concurrency, &self.dispatch_concurrency);
        set(&mut d.idle_poll, &self.idle_poll);
        set(&mut d.min_backoff, &self.min_backoff);
        set(&mut d.max_backoff, &self.max_backoff);
        let l = &mut s.limits;
        set(&mut l.memory_bytes, &self.limit_memory_bytes);
        set(&mut l.cpu, &self.limit_cpu);
        set(&mut l.output_bytes, &self.limit_output_bytes);
        set(&mut l.max_events, &self.limit_max_events);
        set(&mut l.log_lines, &self.limit_log_lines);
        set(&mut d.batch_bytes, &self.batch_bytes);
        let c = &mut s.ceilings;
        set(&mut c.cpu, &self.ceiling_cpu);
        set(&mut c.memory_bytes, &self.ceiling_memory_bytes);
        set(&mut c.max_events, &self.ceiling_max_events);
        set(&mut c.output_bytes, &self.ceiling_output_bytes);
        let q = &mut s.quotas;
        set(&mut q.transforms, &self.quota_transforms);
        set(&mut q.transform_bytes, &self.quota_transform_bytes);
    }
}

impl ShopifyArgs {
    fn apply(&self, s: &mut Settings) {
        let s = &mut s.shopify;
        set(&mut s.client_id, &self.shopify_client_id);
        set_secret(&mut s.client_secret, &self.shopify_client_secret);
        set(&mut s.scopes, &self.shopify_scopes);
        set(&mut s.redirect_uri, &self.shopify_redirect_uri);
        set(&mut s.public_base_url, &self.public_base_url);
        set(&mut s.admin_base_url, &self.shopify_admin_base_url);
        set(&mut s.authorize_base_url, &self.shopify_authorize_base_url);
        set(&mut s.api_version, &self.shopify_api_version);
        set(&mut s.expiring_tokens, &self.shopify_expiring_tokens);
        set(&mut s.frontend_redirect, &self.oauth_frontend_redirect);
        set_secs(&mut s.timestamp_window, self.oauth_timestamp_window_secs);
        if !self.shopify_webhook_topics.is_empty() {
            s.webhook_topics = self.shopify_webhook_topics.clone();
        }
        set_secret(&mut s.jwt_hs256_secret, &self.jwt_hs256_secret);
        set_path(
            &mut s.jwt_rs256_public_key_file,
            &self.jwt_rs256_public_key_file,
        );
        set(&mut s.jwt_issuer, &self.jwt_issuer);
        set(&mut s.jwt_audience, &self.jwt_audience);
        set(&mut s.jwt_audience_check, &self.jwt_audience_check);
        set_secs(&mut s.refresh_lead, self.shopify_refresh_lead_secs);
        set_secs(&mut s.refresh_poll, self.shopify_refresh_poll_secs);
        set(
            &mut s.refresh_max_failures,
            &self.shopify_refresh_max_failures,
        );
    }
}

/// The TikTok Shop partner app, for its install flow (`[tiktok_shop]`).
/// Without an app key the install routes answer 404.
#[derive(Args)]
#[command(next_help_heading = "TikTok Shop app")]
struct TikTokShopArgs {
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_APP_KEY")]
    tiktok_shop_app_key: Option<String>,
    /// The app's secret; TikTok also signs webhooks with it.
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_APP_SECRET", hide_env_values = true)]
    tiktok_shop_app_secret: Option<String>,
    /// The app's service id (Partner Center), for the authorize URL.
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_SERVICE_ID")]
    tiktok_shop_service_id: Option<String>,
    /// This gateway's /integrations/tiktok_shop/oauth/callback, as the
    /// public sees it.
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_REDIRECT_URI")]
    tiktok_shop_redirect_uri: Option<String>,
    /// Webhook addresses are built on it (default: --public-base-url).
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_PUBLIC_BASE_URL")]
    tiktok_shop_public_base_url: Option<String>,
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_AUTHORIZE_URL")]
    tiktok_shop_authorize_url: Option<String>,
    /// TikTok's auth server (a local stand-in for tests).
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_AUTH_BASE_URL")]
    tiktok_shop_auth_base_url: Option<String>,
    /// TikTok Shop's Open API (a local stand-in for tests).
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_OPEN_API_BASE_URL")]
    tiktok_shop_open_api_base_url: Option<String>,
    /// Event types registered for every shop, comma separated.
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_EVENT_TYPES", value_delimiter = ',')]
    tiktok_shop_event_types: Vec<String>,
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_REFRESH_LEAD_SECS")]
    tiktok_shop_refresh_lead_secs: Option<u64>,
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_REFRESH_POLL_SECS")]
    tiktok_shop_refresh_poll_secs: Option<u64>,
    #[arg(long, env = "IONFLUX_TIKTOK_SHOP_REFRESH_MAX_FAILURES")]
    tiktok_shop_refresh_max_failures: Option<u32>,
}

impl TikTokShopArgs {
    fn apply(&self, s: &mut Settings) {
        let t = &mut s.tiktok_shop;
        set(&mut t.app_key, &self.tiktok_shop_app_key);
        set_secret(&mut t.app_secret, &self.tiktok_shop_app_secret);
        set(&mut t.service_id, &self.tiktok_shop_service_id);
        set(&mut t.redirect_uri, &self.tiktok_shop_redirect_uri);
        set(&mut t.public_base_url, &self.tiktok_shop_public_base_url);
        set(&mut t.authorize_url, &self.tiktok_shop_authorize_url);
        set(&mut t.auth_base_url, &self.tiktok_shop_auth_base_url);
        set(
            &mut t.open_api_base_url,
            &self.tiktok_shop_open_api_base_url,
        );
        if !self.tiktok_shop_event_types.is_empty() {
            t.event_types = self.tiktok_shop_event_types.clone();
        }
        set_secs(&mut t.refresh_lead, self.tiktok_shop_refresh_lead_secs);
        set_secs(&mut t.refresh_poll, self.tiktok_shop_refresh_poll_secs);
        set(
            &mut t.refresh_max_failures,
            &self.tiktok_shop_refresh_max_failures,
        );
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective settings as TOML (defaults, then the config
    /// file, then environment variables, then flags), secrets redacted.
    /// Takes the same flags as `serve`.
    Show(Box<ServeArgs>),
    /// Print the built-in defaults: every key, documented. A good start for
    /// a config file.
    Defaults,
    /// Check the effective settings, then reach what they name: the
    /// database (connect, nothing created or migrated), the master key, the
    /// Kafka brokers. One line per check; exits non-zero when one fails.
    /// Takes the same flags as `serve`.
    Check(Box<CheckArgs>),
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// How long to wait for the database and the brokers to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Connect an account by hand; reads the secret its webhooks are signed
    /// with from stdin (Wix: the app's public key, PEM; Standard Webhooks:
    /// `whsec_…`). Run again for the same account and brand, it rotates the
    /// secret and takes the new settings.
    Add {
        /// The platform: shopify, woocommerce, tiktok_shop, wix,
        /// standard_webhooks or hmac.
        #[arg(long, default_value = "shopify")]
        provider: String,
        /// Shopify: NAME.myshopify.com; WooCommerce: the site's URL; TikTok
        /// Shop: the shop id; Wix: the app instance id; Standard Webhooks
        /// and HMAC senders: a name of your choice.
        #[arg(long, visible_alias = "shop")]
        account: String,
        /// Required, but with --admin-url and a workspace token, whose
        /// workspace is the default.
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        brand: String,
        /// How long the replaced secret keeps verifying, when this rotates
        /// one (`connections.previous_secret_window`, default 24h).
        #[arg(long, env = "IONFLUX_PREVIOUS_SECRET_WINDOW", value_parser = humantime::parse_duration)]
        previous_secret_window: Option<Duration>,
        /// The provider's settings, JSON: TikTok Shop `{"app_key":"…"}`, an
        /// HMAC sender's declared scheme.
        #[arg(long, value_parser = parse_json_object)]
        settings: Option<serde_json::Value>,
        /// An HMAC sender's preset (`github`, `stripe`): the same as
        /// `--settings '{"preset":"NAME"}'`.
        #[arg(long, conflicts_with = "settings")]
        preset: Option<String>,
        #[command(flatten)]
        register: Box<RegisterArgs>,
    },
    /// One JSON object per connection: status, `auth_method` (`manual` or
    /// `oauth`) and `has_tokens`; secrets are never shown.
    List,
    /// The webhook registrations of a connection made by OAuth, one JSON
    /// object per topic with its status.
    Webhooks { connection_id: String },
    /// One connection in full, as JSON: status, paused, auth method,
    /// scopes, last webhook received, last error, token expiry, its
    /// registrations per topic; never a secret.
    Show { connection_id: String },
    /// Disconnect: status `disconnected`, tokens deleted; its webhooks are
    /// refused but for the platform's compliance topics.
    Disconnect { connection_id: String },
    /// Pause processing: webhooks are still taken and stored, and held
    /// until `resume`.
    Pause { connection_id: String },
    /// Resume processing: the webhooks held meanwhile are delivered.
    Resume { connection_id: String },
    /// Register its webhooks at the platform again (kept API credentials,
    /// or the OAuth app's registrar).
    Reregister { connection_id: String },
    /// Refresh its access token now (with --admin-url: the running gateway
    /// holds the app's credentials).
    Refresh { connection_id: String },
}

/// `connections add` with a platform's API credentials: the gateway
/// registers the connection's webhooks there itself.
#[derive(Args)]
struct RegisterArgs {
    /// A WooCommerce site's REST API consumer key (`ck_…`, read/write):
    /// the gateway registers the connection's webhooks at the site
    /// itself and chooses the secret (stdin is not read). The consumer
    /// secret comes from --consumer-secret-file, else the variable
    /// IONFLUX_CONSUMER_SECRET, never from an argument.
    #[arg(long, value_name = "KEY")]
    consumer_key: Option<String>,
    /// A file holding the consumer secret (`cs_…`).
    #[arg(long, value_name = "PATH", requires = "consumer_key")]
    consumer_secret_file: Option<PathBuf>,
    /// This gateway's public base URL, on which the address registered
    /// at the platform is built. Without --admin-url only (a running
    /// gateway uses its own); default: shopify.public_base_url.
    #[arg(long, env = "IONFLUX_PUBLIC_BASE_URL", value_name = "URL")]
    public_base_url: Option<String>,
}

fn parse_json_object(text: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

impl ConnectionsCommand {
    /// The connection API's action this command runs, and on which id.
    fn action(
        &self,
    ) -> Option<(
        ionflux_gateway::api::admin::connection_actions::Action,
        &str,
    )> {
        use ionflux_gateway::api::admin::connection_actions::Action;
        match self {
            Self::Disconnect { connection_id } => Some((Action::Disconnect, connection_id)),
            Self::Pause { connection_id } => Some((Action::Pause, connection_id)),
            Self::Resume { connection_id } => Some((Action::Resume, connection_id)),
            Self::Reregister { connection_id } => Some((Action::Reregister, connection_id)),
            Self::Refresh { connection_id } => Some((Action::Refresh, connection_id)),
            _ => None,
        }
    }

    /// `--settings`, or what `--preset` stands for.
    fn settings(&self) -> Option<serde_json::Value> {
        match self {
            Self::Add {
                settings, preset, ..
            } => settings
                .clone()
                .or_else(|| preset.as_ref().map(|p| serde_json::json!({ "preset": p }))),
            _ => None,
        }
    }
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
        #[command(flatten)]
        filter: cli::dead_letters::FilterArgs,
    },
    /// Run dead letters again through today's routes (e.g. after fixing a
    /// transform); what now succeeds is published with its original event id.
    /// `--reason`, `--since` and `--until` narrow `--id` and `--all`, or
    /// select on their own.
    Replay {
        #[arg(long, conflicts_with = "all")]
        id: Vec<i64>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: cli::dead_letters::FilterArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::from_arg_matches(&cli_command().get_matches()).unwrap_or_else(|e| e.exit());
    let serving = matches!(cli.command, Command::Serve(_));
    if !serving {
        restore_default_sigpipe();
    }
    // Made from the command line alone: a broken config file must not keep
    // an operator from its help.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = cli_command();
            clap_complete::aot::generate(
                *shell,
                &mut cmd,
                "ionflux-gateway",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Command::Man { dir } => return cli::docs::man(dir.as_deref()),
        _ => {}
    }
    let mut settings = cli.settings()?;
    // The bench's in-process gateway would log over the progress bar; its
    // warnings still show. An explicit filter wins.
    if matches!(cli.command, Command::Bench(_))
        && cli.log_filter.is_none()
        && std::env::var("RUST_LOG").is_err()
    {
        settings.log_filter = "warn".into();
    }
    let telemetry = telemetry::init(&settings.telemetry(serving))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(cli, settings));
    // Tasks still holding spans end with the runtime; then the last spans
    // are flushed to the collector.
    drop(runtime);
    telemetry.shutdown();
    result
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

async fn run(cli: Cli, settings: Settings) -> Result<()> {
    let cfg = &settings;
    if let Some(client) = cli.remote.client()?
        && let Some(done) = cli::remote::run(&client, &cli.command).await
    {
        return done;
    }
    match cli.command {
        Command::Serve(_) => cli::serve::serve(cfg).await,
        Command::Config(ConfigCommand::Show(_)) => {
            print!("{}", cfg.to_redacted_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", config::DEFAULT_TOML);
            Ok(())
        }
        Command::Config(ConfigCommand::Check(ref args)) => {
            cli::config::config_check(cfg, args.timeout).await
        }
        Command::Completions { .. } | Command::Man { .. } => unreachable!("handled before"),
        Command::Connections(ref cmd) => cli::connections::connections(cfg, cmd).await,
        Command::Events(EventsCommand::Tail {
            limit,
            json,
            follow,
        }) => {
            let store = open_store(cfg).await?;
            cli::events::tail_events(&store, limit, json, follow).await
        }
        Command::Webhooks(WebhooksCommand::List(ref args)) => {
            cli::webhook_lookup::list(cfg, args).await
        }
        Command::Webhooks(WebhooksCommand::Show { id, body }) => {
            cli::webhook_lookup::show(cfg, id, body).await
        }
        Command::Webhooks(ref cmd) => cli::webhooks::send_webhook(cfg, cmd).await,
        Command::Transforms(ref cmd) => cli::transforms::transforms(cfg, cmd).await,
        Command::Routes(ref cmd) => cli::routes::routes(cfg, cmd).await,
        Command::Tokens(ref cmd) => cli::tokens::tokens(cfg, cmd).await,
        Command::Keys(ref cmd) => cli::keys::keys(cfg, cmd),
        Command::Secrets(ref cmd) => cli::keys::secrets(cfg, cmd).await,
        Command::Bench(ref args) => cli::bench::bench(cfg, args, cli.database_url.as_deref()).await,
        Command::Healthcheck(ref args) => cli::serve::healthcheck(cfg, args).await,
        Command::DeadLetters(ref cmd) => cli::dead_letters::dead_letters(cfg, cmd).await,
        Command::Prune(ref args) => cli::prune::prune(cfg, args.dry_run).await,
    }
}

/// The key file `load_vault` reads when no `IONFLUX_MASTER_KEYS` is given.
fn master_key_file(cfg: &Settings) -> Result<PathBuf> {
    cfg.master_key_file()
        .context("set --master-key-file for this database")
}

/// What a command that finds no database or key file is told.
const WHERE_THE_DATA_IS: &str = "`ionflux-gateway serve` creates it on its first start; run this \
     command where the gateway keeps its data, or say where that is with --data-dir \
     (IONFLUX_DATA_DIR) or --database-url / --master-key-file";

/// The database a gateway serves, for the commands that work on it: they
/// never create one (only `serve` does), so that a command run in the wrong
/// directory fails instead of starting an empty database of its own.
async fn open_store(cfg: &Settings) -> Result<Store> {
    let shown = config::redact_url_password(&cfg.database_url);
    match Store::open(&cfg.database_url, 16, Open::Existing).await {
        Ok(store) => Ok(store),
        Err(StoreError::NoDatabase(path)) => bail!(
            "no database file at {}: {WHERE_THE_DATA_IS}",
            std::path::absolute(&path).unwrap_or(path).display()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening {shown}"))),
    }
}

/// Where the master keys come from when they are given directly
/// (`master_keys`) or by a command (`master_key_command`); None when they
/// come from a key file.
fn given_key_source(cfg: &Settings) -> Option<Box<dyn KeySource + '_>> {
    if !cfg.master_keys.is_empty() {
        return Some(Box::new(InlineKeys::new(cfg.master_keys.expose())));
    }
    let command = cfg.master_key_command.trim();
    (!command.is_empty()).then(|| Box::new(CommandKeys::new(command)) as Box<dyn KeySource>)
}

fn given_keys(cfg: &Settings) -> Option<Result<Vault>> {
    given_key_source(cfg).map(|source| Vault::from_source(source.as_ref()).map_err(Into::into))
}

/// The master keys, for the commands other than `serve`: a key file that
/// does not exist is an error, never a new key (which would encrypt with a
/// key the gateway does not have).
fn load_vault(cfg: &Settings) -> Result<Vault> {
    if let Some(given) = given_keys(cfg) {
        return given;
    }
    let path = master_key_file(cfg)?;
    if !path.exists() {
        bail!(
            "no master key file at {}: {WHERE_THE_DATA_IS}",
            std::path::absolute(&path).unwrap_or(path).display()
        );
    }
    Vault::from_file(&path).with_context(|| format!("master key file {}", path.display()))
}

/// The master keys for `serve`, which makes the key file on first start.
fn serve_vault(cfg: &Settings) -> Result<Vault> {
    if let Some(given) = given_keys(cfg) {
        return given;
    }
    let path = cfg.master_key_file().context(
        "set IONFLUX_MASTER_KEYS, --master-key-command or --master-key-file for this database",
    )?;
    let (vault, created) = Vault::from_file_or_create(&path)
        .with_context(|| format!("master key file {}", path.display()))?;
    if created {
        tracing::warn!(path = %path.display(), "created a new master key; back it up: secrets cannot be read without it");
    }
    Ok(vault)
}

/// The command line, each flag backed by a setting showing the default of
/// that setting in the compiled-in `config.default.toml`. The default is
/// only shown, never applied by clap: an absent flag must leave the config
/// file's value alone.
fn cli_command() -> clap::Command {
    with_defaults(Cli::command(), &flag_defaults())
}

fn with_defaults(mut cmd: clap::Command, defaults: &BTreeMap<String, String>) -> clap::Command {
    let shown: Vec<(clap::Id, String)> = cmd
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), defaults.get(a.get_long()?)?.clone())))
        .collect();
    for (id, default) in shown {
        cmd = cmd.mut_arg(id, |a| {
            let suffix = format!("[default: {default}]");
            let help = a
                .get_help()
                .map_or(suffix.clone(), |h| format!("{h} {suffix}"));
            let long = a.get_long_help().map(|h| format!("{h}\n\n{suffix}"));
            let a = a.help(help);
            match long {
                Some(long) => a.long_help(long),
                None => a,
            }
        });
    }
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |c| with_defaults(c, defaults));
    }
    cmd
}

/// Flag name (without `--`) to its default as text, from the `# env: …,
/// flag: --NAME` line above each key of `config.default.toml` and the value
/// of that key there. Empty values are left out.
fn flag_defaults() -> BTreeMap<String, String> {
    // The file's own text of each value ("75s", not a reformatted "1m 15s").
    let values: toml::Table = toml::from_str(config::DEFAULT_TOML).expect("valid defaults");
    let mut out = BTreeMap::new();
    let mut section: Option<&str> = None;
    let mut flag: Option<&str> = None;
    for line in config::DEFAULT_TOML.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name);
        } else if let Some(doc) = line.strip_prefix('#') {
            if let Some((_, rest)) = doc.split_once("flag: --") {
                flag = rest.split([' ', ',']).next();
            }
        } else if let Some((key, _)) = line.split_once(" = ")
            && let Some(flag) = flag.take()
        {
            let table = match section {
                Some(name) => values.get(name).and_then(|v| v.as_table()),
                None => Some(&values),
            };
            if let Some(text) = table
                .and_then(|t| t.get(key.trim()))
                .and_then(|v| default_text(flag, v))
            {
                out.insert(flag.to_owned(), text);
            }
        }
    }
    out
}

fn default_text(flag: &str, value: &toml::Value) -> Option<String> {
    let text = match value {
        toml::Value::String(s) if flag.ends_with("-secs") => {
            humantime::parse_duration(s).ok()?.as_secs().to_string()
        }
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(","),
        toml::Value::Table(_) => return None,
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        // Catches clashing flag names, which clap only reports at run time.
        cli_command().debug_assert();
    }

    fn long_flags(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned)),
        );
        for sub in cmd.get_subcommands() {
            long_flags(sub, out);
        }
    }

    #[test]
    fn every_documented_flag_exists_and_shows_its_default() {
        let mut flags = Vec::new();
        long_flags(&cli_command(), &mut flags);
        for line in config::DEFAULT_TOML.lines() {
            if let Some((_, rest)) = line.split_once("flag: --") {
                let flag = rest.split([' ', ',']).next().unwrap();
                assert!(
                    flags.iter().any(|f| f == flag),
                    "--{flag} is documented, not a flag"
                );
            }
        }
        let d = flag_defaults();
        assert_eq!(d["listen"], "127.0.0.1:8080");
        assert_eq!(d["batch-size"], "64");
        assert_eq!(d["claim-lease"], "30s");
        assert_eq!(d["dispatch"], "true");
        assert_eq!(d["oauth-timestamp-window-secs"], "300");
        assert!(d["shopify-webhook-topics"].starts_with("orders/create,orders/updated,"));
        assert_eq!(d["previous-secret-window"], "24h");
        // Unset settings and secrets show nothing.
        for flag in [
            "kafka-brokers",
            "admin-token",
            "master-keys",
            "data-dir",
            "kafka-property",
        ] {
            assert!(!d.contains_key(flag), "--{flag}: {:?}", d.get(flag));
        }
        let serve = cli_command();
        let serve = serve.find_subcommand("serve").unwrap();
        let listen = serve
            .get_arguments()
            .find(|a| a.get_long() == Some("listen"))
            .unwrap();
        assert!(
            listen
                .get_help()
                .unwrap()
                .to_string()
                .ends_with("[default: 127.0.0.1:8080]")
        );
        // Shown, not applied: clap has no default to put over a config file.
        assert!(listen.get_default_values().is_empty());
    }
}
