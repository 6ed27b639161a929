//! End-to-end behaviour of the request pipeline: authentication, scopes, RBAC, audit,
//! forwarding and list filtering, driven by rmcp clients and raw HTTP.

use authz_test_support::TestDatabase;
use authz_types::{Effect, ReasonCode};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::harness::{
    self, AuditBackend, Client, Env, UPSTREAM_SECRET, challenge, request_id, tools_call,
};

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name).with_arguments(args)
}

/// The names of every tool the client is shown, in the order listed.
async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// The walk every backend must pass: a reader lists and reads but cannot delete; an admin
/// deletes; bad tokens are refused; every decision leaves exactly one record.
async fn scenario(env: &Env) {
    let reader = env.token(
        "rita",
        &["ticket-reader"],
        &["tickets:read", "tickets:write"],
    );
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);

    // Session-based rmcp client (2025-11-25).
    let client = env.legacy_client(&reader).await;
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(
        names,
        ["get_ticket", "list_tickets"],
        "the reader sees only what it may call"
    );
    let got = client
        .call_tool(call("get_ticket", json!({"id": 1})))
        .await
        .expect("get_ticket allowed");
    assert_ne!(got.is_error, Some(true));
    let refused = client
        .call_tool(call("delete_ticket", json!({"id": 1})))
        .await;
    assert!(
        refused.is_err(),
        "delete_ticket must be refused for the reader: {refused:?}"
    );
    drop(client);

    let calls = env.upstream.log.tool_calls();
    assert!(calls.contains(&"get_ticket".to_owned()));
    assert!(
        !calls.contains(&"delete_ticket".to_owned()),
        "the refused call never reached the upstream: {calls:?}"
    );

    // Stateless 2026-07-28 rmcp client.
    let client = env.modern_client(&admin).await;
    let names = tool_names(&client).await;
    assert_eq!(names.len(), 4, "the admin sees every tool: {names:?}");
    let deleted = client
        .call_tool(call("delete_ticket", json!({"id": 2})))
        .await
        .expect("admin may delete");
    assert_ne!(deleted.is_error, Some(true));
    drop(client);
    assert!(
        env.upstream
            .log
            .tool_calls()
            .contains(&"delete_ticket".to_owned())
    );

    // The upstream only ever saw the gateway's own credential, never an agent token.
    let expected = format!("Bearer {UPSTREAM_SECRET}");
    for h in env.upstream.log.authorization_headers() {
        assert_eq!(h.as_deref(), Some(expected.as_str()));
    }

    // Audit: exactly one record for the refused delete, with the identity and the reason.
    let records = env.all_records().await;
    let denied: Vec<_> = records
        .iter()
        .filter(|r| {
            r.subject.as_deref() == Some("rita") && r.target.as_deref() == Some("delete_ticket")
        })
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = denied[0];
    assert_eq!(d.decision, Effect::Deny);
    assert!(
        matches!(
            d.reason,
            ReasonCode::NoMatchingRule | ReasonCode::ExplicitDeny
        ),
        "{d:?}"
    );
    assert_eq!(d.http_status, Some(403));
    assert_eq!(d.roles, ["ticket-reader"]);
    assert_eq!(d.client_id.as_deref(), Some("test-agent"));
    assert_eq!(d.upstream, "tickets");
    let allowed_delete: Vec<_> = records
        .iter()
        .filter(|r| {
            r.subject.as_deref() == Some("adam") && r.target.as_deref() == Some("delete_ticket")
        })
        .collect();
    assert_eq!(allowed_delete.len(), 1);
    assert_eq!(allowed_delete[0].decision, Effect::Allow);
    assert_eq!(allowed_delete[0].reason, ReasonCode::PolicyAllow);
    assert!(allowed_delete[0].matched_rule.is_some());

    unauthenticated_requests_are_refused_and_recorded(env).await;

    // Every record is on one intact hash chain.
    let report = env.assert_chain_intact().await;
    assert_eq!(report.unchained_records, 0);
}

