//! Command line, logging set-up and the process lifecycle of the `authz-gateway` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use crate::config::{Config, Overrides, RawConfig};

/// Flags; each also reads an `AUTHZ_*` environment variable. Precedence: file < env < flag.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "authz-gateway",
    version,
    about = "MCP authorization gateway: authenticate, authorize, audit, forward."
)]
pub(crate) struct Args {
    /// The TOML configuration file.
    #[arg(long, env = "AUTHZ_CONFIG")]
    pub config: PathBuf,
    /// Address to listen on (overrides server.listen).
    #[arg(long, env = "AUTHZ_LISTEN")]
    pub listen: Option<String>,
    /// Public base URL; canonical resource URIs are <public-url>/mcp/<upstream>.
    #[arg(long, env = "AUTHZ_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Audit store URL (sqlite://… or postgres://…), overrides audit.database_url.
    #[arg(long, env = "AUTHZ_AUDIT_DATABASE_URL", hide_env_values = true)]
    pub audit_database_url: Option<String>,
    /// Policy store URL, overrides policy.database_url.
    #[arg(long, env = "AUTHZ_POLICY_DATABASE_URL", hide_env_values = true)]
    pub policy_database_url: Option<String>,
    /// Log format.
    #[arg(long, env = "AUTHZ_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Parses arguments, validates configuration and runs the gateway until Ctrl-C / SIGTERM.
/// A configuration mistake exits with status 2 before anything listens.
pub fn run() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authz-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authz-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The text the running configuration came from, to name what a SIGHUP reload changes.
    let text = std::fs::read_to_string(&args.config).unwrap_or_default();
    match runtime.block_on(serve_config(config, &args, text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authz-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> Result<Config, crate::config::ConfigError> {
    let raw = RawConfig::from_file(&args.config)?;
    let overrides = Overrides {
        listen: args.listen.clone(),
        public_url: args.public_url.clone(),
        audit_database_url: args.audit_database_url.clone(),
        policy_database_url: args.policy_database_url.clone(),
    };
    Config::from_raw(raw, &overrides, &|k| std::env::var(k).ok())
}

async fn serve_config(config: Config, args: &Args, text: String) -> anyhow::Result<()> {
    // Inside the runtime: the OTLP exporter needs it.
    let mut telemetry = crate::telemetry::init(&args.log_format, &config.telemetry)?;
    let result = serve_until_shutdown(config, args, text).await;
    // Flushing waits for the export task; do it off the async workers.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

async fn serve_until_shutdown(config: Config, args: &Args, text: String) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = crate::App::new(config).await?;
    let _reloads = crate::AbortOnDrop(tokio::spawn(reload_on_hangup(
        std::sync::Arc::clone(&app),
        args.clone(),
        text,
    )));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // The admin listener (the approval page) is bound before anything is served, so a port
    // in use fails the start-up rather than leaving approvers without a page.
    let admin = match &app.config.admin {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin.listen)
                .await
                .with_context(|| format!("binding admin.listen {}", admin.listen))?,
        ),
        None => None,
    };
    tracing::info!(%local, upstreams = app.upstreams.len(), policy_revision = app.rbac.revision(), "authz-gateway listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let admin_task = admin.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "approval page listening (admin listener)");
        }
        tokio::spawn(crate::serve_admin(
            std::sync::Arc::clone(&app),
            listener,
            until_stopped(),
        ))
    });
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let served = crate::serve(app, listener, until_stopped()).await;
    signal.abort();
    if let Some(task) = admin_task {
        task.abort();
    }
    served
}

/// Reloads on every `SIGHUP` (see [`crate::reload`]); a configuration that does not load is
/// refused with its error, and the running one stays.
async fn reload_on_hangup(app: std::sync::Arc<crate::App>, args: Args, mut text: String) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting");
        return;
    };
    while hangups.recv().await.is_some() {
        let new_text = match std::fs::read_to_string(&args.config) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: cannot read the configuration file; nothing changed");
                continue;
            }
        };
        let config = match load_config(&args) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration does not load; nothing changed");
                continue;
            }
        };
        match crate::reload::apply(&app, &text, &new_text, &config).await {
            Ok(done) => {
                tracing::info!(issuers = ?done.issuers, upstreams = ?done.upstreams, limits = ?done.limits, restart_needed = ?done.refused, "SIGHUP: configuration reloaded");
                text = new_text;
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: reload refused; nothing changed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}
