//! Streamable HTTP details: stateless GET/DELETE, Origin, slow upstreams, paginated lists,
//! server notifications passing through.

use axum::response::IntoResponse as _;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Env, Options, request_id};

/// A scripted upstream: paginated `tools/list`, a slow tool, and an SSE answer that carries a
/// `notifications/tools/list_changed` before the result.
async fn scripted_upstream() -> String {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::get(|headers: axum::http::HeaderMap| async move {
            // The server-to-client stream: says which event it resumes after.
            let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
            let event = format!("id: 8\ndata: {}\n\n", json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":format!("resumed after {last}")}}));
            ([("content-type", "text/event-stream")], event).into_response()
        })
        .post(|body: String| async move {
            let req: Value = serde_json::from_str(&body).expect("json");
            let id = req["id"].clone();
            let json = |v: Value| ([("content-type", "application/json")], v.to_string()).into_response();
            if req.get("id").is_none() {
                // Notifications (e.g. notifications/cancelled) are accepted without a body.
                return axum::http::StatusCode::ACCEPTED.into_response();
            }
            match (req["method"].as_str(), req["params"]["cursor"].as_str(), req["params"]["name"].as_str()) {
                (Some("tools/list"), None, _) => json(json!({"jsonrpc":"2.0","id":id,"result":{
                    "tools":[{"name":"get_ticket"},{"name":"delete_ticket"}],"nextCursor":"page-2"}})),
                (Some("tools/list"), Some("page-2"), _) => json(json!({"jsonrpc":"2.0","id":id,"result":{
                    "tools":[{"name":"list_tickets"},{"name":"create_ticket"}]}})),
                (Some("tools/call"), _, Some("slow_tool")) => {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    json(json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}})).into_response()
                }
                (Some("tools/call"), _, Some("endless_tool")) => {
                    // Progress every 100 ms, forever: never silent, never done.
                    let ticks = futures_util::stream::unfold(0u64, |n| async move {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        let event = format!("data: {}\n\n", json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":n}}));
                        Some((Ok::<_, std::convert::Infallible>(event), n + 1))
                    });
                    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(ticks)).into_response()
                }
                _ => {
                    let sse = format!(
                        "data: {}\n\ndata: {}\n\n",
                        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
                        json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"ok"}]}})
                    );
                    ([("content-type", "text/event-stream")], sse).into_response()
                }
            }
        }),
    );
    let addr = harness::serve_stand_in(app).await;
    format!("http://{addr}/mcp")
}

/// A gateway in front of [`scripted_upstream`], with `upstream_extra` TOML keys on its route.
async fn scripted_gateway(upstream_extra: Option<&str>) -> Env {
    let opts = Options {
        upstream_url: Some(scripted_upstream().await),
        upstream_extra: upstream_extra.map(str::to_owned),
        ..Default::default()
    };
    harness::start_with(AuditBackend::Sqlite, opts).await
}

/// A `tools/call` of the scripted upstream's tool `name`, JSON-RPC id 1, no arguments.
fn call_tool(name: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#)
}

#[tokio::test]
async fn paginated_lists_are_filtered_page_by_page_and_keep_their_cursor() {
    let env = scripted_gateway(None).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let page1: Value = env
        .post(
            Some(&reader),
            &[],
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page1["result"]["tools"], json!([{"name":"get_ticket"}]));
    assert_eq!(
        page1["result"]["nextCursor"], "page-2",
        "the cursor survives filtering"
    );
    let page2: Value = env
        .post(
            Some(&reader),
            &[],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"page-2"}}"#,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page2["result"]["tools"], json!([{"name":"list_tickets"}]));
}

#[tokio::test]
async fn server_notifications_pass_through_the_stream() {
    let env = scripted_gateway(None).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let resp = env.post(Some(&reader), &[], &call_tool("get_ticket")).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(text.contains("notifications/tools/list_changed"), "{text}");
    assert!(text.contains(r#""id":1"#), "{text}");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let env = scripted_gateway(Some("timeout_secs = 1")).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    // The scripted upstream's `slow_tool` takes 3 s; the policy lets admins call any tool.
    let resp = env.post(Some(&admin), &[], &call_tool("slow_tool")).await;
    assert_eq!(resp.status(), 504);
    let o = env.outcomes_for_request(&request_id(&resp)).await;
    assert_eq!(o[0].outcome.as_deref(), Some("upstream_timeout"));
}

#[tokio::test]
async fn stateless_clients_cannot_get_or_delete_and_foreign_origins_are_refused() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = env
            .http
            .request(method.clone(), &env.route)
            .bearer_auth(&reader)
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 405, "{method}");
    }
    let resp = env
        .http
        .post(&env.route)
        .bearer_auth(&reader)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403, "DNS-rebinding protection");
    assert_eq!(env.upstream.log.request_count(), 0);
}

#[tokio::test]
async fn a_stream_longer_than_max_stream_secs_is_cut_and_recorded() {
    let env = scripted_gateway(Some("max_stream_secs = 1")).await;
    let admin = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let resp = env
        .post(Some(&admin), &[], &call_tool("endless_tool"))
        .await;
    assert_eq!(resp.status(), 200, "the stream starts");
    let id = request_id(&resp);
    let started = std::time::Instant::now();
    let body = resp.text().await;
    assert!(body.is_err(), "the stream is cut, not ended cleanly");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "cut near the limit"
    );
    let o = env.outcomes_for_request(&id).await;
    assert_eq!(o[0].outcome.as_deref(), Some("stream_too_long"));
}

#[tokio::test]
async fn each_upstream_is_its_own_protected_resource_and_policy_namespace() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            second_upstream: true,
            ..Default::default()
        },
    )
    .await;
    let billing = format!("{}/mcp/billing", env.base);
    // Metadata per route, each with its own resource.
    let meta: Value = env
        .get("/.well-known/oauth-protected-resource/mcp/billing")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(meta["resource"], Value::String(billing.clone()));
    // With two routes the root form is ambiguous, so it is not served.
    let root = env.get("/.well-known/oauth-protected-resource").await;
    assert_eq!(root.status(), 404);

    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":1}}}"#;
    let post = |url: String, token: String| {
        let req = env.json_post(url).bearer_auth(token).body(call);
        async move { req.send().await.expect("send").status() }
    };
    // A token for the tickets route is not valid at the billing route (audience per route)...
    let tickets_token = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    assert_eq!(post(billing.clone(), tickets_token).await, 401);
    // ...and a billing token gets nothing from tickets rules (policy objects name the route).
    let mut req = env.token_request("rita", &["ticket-reader"], &["tickets:read"]);
    req.audience = vec![billing.clone()];
    let billing_token = env.mint(&req);
    assert_eq!(post(billing, billing_token).await, 403);
}

#[tokio::test]
async fn resumption_and_cancellation_pass_through() {
    let env = scripted_gateway(None).await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let resp = env.get_stream(&reader, &[("last-event-id", "7")]).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("stream");
    assert!(
        text.contains("resumed after 7"),
        "Last-Event-ID reaches the upstream: {text}"
    );
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user"}}"#;
    let resp = env.post(Some(&reader), &[], cancel).await;
    assert_eq!(
        resp.status(),
        202,
        "a client notification is answered 202, as the upstream did"
    );
    assert_eq!(env.records_for(&resp).await.len(), 1, "and recorded");
}
