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

/// A stand-in upstream that asks for input `rounds - 1` times (states `state-1`, `state-2`,
/// ...) and completes the round that brings back `state-<rounds - 1>`; it records every state
/// it is handed back.
async fn asking_upstream(rounds: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post({
            let received = Arc::clone(&received);
            move |body: String| {
                let received = Arc::clone(&received);
                async move {
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let state = v.pointer("/params/requestState").and_then(Value::as_str);
                    let round = match state {
                        None => 1,
                        Some(s) => {
                            received.lock().expect("lock").push(s.to_owned());
                            s.strip_prefix("state-")
                                .and_then(|n| n.parse::<usize>().ok())
                                .map_or(usize::MAX, |n| n + 1)
                        }
                    };
                    let result = if round < rounds {
                        json!({"resultType": "input_required",
                            "inputRequests": {"confirm": {"method": "elicitation/create",
                                "params": {"message": "sure?", "requestedSchema": {"type": "object"}}}},
                            "requestState": format!("state-{round}")})
                    } else {
                        json!({"content": [{"type": "text",
                            "text": format!("done with {}", state.unwrap_or("nothing"))}]})
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
    (format!("http://{addr}/mcp"), received)
}

/// The sealed `requestState` of an `input_required` answer.
async fn sealed_state(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    v["result"]["requestState"]
        .as_str()
        .expect("a state")
        .to_owned()
}

/// Asserts `resp` is the `request_state_invalid` refusal of request `id`, with its record.
async fn assert_state_refused(env: &harness::Env, resp: reqwest::Response, id: u64) {
    assert_eq!(resp.status(), 400);
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::RequestStateInvalid);
    assert_eq!(
        record.first_round_request_id, None,
        "a refused state links to nothing"
    );
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "request_state_invalid", "{v}");
    assert_eq!(
        v["id"],
        json!(id),
        "the error answers the refused request: {v}"
    );
}

/// A `request_state_key_file` with `key` (64 hex digits) in `dir`, as `[server]` TOML.
fn key_file(dir: &std::path::Path, name: &str, key: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write the key file");
    format!("request_state_key_file = \"{}\"", path.display())
}

#[tokio::test]
async fn replicas_sharing_the_key_complete_each_others_round_trips() {
    let (upstream_url, received) = asking_upstream(2).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let shared = key_file(keys.path(), "shared.key", &"5a".repeat(32));
    let a = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(upstream_url.clone()),
            server_extra: Some(shared.clone()),
            ..Default::default()
        },
    )
    .await;
    // Another replica of the same resource with the same key; a third with its own key.
    let replica = |server_extra: String| harness::Options {
        upstream_url: Some(upstream_url.clone()),
        server_extra: Some(server_extra),
        public_url: Some(a.base.clone()),
        keys: Some((a.private_jwk.clone(), a.jwks_path.clone())),
        ..Default::default()
    };
    let b = harness::start_with(AuditBackend::Sqlite, replica(shared)).await;
    let other_key = key_file(keys.path(), "other.key", &"a5".repeat(32));
    let c = harness::start_with(AuditBackend::Sqlite, replica(other_key)).await;
    let adam = a.token("adam", &["ticket-admin"], &["tickets:write"]);
    let mallory = a.token("mallory", &["ticket-admin"], &["tickets:write"]);

    let first = post(&a, &adam, 1, "create_ticket", None).await;
    let first_round = harness::request_id(&first);
    let sealed = sealed_state(first).await;

    // Sealed under another key: refused, whoever brings it.
    assert_state_refused(
        &c,
        post(&c, &adam, 2, "create_ticket", Some(&sealed)).await,
        2,
    )
    .await;
    // The shared key does not make it anyone's: another principal's replay through B.
    assert_state_refused(
        &b,
        post(&b, &mallory, 3, "create_ticket", Some(&sealed)).await,
        3,
    )
    .await;
    assert!(
        received.lock().expect("lock").is_empty(),
        "no refused retry reached the upstream"
    );

    // Adam's retry through B completes with the upstream's own state, linked to round 1 on A.
    let retry = post(&b, &adam, 4, "create_ticket", Some(&sealed)).await;
    assert_eq!(retry.status(), 200);
    let record = b.the_record_for(&retry).await;
    assert_eq!(record.reason, ReasonCode::PolicyAllow);
    assert_eq!(record.first_round_request_id, Some(first_round));
    let v: Value = retry.json().await.expect("JSON");
    assert_eq!(
        v["result"]["content"][0]["text"], "done with state-1",
        "{v}"
    );
    assert_eq!(*received.lock().expect("lock"), ["state-1"]);
}

#[tokio::test]
async fn a_retry_the_policy_no_longer_allows_is_refused_and_not_forwarded() {
    let (upstream_url, received) = asking_upstream(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    let original = std::fs::read_to_string(authz_test_support::policies_dir().join("policy.csv"))
        .expect("read the example policy");
    std::fs::write(&policy, &original).expect("copy the policy");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(upstream_url),
            policy_file: Some(policy.clone()),
            ..Default::default()
        },
    )
    .await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let first = post(&env, &adam, 1, "create_ticket", None).await;
    let first_round = harness::request_id(&first);
    let sealed = sealed_state(first).await;

    // The role loses its tools; wait until the gateway serves the new revision.
    let revision = || async {
        let ready: Value = env.get("/readyz").await.json().await.expect("JSON");
        ready["policy"]["revision"].clone()
    };
    let before = revision().await;
    let grant = "p, ticket-admin, default, tool:tickets/*, call, allow\n";
    assert!(original.contains(grant), "the example policy grants it");
    std::fs::write(&policy, original.replace(grant, "")).expect("rewrite the policy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while revision().await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policy was never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A valid envelope is no permission: the retry is decided from scratch, and denied.
    let retry = post(&env, &adam, 2, "create_ticket", Some(&sealed)).await;
    assert_eq!(retry.status(), 403);
    let record = env.the_record_for(&retry).await;
    assert_eq!(record.reason, ReasonCode::NoMatchingRule);
    assert_eq!(record.decision, authz_types::Effect::Deny);
    assert_eq!(record.first_round_request_id, Some(first_round));
    let v: Value = retry.json().await.expect("JSON");
    assert_eq!(v["id"], 2, "{v}");
    assert!(
        received.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn an_envelope_past_its_expiry_is_refused() {
    let (upstream_url, received) = asking_upstream(2).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(upstream_url),
            server_extra: Some("request_state_ttl_secs = 1".into()),
            ..Default::default()
        },
    )
    .await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let sealed = sealed_state(post(&env, &adam, 1, "create_ticket", None).await).await;
    // The envelope says when it expires (its payload is not secret, only MACed): wait past that
    // moment, then retry once.
    let payload = sealed.split('.').nth(1).expect("a payload");
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("base64url"),
    )
    .expect("JSON");
    let expires_ms = payload["e"].as_i64().expect("an expiry");
    while authz_types::now_unix_ms() <= expires_ms {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_state_refused(
        &env,
        post(&env, &adam, 2, "create_ticket", Some(&sealed)).await,
        2,
    )
    .await;
    assert!(received.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn every_round_of_a_retry_links_to_the_first() {
    let (upstream_url, received) = asking_upstream(3).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_url: Some(upstream_url),
            ..Default::default()
        },
    )
    .await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let first = post(&env, &adam, 1, "create_ticket", None).await;
    let first_round = harness::request_id(&first);
    assert_eq!(
        env.the_record_for(&first).await.first_round_request_id,
        None
    );
    let sealed = sealed_state(first).await;

    // Round 2 asks for input again; its new envelope still names round 1.
    let second = post(&env, &adam, 2, "create_ticket", Some(&sealed)).await;
    let second_id = harness::request_id(&second);
    let third = {
        assert_eq!(
            env.the_record_for(&second).await.first_round_request_id,
            Some(first_round.clone())
        );
        let sealed = sealed_state(second).await;
        post(&env, &adam, 3, "create_ticket", Some(&sealed)).await
    };
    assert_eq!(third.status(), 200);
    let third_id = harness::request_id(&third);
    assert_eq!(
        env.the_record_for(&third).await.first_round_request_id,
        Some(first_round.clone()),
        "round 3 links to round 1, not round 2"
    );
    let v: Value = third.json().await.expect("JSON");
    assert_eq!(
        v["result"]["content"][0]["text"], "done with state-2",
        "{v}"
    );
    assert_eq!(*received.lock().expect("lock"), ["state-1", "state-2"]);

    // The outcome records link the same way; round 1's links to nothing.
    for id in [&second_id, &third_id] {
        let outcomes = env.outcomes_for_request(id).await;
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert_eq!(
            outcomes[0].first_round_request_id,
            Some(first_round.clone())
        );
    }
    let outcomes = env.outcomes_for_request(&first_round).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].first_round_request_id, None);
}
