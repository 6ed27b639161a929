//! Logging and opt-in OpenTelemetry trace export.
//!
//! Logs go to stderr as text or JSON (`RUST_LOG` filters them). When `[telemetry] otlp_endpoint`
//! is set, spans are also exported over OTLP/HTTP to the user's collector. Spans of the exporter's
//! own HTTP stack are never exported, so exporting cannot feed on itself.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::Telemetry;

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
