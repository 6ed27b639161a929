//! The gateway between two independently written MCP peers: the official TypeScript SDK's
//! reference server `@modelcontextprotocol/server-everything` (Streamable HTTP) as the upstream
//! and an official TypeScript SDK client (`tests/peers/client.mjs`) as the agent.
//!
//! The Node packages are pinned in `tests/peers/package-lock.json` and installed by `.ci/run`
//! (`npm ci --prefix tests/peers`). Without `node` or the installed packages the tests print a
//! skip notice and pass, except under CI (`CI=true`), where a skip would hide a broken set-up.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_audit::AuditStore;
use authz_gateway::config::{Config, Overrides, RawConfig};
use authz_test_support::repo_path;
use authz_token::{KeyAlgorithm, MintRequest, Signer};
use authz_types::{AuditFilter, AuditRecord, Effect, ReasonCode, RecordKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{self, ISSUER, Serving};

const UPSTREAM: &str = "everything";
/// How long the upstream may take to start listening (a cold `node` on a busy CI machine).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long one whole client run may take; the client's own per-step timeout is 60 s.
const CLIENT_DEADLINE: Duration = Duration::from_secs(240);

/// The test policy: the role may call every tool except `get-sum` and `get-env` (explicit denies
/// that override the wildcard allow), read the static documents and the dynamic *text*
/// resources (not the blobs), and get two of the four prompts.
const POLICY: &str = "\
p, everything-user, default, tool:everything/*, call, allow
p, everything-user, default, tool:everything/get-sum, call, deny
p, everything-user, default, tool:everything/get-env, call, deny
p, everything-user, default, resource:everything/demo://resource/static/**, read, allow
p, everything-user, default, resource:everything/demo://resource/dynamic/text/*, read, allow
p, everything-user, default, prompt:everything/simple-prompt, get, allow
p, everything-user, default, prompt:everything/args-prompt, get, allow
";

pub(crate) fn peers_dir() -> PathBuf {
    repo_path("tests/peers")
}

fn server_script() -> PathBuf {
    peers_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// `node <script>` in `tests/peers`: no stdin, output piped, killed when dropped.
pub(crate) fn node(script: PathBuf) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Whether `node` and the installed peers are present. Under CI their absence is a failure.
pub(crate) async fn peers_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    let installed = server_script().is_file()
        && peers_dir()
            .join("node_modules/@modelcontextprotocol/sdk/package.json")
            .is_file();
    if node && installed {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the peer tests: node={node}, tests/peers/node_modules installed={installed}"
    );
    println!(
        "skipped: node or tests/peers/node_modules missing (run .ci/run or npm ci in tests/peers)"
    );
    false
}

/// Collects a child's output so a failure can show it; draining also keeps the pipe from
/// filling up and blocking the child.
pub(crate) fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = into.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// `server-everything` in Streamable HTTP mode; killed when dropped.
pub(crate) struct Everything {
    child: Child,
    pub(crate) url: String,
    log: Arc<Mutex<String>>,
    drains: Vec<tokio::task::JoinHandle<()>>,
}

impl Everything {
    /// Starts the server on a free port and waits until it answers HTTP. The port is found by
    /// binding port 0 and releasing it, so another process may take it in between; the server
    /// then exits (EADDRINUSE) and the start is retried on a new port.
    pub(crate) async fn start() -> Everything {
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                l.local_addr().expect("local addr").port()
            };
            let mut child = node(server_script())
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .spawn()
                .expect("spawn node for server-everything");
            let log = Arc::new(Mutex::new(String::new()));
            let drains = vec![
                drain(child.stdout.take().expect("stdout"), log.clone()),
                drain(child.stderr.take().expect("stderr"), log.clone()),
            ];
            let url = format!("http://127.0.0.1:{port}/mcp");
            let mut server = Everything {
                child,
                url,
                log,
                drains,
            };
            if server.wait_ready().await {
                return server;
            }
            last_log = server.log();
        }
        panic!("server-everything did not start; its output:\n{last_log}");
    }

    /// Polls until the server answers a session-less GET with its own 400 (which proves it is
    /// server-everything listening, not some other process on the port); false if it exited.
    async fn wait_ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                println!("server-everything exited early: {status}");
                return false;
            }
            if let Ok(resp) = http.get(&self.url).send().await
                && resp.status() == reqwest::StatusCode::BAD_REQUEST
                && resp
                    .text()
                    .await
                    .is_ok_and(|b| b.contains("No valid session ID"))
            {
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server-everything not ready within {STARTUP_DEADLINE:?}; output:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Stops the server and returns everything it printed (read to the end of its output).
    pub(crate) async fn finish(&mut self) -> String {
        let _ = self.child.kill().await;
        for d in self.drains.drain(..) {
            let _ = d.await;
        }
        self.log()
    }
}

