//! The MCP authorization gateway: authenticates, authorizes, audits and forwards every MCP
//! message between agents and upstream MCP servers.
//!
//! The binary is a thin `main.rs` over [`run`]; tests build the same router with [`App::new`]
//! and [`router`] and drive it over loopback or with `tower::ServiceExt::oneshot`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use authz_gateway::config::{Config, Overrides, RawConfig};
//! let raw = RawConfig::from_file(std::path::Path::new("gateway.toml"))?;
//! let config = Config::from_raw(raw, &Overrides::default(), &|k| std::env::var(k).ok())?;
//! let app = authz_gateway::App::new(config).await?;
//! let listener = tokio::net::TcpListener::bind(app.config.listen).await?;
//! authz_gateway::serve(app, listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod approval_page;
mod approvals;
mod buckets;
mod cli;
pub mod config;
mod connections;
pub mod error;
mod exchange;
mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod input_requests;
mod limits;
mod metrics;
mod param_headers;
mod pins;
mod proxy;
mod quotas;
mod recording;
mod refusals;
mod reload;
mod request_state;
mod scopes;
mod sessions;
mod shadow;
mod shipping;
mod stdio;
mod stream;
pub mod telemetry;
mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;

pub use approval_page::{admin_router, serve_admin};
pub use cli::run;
use config::{Config, PolicySource, Upstream};
pub use connections::{ConnectionLimits, Http2Limits};
use metrics::Metrics;
pub use refusals::RefusalLimits;
use scopes::ScopePolicy;
use sessions::OwnerBindings;

/// Everything a request needs, built once at start-up.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub(crate) verifier: authz_token::Verifier,
    /// Keeps the revocation list current for the life of the gateway.
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    revocation_follower: authz_token::RevocationFollower,
    /// Signs exchanged tokens (`POST /token`), when token exchange is configured.
    pub(crate) exchange_signer: Option<authz_token::Signer>,
    pub(crate) rbac: authz_rbac::Rbac,
    /// Keeps the policy watcher running for the life of the gateway.
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    policy_watch: authz_rbac::WatchHandle,
    pub(crate) audit: authz_audit::AuditStore,
    /// The group-commit writer every record goes through (one hash chain per gateway).
    pub(crate) audit_writer: authz_audit::AuditWriter,
    /// Outcome records still being queued by a task (see [`recording::PendingWrites`]).
    pub(crate) pending_outcomes: Arc<recording::PendingWrites>,
    pub(crate) scopes: ScopePolicy,
    pub(crate) sessions: Arc<OwnerBindings>,
    /// Task ids bound to the principal whose request created them.
    pub(crate) tasks: Arc<OwnerBindings>,
    /// Requests (and open streams) in flight per principal.
    pub(crate) in_flight: Arc<limits::InFlight>,
    /// The request body's size and read-time limits in force.
    pub(crate) body_limits: limits::BodyLimits,
    pub(crate) upstreams: HashMap<String, Arc<Upstream>>,
    /// Virtual servers (see [`proxy::virtual_route`]), by route name.
    pub(crate) virtuals: HashMap<String, Arc<proxy::virtual_route::VirtualRoute>>,
    pub(crate) metrics: Metrics,
    /// The accept loop's counters (open connections, refusals, head timeouts).
    pub(crate) connections: Arc<connections::ConnectionStats>,
    /// Unauthenticated refusals: the per-client rate limit and aggregation windows.
    pub(crate) refusals: Arc<refusals::UnauthenticatedRefusals>,
    /// Seals the `requestState` of multi round-trip requests to their caller.
    pub(crate) sealer: Arc<request_state::Sealer>,
    /// The `x-mcp-header` parameters of every tool seen listed, to check `Mcp-Param-*` headers.
    pub(crate) tool_schemas: Arc<param_headers::ToolSchemas>,
    /// Pinned tool, prompt and resource template definitions (see [`pins`]).
    pub(crate) pins: Arc<pins::Pins>,
    /// Calls held for an approver (see [`approvals`]).
    pub(crate) approvals: Arc<approvals::Approvals>,
    /// Signs identity assertions for upstreams (see [`identity`]), when configured.
    pub(crate) identity: Option<identity::IdentityIssuer>,
    /// Runs the stdio upstreams (see [`stdio`]), when there are any.
    pub(crate) stdio: Option<Arc<stdio::Bridge>>,
    /// The candidate policy evaluated beside the live one (see [`shadow`]).
    pub(crate) shadow: Arc<shadow::Shadow>,
    /// The gateway's own address as actually bound by [`serve`] (the configured one until then).
    own: std::sync::OnceLock<config::OwnAddress>,
    /// Writes each window's aggregate refusal records; stopped when the gateway is dropped.
    refusal_flusher: AbortOnDrop,
    /// Rate limits and quotas, and the task that reloads their file.
    pub(crate) quotas: Arc<quotas::Quotas>,
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    quota_watch: AbortOnDrop,
    /// Exchanges quota spending with the other replicas, when they share a Postgres store.
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    quota_sharing: Option<AbortOnDrop>,
    /// Prunes expired session and task bindings from the shared store, when there is one.
    #[expect(dead_code, reason = "held for its lifetime, never read")]
    binding_pruning: Vec<AbortOnDrop>,
    /// One HTTP client (timeouts, CAs) and credential per upstream, by route name.
    clients: HashMap<String, Arc<upstream::UpstreamClient>>,
    /// The audit shippers, one per `[[audit.sinks]]` entry; stopped when the gateway is dropped.
    pub(crate) shippers: Vec<shipping::RunningSink>,
}

