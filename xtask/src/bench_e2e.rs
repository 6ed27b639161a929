//! `cargo xtask bench e2e [--quick]`: the end-to-end load benchmark of issue 11.
//!
//! Builds the release binaries, then starts in one invocation: the fast upstream
//! (`loadgen upstream`), a bare nginx reverse proxy in front of it (1 worker, keep-alive upstream
//! pool), and four gateways with JWT + RBAC (10k extra policy lines) + audit — buffered and
//! durable, SQLite and Postgres (a throwaway cluster with `fsync=on`) — each with one route to
//! the fast upstream. Every target gets the same allowed `tools/call` (MCP 2026-07-28, stateless,
//! with a token minted by `authzctl`), checked to answer 200 before anything is measured.
//! The runs are interleaved round by round: closed loop at 16 connections for every target, at 64
//! for direct, nginx and the durable gateways, then the open loop at 1000 req/s. Figures are the
//! median over rounds; added latency is a gateway's percentile minus the direct upstream's in the
//! same round. CPU per request comes from `/proc/<pid>/stat` (utime + stime over the closed-loop
//! run, nginx master and workers summed; Postgres's own processes are not counted), resident
//! memory from `/proc/<pid>/status` after the load, start-up from spawn to `/readyz` 200.
//!
//! xtask holds no HTTP stack: the load is `loadgen` (`examples/loadgen`), whose one JSON line per
//! run is parsed here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd;
use crate::postgres::{Durability, Postgres, free_port};

const NGINX_MISSING: &str = "nginx not found: the gateway/nginx ratios need a bare nginx reverse \
     proxy as the baseline. Install it with `sudo apt-get install nginx-light` (Debian/Ubuntu); \
     without it this benchmark refuses to print ratios.";

/// How long each run lasts.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    warmup_s: f64,
    closed_s: f64,
    open_s: f64,
}

const QUICK: Plan = Plan {
    rounds: 1,
    warmup_s: 0.3,
    closed_s: 1.5,
    open_s: 2.0,
};
const FULL: Plan = Plan {
    rounds: 2,
    warmup_s: 1.0,
    closed_s: 8.0,
    open_s: 8.0,
};

const OPEN_RATE: f64 = 1000.0;

/// A child process stopped when dropped: SIGTERM first (nginx's master then stops its workers,
/// which a SIGKILL of the master would leave running), SIGKILL if it is still there after 2 s.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if terminated {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One thing the load is sent to.
struct Subject {
    name: String,
    url: String,
    /// Processes whose CPU time counts (nginx: master; its workers are found at run time).
    pid: Option<u32>,
    nginx: bool,
    durable: bool,
    startup_ms: Option<f64>,
    _guard: Option<Guard>,
}

/// What `loadgen closed|open` printed, the part this benchmark uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadResult {
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) errors: u64,
    /// Answers other than 200.
    pub(crate) non_200: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
}

/// Parses the last non-empty line of `loadgen` output.
pub(crate) fn parse_load(output: &str) -> Result<LoadResult> {
    let line = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("loadgen printed nothing")?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("loadgen: {line}"))?;
    let num = |ptr: &str| -> Result<f64> {
        v.pointer(ptr)
            .and_then(Value::as_f64)
            .with_context(|| format!("loadgen output has no number at {ptr}: {line}"))
    };
    let status = v
        .get("status")
        .and_then(Value::as_object)
        .with_context(|| format!("loadgen output has no status counts: {line}"))?;
    let mut non_200 = 0;
    for (code, n) in status {
        let n = n.as_u64().context("a status count is not a number")?;
        if code != "200" {
            non_200 += n;
        }
    }
    Ok(LoadResult {
        requests: num("/requests")? as u64,
        rps: num("/rps")?,
        errors: num("/errors")? as u64,
        non_200,
        p50_us: num("/latency_us/p50")?,
        p99_us: num("/latency_us/p99")?,
        p999_us: num("/latency_us/p999")?,
    })
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The pids whose parent is `pid` (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn pids_of(subject: &Subject) -> Vec<u32> {
    match subject.pid {
        Some(pid) if subject.nginx => {
            let mut all = vec![pid];
            all.extend(children(pid));
            all
        }
        Some(pid) => vec![pid],
        None => Vec::new(),
    }
}

fn total_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

/// VmRSS in MiB, summed over `pids`.
pub(crate) fn rss_mib(pids: &[u32]) -> Result<f64> {
    let mut kib = 0u64;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        kib += line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .context("bad VmRSS")?;
    }
    Ok(kib as f64 / 1024.0)
}

