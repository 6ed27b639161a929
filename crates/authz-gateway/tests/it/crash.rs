//! Crash safety of the durable audit: SIGKILL the gateway binary under load; every request the
//! client saw succeed has its record (SQLite and Postgres).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authz_audit::AuditStore;
use authz_test_support::TestDatabase;
use authz_token::{KeyAlgorithm, MintRequest, Signer};
use authz_types::AuditFilter;
use demo_upstream::DemoConfig;
use serde_json::json;

use crate::harness;

async fn crash_under_load(audit_url: String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = authz_token::generate_key_pair(KeyAlgorithm::Es256, "k").expect("keys");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &keys.public_jwks).expect("jwks");
    let signer = Signer::from_private_jwk(&keys.private_jwk).expect("signer");
    let upstream = demo_upstream::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        DemoConfig {
            json_response: true,
            ..DemoConfig::default()
        },
    )
    .await
    .expect("upstream");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[auth]
[[auth.issuers]]
issuer = "{iss}"
jwks_file = "{jwks}"
[policy]
model = "{root}/policies/model.conf"
files = ["{root}/policies/policy.csv"]
[audit]
database_url = "{audit_url}"
[[upstreams]]
name = "tickets"
url = "{up}"
"#,
            iss = harness::ISSUER,
            jwks = jwks.display(),
            root = root.display(),
            up = upstream.url(),
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gateway binary");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the gateway never became ready");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the gateway exited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut req = MintRequest::new(harness::ISSUER, "adam", format!("{base}/mcp/tickets"));
    req.roles = vec!["ticket-admin".into()];
    req.ttl_secs = 600;
    let token = signer.mint(&req).expect("mint");

    // Eight clients hammer the gateway; the process is killed while they run.
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..10_000u64 {
                let body = json!({"jsonrpc":"2.0","id":c * 100_000 + i,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":1},
                    "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}});
                let sent = http
                    .post(format!("{base}/mcp/tickets"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("accept", harness::ACCEPT_BOTH)
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "get_ticket")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        // Success is what the client saw: the whole answer arrived.
                        if r.bytes().await.is_ok() {
                            ok.extend(id);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            ok
        }));
    }
    // Let load build up, then kill -9 in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.log.request_count() < 200 {
        assert!(Instant::now() < deadline, "load never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mut succeeded = Vec::new();
    for c in clients {
        succeeded.extend(c.await.expect("client"));
    }
    assert!(
        succeeded.len() >= 100,
        "too little load to mean anything: {}",
        succeeded.len()
    );

    let store = AuditStore::connect(&audit_url).await.expect("audit store");
    let records = store
        .query(&AuditFilter {
            limit: Some(10_000),
            ..AuditFilter::default()
        })
        .await
        .expect("query");
    let stored: std::collections::HashSet<String> =
        records.into_iter().map(|r| r.record.request_id).collect();
    let missing: Vec<&String> = succeeded
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged requests have no record",
        missing.len(),
        succeeded.len()
    );
    let report = authz_audit::verify(&store, None, None)
        .await
        .expect("verify");
    assert!(
        report.is_intact(),
        "a crash must not break the chain: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_record_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    crash_under_load(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn sigkill_under_load_loses_no_acknowledged_record_postgres() {
    let db = TestDatabase::postgres().await;
    crash_under_load(db.url().to_owned()).await;
}
