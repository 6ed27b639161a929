//! `cargo xtask demo`: the gateway on embedded defaults, walked through allowed and refused calls.
//!
//! Builds the binaries, generates a development key with `authzctl`, starts the demo ticket
//! upstream and the gateway (SQLite audit file, policies from `policies/`), mints two tokens —
//! a `ticket-reader` and a `ticket-admin` — and shows what each may do, then prints the audit
//! trail. Everything lives in `.demo/`; the processes are stopped when the walk-through ends.
//! The HTTP exchanges use a tiny HTTP/1.1 client over `std::net` so xtask stays dependency-light.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd;

/// A child process that is killed when dropped.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!("{} exited early ({status}); see its log in .demo/", self.1);
        }
        Ok(())
    }
}

pub(crate) fn demo() -> Result<()> {
    let root = cmd::workspace_root();
    let dir = root.join(".demo");
    std::fs::create_dir_all(&dir).context("creating .demo/")?;

    println!("==> building the gateway, authzctl and the demo upstream");
    cmd::run(cmd::cargo().args([
        "build",
        "-p",
        "authz-gateway",
        "-p",
        "authz-admin",
        "-p",
        "demo-upstream",
    ]))?;
    let target = target_dir(&root)?;
    let bin = |name: &str| target.join("debug").join(name);
    let authzctl = bin("authzctl");

    let keys = dir.join("keys");
    if !keys.join("jwks.json").exists() {
        println!("==> generating a development signing key");
        cmd::run(
            Command::new(&authzctl)
                .arg("keys")
                .arg("generate")
                .arg("--out-dir")
                .arg(&keys),
        )?;
    }

    let upstream_port = crate::postgres::free_port()?;
    let gateway_port = crate::postgres::free_port()?;
    let base = format!("http://127.0.0.1:{gateway_port}");
    let route = format!("{base}/mcp/tickets");
    let audit_db = dir.join("audit.db");
    // Each walk-through starts a fresh trail, so what is printed at the end is exactly this run.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("audit.db{suffix}")));
    }
    let audit_url = format!("sqlite://{}?mode=rwc", audit_db.display());
    // A fresh secret per run: the credential the gateway presents upstream, never an agent's.
    let upstream_secret = format!("demo-{}-{}", std::process::id(), gateway_port);
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(&root, &keys, gateway_port, upstream_port, &audit_url),
    )
    .context("writing .demo/gateway.toml")?;

    println!(
        "==> starting the demo upstream on 127.0.0.1:{upstream_port} and the gateway on {base}"
    );
    let mut upstream = Guard(
        Command::new(bin("demo-upstream"))
            .args([
                "--listen",
                &format!("127.0.0.1:{upstream_port}"),
                "--require-bearer-env",
                "DEMO_UPSTREAM_TOKEN",
            ])
            .args(["--json-response"])
            .env("DEMO_UPSTREAM_TOKEN", &upstream_secret)
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "demo-upstream.log")?)
            .spawn()
            .context("starting demo-upstream")?,
        "demo-upstream",
    );
    let mut gateway = Guard(
        Command::new(bin("authz-gateway"))
            .arg("--config")
            .arg(&config)
            .current_dir(&root)
            .env("TICKETS_UPSTREAM_TOKEN", &upstream_secret)
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "gateway.log")?)
            .spawn()
            .context("starting authz-gateway")?,
        "authz-gateway",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        upstream.check_alive()?;
        gateway.check_alive()?;
        if get(gateway_port, "/readyz").is_ok_and(|r| r.status == 200) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway did not become ready within 30 s; see .demo/gateway.log");
        }
        std::thread::sleep(cmd::POLL_INTERVAL);
    }

    let mint = |sub: &str, role: &str, scope: &str| -> Result<String> {
        let out = cmd::output(
            Command::new(&authzctl)
                .args([
                    "token", "mint", "--sub", sub, "--role", role, "--scope", scope,
                ])
                .args([
                    "--audience",
                    &route,
                    "--ttl",
                    "10m",
                    "--client-id",
                    "demo-agent",
                ])
                .arg("--key")
                .arg(keys.join("signing-key.jwk")),
        )?;
        Ok(out.trim().to_owned())
    };
    println!("==> minting tokens with authzctl");
    let reader = mint("rita", "ticket-reader", "tickets:read")?;
    let reader_rw = mint("rita", "ticket-reader", "tickets:read tickets:write")?;
    let admin = mint("adam", "ticket-admin", "tickets:write")?;
    println!(
        "    rita: role ticket-reader, scope tickets:read (and a second token that also has tickets:write)"
    );
    println!("    adam: role ticket-admin,  scope tickets:write (implies tickets:read)");

    let mut id = 0;
    let mut step =
        |title: &str, token: Option<&str>, method: &str, params: Value| -> Result<Reply> {
            id += 1;
            println!("\n--- {title}");
            let reply = mcp_call(gateway_port, token, id, method, params)?;
            println!("    HTTP {}", reply.status);
            if let Some(c) = &reply.challenge {
                println!("    WWW-Authenticate: {c}");
            }
            println!("    {}", summarize(method, &reply));
            Ok(reply)
        };

    let r = step(
        "an agent without a token calls a tool",
        None,
        "tools/call",
        json!({"name":"get_ticket","arguments":{"id":1}}),
    )?;
    expect(&r, 401)?;
    let r = step(
        "rita lists the tools: only what she may call is shown",
        Some(&reader),
        "tools/list",
        json!({}),
    )?;
    expect(&r, 200)?;
    let r = step(
        "rita reads ticket 1",
        Some(&reader),
        "tools/call",
        json!({"name":"get_ticket","arguments":{"id":1}}),
    )?;
    expect(&r, 200)?;
    let r = step(
        "rita tries to delete ticket 1 (her token lacks tickets:write)",
        Some(&reader),
        "tools/call",
        json!({"name":"delete_ticket","arguments":{"id":1}}),
    )?;
    expect(&r, 403)?;
    let r = step(
        "rita tries again with a tickets:write token: her role still forbids it",
        Some(&reader_rw),
        "tools/call",
        json!({"name":"delete_ticket","arguments":{"id":1}}),
    )?;
    expect(&r, 403)?;
    let r = step(
        "adam lists the tools",
        Some(&admin),
        "tools/list",
        json!({}),
    )?;
    expect(&r, 200)?;
    let r = step(
        "adam deletes ticket 1",
        Some(&admin),
        "tools/call",
        json!({"name":"delete_ticket","arguments":{"id":1}}),
    )?;
    expect(&r, 200)?;

    println!("\n==> the audit trail (authzctl audit list)");
    cmd::run(Command::new(&authzctl).args([
        "audit",
        "list",
        "--database-url",
        &audit_url,
        "--limit",
        "20",
    ]))?;
    println!("\nFiles: .demo/gateway.toml (config), .demo/audit.db (audit), .demo/*.log (logs).");
    drop(gateway);
    drop(upstream);
    Ok(())
}

