//! Virtual servers (`[[virtual_servers]]`): one route over several upstreams. Driven by rmcp's
//! session-based and stateless clients over two routes to the demo upstream, by a paginating
//! stand-in, and (`peers`) by the official TypeScript and Python SDK clients over the demo
//! upstream and a stdio upstream: merged lists under prefixes, routed calls decided and recorded
//! under each member's own route, pages per member, and sessions nobody else can use.

use std::process::Stdio;
use std::time::Duration;

use authz_types::{Effect, ReasonCode};
use axum::response::IntoResponse;
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Options};

/// The role reads tickets on both demo routes and may call two of the stdio peer's tools.
const POLICY: &str = "\
p, ticket-reader, default, tool:tickets/list_*, call, allow
p, ticket-reader, default, tool:tickets/get_*, call, allow
p, ticket-reader, default, resource:tickets/tickets://**, read, allow
p, ticket-reader, default, prompt:tickets/*, get, allow
p, ticket-reader, default, tool:billing/get_*, call, allow
p, ticket-reader, default, tool:files/echo, call, allow
p, ticket-reader, default, tool:files/whoami, call, allow
p, ticket-reader, default, tool:paged/*, call, allow
p, ticket-reader, default, tool:asker/*, call, allow
";

/// A gateway with the virtual route `all` over `members` (the extra routes in `sections`),
/// its `route` pointed at the virtual one (tokens are minted for it).
async fn virtual_gateway(
    sections: &str,
    second_upstream: bool,
) -> (harness::Env, tempfile::TempDir) {
    virtual_gateway_with(sections, second_upstream, Options::default()).await
}

async fn virtual_gateway_with(
    sections: &str,
    second_upstream: bool,
    opts: Options,
) -> (harness::Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    // Only the rules for routes this gateway has (the policy lint refuses the others).
    let rules: String = POLICY
        .lines()
        .filter(|l| {
            ["tickets", "billing", "files", "paged", "asker"]
                .iter()
                .any(|r| {
                    l.contains(&format!(":{r}/"))
                        && (*r == "tickets"
                            || (*r == "billing" && second_upstream)
                            || sections.contains(&format!("name = \"{r}\"")))
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&policy, rules).expect("policy");
    let mut env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            second_upstream,
            sections_extra: Some(sections.to_owned()),
            ..opts
        },
    )
    .await;
    env.route = format!("{}/mcp/all", env.base);
    (env, dir)
}

fn names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    let mut n: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    n.sort();
    n
}

fn call(name: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(args)
}

/// A raw `initialize` on the virtual route: the virtual session id.
async fn initialize(env: &harness::Env, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = env.post(Some(token), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .expect("a virtual session id")
        .to_str()
        .expect("ascii")
        .to_owned();
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["result"]["serverInfo"]["name"], "all", "{v}");
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_merges_lists_and_routes_calls_under_each_members_policy() {
    let sections = "[[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"billing\"]\n\
                    prefixes = { billing = \"bill.\" }\n";
    let (env, _dir) = virtual_gateway(sections, true).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let a = env.legacy_client(&alice).await;
    let info = a.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("all")
    );
    // Both members' tools under their prefixes, each filtered by its own route's policy.
    assert_eq!(
        names(&a.list_all_tools().await.expect("tools/list")),
        [
            "bill.get_ticket",
            "tickets_get_ticket",
            "tickets_list_tickets"
        ]
    );
    let prompts = a.list_all_prompts().await.expect("prompts/list");
    let prompt_names: Vec<_> = prompts.iter().map(|p| p.name.to_string()).collect();
    assert!(
        prompt_names.contains(&"tickets_triage_ticket".to_owned()),
        "{prompt_names:?}"
    );
    let resources = a.list_all_resources().await.expect("resources/list");
    let uris: Vec<_> = resources.iter().map(|r| r.uri.to_string()).collect();
    assert!(
        uris.contains(&"tickets+tickets://open".to_owned()),
        "{uris:?}"
    );

    // Calls go to the member their prefix names, decided and recorded there.
    for name in ["tickets_get_ticket", "bill.get_ticket"] {
        let r = a
            .call_tool(call(name, json!({"id": 1})))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(r.is_error, Some(true), "{name}: {r:?}");
    }
    let read = a
        .read_resource(ReadResourceRequestParams::new("tickets+tickets://open"))
        .await
        .expect("resources/read");
    assert!(!read.contents.is_empty());
    let mut args = serde_json::Map::new();
    args.insert("id".into(), json!("1"));
    a.get_prompt(GetPromptRequestParams::new("tickets_triage_ticket").with_arguments(args))
        .await
        .expect("prompts/get");
    // The policy of the member applies: billing grants get_* only.
    assert!(
        a.call_tool(call("bill.list_tickets", json!({})))
            .await
            .is_err_or_tool_error()
    );
    assert!(
        a.call_tool(call("nobody_list_tickets", json!({})))
            .await
            .is_err(),
        "no member has that prefix"
    );
    let records = env.all_records().await;
    let decided = |upstream: &str, target: &str| {
        records.iter().any(|r| {
            r.method == "tools/call"
                && r.upstream == upstream
                && r.target.as_deref() == Some(target)
                && r.decision == Effect::Allow
        })
    };
    assert!(decided("tickets", "get_ticket"));
    assert!(decided("billing", "get_ticket"));
    assert!(records.iter().any(|r| r.upstream == "billing"
        && r.target.as_deref() == Some("list_tickets")
        && r.decision == Effect::Deny));
    assert!(records.iter().any(|r| r.upstream == "all"
        && r.target.as_deref() == Some("nobody_list_tickets")
        && r.reason == ReasonCode::MalformedRequest));
    // Stateless 2026-07-28 clients get the same merged server.
    let m = env.modern_client(&alice).await;
    assert_eq!(
        names(&m.list_all_tools().await.expect("stateless tools/list")),
        [
            "bill.get_ticket",
            "tickets_get_ticket",
            "tickets_list_tickets"
        ]
    );
    let r = m
        .call_tool(call("bill.get_ticket", json!({"id": 1})))
        .await
        .expect("stateless call");
    assert_ne!(r.is_error, Some(true), "{r:?}");
    // The body names the call and the headers must agree with it as sent, before routing: a
    // header naming another member's tool is refused, not rewritten.
    let (headers, body) = harness::stateless_call(9, "tickets_get_ticket");
    let ok = env.post(Some(&alice), &headers, &body).await;
    assert_eq!(ok.status(), 200);
    // Passed through as the member answered (here an SSE stream).
    let text = ok.text().await.expect("body");
    assert!(text.contains(r#""resultType":"complete""#), "{text}");
    let mut lying = headers.clone();
    lying.retain(|(k, _)| *k != "mcp-name");
    lying.push(("mcp-name", "bill.get_ticket"));
    let refused = env.post(Some(&alice), &lying, &body).await;
    assert_eq!(refused.status(), 400);
    drop((a, m));
}

trait ErrOrToolError {
    fn is_err_or_tool_error(&self) -> bool;
}

impl<E> ErrOrToolError for Result<rmcp::model::CallToolResult, E> {
    fn is_err_or_tool_error(&self) -> bool {
        match self {
            Ok(r) => r.is_error == Some(true),
            Err(_) => true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_session_is_its_owners_alone() {
    let sections = "[[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"billing\"]\n";
    let (env, _dir) = virtual_gateway(sections, true).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let bob = env.token("bob", &["ticket-reader"], &["tickets:read"]);
    let sid = initialize(&env, &alice).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let version = ("mcp-protocol-version", "2025-11-25");
    let ok = env
        .post(Some(&alice), &[("mcp-session-id", &sid), version], &list)
        .await;
    assert_eq!(ok.status(), 200);
    // Someone else presenting it: every member session is unknown to them.
    let stolen = env
        .post(Some(&bob), &[("mcp-session-id", &sid), version], &list)
        .await;
    assert_eq!(stolen.status(), 404);
    // A forged one: not ours, or naming a route that is not a member.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for forged in [
        "v1.not-base64!".to_owned(),
        format!("v1.{}", b64.encode(r#"{"elsewhere":"x"}"#)),
        "abc".to_owned(),
    ] {
        let resp = env
            .post(Some(&alice), &[("mcp-session-id", &forged), version], &list)
            .await;
        assert_eq!(resp.status(), 404, "{forged}");
    }
    // No server-to-client stream through a virtual route.
    let get = env
        .http
        .get(&env.route)
        .bearer_auth(&alice)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 405);
    // DELETE ends both member sessions; the virtual one is gone with them.
    let del = env
        .http
        .delete(&env.route)
        .bearer_auth(&alice)
        .header("mcp-session-id", &sid)
        .header(version.0, version.1)
        .send()
        .await
        .expect("DELETE");
    assert!(del.status().is_success(), "{}", del.status());
    let after = env
        .post(Some(&alice), &[("mcp-session-id", &sid), version], &list)
        .await;
    assert_eq!(after.status(), 404);
    // Every refusal is recorded under the virtual route or the member's.
    let records = env.all_records().await;
    assert!(records.iter().any(|r| r.subject.as_deref() == Some("bob")
        && r.reason == ReasonCode::SessionMismatch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_the_virtual_route_is_exchanged_for_it_and_for_no_member() {
    let sections = "[[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"billing\"]\n";
    let opts = Options {
        token_exchange: true,
        ..Options::default()
    };
    let (env, _dir) = virtual_gateway_with(sections, true, opts).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let exchange = |resource: String| {
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            ("subject_token", alice.clone()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_owned(),
            ),
            ("resource", resource),
            ("scope", "tickets:read".to_owned()),
        ];
        let req = env.http.post(format!("{}/token", env.base)).form(&form);
        async move {
            let resp = req.send().await.expect("POST /token");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = exchange(env.route.clone()).await;
    assert_eq!(status, 200, "{body}");
    let narrowed = body["access_token"].as_str().expect("a token");
    let (headers, call) = harness::stateless_call(1, "tickets_get_ticket");
    let resp = env.post(Some(narrowed), &headers, &call).await;
    assert_eq!(resp.status(), 200);
    // A token for the virtual route is not one for a member's own route.
    let (status, body) = exchange(format!("{}/mcp/tickets", env.base)).await;
    assert_ne!(status, 200, "{body}");
}

/// A stand-in MCP server whose `tools/list` comes in two pages (`a`, `b`, then `c`).
fn paged_upstream() -> axum::Router {
    axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: axum::Json<Value>| async move {
            let id = body.0.get("id").cloned();
            let method = body.0["method"].as_str().unwrap_or_default().to_owned();
            let result = match method.as_str() {
                "initialize" => json!({"protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {"listChanged": true}},
                    "serverInfo": {"name": "paged", "version": "1"}}),
                "tools/list" => {
                    let tool = |n: &str| json!({"name": n, "inputSchema": {"type": "object"}});
                    match body.0.pointer("/params/cursor").and_then(Value::as_str) {
                        None => json!({"tools": [tool("a"), tool("b")], "nextCursor": "page-2"}),
                        Some("page-2") => json!({"tools": [tool("c")]}),
                        Some(_) => {
                            let err = json!({"jsonrpc": "2.0", "id": id,
                                "error": {"code": -32602, "message": "bad cursor"}});
                            return axum::Json(err).into_response();
                        }
                    }
                }
                "tools/call" => json!({"content": [{"type": "text",
                    "text": body.0.pointer("/params/name").cloned().unwrap_or_default()}]}),
                _ if id.is_none() => return axum::http::StatusCode::ACCEPTED.into_response(),
                _ => json!({}),
            };
            let mut resp =
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
            if method == "initialize" {
                resp.headers_mut()
                    .insert("mcp-session-id", "paged-session".parse().expect("header"));
            }
            resp
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_per_member_and_the_cursor_resumes_where_a_member_has_more() {
    let at = harness::serve_stand_in(paged_upstream()).await;
    let sections = format!(
        "[[upstreams]]\nname = \"paged\"\nurl = \"http://{at}/mcp\"\n\n\
         [[virtual_servers]]\nname = \"all\"\nmembers = [\"paged\", \"tickets\"]\n"
    );
    let (env, _dir) = virtual_gateway(&sections, false).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let a = env.legacy_client(&alice).await;
    // The first page ends where `paged` has more; the second holds its rest and `tickets`.
    let first = a.list_tools(None).await.expect("first page");
    assert_eq!(names(&first.tools), ["paged_a", "paged_b"]);
    let cursor = first.next_cursor.clone().expect("a cursor");
    let second = a
        .list_tools(Some(
            rmcp::model::PaginatedRequestParams::default().with_cursor(Some(cursor)),
        ))
        .await
        .expect("second page");
    assert_eq!(
        names(&second.tools),
        ["paged_c", "tickets_get_ticket", "tickets_list_tickets"]
    );
    assert!(second.next_cursor.is_none());
    assert_eq!(
        a.list_all_tools().await.expect("all pages").len(),
        5,
        "rmcp follows the cursors"
    );
    let r = a
        .call_tool(call("paged_c", json!({})))
        .await
        .expect("routed to the paged member");
    assert_eq!(r.content[0].as_text().map(|t| t.text.as_str()), Some("c"));
    // A cursor that is not the gateway's is refused, not passed to a member.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list",
        "params": {"cursor": "made-up"}})
    .to_string();
    let sid = initialize(&env, &alice).await;
    let resp = env
        .post(
            Some(&alice),
            &[
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            &list,
        )
        .await;
    assert_eq!(resp.status(), 400);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_server_to_client_request_in_a_session_fails_the_call() {
    // Its answer could not be routed back to the member that asked: refused as a rule would.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let at = crate::input_requests::session_upstream(answers.clone()).await;
    let sections = format!(
        "[[upstreams]]\nname = \"asker\"\nurl = \"http://{at}/mcp\"\n\n\
         [[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"asker\"]\n"
    );
    let (env, _dir) = virtual_gateway(&sections, false).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let sid = initialize(&env, &alice).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "asker_create_ticket", "arguments": {}}});
    let headers = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let resp = env.post(Some(&alice), &headers, &call.to_string()).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    assert!(body.contains("input_request_forbidden"), "{body}");
    assert!(
        !body.contains("sampling/createMessage\",\"params"),
        "{body}"
    );
    authz_test_support::eventually_async(
        "the member is told its request was refused",
        Duration::from_secs(5),
        async || !answers.lock().expect("lock").is_empty(),
    )
    .await;
    // A client's answer to a server request has nowhere to go and is refused.
    let answer = json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}});
    let resp = env.post(Some(&alice), &headers, &answer.to_string()).await;
    assert_eq!(resp.status(), 400);
}

/// Runs a peer client (`program args…`, token in `MCP_TOKEN`) and parses its one JSON line.
async fn peer_run(program: &std::path::Path, args: &[&str], token: &str) -> Value {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(crate::peers::peers_dir())
        .env("MCP_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("the peer client finishes")
        .expect("the peer client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {stdout}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The Python SDK's interpreter in `tests/peers/.venv`, if installed (under CI it must be).
fn python() -> Option<std::path::PathBuf> {
    let p = crate::peers::peers_dir().join(".venv/bin/python");
    let installed = p.is_file()
        && std::process::Command::new(&p)
            .args(["-c", "import mcp"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed || std::env::var_os("CI").is_none(),
        "the Python SDK is missing from tests/peers/.venv under CI (see .ci/run)"
    );
    installed.then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_use_a_virtual_server_over_http_and_stdio_members() {
    if !crate::peers::peers_available().await {
        return;
    }
    let peers = crate::peers::peers_dir();
    let sections = format!(
        "[[upstreams]]\nname = \"files\"\ncommand = [\"node\", \"{}\"]\ncwd = \"{}\"\n\n\
         [[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"files\"]\n",
        peers.join("stdio-server.mjs").display(),
        peers.display()
    );
    let (env, _dir) = virtual_gateway(&sections, false).await;
    let alice = env.token("alice", &["ticket-reader"], &["tickets:read"]);
    let expect_tools = [
        "files_echo",
        "files_whoami",
        "tickets_get_ticket",
        "tickets_list_tickets",
    ];
    let check = |who: &str, v: &Value, echo: &str| {
        let mut tools: Vec<String> = serde_json::from_value(v["tools"].clone()).expect("tools");
        tools.sort();
        assert_eq!(tools, expect_tools, "{who}: {v}");
        assert!(
            v["prompts"]
                .as_array()
                .is_some_and(|p| p.contains(&json!("tickets_triage_ticket"))),
            "{who}: {v}"
        );
        assert!(
            v["resources"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("tickets+tickets://open"))),
            "{who}: {v}"
        );
        assert_eq!(v["echo"], echo, "{who}: {v}");
        assert!(v["ticket"].is_string(), "{who}: {v}");
        assert_eq!(v["read"], "tickets://open", "{who}: {v}");
        assert!(v["prompt"].as_u64().is_some_and(|n| n > 0), "{who}: {v}");
        assert_ne!(v["wipe"], "allowed", "{who}: {v}");
    };
    let node = std::path::PathBuf::from("node");
    let script = peers.join("virtual-client.mjs");
    let ts = peer_run(&node, &[script.to_str().expect("path"), &env.route], &alice).await;
    assert_eq!(ts["server"], "all", "{ts}");
    check("typescript", &ts, "via ts");
    if let Some(python) = python() {
        let script = peers.join("virtual_client.py");
        for mode in ["legacy", "2026-07-28"] {
            let py = peer_run(
                &python,
                &[script.to_str().expect("path"), &env.route, mode],
                &alice,
            )
            .await;
            check(&format!("python {mode}"), &py, "via python");
        }
    }
    // The stdio member's calls were decided under its own route.
    let records = env.all_records().await;
    assert!(records.iter().any(|r| r.upstream == "files"
        && r.target.as_deref() == Some("echo")
        && r.decision == Effect::Allow));
    assert!(records.iter().any(|r| r.upstream == "files"
        && r.target.as_deref() == Some("wipe")
        && r.decision == Effect::Deny));
}
