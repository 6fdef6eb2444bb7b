//! Logs and traces: a `tracing` subscriber (text or JSON) and, when an OTLP
//! endpoint is configured, OpenTelemetry span export continuing the trace
//! context kubelet sends in gRPC metadata (`traceparent`).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, TracingConfig};

/// Flushes and stops trace export when dropped.
#[derive(Debug, Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("crius: flushing traces failed: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log.level: {0}")]
    Filter(String),
    #[error("tracing.otlp_endpoint {endpoint:?}: cannot build the OTLP exporter: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Installs the global subscriber. `level_override` is `--log-level`.
/// Must run inside the tokio runtime when trace export is on (the OTLP
/// exporter is a tonic client).
pub fn init(
    log: &LogConfig,
    tracing_cfg: &TracingConfig,
    level_override: Option<&str>,
) -> Result<Guard, TelemetryError> {
    let level = level_override.unwrap_or(&log.level);
    let filter = EnvFilter::try_new(level).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let endpoint = if tracing_cfg.otlp_endpoint.is_empty() {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default()
    } else {
        tracing_cfg.otlp_endpoint.clone()
    };
    let provider = if endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("crius")
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    tracing_cfg.sampling_ratio,
                ))))
                .with_resource(resource)
                .build(),
        )
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("crius")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let res = if log.format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(false))
            .try_init()
    };
    res.map_err(|e| TelemetryError::Install(e.to_string()))?;
    Ok(Guard { provider })
}

struct HeaderExtractor<'a>(&'a tonic::codegen::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one CRI call: `rpc` with the method, an `id` field the
/// handler fills with the object it acts on, and the caller's trace context
/// as parent.
pub fn rpc_span<B>(req: &tonic::codegen::http::Request<B>) -> tracing::Span {
    let path = req.uri().path();
    let method = path.rsplit('/').next().unwrap_or(path);
    let span = tracing::info_span!("rpc", method = %method, id = tracing::field::Empty);
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let _ = span.set_parent(parent);
    span
}