fn clock_ticks_per_sec() -> f64 {
    cmd::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The HTTP status of `GET path` on 127.0.0.1:port, if anything answers.
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("{what} did not listen on port {port} within 10 s")
}

pub(crate) fn e2e(args: &[String]) -> Result<()> {
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        other => bail!("`bench e2e` takes only `--quick`, got {other:?}"),
    };
    let plan = if quick { QUICK } else { FULL };
    let root = cmd::workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => root.join("target"),
    };
    let nginx = cmd::which("nginx").or_else(|| {
        let p = PathBuf::from("/usr/sbin/nginx");
        cmd::is_executable(&p).then_some(p)
    });
    if nginx.is_none() {
        eprintln!("xtask: warning: {NGINX_MISSING}");
    }

    build_release()?;
    let bin = |name: &str| target.join("release").join(name);
    let loadgen = bin("loadgen");

    let dir = target.join("bench").join("e2e-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("nginx-tmp")).context("creating the run directory")?;
    let log = |name: &str| -> Result<std::fs::File> {
        std::fs::File::create(dir.join(name)).with_context(|| format!("creating {name}"))
    };

    let public_url = "http://gateway.bench";
    let token = reader_token(&bin("authzctl"), &dir, "bench", public_url, "1h")?;

    // The example policy plus 10k lines for other roles, as the issue's memory target asks.
    let mut policy = std::fs::read_to_string(root.join("policies/policy.csv"))?;
    for i in 0..10_000 {
        policy.push_str(&format!(
            "p, bench-role-{}, default, tool:tickets/bench_tool_{i}, call, allow\n",
            i % 500
        ));
    }
    std::fs::write(dir.join("policy.csv"), policy)?;
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_ticket", "arguments": {"id": 1}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "loadgen", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}
        }}
    });
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, body.to_string())?;
    let headers = [
        "Accept: application/json, text/event-stream".to_owned(),
        "MCP-Protocol-Version: 2026-07-28".to_owned(),
        "Mcp-Method: tools/call".to_owned(),
        "Mcp-Name: get_ticket".to_owned(),
        format!("Authorization: Bearer {token}"),
    ];

    println!("==> starting the fast upstream, nginx, Postgres and four gateways");
    let (up_port, upstream) = start_upstream(&loadgen, log("upstream.log")?)?;
    let mut subjects = vec![Subject {
        name: "direct upstream".into(),
        url: format!("http://127.0.0.1:{up_port}/mcp"),
        pid: Some(upstream.0.id()),
        nginx: false,
        durable: false,
        startup_ms: None,
        _guard: Some(upstream),
    }];

    if let Some(nginx) = &nginx {
        let port = free_port()?;
        std::fs::write(dir.join("nginx.conf"), nginx_conf(&dir, port, up_port))?;
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .args(["-c", "nginx.conf", "-e"])
            .arg(dir.join("nginx-error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(log("nginx.stderr")?)
            .spawn()
            .context("starting nginx")?;
        wait_for_port(port, "nginx", &mut child)?;
        subjects.push(Subject {
            name: "nginx (1 worker, keep-alive pool)".into(),
            url: format!("http://127.0.0.1:{port}/mcp"),
            pid: Some(child.id()),
            nginx: true,
            durable: false,
            startup_ms: None,
            _guard: Some(Guard(child)),
        });
    }

    let pg = Postgres::start_with(Durability::Durable)?;
    let sqlite = |file: &str| format!("sqlite://{}?mode=rwc", dir.join(file).display());
    let variants = [
        ("sqlite", "buffered", sqlite("audit-buffered.db")),
        ("sqlite", "durable", sqlite("audit-durable.db")),
        ("postgres", "buffered", pg.url().to_owned()),
        ("postgres", "durable", pg.url().to_owned()),
    ];
    for (store, mode, audit_url) in variants {
        let port = free_port()?;
        let config = dir.join(format!("gateway-{store}-{mode}.toml"));
        std::fs::write(
            &config,
            gateway_config(&root, &dir, port, up_port, public_url, &audit_url, mode),
        )?;
        let started = Instant::now();
        let mut child = Command::new(bin("authz-gateway"))
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log(&format!("gateway-{store}-{mode}.log"))?)
            .spawn()
            .context("starting authz-gateway")?;
        let deadline = started + Duration::from_secs(20);
        loop {
            if http_get_status(port, "/readyz") == Some(200) {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "gateway {store}/{mode} exited early ({status}); see {}",
                    dir.display()
                );
            }
            if Instant::now() > deadline {
                bail!("gateway {store}/{mode} not ready within 20 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let startup_ms = started.elapsed().as_secs_f64() * 1e3;
        subjects.push(Subject {
            name: format!("gateway, {store}, {mode}"),
            url: format!("http://127.0.0.1:{port}/mcp/tickets"),
            pid: Some(child.id()),
            nginx: false,
            durable: mode == "durable",
            startup_ms: Some(startup_ms),
            _guard: Some(Guard(child)),
        });
    }

    let load = |mode: &str, url: &str| {
        let mut c = Command::new(&loadgen);
        if mode != "probe" {
            c.args(["--threads", if mode == "closed" { "2" } else { "1" }]);
        }
        c.args([mode, "--url", url, "--body"]).arg(&body_file);
        for h in &headers {
            c.args(["--header", h]);
        }
        c
    };

    println!("==> checking that every target answers the allowed call with 200");
    for s in &subjects {
        let out = cmd::output(&mut load("probe", &s.url))?;
        if !out.starts_with("200 ") {
            bail!(
                "{} answered the benchmark call with `{}`",
                s.name,
                out.trim()
            );
        }
    }

    let ticks = clock_ticks_per_sec();
    let run = |s: &Subject, mode: &str, conns: usize, seconds: f64| -> Result<(LoadResult, f64)> {
        let shape = |c: &mut Command, seconds: f64| {
            c.args(["--connections", &conns.to_string()])
                .args(["--duration", &seconds.to_string()]);
            if mode == "open" {
                c.args(["--rate", &OPEN_RATE.to_string()]);
            }
        };
        // A warm-up run first, not counted (nor in the CPU time).
        let mut warm = load(mode, &s.url);
        shape(&mut warm, plan.warmup_s);
        cmd::output(&mut warm)?;
        let pids = pids_of(s);
        let before = total_ticks(&pids)?;
        let mut c = load(mode, &s.url);
        shape(&mut c, seconds);
        let result = parse_load(&cmd::output(&mut c)?)?;
        let after = total_ticks(&pids)?;
        let cpu_us = (after - before) as f64 / ticks * 1e6 / result.requests.max(1) as f64;
        if result.errors > 0 || result.non_200 > 0 {
            eprintln!(
                "xtask: warning: {} ({mode}, {conns} conns): {} transport errors, {} answers not 200",
                s.name, result.errors, result.non_200
            );
        }
        Ok((result, cpu_us))
    };

    // (subject index, connections) → per-round (result, CPU µs per request).
    let mut closed: BTreeMap<(usize, usize), Vec<(LoadResult, f64)>> = BTreeMap::new();
    let mut open: BTreeMap<usize, Vec<LoadResult>> = BTreeMap::new();
    for round in 1..=plan.rounds {
        println!("==> round {round}/{}", plan.rounds);
        for (i, s) in subjects.iter().enumerate() {
            let r = run(s, "closed", 16, plan.closed_s)?;
            println!("    {:36} c16   {:>8.0} req/s", s.name, r.0.rps);
            closed.entry((i, 16)).or_default().push(r);
        }
        for (i, s) in subjects.iter().enumerate() {
            if s.durable || s.startup_ms.is_none() {
                let r = run(s, "closed", 64, plan.closed_s)?;
                println!("    {:36} c64   {:>8.0} req/s", s.name, r.0.rps);
                closed.entry((i, 64)).or_default().push(r);
            }
        }
        for (i, s) in subjects.iter().enumerate() {
            // One connection: what a durable call adds to a lone caller (the issue's "fsync
            // p50 + 0.3 ms" target), against the direct upstream's own round trip.
            if s.durable || i == 0 {
                let r = run(s, "closed", 1, plan.closed_s)?;
                println!(
                    "    {:36} c1    {:>8.0} req/s, p50 {:.0} µs",
                    s.name, r.0.rps, r.0.p50_us
                );
                closed.entry((i, 1)).or_default().push(r);
            }
        }
        for (i, s) in subjects.iter().enumerate() {
            let (r, _) = run(s, "open", 16, plan.open_s)?;
            println!(
                "    {:36} open  p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs at {OPEN_RATE} req/s",
                s.name, r.p50_us, r.p99_us, r.p999_us
            );
            open.entry(i).or_default().push(r);
        }
    }

    let fsync = fsync_probe(&dir)?;
    println!(
        "    fsync of a 4 KiB write in the run directory: p50 {:.0} µs, p99 {:.0} µs",
        fsync[0], fsync[1]
    );
    let rss: Vec<Option<f64>> = subjects.iter().map(|s| rss_mib(&pids_of(s)).ok()).collect();
    let meta: Vec<(String, Option<f64>)> = subjects
        .iter()
        .map(|s| (s.name.clone(), s.startup_ms))
        .collect();
    drop(subjects);
    pg.stop()?;

    let nginx_index = nginx.is_some().then_some(1usize);
    let mut rows = Vec::new();
    for (&(i, conns), results) in &closed {
        let rps = median(results.iter().map(|r| r.0.rps));
        let vs_nginx = nginx_index
            .filter(|&n| n != i && i != 0)
            .and_then(|n| closed.get(&(n, conns)))
            .map(|n| rps / median(n.iter().map(|r| r.0.rps)));
        let diff = |mine: &[LoadResult], direct: &[LoadResult]| {
            let d = |f: fn(&LoadResult) -> f64| {
                median(mine.iter().zip(direct).map(|(m, d)| f(m) - f(d)))
            };
            Some([d(|r| r.p50_us), d(|r| r.p99_us), d(|r| r.p999_us)])
        };
        let added = match (conns, open.get(&i), open.get(&0), closed.get(&(0, 1))) {
            (16, Some(mine), Some(direct), _) if i != 0 => diff(mine, direct),
            // At one connection the closed loop's own latency is the measure.
            (1, _, _, Some(direct)) if i != 0 => {
                let mine: Vec<LoadResult> = results.iter().map(|r| r.0.clone()).collect();
                let direct: Vec<LoadResult> = direct.iter().map(|r| r.0.clone()).collect();
                diff(&mine, &direct)
            }
            _ => None,
        };
        rows.push(Row {
            path: meta[i].0.clone(),
            connections: conns,
            rps,
            vs_nginx,
            added_us: added,
            cpu_us_per_req: median(results.iter().map(|r| r.1)),
            rss_mib: if conns == 16 { rss[i] } else { None },
            startup_ms: if conns == 16 { meta[i].1 } else { None },
            not_ok: results.iter().map(|r| r.0.non_200 + r.0.errors).sum(),
        });
    }
    rows.sort_by_key(|r| r.connections);
    let direct_open = open.get(&0).map(|d| {
        [
            median(d.iter().map(|r| r.p50_us)),
            median(d.iter().map(|r| r.p99_us)),
            median(d.iter().map(|r| r.p999_us)),
        ]
    });

    let mut table = render(&rows, direct_open);
    table.push_str(&format!(
        "\nAdded latency on the 1-connection rows is the closed loop's percentile minus the direct \
         upstream's at one connection. fsync of a 4 KiB write in the run directory: p50 {:.0} µs, \
         p99 {:.0} µs (the durable target at one connection is fsync p50 + 300 µs).\n",
        fsync[0], fsync[1]
    ));
    println!(
        "\n==> end-to-end ({} mode, {} round(s), median)",
        if quick { "quick" } else { "full" },
        plan.rounds
    );
    print!("{table}");
    if nginx.is_none() {
        println!("\n{NGINX_MISSING}");
    }
    let out = target.join("bench").join("e2e.json");
    let report = json!({
        "mode": if quick { "quick" } else { "full" },
        "rounds": plan.rounds,
        "closed_s": plan.closed_s,
        "open_s": plan.open_s,
        "open_rate": OPEN_RATE,
        "nginx": nginx.is_some(),
        "direct_open_latency_us": direct_open.map(|[p50, p99, p999]| json!({"p50": p50, "p99": p99, "p999": p999})),
        "fsync_us": json!({"p50": fsync[0], "p99": fsync[1]}),
        "machine": machine(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nwritten: {}", out.display());
    Ok(())
}

/// p50 and p99 of `fsync` after a 4 KiB write to a file in `dir`, in µs (the disk's own part of
/// a durable commit).
fn fsync_probe(dir: &Path) -> Result<[f64; 2]> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).context("creating the fsync probe file")?;
    let page = [0x5a_u8; 4096];
    let mut us = Vec::with_capacity(500);
    for _ in 0..500 {
        file.write_all(&page).context("writing the fsync probe")?;
        let t = Instant::now();
        file.sync_all().context("fsync of the probe file")?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    us.sort_by(f64::total_cmp);
    Ok([us[us.len() / 2], us[us.len() * 99 / 100]])
}

/// One line of the table.
#[derive(Debug)]
struct Row {
    path: String,
    connections: usize,
    rps: f64,
    vs_nginx: Option<f64>,
    /// Added p50 / p99 / p99.9 at 1k req/s over the direct upstream, µs.
    added_us: Option<[f64; 3]>,
    cpu_us_per_req: f64,
    rss_mib: Option<f64>,
    startup_ms: Option<f64>,
    /// Transport errors plus answers other than 200, over every round.
    not_ok: u64,
}

impl Row {
    fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "connections": self.connections,
            "rps": self.rps,
            "vs_nginx": self.vs_nginx,
            "added_latency_us": self.added_us.map(|[p50, p99, p999]| json!({"p50": p50, "p99": p99, "p999": p999})),
            "cpu_us_per_request": self.cpu_us_per_req,
            "rss_mib": self.rss_mib,
            "startup_ms": self.startup_ms,
            "not_ok": self.not_ok,
        })
    }
}

/// The table as Markdown (it is pasted into `BENCHMARKS.md` as is).
fn render(rows: &[Row], direct_open: Option<[f64; 3]>) -> String {
    let dash = || "—".to_owned();
    let mut t = String::from(
        "| path | conns | req/s | vs nginx | added p50 / p99 / p99.9 at 1k req/s (µs) | CPU µs/req | RSS MiB | start-up ms | not 200 |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {:.1} | {} | {} | {} |\n",
            r.path,
            r.connections,
            r.rps,
            r.vs_nginx.map_or_else(dash, |v| format!("{v:.2}×")),
            r.added_us
                .map_or_else(dash, |[a, b, c]| format!("{a:.0} / {b:.0} / {c:.0}")),
            r.cpu_us_per_req,
            r.rss_mib.map_or_else(dash, |v| format!("{v:.1}")),
            r.startup_ms.map_or_else(dash, |v| format!("{v:.0}")),
            r.not_ok,
        ));
    }
    if let Some([p50, p99, p999]) = direct_open {
        t.push_str(&format!(
            "\nDirect upstream at 1k req/s (the baseline of \"added\"): p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs.\n"
        ));
    }
    t
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `nproc`, the CPU model and the kernel, for the report.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
    });
    let kernel = cmd::output(Command::new("uname").arg("-r")).ok();
    let nproc = std::thread::available_parallelism().map(|n| n.get()).ok();
    let load = std::fs::read_to_string("/proc/loadavg").ok();
    json!({
        "nproc": nproc,
        "cpu": cpu,
        "kernel": kernel.map(|k| k.trim().to_owned()),
        "loadavg_at_end": load.map(|l| l.trim().to_owned()),
    })
}