impl App {
    /// Loads keys, policies and the audit store. Any failure stops start-up: the gateway never
    /// serves without all three.
    pub async fn new(mut config: Config) -> anyhow::Result<Arc<App>> {
        let verifier = authz_token::Verifier::load(&config.verifier)
            .await
            .context("loading token verification keys")?;
        // Revocations are shared by every replica through the SQL store and followed here
        // (notifications on Postgres, polling always), so a revoke is seen within a second.
        let revocation_store =
            authz_token::RevocationStore::connect(&config.revocation_database_url)
                .await
                .context("connecting to the revocation store")?;
        let (revocations, revocation_follower) = authz_token::RevocationList::follow(
            revocation_store,
            authz_token::FollowOptions {
                poll_interval: config.revocation_poll_interval,
                listen: true,
            },
        )
        .await
        .context("loading token revocations")?;
        let verifier = verifier.with_revocations(revocations);
        let exchange_signer = config
            .token_exchange
            .as_ref()
            .map(|t| authz_token::Signer::from_private_jwk_file(&t.signing_key_file))
            .transpose()
            .context("loading the token exchange signing key")?;
        // A rule naming an upstream this gateway does not route to can never match: refuse it.
        let lint = authz_rbac::LintConfig {
            upstreams: Some(config.upstreams.iter().map(|u| u.name.clone()).collect()),
            ..authz_rbac::LintConfig::default()
        };
        let rbac = match &config.policy {
            PolicySource::Files { model, files } => {
                authz_rbac::Rbac::from_files_with_lint(model, files, lint)
                    .await
                    .context("loading policy files")?
            }
            PolicySource::Database { model, url } => {
                let store = authz_rbac::PolicyStore::connect(url)
                    .await
                    .context("connecting to the policy store")?;
                authz_rbac::Rbac::from_store_with_lint(model, store, lint)
                    .await
                    .context("loading policies from the store")?
            }
        };
        for w in rbac.lint_report().warnings() {
            tracing::warn!(finding = %w, "policy lint warning");
        }
        // Live policy changes: Postgres notifications, a periodic revision check, file watching.
        // A policy that fails to load or lint never replaces the working one.
        let policy_watch = rbac
            .spawn_watcher(authz_rbac::WatchConfig {
                poll_interval: config.policy_poll_interval,
                pg_listen: true,
                watch_files: true,
            })
            .context("starting the policy watcher")?;
        let audit = authz_audit::AuditStore::connect(&config.audit_database_url)
            .await
            .context("opening the audit store")?;
        let signing_key = config
            .audit_signing_key_file
            .as_deref()
            .map(authz_audit::SigningKey::from_seed_file)
            .transpose()
            .context("loading the audit checkpoint signing key")?;
        let audit_writer = authz_audit::AuditWriter::spawn(
            audit.clone(),
            config.audit_writer.clone(),
            signing_key,
        )
        .await
        .context("starting the audit writer")?;
        tracing::info!(chains = ?audit_writer.chain_ids(), "audit writer started");
        // Pins live in the audit database, shared by every replica that shares it.
        let pins = pins::Pins::start(
            authz_rbac::PinStore::connect(&config.audit_database_url)
                .await
                .context("opening the pin store")?,
            audit_writer.clone(),
            audit_writer.chain_id().to_owned(),
        )
        .await
        .context("loading the pinned definitions")?;
        let identity = config
            .identity
            .as_ref()
            .map(identity::IdentityIssuer::load)
            .transpose()
            .context("loading the identity key")?;
        // So does the shadow candidate.
        let model = match &config.policy {
            PolicySource::Files { model, .. } | PolicySource::Database { model, .. } => {
                model.clone()
            }
        };
        let shadow = shadow::Shadow::start(
            authz_rbac::ShadowStore::connect(&config.audit_database_url)
                .await
                .context("opening the shadow store")?,
            model,
        );
        // So do approvals of held calls.
        let approvals = approvals::Approvals::start(
            authz_rbac::ApprovalStore::connect(&config.audit_database_url)
                .await
                .context("opening the approval store")?,
            config.approvals.clone(),
            config.admin.as_ref(),
            audit_writer.clone(),
            audit_writer.chain_id().to_owned(),
        );
        let shippers = shipping::start(
            &audit,
            &config.audit_sinks,
            audit_writer.chain_id(),
            &config.telemetry.service_name,
        )?;
        // stdio routes are served by the loopback bridge; their upstream is its endpoint.
        let stdio = stdio_bridge(&mut config, &audit_writer).await?;
        let clients = config
            .upstreams
            .iter()
            .map(|u| {
                Ok((
                    u.name.clone(),
                    Arc::new(
                        upstream::UpstreamClient::new(u)
                            .with_context(|| format!("upstream `{}`", u.name))?,
                    ),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), Arc::new(u.clone())))
            .collect();
        let metrics = Metrics::new(
            config
                .upstreams
                .iter()
                .map(|u| u.name.as_str())
                .chain(config.virtual_servers.iter().map(|v| v.name.as_str())),
        );
        let virtuals = config
            .virtual_servers
            .iter()
            .map(|v| {
                let route = proxy::virtual_route::VirtualRoute::new(v, &upstreams, &metrics)
                    .with_context(|| format!("virtual server `{}`", v.name))?;
                Ok((v.name.clone(), Arc::new(route)))
            })
            .collect::<anyhow::Result<_>>()?;
        // Replicas share quota spending and session/task bindings through the first Postgres
        // among the policy and audit stores; alone (or on SQLite) each gateway keeps its own.
        let shared_url = match &config.policy {
            PolicySource::Database { url, .. } if url.starts_with("postgres") => Some(url.clone()),
            _ => None,
        }
        .or_else(|| {
            config
                .audit_database_url
                .starts_with("postgres")
                .then(|| config.audit_database_url.clone())
        });
        let ledger_url = shared_url.clone().filter(|_| config.quotas_file.is_some());
        let ledger = match &ledger_url {
            Some(url) => Some(
                authz_rbac::QuotaLedger::connect(url)
                    .await
                    .context("connecting to the quota ledger")?,
            ),
            None => None,
        };
        let quotas = Arc::new(
            quotas::Quotas::load(config.quotas_file.as_deref(), ledger.is_some())
                .context("loading the quota file")?,
        );
        let quota_sharing = ledger.map(|ledger| {
            AbortOnDrop(tokio::spawn(quotas::share(
                Arc::clone(&quotas),
                ledger,
                config.quota_sync_interval,
            )))
        });
        let mut sessions = OwnerBindings::new(100_000);
        let mut tasks = OwnerBindings::new(100_000);
        if let Some(url) = &shared_url {
            let store = authz_rbac::BindingStore::connect(url)
                .await
                .context("connecting to the shared session and task bindings")?;
            sessions = sessions.shared(store.clone(), authz_rbac::BindingKind::Session);
            tasks = tasks.shared(store, authz_rbac::BindingKind::Task);
        }
        let (sessions, tasks) = (Arc::new(sessions), Arc::new(tasks));
        let binding_pruning = if shared_url.is_some() {
            // One pruner is enough for both kinds (it deletes every expired row).
            vec![AbortOnDrop(tokio::spawn(
                Arc::clone(&sessions).prune_forever(std::time::Duration::from_secs(600)),
            ))]
        } else {
            Vec::new()
        };
        let quota_watch = AbortOnDrop(tokio::spawn(quotas::watch(
            Arc::clone(&quotas),
            config.policy_poll_interval,
        )));
        let refusals = Arc::new(refusals::UnauthenticatedRefusals::new(config.refusals));
        let refusal_flusher = AbortOnDrop(tokio::spawn(refusals::run(
            Arc::clone(&refusals),
            audit_writer.clone(),
        )));
        let key = match &config.request_state_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading server.request_state_key_file {}", path.display())
                })?;
                let mut key = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut key).with_context(|| {
                    format!(
                        "server.request_state_key_file {} must hold 64 hex digits",
                        path.display()
                    )
                })?;
                key
            }
            None => request_state::Sealer::random_key(),
        };
        let sealer = Arc::new(request_state::Sealer::new(key, config.request_state_ttl));
        Ok(Arc::new(App {
            sealer,
            tool_schemas: Arc::default(),
            pins,
            approvals,
            identity,
            stdio,
            shadow,
            own: std::sync::OnceLock::new(),
            quotas,
            quota_watch,
            quota_sharing,
            refusals,
            refusal_flusher,
            scopes: ScopePolicy::new(&config.scope_hierarchy),
            sessions,
            tasks,
            binding_pruning,
            in_flight: limits::InFlight::new(config.max_in_flight_per_principal),
            body_limits: limits::BodyLimits::new(config.max_body_bytes, config.body_read_timeout),
            upstreams,
            virtuals,
            metrics,
            connections: Arc::default(),
            verifier,
            revocation_follower,
            exchange_signer,
            rbac,
            policy_watch,
            audit,
            audit_writer,
            pending_outcomes: Arc::default(),
            clients,
            shippers,
            config,
        }))
    }

    /// Notes a refusal of a request without an identity from `client` (see [`refusals`]):
    /// `true` when it repeats one already recorded in the current window, so it is counted
    /// into that window's aggregate record instead of being written on its own.
    pub(crate) fn counted_as_repeat(
        &self,
        client: Option<std::net::IpAddr>,
        rec: &authz_types::AuditRecord,
    ) -> bool {
        let Some(client) = client else {
            return false;
        };
        let refused = refusals::Refused {
            upstream: &rec.upstream,
            method: &rec.method,
            reason: rec.reason,
            status: rec.http_status.unwrap_or_default(),
        };
        let verdict = self.refusals.note(
            refusals::ClientKey::of(client),
            refused,
            tokio::time::Instant::now(),
            rec.time_ms,
        );
        let counted = verdict == refusals::Verdict::Counted;
        if counted {
            self.metrics.refusals_aggregated.inc();
        }
        counted
    }

    /// Where the gateway is, for the `Origin` and `Host` checks: the address [`serve`] bound,
    /// else the configured one.
    pub(crate) fn own(&self) -> &config::OwnAddress {
        self.own.get().unwrap_or(&self.config.own)
    }

    fn client(&self, upstream: &str) -> Option<&Arc<upstream::UpstreamClient>> {
        self.clients.get(upstream)
    }

    /// The RFC 9728 metadata URL of an upstream route (path-inserted form).
    pub(crate) fn metadata_url(&self, up: &Upstream) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp/{}",
            self.config.public_url, up.name
        )
    }
}