fn expect(reply: &Reply, status: u16) -> Result<()> {
    if reply.status != status {
        bail!(
            "expected HTTP {status}, got {}: {}",
            reply.status,
            reply.body
        );
    }
    Ok(())
}

fn target_dir(root: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let meta = cmd::output(cmd::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let v: Value = serde_json::from_str(&meta).context("parsing cargo metadata")?;
    Ok(v["target_directory"]
        .as_str()
        .map_or_else(|| root.join("target"), PathBuf::from))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("creating .demo/{name}"))
}

fn gateway_config(
    root: &Path,
    keys: &Path,
    gateway_port: u16,
    upstream_port: u16,
    audit_url: &str,
) -> String {
    format!(
        r#"# Written by `cargo xtask demo`: embedded defaults (SQLite audit, file policies).
[server]
listen = "127.0.0.1:{gateway_port}"

[auth]
max_lifetime_secs = 3600

[[auth.issuers]]
issuer = "authzctl"
jwks_file = "{jwks}"

[policy]
model = "{policies}/model.conf"
files = ["{policies}/policy.csv"]

[audit]
database_url = "{audit_url}"

[scope_hierarchy]
"tickets:write" = ["tickets:read"]

[[upstreams]]
name = "tickets"
url = "http://127.0.0.1:{upstream_port}/mcp"
credential_env = "TICKETS_UPSTREAM_TOKEN"
scopes = [
  {{ method = "tools/call", target = "delete_*", require = ["tickets:write"] }},
  {{ method = "tools/call", target = "create_*", require = ["tickets:write"] }},
  {{ method = "*", require = ["tickets:read"] }},
]
"#,
        jwks = keys.join("jwks.json").display(),
        policies = root.join("policies").display(),
    )
}

