//! `cargo xtask bench --soak [--secs N]`: a bounded soak of the release gateway under mixed
//! traffic, reporting whether resident memory and open descriptors stay flat.
//!
//! One gateway (SQLite audit, durable: the defaults) in front of the fast upstream, for N
//! seconds (default 300), all at once: allowed `tools/call`s (JSON answers), the same as SSE
//! streams, calls the policy denies (403, one record each), tokenless requests (401, then
//! aggregated and rate limited to 429), and slow clients that trickle request heads and are cut
//! off at the head deadline, reconnecting each time. Every 10 s the gateway's resident memory,
//! open descriptors and audit file size are sampled. The verdict compares the first sample after
//! the warm-up with the last: memory within 20% + 16 MiB, descriptors within 64.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::bench_e2e::{
    Guard, gateway_config, http_get_status, parse_load, reader_token, rss_mib, start_upstream,
};
use crate::cmd;
use crate::postgres::free_port;

/// Seconds of load when `--secs` is not given.
const DEFAULT_SECS: u64 = 300;
/// Slow clients held open at once.
const SLOW_CLIENTS: usize = 32;
/// Seconds between samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One sample of the gateway.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_mib: f64,
    fds: usize,
    audit_mib: f64,
}

pub(crate) fn soak(args: &[String]) -> Result<()> {
    let secs = match args {
        [] => DEFAULT_SECS,
        [flag, n] if flag == "--secs" => n.parse().context("--secs needs a number of seconds")?,
        other => bail!("`bench --soak` takes only `--secs N`, got {other:?}"),
    };
    if secs < 30 {
        bail!("a soak needs at least 30 s (the first sample is taken after 10 s)");
    }
    let root = cmd::workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    crate::bench_e2e::build_release()?;
    let bin = |name: &str| target.join("release").join(name);
    let dir = target.join("bench").join("soak-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("creating the run directory")?;
    let log = |name: &str| -> Result<std::fs::File> {
        std::fs::File::create(dir.join(name)).with_context(|| format!("creating {name}"))
    };

    let public_url = "http://gateway.soak";
    let token = reader_token(&bin("authzctl"), &dir, "soak", public_url, "2h")?;
    std::fs::copy(root.join("policies/policy.csv"), dir.join("policy.csv"))?;
    let (up_port, _upstream) = start_upstream(&bin("loadgen"), log("upstream.log")?)?;

    let port = free_port()?;
    let audit_file = dir.join("audit.db");
    let config = dir.join("gateway.toml");
    let audit_url = format!("sqlite://{}?mode=rwc", audit_file.display());
    std::fs::write(
        &config,
        gateway_config(
            &root, &dir, port, up_port, public_url, &audit_url, "durable",
        )
        .replace("max_lifetime_secs = 7200", "max_lifetime_secs = 10800"),
    )?;
    let mut gateway = Command::new(bin("authz-gateway"))
        .arg("--config")
        .arg(&config)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(log("gateway.log")?)
        .spawn()
        .context("starting authz-gateway")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get_status(port, "/readyz") != Some(200) {
        if let Some(status) = gateway.try_wait()? {
            bail!("the gateway exited early ({status}); see {}", dir.display());
        }
        if Instant::now() > deadline {
            bail!("the gateway was not ready within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = gateway.id();
    let _gateway = Guard(gateway);

    let url = format!("http://127.0.0.1:{port}/mcp/tickets");
    let call = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"id": 1}, "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "soak", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}}})
        .to_string()
    };
    // (name, tool, with a token, connections)
    let mixes = [
        ("allowed", "get_ticket", true, 4),
        ("streamed", "get_ticket_stream", true, 2),
        ("denied", "delete_ticket", true, 2),
        ("tokenless", "get_ticket", false, 2),
    ];
    println!("==> {secs} s of mixed load, {SLOW_CLIENTS} slow clients, a sample every 10 s");
    let mut loads = Vec::new();
    for (name, tool, with_token, connections) in mixes {
        let body = dir.join(format!("{name}.json"));
        std::fs::write(&body, call(tool))?;
        let mut c = Command::new(bin("loadgen"));
        c.args(["--threads", "1", "closed", "--url", &url, "--body"])
            .arg(&body)
            .args(["--connections", &connections.to_string()])
            .args(["--duration", &secs.to_string(), "--warmup", "0"])
            .args(["--header", "Accept: application/json, text/event-stream"])
            .args(["--header", "MCP-Protocol-Version: 2026-07-28"])
            .args(["--header", "Mcp-Method: tools/call"])
            .args(["--header", &format!("Mcp-Name: {tool}")]);
        if with_token {
            c.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        let child = c
            .stdout(Stdio::piped())
            .stderr(log(&format!("load-{name}.log"))?)
            .spawn()
            .with_context(|| format!("starting the {name} load"))?;
        loads.push((name, child));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let slow_reconnects = Arc::new(AtomicU64::new(0));
    let slow = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let reconnects = Arc::clone(&slow_reconnects);
        move || slow_clients(port, &stop, &reconnects)
    });

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(
            SAMPLE_EVERY.min(Duration::from_secs(secs).saturating_sub(started.elapsed())),
        );
        let sample = Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_mib: rss_mib(&[pid])?,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
            audit_mib: ["", "-wal"]
                .iter()
                .filter_map(|suffix| {
                    std::fs::metadata(format!("{}{suffix}", audit_file.display())).ok()
                })
                .map(|m| m.len() as f64 / (1024.0 * 1024.0))
                .sum(),
        };
        println!(
            "  {:>6.0} s   rss {:>7.1} MiB   fds {:>5}   audit {:>8.1} MiB",
            sample.at_s, sample.rss_mib, sample.fds, sample.audit_mib
        );
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = slow.join();
    let mut total = 0u64;
    for (name, child) in loads {
        let out = child
            .wait_with_output()
            .with_context(|| format!("the {name} load"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let load = parse_load(&text).with_context(|| format!("the {name} load's report"))?;
        total += load.requests;
        println!(
            "  {name:<10} {:>9} requests  {:>8.0} req/s  {:>7} not 200  {:>5} transport errors  p99 {:>8.0} µs",
            load.requests, load.rps, load.non_200, load.errors, load.p99_us
        );
    }
    println!(
        "  slow clients: {SLOW_CLIENTS} held open, cut off and reconnected {} times",
        slow_reconnects.load(Ordering::Relaxed)
    );
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("no samples were taken");
    };
    let rss_flat = last.rss_mib <= first.rss_mib * 1.2 + 16.0;
    let fds_flat = last.fds <= first.fds + 64;
    println!(
        "==> {total} requests; resident memory {:.1} -> {:.1} MiB ({}), open descriptors {} -> {} ({}); \
         audit file {:.1} -> {:.1} MiB",
        first.rss_mib,
        last.rss_mib,
        if rss_flat { "flat" } else { "GREW" },
        first.fds,
        last.fds,
        if fds_flat { "flat" } else { "GREW" },
        first.audit_mib,
        last.audit_mib,
    );
    if !(rss_flat && fds_flat) {
        bail!("the soak did not stay flat; see {}", dir.display());
    }
    Ok(())
}

/// Keeps [`SLOW_CLIENTS`] connections trickling a request head (one header line a second) until
/// `stop`; each one the gateway cuts off is counted and replaced.
fn slow_clients(port: u16, stop: &AtomicBool, reconnects: &AtomicU64) {
    let connect = || -> Option<TcpStream> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"POST /mcp/tickets HTTP/1.1\r\nHost: soak\r\n")
            .ok()?;
        Some(s)
    };
    let mut held: Vec<Option<TcpStream>> = (0..SLOW_CLIENTS).map(|_| connect()).collect();
    let mut line = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        line += 1;
        for slot in &mut held {
            let alive = slot.as_mut().is_some_and(|s| {
                s.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes())
                    .is_ok()
            });
            if !alive {
                reconnects.fetch_add(1, Ordering::Relaxed);
                *slot = connect();
            }
        }
    }
}
