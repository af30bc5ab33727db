//! Where the process's `tracing` data goes: log lines on stderr (text or
//! JSON) and, when a collector is configured, trace spans exported over
//! OTLP/HTTP with protobuf bodies.
//!
//! The exporter is the SDK's batch processor on its own thread with a
//! blocking HTTP client, so export never competes with request handling for
//! the tokio runtime and still works while the runtime shuts down.
//! [`Telemetry`] flushes what is buffered when it is shut down or dropped.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
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
    /// OTLP/HTTP base URL (`http://collector:4318`) or the full traces URL.
    /// None: nothing is exported.
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

fn provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let url = traces_url(endpoint);
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
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.ends_with(TRACES_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{TRACES_PATH}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
