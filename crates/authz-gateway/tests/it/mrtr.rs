//! Multi round-trip requests (MCP 2026-07-28): the upstream's `requestState` reaches the client
//! only sealed to the caller and call, and only the caller's own untampered envelope brings it
//! back to the upstream. Everything else is refused with the request's id and recorded.

use std::sync::{Arc, Mutex};

use authz_types::ReasonCode;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend};

/// A 2026-07-28 `tools/call` of `tool`, with `requestState` when given.
fn call(id: u64, tool: &str, state: Option<&str>) -> (Vec<(&'static str, String)>, String) {
    let mut params = json!({"name": tool, "arguments": {"title": "t"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {}}});
    if let Some(s) = state {
        params["requestState"] = json!(s);
        params["inputResponses"] = json!({"confirm": {"action": "accept"}});
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", "tools/call".to_owned()),
        ("mcp-name", tool.to_owned()),
    ];
    (headers, body.to_string())
}

async fn post(
    env: &harness::Env,
    token: &str,
    id: u64,
    tool: &str,
    state: Option<&str>,
) -> reqwest::Response {
    let (headers, body) = call(id, tool, state);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.post(Some(token), &headers, &body).await
}

#[tokio::test]
async fn a_request_state_is_sealed_to_its_caller_and_call() {
    // The upstream asks for input on the first round and completes the retry; it records the
    // states it is handed back.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post({
            let received = Arc::clone(&received);
            move |body: String| {
                let received = Arc::clone(&received);
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let result = match v.pointer("/params/requestState").and_then(Value::as_str) {
                        None => json!({"resultType": "input_required",
                            "inputRequests": {"confirm": {"method": "elicitation/create",
                                "params": {"message": "sure?", "requestedSchema": {"type": "object"}}}},
                            "requestState": "upstream-state-1"}),
                        Some(state) => {
                            received.lock().expect("lock").push(state.to_owned());
                            json!({"content": [{"type": "text", "text": format!("done with {state}")}]})
                        }
                    };
                    (
                        [("content-type", "application/json")],
                        json!({"jsonrpc": "2.0", "id": v["id"], "result": result}).to_string(),
                    )
                }
            }
        }),
    );
    let addr = harness::serve_stand_in(app).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(format!("http://{addr}/mcp")),
            ..Default::default()
        },
    )
    .await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let mallory = env.token("mallory", &["ticket-admin"], &["tickets:write"]);

    let first = post(&env, &adam, 1, "create_ticket", None).await;
    assert_eq!(first.status(), 200);
    let v: Value = first.json().await.expect("JSON");
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    let sealed = v["result"]["requestState"]
        .as_str()
        .expect("a state")
        .to_owned();
    assert_ne!(
        sealed, "upstream-state-1",
        "the upstream's state never reaches the client"
    );
    assert!(v["result"]["inputRequests"]["confirm"].is_object(), "{v}");

    // Another principal with the same rights cannot complete adam's call with his state.
    let mut refused = Vec::new();
    refused.push(post(&env, &mallory, 2, "create_ticket", Some(&sealed)).await);
    // Nor can adam use it for another tool, a changed copy, or the raw upstream state.
    refused.push(post(&env, &adam, 3, "create_comment", Some(&sealed)).await);
    let mut tampered = sealed.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    refused.push(post(&env, &adam, 4, "create_ticket", Some(&tampered)).await);
    refused.push(post(&env, &adam, 5, "create_ticket", Some("upstream-state-1")).await);
    for (n, resp) in refused.into_iter().enumerate() {
        assert_eq!(resp.status(), 400, "refusal {n}");
        let record = env.the_record_for(&resp).await;
        assert_eq!(
            record.reason,
            ReasonCode::RequestStateInvalid,
            "refusal {n}"
        );
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], -32602, "refusal {n}: {v}");
        assert_eq!(v["error"]["data"]["reason"], "request_state_invalid", "{v}");
        assert_eq!(
            v["id"],
            json!(n + 2),
            "the error answers the refused request: {v}"
        );
    }
    assert!(
        received.lock().expect("lock").is_empty(),
        "no refused retry reached the upstream"
    );

    // Adam's own retry completes, and the upstream gets its state back unchanged.
    let retry = post(&env, &adam, 6, "create_ticket", Some(&sealed)).await;
    assert_eq!(retry.status(), 200);
    let v: Value = retry.json().await.expect("JSON");
    assert_eq!(
        v["result"]["content"][0]["text"], "done with upstream-state-1",
        "{v}"
    );
    assert_eq!(*received.lock().expect("lock"), ["upstream-state-1"]);
}
