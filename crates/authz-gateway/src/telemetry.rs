//! Logging and opt-in OpenTelemetry trace export.
//!
//! Logs go to stderr as text or JSON (`RUST_LOG` filters them). When `[telemetry] otlp_endpoint`
//! is set, spans are also exported over OTLP/HTTP to the user's collector. Spans of the exporter's
//! own HTTP stack are never exported, so exporting cannot feed on itself.
//!
//! W3C trace context: a request's `traceparent` (and `tracestate`) makes its request span a child
//! of the caller's span; the upstream call is a child span of the request span, and the upstream
//! receives that span as its parent in `traceparent`. The audit records carry the trace id the
//! spans are exported under. Without export, the caller's `traceparent` and `tracestate` are
//! passed to the upstream as they came.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::Telemetry;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C trace context headers.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

struct PairInjector(Vec<(&'static str, String)>);

impl Injector for PairInjector {
    fn set(&mut self, key: &str, value: String) {
        if let Some(name) = TRACE_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(key)) {
            self.0.push((name, value));
        }
    }
}

/// Makes the caller's trace context (`traceparent`, `tracestate`), when valid, the parent of
/// `span`. Without an exporting layer this changes nothing.
pub(crate) fn adopt_caller(span: &tracing::Span, headers: &HeaderMap) {
    if headers.get("traceparent").is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer is installed: then nothing is exported.
        let _ = span.set_parent(parent);
    }
}

/// The trace id `span` is exported under (lowercase hex), when spans are exported.
pub(crate) fn exported_trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace context headers for a request made inside `span`: the span's own context when it
/// is exported (the callee's parent is then `span`), else the caller's headers as they came.
pub(crate) fn outgoing_headers(
    span: &tracing::Span,
    incoming: &HeaderMap,
) -> Vec<(&'static str, String)> {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        let mut out = PairInjector(Vec::new());
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        return out.0;
    }
    TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            let v = incoming.get(*name)?.to_str().ok()?;
            Some((*name, v.to_owned()))
        })
        .collect()
}

/// Keeps the exporter alive; flushes pending spans when dropped or shut down.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter (give it a moment at shutdown).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("authz-gateway: flushing traces failed: {e}");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Targets whose spans belong to the export path itself.
fn is_exporter_internal(target: &str) -> bool {
    ["opentelemetry", "reqwest", "hyper", "h2", "tower", "rustls"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// Builds the OTLP layer and its provider. Must run inside the tokio runtime.
pub fn otlp_layer<S>(
    cfg: &Telemetry,
) -> anyhow::Result<(
    impl tracing_subscriber::Layer<S> + Send + Sync + 'static,
    SdkTracerProvider,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let endpoint = cfg
        .otlp_endpoint
        .as_deref()
        .context("no OTLP endpoint configured")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .context("building the OTLP span exporter")?;
    // The async-runtime batch processor exports from tokio tasks: the async HTTP client needs a
    // reactor, which the SDK's default thread-based processor does not have.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("authz-gateway");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            !is_exporter_internal(m.target())
        }));
    Ok((layer, provider))
}

/// Installs the global subscriber: stderr logs plus, if configured, OTLP export.
pub fn init(log_format: &str, cfg: &Telemetry) -> anyhow::Result<TelemetryGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    if cfg.otlp_endpoint.is_some() {
        let (layer, provider) = otlp_layer(cfg)?;
        registry
            .with(layer)
            .try_init()
            .context("installing the tracing subscriber")?;
        Ok(TelemetryGuard {
            provider: Some(provider),
        })
    } else {
        registry
            .try_init()
            .context("installing the tracing subscriber")?;
        Ok(TelemetryGuard::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_path_is_never_exported() {
        assert!(is_exporter_internal("opentelemetry_sdk::trace"));
        assert!(is_exporter_internal("hyper_util::client"));
        assert!(!is_exporter_internal("authz_gateway::proxy"));
    }
}
