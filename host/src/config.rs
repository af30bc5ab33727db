//! What the gateway is told to do: one TOML document of settings, layered.
//!
//! The defaults are `config.default.toml`, compiled in and parsed as the
//! first layer, so the documented file is the only copy of them. A user file
//! is merged over it key by key; environment variables and flags (read by the
//! binary) are applied over that. [`Settings`] then turns into the structs
//! the library takes ([`server::Config`] and its parts).
//!
//! Secrets are held as [`SecretValue`], which never serialises or prints its
//! content, so `config show` and a stray `{:?}` cannot leak them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::http::HttpConfig;
use crate::pipeline::ceilings::{Ceilings, TenantPolicy, UploadQuota};
use crate::pipeline::dispatch::DispatchConfig;
use crate::pipeline::event::Topics;
use crate::pipeline::publish::kafka::KafkaConfig;
use crate::pipeline::registration::ProviderOptions;
use crate::pipeline::transform::{Limits, RuntimeConfig};
use crate::providers::shopify::oauth::{JwtConfig, ShopifyConfig};
use crate::providers::tiktok_shop::install::TikTokShopConfig;
use crate::server;
use crate::support::telemetry::{LogFormat, TelemetryConfig};
use crate::support::vault::{Secret, Vault};

/// The documented defaults, the base layer of every configuration.
pub const DEFAULT_TOML: &str = include_str!("../config.default.toml");

/// What is shown instead of a secret.
pub const REDACTED: &str = "[redacted]";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "config file {path}: unknown key `{key}` (see `ionflux-gateway config show` for every key)"
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("{0}")]
    Invalid(String),
    #[error("reading {what} {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var}: reading {path}")]
    SecretFile {
        var: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("both {var} and {var}_FILE are set; give the secret one way")]
    SecretTwice { var: &'static str },
}

/// Every setting. Field names are the keys of `config.default.toml`; see
/// that file for what each one does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where `serve` keeps what it writes; empty: the working directory.
    pub data_dir: String,
    /// Empty: `ionflux.db` in `data_dir` (see [`Settings::database_url`]).
    pub database_url: String,
    pub database_max_connections: u32,
    pub master_keys: SecretValue,
    pub master_key_file: String,
    pub master_key_command: String,
    pub listen: SocketAddr,
    /// An address, or "off".
    pub admin_listen: String,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub max_backlog_age: Duration,
    pub admin_token: SecretValue,
    pub service_token: SecretValue,
    pub cache_dir: String,
    pub topic_template: String,
    pub dlq_topic_template: String,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub otlp_endpoint: String,
    pub otlp_service_name: String,
    /// `otlp_endpoint` came from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which
    /// names the traces URL itself; not a key of the file.
    #[serde(skip)]
    pub otlp_endpoint_is_traces_url: bool,
    /// `OTEL_SDK_DISABLED=true`; not a key of the file.
    #[serde(skip)]
    pub otlp_disabled: bool,
    pub http: HttpSettings,
    pub dispatch: DispatchSettings,
    pub limits: LimitSettings,
    pub ceilings: CeilingSettings,
    pub quotas: QuotaSettings,
    pub kafka: KafkaSettings,
    pub shopify: ShopifySettings,
    pub woocommerce: crate::providers::woocommerce::registration::Options,
    pub tiktok_shop: TikTokShopSettings,
    pub connections: ConnectionSettings,
    pub retention: RetentionSettings,
}

/// `[retention]`: each window a duration, or `off` (also `0`): kept for ever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    #[serde(with = "window")]
    pub inbox: Option<Duration>,
    #[serde(with = "window")]
    pub inbox_bodies: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    #[serde(with = "window")]
    pub events: Option<Duration>,
    #[serde(with = "window")]
    pub dead_letters: Option<Duration>,
    #[serde(with = "window")]
    pub resolved_dead_letters: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub batch_size: u32,
}

impl RetentionSettings {
    pub fn config(&self) -> crate::pipeline::prune::RetentionConfig {
        crate::pipeline::prune::RetentionConfig {
            inbox: self.inbox,
            inbox_bodies: self.inbox_bodies,
            dedup_window: self.dedup_window,
            events: self.events,
            dead_letters: self.dead_letters,
            resolved_dead_letters: self.resolved_dead_letters,
            interval: self.interval,
            batch_size: self.batch_size,
        }
    }
}