fn nginx_conf(dir: &Path, port: u16, upstream_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"# Written by `cargo xtask bench e2e`: a bare reverse proxy, the baseline.
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp;
    proxy_temp_path {d}/nginx-tmp;
    keepalive_requests 1000000;
    upstream fast {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

/// Builds the release binaries the load benchmarks run: the gateway, authzctl and loadgen.
pub(crate) fn build_release() -> Result<()> {
    println!("==> building release binaries");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "authz-gateway",
        "-p",
        "authz-admin",
        "-p",
        "loadgen",
    ]))
}

/// A development signing key in `<dir>/keys` and a `ticket-reader` token for `sub`, minted by
/// `authzctl` for the `tickets` route of `public_url`, living `ttl`.
pub(crate) fn reader_token(
    authzctl: &Path,
    dir: &Path,
    sub: &str,
    public_url: &str,
    ttl: &str,
) -> Result<String> {
    cmd::run(
        Command::new(authzctl)
            .args(["keys", "generate", "--out-dir"])
            .arg(dir.join("keys")),
    )?;
    let token = cmd::output(
        Command::new(authzctl)
            .args(["token", "mint", "--sub", sub, "--role", "ticket-reader"])
            .args(["--scope", "tickets:read", "--ttl", ttl])
            .args(["--audience", &format!("{public_url}/mcp/tickets")])
            .args(["--client-id", &format!("{sub}-agent"), "--key"])
            .arg(dir.join("keys").join("signing-key.jwk")),
    )?;
    Ok(token.trim().to_owned())
}

