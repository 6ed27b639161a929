//! The `demo-upstream` binary: runs the demo ticket-system MCP server until Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use demo_upstream::DemoConfig;
use tracing_subscriber::EnvFilter;

/// Demo upstream MCP server (an in-memory ticket system) served at /mcp.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Name of an environment variable holding a bearer token every request must carry.
    /// The token itself is never taken from the command line, where other users could see it.
    #[arg(long, value_name = "VAR")]
    require_bearer_env: Option<String>,
    /// Answer stateless (2026-07-28) requests with application/json instead of SSE.
    #[arg(long)]
    json_response: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let require_bearer = match &args.require_bearer_env {
        Some(var) => {
            let token = std::env::var(var)
                .with_context(|| format!("reading the bearer token from ${var}"))?;
            anyhow::ensure!(!token.trim().is_empty(), "${var} is empty");
            Some(token.trim().to_owned())
        }
        None => None,
    };
    let cfg = DemoConfig {
        require_bearer,
        json_response: args.json_response,
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let upstream = demo_upstream::spawn(listener, cfg).await?;
    tracing::info!(url = %upstream.url(), "serving MCP; press Ctrl-C to stop");

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("Ctrl-C received, shutting down");
    upstream.shutdown().await;
    Ok(())
}
