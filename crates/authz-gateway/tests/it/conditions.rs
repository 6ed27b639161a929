//! Argument conditions through the gateway, against the demo upstream: each example of a
//! condition (a numeric bound, a path under a folder, a value among the token's claims, the
//! caller's tenant as a prefix, the acting agent), the record naming the rule and how its
//! condition came out, hostile arguments, and list filtering (a tool whose allow depends on
//! arguments is listed; one whose condition refuses this caller outright is not).

use authz_types::{Effect, ReasonCode};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Options};

const POLICY: &str = r#"
p, clerk, default, tool:tickets/list_tickets, call, allow
p, clerk, *, tool:tickets/get_ticket, call, allow, "args.id <= 500"
p, clerk, default, tool:tickets/create_ticket, call, allow, "args.title.startsWith('/srv/shared/') && !args.title.contains('..')"
p, clerk, *, tool:tickets/create_ticket, call, allow, "args.title in principal.claims.projects"
p, clerk, *, tool:tickets/create_ticket, call, allow, "args.title.startsWith(principal.tenant + '-')"
p, clerk, *, tool:tickets/create_ticket, call, deny, "args.body.contains('DROP TABLE')"
p, clerk, default, tool:tickets/delete_ticket, call, allow, "principal.client_id == 'test-agent' && size(principal.actors) == 0"
"#;

async fn gateway() -> (harness::Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    std::fs::write(&policy, POLICY).expect("policy");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            ..Options::default()
        },
    )
    .await;
    (env, dir)
}

fn token(env: &harness::Env, tenant: Option<&str>, client: &str, claims: Value) -> String {
    let mut req = env.token_request("carla", &["clerk"], &["tickets:write"]);
    req.tenant = tenant.map(str::to_owned);
    req.client_id = Some(client.to_owned());
    if let Value::Object(extra) = claims {
        req.extra = extra;
    }
    env.mint(&req)
}

/// A `tools/call` of `name` with `args` in a session of its own: the HTTP status and the
/// request's decision record.
async fn call(
    env: &harness::Env,
    token: &str,
    name: &str,
    args: Value,
) -> (u16, authz_types::AuditRecord) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = env.post(Some(token), &[], &init.to_string()).await;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session")
        .to_owned();
    let headers = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    env.post(Some(token), &headers, &note.to_string()).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": name, "arguments": args}});
    let resp = env.post(Some(token), &headers, &body.to_string()).await;
    let status = resp.status().as_u16();
    (status, env.the_record_for(&resp).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_decide_calls_by_their_arguments_and_the_record_says_how() {
    let (env, _dir) = gateway().await;
    let t = token(&env, None, "test-agent", json!({"projects": ["alpha"]}));

    // A numeric bound.
    let (status, rec) = call(&env, &t, "get_ticket", json!({"id": 1})).await;
    assert_eq!(status, 200, "{rec:?}");
    assert_eq!(rec.reason, ReasonCode::PolicyAllow);
    assert!(
        rec.matched_rule
            .as_deref()
            .is_some_and(|r| r.ends_with("\"args.id <= 500\" [condition true]")),
        "{rec:?}"
    );
    let (status, rec) = call(&env, &t, "get_ticket", json!({"id": 501})).await;
    assert_eq!(status, 403);
    assert_eq!(rec.decision, Effect::Deny);
    assert_eq!(rec.reason, ReasonCode::ConditionNotMet);
    assert!(
        rec.matched_rule
            .as_deref()
            .is_some_and(|r| r.ends_with("[condition false]")),
        "{rec:?}"
    );
    // Hostile or odd arguments never allow.
    for args in [
        json!({"id": "1"}),
        json!({"id": 1e300}),
        json!({"id": [1]}),
        json!({}),
        json!({"id": {"lte": 1}}),
    ] {
        let (status, rec) = call(&env, &t, "get_ticket", args.clone()).await;
        assert_eq!(status, 403, "{args}");
        assert_eq!(rec.reason, ReasonCode::ConditionNotMet, "{args}");
    }

    // A path under a folder, without traversal.
    let body = "b";
    let ok = call(
        &env,
        &t,
        "create_ticket",
        json!({"title": "/srv/shared/x", "body": body}),
    )
    .await;
    assert_eq!(ok.0, 200, "{:?}", ok.1);
    for title in [
        "/srv/shared/../etc/passwd",
        "/srv/ѕhared/x",
        "/srv/shared-evil/x",
    ] {
        let (status, rec) = call(
            &env,
            &t,
            "create_ticket",
            json!({"title": title, "body": body}),
        )
        .await;
        assert_eq!(status, 403, "{title}");
        assert_eq!(rec.reason, ReasonCode::ConditionNotMet, "{title}");
    }
    // A value among the token's claims.
    let (status, _) = call(
        &env,
        &t,
        "create_ticket",
        json!({"title": "alpha", "body": body}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &env,
        &t,
        "create_ticket",
        json!({"title": "beta", "body": body}),
    )
    .await;
    assert_eq!(status, 403);
    // The caller's tenant as a prefix.
    let acme = token(&env, Some("acme"), "test-agent", json!({}));
    let (status, _) = call(
        &env,
        &acme,
        "create_ticket",
        json!({"title": "acme-7", "body": body}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &env,
        &acme,
        "create_ticket",
        json!({"title": "globex-7", "body": body}),
    )
    .await;
    assert_eq!(status, 403);
    // A conditional deny: it holds, so nothing allows; and one that cannot be decided (no
    // body) applies too.
    let (status, rec) = call(
        &env,
        &t,
        "create_ticket",
        json!({"title": "alpha", "body": "x; DROP TABLE t"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(rec.reason, ReasonCode::ExplicitDeny);
    let (status, rec) = call(&env, &t, "create_ticket", json!({"title": "alpha"})).await;
    assert_eq!(status, 403);
    assert_eq!(rec.reason, ReasonCode::ExplicitDeny);
    assert!(
        rec.matched_rule
            .as_deref()
            .is_some_and(|r| r.contains("[condition error:")),
        "{rec:?}"
    );

    // The acting agent: only the test agent, acting for itself, may delete.
    let (status, _) = call(&env, &t, "delete_ticket", json!({"id": 1})).await;
    assert_eq!(status, 200);
    let other = token(&env, None, "other-agent", json!({}));
    let (status, rec) = call(&env, &other, "delete_ticket", json!({"id": 2})).await;
    assert_eq!(status, 403);
    assert_eq!(rec.reason, ReasonCode::ConditionNotMet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_whose_allow_depends_on_arguments_is_listed() {
    let (env, _dir) = gateway().await;
    let listed = async |token: &str| {
        let client = env.legacy_client(token).await;
        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools/list")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        names
    };
    let t = token(&env, None, "test-agent", json!({}));
    assert_eq!(
        listed(&t).await,
        [
            "create_ticket",
            "delete_ticket",
            "get_ticket",
            "list_tickets"
        ]
    );
    // Delete's condition names no argument: for another agent it is decided, and false.
    let other = token(&env, None, "other-agent", json!({}));
    assert_eq!(
        listed(&other).await,
        ["create_ticket", "get_ticket", "list_tickets"]
    );
}
