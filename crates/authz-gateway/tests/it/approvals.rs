//! Approval rules end to end against the demo upstream: `delete_ticket` is held for the
//! steward (`p, ticket-steward, …, delete_ticket, call, approve`), a pending approval is
//! created once however often the agent retries, and after an approver's yes (the store call
//! `authzctl approvals approve` makes; the page in a real browser below) the identical call
//! goes through exactly once; a reused,
//! expired or argument-changed approval does not let a call through; a rejection refuses
//! identical calls; each step is in the audit trail. The answer has the form each protocol
//! version's clients act on: an `input_required` URL elicitation (2026-07-28) or the "URL
//! elicitation required" error (2025-11-25).

use std::time::Duration;

use authz_rbac::{ApprovalState, ApprovalStore};
use authz_types::{Effect, ReasonCode};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Options};

const SCOPES: &[&str] = &["tickets:read", "tickets:write"];

fn json_of(text: &str) -> Value {
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(text);
    serde_json::from_str(data.trim()).unwrap_or_else(|_| panic!("JSON: {text}"))
}

/// A stateless 2026-07-28 `delete_ticket` call with `arguments`, and optionally the answer to
/// the gateway's elicitation.
async fn delete_stateless(
    env: &harness::Env,
    token: &str,
    arguments: Value,
    input_responses: Option<Value>,
) -> (u16, Value, String) {
    let mut params = json!({"name": "delete_ticket", "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                  "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}});
    if let Some(r) = input_responses {
        params["inputResponses"] = r;
    }
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params});
    let resp = env
        .post(
            Some(token),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "delete_ticket"),
            ],
            &body.to_string(),
        )
        .await;
    let status = resp.status().as_u16();
    let rid = harness::request_id(&resp);
    let text = resp.text().await.expect("body");
    (status, json_of(&text), rid)
}

/// A session-less 2025-11-25-style `delete_ticket` call (no `_meta`, no MCP headers).
async fn delete_legacy(env: &harness::Env, token: &str, id: u64) -> (u16, Value, String) {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "delete_ticket", "arguments": {"id": id}}});
    let resp = env.post(Some(token), &[], &body.to_string()).await;
    let status = resp.status().as_u16();
    let rid = harness::request_id(&resp);
    let text = resp.text().await.expect("body");
    (status, json_of(&text), rid)
}

fn deletes(env: &harness::Env) -> usize {
    env.upstream
        .log
        .tool_calls()
        .iter()
        .filter(|t| *t == "delete_ticket")
        .count()
}

/// The store's approver commands, as `authzctl approvals` runs them (tested on the command
/// line in authz-admin: the gateway's crate may not link the CLI).
async fn store(env: &harness::Env) -> ApprovalStore {
    ApprovalStore::connect(&env.audit_url)
        .await
        .expect("approval store")
}

async fn approve(env: &harness::Env, id: &str, actor: &str, use_within_ms: i64) {
    store(env)
        .await
        .approve(id, actor, use_within_ms, authz_types::now_unix_ms())
        .await
        .expect("approve");
}

