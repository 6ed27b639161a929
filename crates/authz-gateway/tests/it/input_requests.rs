//! What an upstream may ask the client for (a route's `input_requests` rules): a 2026-07-28
//! `input_required` result asking for a forbidden sampling, elicitation, roots or URL origin
//! fails the call with `input_request_forbidden` instead of reaching the client, over JSON and
//! SSE, with a deny record naming what was asked; allowed requests pass (sealed as always).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authz_types::{AuditFilter, AuditRecord, Effect, ReasonCode, RecordKind};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend};

/// What the stand-in upstream asks for, by the call's `arguments.ask`.
fn input_requests(ask: &str) -> Value {
    let elicit_url = |url: &str| {
        json!({"method": "elicitation/create", "params": {"mode": "url", "url": url,
            "message": "sign in", "elicitationId": "e1"}})
    };
    match ask {
        "sampling" => json!({"s": {"method": "sampling/createMessage",
            "params": {"messages": [], "maxTokens": 10}}}),
        "roots" => json!({"r": {"method": "roots/list", "params": {}}}),
        "form" => json!({"f": {"method": "elicitation/create",
            "params": {"message": "ok?", "requestedSchema": {"type": "object"}}}}),
        "good_url" => json!({"u": elicit_url("https://login.example/authorize?c=1")}),
        "bad_url" => json!({"u": elicit_url("https://login.example.evil.test/authorize")}),
        "mixed" => json!({"f": {"method": "elicitation/create",
            "params": {"message": "ok?", "requestedSchema": {"type": "object"}}},
            "s": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 1}}}),
        other => panic!("unknown ask {other}"),
    }
}

async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let ask = v
                .pointer("/params/arguments/ask")
                .and_then(Value::as_str)
                .unwrap_or("form");
            let sse = v.pointer("/params/arguments/sse").and_then(Value::as_bool) == Some(true);
            let answer = json!({"jsonrpc": "2.0", "id": v["id"], "result": {
                "resultType": "input_required",
                "inputRequests": input_requests(ask),
                "requestState": "upstream-state"}});
            if sse {
                (
                    [("content-type", "text/event-stream")],
                    format!("event: message\ndata: {answer}\n\n"),
                )
            } else {
                ([("content-type", "application/json")], answer.to_string())
            }
        }),
    );
    harness::serve_stand_in(app).await
}

async fn call(
    env: &harness::Env,
    token: &str,
    id: u64,
    tool: &str,
    args: Value,
) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": args,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    env.post(Some(token), &headers, &body.to_string()).await
}

/// The decision records of `request_id`, waiting (bounded) until there are `n`: the deny
/// records of forbidden input requests are written when the answer ends.
async fn decisions(env: &harness::Env, request_id: &str, n: usize) -> Vec<AuditRecord> {
    let filter = AuditFilter {
        request_id: Some(request_id.to_owned()),
        ..AuditFilter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = harness::query(&env.audit, &filter, RecordKind::Decision).await;
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON-RPC message of a body that is JSON or one SSE event.
fn message(body: &str) -> Value {
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(body);
    serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn forbidden_input_requests_fail_the_call_and_are_recorded() {
    let addr = upstream().await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            upstream_extra: Some(
                "input_requests = [\n  { target = \"create_ticket\", sampling = false, roots = false, \
                 url_origins = [\"https://login.example\"] },\n]"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);

    // Allowed: a form elicitation, and a URL on the listed origin. They reach the client
    // (sealed), and the call's records are as always.
    for (n, ask) in ["form", "good_url"].into_iter().enumerate() {
        let resp = call(&env, &token, n as u64, "create_ticket", json!({"ask": ask})).await;
        assert_eq!(resp.status(), 200, "{ask}");
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["result"]["resultType"], "input_required", "{ask}: {v}");
        assert_ne!(v["result"]["requestState"], "upstream-state", "sealed: {v}");
    }

    // Forbidden, over JSON and over SSE alike.
    let cases = [
        ("sampling", false, "sampling/createMessage", "create_ticket"),
        ("roots", true, "roots/list", "create_ticket"),
        (
            "bad_url",
            false,
            "elicitation/create",
            "https://login.example.evil.test",
        ),
        ("mixed", true, "sampling/createMessage", "create_ticket"),
    ];
    for (n, (ask, sse, method, target)) in cases.into_iter().enumerate() {
        let id = 10 + n as u64;
        let resp = call(
            &env,
            &token,
            id,
            "create_ticket",
            json!({"ask": ask, "sse": sse}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{ask}");
        let request_id = harness::request_id(&resp);
        let v = message(&resp.text().await.expect("body"));
        assert_eq!(v["id"], id, "{ask}: the error answers the call: {v}");
        assert!(
            v.get("result").is_none(),
            "{ask}: no input request reaches the client: {v}"
        );
        assert_eq!(v["error"]["code"], -31003, "{ask}: {v}");
        assert_eq!(
            v["error"]["data"]["reason"], "input_request_forbidden",
            "{v}"
        );
        assert_eq!(v["error"]["data"]["requestId"], request_id.as_str(), "{v}");
        let asked = v["error"]["data"]["inputRequests"]
            .as_array()
            .expect("what was asked");
        assert_eq!(asked.len(), 1, "only the forbidden one is named: {v}");
        assert_eq!(asked[0]["method"], method, "{v}");

        let records = decisions(&env, &request_id, 2).await;
        assert_eq!(
            records.len(),
            2,
            "{ask}: the call's and the input request's: {records:?}"
        );
        let denied = records
            .iter()
            .find(|r| r.reason == ReasonCode::InputRequestForbidden)
            .unwrap_or_else(|| panic!("{ask}: a deny record: {records:?}"));
        assert_eq!(denied.decision, Effect::Deny);
        assert_eq!(denied.method, method, "{ask}");
        assert_eq!(denied.target.as_deref(), Some(target), "{ask}");
        assert_eq!(denied.subject.as_deref(), Some("adam"));
        let outcomes = env.outcomes_for_request(&request_id).await;
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            outcomes[0].outcome.as_deref(),
            Some("input_request_forbidden")
        );
    }

    // Another tool is not under the rule: it may sample.
    let resp = call(
        &env,
        &token,
        30,
        "create_comment",
        json!({"ask": "sampling"}),
    )
    .await;
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
}

/// A session-based (2025-11-25) upstream whose `tools/call` stream asks the client to sample
/// before it answers; it records the JSON-RPC responses it is sent.
pub(crate) async fn session_upstream(answers: Arc<Mutex<Vec<Value>>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: String| {
            let answers = Arc::clone(&answers);
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let json =
                    |status: u16, extra: Option<(&'static str, &'static str)>, body: String| {
                        let mut resp = axum::response::Response::builder()
                            .status(status)
                            .header("content-type", "application/json");
                        if let Some((k, val)) = extra {
                            resp = resp.header(k, val);
                        }
                        resp.body(axum::body::Body::from(body)).expect("response")
                    };
                match v["method"].as_str() {
                    Some("initialize") => json(
                        200,
                        Some(("mcp-session-id", "session-1")),
                        json!({"jsonrpc": "2.0", "id": v["id"], "result": {
                            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                            "serverInfo": {"name": "s", "version": "1"}}})
                        .to_string(),
                    ),
                    Some("tools/call") => {
                        let ask = json!({"jsonrpc": "2.0", "id": "srv-1",
                            "method": "sampling/createMessage",
                            "params": {"messages": [], "maxTokens": 5}});
                        let done = json!({"jsonrpc": "2.0", "id": v["id"],
                            "result": {"content": [{"type": "text", "text": "sampled"}]}});
                        axum::response::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(axum::body::Body::from(format!(
                                "event: message\ndata: {ask}\n\nevent: message\ndata: {done}\n\n"
                            )))
                            .expect("response")
                    }
                    Some(_) => json(202, None, String::new()),
                    None => {
                        answers.lock().expect("lock").push(v);
                        json(202, None, String::new())
                    }
                }
            }
        }),
    );
    // The session's own stream: a roots request, then a notification.
    let app = app.route(
        "/mcp",
        axum::routing::get(|| async {
            let ask = json!({"jsonrpc": "2.0", "id": "srv-2", "method": "roots/list"});
            let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from(format!(
                    "data: {ask}\n\ndata: {note}\n\n"
                )))
                .expect("response")
        }),
    );
    harness::serve_stand_in(app).await
}