/// A retention window: a duration, or `off` / `0` for "kept for ever".
pub mod window {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses a window as the file, the environment and the flags write it.
    pub fn parse(text: &str) -> Result<Option<Duration>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(None);
        }
        let d = humantime::parse_duration(text)
            .map_err(|e| format!("{text:?}: {e} (a duration such as \"7d\", or \"off\")"))?;
        Ok((!d.is_zero()).then_some(d))
    }

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokShopSettings {
    pub app_key: String,
    pub app_secret: SecretValue,
    pub service_id: String,
    pub redirect_uri: String,
    pub public_base_url: String,
    pub authorize_url: String,
    pub auth_base_url: String,
    pub open_api_base_url: String,
    pub event_types: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub refresh_lead: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_poll: Duration,
    pub refresh_max_failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    #[serde(with = "humantime_serde")]
    pub previous_secret_window: Duration,
    pub integration_events: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSettings {
    pub enabled: bool,
    pub replica: String,
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
    pub batch_size: i64,
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    pub batch_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub memory_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub cpu: Duration,
    pub output_bytes: usize,
    pub max_events: usize,
    pub log_lines: u32,
}

/// The default ceilings of every workspace (see `ceilings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingSettings {
    #[serde(with = "humantime_serde")]
    pub cpu: Duration,
    pub memory_bytes: usize,
    pub max_events: usize,
    pub output_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub transforms: u64,
    pub transform_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifySettings {
    pub client_id: String,
    pub client_secret: SecretValue,
    pub redirect_uri: String,
    pub public_base_url: String,
    pub scopes: String,
    pub api_version: String,
    pub expiring_tokens: bool,
    pub webhook_topics: Vec<String>,
    pub admin_base_url: String,
    pub authorize_base_url: String,
    pub frontend_redirect: String,
    #[serde(with = "humantime_serde")]
    pub timestamp_window: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_lead: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_poll: Duration,
    pub refresh_max_failures: u32,
    pub jwt_hs256_secret: SecretValue,
    pub jwt_rs256_public_key_file: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_audience_check: bool,
}

/// A secret setting. Serialises as `"[redacted]"` (or `""` when unset, so an
/// operator can still see whether it is set); only [`SecretValue::expose`]
/// gives the value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// None when unset, for the library's `Option<Secret>` fields.
    pub fn to_secret(&self) -> Option<Secret> {
        (!self.0.is_empty()).then(|| Secret::from(self.0.clone()))
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { REDACTED })
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

impl Default for Settings {
    /// The built-in defaults: `config.default.toml`.
    fn default() -> Self {
        toml::from_str(DEFAULT_TOML).expect("config.default.toml is valid (tested)")
    }
}

impl Settings {
    /// The defaults with `file`, if any, merged over them.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_layers(&text, path)
    }

    /// The defaults with the TOML document `text` merged over them; `path`
    /// names it in errors.
    pub fn from_layers(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let user: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let mut merged: toml::Table = toml::from_str(DEFAULT_TOML).expect("valid defaults");
        merge(&mut merged, user, "").map_err(|key| ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key,
        })?;
        // Through text again rather than from the table, so that a type
        // error quotes the offending line, key included.
        let merged = toml::to_string(&merged).expect("a table serialises");
        toml::from_str(&merged).map_err(|e: toml::de::Error| parse_error(e.to_string()))
    }

    /// The effective settings as TOML, secrets redacted: what `config show`
    /// prints. A password in the database URL and librdkafka properties
    /// named like passwords or secrets are redacted too.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url_password(&self.database_url());
        for (key, value) in &mut shown.kafka.properties {
            let key = key.to_ascii_lowercase();
            if key.contains("password") || key.contains("secret") {
                *value = REDACTED.into();
            }
        }
        toml::to_string(&shown).expect("settings serialise")
    }

    /// The OpenTelemetry SDK's variables, over the file and under our own
    /// variables and flags (applied after this).
    pub fn apply_otel_env(&mut self, env: &crate::support::telemetry::OtelEnv) {
        if let Some(url) = &env.traces_endpoint {
            self.otlp_endpoint = url.clone();
            self.otlp_endpoint_is_traces_url = true;
        } else if let Some(url) = &env.endpoint {
            self.otlp_endpoint = url.clone();
            self.otlp_endpoint_is_traces_url = false;
        }
        if let Some(name) = &env.service_name {
            self.otlp_service_name = name.clone();
        }
        self.otlp_disabled = env.sdk_disabled;
    }

    /// Whole-value checks that no single key's type can express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pool = RuntimeConfig::default().pool_instances as usize;
        if self.dispatch.concurrency > pool {
            return Err(ConfigError::Invalid(format!(
                "dispatch.concurrency is {}, more than the {pool} transform instances",
                self.dispatch.concurrency
            )));
        }
        if self.dispatch.batch_size < 1 {
            return Err(ConfigError::Invalid(
                "dispatch.batch_size must be at least 1".into(),
            ));
        }
        self.admin_listen()?;
        if self.database_max_connections < 1 {
            return Err(ConfigError::Invalid(
                "database_max_connections must be at least 1".into(),
            ));
        }
        let c = &self.ceilings;
        if c.cpu.is_zero() || c.memory_bytes == 0 || c.max_events == 0 || c.output_bytes == 0 {
            return Err(ConfigError::Invalid(
                "every [ceilings] value must be above zero".into(),
            ));
        }
        let l = &self.limits;
        let above = [
            ("cpu", l.cpu > c.cpu),
            ("memory_bytes", l.memory_bytes > c.memory_bytes),
            ("max_events", l.max_events > c.max_events),
            ("output_bytes", l.output_bytes > c.output_bytes),
        ];
        if let Some((key, _)) = above.iter().find(|(_, above)| *above) {
            // Else every call would quietly run under the ceiling instead.
            return Err(ConfigError::Invalid(format!(
                "limits.{key} is above ceilings.{key}: the default limits must fit the \
                 default ceilings"
            )));
        }
        if self.dispatch.batch_bytes == 0 {
            return Err(ConfigError::Invalid(
                "dispatch.batch_bytes must be above zero".into(),
            ));
        }
        let h = &self.http;
        if h.max_connections < 1 || h.max_connections > u32::MAX as usize {
            return Err(ConfigError::Invalid(
                "http.max_connections must be at least 1 (and fit in 32 bits)".into(),
            ));
        }
        if h.http2_max_concurrent_streams < 1 {
            return Err(ConfigError::Invalid(
                "http.http2_max_concurrent_streams must be at least 1".into(),
            ));
        }
        // Zero would close every connection at once; unbounded is what
        // these settings exist to prevent.
        for (key, value) in [
            ("handshake_timeout", h.handshake_timeout),
            ("header_timeout", h.header_timeout),
            ("idle_timeout", h.idle_timeout),
            ("webhook_timeout", h.webhook_timeout),
            ("http2_keep_alive_timeout", h.http2_keep_alive_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "http.{key} must be longer than 0s"
                )));
            }
        }
        Ok(())
    }

    /// The admin listener's address; None when it is "off".
    pub fn admin_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.admin_listen.trim() {
            "off" | "" => Ok(None),
            addr => addr.parse().map(Some).map_err(|_| {
                ConfigError::Invalid(format!(
                    "admin_listen must be an address like 127.0.0.1:9090, or \"off\"; got {addr:?}"
                ))
            }),
        }
    }

    /// The data directory given (`data_dir`), if any.
    fn data_dir_set(&self) -> Option<PathBuf> {
        non_empty(&self.data_dir).map(PathBuf::from)
    }

    /// The data directory: `data_dir`, else the working directory (`.`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir_set().unwrap_or_else(|| PathBuf::from("."))
    }

    /// The configured database, else the SQLite file `ionflux.db` in the
    /// data directory.
    pub fn database_url(&self) -> String {
        match non_empty(&self.database_url) {
            Some(url) => url.to_owned(),
            None => match self.data_dir_set() {
                Some(dir) => format!("sqlite://{}", dir.join("ionflux.db").display()),
                None => "sqlite://ionflux.db".to_owned(),
            },
        }
    }

    /// Writes the derived database URL into `database_url`, so that what is
    /// shown and used is one value. Called once every layer is applied.
    pub fn resolve_paths(&mut self) {
        self.database_url = self.database_url();
    }

    /// The folder of the SQLite database.
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        sqlite_dir(&self.database_url())
    }

    /// The configured master key file; else `ionflux.key` in the data
    /// directory when one is given, else beside the SQLite database. None
    /// for PostgreSQL without either setting: replicas must share one key,
    /// so none is made up per host.
    pub fn master_key_file(&self) -> Option<PathBuf> {
        if let Some(file) = non_empty(&self.master_key_file) {
            return Some(PathBuf::from(file));
        }
        let dir = self.sqlite_dir()?;
        Some(self.data_dir_set().unwrap_or(dir).join("ionflux.key"))
    }

    /// The configured transform cache; else `ionflux-cache` in the data
    /// directory when one is given, else beside the SQLite database.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        non_empty(&self.cache_dir)
            .map(PathBuf::from)
            .or_else(|| self.data_dir_set().map(|d| d.join("ionflux-cache")))
            .or_else(|| self.sqlite_dir().map(|d| d.join("ionflux-cache")))
    }

    pub fn topics(&self) -> Topics {
        Topics {
            events: self.topic_template.clone(),
            dead_letters: self.dlq_topic_template.clone(),
        }
    }

    pub fn limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            memory_bytes: l.memory_bytes,
            cpu: l.cpu,
            output_bytes: l.output_bytes,
            max_events: l.max_events,
            log_lines: l.log_lines,
        }
    }

    pub fn http(&self) -> HttpConfig {
        let h = &self.http;
        HttpConfig {
            max_connections: h.max_connections,
            handshake_timeout: h.handshake_timeout,
            header_timeout: h.header_timeout,
            idle_timeout: h.idle_timeout,
            webhook_timeout: h.webhook_timeout,
            http2_keep_alive_interval: (!h.http2_keep_alive_interval.is_zero())
                .then_some(h.http2_keep_alive_interval),
            http2_keep_alive_timeout: h.http2_keep_alive_timeout,
            http2_max_concurrent_streams: h.http2_max_concurrent_streams,
        }
    }

    pub fn dispatch(&self) -> DispatchConfig {
        let d = &self.dispatch;
        let base = DispatchConfig::default();
        DispatchConfig {
            enabled: d.enabled,
            batch_size: d.batch_size,
            // Empty is filled in at start, when the listening port is known.
            replica: d.replica.clone(),
            lease: d.claim_lease,
            idle_poll: d.idle_poll,
            min_backoff: d.min_backoff,
            max_backoff: d.max_backoff,
            // 0 keeps the library's choice: one per CPU.
            concurrency: if d.concurrency == 0 {
                base.concurrency
            } else {
                d.concurrency
            },
            limits: self.limits(),
            batch_bytes: d.batch_bytes,
            tenants: self.tenants(),
            ..base
        }
    }

    /// The default ceilings and the upload quota of every workspace.
    pub fn tenants(&self) -> TenantPolicy {
        let (c, q) = (&self.ceilings, &self.quotas);
        TenantPolicy {
            ceilings: Ceilings {
                cpu_ms: u64::try_from(c.cpu.as_millis()).unwrap_or(u64::MAX),
                memory_bytes: c.memory_bytes,
                max_events: c.max_events,
                output_bytes: c.output_bytes,
            },
            upload_quota: UploadQuota {
                transforms: q.transforms,
                bytes: q.transform_bytes,
            },
        }
    }

    /// None: publish to the embedded event log.
    pub fn kafka(&self) -> Option<KafkaConfig> {
        let k = &self.kafka;
        let brokers = non_empty(&k.brokers)?;
        Some(KafkaConfig {
            message_timeout: k.message_timeout,
            max_record_bytes: crate::pipeline::publish::kafka::largest_record_bytes(
                self.max_body_bytes,
                self.ceilings.output_bytes,
            ),
            extra: k
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..KafkaConfig::new(brokers)
        })
    }

    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: self.cache_dir(),
            ..RuntimeConfig::default()
        }
    }

    /// None without a client id: no OAuth install flow.
    pub fn shopify(&self) -> Result<Option<ShopifyConfig>, ConfigError> {
        let s = &self.shopify;
        let Some(client_id) = non_empty(&s.client_id) else {
            return Ok(None);
        };
        let need = |value: &str, key: &str, env: &str| {
            non_empty(value).map(str::to_owned).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "shopify.{key} (or {env}) is required with shopify.client_id"
                ))
            })
        };
        if s.client_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "shopify.client_secret (or IONFLUX_SHOPIFY_CLIENT_SECRET) is required with \
                 shopify.client_id"
                    .into(),
            ));
        }
        let mut cfg = ShopifyConfig::new(
            client_id,
            Secret::from(s.client_secret.expose().to_owned()),
            need(
                &s.redirect_uri,
                "redirect_uri",
                "IONFLUX_SHOPIFY_REDIRECT_URI",
            )?,
            need(
                &s.public_base_url,
                "public_base_url",
                "IONFLUX_PUBLIC_BASE_URL",
            )?,
        );
        cfg.scopes = s.scopes.clone();
        cfg.api_version = s.api_version.clone();
        cfg.expiring_tokens = s.expiring_tokens;
        cfg.webhook_topics = s.webhook_topics.clone();
        cfg.admin_base_url = s.admin_base_url.clone();
        cfg.authorize_base_url = s.authorize_base_url.clone();
        cfg.frontend_redirect = non_empty(&s.frontend_redirect).map(str::to_owned);
        cfg.timestamp_window = s.timestamp_window;
        cfg.refresh.lead_time = s.refresh_lead;
        cfg.refresh.poll_interval = s.refresh_poll;
        cfg.refresh.max_failures = s.refresh_max_failures;
        cfg.jwt = self.jwt()?;
        Ok(Some(cfg))
    }

    /// How install initiators are authenticated: the user service's JWTs
    /// (`shopify.jwt_*`), for every platform's install.
    fn jwt(&self) -> Result<JwtConfig, ConfigError> {
        let s = &self.shopify;
        let rs256_public_key_pem = match non_empty(&s.jwt_rs256_public_key_file) {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        what: "the JWT public key",
                        path: path.into(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let jwt = JwtConfig {
            hs256_secret: s.jwt_hs256_secret.to_secret(),
            rs256_public_key_pem,
            issuer: non_empty(&s.jwt_issuer).map(str::to_owned),
            audience: non_empty(&s.jwt_audience).map(str::to_owned),
            audience_check: s.jwt_audience_check,
            ..JwtConfig::default()
        };
        let has_key = jwt.hs256_secret.is_some() || jwt.rs256_public_key_pem.is_some();
        if has_key && jwt.audience_check && jwt.audience.is_none() {
            return Err(ConfigError::Invalid(
                "shopify.jwt_audience (IONFLUX_JWT_AUDIENCE, --jwt-audience) is required with \
                 a JWT key: set it to the `aud` the user service puts in tokens for this \
                 gateway, or accept any audience with shopify.jwt_audience_check = false \
                 (IONFLUX_JWT_AUDIENCE_CHECK, --jwt-audience-check=false)"
                    .into(),
            ));
        }
        Ok(jwt)
    }

    /// None without an app key: no TikTok Shop install flow.
    pub fn tiktok_shop(&self) -> Result<Option<TikTokShopConfig>, ConfigError> {
        let t = &self.tiktok_shop;
        let Some(app_key) = non_empty(&t.app_key) else {
            return Ok(None);
        };
        let need = |value: &str, key: &str, env: &str| {
            non_empty(value).map(str::to_owned).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "tiktok_shop.{key} (or {env}) is required with tiktok_shop.app_key"
                ))
            })
        };
        let app_secret = need(
            t.app_secret.expose(),
            "app_secret",
            "IONFLUX_TIKTOK_SHOP_APP_SECRET",
        )?;
        let public_base_url = non_empty(&t.public_base_url)
            .or(non_empty(&self.shopify.public_base_url))
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "tiktok_shop.public_base_url (or IONFLUX_TIKTOK_SHOP_PUBLIC_BASE_URL, or \
                     shopify.public_base_url) is required with tiktok_shop.app_key"
                        .into(),
                )
            })?;
        let mut cfg = TikTokShopConfig::new(
            app_key,
            Secret::from(app_secret),
            need(
                &t.service_id,
                "service_id",
                "IONFLUX_TIKTOK_SHOP_SERVICE_ID",
            )?,
            need(
                &t.redirect_uri,
                "redirect_uri",
                "IONFLUX_TIKTOK_SHOP_REDIRECT_URI",
            )?,
            public_base_url,
        );
        cfg.authorize_url = t.authorize_url.clone();
        cfg.auth_base_url = t.auth_base_url.clone();
        cfg.open_api_base_url = t.open_api_base_url.clone();
        cfg.event_types = t.event_types.clone();
        cfg.refresh.lead_time = t.refresh_lead;
        cfg.refresh.poll_interval = t.refresh_poll;
        cfg.refresh.max_failures = t.refresh_max_failures;
        cfg.jwt = self.jwt()?;
        Ok(Some(cfg))
    }

    /// Logging, and trace export when `export` (only `serve` exports: a
    /// one-shot command's spans are noise to a collector).
    pub fn telemetry(&self, export: bool) -> TelemetryConfig {
        TelemetryConfig {
            format: self.log_format,
            filter: self.log_filter.clone(),
            otlp_endpoint: non_empty(&self.otlp_endpoint)
                .filter(|_| export && !self.otlp_disabled)
                .map(|url| {
                    if self.otlp_endpoint_is_traces_url {
                        url.to_owned()
                    } else {
                        crate::support::telemetry::traces_url(url)
                    }
                }),
            service_name: self.otlp_service_name.clone(),
        }
    }

    /// Everything `server::start` takes; the vault is opened by the caller.
    pub fn server_config(&self, vault: Arc<Vault>) -> Result<server::Config, ConfigError> {
        self.validate()?;
        Ok(server::Config {
            database_url: self.database_url(),
            listen: self.listen,
            admin_listen: self.admin_listen()?,
            kafka: self.kafka(),
            topics: self.topics(),
            max_body_bytes: self.max_body_bytes,
            http: self.http(),
            vault,
            admin_token: self.admin_token.to_secret(),
            dispatch: self.dispatch(),
            runtime: self.runtime(),
            shopify: self.shopify()?,
            tiktok_shop: self.tiktok_shop()?,
            service_token: self.service_token.to_secret(),
            max_backlog_age: (!self.max_backlog_age.is_zero()).then_some(self.max_backlog_age),
            database_max_connections: self.database_max_connections,
            previous_secret_window: self.connections.previous_secret_window,
            integration_events: self.connections.integration_events,
            public_base_url: self.public_base_url(),
            provider_options: self.provider_options(),
            retention: self.retention.config(),
        })
    }

    /// `shopify.public_base_url` when set: the base of every webhook
    /// address the gateway tells (it has no Shopify app to need one).
    pub fn public_base_url(&self) -> Option<String> {
        non_empty(&self.shopify.public_base_url).map(str::to_owned)
    }

    /// The providers' own sections, for what registers their webhooks.
    pub fn provider_options(&self) -> ProviderOptions {
        ProviderOptions::new([(
            "woocommerce".to_string(),
            serde_json::to_value(&self.woocommerce).expect("the section serialises"),
        )])
    }
}