async fn decision_record(env: &harness::Env, request_id: &str) -> authz_types::AuditRecord {
    let mut recs = env
        .records_for_request(request_id, authz_types::RecordKind::Decision)
        .await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    recs.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_goes_through_exactly_once_after_an_approval() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            admin: true,
            ..Options::default()
        },
    )
    .await;
    let admin = env.admin.clone().expect("admin listener");
    let sue = env.token("sue", &["ticket-steward"], SCOPES);

    // Held: a 2026-07-28 client gets a URL elicitation pointing at the approval page.
    let (status, v, first_rid) = delete_stateless(&env, &sue, json!({"id": 1}), None).await;
    assert_eq!(status, 200, "{v}");
    let result = &v["result"];
    assert_eq!(result["resultType"], "input_required", "{v}");
    let ask = &result["inputRequests"]["authz_gateway_approval"];
    assert_eq!(ask["method"], "elicitation/create", "{v}");
    assert_eq!(ask["params"]["mode"], "url", "{v}");
    let id = ask["params"]["elicitationId"]
        .as_str()
        .expect("approval id")
        .to_owned();
    assert_eq!(
        ask["params"]["url"].as_str(),
        Some(format!("{admin}/approvals/{id}").as_str())
    );
    assert_eq!(deletes(&env), 0, "nothing reached the upstream");
    let held = decision_record(&env, &first_rid).await;
    assert_eq!(
        (held.decision, held.reason, held.subject.as_deref()),
        (Effect::Deny, ReasonCode::ApprovalRequired, Some("sue"))
    );
    assert!(
        held.matched_rule
            .as_deref()
            .is_some_and(|r| r.contains("approve") && r.contains(&id)),
        "{held:?}"
    );

    // A retry before any decision: the same approval, still held.
    let (_, v, _) = delete_stateless(
        &env,
        &sue,
        json!({"id": 1}),
        Some(json!({"authz_gateway_approval": {"action": "accept"}})),
    )
    .await;
    assert_eq!(
        v["result"]["inputRequests"]["authz_gateway_approval"]["params"]["elicitationId"],
        id.as_str()
    );
    let listed = store(&env)
        .await
        .list(
            &authz_rbac::ApprovalFilter::default(),
            authz_types::now_unix_ms(),
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].context.arguments.as_deref(), Some(r#"{"id":1}"#));
    assert_eq!(listed[0].context.roles, ["ticket-steward"]);
    approve(&env, &id, "olivia", 300_000).await;

    // The retry with other arguments is not what was approved: held anew.
    let (_, v, _) = delete_stateless(&env, &sue, json!({"id": 2}), None).await;
    let other = v["result"]["inputRequests"]["authz_gateway_approval"]["params"]["elicitationId"]
        .as_str()
        .expect("a new approval")
        .to_owned();
    assert_ne!(other, id);
    assert_eq!(deletes(&env), 0);

    // The identical retry goes through, once; the gateway's own answer is not forwarded.
    let (status, v, granted_rid) = delete_stateless(
        &env,
        &sue,
        json!({"id": 1}),
        Some(json!({"authz_gateway_approval": {"action": "accept"}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert_eq!(deletes(&env), 1);
    let granted = decision_record(&env, &granted_rid).await;
    assert_eq!(
        (granted.decision, granted.reason),
        (Effect::Allow, ReasonCode::ApprovalGranted)
    );
    assert_eq!(
        granted.first_round_request_id.as_deref(),
        Some(first_rid.as_str())
    );
    assert!(
        granted
            .matched_rule
            .as_deref()
            .is_some_and(|r| r.contains(&id) && r.contains("olivia")),
        "{granted:?}"
    );
    let store = store(&env).await;
    let used = store.get(&id).await.expect("get").expect("approval");
    assert_eq!(used.state, ApprovalState::Used);
    assert_eq!(used.used_request_id.as_deref(), Some(granted_rid.as_str()));

    // Reused: held again under a new approval, nothing forwarded.
    let (_, v, _) = delete_stateless(&env, &sue, json!({"id": 1}), None).await;
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    assert_ne!(
        v["result"]["inputRequests"]["authz_gateway_approval"]["params"]["elicitationId"],
        id.as_str()
    );
    assert_eq!(deletes(&env), 1);

    // The approver's decision is in the audit trail, written once by the gateway.
    authz_test_support::eventually_async(
        "the approval's audit record",
        Duration::from_secs(10),
        async || {
            env.all_records()
                .await
                .iter()
                .any(|r| r.method == "approval/approved")
        },
    )
    .await;
    let decided = env
        .all_records()
        .await
        .into_iter()
        .find(|r| r.method == "approval/approved")
        .expect("the approval's audit record");
    assert_eq!(
        (decided.decision, decided.reason, decided.subject.as_deref()),
        (Effect::Allow, ReasonCode::ApprovalGranted, Some("olivia"))
    );
    assert_eq!(
        decided.first_round_request_id.as_deref(),
        Some(first_rid.as_str())
    );
    env.assert_chain_intact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_clients_get_url_elicitation_required_and_rejections_expiry_and_caps_hold() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            admin: true,
            approvals_extra: Some(
                "approved_ttl_secs = 1\nmax_pending_per_principal = 2\n".to_owned(),
            ),
            ..Options::default()
        },
    )
    .await;
    let sue = env.token("sue", &["ticket-steward"], SCOPES);

    // 2025-11-25: JSON-RPC error -32042 with the elicitation, the approval id and a hint.
    let (status, v, rid) = delete_legacy(&env, &sue, 1).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -32042, "{v}");
    let data = &v["error"]["data"];
    assert_eq!(data["reason"], "approval_required");
    let id = data["approvalId"].as_str().expect("approval id").to_owned();
    assert_eq!(data["elicitations"][0]["mode"], "url");
    assert_eq!(data["elicitations"][0]["elicitationId"], id.as_str());
    assert!(data["retry"].is_string());
    let held = decision_record(&env, &rid).await;
    assert_eq!(held.jsonrpc_error, Some(-32042));

    // Rejected: identical calls are refused (403 approval_rejected) and nothing is forwarded.
    store(&env)
        .await
        .reject(
            &id,
            "olivia",
            Some("no"),
            900_000,
            authz_types::now_unix_ms(),
        )
        .await
        .expect("reject");
    let (status, v, rid) = delete_legacy(&env, &sue, 1).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["data"]["reason"], "approval_rejected");
    authz_test_support::eventually_async(
        "the rejection's audit record",
        Duration::from_secs(10),
        async || {
            env.all_records().await.iter().any(|r| {
                r.method == "approval/rejected"
                    && r.reason == ReasonCode::ApprovalRejected
                    && r.decision == Effect::Deny
                    && r.subject.as_deref() == Some("olivia")
            })
        },
    )
    .await;
    assert_eq!(
        decision_record(&env, &rid).await.reason,
        ReasonCode::ApprovalRejected
    );

    // Expired: an approval not used within approved_ttl_secs lets nothing through.
    let (_, v, _) = delete_legacy(&env, &sue, 2).await;
    let second = v["error"]["data"]["approvalId"]
        .as_str()
        .expect("id")
        .to_owned();
    approve(&env, &second, "olivia", 1_000).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (_, v, _) = delete_legacy(&env, &sue, 2).await;
    assert_eq!(v["error"]["code"], -32042, "{v}");
    assert_ne!(v["error"]["data"]["approvalId"], second.as_str());

    // The cap: two pending already (id 2 anew, and now id 3); a third is refused, 429.
    let (_, v, _) = delete_legacy(&env, &sue, 3).await;
    assert_eq!(v["error"]["code"], -32042, "{v}");
    let (status, v, rid) = delete_legacy(&env, &sue, 4).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["data"]["pendingApprovals"], 2);
    assert_eq!(
        decision_record(&env, &rid).await.reason,
        ReasonCode::TooManyRequests
    );
    assert_eq!(deletes(&env), 0);

    // Deny overrides approve, and approve overrides the admin's allow.
    let dave = env.token("dave", &["ticket-steward"], SCOPES);
    let (status, _, rid) = delete_legacy(&env, &dave, 1).await;
    assert_eq!(status, 403);
    assert_eq!(
        decision_record(&env, &rid).await.reason,
        ReasonCode::ExplicitDeny
    );
    let carol = env.token("carol", &["ticket-steward"], SCOPES);
    let (_, v, _) = delete_legacy(&env, &carol, 1).await;
    assert_eq!(v["error"]["code"], -32042, "{v}");
    // A plain admin is not held.
    let erin = env.token("erin-admin", &["ticket-admin"], SCOPES);
    let (status, v, _) = delete_stateless(&env, &erin, json!({"id": 1}), None).await;
    assert_eq!(
        (status, &v["result"]["resultType"]),
        (200, &json!("complete")),
        "{v}"
    );
    assert_eq!(deletes(&env), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_its_quota_does_not_spend_the_approval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quotas = dir.path().join("quotas.toml");
    std::fs::write(
        &quotas,
        "[[quota]]\nname = \"deletes\"\nmethods = [\"tools/call\"]\ntargets = [\"delete_*\"]\n\
         rate = 1\nper = \"hour\"\nburst = 2\n",
    )
    .expect("write quotas");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            quotas_file: Some(quotas),
            ..Options::default()
        },
    )
    .await;
    let sue = env.token("sue", &["ticket-steward"], SCOPES);
    // The held call spends one token of the burst of two, and a second held try the other.
    let (_, v, _) = delete_legacy(&env, &sue, 1).await;
    let id = v["error"]["data"]["approvalId"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, v, _) = delete_legacy(&env, &sue, 1).await;
    assert_eq!(v["error"]["data"]["approvalId"], id.as_str());
    approve(&env, &id, "olivia", 300_000).await;
    // Over the quota: refused 429 before the approval is looked at; it stays usable.
    let (status, v, rid) = delete_legacy(&env, &sue, 1).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(
        decision_record(&env, &rid).await.reason,
        ReasonCode::QuotaExceeded
    );
    let kept = store(&env)
        .await
        .get(&id)
        .await
        .expect("get")
        .expect("approval");
    assert_eq!(kept.state, ApprovalState::Approved);
    assert_eq!(deletes(&env), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_tool_is_listed_and_without_a_page_the_answer_names_the_cli() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let sue = env.token("sue", &["ticket-steward"], SCOPES);
    let client = env.modern_client(&sue).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"delete_ticket"), "{names:?}");
    assert!(!names.contains(&"create_ticket"), "{names:?}");
    let (status, v, _) = delete_legacy(&env, &sue, 1).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], -31005, "{v}");
    assert!(
        v["error"]["data"]["approvalId"]
            .as_str()
            .is_some_and(|i| i.starts_with("apv-"))
    );
    assert!(v["error"]["data"].get("elicitations").is_none());
}