/// A background task that stops when its owner is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The gateway's HTTP surface.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/mcp/{upstream}", any(proxy::handle))
        .route(
            "/.well-known/oauth-protected-resource/mcp/{upstream}",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(root_resource_metadata),
        )
        .route("/token", axum::routing::post(exchange::token))
        .route("/.well-known/jwks.json", get(identity_jwks))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::handler))
        .with_state(app)
}

/// Serves until `shutdown` resolves, through the accept loop of [`connections`] (request-head
/// deadline, connection caps, `TCP_NODELAY`), then lets open connections finish.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Ok(bound) = listener.local_addr() {
        let _ = app
            .own
            .set(config::OwnAddress::new(bound, &app.config.public_url));
    }
    connections::serve(
        listener,
        router(app.clone()),
        app.config.connections,
        Arc::clone(&app.connections),
        shutdown,
    )
    .await;
    // Outcome records of the last streams still being queued (a full queue), then the aggregate
    // records of the open window, then the audit queue: buffered records are committed, not
    // dropped.
    if tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.pending_outcomes.settled(),
    )
    .await
    .is_err()
    {
        tracing::error!("outcome records still waiting for the audit queue after 10 s");
    }
    // stdio servers end with the gateway; their exit records go in with the rest.
    if let Some(bridge) = &app.stdio {
        bridge.stop_all(std::time::Duration::from_secs(5)).await;
    }
    app.refusal_flusher.0.abort();
    refusals::flush(&app.refusals, &app.audit_writer).await;
    match app.audit_writer.clone().shutdown().await {
        Ok(stats) => tracing::info!(
            committed = stats.committed,
            lost = stats.buffered_records_lost_on_error,
            "audit writer drained"
        ),
        Err(e) => tracing::error!(error = %e, "draining the audit writer failed"),
    }
    Ok(())
}