/// Sets one secret setting.
type SetSecret = fn(&mut Settings, String);

/// The secret settings, by their environment variable. Each may also be
/// given as `VARIABLE_FILE=/path` (as Docker and Kubernetes mount secrets):
/// the file's content, trailing newlines trimmed, at the variables' layer.
pub const SECRET_VARIABLES: &[(&str, SetSecret)] = &[
    ("IONFLUX_DATABASE_URL", |s, v| s.database_url = v),
    ("IONFLUX_MASTER_KEYS", |s, v| s.master_keys = v.into()),
    ("IONFLUX_ADMIN_TOKEN", |s, v| s.admin_token = v.into()),
    ("IONFLUX_SERVICE_TOKEN", |s, v| s.service_token = v.into()),
    ("IONFLUX_SHOPIFY_CLIENT_SECRET", |s, v| {
        s.shopify.client_secret = v.into()
    }),
    ("IONFLUX_TIKTOK_SHOP_APP_SECRET", |s, v| {
        s.tiktok_shop.app_secret = v.into()
    }),
    ("IONFLUX_JWT_HS256_SECRET", |s, v| {
        s.shopify.jwt_hs256_secret = v.into()
    }),
];

impl Settings {
    /// Applies every `IONFLUX_…_FILE` variable of [`SECRET_VARIABLES`] that
    /// `var` (the environment, in the binary) has. Giving a secret both as
    /// the variable and as its file is an error: one of them would be
    /// silently ignored.
    pub fn apply_secret_files(
        &mut self,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<(), ConfigError> {
        for (name, set) in SECRET_VARIABLES {
            let file_var = format!("{name}_FILE");
            let Some(path) = var(&file_var).filter(|p| !p.is_empty()) else {
                continue;
            };
            if var(name).is_some_and(|v| !v.is_empty()) {
                return Err(ConfigError::SecretTwice { var: name });
            }
            let path = PathBuf::from(path);
            let text =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                    var: file_var,
                    path: path.clone(),
                    source,
                })?;
            set(self, text.trim_end_matches(['\n', '\r']).to_owned());
        }
        Ok(())
    }
}

