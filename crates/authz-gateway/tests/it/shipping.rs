//! Audit shipping from a running gateway to real HTTP receivers over loopback: a JSON-lines
//! collector that refuses batches, then stalls past the sink's timeout once, then recovers,
//! gets every record, in chain order, repeating only the one batch it took but did not answer in
//! time (the documented at-least-once window); an OTLP logs receiver gets one log record per
//! audit record, and its partial-success rejections are counted, not sent again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_types::AuditFilter;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::harness::{self, AuditBackend, Options};
use crate::metrics::Page;

const WAIT: Duration = Duration::from_secs(30);

/// What a receiver saw: each request's headers and body.
#[derive(Default)]
struct Receiver {
    requests: Mutex<Vec<(HeaderMap, String)>>,
    /// Answer 503 to this many requests (without keeping them).
    refuse: AtomicU32,
    /// Keep this many requests, then answer only after a second (past the sink's timeout).
    stall: AtomicU32,
    /// The body of the next successful answer (e.g. an OTLP partial success).
    answer: Mutex<Option<String>>,
}

async fn collect(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    if rx
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "collector warming up".into(),
        );
    }
    rx.requests.lock().expect("lock").push((headers, body));
    if rx
        .stall
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    let answer = rx.answer.lock().expect("lock").take();
    (StatusCode::OK, answer.unwrap_or_else(|| "{}".into()))
}

async fn receiver(path: &str) -> (Arc<Receiver>, std::net::SocketAddr) {
    let rx = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route(path, axum::routing::post(collect))
        .with_state(rx.clone());
    (rx, harness::serve_stand_in(app).await)
}