/// Starts the stdio bridge for the configuration's stdio routes (none: `None`) and points
/// those routes at it, with its secret as the gateway's credential.
async fn stdio_bridge(
    config: &mut Config,
    audit: &authz_audit::AuditWriter,
) -> anyhow::Result<Option<Arc<stdio::Bridge>>> {
    let routes: Vec<_> = config
        .upstreams
        .iter()
        .filter_map(|u| {
            u.stdio.clone().map(|s| {
                let header = u.identity_assertion.as_ref().map(|a| a.header.clone());
                (u.name.clone(), s, header)
            })
        })
        .collect();
    if routes.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the stdio bridge on a loopback port")?;
    let addr = listener
        .local_addr()
        .context("the stdio bridge's address")?;
    let bridge = stdio::Bridge::new(routes, audit);
    tracing::info!(%addr, "stdio bridge listening (loopback, the gateway's own)");
    bridge.serve(listener, config.connections);
    for u in config.upstreams.iter_mut().filter(|u| u.stdio.is_some()) {
        u.url = reqwest::Url::parse(&format!("http://{addr}/stdio/{}", u.name))
            .context("the stdio bridge's URL")?;
        u.credential = config::Credential::Bearer(config::Secret::new(bridge.secret().to_owned()));
    }
    Ok(Some(bridge))
}