async fn unauthenticated_requests_are_refused_and_recorded(env: &Env) {
    let now = authz_types::now_unix_ms() / 1000;
    let mut expired = env.token_request("eve", &["ticket-admin"], &["tickets:write"]);
    expired.issued_at = Some(now - 2000);
    let mut wrong_aud = env.token_request("eve", &["ticket-admin"], &["tickets:write"]);
    wrong_aud.audience = vec!["http://elsewhere.test/mcp/tickets".into()];
    let mut wrong_iss = env.token_request("eve", &["ticket-admin"], &["tickets:write"]);
    wrong_iss.issuer = "https://evil.test".into();
    let forged = env
        .attacker
        .mint(&env.token_request("eve", &["ticket-admin"], &["tickets:write"]))
        .expect("mint");

    let cases: Vec<(&str, Option<String>, ReasonCode)> = vec![
        ("missing", None, ReasonCode::TokenMissing),
        (
            "expired",
            Some(env.mint(&expired)),
            ReasonCode::TokenExpired,
        ),
        (
            "wrong audience",
            Some(env.mint(&wrong_aud)),
            ReasonCode::TokenWrongAudience,
        ),
        (
            "wrong issuer",
            Some(env.mint(&wrong_iss)),
            ReasonCode::TokenWrongIssuer,
        ),
        ("bad signature", Some(forged), ReasonCode::TokenBadSignature),
        (
            "garbage",
            Some("not.a-token".into()),
            ReasonCode::TokenMalformed,
        ),
    ];
    let before = env.upstream.log.request_count();
    for (name, token, reason) in cases {
        let resp = env
            .post_tools_call(token.as_deref(), 9, "delete_ticket")
            .await;
        assert_eq!(resp.status(), 401, "{name}");
        let challenge = challenge(&resp);
        let metadata = format!(
            "{}/.well-known/oauth-protected-resource/mcp/tickets",
            env.base
        );
        assert!(
            challenge.starts_with(&format!("Bearer resource_metadata=\"{metadata}\"")),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains("scope=\"tickets:read tickets:write\""),
            "{name}: {challenge}"
        );
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            token.is_some(),
            "{name}: {challenge}"
        );
        let records = env.records_for(&resp).await;
        assert_eq!(records.len(), 1, "{name}: exactly one record");
        assert_eq!(records[0].reason, reason, "{name}");
        assert_eq!(records[0].decision, Effect::Deny);
        assert_eq!(records[0].http_status, Some(401));
        assert_eq!(
            records[0].subject, None,
            "{name}: an unverified identity is never recorded as fact"
        );
    }
    assert_eq!(
        env.upstream.log.request_count(),
        before,
        "nothing unauthenticated reached the upstream"
    );
}

#[tokio::test]
async fn end_to_end_with_sqlite_audit() {
    let env = harness::start(AuditBackend::Sqlite).await;
    scenario(&env).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn end_to_end_with_postgres_audit() {
    let db = TestDatabase::postgres().await;
    let env = harness::start(AuditBackend::Postgres(db.url().to_owned())).await;
    scenario(&env).await;
}

#[tokio::test]
async fn missing_scope_gets_a_challenge_naming_every_needed_scope() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let narrow = env.token("nora", &["ticket-admin"], &["tickets:read"]);
    let resp = env.post_tools_call(Some(&narrow), 1, "delete_ticket").await;
    assert_eq!(resp.status(), 403);
    let challenge = challenge(&resp);
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"tickets:write\""),
        "{challenge}"
    );
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::InsufficientScope);
    let body: Value = resp.json().await.expect("JSON-RPC error body");
    assert_eq!(body["id"], json!(1));
    assert_eq!(
        body["error"]["code"],
        json!(authz_gateway::error::FORBIDDEN_CODE)
    );
    assert_eq!(body["error"]["data"]["reason"], json!("insufficient_scope"));
    assert!(env.upstream.log.tool_calls().is_empty());
}

