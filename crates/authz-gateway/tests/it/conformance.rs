//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `tests/peers`) run twice per requirement set: once straight at an upstream built on an
//! official SDK, once through the gateway with a bearer-adding hop in front (the suite has no
//! way to send a token). Every scenario that passes straight at the upstream must pass through
//! the gateway; the test prints which scenarios it ran and how each went both ways.
//!
//! The hop forwards every header as it came (`Host` and `Origin` included, so the suite's DNS
//! rebinding checks reach the gateway unchanged) and adds `Authorization` when the request has
//! none. The gateway's `public_url` is the hop's address, as it would be behind any proxy.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use authz_gateway::config::{Config, Overrides, RawConfig};
use authz_test_support::repo_path;
use authz_token::{KeyAlgorithm, MintRequest, Signer};

use crate::harness::{self, ISSUER, Serving};
use crate::{peers, proxy};

/// The route name of the upstream behind the gateway.
const UPSTREAM: &str = "conformance";
/// How long one whole suite run may take (about forty scenarios, a 30 s timeout each).
const SUITE_DEADLINE: Duration = Duration::from_secs(600);

/// The policy: the one role may do everything on the conformance upstream (the suite checks the
/// protocol, not refusals; those have their own tests).
const POLICY: &str = "\
p, conformance, default, tool:conformance/*, call, allow
p, conformance, default, resource:conformance/**, read, allow
p, conformance, default, resource:conformance/**, subscribe, allow
p, conformance, default, resource:conformance/**, complete, allow
p, conformance, default, prompt:conformance/*, get, allow
p, conformance, default, prompt:conformance/*, complete, allow
";

fn suite_cli() -> std::path::PathBuf {
    peers::peers_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// How each scenario of one suite run went: scenario name to passed.
#[derive(Debug, Default)]
struct SuiteRun {
    scenarios: BTreeMap<String, bool>,
    output: String,
    /// The suite's `--output-dir`: `server-<scenario>-<time>/checks.json` per scenario.
    results: Option<tempfile::TempDir>,
}

impl SuiteRun {
    /// The failed checks of `scenario` (`id: message`), from its `checks.json`.
    fn failed_checks(&self, scenario: &str) -> Vec<String> {
        let Some(results) = &self.results else {
            return Vec::new();
        };
        let prefix = format!("server-{scenario}-");
        let mut failed = Vec::new();
        for entry in std::fs::read_dir(results.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `server-tools-call-image-<time>` must not match scenario `tools-call`: the rest
            // after the prefix is the timestamp, which starts with a digit.
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
                continue;
            };
            let checks: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
            for check in checks {
                if check["status"] == "FAILURE" {
                    failed.push(format!(
                        "{}: {}",
                        check["id"].as_str().unwrap_or("?"),
                        check["errorMessage"].as_str().unwrap_or("")
                    ));
                }
            }
        }
        failed
    }
}

/// Runs `conformance server --url <url> --requirements <set>` in a scratch directory and reads
/// its per-scenario summary lines (`✓ name: N passed, M failed` / `✗ …`).
async fn run_suite(url: &str, requirements: &str) -> SuiteRun {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let results = tempfile::tempdir().expect("results dir");
    // The CLI imports `fs.globSync`, which Node 20 lacks: the loader hook supplies it.
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--import")
        .arg(peers::peers_dir().join("node20-fs-glob.mjs"))
        .arg(suite_cli())
        .arg("server")
        .arg("--url")
        .arg(url)
        .arg("--requirements")
        .arg(requirements)
        .arg("--output-dir")
        .arg(results.path())
        .current_dir(scratch.path())
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn the conformance CLI");
    let out = tokio::time::timeout(SUITE_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the suite ({requirements}, {url}) did not finish in time"))
        .expect("suite output");
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut scenarios = BTreeMap::new();
    for line in output.lines() {
        let line = line.trim();
        let (passed, rest) = if let Some(rest) = line.strip_prefix("✓ ") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("✗ ") {
            (false, rest)
        } else {
            continue;
        };
        // The not-scored list repeats a scenario as `✗ name (reason)`: the first line counts.
        let name = rest.split([':', ' ']).next().unwrap_or_default().to_owned();
        if !name.is_empty() {
            scenarios.entry(name).or_insert(passed);
        }
    }
    assert!(
        !scenarios.is_empty(),
        "the suite ({requirements}, {url}) reported no scenario; its output:\n{output}"
    );
    SuiteRun {
        scenarios,
        output,
        results: Some(results),
    }
}

/// A gateway in front of `upstream_url` with the hop in front of it.
struct Gateway {
    /// First, so that dropping a `Gateway` signals the gateway before anything else goes.
    _serving: Serving,
    _dir: tempfile::TempDir,
    /// `http://<hop>/mcp/conformance`: what the suite is pointed at.
    url: String,
}

impl Gateway {
    async fn start(upstream_url: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys =
            authz_token::generate_key_pair(KeyAlgorithm::Es256, "conformance-key").expect("keys");
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
        let gateway_addr = listener.local_addr().expect("addr");
        // The hop needs the token and the token needs the hop's address (its audience is the
        // public URL of the route): bind the hop first, on a port reserved for it.
        let hop_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind hop");
        let hop_addr = hop_listener.local_addr().expect("hop addr");
        let public = format!("http://{hop_addr}");
        let route = format!("{public}/mcp/{UPSTREAM}");
        let mut mint = MintRequest::new(ISSUER, "conformance-suite", route.clone());
        mint.roles = vec!["conformance".to_owned()];
        mint.client_id = Some("conformance-client".into());
        mint.ttl_secs = 3600;
        let token = signer.mint(&mint).expect("mint");
        let toml = format!(
            r#"
[server]
public_url = "{public}"

{auth}
[policy]
model = "{model}"
files = ["{policy}"]

[audit]
database_url = "{audit_url}"

[[upstreams]]
name = "{UPSTREAM}"
url = "{upstream_url}"
timeout_secs = 60
"#,
            auth = harness::auth_toml(&jwks),
            model = repo_path("policies/model.conf").display(),
            policy = policy.display(),
        );
        let raw = RawConfig::from_toml(&toml).expect("test config parses");
        let config =
            Config::from_raw(raw, &Overrides::default(), &|_| None).expect("test config validates");
        let serving = Serving::start(config, listener).await;
        proxy::serve(hop_listener, vec![gateway_addr], Some(token));
        Gateway {
            _serving: serving,
            _dir: dir,
            url: route,
        }
    }
}

/// Runs one requirement set straight at `upstream_url` and through a gateway in front of it,
/// prints both results side by side, and fails for every scenario that passed straight but not
/// through the gateway.
async fn compare(upstream_url: &str, requirements: &str) {
    let straight = run_suite(upstream_url, requirements).await;
    let gateway = Gateway::start(upstream_url).await;
    let through = run_suite(&gateway.url, requirements).await;
    println!("conformance --requirements {requirements}: straight / through the gateway");
    let mut lost = Vec::new();
    for (name, passed) in &straight.scenarios {
        let via = through.scenarios.get(name).copied();
        println!(
            "  {name:<48} {:<4} {}",
            if *passed { "pass" } else { "FAIL" },
            match via {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "not run",
            }
        );
        if *passed && via != Some(true) {
            lost.push(format!(
                "{name} ({})",
                through.failed_checks(name).join("; ")
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "--requirements {requirements}: these pass straight at the upstream but not through the \
         gateway (failed checks in brackets):\n{}\nthe run through the gateway:\n{}",
        lost.join("\n"),
        through.output
    );
}

/// Whether the suite is installed; under CI its absence is a failure.
async fn suite_available() -> bool {
    if peers::peers_available().await && suite_cli().is_file() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the conformance suite"
    );
    println!("skipped: tests/peers/node_modules missing (npm ci --prefix tests/peers)");
    false
}

/// The upstream built for the suite on the official Rust SDK (rmcp), which speaks 2026-07-28
/// and the session-based versions: both requirement sets, each straight and through the
/// gateway.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_of_an_rmcp_upstream_holds_through_the_gateway() {
    if !suite_available().await {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let upstream = conformance_upstream::spawn(listener)
        .await
        .expect("conformance upstream");
    for requirements in ["2026-07-28", "2025-11-25"] {
        compare(&upstream.url(), requirements).await;
    }
    upstream.shutdown().await;
}

/// The official TypeScript SDK's reference server (`server-everything`, 2025-11-25 only): it
/// fails many of the suite's fixture checks, but what it passes must pass through the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_2025_11_25_at_the_typescript_reference_server_holds_through_the_gateway() {
    if !suite_available().await {
        return;
    }
    let mut upstream = peers::Everything::start().await;
    compare(&upstream.url.clone(), "2025-11-25").await;
    upstream.finish().await;
}
