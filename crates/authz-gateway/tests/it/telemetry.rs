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

/// The caller's trace goes through the gateway: the request span is the caller's child, the
/// upstream call a child span of it, the upstream receives that span in `traceparent`, and the
/// audit record carries the trace id the spans are exported under (also for a caller that sent
/// no trace context: the gateway starts the trace). Checked at an in-process OTLP receiver.
#[tokio::test(flavor = "current_thread")]
async fn a_call_is_traced_from_the_caller_through_the_gateway_to_the_upstream() {
    use crate::harness::{self, AuditBackend};

    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = Arc::clone(&bodies);
    let collector = harness::serve_stand_in(axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(body.to_vec());
                ""
            }
        }),
    ))
    .await;
    let parents: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = Arc::clone(&parents);
    let upstream = harness::serve_stand_in(axum::Router::new().route(
        "/mcp",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().expect("lock").push(
                    headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                );
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                (
                    [("content-type", "application/json")],
                    serde_json::json!({"jsonrpc": "2.0", "id": v["id"],
                        "result": {"content": []}})
                    .to_string(),
                )
            }
        }),
    ))
    .await;

    let cfg = Telemetry {
        otlp_endpoint: Some(format!("http://{collector}/v1/traces")),
        service_name: "authz-test".into(),
    };
    let (layer, provider) = authz_gateway::telemetry::otlp_layer(&cfg).expect("exporter");
    // One thread runs the gateway, the stand-ins and this test: they all see this subscriber.
    let _traced = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{upstream}/mcp")),
            ..Default::default()
        },
    )
    .await;
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let (trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace}-{caller_span}-01");
    let (mut headers, body) = harness::stateless_call(1, "get_ticket");
    headers.push(("traceparent", traceparent.as_str()));
    let resp = env.post(Some(&token), &headers, &body).await;
    assert_eq!(resp.status(), 200);
    let record = env.the_record_for(&resp).await;
    assert_eq!(
        record.trace_id.as_deref(),
        Some(trace),
        "the caller's trace"
    );

    let (headers, body) = harness::stateless_call(2, "get_ticket");
    let resp = env.post(Some(&token), &headers, &body).await;
    assert_eq!(resp.status(), 200);
    let started = env
        .the_record_for(&resp)
        .await
        .trace_id
        .expect("a trace the gateway started");

    let parents = parents.lock().expect("lock").clone();
    assert_eq!(parents.len(), 2, "{parents:?}");
    let parse = |tp: &Option<String>| {
        let tp = tp.as_deref().expect("the upstream got a traceparent");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{tp}");
        (parts[1].to_owned(), parts[2].to_owned())
    };
    let (t1, upstream_parent) = parse(&parents[0]);
    assert_eq!(t1, trace, "the upstream continues the caller's trace");
    assert_ne!(
        upstream_parent, caller_span,
        "its parent is the gateway's span"
    );
    let (t2, _) = parse(&parents[1]);
    assert_eq!(
        t2, started,
        "the record names the trace the upstream continues"
    );

    drop(env);
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("flush");
    let exported: Vec<u8> = bodies.lock().expect("lock").concat();
    let bytes = |hex_id: &str| hex::decode(hex_id).expect("hex");
    let contains = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
    for (what, id) in [
        ("the caller's trace id", trace),
        (
            "the caller's span id (the request span's parent)",
            caller_span,
        ),
        (
            "the span the upstream was told is its parent",
            upstream_parent.as_str(),
        ),
        ("the trace the gateway started", started.as_str()),
    ] {
        assert!(contains(&bytes(id)), "{what} ({id}) was not exported");
    }
}
