//! Where the process's `tracing` data goes: log lines on stderr (text or
//! JSON) and, when a collector is configured, trace spans exported over
//! OTLP/HTTP with protobuf bodies.
//!
//! The exporter is the SDK's batch processor on its own thread with a
//! blocking HTTP client, so export never competes with request handling for
//! the tokio runtime and still works while the runtime shuts down.
//! [`Telemetry`] flushes what is buffered when it is shut down or dropped.
//!
//! It also answers which trace a webhook's spans belong to: the intake
//! request's OTLP trace id is the inbox row's `trace_id`, and the
//! dispatcher's spans, which run later (maybe in another replica), are put
//! back into that trace from it ([`continue_trace`]). Records leave with a
//! W3C `traceparent` ([`traceparent`]) so a consumer can go on from there.

use std::io::IsTerminal;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The path of the traces signal under an OTLP/HTTP base URL.
const TRACES_PATH: &str = "/v1/traces";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    /// `tracing` env-filter directives; applies to exported spans too.
    pub filter: String,
    /// The OTLP/HTTP traces URL, used as it is ([`traces_url`] makes one
    /// from a base URL). None: nothing is exported.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {filter:?}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("OTLP exporter for {endpoint}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("installing the tracing subscriber")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed pipeline. Keep it until the process ends, then call
/// [`Telemetry::shutdown`] (dropping it does the same).
#[must_use = "dropping it stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(mut self) {
        self.shutdown_provider();
    }

    fn shutdown_provider(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Logging is still installed, but a failure here has no one
            // left to act on it but the operator reading stderr.
            if let Err(e) = provider.shutdown() {
                eprintln!("ionflux-gateway: flushing trace export failed: {e}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown_provider();
    }
}

/// Installs the global subscriber. Call once, before any thread logs, and
/// outside any tokio runtime: the HTTP client of the exporter is a blocking
/// one.
pub fn init(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(&cfg.filter).map_err(|source| TelemetryError::Filter {
        filter: cfg.filter.clone(),
        source,
    })?;
    // Logs go to stderr so that JSON printed on stdout stays parseable;
    // colours only for a person at a terminal, not for a log collector.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match cfg.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let provider = cfg
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| provider(endpoint, &cfg.service_name))
        .transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(env!("CARGO_PKG_NAME"))));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(Telemetry { provider })
}

fn provider(url: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let url = url.trim().to_owned();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: url,
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The OTLP/HTTP traces URL for a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read; a URL that already names the traces path is taken as it is.
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.ends_with(TRACES_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{TRACES_PATH}")
    }
}

/// The OpenTelemetry SDK's own environment variables that the gateway
/// honours, so a deployment configured for OpenTelemetry needs nothing of
/// ours. Where they stand among the other layers: `config.default.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL, used as it is.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: a base URL, `/v1/traces` appended.
    pub endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: no export at all, whatever names a collector.
    pub sdk_disabled: bool,
}

