//! The `conformance-upstream` binary: runs the conformance fixture MCP server until Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// MCP server with the fixtures of the official MCP conformance suite, served at /mcp.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
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

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let upstream = conformance_upstream::spawn(listener).await?;
    tracing::info!(url = %upstream.url(), "serving MCP; press Ctrl-C to stop");

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("Ctrl-C received, shutting down");
    upstream.shutdown().await;
    Ok(())
}