/// A gateway in front of server-everything, with its keys and audit store.
struct Gateway {
    /// First, so that dropping a `Gateway` signals the gateway before anything else goes.
    _serving: Serving,
    _dir: tempfile::TempDir,
    /// `<base>/mcp/everything`: the route and the token audience.
    route: String,
    signer: Signer,
    audit: AuditStore,
    upstream: Everything,
}

impl Gateway {
    /// The upstream needs no credential, so the config has no `credential_env`, and no scope
    /// rules, so RBAC alone decides. `None` where the peers are missing (see
    /// [`peers_available`]): the test then passes as skipped.
    async fn start(timeout_secs: u64) -> Option<Gateway> {
        if !peers_available().await {
            return None;
        }
        let upstream = Everything::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = authz_token::generate_key_pair(KeyAlgorithm::Es256, "peers-key").expect("keys");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, &keys.public_jwks).expect("write jwks");
        let signer = Signer::from_private_jwk(&keys.private_jwk).expect("signer");
        let policy = dir.path().join("policy.csv");
        std::fs::write(&policy, POLICY).expect("write policy");
        let audit_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let toml = format!(
            r#"
[server]
public_url = "{base}"

{auth}
[policy]
model = "{model}"
files = ["{policy}"]

[audit]
database_url = "{audit_url}"

[[upstreams]]
name = "{UPSTREAM}"
url = "{upstream_url}"
timeout_secs = {timeout_secs}
"#,
            auth = harness::auth_toml(&jwks),
            model = repo_path("policies/model.conf").display(),
            policy = policy.display(),
            upstream_url = upstream.url,
        );
        let raw = RawConfig::from_toml(&toml).expect("test config parses");
        let config =
            Config::from_raw(raw, &Overrides::default(), &|_| None).expect("test config validates");
        let serving = Serving::start(config, listener).await;
        let audit = AuditStore::connect(&audit_url).await.expect("audit store");
        Some(Gateway {
            _serving: serving,
            _dir: dir,
            route: format!("{base}/mcp/{UPSTREAM}"),
            signer,
            audit,
            upstream,
        })
    }

    fn token(&self, subject: &str, roles: &[&str]) -> String {
        let mut req = MintRequest::new(ISSUER, subject, self.route.clone());
        req.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        req.client_id = Some("peers-client".into());
        req.ttl_secs = 600;
        self.signer.mint(&req).expect("mint")
    }

    /// The decision records of a subject (outcome records are checked separately).
    async fn records_of(&self, subject: &str) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            subject: Some(subject.to_owned()),
            limit: Some(10_000),
            ..AuditFilter::default()
        };
        harness::query(&self.audit, &filter, RecordKind::Decision).await
    }

    /// Runs `tests/peers/client.mjs` in `mode` with `token`; returns its steps by name.
    async fn run_client(&self, token: &str, mode: &str) -> ClientRun {
        self.run_client_with(token, mode, &[]).await
    }

    /// Like [`Gateway::run_client`], with extra environment for the client.
    async fn run_client_with(&self, token: &str, mode: &str, env: &[(&str, &str)]) -> ClientRun {
        let child = node(peers_dir().join("client.mjs"))
            .arg(&self.route)
            .arg(mode)
            .envs(env.iter().copied())
            .env("MCP_TOKEN", token)
            .spawn()
            .expect("spawn node for the client");
        let out = tokio::time::timeout(CLIENT_DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the client did not finish within {CLIENT_DEADLINE:?}; upstream output:\n{}",
                    self.upstream.log()
                )
            })
            .expect("client output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let steps = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("client line is not JSON ({e}): {l}\n{stderr}"))
            })
            .collect();
        ClientRun {
            success: out.status.success(),
            steps,
            stdout,
            stderr,
        }
    }
}