#[tokio::test]
async fn rbac_denial_is_a_plain_403_with_a_reason_and_no_policy_text() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:write"]);
    let resp = env.post_tools_call(Some(&reader), 4, "delete_ticket").await;
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers().get("www-authenticate").is_none(),
        "no scope would help"
    );
    let request_id = request_id(&resp);
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(
        body["error"]["code"],
        json!(authz_gateway::error::FORBIDDEN_CODE)
    );
    assert_eq!(
        body["error"]["data"]["requestId"].as_str(),
        Some(request_id.as_str())
    );
    let text = body.to_string();
    assert!(
        !text.contains("tool:tickets"),
        "policy text never reaches the client: {text}"
    );
    assert!(env.upstream.log.tool_calls().is_empty());
}

#[tokio::test]
async fn malformed_and_ambiguous_bodies_are_refused_and_recorded() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","name":"delete_ticket"}}"#;
    for (body, code) in [
        (dup, -32700),
        ("{", -32700),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
    ] {
        let resp = env.post(Some(&admin), &[], body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let record = env.the_record_for(&resp).await;
        assert_eq!(record.reason, ReasonCode::MalformedRequest);
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], json!(code), "{body}");
    }
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn standard_headers_must_match_the_body() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_ticket"),
    ];
    let resp = env
        .post(Some(&admin), &headers, &tools_call(1, "delete_ticket"))
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], json!(-32020));
    let resp = env
        .post(
            Some(&admin),
            &[("mcp-protocol-version", "2099-01-01")],
            &tools_call(1, "get_ticket"),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], json!(-32022));
    assert_eq!(v["id"], json!(1), "the error answers the request's id: {v}");
    // The 2026-07-28 layout clients read to fall back to a version both sides speak.
    assert_eq!(v["error"]["data"]["requested"], json!("2099-01-01"), "{v}");
    assert_eq!(
        v["error"]["data"]["supported"],
        json!([
            "2024-11-05",
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28"
        ]),
        "{v}"
    );
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn a_session_is_useless_to_anyone_but_its_owner() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let mallory = env.token("mallory", &["ticket-reader"], &["tickets:read"]);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = env.post(Some(&alice), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session id")
        .to_owned();
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let before = env.upstream.log.request_count();
    let resp = env.post(Some(&mallory), &h, &list).await;
    assert_eq!(resp.status(), 404);
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::SessionMismatch);
    assert_eq!(record.subject.as_deref(), Some("mallory"));
    assert_eq!(
        env.upstream.log.request_count(),
        before,
        "the hijack attempt never reached the upstream"
    );
    // Not even an `initialize` may ride on someone else's session id.
    let reinit = env
        .post(
            Some(&mallory),
            &[("mcp-session-id", sid.as_str())],
            &init.to_string(),
        )
        .await;
    assert_eq!(reinit.status(), 404);
    assert_eq!(
        env.upstream.log.request_count(),
        before,
        "the hijack attempts never reached the upstream"
    );
    let resp = env.post(Some(&alice), &h, &list).await;
    assert_eq!(resp.status(), 200, "the owner keeps using it");
}