#[tokio::test]
async fn a_forbidden_request_on_a_session_stream_fails_the_call() {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let addr = session_upstream(Arc::clone(&answers)).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            upstream_extra: Some("input_requests = [{ sampling = false }]".into()),
            ..Default::default()
        },
    )
    .await;
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
        "clientInfo": {"name": "t", "version": "1"}}});
    let resp = env.post(Some(&token), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session")
        .to_owned();

    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "create_ticket", "arguments": {}}});
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let resp = env.post(Some(&token), &headers, &call.to_string()).await;
    assert_eq!(resp.status(), 200);
    let request_id = harness::request_id(&resp);
    let body = resp.text().await.expect("body");
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON event"))
        .collect();
    assert_eq!(events.len(), 1, "the stream ends with the failure: {body}");
    assert_eq!(events[0]["id"], 2, "{body}");
    assert_eq!(
        events[0]["error"]["data"]["reason"], "input_request_forbidden",
        "{body}"
    );
    assert_eq!(
        events[0]["error"]["data"]["inputRequests"][0]["key"], "srv-1",
        "{body}"
    );

    // The upstream is told its request was refused, on the session.
    let deadline = Instant::now() + Duration::from_secs(5);
    while answers.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["id"], "srv-1");
    assert_eq!(answers[0]["error"]["code"], -31003);

    let records = decisions(&env, &request_id, 2).await;
    let denied = records
        .iter()
        .find(|r| r.reason == ReasonCode::InputRequestForbidden)
        .unwrap_or_else(|| panic!("a deny record: {records:?}"));
    assert_eq!(denied.method, "sampling/createMessage");
    assert_eq!(denied.session_id.as_deref(), Some(session.as_str()));
}

#[tokio::test]
async fn a_forbidden_request_on_the_session_stream_is_withheld_and_refused() {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let addr = session_upstream(Arc::clone(&answers)).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            upstream_extra: Some("input_requests = [{ roots = false }]".into()),
            ..Default::default()
        },
    )
    .await;
    let token = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"roots": {}},
        "clientInfo": {"name": "t", "version": "1"}}});
    let resp = env.post(Some(&token), &[], &init.to_string()).await;
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session")
        .to_owned();
    let resp = env
        .http
        .get(&env.route)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    let request_id = harness::request_id(&resp);
    let body = resp.text().await.expect("body");
    assert!(!body.contains("roots/list"), "withheld: {body}");
    assert!(body.contains("list_changed"), "the stream goes on: {body}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while answers.lock().expect("lock").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["id"], "srv-2");
    let records = decisions(&env, &request_id, 2).await;
    let denied = records
        .iter()
        .find(|r| r.reason == ReasonCode::InputRequestForbidden)
        .unwrap_or_else(|| panic!("a deny record: {records:?}"));
    assert_eq!(denied.method, "roots/list");
}
