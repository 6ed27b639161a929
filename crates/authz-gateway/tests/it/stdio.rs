//! stdio upstreams: a stdio MCP server built from the official TypeScript SDK
//! (`tests/peers/stdio-server.mjs`) run by the gateway and served at `/mcp/tickets`, driven by
//! rmcp's session-based client: policy and list filtering as for any route, one process per
//! session (never shared by two principals), the child's environment built from the allow-list
//! and secrets only, a crash mid-call answered 502 with the process's exit recorded, idle
//! reaping; and rmcp's stateless 2026-07-28 client on a process of its principal's own, with
//! the protocol translated.

use std::time::Duration;

use authz_types::{Effect, ReasonCode};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Client, Options};

const POLICY: &str = "\
p, stdio-user, default, tool:tickets/*, call, allow
p, stdio-user, default, tool:tickets/wipe, call, deny
";

/// A gateway whose `tickets` route runs the stdio peer, with `extra` upstream keys; `None` when
/// node or the peers are missing outside CI.
async fn stdio_gateway(extra: &str) -> Option<(harness::Env, tempfile::TempDir)> {
    if !crate::peers::peers_available().await {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    std::fs::write(&policy, POLICY).expect("policy");
    let script = crate::peers::peers_dir().join("stdio-server.mjs");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            stdio_command: Some(format!("[\"node\", \"{}\"]", script.display())),
            upstream_extra: Some(format!(
                "env = [\"VISIBLE\", \"NOT_SET\"]\nenv_secrets = {{ CHILD_SECRET = \"SECRET_SOURCE\" }}\n\
                 cwd = \"{}\"\n{extra}",
                crate::peers::peers_dir().display()
            )),
            env_extra: vec![
                ("VISIBLE".into(), "yes".into()),
                ("SECRET_SOURCE".into(), "s3cret".into()),
            ],
            ..Options::default()
        },
    )
    .await;
    Some((env, dir))
}

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new(name).with_arguments(args)
}