#[tokio::test]
async fn when_the_audit_store_refuses_nothing_is_forwarded() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    // Make the real store refuse every insert, as a full disk or a lost database would.
    env.refuse_audit_inserts("").await;
    let resp = env.post_tools_call(Some(&admin), 1, "get_ticket").await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["data"]["reason"], json!("audit_unavailable"));
    let resp = env.post_tools_call(None, 2, "get_ticket").await;
    assert_eq!(
        resp.status(),
        503,
        "even a refusal is not answered without its record"
    );
    assert_eq!(
        env.upstream.log.request_count(),
        0,
        "nothing passed without a record"
    );
    let metrics = env.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("authz_audit_failures_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn protected_resource_metadata_describes_each_route() {
    let env = harness::start(AuditBackend::Sqlite).await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp/tickets",
        "/.well-known/oauth-protected-resource",
    ] {
        let v: Value = env.get(path).await.json().await.expect("json");
        assert_eq!(v["resource"], json!(env.route));
        assert_eq!(v["authorization_servers"], json!([harness::ISSUER]));
        assert_eq!(
            v["scopes_supported"],
            json!(["tickets:read", "tickets:write"])
        );
        assert_eq!(v["bearer_methods_supported"], json!(["header"]));
    }
    let resp = env
        .get("/.well-known/oauth-protected-resource/mcp/nope")
        .await;
    assert_eq!(resp.status(), 404);
    let ready = env.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("readyz json");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["not_ready"], json!([]), "{body}");
    // The key and revocation states are read from the verifier, not written as literals.
    assert_eq!(body["keys"]["state"], "ok", "{body}");
    let issuers = body["keys"]["issuers"].as_array().expect("issuers");
    assert!(!issuers.is_empty(), "{body}");
    assert!(
        issuers
            .iter()
            .all(|i| i["keys"].as_u64().is_some_and(|n| n > 0) && i["stale"] == false),
        "{body}"
    );
    assert_eq!(body["revocations"]["state"], "ok", "{body}");
    assert!(body["revocations"]["revision"].is_i64(), "{body}");
}

#[tokio::test]
async fn an_upstream_that_refuses_the_gateway_credential_is_a_502_not_a_401() {
    // The demo upstream wants a bearer; this gateway is configured with the wrong one.
    let opts = harness::Options {
        upstream_credential: Some("not-the-upstream-secret"),
        ..Default::default()
    };
    let env = harness::start_with(AuditBackend::Sqlite, opts).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env.post_tools_call(Some(&admin), 1, "get_ticket").await;
    assert_eq!(resp.status(), 502);
    assert!(
        resp.headers().get("www-authenticate").is_none(),
        "the upstream's challenge is not passed on"
    );
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(
        v["error"]["data"]["reason"],
        json!("upstream_rejected_gateway")
    );
}

/// An admin's `get_ticket` through a gateway whose upstream is dead (nothing listens there):
/// the gateway can still decide and record, but cannot forward, so the answer is a 502.
async fn get_ticket_from_a_dead_upstream() -> (Env, reqwest::Response) {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            dead_upstream: true,
            ..Default::default()
        },
    )
    .await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env.post_tools_call(Some(&admin), 1, "get_ticket").await;
    assert_eq!(resp.status(), 502);
    (env, resp)
}

#[tokio::test]
async fn a_dead_upstream_is_a_502_after_the_decision_was_recorded() {
    let (env, resp) = get_ticket_from_a_dead_upstream().await;
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.decision, Effect::Allow);
}

/// A stand-in OAuth token endpoint that checks the client's credentials and counts requests.
async fn token_endpoint(
    tokens: Vec<&'static str>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            let tokens = tokens.clone();
            async move {
                let basic = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                // base64("gateway:gateway-client-secret")
                if basic != "Basic Z2F0ZXdheTpnYXRld2F5LWNsaWVudC1zZWNyZXQ="
                    || !body.contains("grant_type=client_credentials")
                {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let token = tokens[n.min(tokens.len() - 1)];
                (
                    axum::http::StatusCode::OK,
                    json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
                        .to_string(),
                )
            }
        }),
    );
    let addr = harness::serve_stand_in(app).await;
    (format!("http://{addr}/token"), calls)
}