/// The public keys of the gateway's identity assertions (404 without `[identity]`).
async fn identity_jwks(State(app): State<Arc<App>>) -> Response {
    match &app.identity {
        Some(identity) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            identity.jwks().to_owned(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn metadata_for(app: &App, up: &Upstream) -> Response {
    let body = json!({
        "resource": up.resource,
        "authorization_servers": app.config.authorization_servers,
        "scopes_supported": scopes::supported_scopes(&up.scopes),
        "bearer_methods_supported": ["header"],
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(body),
    )
        .into_response()
}

async fn resource_metadata(State(app): State<Arc<App>>, Path(upstream): Path<String>) -> Response {
    match app.upstreams.get(&upstream) {
        Some(up) => metadata_for(&app, up),
        None => match app.virtuals.get(&upstream) {
            Some(v) => metadata_for(&app, &v.front),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// The root form is only unambiguous with a single upstream.
async fn root_resource_metadata(State(app): State<Arc<App>>) -> Response {
    match app.config.upstreams.as_slice() {
        [only] if app.virtuals.is_empty() => metadata_for(&app, only),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let audit_ok = app.audit.ping().await.is_ok();
    let policy = app.rbac.status();
    // A refused policy change leaves the last good policy serving: still ready, but reported.
    let keys = key_readiness(&app.verifier.key_status());
    let keys_usable = keys["state"] != "unavailable";
    // The dependencies that make this replica not ready, by name, so an operator (or a load
    // balancer's log) sees at once what to fix.
    let not_ready: Vec<&str> = [("audit_store", audit_ok), ("keys", keys_usable)]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
    let body = json!({
        "ready": not_ready.is_empty(),
        "not_ready": not_ready,
        "keys": keys,
        "revocations": revocation_readiness(&app),
        "audit_store": if audit_ok { "reachable" } else { "unreachable" },
        "policy": {
            "revision": policy.revision,
            "state": if policy.last_error.is_some() || policy.check_error.is_some() { "degraded" } else { "ok" },
            "last_error": policy.last_error,
            "check_error": policy.check_error,
            "rules": policy.rules,
            "watching": policy.watching,
        },
    });
    let status = if not_ready.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The signing keys as `/readyz` reports them. An issuer without a key, or whose remote key set
/// is past its staleness bound, refuses every token it signed: one such issuer makes the keys
/// `degraded`, all of them `unavailable` (not ready: this replica can authenticate nobody).
fn key_readiness(issuers: &[authz_token::IssuerKeyStatus]) -> serde_json::Value {
    let usable = |i: &&authz_token::IssuerKeyStatus| !i.stale && !i.kids.is_empty();
    let usable_count = issuers.iter().filter(usable).count();
    let state = if usable_count == issuers.len() {
        "ok"
    } else if usable_count == 0 {
        "unavailable"
    } else {
        "degraded"
    };
    let issuers: Vec<_> = issuers
        .iter()
        .map(|i| {
            json!({
                "issuer": i.issuer,
                "keys": i.kids.len(),
                "age_secs": i.age_secs,
                "stale": i.stale,
                "fetch_failures": i.fetch_failures,
            })
        })
        .collect();
    json!({ "state": state, "issuers": issuers })
}

/// The revocation list as `/readyz` reports it: its size, the store revision it was loaded at,
/// and how long ago it was last confirmed current. It is `stale` once three poll intervals (and
/// at least ten seconds) pass without a confirmation: the store is unreachable, and a token
/// revoked since then would still pass. That is reported, not refused, because the list in
/// memory stays correct for everything revoked before.
fn revocation_readiness(app: &App) -> serde_json::Value {
    let Some(list) = app.verifier.revocations() else {
        return json!({ "state": "off" });
    };
    let counts = list.counts();
    let checked_at_ms = list.checked_at_ms();
    let age_ms = authz_types::now_unix_ms().saturating_sub(checked_at_ms);
    let bound_ms = i64::try_from(app.config.revocation_poll_interval.as_millis())
        .unwrap_or(i64::MAX)
        .saturating_mul(3)
        .max(10_000);
    let state = if checked_at_ms > 0 && age_ms <= bound_ms {
        "ok"
    } else {
        "stale"
    };
    json!({
        "state": state,
        "revision": counts.revision,
        "tokens": counts.tokens,
        "subjects": counts.subjects,
        "checked_age_secs": (checked_at_ms > 0).then_some(age_ms / 1000),
    })
}

#[cfg(test)]
mod tests {
    use authz_token::IssuerKeyStatus;

    fn issuer(name: &str, kids: usize, stale: bool) -> IssuerKeyStatus {
        IssuerKeyStatus {
            issuer: name.to_owned(),
            jwks_url: None,
            kids: (0..kids).map(|i| format!("k{i}")).collect(),
            age_secs: 7,
            stale,
            fetches: 0,
            fetch_failures: 0,
        }
    }

    #[test]
    fn key_readiness_is_degraded_by_one_unusable_issuer_and_unavailable_by_all() {
        let ok = super::key_readiness(&[issuer("a", 1, false), issuer("b", 2, false)]);
        assert_eq!(ok["state"], "ok");
        assert_eq!(ok["issuers"][1]["keys"], 2);
        let stale = super::key_readiness(&[issuer("a", 1, false), issuer("b", 2, true)]);
        assert_eq!(stale["state"], "degraded");
        let empty = super::key_readiness(&[issuer("a", 0, false), issuer("b", 2, false)]);
        assert_eq!(empty["state"], "degraded");
        let none = super::key_readiness(&[issuer("a", 0, false), issuer("b", 1, true)]);
        assert_eq!(none["state"], "unavailable");
    }
}