/// Starts the fast upstream (`loadgen upstream`) on a free port, logging to `log`.
pub(crate) fn start_upstream(loadgen: &Path, log: std::fs::File) -> Result<(u16, Guard)> {
    let port = free_port()?;
    let mut upstream = Command::new(loadgen)
        .args(["--threads", "1", "upstream", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting loadgen upstream")?;
    wait_for_port(port, "loadgen upstream", &mut upstream)?;
    Ok((port, Guard(upstream)))
}

pub(crate) fn gateway_config(
    root: &Path,
    dir: &Path,
    port: u16,
    upstream_port: u16,
    public_url: &str,
    audit_url: &str,
    mode: &str,
) -> String {
    format!(
        r#"# Written by `cargo xtask bench e2e`.
[server]
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
# One token drives every connection; the default limit (64) would refuse the 64-connection runs' stragglers.
max_in_flight_per_principal = 1024

[auth]
max_lifetime_secs = 7200

[[auth.issuers]]
issuer = "authzctl"
jwks_file = "{jwks}"

[policy]
model = "{model}"
files = ["{policy}"]

[audit]
database_url = "{audit_url}"
mode = "{mode}"

[scope_hierarchy]
"tickets:write" = ["tickets:read"]

[[upstreams]]
name = "tickets"
url = "http://127.0.0.1:{upstream_port}/mcp"
scopes = [
  {{ method = "tools/call", target = "delete_*", require = ["tickets:write"] }},
  {{ method = "*", require = ["tickets:read"] }},
]
"#,
        jwks = dir.join("keys").join("jwks.json").display(),
        model = root.join("policies").join("model.conf").display(),
        policy = dir.join("policy.csv").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"connections":16,"connects":16,"duration_s":2.0,"errors":1,"latency_us":{"max":900.5,"mean":120.0,"min":40.0,"p50":100.5,"p90":200.0,"p99":400.25,"p999":800.0},"mode":"closed","rate":null,"requests":20000,"rps":10000.0,"status":{"200":19990,"503":9},"url":"http://x/mcp"}"#;

    #[test]
    fn loadgen_output_is_parsed_from_its_last_line() {
        let got = parse_load(&format!("noise\n{LINE}\n\n")).expect("parse");
        assert_eq!(
            got,
            LoadResult {
                requests: 20000,
                rps: 10000.0,
                errors: 1,
                non_200: 9,
                p50_us: 100.5,
                p99_us: 400.25,
                p999_us: 800.0,
            }
        );
    }

    #[test]
    fn loadgen_output_missing_a_figure_is_an_error() {
        assert!(parse_load("").is_err());
        assert!(parse_load("not json").is_err());
        let no_p99 = LINE.replace(r#""p99":400.25,"#, "");
        assert!(parse_load(&no_p99).is_err());
        let no_status = LINE.replace(r#""status":{"200":19990,"503":9},"#, "");
        assert!(parse_load(&no_status).is_err());
    }

    #[test]
    fn cpu_ticks_are_fields_14_and_15_even_with_odd_process_names() {
        let stat = "4242 (nginx: worker (x) ) S 1 4242 4242 0 -1 4194368 100 0 0 0 \
                    37 5 0 0 20 0 1 0 123 456 789";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn the_median_of_even_and_odd_runs() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn the_table_shows_missing_figures_as_dashes() {
        let rows = [Row {
            path: "direct upstream".into(),
            connections: 16,
            rps: 1234.4,
            vs_nginx: None,
            added_us: None,
            cpu_us_per_req: 10.04,
            rss_mib: Some(5.0),
            startup_ms: None,
            not_ok: 0,
        }];
        let t = render(&rows, Some([50.0, 90.0, 120.0]));
        assert!(
            t.contains("| direct upstream | 16 | 1234 | — | — | 10.0 | 5.0 | — | 0 |"),
            "{t}"
        );
        assert!(t.contains("p50 50 µs"), "{t}");
    }
}
