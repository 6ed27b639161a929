//! The optional bearer-token requirement, and the log of `Authorization` headers.

use demo_upstream::DemoConfig;
use serde_json::json;

use crate::support::{
    Raw, legacy_client, modern_client, modern_meta, result_json, start, tool_call,
};

const TOKEN: &str = "upstream-s3cret";

fn guarded() -> DemoConfig {
    DemoConfig {
        require_bearer: Some(TOKEN.to_owned()),
        ..DemoConfig::default()
    }
}

#[tokio::test]
async fn requests_without_the_right_bearer_are_refused_before_mcp() {
    let upstream = start(guarded()).await;
    let raw = Raw::new(upstream.url());
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "delete_ticket", "arguments": {"id": 1},
                                 "_meta": modern_meta()}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "delete_ticket"),
    ];

    let missing = raw.post(&headers, call.clone()).await;
    assert_eq!(missing.status, 401, "{missing:?}");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="demo-upstream""#)
    );

    let wrong_auth = "Bearer agent-token";
    let wrong = raw
        .post(
            &[
                headers[0],
                headers[1],
                headers[2],
                ("authorization", wrong_auth),
            ],
            call.clone(),
        )
        .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");

    let basic = raw
        .post(
            &[
                headers[0],
                headers[1],
                headers[2],
                ("authorization", "Basic dXNlcjpwYXNz"),
            ],
            call.clone(),
        )
        .await;
    assert_eq!(basic.status, 401, "{basic:?}");

    // All three were received and logged, but none reached the MCP service.
    assert_eq!(upstream.log.request_count(), 3);
    assert!(upstream.log.tool_calls().is_empty());
    assert!(upstream.log.requests().iter().all(|r| r.refused));
    assert_eq!(
        upstream.log.authorization_headers(),
        [
            None,
            Some(wrong_auth.to_owned()),
            Some("Basic dXNlcjpwYXNz".to_owned())
        ]
    );

    let right = format!("Bearer {TOKEN}");
    let accepted = raw
        .post(
            &[
                headers[0],
                headers[1],
                headers[2],
                ("authorization", &right),
            ],
            call,
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    assert_eq!(accepted.message()["result"]["isError"], false);
    assert_eq!(upstream.log.tool_calls(), ["delete_ticket"]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn rmcp_clients_with_the_bearer_are_accepted_in_both_generations() {
    let upstream = start(guarded()).await;
    let expected = Some(format!("Bearer {TOKEN}"));

    let modern = modern_client(&upstream.url(), Some(TOKEN)).await;
    let got = modern
        .call_tool(tool_call("get_ticket", json!({"id": 1})))
        .await
        .expect("authorized stateless call");
    assert_eq!(result_json(&got)["id"], 1);
    modern.cancel().await.expect("close modern client");

    let legacy = legacy_client(&upstream.url(), Some(TOKEN)).await;
    let got = legacy
        .call_tool(tool_call("get_ticket", json!({"id": 2})))
        .await
        .expect("authorized session call");
    assert_eq!(result_json(&got)["id"], 2);
    legacy.cancel().await.expect("close legacy client");

    assert_eq!(upstream.log.tool_calls(), ["get_ticket", "get_ticket"]);
    let headers = upstream.log.authorization_headers();
    assert!(!headers.is_empty());
    assert!(headers.iter().all(|h| *h == expected), "{headers:?}");
    assert!(upstream.log.requests().iter().all(|r| !r.refused));
    upstream.shutdown().await;
}

#[tokio::test]
async fn rmcp_client_without_the_bearer_cannot_connect() {
    let upstream = start(guarded()).await;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(upstream.url());
    let result = rmcp::ServiceExt::serve((), transport).await;
    assert!(result.is_err(), "the handshake must fail without a token");
    assert!(upstream.log.tool_calls().is_empty());
    assert!(upstream.log.requests().iter().all(|r| r.refused));
    upstream.shutdown().await;
}

/// Without a required token the upstream accepts anything, and the log shows exactly what the
/// caller sent, so a gateway test can prove the agent's token was not forwarded.
#[tokio::test]
async fn the_log_shows_forwarded_authorization_headers() {
    let upstream = start(DemoConfig::default()).await;
    let client = modern_client(&upstream.url(), Some("agent-token")).await;
    client
        .call_tool(tool_call("list_tickets", json!({})))
        .await
        .expect("list_tickets");
    client.cancel().await.expect("close client");
    let headers = upstream.log.authorization_headers();
    assert!(!headers.is_empty());
    assert!(
        headers
            .iter()
            .all(|h| h.as_deref() == Some("Bearer agent-token")),
        "{headers:?}"
    );
    upstream.log.clear();
    assert_eq!(upstream.log.request_count(), 0);
    upstream.shutdown().await;
}
