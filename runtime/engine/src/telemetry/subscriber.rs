//! The process-wide subscriber `mlbridge serve` installs: log lines (text or JSON lines
//! carrying trace and span ids) filtered like `RUST_LOG`, and OpenTelemetry spans for the
//! engine's own spans, exported over OTLP when an endpoint is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`trace_id`, `span_id`,
    /// `rpc.method`, `session_id`, ...).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}`: use text or json")),
        }
    }
}

/// What [`init`] installs.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter (`info`, `mlbridge_engine=debug,warn`, ...); `None`: the
    /// `RUST_LOG` environment variable, else `info` (start-up lines and warnings; one line
    /// per RPC at `debug`).
    pub log_filter: Option<String>,
    /// OTLP/gRPC collector to export spans to (e.g. `http://127.0.0.1:4317`); `None`: the
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` environment variable, else no export.
    pub otlp_endpoint: Option<String>,
}

/// Flushes and stops span export when dropped (or at [`TelemetryGuard::shutdown`]).
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Whether log lines show trace ids: RPC spans then record theirs as fields.
static LOG_TRACE_IDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether RPC spans record their trace and span ids as fields (for JSON log lines).
pub(crate) fn log_trace_ids() -> bool {
    LOG_TRACE_IDS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the subscriber may turn RPC spans into OpenTelemetry spans: true unless
/// [`init`] installed one without (an embedder's own subscriber may have the layer).
static OTEL_SPANS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether reading the caller's `traceparent` can matter (see [`OTEL_SPANS`]).
pub(crate) fn otel_spans() -> bool {
    OTEL_SPANS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The OTLP endpoint in force: the configured one, else the standard environment variable.
fn otlp_endpoint(config: &TelemetryConfig) -> Option<String> {
    config
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").ok())
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|endpoint| !endpoint.trim().is_empty())
}

#[cfg(feature = "otlp")]
fn with_otlp(
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::TracerProviderBuilder, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("cannot export spans to `{endpoint}`: {e}"))?;
    Ok(builder.with_batch_exporter(exporter))
}

#[cfg(not(feature = "otlp"))]
fn with_otlp(
    _builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    endpoint: &str,
) -> Result<opentelemetry_sdk::trace::TracerProviderBuilder, String> {
    Err(format!(
        "cannot export spans to `{endpoint}`: this engine was built without the `otlp` feature"
    ))
}

/// A bare level (`debug`) is the engine's level; the libraries under it (HTTP/2, gRPC)
/// stay at `warn`, so that `--log-level debug` shows one line per RPC, not every frame. A
/// filter with directives (`h2=debug,info`) is taken as written.
fn expand_level(filter: &str) -> String {
    let filter = filter.trim();
    if filter
        .parse::<tracing::level_filters::LevelFilter>()
        .is_ok()
    {
        format!("warn,mlbridge_engine={filter},mlbridge={filter}")
    } else {
        filter.to_owned()
    }
}

/// The spans that become OpenTelemetry spans: the engine's own (RPC spans are at `debug`),
/// whatever the log filter.
pub(crate) fn span_targets() -> Targets {
    Targets::new()
        .with_target("mlbridge_engine", tracing::Level::DEBUG)
        .with_target("mlbridge", tracing::Level::DEBUG)
}

/// Installs the process-wide subscriber. Call once, inside the Tokio runtime (the OTLP
/// exporter's connection lives there).
///
/// # Errors
///
/// A malformed filter, an OTLP endpoint without the `otlp` feature, or a subscriber that
/// is already installed.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, String> {
    let filter = match &config.log_filter {
        Some(filter) => {
            EnvFilter::try_new(expand_level(filter)).map_err(|e| format!("--log-level: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("mlbridge-engine")
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = otlp_endpoint(config);
    if let Some(endpoint) = &endpoint {
        builder = with_otlp(builder, endpoint)?;
    }
    let provider = builder.build();
    // OpenTelemetry spans (trace ids, context passed to workers and callback servers) only
    // when they go somewhere: exported, or shown in JSON log lines. Otherwise an RPC costs
    // a plain `tracing` span.
    let spans = (endpoint.is_some() || config.log_format == LogFormat::Json).then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mlbridge-engine"))
            .with_filter(span_targets())
    });
    // Logs go to stderr: stdout carries the engine's one ready line.
    let logs = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    OTEL_SPANS.store(spans.is_some(), std::sync::atomic::Ordering::Relaxed);
    LOG_TRACE_IDS.store(
        config.log_format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    Registry::default()
        .with(spans)
        .with(logs)
        .try_init()
        .map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(TelemetryGuard { provider })
}