#[tokio::test]
async fn oauth_client_credentials_are_fetched_once_and_refreshed_after_a_refusal() {
    use std::sync::atomic::Ordering;
    // The first token the endpoint hands out is not the one the upstream accepts; the second is.
    let (url, calls) = token_endpoint(vec!["stale-token", UPSTREAM_SECRET]).await;
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            oauth_token_url: Some(url),
            ..Default::default()
        },
    )
    .await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env.post_tools_call(Some(&admin), 1, "get_ticket").await;
    assert_eq!(resp.status(), 502, "the upstream refuses the first token");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for id in 2..5 {
        let resp = env.post_stateless_call(&admin, id, "get_ticket").await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status, 200,
            "a fresh token was fetched after the refusal: {text}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the good token is cached and reused"
    );
    let expected = format!("Bearer {UPSTREAM_SECRET}");
    let headers = env.upstream.log.authorization_headers();
    assert_eq!(
        headers
            .iter()
            .filter(|h| h.as_deref() == Some(expected.as_str()))
            .count(),
        3
    );
    assert!(
        headers
            .iter()
            .all(|h| !h.as_deref().unwrap_or("").contains(&admin)),
        "the agent token never went upstream"
    );
}

#[tokio::test]
async fn a_principal_over_its_in_flight_limit_gets_429_and_a_record() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            max_in_flight: Some(1),
            ..Default::default()
        },
    )
    .await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let bob = env.token("bob", &["ticket-reader"], &["tickets:read"]);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = env.post(Some(&alice), &[], &init.to_string()).await;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("session")
        .to_owned();
    resp.text().await.expect("initialize body read to the end");

    // A long-lived GET stream holds alice's only slot.
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let stream = env.get_stream(&alice, &h).await;
    assert_eq!(stream.status(), 200);

    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let resp = env.post(Some(&alice), &h, &list).await;
    assert_eq!(resp.status(), 429);
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::TooManyRequests);
    assert_eq!(record.http_status, Some(429));

    // Others are not affected.
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"}).to_string();
    assert_ne!(env.post(Some(&bob), &[], &ping).await.status(), 429);

    // Closing the stream frees the slot (released asynchronously: poll with a deadline).
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = env.post(Some(&alice), &h, &list).await.status();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never released (last status {status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused_even_with_a_good_header() {
    // Aggregation off: the three identical refusals are each looked up by their request id.
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            server_extra: Some("refusal_aggregate_window_ms = 0".into()),
            ..harness::Options::default()
        },
    )
    .await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    // Percent-encoded spellings of the name are the same parameter to anyone who decodes it.
    for name in ["access_token", "access%5Ftoken", "%61ccess_token"] {
        refuses_token_in_query(&env, &admin, name).await;
    }
}

