//! Opt-in OpenTelemetry export: spans reach a collector over OTLP/HTTP.

use std::sync::{Arc, Mutex};

use authz_gateway::config::Telemetry;
use axum::routing::post;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_configured_collector() {
    // A stand-in collector on loopback that records what it receives.
    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let ctype = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    sink.lock().expect("lock").push((ctype, body.len()));
                    ""
                }
            },
        ),
    );
    let addr = crate::harness::serve_stand_in(app).await;

    let cfg = Telemetry {
        otlp_endpoint: Some(format!("http://{addr}/v1/traces")),
        service_name: "authz-test".into(),
    };
    let (layer, provider) = authz_gateway::telemetry::otlp_layer(&cfg).expect("exporter");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("mcp", request_id = "r-1", decision = "allow");
        span.in_scope(|| tracing::info!("inside"));
    });
    // Flushing blocks on the export; keep it off the async worker.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("flush");
    let got = received.lock().expect("lock").clone();
    assert!(!got.is_empty(), "the collector received nothing");
    assert!(
        got.iter()
            .all(|(ct, len)| ct == "application/x-protobuf" && *len > 0),
        "{got:?}"
    );
}
