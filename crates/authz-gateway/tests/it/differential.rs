//! No parser gaps: messages crafted to be read differently by a lenient parser never reach the
//! upstream, and what is authorized is what is forwarded. Plus the transports we claim.

use authz_types::ReasonCode;
use serde_json::Value;

use crate::harness::{self, AuditBackend};

#[tokio::test]
async fn ambiguous_or_disguised_messages_never_reach_the_upstream() {
    let env = harness::start(AuditBackend::Sqlite).await;
    // A reader: may call get_ticket, never delete_ticket.
    let reader = env.token(
        "rita",
        &["ticket-reader"],
        &["tickets:read", "tickets:write"],
    );
    let cases: &[(&str, &str, u16)] = &[
        // Last-wins parsers would see delete_ticket; first-wins would see get_ticket.
        (
            "duplicate name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","name":"delete_ticket"}}"#,
            400,
        ),
        (
            "duplicate params",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket"},"params":{"name":"delete_ticket"}}"#,
            400,
        ),
        (
            "duplicate method",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"delete_ticket"}}"#,
            400,
        ),
        (
            "escaped duplicate key",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","\u006eame":"delete_ticket"}}"#,
            400,
        ),
        // Escapes decode to the same method and name the upstream will see: classified as such.
        (
            "escaped method and name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\u002fcall","params":{"name":"delete\u005fticket"}}"#,
            403,
        ),
        // Case variants are other methods: unknown, refused.
        (
            "method case variant",
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"delete_ticket"}}"#,
            404,
        ),
        (
            "lone surrogate",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","x":"\ud800"}}"#,
            400,
        ),
        (
            "invalid number",
            r#"{"jsonrpc":"2.0","id":01,"method":"tools/call","params":{"name":"get_ticket"}}"#,
            400,
        ),
        (
            "batch",
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_ticket"}}]"#,
            400,
        ),
        (
            "trailing second message",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_ticket"}}"#,
            400,
        ),
    ];
    for (name, body, status) in cases {
        let resp = env.post(Some(&reader), &[], body).await;
        assert_eq!(resp.status().as_u16(), *status, "{name}");
        let records = env.records_for(&resp).await;
        assert_eq!(records.len(), 1, "{name}: one record");
        let expected = match status {
            400 => ReasonCode::MalformedRequest,
            404 => ReasonCode::UnknownMethod,
            _ => ReasonCode::NoMatchingRule,
        };
        assert_eq!(records[0].reason, expected, "{name}");
    }
    // Invalid UTF-8 in a string.
    let mut bytes =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","x":""#
            .to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#""}}"#);
    let resp = env
        .json_post(&env.route)
        .bearer_auth(&reader)
        .body(bytes)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400, "invalid UTF-8");
    assert!(
        env.upstream.log.tool_calls().is_empty(),
        "nothing ambiguous reached the upstream"
    );
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn clients_may_speak_http2() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/tickets",
            env.base
        ))
        .send()
        .await
        .expect("h2c");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["resource"], Value::String(env.route.clone()));
}

#[tokio::test]
async fn an_upstream_answering_garbage_to_a_list_is_a_502() {
    // An upstream that answers every POST with a broken JSON body.
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            (
                [("content-type", "application/json")],
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[",
            )
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
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env
        .post(
            Some(&admin),
            &[],
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
    assert_eq!(
        resp.status(),
        502,
        "an unreadable list is never passed on unfiltered"
    );
    let v: Value = resp.json().await.expect("json error body");
    assert_eq!(v["error"]["data"]["reason"], "upstream_invalid");
    let health = env.get("/healthz").await;
    assert_eq!(health.status(), 200, "the gateway stays up");
}

#[tokio::test]
async fn repeated_or_unreadable_transport_headers_are_refused_and_recorded() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    // Two session ids: ours first, someone else's second — never interpreted, refused.
    let resp = env
        .json_post(&env.route)
        .bearer_auth(&alice)
        .header("mcp-session-id", "mine")
        .header("mcp-session-id", "someone-elses")
        .body(list)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        env.records_for(&resp).await[0].reason,
        ReasonCode::MalformedRequest
    );
    let resp = env
        .json_post(&env.route)
        .bearer_auth(&alice)
        .header(
            "mcp-session-id",
            reqwest::header::HeaderValue::from_bytes(b"s\xe9ssion").expect("obs-text"),
        )
        .body(list)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let resp = env
        .post(
            Some(&alice),
            &[("mcp-protocol-version", "1999-01-01")],
            list,
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        env.records_for(&resp).await.len(),
        1,
        "a refused version is recorded too"
    );
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn a_public_cache_scope_leaves_the_gateway_private() {
    // An upstream that marks every result cacheable by anyone, for a minute.
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move {
            let id = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            (
                [("content-type", "application/json")],
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{
                    "contents":[{"uri":"tickets://1","text":"t"}],
                    "messages":[],
                    "cacheScope":"public","ttlMs":60000}})
                .to_string(),
            )
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
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    for body in [
        r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"tickets://1"}}"#,
        r#"{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"summarize"}}"#,
    ] {
        let resp = env.post(Some(&reader), &[], body).await;
        assert_eq!(resp.status(), 200, "{body}");
        let cache = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(v["result"]["cacheScope"], "private", "{v}");
        assert_eq!(v["result"]["ttlMs"], 60000, "the lifetime is kept: {v}");
        assert_eq!(cache.as_deref(), Some("private, no-store"));
    }
}

#[tokio::test]
async fn a_tool_result_the_gateway_cannot_read_still_passes_as_it_came() {
    // Results are only looked at for a multi round-trip state or a cache scope: one that is
    // not JSON (or is streamed without a length) passes unchanged, as before.
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async { ([("content-type", "text/plain")], "plain words") }),
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
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env.post_stateless_call(&admin, 1, "get_ticket").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "plain words");
}
