//! Structured denials (draft SEP-2643), opted in per route: a policy denial of a `tools/call` is
//! answered as a tool error result whose `_meta["io.modelcontextprotocol/authorization"]` tells
//! an agent whether a role could lift it (`request_access`) or nothing will (`none`). It is
//! recorded like any refusal, nothing is forwarded, and other refusals keep their status.

use authz_types::{Effect, ReasonCode};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend};

#[tokio::test]
async fn a_route_that_opts_in_answers_policy_denials_as_tool_error_results() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            upstream_extra: Some("structured_denials = true".into()),
            ..Default::default()
        },
    )
    .await;
    let calls_before = env.upstream.log.tool_calls().len();

    // No rule grants a reader `delete_ticket`: a role could.
    let reader = env.token("bob", &["ticket-reader"], &["tickets:write"]);
    let resp = env.post_stateless_call(&reader, 1, "delete_ticket").await;
    assert_eq!(resp.status(), 200);
    let record = env.the_record_for(&resp).await;
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["id"], 1, "{v}");
    assert!(v.get("error").is_none(), "{v}");
    let result = &v["result"];
    assert_eq!(result["isError"], true, "{v}");
    assert_eq!(
        result["resultType"], "complete",
        "2026-07-28 results say so: {v}"
    );
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let auth = &result["_meta"]["io.modelcontextprotocol/authorization"];
    assert_eq!(auth["reason"], "no_matching_rule", "{v}");
    assert_eq!(auth["remediation"], "request_access", "{v}");
    assert_eq!(auth["requestId"], json!(record.request_id), "{v}");
    assert_eq!(record.decision, Effect::Deny);
    assert_eq!(record.reason, ReasonCode::NoMatchingRule);
    assert_eq!(record.http_status, Some(200), "recorded as answered");
    assert_eq!(record.jsonrpc_error, None, "no JSON-RPC error was sent");

    // An explicit deny rule: asking will not help.
    let auditor = env.token(
        "carol",
        &["ticket-admin", "ticket-auditor"],
        &["tickets:write"],
    );
    let resp = env.post_stateless_call(&auditor, 2, "delete_ticket").await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("JSON");
    let auth = &v["result"]["_meta"]["io.modelcontextprotocol/authorization"];
    assert_eq!(auth["reason"], "explicit_deny", "{v}");
    assert_eq!(auth["remediation"], "none", "{v}");

    // A missing scope stays a 403 challenge: the client's OAuth step-up needs it.
    let narrow = env.token("bob", &["ticket-admin"], &["tickets:read"]);
    let resp = env.post_stateless_call(&narrow, 3, "delete_ticket").await;
    assert_eq!(resp.status(), 403);
    assert!(harness::challenge(&resp).contains("insufficient_scope"));

    assert_eq!(
        env.upstream.log.tool_calls().len(),
        calls_before,
        "no denied call reached the upstream"
    );
}

#[tokio::test]
async fn without_the_opt_in_a_policy_denial_is_a_json_rpc_error() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let reader = env.token("bob", &["ticket-reader"], &["tickets:write"]);
    let resp = env.post_stateless_call(&reader, 1, "delete_ticket").await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], -31003, "{v}");
    assert!(v.get("result").is_none(), "{v}");
}
