//! Raw HTTP exchanges of both protocol generations, as the gateway sees them on the wire.

use demo_upstream::DemoConfig;
use serde_json::{Value, json};

use crate::support::{Raw, modern_meta, start};

fn tool_names(list_result: &Value) -> Vec<String> {
    let mut names: Vec<String> = list_result["result"]["tools"]
        .as_array()
        .expect("a tools array")
        .iter()
        .map(|t| t["name"].as_str().expect("a tool name").to_owned())
        .collect();
    names.sort();
    names
}

/// Session-based revisions: `initialize` opens a session; every later request carries
/// `Mcp-Session-Id`; every response to a request is an SSE stream.
#[tokio::test]
async fn legacy_session_exchange_works_for_2025_06_18_and_2025_11_25() {
    let upstream = start(DemoConfig::default()).await;
    let raw = Raw::new(upstream.url());
    for version in ["2025-06-18", "2025-11-25"] {
        let init = raw
            .post(
                &[],
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "1.0"}
                }}),
            )
            .await;
        assert_eq!(init.status, 200, "{init:?}");
        assert_eq!(init.content_type, "text/event-stream");
        // The first SSE event is a priming event (`id: 0`, `retry: 3000`, empty data).
        assert!(
            init.body.starts_with("data: \nid: 0\nretry: 3000\n\n"),
            "{init:?}"
        );
        let session = init
            .header("mcp-session-id")
            .expect("initialize answers with Mcp-Session-Id")
            .to_owned();
        let result = &init.message()["result"];
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(result["serverInfo"]["name"], "demo-upstream");
        assert!(result["capabilities"]["tools"].is_object());
        assert!(result["capabilities"]["resources"].is_object());
        assert!(result["capabilities"]["prompts"].is_object());

        let in_session = [
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", version),
        ];
        let initialized = raw
            .post(
                &in_session,
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(initialized.status, 202, "{initialized:?}");
        assert!(initialized.body.is_empty());

        let list = raw
            .post(
                &in_session,
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            )
            .await;
        assert_eq!(list.status, 200, "{list:?}");
        assert_eq!(list.content_type, "text/event-stream");
        assert_eq!(list.message()["id"], 2);
        assert_eq!(
            tool_names(list.message()),
            [
                "create_ticket",
                "delete_ticket",
                "get_ticket",
                "list_tickets"
            ]
        );

        let call = raw
            .post(
                &in_session,
                json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "get_ticket", "arguments": {"id": 2}}}),
            )
            .await;
        assert_eq!(call.status, 200, "{call:?}");
        let result = &call.message()["result"];
        assert_eq!(result["isError"], false);
        let ticket: Value =
            serde_json::from_str(result["content"][0]["text"].as_str().expect("text content"))
                .expect("ticket JSON");
        assert_eq!(ticket["title"], "Add dark mode");
        // Legacy results carry no `resultType`: rmcp strips it for pre-2026 peers.
        assert!(result.get("resultType").is_none(), "{result}");

        // Unknown tool ids are tool errors, still HTTP 200.
        let missing = raw
            .post(
                &in_session,
                json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                       "params": {"name": "delete_ticket", "arguments": {"id": 999}}}),
            )
            .await;
        assert_eq!(missing.status, 200);
        assert_eq!(missing.message()["result"]["isError"], true);

        let no_session = raw
            .post(
                &[("mcp-protocol-version", version)],
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
            )
            .await;
        assert_eq!(no_session.status, 400, "{no_session:?}");

        let unknown_session = raw
            .post(
                &[
                    ("mcp-session-id", "no-such-session"),
                    ("mcp-protocol-version", version),
                ],
                json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
            )
            .await;
        assert_eq!(unknown_session.status, 404, "{unknown_session:?}");

        let mut delete = raw.request(reqwest::Method::DELETE);
        for (name, value) in in_session {
            delete = delete.header(name, value);
        }
        let deleted = raw.send(delete).await;
        assert_eq!(deleted.status, 202, "{deleted:?}");
        let after_delete = raw
            .post(
                &in_session,
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}),
            )
            .await;
        assert_eq!(after_delete.status, 404, "{after_delete:?}");
    }

    // Every session-bound request carried its session id; the log saw them all.
    let requests = upstream.log.requests();
    let with_session = requests.iter().filter(|r| r.session_id.is_some()).count();
    assert_eq!(requests.len(), 2 * 9);
    assert_eq!(with_session, 2 * 7);
    assert_eq!(
        upstream.log.tool_calls(),
        ["get_ticket", "delete_ticket"].repeat(2)
    );
    upstream.shutdown().await;
}