/// Every audit record id in the store.
async fn stored_ids(env: &harness::Env) -> Vec<i64> {
    let mut ids: Vec<i64> = env
        .audit
        .query(&AuditFilter {
            limit: Some(10_000),
            ..AuditFilter::default()
        })
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The JSON-lines records received, in arrival order.
fn lines(rx: &Receiver) -> Vec<Value> {
    rx.requests
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|(_, body)| {
            body.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn distinct_ids(records: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

async fn allowed_and_denied_calls(env: &harness::Env, first_id: u64, allowed: u64) {
    let reader = env.token("ship-reader", &["ticket-reader"], &["tickets:read"]);
    let writer = env.token("ship-writer", &["ticket-reader"], &["tickets:write"]);
    for id in first_id..first_id + allowed {
        let resp = env.post_stateless_call(&reader, id, "get_ticket").await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("the answer ends");
    }
    let resp = env
        .post_tools_call(Some(&writer), first_id + allowed, "delete_ticket")
        .await;
    assert_eq!(resp.status(), 403);
}

/// Waits until every record in the store has been received.
async fn all_received(env: &harness::Env, received: impl Fn() -> Vec<i64>) {
    authz_test_support::eventually_async("every stored record received", WAIT, async || {
        let stored = stored_ids(env).await;
        !stored.is_empty() && received() == stored
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_fails_and_recovers_gets_every_record_once_but_the_batch_it_timed_out() {
    let (rx, at) = receiver("/collect").await;
    rx.refuse.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("siem-token");
    std::fs::write(&token, "hec-token-123\n").expect("token file");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            audit_extra: Some(format!(
                "[[audit.sinks]]\nname = \"siem\"\nkind = \"json_lines\"\n\
                 url = \"http://{at}/collect\"\ntoken_file = \"{}\"\nbatch_records = 5\n\
                 poll_interval_ms = 20\ntimeout_ms = 1000\n",
                token.display()
            )),
            ..Options::default()
        },
    )
    .await;

    // Two refused batches, then everything arrives, each record once, in chain order.
    allowed_and_denied_calls(&env, 1, 4).await;
    all_received(&env, || distinct_ids(&lines(&rx))).await;
    let got = lines(&rx);
    assert_eq!(got.len(), distinct_ids(&got).len(), "no record twice");
    let mut by_chain: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &got {
        by_chain
            .entry(r["chain_id"].as_str().expect("chain").to_owned())
            .or_default()
            .push(r["seq"].as_i64().expect("seq"));
        assert_eq!(r["hash"].as_str().expect("hash").len(), 64);
        assert!(
            r["request_id"].is_string() && r["decision"].is_string(),
            "{r}"
        );
    }
    for seqs in by_chain.values() {
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {seqs:?}"
        );
    }
    {
        let requests = rx.requests.lock().expect("lock");
        let (headers, _) = &requests[0];
        assert_eq!(headers["authorization"], "Bearer hec-token-123");
        assert_eq!(headers["content-type"], "application/x-ndjson");
    }

    // The collector takes a batch but answers after the sink's timeout: that batch, and only
    // that one, arrives twice.
    rx.stall.store(1, Ordering::SeqCst);
    let before = got.len();
    allowed_and_denied_calls(&env, 10, 3).await;
    all_received(&env, || distinct_ids(&lines(&rx))).await;
    let got = lines(&rx);
    let mut copies: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for r in &got {
        copies
            .entry(r["id"].as_i64().expect("id"))
            .or_default()
            .push(r);
    }
    let repeated: Vec<i64> = copies
        .iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        !repeated.is_empty() && repeated.len() <= 5,
        "one batch of at most 5 repeated: {repeated:?}"
    );
    assert!(
        copies
            .values()
            .all(|c| c.len() <= 2 && c.iter().all(|v| *v == c[0]))
    );
    assert_eq!(got.len(), distinct_ids(&got).len() + repeated.len());
    assert!(got.len() > before);

    // The receiver has a batch before the cursor moves past it: wait for the gateway's count.
    let distinct = distinct_ids(&got).len() as f64;
    authz_test_support::eventually_async("every record acknowledged, no lag", WAIT, async || {
        let page = Page::scrape(&env).await;
        page.value("authz_audit_ship_lag_records", &[("sink", "siem")]) == 0.0
            && page.value("authz_audit_shipped_records_total", &[("sink", "siem")]) == distinct
    })
    .await;
    let page = Page::scrape(&env).await;
    assert_eq!(
        page.value("authz_audit_ship_failures_total", &[("sink", "siem")]),
        3.0
    );
    assert_eq!(
        page.value("authz_audit_ship_gaps_total", &[("sink", "siem")]),
        0.0
    );
    assert_eq!(
        page.value("authz_audit_ship_lag_seconds", &[("sink", "siem")]),
        0.0
    );
    assert_eq!(
        page.value("authz_audit_ship_chains", &[("sink", "siem")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_receiver_gets_one_log_record_per_audit_record() {
    let (rx, at) = receiver("/v1/logs").await;
    *rx.answer.lock().expect("lock") = Some(
        r#"{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"one too big"}}"#.into(),
    );
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            audit_extra: Some(format!(
                "[[audit.sinks]]\nname = \"otel\"\nkind = \"otlp_logs\"\n\
                 url = \"http://{at}/v1/logs\"\npoll_interval_ms = 20\n"
            )),
            ..Options::default()
        },
    )
    .await;
    allowed_and_denied_calls(&env, 1, 2).await;
    let logs = || -> Vec<Value> {
        rx.requests
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(headers, body)| {
                assert_eq!(headers["content-type"], "application/json");
                let v: Value = serde_json::from_str(body).expect("OTLP JSON");
                assert_eq!(
                    v["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
                    "authz-gateway"
                );
                v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .expect("logRecords")
                    .clone()
            })
            .collect()
    };
    let body = |log: &Value| -> Value {
        serde_json::from_str(log["body"]["stringValue"].as_str().expect("body")).expect("JSON")
    };
    all_received(&env, || {
        let mut ids: Vec<i64> = logs()
            .iter()
            .map(|l| body(l)["id"].as_i64().expect("id"))
            .collect();
        ids.sort_unstable();
        ids
    })
    .await;
    let logs = logs();
    let denied: Vec<&Value> = logs
        .iter()
        .filter(|l| body(l)["decision"] == "deny")
        .collect();
    assert_eq!(denied.len(), 1, "the refused delete");
    assert_eq!(denied[0]["severityText"], "WARN");
    let attr = |log: &Value, key: &str| -> Value {
        log["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        attr(denied[0], "authz.target")["stringValue"],
        "delete_ticket"
    );
    assert_eq!(attr(denied[0], "mcp.method")["stringValue"], "tools/call");
    for log in &logs {
        assert_eq!(
            attr(log, "authz.audit.seq")["intValue"],
            body(log)["seq"].as_i64().expect("seq").to_string()
        );
        assert!(log["timeUnixNano"].as_str().expect("time").len() >= 19);
    }
    authz_test_support::eventually_async("the rejection counted", WAIT, async || {
        Page::scrape(&env)
            .await
            .value("authz_audit_ship_rejected_total", &[("sink", "otel")])
            == 1.0
    })
    .await;
    let page = Page::scrape(&env).await;
    assert_eq!(
        page.value("authz_audit_ship_failures_total", &[("sink", "otel")]),
        0.0
    );
}