async fn text_of(client: &Client, name: &'static str, args: Value) -> String {
    let result = client
        .call_tool(call(name, args))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    result.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

async fn process_records(env: &harness::Env, method: &str) -> Vec<authz_types::AuditRecord> {
    env.all_records()
        .await
        .into_iter()
        .filter(|r| r.method == method)
        .collect()
}

async fn metric(env: &harness::Env, line_start: &str) -> Option<String> {
    let text = env.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_is_served_under_policy_with_a_process_per_session() {
    let Some((env, _dir)) = stdio_gateway("").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let bob = env.token("bob", &["stdio-user"], &["tickets:read"]);
    let a = env.legacy_client(&alice).await;
    let mut names: Vec<String> = a
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["crash", "echo", "whoami"], "wipe is filtered out");
    assert_eq!(text_of(&a, "echo", json!({"text": "hi"})).await, "hi");
    assert!(
        a.call_tool(call("wipe", json!({}))).await.is_err(),
        "denied by policy"
    );

    // The child sees the allow-listed variable and its secret, nothing of the gateway's own.
    let who: Value = serde_json::from_str(&text_of(&a, "whoami", json!({})).await).expect("json");
    assert_eq!(
        who["env"],
        json!({"VISIBLE": "yes", "CHILD_SECRET": "s3cret"})
    );

    // Another principal's session is another process.
    let b = env.legacy_client(&bob).await;
    let who_b: Value = serde_json::from_str(&text_of(&b, "whoami", json!({})).await).expect("json");
    assert_ne!(who["pid"], who_b["pid"]);
    // So is the same principal's second session.
    let a2 = env.legacy_client(&alice).await;
    let who_a2: Value =
        serde_json::from_str(&text_of(&a2, "whoami", json!({})).await).expect("json");
    assert_ne!(who["pid"], who_a2["pid"]);
    assert_eq!(
        metric(&env, "authz_stdio_processes{").await.as_deref(),
        Some("authz_stdio_processes{route=\"tickets\"} 3")
    );
    authz_test_support::eventually_async(
        "three start records",
        Duration::from_secs(5),
        async || process_records(&env, "process/start").await.len() == 3,
    )
    .await;
    let starts = process_records(&env, "process/start").await;
    let mut subjects: Vec<_> = starts.iter().filter_map(|r| r.subject.clone()).collect();
    subjects.sort();
    assert_eq!(subjects, ["alice", "alice", "bob"]);
    assert!(
        starts
            .iter()
            .all(|r| r.reason == ReasonCode::ProcessStarted)
    );

    // The decision records are those of any route.
    let denied: Vec<_> = env
        .all_records()
        .await
        .into_iter()
        .filter(|r| r.method == "tools/call" && r.target.as_deref() == Some("wipe"))
        .collect();
    assert_eq!(denied[0].reason, ReasonCode::ExplicitDeny);
    drop((a, b, a2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_is_answered_502_and_recorded() {
    let Some((env, _dir)) = stdio_gateway("").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let client = env.legacy_client(&alice).await;
    assert_eq!(text_of(&client, "echo", json!({"text": "x"})).await, "x");
    let crashed = client.call_tool(call("crash", json!({}))).await;
    assert!(crashed.is_err(), "{crashed:?}");
    authz_test_support::eventually_async("the exit record", Duration::from_secs(5), async || {
        !process_records(&env, "process/exit").await.is_empty()
    })
    .await;
    let exit = process_records(&env, "process/exit").await.remove(0);
    assert_eq!(
        (exit.decision, exit.reason, exit.outcome.as_deref()),
        (
            Effect::Deny,
            ReasonCode::ProcessExited,
            Some("exited (exit 3)")
        )
    );
    // The crashed call's outcome says the upstream failed.
    let decision = env
        .all_records()
        .await
        .into_iter()
        .find(|r| r.method == "tools/call" && r.target.as_deref() == Some("crash"))
        .expect("the crash call's decision");
    let outcomes = env.outcomes_for_request(&decision.request_id).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].upstream_status, Some(502), "{:?}", outcomes[0]);
    // The session is gone with its process; a new one starts once the backoff has passed.
    assert!(
        client
            .call_tool(call("echo", json!({"text": "y"})))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = env.legacy_client(&alice).await;
    assert_eq!(text_of(&again, "echo", json!({"text": "z"})).await, "z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_process_is_reaped() {
    let Some((env, _dir)) = stdio_gateway("stdio = { idle_secs = 1 }").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let resp = env.post(Some(&alice), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("mcp-session-id"));
    authz_test_support::eventually_async(
        "the idle process reaped",
        Duration::from_secs(10),
        async || {
            process_records(&env, "process/exit")
                .await
                .iter()
                .any(|r| r.outcome.as_deref().is_some_and(|o| o.starts_with("idle")))
        },
    )
    .await;
    assert_eq!(
        metric(&env, "authz_stdio_processes{").await.as_deref(),
        Some("authz_stdio_processes{route=\"tickets\"} 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_get_their_own_process_with_the_protocol_translated() {
    let Some((env, _dir)) = stdio_gateway("").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let bob = env.token("bob", &["stdio-user"], &["tickets:read"]);
    // rmcp's stateless 2026-07-28 client: discover, list, call.
    let a = env.modern_client(&alice).await;
    let mut names: Vec<String> = a
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["crash", "echo", "whoami"]);
    assert_eq!(
        text_of(&a, "echo", json!({"text": "stateless"})).await,
        "stateless"
    );
    assert!(a.call_tool(call("wipe", json!({}))).await.is_err());
    let who_a: Value = serde_json::from_str(&text_of(&a, "whoami", json!({})).await).expect("json");
    // The same principal's calls share its process; another principal's never do.
    let again: Value = serde_json::from_str(&text_of(&a, "whoami", json!({})).await).expect("json");
    assert_eq!(who_a["pid"], again["pid"]);
    let b = env.modern_client(&bob).await;
    let who_b: Value = serde_json::from_str(&text_of(&b, "whoami", json!({})).await).expect("json");
    assert_ne!(who_a["pid"], who_b["pid"]);

    // The raw answers are 2026-07-28 results: resultType, caching hints on lists.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}});
    let list =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}});
    let resp = env
        .post(
            Some(&alice),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
            &list.to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(v["id"], 1);
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert_eq!(v["result"]["cacheScope"], "private", "{v}");
    assert_eq!(v["result"]["ttlMs"], 0, "{v}");
    let discover =
        json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": {"_meta": meta}});
    let resp = env
        .post(
            Some(&alice),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "server/discover"),
            ],
            &discover.to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(
        v["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "{v}"
    );
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
    assert_eq!(
        metric(&env, "authz_stdio_processes{").await.as_deref(),
        Some("authz_stdio_processes{route=\"tickets\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_everything_server_runs_as_a_stdio_upstream() {
    if !crate::peers::peers_available().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    std::fs::write(
        &policy,
        "p, stdio-user, default, tool:tickets/echo, call, allow\n\
         p, stdio-user, default, tool:tickets/get-env, call, allow\n",
    )
    .expect("policy");
    let server = crate::peers::peers_dir()
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            stdio_command: Some(format!("[\"node\", \"{}\", \"stdio\"]", server.display())),
            upstream_extra: Some("env = [\"VISIBLE\"]".into()),
            env_extra: vec![("VISIBLE".into(), "yes".into())],
            ..Options::default()
        },
    )
    .await;
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let client = env.legacy_client(&alice).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["echo", "get-env"]);
    let echoed = text_of(&client, "echo", json!({"message": "through stdio"})).await;
    assert!(echoed.contains("through stdio"), "{echoed}");
    let shown = text_of(&client, "get-env", json!({})).await;
    let child_env: Value = serde_json::from_str(&shown).expect("the environment as JSON");
    assert_eq!(child_env, json!({"VISIBLE": "yes"}), "{shown}");
    assert!(
        client
            .call_tool(call("get-sum", json!({"a": 1, "b": 2})))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_gets_its_principals_identity_assertion() {
    if !crate::peers::peers_available().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = authz_token::generate_key_pair(authz_token::KeyAlgorithm::Es256, "gw-identity")
        .expect("keys");
    let private = dir.path().join("identity.jwk");
    let public = dir.path().join("identity-jwks.json");
    std::fs::write(&private, &keys.private_jwk).expect("write");
    std::fs::write(&public, &keys.public_jwks).expect("write");
    let policy = dir.path().join("policy.csv");
    std::fs::write(&policy, POLICY).expect("policy");
    let script = crate::peers::peers_dir().join("stdio-server.mjs");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            stdio_command: Some(format!("[\"node\", \"{}\"]", script.display())),
            upstream_extra: Some(format!(
                "cwd = \"{}\"\nidentity_assertion = {{ lifetime_secs = 120 }}",
                crate::peers::peers_dir().display()
            )),
            sections_extra: Some(format!(
                "[identity]\nsigning_key_file = \"{}\"\njwks_file = \"{}\"\n",
                private.display(),
                public.display()
            )),
            ..Options::default()
        },
    )
    .await;
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let client = env.legacy_client(&alice).await;
    let who: Value =
        serde_json::from_str(&text_of(&client, "whoami", json!({})).await).expect("json");
    let assertion = who["env"]["MCP_IDENTITY_ASSERTION"]
        .as_str()
        .expect("the assertion in the child's environment")
        .to_owned();
    let mut issuer = authz_token::IssuerConfig::new(format!("{}/", env.base), &public);
    issuer.roles_claim = "roles".into();
    let verifier = authz_token::Verifier::load(&authz_token::VerifierConfig::new(vec![issuer]))
        .await
        .expect("verifier");
    let p = verifier
        .verify(&assertion, "urn:authz-gateway:stdio:tickets")
        .expect("the assertion verifies for the route");
    assert_eq!(
        (p.subject.as_str(), p.roles.as_slice()),
        ("alice", &["stdio-user".to_owned()][..])
    );
    // Nothing else of the gateway's reached the child.
    let keys: Vec<&String> = who["env"].as_object().expect("env").keys().collect();
    assert_eq!(keys, ["MCP_IDENTITY_ASSERTION"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_per_principal_a_principals_sessions_use_one_process_and_no_one_elses() {
    let Some((env, _dir)) = stdio_gateway("stdio = { share = \"principal\" }").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    let bob = env.token("bob", &["stdio-user"], &["tickets:read"]);
    let a1 = env.legacy_client(&alice).await;
    let a2 = env.legacy_client(&alice).await;
    let pid = |v: String| serde_json::from_str::<Value>(&v).expect("json")["pid"].clone();
    let p1 = pid(text_of(&a1, "whoami", json!({})).await);
    let p2 = pid(text_of(&a2, "whoami", json!({})).await);
    assert_eq!(p1, p2, "one process for alice's sessions");
    // Both sessions may use the same request ids at once; each gets its own answer.
    let (x, y) = tokio::join!(
        text_of(&a1, "echo", json!({"text": "one"})),
        text_of(&a2, "echo", json!({"text": "two"}))
    );
    assert_eq!((x.as_str(), y.as_str()), ("one", "two"));
    let b = env.legacy_client(&bob).await;
    assert_ne!(
        pid(text_of(&b, "whoami", json!({})).await),
        p1,
        "bob never shares it"
    );
    // Ending one session leaves the other (and the process) in service.
    a1.cancel().await.expect("end the first session");
    assert_eq!(
        text_of(&a2, "echo", json!({"text": "still"})).await,
        "still"
    );
    assert_eq!(
        metric(&env, "authz_stdio_processes{").await.as_deref(),
        Some("authz_stdio_processes{route=\"tickets\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_stops_every_process_and_records_it() {
    let Some((env, _dir)) = stdio_gateway("").await else {
        return;
    };
    let alice = env.token("alice", &["stdio-user"], &["tickets:read"]);
    // A session without an open stream, so nothing holds the shutdown to its grace period.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let resp = env.post(Some(&alice), &[], &init.to_string()).await;
    assert_eq!(resp.status(), 200);
    drop(resp);
    let env = env.stop().await;
    let exits = process_records(&env, "process/exit").await;
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert!(
        exits[0]
            .outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("gateway stopped")),
        "{exits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_filesystem_server_reads_what_policy_allows() {
    if !crate::peers::peers_available().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::write(shared.join("note.txt"), "hello from the share").expect("write");
    let policy = dir.path().join("policy.csv");
    std::fs::write(
        &policy,
        "p, reader, default, tool:tickets/read_text_file, call, allow\n\
         p, reader, default, tool:tickets/list_directory, call, allow\n",
    )
    .expect("policy");
    let server = crate::peers::peers_dir()
        .join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy),
            stdio_command: Some(format!(
                "[\"node\", \"{}\", \"{}\"]",
                server.display(),
                shared.display()
            )),
            ..Options::default()
        },
    )
    .await;
    let token = env.token("rita", &["reader"], &["tickets:read"]);
    let client = env.legacy_client(&token).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["list_directory", "read_text_file"],
        "write tools filtered out"
    );
    let path = shared.join("note.txt").display().to_string();
    let text = text_of(&client, "read_text_file", json!({"path": path})).await;
    assert!(text.contains("hello from the share"), "{text}");
    let write = client
        .call_tool(call(
            "write_file",
            json!({"path": path, "content": "defaced"}),
        ))
        .await;
    assert!(write.is_err(), "write_file is not allowed: {write:?}");
    assert_eq!(
        std::fs::read_to_string(shared.join("note.txt")).expect("read"),
        "hello from the share"
    );
}