/// Merges `over` into `base`, key by key. Every key must already be in
/// `base`; a table that is empty there (a free-form map such as
/// `kafka.properties`) is taken whole. Err is the dotted path of the first
/// unknown key.
fn merge(base: &mut toml::Table, over: toml::Table, prefix: &str) -> Result<(), String> {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) if !b.is_empty() => {
                merge(b, o, &path)?;
            }
            (Some(slot), value) => *slot = value,
            (None, _) => return Err(path),
        }
    }
    Ok(())
}

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// The folder of a SQLite database file, for files that belong beside it.
pub fn sqlite_dir(url: &str) -> Option<PathBuf> {
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

/// `postgres://user:pw@host/db?password=pw` with both passwords replaced.
pub fn redact_url_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, REDACTED);
            }
        }
    }
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.replace_range(q + 1.., &query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_with_every_field_present() {
        // deny_unknown_fields refuses extra keys and no field has a serde
        // default, so a key missing from the file fails here too.
        let s: Settings = toml::from_str(DEFAULT_TOML).unwrap();
        s.validate().unwrap();
        // And every key the file has is one that serialises back: nothing
        // in the file is ignored.
        let file: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let back: toml::Table = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(keys(&file, ""), keys(&back, ""));
    }

    fn keys(t: &toml::Table, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in t {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(inner) if !inner.is_empty() => {
                    out.extend(keys(inner, &format!("{path}.")));
                }
                _ => out.push(path),
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_key_says_its_environment_variable() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = line.contains(" = ") && !line.starts_with('#') && !line.starts_with(' ');
            if is_key {
                assert!(
                    lines[i - 1].starts_with("# env: IONFLUX_"),
                    "line {}: `{line}` has no `# env:` comment above it",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn the_file_matches_the_library_defaults() {
        // The file is the documentation; when a library default changes, the
        // file must say so.
        let s = Settings::default();
        assert_eq!(
            s.retention.config(),
            crate::pipeline::prune::RetentionConfig::default()
        );
        assert_eq!(
            s.woocommerce,
            crate::providers::woocommerce::registration::Options::default()
        );
        let limits = Limits::default();
        assert_eq!(s.limits().memory_bytes, limits.memory_bytes);
        assert_eq!(s.limits().cpu, limits.cpu);
        assert_eq!(s.limits().output_bytes, limits.output_bytes);
        assert_eq!(s.limits().max_events, limits.max_events);
        assert_eq!(s.limits().log_lines, limits.log_lines);
        let d = DispatchConfig::default();
        assert_eq!(s.dispatch.enabled, d.enabled);
        assert_eq!(s.dispatch.batch_size, d.batch_size);
        assert_eq!(s.dispatch.claim_lease, d.lease);
        assert_eq!(s.dispatch.idle_poll, d.idle_poll);
        assert_eq!(s.dispatch.min_backoff, d.min_backoff);
        assert_eq!(s.dispatch.max_backoff, d.max_backoff);
        assert_eq!(s.dispatch().concurrency, d.concurrency);
        assert_eq!(s.dispatch.batch_bytes, d.batch_bytes);
        assert_eq!(s.tenants(), TenantPolicy::default());
        assert!(s.dispatch.replica.is_empty());
        let k = KafkaConfig::new("b:9092");
        assert_eq!(s.kafka.message_timeout, k.message_timeout);
        let mut with_kafka = s.clone();
        with_kafka.kafka.brokers = "b:9092".into();
        let from_file = with_kafka.kafka().expect("brokers are set");
        assert_eq!(from_file.max_record_bytes, k.max_record_bytes);
        assert_eq!(s.max_body_bytes, crate::api::http::DEFAULT_MAX_BODY_BYTES);
        let h = HttpConfig::default();
        assert_eq!(s.http().max_connections, h.max_connections);
        assert_eq!(s.http().handshake_timeout, h.handshake_timeout);
        assert_eq!(s.http().header_timeout, h.header_timeout);
        assert_eq!(s.http().idle_timeout, h.idle_timeout);
        assert_eq!(s.http().webhook_timeout, h.webhook_timeout);
        assert_eq!(
            s.http().http2_keep_alive_interval,
            h.http2_keep_alive_interval
        );
        assert_eq!(
            s.http().http2_keep_alive_timeout,
            h.http2_keep_alive_timeout
        );
        assert_eq!(
            s.http().http2_max_concurrent_streams,
            h.http2_max_concurrent_streams
        );
        assert_eq!(
            s.topic_template,
            crate::pipeline::event::DEFAULT_TOPIC_TEMPLATE
        );
        assert_eq!(
            s.dlq_topic_template,
            crate::pipeline::event::DEFAULT_DLQ_TEMPLATE
        );
        let shop = ShopifyConfig::new("id", Secret::from("x".to_string()), "u", "p");
        assert_eq!(s.shopify.scopes, shop.scopes);
        assert_eq!(s.shopify.api_version, shop.api_version);
        assert_eq!(s.shopify.expiring_tokens, shop.expiring_tokens);
        assert_eq!(s.shopify.webhook_topics, shop.webhook_topics);
        assert_eq!(s.shopify.admin_base_url, shop.admin_base_url);
        assert_eq!(s.shopify.authorize_base_url, shop.authorize_base_url);
        assert_eq!(s.shopify.timestamp_window, shop.timestamp_window);
        assert_eq!(s.shopify.refresh_lead, shop.refresh.lead_time);
        assert_eq!(s.shopify.refresh_poll, shop.refresh.poll_interval);
        assert_eq!(s.shopify.refresh_max_failures, shop.refresh.max_failures);
        assert_eq!(
            s.connections.previous_secret_window,
            crate::pipeline::connection::DEFAULT_PREVIOUS_SECRET_WINDOW
        );
        assert_eq!(s.shopify.jwt_audience_check, shop.jwt.audience_check);
    }

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let s = Settings::from_layers(
            "listen = \"0.0.0.0:9000\"\n[dispatch]\nclaim_lease = \"2m\"\n\
             [kafka.properties]\n\"sasl.password\" = \"pw\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.dispatch.claim_lease, Duration::from_secs(120));
        assert_eq!(s.dispatch.batch_size, 64);
        assert_eq!(s.kafka.properties["sasl.password"], "pw");
        assert!(!s.to_redacted_toml().contains("pw\""));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Settings::from_layers("[dispatch]\nclaim_leese = \"1s\"\n", Path::new("t.toml"))
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown key `dispatch.claim_leese`"),
            "{e}"
        );
        let e = Settings::from_layers("listen = 5\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e =
            Settings::from_layers("max_backlog_age = \"soon\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("max_backlog_age"), "{e}");
    }

    #[test]
    fn secrets_never_serialise() {
        let mut s = Settings {
            admin_token: SecretValue::from("tok-123".to_string()),
            database_url: "postgres://gw:pw-789@db:5432/gw?sslmode=require&password=pw-789".into(),
            ..Settings::default()
        };
        s.shopify.client_secret = SecretValue::from("shh-456".to_string());
        let shown = s.to_redacted_toml();
        for secret in ["tok-123", "shh-456", "pw-789"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for secret in ["tok-123", "shh-456"] {
            assert!(!format!("{s:?}").contains(secret), "{secret} in Debug");
        }
        assert!(shown.contains("postgres://gw:[redacted]@db:5432/gw?sslmode=require"));
        assert!(shown.contains("admin_token = \"[redacted]\""));
        assert!(shown.contains("service_token = \"\""));
    }

    #[test]
    fn the_data_dir_holds_what_serve_writes_unless_told_otherwise() {
        let mut s = Settings::default();
        assert_eq!(s.database_url(), "sqlite://ionflux.db");
        assert_eq!(s.cache_dir(), Some(PathBuf::from("./ionflux-cache")));
        s.data_dir = "/var/lib/ionflux".into();
        assert_eq!(s.database_url(), "sqlite:///var/lib/ionflux/ionflux.db");
        let key = PathBuf::from("/var/lib/ionflux/ionflux.key");
        assert_eq!(s.master_key_file(), Some(key.clone()));
        let cache = PathBuf::from("/var/lib/ionflux/ionflux-cache");
        assert_eq!(s.cache_dir(), Some(cache.clone()));
        // Explicit settings win.
        s.database_url = "sqlite:///srv/gw.db".into();
        assert_eq!(s.database_url(), "sqlite:///srv/gw.db");
        assert_eq!(s.master_key_file(), Some(key));
        s.master_key_file = "/etc/ionflux/master.key".into();
        s.cache_dir = "/cache".into();
        assert_eq!(s.master_key_file(), Some("/etc/ionflux/master.key".into()));
        assert_eq!(s.cache_dir(), Some("/cache".into()));
        // PostgreSQL: the cache may be per host, the key may not.
        s.master_key_file = String::new();
        s.cache_dir = String::new();
        s.database_url = "postgres://db/gw".into();
        assert_eq!(s.master_key_file(), None);
        assert_eq!(s.cache_dir(), Some(cache));
        s.resolve_paths();
        assert_eq!(s.database_url, "postgres://db/gw");
    }

    #[test]
    fn a_secret_file_is_read_trimmed_and_not_with_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok-1\n\n").unwrap();
        let env = |pairs: Vec<(&'static str, std::ffi::OsString)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        let mut s = Settings::default();
        s.apply_secret_files(env(vec![("IONFLUX_ADMIN_TOKEN_FILE", file.clone().into())]))
            .unwrap();
        assert_eq!(s.admin_token.expose(), "tok-1");
        let e = s
            .apply_secret_files(env(vec![
                ("IONFLUX_JWT_HS256_SECRET_FILE", file.into()),
                ("IONFLUX_JWT_HS256_SECRET", "x".into()),
            ]))
            .unwrap_err();
        assert!(
            e.to_string().contains("IONFLUX_JWT_HS256_SECRET_FILE"),
            "{e}"
        );
    }

    #[test]
    fn unset_and_zero_mean_off() {
        let mut s = Settings::default();
        assert!(s.kafka().is_none());
        assert!(s.shopify().unwrap().is_none());
        s.max_backlog_age = Duration::ZERO;
        let vault = Arc::new(Vault::from_spec(&format!("k1:{}", "A".repeat(43) + "=")).unwrap());
        assert!(s.server_config(vault).unwrap().max_backlog_age.is_none());
        assert_eq!(s.master_key_file(), Some(PathBuf::from("./ionflux.key")));
        s.shopify.client_id = "id".into();
        assert!(
            s.shopify()
                .unwrap_err()
                .to_string()
                .contains("client_secret")
        );
    }

    #[test]
    fn a_jwt_key_needs_an_audience_unless_the_check_is_off() {
        let mut s = Settings::default();
        s.shopify.client_id = "id".into();
        s.shopify.client_secret = SecretValue::from("shh".to_string());
        s.shopify.redirect_uri =
            "https://gw.example.test/integrations/shopify/auth/callback".into();
        s.shopify.public_base_url = "https://gw.example.test".into();
        // No JWT key: nothing to check (the library refuses to start anyway).
        assert!(s.shopify().is_ok());
        s.shopify.jwt_hs256_secret = SecretValue::from("devsecret".to_string());
        let e = s.shopify().unwrap_err().to_string();
        assert!(e.contains("--jwt-audience"), "{e}");
        assert!(e.contains("--jwt-audience-check=false"), "{e}");
        s.shopify.jwt_audience_check = false;
        let cfg = s.shopify().unwrap().unwrap();
        assert!(!cfg.jwt.audience_check && cfg.jwt.audience.is_none());
        s.shopify.jwt_audience_check = true;
        s.shopify.jwt_audience = "ionflux-gateway".into();
        let cfg = s.shopify().unwrap().unwrap();
        assert_eq!(cfg.jwt.audience.as_deref(), Some("ionflux-gateway"));
        assert!(cfg.jwt.audience_check);
    }
}
