//! `cargo xtask cluster`: the production topology on one machine, without containers.
//!
//! One Postgres (the caller's `DATABASE_URL`, else a throwaway cluster, as for the tests) holds
//! the audit trail, the policy, the revocations, the quota ledger and the session bindings; two
//! gateway replicas (each its own audit chain) front the demo ticket upstream; nginx balances
//! requests over them round robin, with no session affinity, and is the public address. The
//! policy is imported from `policies/policy.csv` into the store. It prints the endpoint, a token
//! per demo user, each replica's metrics and readiness URLs and the `authzctl` commands that
//! change policy or revoke a token for the whole cluster, then runs until Ctrl-C (or until any
//! process exits). Everything lives in `.cluster/`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::demo::{Guard, log_file, target_dir};

/// The replicas' names (also their audit chain ids).
const REPLICAS: [&str; 2] = ["gw-1", "gw-2"];

pub(crate) fn cluster(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("`cluster` takes no arguments, got {args:?}");
    }
    let nginx = cmd::which("nginx")
        .or_else(|| {
            let p = std::path::PathBuf::from("/usr/sbin/nginx");
            p.is_file().then_some(p)
        })
        .context(
            "nginx not found: it is the cluster's load balancer. Install it with \
             `sudo apt-get install nginx-light` (Debian/Ubuntu)",
        )?;
    let root = cmd::workspace_root();
    let dir = root.join(".cluster");
    std::fs::create_dir_all(dir.join("nginx-tmp")).context("creating .cluster/")?;

    println!("==> building the gateway, authzctl and the demo upstream");
    cmd::run(cmd::cargo().args([
        "build",
        "-p",
        "authz-gateway",
        "-p",
        "authz-admin",
        "-p",
        "demo-upstream",
        "--bins",
    ]))?;
    let target = target_dir(&root)?;
    let bin = |name: &str| target.join("debug").join(name);
    let authzctl = bin("authzctl");

    println!("==> Postgres");
    let pg = crate::postgres::Postgres::start()?;
    let url = pg.url().to_owned();

    let keys = dir.join("keys");
    if !keys.join("jwks.json").exists() {
        println!("==> generating a development signing key");
        cmd::run(
            Command::new(&authzctl)
                .args(["keys", "generate", "--out-dir"])
                .arg(&keys),
        )?;
    }
    println!("==> importing policies/policy.csv into the policy store");
    cmd::run(
        Command::new(&authzctl)
            .args(["policy", "import", "--database-url", &url])
            .arg(root.join("policies/policy.csv"))
            .env("AUTHZ_ACTOR", "xtask-cluster"),
    )?;

    let upstream_port = crate::postgres::free_port()?;
    let lb_port = crate::postgres::free_port()?;
    let public = format!("http://127.0.0.1:{lb_port}");
    let route = format!("{public}/mcp/tickets");
    let secret = format!("cluster-{}-{lb_port}", std::process::id());
    let mut children = vec![Guard::new(
        Command::new(bin("demo-upstream"))
            .args(["--listen", &format!("127.0.0.1:{upstream_port}")])
            .args(["--require-bearer-env", "DEMO_UPSTREAM_TOKEN"])
            .env("DEMO_UPSTREAM_TOKEN", &secret)
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "demo-upstream.log")?)
            .spawn()
            .context("starting demo-upstream")?,
        "demo-upstream",
    )];
    let mut replica_ports = Vec::new();
    for name in REPLICAS {
        let port = crate::postgres::free_port()?;
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            replica_config(&root, &keys, name, port, &public, upstream_port, &url),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let mut child = Guard::new(
            Command::new(bin("authz-gateway"))
                .arg("--config")
                .arg(&config)
                .current_dir(&root)
                .env("TICKETS_UPSTREAM_TOKEN", &secret)
                .stdout(Stdio::null())
                .stderr(log_file(&dir, &format!("{name}.log"))?)
                .spawn()
                .with_context(|| format!("starting replica {name}"))?,
            "authz-gateway",
        );
        crate::bench_e2e::wait_for_port(port, name, child.child())?;
        children.push(child);
        replica_ports.push(port);
    }
    std::fs::write(
        dir.join("nginx.conf"),
        nginx_conf(&dir, lb_port, &replica_ports),
    )?;
    let mut lb = Guard::new(
        Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .args(["-c", "nginx.conf", "-e"])
            .arg(dir.join("nginx-error.log"))
            // In the foreground, so it is this process's child and stops with it.
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "nginx.stderr")?)
            .spawn()
            .context("starting nginx")?,
        "nginx",
    );
    crate::bench_e2e::wait_for_port(lb_port, "nginx", lb.child())?;
    children.push(lb);

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
                    "1h",
                    "--client-id",
                    "demo-agent",
                ])
                .arg("--key")
                .arg(keys.join("signing-key.jwk")),
        )?;
        Ok(out.trim().to_owned())
    };
    let rita = mint("rita", "ticket-reader", "tickets:read")?;
    let adam = mint("adam", "ticket-admin", "tickets:write")?;
    print!(
        "{}",
        instructions(&route, &replica_ports, &url, &rita, &adam)
    );
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        for child in &mut children {
            child.check_alive()?;
        }
    }
}

