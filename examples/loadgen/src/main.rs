//! `loadgen`: the load generator and the fast upstream of `cargo xtask bench e2e`.
//!
//! - `loadgen upstream --listen ADDR` — a trivial JSON-RPC upstream (see [`upstream`]).
//! - `loadgen closed --url U --connections N --duration S [--header K:V]... --body FILE|STRING`
//!   — closed loop: N keep-alive connections sending back to back.
//! - `loadgen open --rate R ...` — open loop at a fixed rate, latency from the intended send time
//!   (see [`client`]).
//! - `loadgen probe --url U [--header K:V]... --body …` — one request; prints its status and body.
//!
//! `closed` and `open` print one JSON line on stdout (requests/s, status counts, errors,
//! latency percentiles in microseconds from an HDR-style histogram, see [`histogram`]), which
//! xtask parses.

mod client;
mod histogram;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::client::{Tally, Target, Timing};

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "HTTP/1.1 load generator and fast upstream")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Runtime worker threads.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the fast upstream.
    Upstream {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Closed loop: N connections, back-to-back requests.
    Closed {
        #[command(flatten)]
        load: Load,
    },
    /// Open loop at a fixed rate.
    Open {
        #[command(flatten)]
        load: Load,
        /// Requests per second over all connections.
        #[arg(long)]
        rate: f64,
    },
    /// One request; prints `STATUS BODY`.
    Probe {
        #[command(flatten)]
        request: RequestArgs,
    },
}

#[derive(Debug, Args)]
struct RequestArgs {
    /// `http://host:port/path`.
    #[arg(long)]
    url: String,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The request body: a file's contents when the path exists, else the text itself.
    #[arg(long, default_value = "{}")]
    body: String,
}

#[derive(Debug, Args)]
struct Load {
    #[command(flatten)]
    request: RequestArgs,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measured part (not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
}

impl RequestArgs {
    fn target(&self) -> Result<Target> {
        let body = match std::fs::read(&self.body) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => Bytes::from(self.body.clone()),
        };
        Target::new(&self.url, &self.headers, body)
    }
}

impl Load {
    fn timing(&self) -> Result<Timing> {
        Ok(Timing {
            warmup: Duration::try_from_secs_f64(self.warmup).context("--warmup")?,
            duration: Duration::try_from_secs_f64(self.duration).context("--duration")?,
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Upstream { listen } => upstream::serve(listen).await,
            Command::Closed { load } => {
                let timing = load.timing()?;
                let tally =
                    client::closed(load.request.target()?, load.connections, timing).await?;
                println!("{}", report("closed", &load, None, timing, &tally));
                Ok(())
            }
            Command::Open { load, rate } => {
                let timing = load.timing()?;
                let tally =
                    client::open(load.request.target()?, load.connections, rate, timing).await?;
                println!("{}", report("open", &load, Some(rate), timing, &tally));
                Ok(())
            }
            Command::Probe { request } => {
                let (status, body) = client::probe(request.target()?).await?;
                println!("{status} {}", String::from_utf8_lossy(&body));
                Ok(())
            }
        }
    })
}

/// The one JSON line a load run prints.
fn report(mode: &str, load: &Load, rate: Option<f64>, timing: Timing, tally: &Tally) -> Value {
    let h = &tally.latency;
    let us = |ns: u64| ns as f64 / 1_000.0;
    let seconds = timing.duration.as_secs_f64();
    let requests = h.len();
    json!({
        "mode": mode,
        "url": load.request.url,
        "connections": load.connections,
        "rate": rate,
        "duration_s": seconds,
        "requests": requests,
        "rps": if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
        "errors": tally.errors,
        "connects": tally.connects,
        "status": tally.status.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "latency_us": {
            "min": us(h.min()),
            "mean": h.mean() / 1_000.0,
            "p50": us(h.percentile(50.0)),
            "p90": us(h.percentile(90.0)),
            "p99": us(h.percentile(99.0)),
            "p999": us(h.percentile(99.9)),
            "max": us(h.max()),
        },
    })
}