async fn refuses_token_in_query(env: &harness::Env, admin: &str, name: &str) {
    let before = env.upstream.log.request_count();
    let resp = env
        .json_post(format!("{}?{name}={admin}", env.route))
        .bearer_auth(admin)
        .body(tools_call(1, "get_ticket"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let challenge = challenge(&resp);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::TokenNotInHeader, "{name}");
    assert_eq!(env.upstream.log.request_count(), before, "{name}");
}

#[tokio::test]
async fn buffered_audit_records_every_request_and_drains_on_shutdown() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            audit_mode: Some("buffered"),
            ..Default::default()
        },
    )
    .await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let mut ids = Vec::new();
    for id in 0..20 {
        let resp = env.post_stateless_call(&admin, id, "get_ticket").await;
        assert_eq!(resp.status(), 200);
        ids.push(request_id(&resp));
    }
    let env = env.stop().await;
    env.assert_one_decision_each(&ids).await;
    env.assert_chain_intact().await;
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused_and_recorded() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"create_ticket","arguments":{{"body":"{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let resp = env.post(Some(&admin), &[], &big).await;
    assert_eq!(resp.status(), 413);
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::LimitExceeded);
    assert_eq!(record.subject.as_deref(), Some("adam"));

    let huge = "h".repeat(40 * 1024);
    let resp = env
        .post(
            Some(&admin),
            &[("x-padding", huge.as_str())],
            &tools_call(2, "get_ticket"),
        )
        .await;
    assert_eq!(resp.status(), 431);
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::LimitExceeded);
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn records_carry_trace_arguments_and_the_outcome_of_the_exchange() {
    let opts = harness::Options {
        upstream_extra: Some(
            r#"record_arguments = ["create_*"]
redact_arguments = { "create_*" = ["body"] }"#
                .to_owned(),
        ),
        ..Default::default()
    };
    let env = harness::start_with(AuditBackend::Sqlite, opts).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let trace = [(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];

    // A recorded call: arguments kept, with the named field redacted; outcome follows.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_ticket",
        "arguments":{"title":"printer on fire","body":"the secret details"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}});
    let headers = [
        trace[0],
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "create_ticket"),
    ];
    let resp = env.post(Some(&admin), &headers, &body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let d = &env.the_record_for(&resp).await;
    assert_eq!(
        d.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(d.args_digest.as_ref().map(String::len), Some(64));
    let recorded: Value =
        serde_json::from_str(d.arguments.as_deref().expect("arguments recorded")).expect("json");
    assert_eq!(
        recorded,
        json!({"title":"printer on fire","body":"[redacted]"})
    );
    resp.text().await.expect("read the answer to the end");
    let outcome = env.outcomes_for_request(&d.request_id).await;
    assert_eq!(outcome.len(), 1, "one outcome record follows the decision");
    let o = &outcome[0];
    assert_eq!(
        (o.upstream_status, o.outcome.as_deref()),
        (Some(200), Some("ok"))
    );
    assert!(o.upstream_latency_ms.is_some());
    assert_eq!(o.trace_id, d.trace_id);
    assert_eq!(o.args_digest, d.args_digest);

    // A call that is not configured for recording keeps only the digest.
    let resp = env.post_stateless_call(&admin, 2, "get_ticket").await;
    let d = &env.records_for(&resp).await[0];
    assert!(d.args_digest.is_some() && d.arguments.is_none());

    // A list: the outcome says what the caller was shown.
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let list = json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}});
    let resp = env
        .post(
            Some(&reader),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
            &list.to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.text().await.expect("body");
    let o = env.outcomes_for_request(&id).await;
    let mut shown = o[0].shown.clone();
    shown.sort();
    assert_eq!(shown, ["get_ticket", "list_tickets"]);
}

#[tokio::test]
async fn an_upstream_failure_leaves_an_outcome_record() {
    let (env, resp) = get_ticket_from_a_dead_upstream().await;
    let o = env.outcomes_for_request(&request_id(&resp)).await;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].outcome.as_deref(), Some("upstream_unavailable"));
    assert_eq!(o[0].http_status, Some(502));
    assert_eq!(o[0].upstream_status, None);
}

#[tokio::test]
async fn subscribe_and_unsubscribe_are_unknown_to_the_stateless_protocol() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let forwarded = env.upstream.log.request_count();
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        let body = json!({"jsonrpc":"2.0","id":41,"method":method,"params":{"uri":"tickets://1",
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                     "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
                     "io.modelcontextprotocol/clientCapabilities":{}}}})
        .to_string();
        let headers = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("mcp-name", "tickets://1"),
        ];
        let resp = env.post(Some(&reader), &headers, &body).await;
        assert_eq!(resp.status(), 404, "{method}");
        let record = env.the_record_for(&resp).await;
        assert_eq!(record.reason, ReasonCode::UnknownMethod, "{method}");
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], -32601, "{method}: {v}");
        assert_eq!(v["id"], 41, "the error answers the request's id: {v}");

        // Params it would not accept (no `uri`) do not make it known: still 404.
        let body = json!({"jsonrpc":"2.0","id":42,"method":method,"params":{
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                     "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
                     "io.modelcontextprotocol/clientCapabilities":{}}}})
        .to_string();
        let resp = env
            .post(
                Some(&reader),
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", method),
                ],
                &body,
            )
            .await;
        assert_eq!(resp.status(), 404, "{method} without params");
        let record = env.the_record_for(&resp).await;
        assert_eq!(record.reason, ReasonCode::UnknownMethod, "{method}");
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["error"]["code"], -32601, "{method}: {v}");
        assert_eq!(v["id"], 42, "{v}");
    }
    assert_eq!(
        env.upstream.log.request_count(),
        forwarded,
        "nothing forwarded"
    );
}
