//! The `authz-gateway` binary: configuration mistakes stop it before it listens.

use std::process::Command;

fn run_with_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .arg("--config")
        .arg(&path)
        .env_remove("AUTHZ_LISTEN")
        .env_remove("AUTHZ_PUBLIC_URL")
        .env_remove("AUTHZ_AUDIT_DATABASE_URL")
        .env_remove("AUTHZ_POLICY_DATABASE_URL")
        .output()
        .expect("run authz-gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_exits_2_naming_the_key_with_a_hint() {
    let (code, stderr) = run_with_config("[server]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("server.lisen"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_missing_auth_section_exits_2_with_a_hint() {
    let (code, stderr) = run_with_config("[server]\nlisten = \"127.0.0.1:0\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`auth`") && stderr.contains("authzctl keys generate"),
        "{stderr}"
    );
}

#[test]
fn virtual_server_prefixes_that_collide_stop_the_binary_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = authz_token::generate_key_pair(authz_token::KeyAlgorithm::Es256, "k").expect("keys");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, k.public_jwks).expect("jwks");
    let (code, stderr) = run_with_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[auth]\n[[auth.issuers]]\n\
         issuer = \"https://idp.test\"\njwks_file = \"{}\"\n\n\
         [[upstreams]]\nname = \"tickets\"\nurl = \"http://127.0.0.1:9/mcp\"\n\
         [[upstreams]]\nname = \"tickets_v2\"\nurl = \"http://127.0.0.1:9/v2\"\n\n\
         [[virtual_servers]]\nname = \"all\"\nmembers = [\"tickets\", \"tickets_v2\"]\n",
        jwks.display()
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("virtual_servers[0].prefixes.tickets_v2")
            && stderr.contains("`tickets_v2_` and `tickets_`"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .args(["--config", "/nonexistent/gateway.toml"])
        .output()
        .expect("run authz-gateway");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// `SIGHUP` to the running binary: rotated issuer keys, a rotated upstream credential and a
/// changed body limit take effect; a changed key that needs a restart is named in the log and
/// left as it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_credentials_and_limits_and_names_what_needs_a_restart() {
    use authz_test_support::repo_path;
    use authz_token::{KeyAlgorithm, MintRequest, Signer};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (
        authz_token::generate_key_pair(KeyAlgorithm::Es256, "old").expect("keys"),
        authz_token::generate_key_pair(KeyAlgorithm::Es256, "new").expect("keys"),
    );
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &old.public_jwks).expect("write jwks");
    let credential = dir.path().join("upstream.secret");
    std::fs::write(&credential, "old-secret").expect("write credential");
    // The upstream already wants the new credential: until the reload, the gateway's is refused.
    let upstream = demo_upstream::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        demo_upstream::DemoConfig {
            require_bearer: Some("new-secret".into()),
            ..Default::default()
        },
    )
    .await
    .expect("upstream");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = |max_body: u32, window_ms: u32| {
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
max_body_bytes = {max_body}
refusal_aggregate_window_ms = {window_ms}

[auth]
max_lifetime_secs = 3600

[[auth.issuers]]
issuer = "{issuer}"
jwks_file = "{jwks}"

[policy]
model = "{model}"
files = ["{policy}"]

[audit]
database_url = "sqlite://{audit}?mode=rwc"

[[upstreams]]
name = "tickets"
url = "{url}"
credential_file = "{credential}"
"#,
            issuer = crate::harness::ISSUER,
            jwks = jwks.display(),
            model = repo_path("policies/model.conf").display(),
            policy = repo_path("policies/policy.csv").display(),
            audit = dir.path().join("audit.db").display(),
            url = upstream.url(),
            credential = credential.display(),
        )
    };
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(1_048_576, 1_000)).expect("write config");
    let log = dir.path().join("gateway.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .arg("--config")
        .arg(&path)
        .env_remove("AUTHZ_LISTEN")
        .env_remove("AUTHZ_PUBLIC_URL")
        .env_remove("AUTHZ_AUDIT_DATABASE_URL")
        .env_remove("AUTHZ_POLICY_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the gateway");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id().to_string();
    let _child = Kill(child);

    let route = format!("{base}/mcp/tickets");
    let token = |private: &str| {
        let mut req = MintRequest::new(crate::harness::ISSUER, "adam", route.clone());
        req.roles = vec!["ticket-admin".into()];
        req.ttl_secs = 600;
        Signer::from_private_jwk(private)
            .expect("signer")
            .mint(&req)
            .expect("mint")
    };
    let (by_old, by_new) = (token(&old.private_jwk), token(&new.private_jwk));
    let http = reqwest::Client::new();
    let call = |token: String| {
        let (headers, body) = crate::harness::stateless_call(1, "get_ticket");
        let mut req = http
            .post(&route)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(by_old.clone()).await == 0 {
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(by_old.clone()).await,
        502,
        "the upstream refuses the old credential"
    );
    assert_eq!(
        call(by_new.clone()).await,
        401,
        "the new key is not trusted yet"
    );

    std::fs::write(&jwks, &new.public_jwks).expect("rotate the keys");
    std::fs::write(&credential, "new-secret").expect("rotate the credential");
    std::fs::write(&path, config(2_000_000, 2_000)).expect("edit the config");
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    };
    hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(by_new.clone()).await != 200 {
        assert!(Instant::now() < deadline, "the reload never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(by_old.clone()).await,
        401,
        "the rotated-out key is refused at once"
    );
    // The log names the key that needs a restart (written as the reload runs).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).expect("log");
        if text.contains("server.refusal_aggregate_window_ms")
            && text.contains("restart")
            && text.contains("limits reloaded")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line names the key:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A smaller body limit applies to the next request.
    std::fs::write(&path, config(64, 2_000)).expect("edit the config");
    hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(by_new.clone()).await != 413 {
        assert!(
            Instant::now() < deadline,
            "the new body limit never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The binary with a stdio route: a stateless call reaches the child through the bridge, a
/// `SIGHUP` leaves the route working (its credential is the bridge's, not the file's) without
/// asking for a restart, and `SIGTERM` stops the child with the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_stdio_route_across_a_reload() {
    use authz_test_support::repo_path;
    use authz_token::{KeyAlgorithm, MintRequest, Signer};
    use std::time::{Duration, Instant};

    if !crate::peers::peers_available().await {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = authz_token::generate_key_pair(KeyAlgorithm::Es256, "k").expect("keys");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &keys.public_jwks).expect("write jwks");
    let policy = dir.path().join("policy.csv");
    std::fs::write(
        &policy,
        "p, stdio-user, default, tool:files/*, call, allow\n",
    )
    .expect("policy");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
header_read_timeout_ms = 1000

[auth]
max_lifetime_secs = 3600

[[auth.issuers]]
issuer = "{issuer}"
jwks_file = "{jwks}"

[policy]
model = "{model}"
files = ["{policy}"]

[audit]
database_url = "sqlite://{audit}?mode=rwc"

[[upstreams]]
name = "files"
command = ["node", "{script}"]
cwd = "{peers}"
"#,
        issuer = crate::harness::ISSUER,
        jwks = jwks.display(),
        model = repo_path("policies/model.conf").display(),
        policy = policy.display(),
        audit = dir.path().join("audit.db").display(),
        script = crate::peers::peers_dir().join("stdio-server.mjs").display(),
        peers = crate::peers::peers_dir().display(),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &config).expect("write config");
    let log = dir.path().join("gateway.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authz-gateway"))
        .arg("--config")
        .arg(&path)
        .env_remove("AUTHZ_LISTEN")
        .env_remove("AUTHZ_PUBLIC_URL")
        .env_remove("AUTHZ_AUDIT_DATABASE_URL")
        .env_remove("AUTHZ_POLICY_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the gateway");
    let pid = child.id().to_string();
    let route = format!("{base}/mcp/files");
    let mut req = MintRequest::new(crate::harness::ISSUER, "alice", route.clone());
    req.roles = vec!["stdio-user".into()];
    req.ttl_secs = 600;
    let token = Signer::from_private_jwk(&keys.private_jwk)
        .expect("signer")
        .mint(&req)
        .expect("mint");
    let http = reqwest::Client::new();
    let echo = || {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "via the binary"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                          "io.modelcontextprotocol/clientCapabilities": {}}}});
        let req = http
            .post(&route)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(body.to_string());
        async move {
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let answer = echo().await;
        if answer.0 != 0 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("via the binary"), "{body}");

    // The bridge is a loopback port any local process can reach: without its secret a request
    // is refused before its body is read, and a request head that never ends is cut.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bridge = loop {
        let text = std::fs::read_to_string(&log).expect("log");
        let found = text
            .lines()
            .find(|l| l.contains("stdio bridge listening"))
            // The log may be coloured: the port is the digits after the loopback address.
            .and_then(|l| l.split("127.0.0.1:").nth(1))
            .map(|rest| {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                format!("127.0.0.1:{port}")
            });
        if let Some(addr) = found {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge's address in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(&bridge)
            .await
            .expect("connect");
        s.write_all(
            b"POST /stdio/files HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
              content-length: 1000000000\r\n\r\n",
        )
        .await
        .expect("write");
        let mut head = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head))
            .await
            .expect("answered before any body was sent")
            .expect("read");
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        let mut idle = tokio::net::TcpStream::connect(&bridge)
            .await
            .expect("connect");
        idle.write_all(b"POST /stdio/files HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
            .await
            .expect("a head that never ends is cut at the request-head deadline");
        assert!(
            matches!(closed, Ok(0) | Err(_))
                || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
            "{closed:?}"
        );
    }

    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(hangup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).expect("log");
        if text.contains("SIGHUP: configuration reloaded") {
            assert!(!text.contains("credential kind"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no reload in the log:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = echo().await;
    assert_eq!(status, 200, "after the reload: {body}");

    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the gateway did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("stdio server ended"), "{text}");
}