/// A token for the approval page (audience: the admin listener) with `roles`.
fn page_token(env: &harness::Env, subject: &str, roles: &[&str], tenant: Option<&str>) -> String {
    let admin = env.admin.clone().expect("admin listener");
    let mut req = env.token_request(subject, roles, &[]);
    req.audience = vec![admin];
    req.tenant = tenant.map(str::to_owned);
    env.mint(&req)
}

/// The CSRF value the page derives from a session's token (as `approval_page` does).
fn csrf_for(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("authz-approval-page\n{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// The hidden CSRF value of the page's approve form.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a decision form")
        + 19;
    html[at..at + 32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lets_only_an_approver_of_the_tenant_decide_others_calls() {
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            admin: true,
            ..Options::default()
        },
    )
    .await;
    let admin = env.admin.clone().expect("admin listener");
    let sue = env.token("sue", &["ticket-steward"], SCOPES);
    let (_, v, _) = delete_legacy(&env, &sue, 1).await;
    let id = v["error"]["data"]["approvalId"]
        .as_str()
        .expect("id")
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = |token: Option<String>, path: String| {
        let mut req = http.get(format!("{admin}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.expect("page");
            let status = resp.status().as_u16();
            let csp = resp
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            (status, resp.text().await.expect("html"), csp)
        }
    };
    let post = |token: &str, path: String, form: Vec<(&'static str, String)>| {
        let req = http
            .post(format!("{admin}{path}"))
            .bearer_auth(token)
            .form(&form);
        async move {
            let resp = req.send().await.expect("post");
            (resp.status().as_u16(), resp.text().await.expect("html"))
        }
    };

    // Nobody, a token for the agents' route, a non-approver: no approvals shown.
    let (status, html, csp) = page(None, "/approvals".into()).await;
    assert_eq!(status, 401);
    assert!(html.contains("id=\"token\""), "{html}");
    assert!(csp.is_some_and(|c| c.contains("default-src 'none'")));
    let (status, _, _) = page(Some(sue.clone()), "/approvals".into()).await;
    assert_eq!(status, 401, "a token for another audience is refused");
    let bob = page_token(&env, "bob", &["ticket-reader"], None);
    let (status, html, _) = page(Some(bob.clone()), format!("/approvals/{id}")).await;
    assert_eq!(status, 403);
    assert!(!html.contains("delete_ticket"), "{html}");

    // An oversized form is refused before anything reads it.
    let resp = http
        .post(format!("{admin}/login"))
        .form(&[("token", "x".repeat(100_000))])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 413);

    // An approver of the tenant sees the call, its arguments and who asked.
    let olivia = page_token(&env, "olivia", &["approver"], None);
    let (status, html, _) = page(Some(olivia.clone()), "/approvals".into()).await;
    assert_eq!(status, 200);
    assert!(html.contains(&id), "{html}");
    let (status, html, _) = page(Some(olivia.clone()), format!("/approvals/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&quot;id&quot;: 1") && html.contains("sue"),
        "{html}"
    );
    let csrf = csrf_in(&html);

    // Another tenant's approver: unknown to them, and their attempt is recorded.
    let acme = page_token(&env, "amir", &["approver"], Some("acme"));
    let (status, _, _) = page(Some(acme.clone()), format!("/approvals/{id}")).await;
    assert_eq!(status, 404);
    // The non-approver's and the stranger's attempts are refused and recorded.
    let (status, _) = post(
        &bob,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &acme,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, 403, "the CSRF value of another session is refused");
    let (status, _) = post(
        &acme,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf_for(&acme))],
    )
    .await;
    assert_eq!(status, 404, "another tenant's approval is unknown to them");
    // A form without the session's CSRF value decides nothing.
    let (status, html) = post(
        &olivia,
        format!("/approvals/{id}/approve"),
        vec![("csrf", "0".repeat(32))],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    // Sue, were she an approver, may not approve her own call.
    let sue_approver = page_token(&env, "sue", &["approver"], None);
    let (_, html, _) = page(Some(sue_approver.clone()), format!("/approvals/{id}")).await;
    assert!(
        html.contains("your own call") && !html.contains("id=\"approve\""),
        "{html}"
    );
    let (status, _) = post(
        &sue_approver,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf_for(&sue_approver))],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        csrf_for(&olivia),
        csrf,
        "the test derives the value as the page does"
    );
    let store = store(&env).await;
    assert_eq!(
        store.get(&id).await.expect("get").expect("approval").state,
        ApprovalState::Pending
    );

    // The approver decides; the page shows the decision.
    let (status, _) = post(
        &olivia,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf)],
    )
    .await;
    assert_eq!(status, 303);
    let (_, html, _) = page(Some(olivia.clone()), format!("/approvals/{id}")).await;
    assert!(html.contains("id=\"state\">approved<"), "{html}");
    let refused: Vec<_> = env
        .all_records()
        .await
        .into_iter()
        .filter(|r| r.reason == ReasonCode::ApproverRefused)
        .collect();
    assert_eq!(
        refused.len(),
        3,
        "bob's, amir's and sue's attempts: {refused:?}"
    );
    assert!(refused.iter().any(|r| r.subject.as_deref() == Some("bob")));

    // When a refused attempt cannot be recorded, the page says the trail is unavailable (503)
    // instead of answering as if it had been.
    let _refusing = env
        .refuse_audit_inserts("WHEN NEW.method = 'approval/approve'")
        .await;
    let (status, html) = post(
        &bob,
        format!("/approvals/{id}/approve"),
        vec![("csrf", csrf_for(&bob))],
    )
    .await;
    assert_eq!(status, 503, "{html}");
    assert!(html.contains("audit trail is unavailable"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_in_a_real_browser_and_the_sdk_agent_retries() {
    if !crate::peers::peers_available().await {
        return;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).is_file() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the browser test: no Chromium at {chromium} (apt-get install chromium)"
        );
        println!("skipped: no Chromium at {chromium}");
        return;
    }
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            admin: true,
            ..Options::default()
        },
    )
    .await;
    let agent = env.token("sue", &["ticket-steward"], SCOPES);
    let approver = page_token(&env, "olivia", &["approver"], None);
    let mut cmd = crate::peers::node(crate::peers::peers_dir().join("approval-page.mjs"));
    cmd.arg(&env.route)
        .env("AGENT_TOKEN", &agent)
        .env("APPROVER_TOKEN", &approver)
        .env("CHROMIUM", &chromium);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the browser run finishes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success(),
        "steps:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        names,
        [
            "held",
            "login form",
            "pending list",
            "the held call",
            "approved",
            "retry",
            "summary"
        ]
    );
    assert_eq!(
        deletes(&env),
        1,
        "the retry reached the upstream exactly once"
    );
    let records = env.all_records().await;
    let reasons: Vec<(&str, ReasonCode)> = records
        .iter()
        .filter(|r| r.kind == authz_types::RecordKind::Decision && r.method != "initialize")
        .filter(|r| r.target.as_deref() == Some("delete_ticket"))
        .map(|r| (r.method.as_str(), r.reason))
        .collect();
    assert!(
        reasons.contains(&("tools/call", ReasonCode::ApprovalRequired))
            && reasons.contains(&("tools/call", ReasonCode::ApprovalGranted)),
        "{reasons:?}"
    );
    authz_test_support::eventually_async(
        "the page's approval in the audit trail",
        Duration::from_secs(10),
        async || {
            env.all_records().await.iter().any(|r| {
                r.method == "approval/approved"
                    && r.subject.as_deref() == Some("olivia (https://idp.test)")
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn an_approval_held_on_one_replica_is_used_once_on_another() {
    let db = authz_test_support::TestDatabase::postgres().await;
    let with_page = || Options {
        admin: true,
        ..Options::default()
    };
    let a = harness::start_with(AuditBackend::Postgres(db.url().to_owned()), with_page()).await;
    let b = harness::start_with(
        AuditBackend::Postgres(db.url().to_owned()),
        Options {
            admin: true,
            upstream_url: Some(a.upstream.url()),
            public_url: Some(a.base.clone()),
            keys: Some((a.private_jwk.clone(), a.jwks_path.clone())),
            ..Options::default()
        },
    )
    .await;
    let sue = a.token("sue", &["ticket-steward"], SCOPES);
    let (_, v, first) = delete_stateless(&a, &sue, json!({"id": 3}), None).await;
    let id = v["result"]["inputRequests"]["authz_gateway_approval"]["params"]["elicitationId"]
        .as_str()
        .expect("held on a")
        .to_owned();
    // b knows the same pending approval.
    let (_, v, _) = delete_stateless(&b, &sue, json!({"id": 3}), None).await;
    assert_eq!(
        v["result"]["inputRequests"]["authz_gateway_approval"]["params"]["elicitationId"],
        id.as_str()
    );
    approve(&a, &id, "olivia", 300_000).await;
    let (status, v, granted) = delete_stateless(&b, &sue, json!({"id": 3}), None).await;
    assert_eq!(
        (status, &v["result"]["resultType"]),
        (200, &json!("complete")),
        "{v}"
    );
    let (_, v, _) = delete_stateless(&a, &sue, json!({"id": 3}), None).await;
    assert_eq!(
        v["result"]["resultType"], "input_required",
        "used up on b: {v}"
    );
    assert_eq!(deletes(&a), 1);
    let rec = decision_record(&a, &granted).await;
    assert_eq!(rec.reason, ReasonCode::ApprovalGranted);
    assert_eq!(rec.first_round_request_id.as_deref(), Some(first.as_str()));
    // The decision is written into exactly one replica's chain.
    authz_test_support::eventually_async(
        "the approval's audit record",
        Duration::from_secs(10),
        async || {
            a.all_records()
                .await
                .iter()
                .any(|r| r.method == "approval/approved")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let written = a
        .all_records()
        .await
        .into_iter()
        .filter(|r| r.method == "approval/approved")
        .count();
    assert_eq!(written, 1);
}