impl OtelEnv {
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Empty values count as unset, as the specification asks.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        OtelEnv {
            traces_endpoint: get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            service_name: get("OTEL_SERVICE_NAME"),
            // The specification's booleans: only "true", in any case.
            sdk_disabled: get("OTEL_SDK_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        }
    }

    /// The traces URL these variables name, if any: the signal's own
    /// variable over the general one, as every OpenTelemetry SDK reads them.
    pub fn traces_url(&self) -> Option<String> {
        self.traces_endpoint
            .as_ref()
            .map(|url| url.trim().to_owned())
            .or_else(|| self.endpoint.as_deref().map(traces_url))
    }
}

/// The OTLP trace id of the current span, as 32 lowercase hex digits, or a
/// fresh random one when no span is exported (no collector, or filtered
/// out). Stored with a webhook as its `trace_id`: later spans of the same
/// webhook are put into this trace by [`continue_trace`].
pub fn current_trace_id() -> String {
    let context = tracing::Span::current().context();
    let span = context.span();
    let id = span.span_context().trace_id();
    if id == TraceId::INVALID {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        id.to_string()
    }
}

/// Puts `span`, which must not have been entered yet, into the trace of a
/// stored `trace_id`, so that the collector sees it in the same trace as
/// the request that brought the webhook in. The request's own span id is
/// not stored, so `span` becomes a second root of that trace rather than a
/// child of the request's span. A no-op without export, or when `trace_id`
/// is not an OTLP trace id.
pub fn continue_trace(span: &tracing::Span, trace_id: &str) {
    let Some(trace_id) = parse_trace_id(trace_id) else {
        return;
    };
    // An invalid span id makes the SDK take the trace id and nothing else:
    // no parent span id is exported.
    let parent = SpanContext::new(
        trace_id,
        SpanId::INVALID,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    // Without the OpenTelemetry layer there is nothing to join.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// `span` as a W3C `traceparent` value, when it is exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| format_traceparent(sc.trace_id(), sc.span_id(), sc.trace_flags()))
}

/// The parent a record carries when no span of ours is exported: the stored
/// trace id and a span id derived from the record's `event_id`, so a
/// consumer still joins the webhook's trace and a retry rebuilds the same
/// header. Flagged sampled: we made no sampling decision, and a consumer
/// that samples by its parent should not drop the trace because of us.
pub fn stand_in_traceparent(trace_id: &str, event_id: &uuid::Uuid) -> Option<String> {
    let trace_id = parse_trace_id(trace_id)?;
    // The low half of a v7 id is its hashed part.
    let span_id = SpanId::from((event_id.as_u128() as u64).max(1));
    Some(format_traceparent(trace_id, span_id, TraceFlags::SAMPLED))
}

fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> String {
    format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8())
}

/// The trace and parent span of a W3C `traceparent` (version 00), as a
/// remote parent context; None when it is malformed or all-zero.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::Context> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = parse_trace_id(trace_id)?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(sc))
}

/// 32 lowercase hex digits, not all zero: the form both OTLP and
/// `traceparent` use, and the form [`current_trace_id`] stores.
fn parse_trace_id(hex: &str) -> Option<TraceId> {
    let valid = hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid
        .then(|| TraceId::from_hex(hex).ok())
        .flatten()
        .filter(|id| *id != TraceId::INVALID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_variables_are_read_as_the_specification_says() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            OtelEnv::from_lookup(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(env(&[]), OtelEnv::default());
        assert_eq!(env(&[]).traces_url(), None);
        let base = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        assert_eq!(
            base.traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        // The signal's own variable wins and is used as it is.
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://v/api/spans"),
        ]);
        assert_eq!(both.traces_url().as_deref(), Some("https://v/api/spans"));
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).traces_url(),
            None
        );
        assert!(env(&[("OTEL_SDK_DISABLED", "TRUE")]).sdk_disabled);
        assert!(!env(&[("OTEL_SDK_DISABLED", "1")]).sdk_disabled);
        assert_eq!(
            env(&[("OTEL_SERVICE_NAME", "svc")]).service_name.as_deref(),
            Some("svc")
        );
    }

    #[test]
    fn traceparents_round_trip_and_stand_ins_are_stable() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let event = uuid::Uuid::now_v7();
        let header = stand_in_traceparent(trace, &event).unwrap();
        assert_eq!(header, stand_in_traceparent(trace, &event).unwrap());
        assert!(header.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(header.ends_with("-01"));
        let context = parse_traceparent(&header).unwrap();
        let span = context.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), trace);
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            format_traceparent(sc.trace_id(), sc.span_id(), sc.trace_flags()),
            header
        );
        for bad in [
            "dry-run",
            "",
            "00000000000000000000000000000000",
            "0AF7651916CD43DD8448EB211C80319C",
        ] {
            assert_eq!(stand_in_traceparent(bad, &event), None, "{bad}");
        }
        for bad in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(
            traces_url("http://c:4318"),
            "http://c:4318/v1/traces".to_string()
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/otel/v1/traces/"),
            "https://c/otel/v1/traces"
        );
    }
}
