//! A small demo upstream MCP server (an in-memory ticket system) for gateway demos and tests.
//!
//! It serves MCP over Streamable HTTP at `/mcp` with rmcp, speaking both protocol generations:
//! the stateless 2026-07-28 revision (per-request `_meta`, `Mcp-Method` / `Mcp-Name` headers, no
//! session) and the session-based revisions up to 2025-11-25 (`initialize` → `Mcp-Session-Id`).
//!
//! - Tools: `list_tickets {status?}`, `get_ticket {id}`, `create_ticket {title, body}`,
//!   `delete_ticket {id}`; an unknown id is a tool error (`isError: true`), not a protocol error.
//! - Resource: `tickets://open`, a JSON list of the open tickets.
//! - Prompt: `triage_ticket {id}`.
//!
//! Every HTTP request is recorded in a [`CallLog`] before anything else happens, so tests can
//! prove what reached the upstream and which `Authorization` headers it saw. With
//! [`DemoConfig::require_bearer`] set, requests without that bearer token get `401`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = demo_upstream::spawn(listener, demo_upstream::DemoConfig::default()).await?;
//! assert!(upstream.url().ends_with("/mcp"));
//! assert_eq!(upstream.log.request_count(), 0);
//! upstream.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod call_log;
mod tickets;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, middleware, serve::ListenerExt as _};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use call_log::{CallLog, RecordedRequest};
pub use tickets::{OPEN_TICKETS_URI, Ticket, TicketStatus};

use call_log::{Recorder, record_and_authorize};
use tickets::TicketServer;

/// How long [`DemoUpstream::shutdown`] waits for open connections to finish before it aborts
/// the server task. Shutdown cancels rmcp's SSE streams first, so this bound is only a backstop
/// against a client that never closes its connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Settings of the demo upstream.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// When set, every HTTP request must carry `Authorization: Bearer <this>`; any other request
    /// is answered `401` (with `WWW-Authenticate: Bearer`) and never reaches the MCP service.
    pub require_bearer: Option<String>,
    /// Ask rmcp to answer stateless (2026-07-28) requests with `application/json` instead of an
    /// SSE stream when the handler's first message is the final response. Session-based
    /// (legacy) requests are always answered with SSE. Default: `false` (SSE everywhere).
    pub json_response: bool,
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig")
            .field(
                "require_bearer",
                &self.require_bearer.as_ref().map(|_| "[redacted]"),
            )
            .field("json_response", &self.json_response)
            .finish()
    }
}

/// Tool descriptions replaced at run time (tool name → description): every session opened and
/// every stateless request served after a change lists the new description, as an upstream
/// that rewrites a reviewed tool would ("rug pull").
#[derive(Debug, Clone, Default)]
pub struct ToolEdits(Arc<std::sync::RwLock<std::collections::HashMap<String, String>>>);

impl ToolEdits {
    /// Replaces the description of tool `name`.
    pub fn set_description(&self, name: &str, description: &str) {
        self.write().insert(name.to_owned(), description.to_owned());
    }

    /// Goes back to the tools' own descriptions.
    pub fn clear(&self) {
        self.write().clear();
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<String, String>> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot(&self) -> std::collections::HashMap<String, String> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A running demo upstream. Dropping it starts a graceful shutdown in the background;
/// [`DemoUpstream::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct DemoUpstream {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// Every HTTP request received so far.
    pub log: Arc<CallLog>,
    /// Tool descriptions to serve instead of the built-in ones.
    pub edits: ToolEdits,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl DemoUpstream {
    /// The MCP endpoint, e.g. `http://127.0.0.1:9100/mcp`. A wildcard bind address is replaced by
    /// the loopback address of the same family, so the URL is always connectable.
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
            Ok(Ok(Ok(()))) => tracing::info!(addr = %self.addr, "demo upstream stopped"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "demo upstream server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "demo upstream task failed"),
            Err(_) => {
                tracing::warn!("demo upstream did not stop in time; aborting it");
                self.task.abort();
            }
        }
    }
}

/// Binds `listener` and serves MCP at path `/mcp` until the returned handle is dropped or shut
/// down.
pub async fn spawn(listener: TcpListener, cfg: DemoConfig) -> anyhow::Result<DemoUpstream> {
    let addr = listener
        .local_addr()
        .context("reading the listener's local address")?;
    let log = Arc::new(CallLog::default());

    // `legacy_session_mode` (rmcp's default, spelled out because it is load-bearing) makes the
    // same endpoint serve both generations: an `initialize` request opens a session kept by the
    // `LocalSessionManager` (protocol versions up to 2025-11-25), while a request that carries
    // 2026-07-28 per-request `_meta` is always served statelessly, without a session.
    //
    // Host validation is disabled: rmcp only accepts loopback `Host` headers by default, to stop
    // DNS rebinding against servers on a developer's machine. This demo holds only made-up
    // tickets and is reached through the gateway, which may forward any `Host`, so the check
    // would only get in the way.
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(cfg.json_response)
        .disable_allowed_hosts();
    let cancel = mcp_config.cancellation_token.clone();
    let server = TicketServer::new();
    let edits = ToolEdits::default();
    let served_edits = edits.clone();
    let service = StreamableHttpService::new(
        move || Ok(server.with_descriptions(&served_edits.snapshot())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let recorder = Recorder {
        log: Arc::clone(&log),
        require_bearer: cfg.require_bearer.map(Arc::from),
    };
    let router = Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(
            recorder,
            record_and_authorize,
        ));

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
    tracing::info!(%addr, "demo upstream listening");
    Ok(DemoUpstream {
        addr,
        log,
        edits,
        stop: Some(stop),
        task,
    })
}