/// An HTTP response, read to the end.
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

impl Reply {
    /// The JSON-RPC message in the body (plain JSON or the data of an SSE event).
    fn message(&self) -> Option<Value> {
        if let Ok(v) = serde_json::from_str(&self.body) {
            return Some(v);
        }
        self.body
            .split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .last()
    }
}

fn summarize(method: &str, reply: &Reply) -> String {
    let Some(msg) = reply.message() else {
        return "(no JSON body)".to_owned();
    };
    if let Some(err) = msg.get("error") {
        return format!(
            "refused: {} (reason {}, request {})",
            err["message"].as_str().unwrap_or("?"),
            err["data"]["reason"].as_str().unwrap_or("?"),
            err["data"]["requestId"].as_str().unwrap_or("?")
        );
    }
    let result = &msg["result"];
    if method == "tools/list" {
        let names: Vec<&str> = result["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        return format!("tools shown: {}", names.join(", "));
    }
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let short: String = text.chars().take(100).collect();
    format!("result: {short}")
}

fn mcp_call(
    port: u16,
    token: Option<&str>,
    id: u64,
    method: &str,
    mut params: Value,
) -> Result<Reply> {
    // MCP 2026-07-28, stateless: per-request `_meta`, and `Mcp-Method`/`Mcp-Name` headers.
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "xtask-demo", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (
            "Accept".to_owned(),
            "application/json, text/event-stream".to_owned(),
        ),
        ("MCP-Protocol-Version".to_owned(), "2026-07-28".to_owned()),
        ("Mcp-Method".to_owned(), method.to_owned()),
    ];
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        headers.push(("Mcp-Name".to_owned(), name.to_owned()));
    }
    if let Some(t) = token {
        headers.push(("Authorization".to_owned(), format!("Bearer {t}")));
    }
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
    http(port, "POST", "/mcp/tickets", &headers, &body)
}

fn get(port: u16, path: &str) -> Result<Reply> {
    http(port, "GET", path, &[], "")
}

/// One HTTP/1.1 exchange with `Connection: close`; handles chunked responses.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("no HTTP header terminator")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut chunked = false;
    let mut challenge = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
            if k == "www-authenticate" {
                challenge = Some(v.to_owned());
            }
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_owned()
    };
    Ok(Reply {
        status,
        challenge,
        body,
    })
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = s.split_once("\r\n").context("truncated chunk")?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("truncated chunk body")?);
        s = rest.get(size + 2..).context("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_reassembled() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").expect("ok"),
            "hello world"
        );
        assert!(dechunk("5\r\nhel").is_err());
    }

    #[test]
    fn sse_and_json_bodies_yield_the_message() {
        let r = Reply {
            status: 200,
            challenge: None,
            body: "data: {\"id\":1}\n\n".into(),
        };
        assert_eq!(r.message(), Some(json!({"id":1})));
        let r = Reply {
            status: 200,
            challenge: None,
            body: "{\"id\":2}".into(),
        };
        assert_eq!(r.message(), Some(json!({"id":2})));
    }
}
