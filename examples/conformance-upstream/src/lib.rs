//! An MCP server with the fixtures the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) expects of a server, built on rmcp.
//!
//! It serves MCP over Streamable HTTP at `/mcp`, speaking both protocol generations on one
//! endpoint: the stateless 2026-07-28 revision (per-request `_meta`, `server/discover`, multi
//! round-trip `input_required` results, caching hints, `subscriptions/listen`) and the
//! session-based revisions up to 2025-11-25 (`initialize` → `Mcp-Session-Id`, server-to-client
//! sampling and elicitation, `resources/subscribe`, `logging/setLevel`).
//!
//! The names, contents and behaviours are the ones the suite's scenarios ask for:
//!
//! - Tools on both wires: `test_simple_text`, `test_image_content`, `test_audio_content`,
//!   `test_embedded_resource`, `test_multiple_content_types`, `test_tool_with_logging`,
//!   `test_tool_with_progress`, `test_error_handling` (a tool error), `json_schema_2020_12_tool`.
//! - Session wire only (they send requests to the client mid-call): `test_sampling`,
//!   `test_elicitation`, `test_elicitation_sep1034_defaults`, `test_elicitation_sep1330_enums`.
//! - 2026-07-28 only: the `test_input_required_result_*` tools and prompt, and the stateless
//!   diagnostics `test_missing_capability`, `test_streaming_elicitation`, `test_logging_tool`,
//!   `test_trigger_tool_change`, `test_trigger_prompt_change`.
//! - Resources `test://static-text`, `test://static-binary`, `test://watched-resource` and the
//!   template `test://template/{id}/data`; prompts `test_simple_prompt`,
//!   `test_prompt_with_arguments`, `test_prompt_with_embedded_resource`, `test_prompt_with_image`.
//!
//! Every
//! `requestState` the fixture hands out is sealed with an HMAC (rmcp's `RequestStateCodec`,
//! keyed per process) and bound to the tool or prompt that issued it, so a tampered or
//! transplanted state is refused with `-32602`.
//!
//! rmcp's DNS-rebinding protection stays on: only loopback `Host` names (`localhost`,
//! `127.0.0.1`, `::1`, any port) are accepted, anything else gets `403`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = conformance_upstream::spawn(listener).await?;
//! assert!(upstream.url().ends_with("/mcp"));
//! upstream.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod mrtr;
mod server;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, serve::ListenerExt as _};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use server::ConformanceServer;

/// How long [`ConformanceUpstream::shutdown`] waits for open connections to finish before it
/// aborts the server task. Shutdown cancels rmcp's SSE streams first, so this bound is only a
/// backstop against a client that never closes its connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running conformance fixture. Dropping it starts a graceful shutdown in the background;
/// [`ConformanceUpstream::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct ConformanceUpstream {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ConformanceUpstream {
    /// The MCP endpoint, e.g. `http://127.0.0.1:3000/mcp`. A wildcard bind address is replaced
    /// by the loopback address of the same family, so the URL is always connectable (and its
    /// `Host` passes the DNS-rebinding check).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/mcp", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting connections, ends open SSE streams and sessions, and waits (bounded) for
    /// the server task to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The receiver is gone only if the server task already ended, which is fine.
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => tracing::info!(addr = %self.addr, "conformance upstream stopped"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "conformance upstream server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "conformance upstream task failed"),
            Err(_) => {
                tracing::warn!("conformance upstream did not stop in time; aborting it");
                self.task.abort();
            }
        }
    }
}

/// Serves MCP at path `/mcp` on `listener` until the returned handle is dropped or shut down.
///
/// # Errors
///
/// Fails if the listener's local address cannot be read.
pub async fn spawn(listener: TcpListener) -> anyhow::Result<ConformanceUpstream> {
    let addr = listener
        .local_addr()
        .context("reading the listener's local address")?;

    // `legacy_session_mode` (rmcp's default, spelled out because it is load-bearing) makes the
    // same endpoint serve both generations: an `initialize` request opens a session kept by the
    // `LocalSessionManager` (protocol versions up to 2025-11-25), while a request that carries
    // 2026-07-28 per-request `_meta` is always served statelessly, without a session.
    //
    // The allowed hosts stay at rmcp's loopback default: the suite's dns-rebinding scenario
    // checks that a foreign `Host` is refused.
    let mcp_config = StreamableHttpServerConfig::default().with_legacy_session_mode(true);
    let cancel = mcp_config.cancellation_token.clone();
    let server = ConformanceServer::new();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let router = Router::new().nest_service("/mcp", service);

    let (stop, stopped) = oneshot::channel::<()>();
    // axum does not set TCP_NODELAY; without it keep-alive request/response pairs stall on
    // Nagle plus delayed ACK (about 40 ms per call).
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Either an explicit stop or the handle being dropped ends the server.
                let _ = stopped.await;
                // Open SSE streams and sessions would otherwise keep graceful shutdown waiting.
                cancel.cancel();
            })
            .await
    });
    tracing::info!(%addr, "conformance upstream listening");
    Ok(ConformanceUpstream {
        addr,
        stop: Some(stop),
        task,
    })
}