/// What one client run printed.
struct ClientRun {
    success: bool,
    steps: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl ClientRun {
    fn step(&self, name: &str) -> &Value {
        self.steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name:?} in the client output:\n{}", self.dump()))
    }

    fn dump(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }

    /// Asserts the step succeeded and returns it.
    fn ok(&self, name: &str) -> &Value {
        let s = self.step(name);
        assert_eq!(s["ok"], true, "step {name} failed: {s}\n{}", self.dump());
        s
    }

    /// Asserts the step was refused by the gateway with HTTP 403 and returns it.
    fn forbidden(&self, name: &str) -> &Value {
        let s = self.step(name);
        assert_eq!(s["ok"], false, "step {name} must be refused: {s}");
        assert_eq!(s["code"], 403, "step {name} refused with 403: {s}");
        s
    }

    fn texts(&self, name: &str) -> String {
        let s = self.ok(name);
        assert_eq!(s["is_error"], false, "{name} returned a tool error: {s}");
        s["texts"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has texts: {s}"))
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn names(&self, name: &str, key: &str) -> Vec<String> {
        self.ok(name)[key]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has {key}: {}", self.step(name)))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    /// The HTTP exchanges the SDK made (from the summary line), as `(method, status)`.
    fn exchanges(&self) -> Vec<(String, u64)> {
        self.step("summary")["exchanges"]
            .as_array()
            .expect("exchanges")
            .iter()
            .map(|e| {
                (
                    e["method"].as_str().unwrap_or("").to_owned(),
                    e["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }
}

fn matching(
    records: &[AuditRecord],
    method: &str,
    target: &str,
    effect: Effect,
) -> Vec<AuditRecord> {
    records
        .iter()
        .filter(|r| {
            r.method == method && r.target.as_deref() == Some(target) && r.decision == effect
        })
        .cloned()
        .collect()
}

/// The one record of `method` on `target` with `effect`, asserting there is exactly one.
fn the_one(records: &[AuditRecord], method: &str, target: &str, effect: Effect) -> AuditRecord {
    let mut found = matching(records, method, target, effect);
    assert_eq!(found.len(), 1, "{method} {target}: {found:?}");
    found.swap_remove(0)
}

/// The whole scripted session with a token holding the role: every feature works through the
/// gateway, and exactly what the policy refuses is refused and recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_client_and_reference_server_through_the_gateway() {
    let Some(mut gw) = Gateway::start(60).await else {
        return;
    };
    let token = gw.token("peer-user", &["everything-user"]);
    let run = gw.run_client(&token, "user").await;

    // Handshake: a session and the version the SDK prefers, negotiated end to end.
    let connect = run.ok("connect");
    assert_eq!(
        connect["server_name"], "mcp-servers/everything",
        "{connect}"
    );
    assert_eq!(connect["protocol_version"], "2025-11-25", "{connect}");
    let session_id = connect["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a session id: {connect}"))
        .to_owned();

    // The tool list is filtered to what the policy allows.
    let tools = run.names("list_tools", "names");
    for t in [
        "echo",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
        "get-roots-list",
    ] {
        assert!(tools.contains(&t.to_owned()), "{t} listed: {tools:?}");
    }
    for t in ["get-sum", "get-env"] {
        assert!(
            !tools.contains(&t.to_owned()),
            "{t} filtered out: {tools:?}"
        );
    }

    assert_eq!(run.texts("call_echo"), "Echo: hello through the gateway");

    // Progress notifications arrive on the call's SSE stream, each one through the gateway.
    let progress = run.ok("call_progress");
    assert_eq!(
        progress["progress"],
        serde_json::json!([1, 2, 3, 4]),
        "{progress}"
    );
    assert!(
        run.texts("call_progress")
            .contains("Long running operation completed")
    );

    // Sampling: the server's request reaches the agent on the call's stream and the agent's
    // answer (a POSTed JSON-RPC response) reaches the server. Elicitation, the same round trip
    // with the agent's form answer.
    for (step, requests, answer) in [
        (
            "call_sampling",
            "sampling_requests",
            "canned sampling answer from the peers client",
        ),
        (
            "call_elicitation",
            "elicitation_requests",
            "Name: Peer Test Person",
        ),
    ] {
        let got = run.ok(step);
        assert_eq!(got[requests], 1, "{step}: {got}");
        assert!(run.texts(step).contains(answer), "{step}: {got}");
    }

    // Roots: asked on the standalone GET stream, answered by POST.
    let roots = run.ok("call_roots");
    assert!(
        roots["roots_requests"].as_u64().unwrap_or(0) >= 1,
        "{roots}"
    );
    assert!(
        run.texts("call_roots").contains("file:///peers/workspace"),
        "{roots}"
    );

    // Resources: the static documents are listed, templates filtered to the text one.
    let resources = run.names("list_resources", "uris");
    assert!(!resources.is_empty(), "static documents listed");
    assert!(
        resources
            .iter()
            .all(|u| u.starts_with("demo://resource/static/document/")),
        "{resources:?}"
    );
    assert_eq!(
        run.names("list_resource_templates", "uri_templates"),
        ["demo://resource/dynamic/text/{resourceId}"]
    );
    let read = run.ok("read_resource");
    assert!(
        read["contents"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Resource 1:")),
        "{read}"
    );

    // Prompts: filtered to the two the policy grants.
    assert_eq!(
        run.names("list_prompts", "names"),
        ["args-prompt", "simple-prompt"]
    );
    let prompt = run.ok("get_prompt");
    assert_eq!(prompt["texts"][0], "What's weather in Lisbon?", "{prompt}");
    run.ok("ping");

    // What the policy refuses is refused by the gateway (403), not by the upstream.
    run.forbidden("refused_call");
    run.forbidden("refused_read");
    run.forbidden("refused_prompt");

    // Session termination reaches the upstream, and the gateway forgets the session.
    run.ok("terminate_session");
    let after = run.step("after_termination");
    assert_eq!(after["ok"], false, "{after}");
    assert_eq!(after["code"], 404, "the ended session is unknown: {after}");

    // The SDK opened the standalone GET stream and ended the session with DELETE.
    let exchanges = run.exchanges();
    assert!(
        exchanges.contains(&("GET".to_owned(), 200)),
        "GET stream opened: {exchanges:?}"
    );
    assert!(
        exchanges.contains(&("DELETE".to_owned(), 200)),
        "DELETE answered: {exchanges:?}"
    );
    assert!(run.success, "every step went as expected:\n{}", run.dump());

    // The audit trail: one allow record per call, one deny record per refusal (never an allow:
    // the gateway forwards only after recording an allow), all in the session.
    let records = gw.records_of("peer-user").await;
    for (method, target) in [
        ("tools/call", "echo"),
        ("tools/call", "trigger-long-running-operation"),
        ("tools/call", "trigger-sampling-request"),
        ("tools/call", "trigger-elicitation-request"),
        ("tools/call", "get-roots-list"),
        ("resources/read", "demo://resource/dynamic/text/1"),
        ("prompts/get", "args-prompt"),
    ] {
        let allowed = the_one(&records, method, target, Effect::Allow);
        assert_eq!(allowed.session_id.as_deref(), Some(session_id.as_str()));
    }
    for (method, target, reason) in [
        ("tools/call", "get-sum", ReasonCode::ExplicitDeny),
        (
            "resources/read",
            "demo://resource/dynamic/blob/1",
            ReasonCode::NoMatchingRule,
        ),
        ("prompts/get", "resource-prompt", ReasonCode::NoMatchingRule),
    ] {
        let d = the_one(&records, method, target, Effect::Deny);
        assert_eq!(d.reason, reason, "{d:?}");
        assert_eq!(d.http_status, Some(403), "{d:?}");
        assert_eq!(d.roles, ["everything-user"]);
        assert_eq!(d.client_id.as_deref(), Some("peers-client"));
        assert_eq!(d.upstream, UPSTREAM);
        assert!(
            matching(&records, method, target, Effect::Allow).is_empty(),
            "{method} {target} was never allowed"
        );
    }
    // The standalone stream and the termination are recorded too.
    for m in ["GET", "DELETE"] {
        assert!(
            records
                .iter()
                .any(|r| r.method == m && r.decision == Effect::Allow),
            "{m} recorded: {records:?}"
        );
    }
    // The upstream received exactly the POSTs the gateway let through: server-everything logs
    // each POST it receives, and the refused ones (403) are missing from its log.
    let forwarded = run
        .exchanges()
        .iter()
        .filter(|(m, status)| m == "POST" && *status != 403)
        .count();
    let refused = run
        .exchanges()
        .iter()
        .filter(|(m, status)| m == "POST" && *status == 403)
        .count();
    assert_eq!(refused, 3, "{:?}", run.exchanges());
    let upstream_log = gw.upstream.finish().await;
    assert_eq!(
        upstream_log.matches("Received MCP POST request").count(),
        forwarded,
        "the upstream saw only the forwarded POSTs:\n{upstream_log}"
    );
    // The sampling, elicitation and roots answers are client responses: recorded as such.
    assert!(
        records
            .iter()
            .filter(|r| r.method == "response" && r.decision == Effect::Allow)
            .count()
            >= 3,
        "the agent's answers are recorded: {records:?}"
    );
}

/// The same sequence with a token that holds no role: the handshake and plumbing work, every
/// list is empty, every call, read and prompt is refused and recorded, nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_client_without_the_role_is_refused() {
    let Some(gw) = Gateway::start(60).await else {
        return;
    };
    let token = gw.token("peer-nobody", &[]);
    let run = gw.run_client(&token, "norole").await;
    assert!(run.success, "every step went as expected:\n{}", run.dump());

    run.ok("connect");
    assert!(run.names("list_tools", "names").is_empty());
    assert!(run.names("list_resources", "uris").is_empty());
    assert!(
        run.names("list_resource_templates", "uri_templates")
            .is_empty()
    );
    assert!(run.names("list_prompts", "names").is_empty());
    for step in [
        "call_echo",
        "call_progress",
        "call_sampling",
        "call_elicitation",
        "call_roots",
        "read_resource",
        "get_prompt",
        "refused_call",
        "refused_read",
        "refused_prompt",
    ] {
        run.forbidden(step);
    }
    run.ok("ping");
    run.ok("terminate_session");
    assert_eq!(run.step("after_termination")["code"], 404);
    let served = &run.step("summary")["served"];
    assert_eq!(
        served["sampling"], 0,
        "no sampling out of a refused call: {served}"
    );
    assert_eq!(
        served["elicitation"], 0,
        "no elicitation out of a refused call: {served}"
    );

    let records = gw.records_of("peer-nobody").await;
    for (method, target) in [
        ("tools/call", "echo"),
        ("tools/call", "trigger-sampling-request"),
        ("tools/call", "get-sum"),
        ("resources/read", "demo://resource/dynamic/text/1"),
        ("prompts/get", "args-prompt"),
    ] {
        let denied = the_one(&records, method, target, Effect::Deny);
        assert_eq!(denied.reason, ReasonCode::NoMatchingRule);
        assert_eq!(denied.http_status, Some(403));
    }
    assert!(
        !records
            .iter()
            .any(|r| r.method == "tools/call" && r.decision == Effect::Allow),
        "no call was allowed: {records:?}"
    );
}

/// A tool call whose SSE response stays open longer than the upstream's `timeout_secs` must
/// still complete: the timeout bounds waiting for the upstream to *answer* (its response head),
/// not the life of a stream (elicitation waits for a human, the GET stream lives as long as the
/// session). Regression test: a reqwest per-request timeout once cut every SSE stream mid-body;
/// bodies are now bounded by an idle timeout between chunks instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outliving_the_upstream_timeout_completes() {
    let Some(gw) = Gateway::start(1).await else {
        return;
    };
    let token = gw.token("peer-long", &["everything-user"]);
    // The call lasts 3 s; 20 s is ample for it to finish and short enough that the failure
    // (the client never gets its answer) does not wait for the default 60 s.
    let run = gw
        .run_client_with(
            &token,
            "long",
            &[("LONG_SECONDS", "3"), ("STEP_TIMEOUT_MS", "20000")],
        )
        .await;
    let call = run.ok("call_long");
    assert_eq!(call["progress"], serde_json::json!([1, 2, 3]), "{call}");
}