/// 2026-07-28: no session; each request carries `_meta` protocol version, client info and
/// capabilities, plus the `MCP-Protocol-Version`, `Mcp-Method` (and for tools, `Mcp-Name`)
/// headers. Answers are SSE by default and `application/json` with `json_response`.
#[tokio::test]
async fn modern_stateless_exchange_works_with_sse_and_json_answers() {
    for (json_response, expected_type) in [(false, "text/event-stream"), (true, "application/json")]
    {
        let upstream = start(DemoConfig {
            json_response,
            ..DemoConfig::default()
        })
        .await;
        let raw = Raw::new(upstream.url());
        let version = ("mcp-protocol-version", "2026-07-28");

        let discover = raw
            .post(
                &[version, ("mcp-method", "server/discover")],
                json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                       "params": {"_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(discover.status, 200, "{discover:?}");
        assert_eq!(discover.content_type, expected_type);
        assert!(discover.header("mcp-session-id").is_none());
        let supported = &discover.message()["result"]["supportedVersions"];
        assert!(
            supported.as_array().is_some_and(
                |v| v.contains(&json!("2026-07-28")) && v.contains(&json!("2025-11-25"))
            ),
            "{supported}"
        );

        let list = raw
            .post(
                &[version, ("mcp-method", "tools/list")],
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                       "params": {"_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(list.status, 200, "{list:?}");
        assert_eq!(list.content_type, expected_type);
        assert_eq!(list.message()["result"]["resultType"], "complete");
        assert_eq!(tool_names(list.message()).len(), 4);

        let call = raw
            .post(
                &[
                    version,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "get_ticket"),
                ],
                json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "get_ticket", "arguments": {"id": 3},
                                  "_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(call.status, 200, "{call:?}");
        assert_eq!(call.content_type, expected_type);
        assert!(call.header("mcp-session-id").is_none());
        assert_eq!(call.message()["result"]["isError"], false);

        let read = raw
            .post(
                &[
                    version,
                    ("mcp-method", "resources/read"),
                    ("mcp-name", "tickets://open"),
                ],
                json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                       "params": {"uri": "tickets://open", "_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(read.status, 200, "{read:?}");
        assert_eq!(
            read.message()["result"]["contents"][0]["uri"],
            "tickets://open"
        );

        // Header problems are answered before the handler runs, always as JSON with HTTP 400.
        let no_method_header = raw
            .post(
                &[version],
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                       "params": {"name": "get_ticket", "arguments": {"id": 1},
                                  "_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(no_method_header.status, 400, "{no_method_header:?}");
        assert_eq!(no_method_header.content_type, "application/json");
        assert_eq!(no_method_header.message()["error"]["code"], -32020);

        let no_name_header = raw
            .post(
                &[version, ("mcp-method", "tools/call")],
                json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                       "params": {"name": "get_ticket", "arguments": {"id": 1},
                                  "_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(no_name_header.status, 400, "{no_name_header:?}");
        assert_eq!(no_name_header.message()["error"]["code"], -32020);

        let wrong_name_header = raw
            .post(
                &[
                    version,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "list_tickets"),
                ],
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "delete_ticket", "arguments": {"id": 1},
                                  "_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(wrong_name_header.status, 400, "{wrong_name_header:?}");
        assert_eq!(wrong_name_header.message()["error"]["code"], -32020);

        let no_meta = raw
            .post(
                &[
                    version,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "get_ticket"),
                ],
                json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                       "params": {"name": "get_ticket", "arguments": {"id": 1}}}),
            )
            .await;
        assert_eq!(no_meta.status, 400, "{no_meta:?}");
        assert_eq!(no_meta.message()["error"]["code"], -32602);

        let unknown_method = raw
            .post(
                &[version, ("mcp-method", "nope/nope")],
                json!({"jsonrpc": "2.0", "id": 9, "method": "nope/nope",
                       "params": {"_meta": modern_meta()}}),
            )
            .await;
        assert_eq!(unknown_method.status, 404, "{unknown_method:?}");
        assert_eq!(unknown_method.message()["error"]["code"], -32601);

        let notification = raw
            .post(
                &[version, ("mcp-method", "notifications/cancelled")],
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 1}}),
            )
            .await;
        assert_eq!(notification.status, 202, "{notification:?}");

        let get = raw
            .send(
                raw.request(reqwest::Method::GET)
                    .header("accept", "text/event-stream")
                    .header(version.0, version.1),
            )
            .await;
        assert_eq!(get.status, 405, "{get:?}");

        // The log records what arrived over HTTP, so the calls rmcp rejected for bad headers are
        // in it too: they reached the upstream, only the handler never ran.
        assert_eq!(
            upstream.log.tool_calls(),
            [
                "get_ticket",
                "get_ticket",
                "get_ticket",
                "delete_ticket",
                "get_ticket"
            ]
        );
        assert_eq!(upstream.log.request_count(), 11);
        assert!(
            upstream
                .log
                .requests()
                .iter()
                .all(|r| r.session_id.is_none())
        );
        upstream.shutdown().await;
    }
}

/// Both Accept media types are required on POST.
#[tokio::test]
async fn post_without_both_accept_types_is_406() {
    let upstream = start(DemoConfig::default()).await;
    let raw = Raw::new(upstream.url());
    let reply = raw
        .send(
            raw.request(reqwest::Method::POST)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(
                    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                        "protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "raw-test", "version": "1.0"}}})
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(reply.status, 406, "{reply:?}");
    upstream.shutdown().await;
}

/// The gateway may forward any `Host`; rmcp's loopback-only default is switched off.
#[tokio::test]
async fn any_host_header_is_accepted() {
    let upstream = start(DemoConfig::default()).await;
    let raw = Raw::new(upstream.url());
    let reply = raw
        .send(
            raw.request(reqwest::Method::POST)
                .header("host", "mcp-gateway.example.com:8443")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list")
                .body(
                    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                           "params": {"_meta": modern_meta()}})
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    upstream.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let upstream = start(DemoConfig::default()).await;
    let addr = upstream.addr;
    assert!(upstream.url().starts_with("http://127.0.0.1:"));
    upstream.shutdown().await;
    let connect = tokio::net::TcpStream::connect(addr).await;
    assert!(connect.is_err(), "the port still accepts connections");
}
