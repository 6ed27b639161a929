//! `cargo xtask demo`: the gateway on embedded defaults, walked through allowed and refused calls.
//!
//! Builds the binaries, generates a development key with `authzctl`, starts the demo ticket
//! upstream and the gateway (SQLite audit file, policies from `policies/`), mints two tokens —
//! a `ticket-reader` and a `ticket-admin` — and shows what each may do, then prints the audit
//! trail. Everything lives in `.demo/`; the processes are stopped when the walk-through ends,
//! or, with `--serve`, keep running until Ctrl-C, with the endpoint, a token per demo user and
//! the commands that connect the official MCP Inspector CLI printed.
//! The calls themselves are the `walkthrough` example of `examples/demo-upstream` (an HTTP client
//! on reqwest), so xtask stays dependency-light and holds no HTTP client of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

/// A child process that is killed when dropped.
pub(crate) struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub(crate) fn new(child: Child, name: &'static str) -> Self {
        Self(child, name)
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!(
                "{} exited early ({status}); see its log (in .demo/ or .cluster/)",
                self.1
            );
        }
        Ok(())
    }
}

pub(crate) fn demo(args: &[String]) -> Result<()> {
    let serve = match args {
        [] => false,
        [flag] if flag == "--serve" => true,
        other => bail!("`demo` takes only `--serve`, got {other:?}"),
    };
    let root = cmd::workspace_root();
    let dir = root.join(".demo");
    std::fs::create_dir_all(&dir).context("creating .demo/")?;

    println!("==> building the gateway, authzctl, the demo upstream and its walk-through client");
    cmd::run(cmd::cargo().args([
        "build",
        "-p",
        "authz-gateway",
        "-p",
        "authz-admin",
        "-p",
        "demo-upstream",
        "--bins",
        "--example",
        "walkthrough",
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
    upstream.check_alive()?;
    gateway.check_alive()?;

    let mint_for = |sub: &str, role: &str, scope: &str, ttl: &str| -> Result<String> {
        let out = cmd::output(
            Command::new(&authzctl)
                .args([
                    "token", "mint", "--sub", sub, "--role", role, "--scope", scope,
                ])
                .args([
                    "--audience",
                    &route,
                    "--ttl",
                    ttl,
                    "--client-id",
                    "demo-agent",
                ])
                .arg("--key")
                .arg(keys.join("signing-key.jwk")),
        )?;
        Ok(out.trim().to_owned())
    };
    let mint = |sub: &str, role: &str, scope: &str| mint_for(sub, role, scope, "10m");
    println!("==> minting tokens with authzctl");
    let reader = mint("rita", "ticket-reader", "tickets:read")?;
    let reader_rw = mint("rita", "ticket-reader", "tickets:read tickets:write")?;
    let admin = mint("adam", "ticket-admin", "tickets:write")?;
    println!(
        "    rita: role ticket-reader, scope tickets:read (and a second token that also has tickets:write)"
    );
    println!("    adam: role ticket-admin,  scope tickets:write (implies tickets:read)");

    // The walk-through waits for `/readyz`, makes each call and checks its status.
    let walked = cmd::run(
        Command::new(target.join("debug").join("examples").join("walkthrough"))
            .arg(&base)
            .env("DEMO_READER_TOKEN", &reader)
            .env("DEMO_READER_RW_TOKEN", &reader_rw)
            .env("DEMO_ADMIN_TOKEN", &admin),
    );
    upstream.check_alive()?;
    gateway.check_alive()?;
    walked.context("the walk-through failed; see .demo/gateway.log")?;

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
    if serve {
        // Tokens for an hour (the demo issuer's longest lifetime), one per demo user.
        let rita = mint_for("rita", "ticket-reader", "tickets:read", "1h")?;
        let adam = mint_for("adam", "ticket-admin", "tickets:write", "1h")?;
        print!("{}", serve_instructions(&route, &rita, &adam, &audit_url));
        // Until Ctrl-C (the processes are stopped with this one) or until either child exits.
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            upstream.check_alive()?;
            gateway.check_alive()?;
        }
    }
    drop(gateway);
    drop(upstream);
    Ok(())
}

/// What `demo --serve` prints once the gateway is up: the endpoint, a token per demo user, and
/// the commands that connect an official MCP client to it.
fn serve_instructions(route: &str, rita: &str, adam: &str, audit_url: &str) -> String {
    let inspector = |token_var: &str, rest: &str| {
        format!(
            "    npx @modelcontextprotocol/inspector --cli {route} --transport http \\\n      \
             --header \"Authorization: Bearer ${token_var}\" {rest}\n"
        )
    };
    format!(
        "\n==> serving until Ctrl-C\n\
         endpoint: {route}\n\n\
         export RITA_TOKEN={rita}   # ticket-reader, tickets:read\n\
         export ADAM_TOKEN={adam}   # ticket-admin, tickets:write\n\n\
         Connect the official MCP Inspector CLI (Node 22+) — rita sees only what she may call:\n\
         {}\
         {}\
         and adam may delete where rita is refused:\n\
         {}\
         {}\
         Every call is in the audit trail:\n    \
         cargo run -q -p authz-admin -- audit tail --follow --database-url '{audit_url}'\n",
        inspector("RITA_TOKEN", "--method tools/list"),
        inspector(
            "RITA_TOKEN",
            "--method tools/call --tool-name get_ticket --tool-arg id=1"
        ),
        inspector(
            "ADAM_TOKEN",
            "--method tools/call --tool-name delete_ticket --tool-arg id=2"
        ),
        inspector(
            "RITA_TOKEN",
            "--method tools/call --tool-name delete_ticket --tool-arg id=2   # refused"
        ),
    )
}

pub(crate) fn target_dir(root: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let meta = cmd::output(cmd::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let v: Value = serde_json::from_str(&meta).context("parsing cargo metadata")?;
    Ok(v["target_directory"]
        .as_str()
        .map_or_else(|| root.join("target"), PathBuf::from))
}

pub(crate) fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("creating .demo/{name}"))
}

fn gateway_config(
    root: &Path,
    keys: &Path,
    gateway_port: u16,
    upstream_port: u16,
    audit_url: &str,
) -> String {
    let policies = root.join("policies");
    gateway_toml(
        "# Written by `cargo xtask demo`: embedded defaults (SQLite audit, file policies).",
        &format!("listen = \"127.0.0.1:{gateway_port}\""),
        keys,
        &format!(
            "model = \"{p}/model.conf\"\nfiles = [\"{p}/policy.csv\"]",
            p = policies.display()
        ),
        &format!("database_url = \"{audit_url}\""),
        upstream_port,
    )
}

/// A gateway configuration for the demo ticket upstream on `upstream_port`, trusting the
/// development key in `keys`; `server`, `policy` and `audit` are those sections' lines.
pub(crate) fn gateway_toml(
    header: &str,
    server: &str,
    keys: &Path,
    policy: &str,
    audit: &str,
    upstream_port: u16,
) -> String {
    format!(
        r#"{header}
[server]
{server}

[auth]
max_lifetime_secs = 3600

[[auth.issuers]]
issuer = "authzctl"
jwks_file = "{jwks}"

[policy]
{policy}

[audit]
{audit}

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
    )
}