/// One replica: Postgres for everything, its own audit chain, the load balancer's public URL.
fn replica_config(
    root: &Path,
    keys: &Path,
    name: &str,
    port: u16,
    public: &str,
    upstream_port: u16,
    url: &str,
) -> String {
    crate::demo::gateway_toml(
        &format!(
            "# Written by `cargo xtask cluster`: replica {name} of two, behind nginx at {public}."
        ),
        &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"{public}\""),
        keys,
        &format!(
            "model = \"{}/model.conf\"\ndatabase_url = \"{url}\"",
            root.join("policies").display()
        ),
        &format!("database_url = \"{url}\"\n\n[audit.writer]\nchain_id = \"{name}\""),
        upstream_port,
    )
}

/// nginx as the load balancer: round robin per request over the replicas, no affinity; the
/// client's `Host` passed on (each replica's public URL is the balancer's); responses not
/// buffered, so SSE streams flow.
fn nginx_conf(dir: &Path, port: u16, replicas: &[u16]) -> String {
    let d = dir.display();
    let servers: String = replicas
        .iter()
        .map(|p| format!("        server 127.0.0.1:{p};\n"))
        .collect();
    format!(
        r#"# Written by `cargo xtask cluster`: the load balancer.
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/nginx-tmp;
    proxy_temp_path {d}/nginx-tmp;
    upstream gateways {{
{servers}        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#
    )
}

fn instructions(route: &str, replicas: &[u16], url: &str, rita: &str, adam: &str) -> String {
    let replica_lines: String = replicas
        .iter()
        .zip(REPLICAS)
        .map(|(p, name)| {
            format!("  {name}: http://127.0.0.1:{p}/readyz   http://127.0.0.1:{p}/metrics\n")
        })
        .collect();
    format!(
        r#"
==> the cluster is up (Ctrl-C stops everything; logs in .cluster/)

MCP endpoint (nginx, round robin over both replicas, no session affinity):
  {route}
Replicas:
{replica_lines}Postgres (audit, policy, revocations, quotas, session bindings):
  {url}

Tokens (1 h):
  rita (ticket-reader, tickets:read):  {rita}
  adam (ticket-admin, tickets:write):  {adam}

Connect an official client, e.g. the MCP Inspector CLI:
  npx @modelcontextprotocol/inspector --cli {route} --transport http \
    --header "Authorization: Bearer <token>" --method tools/list

Change the policy or revoke a token for both replicas at once:
  target/debug/authzctl role revoke ticket-reader call 'tool:tickets/get_*' --yes --database-url '{url}'
  target/debug/authzctl token revoke --subject rita --issuer authzctl --database-url '{url}'
  target/debug/authzctl audit list --database-url '{url}' --limit 20
"#
    )
}
