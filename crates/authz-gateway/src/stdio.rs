//! stdio upstreams: local MCP servers the gateway runs as child processes and serves at
//! `/mcp/<name>` like any other route, with the same authentication, policy, audit and list
//! filtering.
//!
//! The pipeline forwards to every upstream over Streamable HTTP, so a stdio route's upstream is
//! a bridge inside the gateway: an HTTP endpoint on a loopback port (`/stdio/<route>`) that only
//! the gateway can use (a random bearer secret per process) and that speaks MCP to its children
//! over stdin and stdout, one JSON-RPC message per line.
//!
//! **Sharing.** A stdio server is single-client by nature, so each MCP session gets its own
//! process: `initialize` starts one (its answer carries the session id the bridge made up),
//! the session's requests go to it, `DELETE` (or idle reaping, or the process's exit) ends it.
//! The gateway binds every session id to the principal that initialized it, so one process
//! never serves two principals; the bridge checks it again (the owner header the gateway
//! sends). With `stdio.share = "principal"`, a principal's sessions share one process instead
//! (initialized once by the bridge; each session's request ids translated), still never another
//! principal's. A principal's stateless 2026-07-28 calls share one process of their own (a pool of
//! one per principal, started and initialized by the bridge, counted in the same limits), with
//! the protocol translated (see [`stateless`]); it is never used by another principal.
//!
//! **Limits.** Processes per route and per principal (`stdio.max_processes`,
//! `max_per_principal`: over one, `initialize` is answered 503); a process with nothing in
//! flight and no open stream for `idle_secs` is stopped; a process that does not answer
//! `initialize` within `start_timeout_secs` is killed (502). After a process dies soon after
//! starting, new ones for the route wait out a backoff (1 s, doubling to 30 s), answered 503
//! meanwhile. When a process dies, its in-flight calls are answered 502 (and get their outcome
//! record as any upstream failure does); its session is gone (404), so the client starts over.
//!
//! **What the child gets.** An environment built only from the route's `env` allow-list and
//! `env_secrets`, never the gateway's own; its stderr goes to the gateway's log with the route
//! name. Messages it sends on its own (notifications, requests to the client) go to the
//! session's `GET` stream when one is open; a request to the client with no stream to carry it
//! is answered with a JSON-RPC error so the child never waits forever. Process start and exit
//! are audited (`process/start`, `process/exit`, the session as session id). A route with
//! `identity_assertion` gives each process the assertion of its session's principal in
//! `MCP_IDENTITY_ASSERTION` (signed when the session starts; it lives as long as it says).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_types::{AuditRecord, Effect, ReasonCode};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::config::StdioSpec;

/// The header carrying the principal's owner key from the gateway to the bridge.
pub(crate) const OWNER_HEADER: &str = "x-authz-owner";
/// The header carrying the principal's subject, for the process records.
pub(crate) const SUBJECT_HEADER: &str = "x-authz-subject";
/// The variable holding the session principal's identity assertion in a child's environment,
/// when the route sends identity assertions.
pub(crate) const ASSERTION_ENV: &str = "MCP_IDENTITY_ASSERTION";
/// The longest line a child may write (one JSON-RPC message).
const MAX_LINE: u64 = 16 * 1024 * 1024;
/// Messages a child sent on its own, waiting for the session's `GET` stream.
const UNSOLICITED_QUEUE: usize = 256;
/// A process that exits within this long of starting counts as a crash for the backoff.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The bridge of every stdio route of one gateway.
pub(crate) struct Bridge {
    routes: HashMap<String, Arc<Route>>,
    secret: String,
    /// Ids the bridge gives stateless calls on their way to a child.
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One stdio route: its spec and its running processes by session id.
struct Route {
    name: String,
    spec: StdioSpec,
    /// The header the gateway sends the route's identity assertion in, if the route has one:
    /// each process gets the assertion of its session's principal in its environment.
    assertion_header: Option<axum::http::HeaderName>,
    children: Mutex<HashMap<String, Arc<Child>>>,
    /// Sessions served by their principal's shared process (`stdio.share = "principal"`).
    sessions: Mutex<HashMap<String, Arc<Child>>>,
    /// No new process before this instant (after crashes), and the current backoff.
    backoff: Mutex<(Option<tokio::time::Instant>, Duration)>,
    audit: authz_audit::AuditWriter,
    started: AtomicUsize,
    exited: AtomicUsize,
}

/// One running process.
struct Child {
    session: String,
    owner: String,
    /// Shared by its principal's stateless 2026-07-28 calls (and, with `stdio.share =
    /// "principal"`, its sessions): initialized by the bridge, request ids translated.
    shared: bool,
    /// The child's answer to `initialize`, for `server/discover`.
    init: std::sync::OnceLock<Value>,
    subject: Option<String>,
    pid: Option<u32>,
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    /// Requests waiting for their response, by JSON-encoded id.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Where messages the child sends on its own go: the session's open `GET` stream.
    stream: Mutex<Option<mpsc::Sender<Value>>>,
    in_flight: AtomicUsize,
    last_used_ms: AtomicI64,
    /// Asks the supervising task to kill the process, with the reason to record.
    kill: Mutex<Option<oneshot::Sender<&'static str>>>,
}

impl Child {
    fn touch(&self) {
        self.last_used_ms
            .store(authz_types::now_unix_ms(), Ordering::Relaxed);
    }

    fn stop(&self, why: &'static str) {
        if let Some(kill) = self
            .kill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = kill.send(why);
        }
    }

    async fn write(&self, msg: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await?;
        stdin.flush().await
    }
}

/// The owner key of a principal, as the bridge compares it: a digest of issuer, subject and
/// tenant (a header value whatever they contain).
pub(crate) fn owner_key(p: &authz_types::Principal) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(
        format!("{}\n{}\n{}", p.issuer, p.subject, p.tenant_or_default()).as_bytes(),
    );
    hex::encode(digest)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bridge {
    /// The bridge for `routes` (name and spec), writing process records through `audit`.
    pub(crate) fn new(
        routes: Vec<(String, StdioSpec, Option<axum::http::HeaderName>)>,
        audit: &authz_audit::AuditWriter,
    ) -> Arc<Bridge> {
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let routes = routes
            .into_iter()
            .map(|(name, spec, assertion_header)| {
                let route = Arc::new(Route {
                    name: name.clone(),
                    spec,
                    assertion_header,
                    children: Mutex::default(),
                    sessions: Mutex::default(),
                    backoff: Mutex::new((None, Duration::from_secs(1))),
                    audit: audit.clone(),
                    started: AtomicUsize::new(0),
                    exited: AtomicUsize::new(0),
                });
                (name, route)
            })
            .collect();
        let bridge = Arc::new(Bridge {
            routes,
            secret,
            next_id: std::sync::atomic::AtomicU64::new(1),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&bridge)));
        bridge
    }

    /// The bearer secret the gateway presents to the bridge.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// Processes running now, per route.
    pub(crate) fn processes(&self) -> Vec<(String, usize, usize, usize)> {
        self.routes
            .values()
            .map(|r| {
                (
                    r.name.clone(),
                    lock(&r.children).len(),
                    r.started.load(Ordering::Relaxed),
                    r.exited.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Serves the bridge on `listener` (a loopback port) until the gateway ends, through the
    /// gateway's own accept loop: any local process can connect to a loopback port, so the
    /// request-head and idle deadlines and a connection cap apply here too (every connection
    /// comes from loopback, the gateway's own included, so the per-client cap is the total).
    pub(crate) fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        limits: crate::connections::ConnectionLimits,
    ) {
        let router = axum::Router::new()
            .route(
                "/stdio/{route}",
                axum::routing::post(post).get(get).delete(delete),
            )
            .with_state(Arc::clone(self))
            // Bodies are read by `post` once the caller is known to be the gateway.
            .layer(axum::extract::DefaultBodyLimit::disable());
        let limits = crate::connections::ConnectionLimits {
            max_connections_per_client: limits.max_connections,
            ..limits
        };
        tokio::spawn(crate::connections::serve(
            listener,
            router,
            limits,
            Arc::default(),
            std::future::pending(),
        ));
    }

    /// Stops every process (at shutdown) and waits, at most `deadline`, until each has exited
    /// and its exit record is queued.
    pub(crate) async fn stop_all(&self, deadline: Duration) {
        for route in self.routes.values() {
            for child in lock(&route.children).values() {
                child.stop("gateway stopped");
            }
        }
        let until = tokio::time::Instant::now() + deadline;
        while self
            .routes
            .values()
            .any(|r| r.exited.load(Ordering::Relaxed) < r.started.load(Ordering::Relaxed))
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string(),
    )
        .into_response()
}

/// The route, if the request carries the bridge's secret.
fn authorized(bridge: &Bridge, route: &str, headers: &HeaderMap) -> Option<Arc<Route>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    let same = presented.len() == bridge.secret.len()
        && presented
            .bytes()
            .zip(bridge.secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    same.then(|| bridge.routes.get(route).cloned()).flatten()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The session's process, if it exists and belongs to the caller.
fn child_of(route: &Route, headers: &HeaderMap) -> Option<Arc<Child>> {
    let session = header_text(headers, "mcp-session-id")?;
    let owner = header_text(headers, OWNER_HEADER)?;
    lock(&route.children)
        .get(&session)
        .filter(|c| c.owner == owner && !c.shared)
        .cloned()
        .or_else(|| {
            lock(&route.sessions)
                .get(&session)
                .filter(|c| c.owner == owner)
                .cloned()
        })
}

async fn post(
    State(bridge): State<Arc<Bridge>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(route) = authorized(&bridge, &route, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // Only the gateway gets this far, with a body it already held to its own limit; the
    // ceiling is the largest limit the gateway can be configured (or reloaded) to.
    let Ok(body) = axum::body::to_bytes(body, crate::config::MAX_BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32700,
            "invalid JSON",
        );
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    if header_text(&headers, "mcp-protocol-version").as_deref() == Some("2026-07-28") {
        return stateless(&bridge, &route, &headers, msg, id).await;
    }
    let is_request = msg.get("method").is_some() && msg.get("id").is_some();
    if msg.get("method").and_then(Value::as_str) == Some("initialize") {
        return initialize(&route, &headers, msg, id).await;
    }
    let Some(child) = child_of(&route, &headers) else {
        return rpc_error(StatusCode::NOT_FOUND, &id, -32001, "session not found");
    };
    child.touch();
    if child.shared
        && msg.get("method").and_then(Value::as_str) == Some("notifications/initialized")
    {
        // The bridge initialized the shared process itself.
        return StatusCode::ACCEPTED.into_response();
    }
    if is_request && child.shared {
        // Sessions sharing a process may use the same ids: the bridge gives each its own.
        let mut msg = msg;
        msg["id"] = Value::String(format!(
            "gw-{}",
            bridge.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        return match call(&child, msg, None).await {
            Ok(mut answer) => {
                answer["id"] = id;
                json_response(&answer, None)
            }
            Err(status) => rpc_error(status, &id, -32603, "the stdio server failed"),
        };
    }
    if !is_request {
        // A notification, or the client's answer to the child's request.
        return match child.write(&msg).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(_) => rpc_error(StatusCode::BAD_GATEWAY, &id, -32603, "the process is gone"),
        };
    }
    match call(&child, msg, None).await {
        Ok(answer) => json_response(&answer, None),
        Err(status) => rpc_error(status, &id, -32603, "the stdio server failed"),
    }
}

/// Methods whose 2026-07-28 results must carry caching hints (`ttlMs`, `cacheScope`).
const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// A stateless 2026-07-28 call: served by the principal's own process (started and initialized
/// by the bridge on the first call), translated for a child that speaks the session-based
/// protocol. The request's id is replaced by one of the bridge's (independent calls may reuse
/// ids) and restored in the answer; the per-request `_meta` of 2026-07-28 is taken off; the
/// result gets `resultType` and, where required, the most conservative caching hints;
/// `server/discover` is answered from the child's `initialize` result.
async fn stateless(
    bridge: &Bridge,
    route: &Arc<Route>,
    headers: &HeaderMap,
    mut msg: Value,
    id: Value,
) -> Response {
    let Some(method) = msg.get("method").and_then(Value::as_str).map(str::to_owned) else {
        // A response to a server request: stateless clients never get one to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    if msg.get("id").is_none() {
        // Notifications of a stateless client (e.g. cancellation) name ids the child never saw.
        return StatusCode::ACCEPTED.into_response();
    }
    let child = match shared_child(route, headers).await {
        Ok(child) => child,
        Err(response) => return response(&id),
    };
    child.touch();
    if method == "server/discover" {
        let init = child.init.get().cloned().unwrap_or(Value::Null);
        let result = &init["result"];
        let mut discovered = json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28"],
            "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": {"io.modelcontextprotocol/serverInfo":
                result.get("serverInfo").cloned().unwrap_or(Value::Null)},
        });
        if let Some(instructions) = result.get("instructions") {
            discovered["instructions"] = instructions.clone();
        }
        return json_response(
            &json!({"jsonrpc": "2.0", "id": id, "result": discovered}),
            None,
        );
    }
    if let Some(meta) = msg
        .pointer_mut("/params/_meta")
        .and_then(Value::as_object_mut)
    {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty()
            && let Some(params) = msg.get_mut("params").and_then(Value::as_object_mut)
        {
            params.remove("_meta");
        }
    }
    let own_id = format!("gw-{}", bridge.next_id.fetch_add(1, Ordering::Relaxed));
    msg["id"] = Value::String(own_id);
    match call(&child, msg, None).await {
        Ok(mut answer) => {
            answer["id"] = id;
            if let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) {
                result
                    .entry("resultType")
                    .or_insert_with(|| json!("complete"));
                if CACHEABLE.contains(&method.as_str()) {
                    result.entry("ttlMs").or_insert_with(|| json!(0));
                    result
                        .entry("cacheScope")
                        .or_insert_with(|| json!("private"));
                }
            }
            json_response(&answer, None)
        }
        Err(status) => rpc_error(status, &id, -32603, "the stdio server failed"),
    }
}

type Refuse = Box<dyn FnOnce(&Value) -> Response + Send>;

/// The principal's shared process: the running one, or a new one the bridge initializes.
async fn shared_child(route: &Arc<Route>, headers: &HeaderMap) -> Result<Arc<Child>, Refuse> {
    let Some(owner) = header_text(headers, OWNER_HEADER) else {
        return Err(Box::new(|id| {
            rpc_error(StatusCode::BAD_REQUEST, id, -32600, "no owner")
        }));
    };
    let existing = lock(&route.children)
        .values()
        .find(|c| c.shared && c.owner == owner && c.init.get().is_some())
        .cloned();
    if let Some(child) = existing {
        return Ok(child);
    }
    // Started outside the lock; two first calls racing may start two (both within the limits).
    if let Some(refusal) = refuse_new_process(route, &owner) {
        return Err(refusal);
    }
    let assertion = route
        .assertion_header
        .as_ref()
        .and_then(|h| header_text(headers, h.as_str()));
    let child = spawn(
        route,
        owner,
        header_text(headers, SUBJECT_HEADER),
        assertion,
        true,
    )
    .await
    .map_err(|e| -> Refuse {
        tracing::error!(route = %route.name, error = %e, "cannot start the stdio server");
        Box::new(|id| {
            rpc_error(
                StatusCode::BAD_GATEWAY,
                id,
                -32603,
                "the stdio server did not start",
            )
        })
    })?;
    let init = json!({"jsonrpc": "2.0", "id": "gw-initialize", "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "authz-gateway", "version": env!("CARGO_PKG_VERSION")}}});
    match call(&child, init, Some(route.spec.start_timeout)).await {
        Ok(answer) if answer.get("result").is_some() => {
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            if child.write(&initialized).await.is_err() {
                child.stop("did not take notifications/initialized");
                return Err(Box::new(|id| {
                    rpc_error(
                        StatusCode::BAD_GATEWAY,
                        id,
                        -32603,
                        "the stdio server did not start",
                    )
                }));
            }
            let _ = child.init.set(answer);
            Ok(child)
        }
        _ => {
            child.stop("did not answer initialize");
            Err(Box::new(|id| {
                rpc_error(
                    StatusCode::BAD_GATEWAY,
                    id,
                    -32603,
                    "the stdio server did not start",
                )
            }))
        }
    }
}

/// Why no new process may start for `owner` now (the crash backoff, or a limit), if so.
fn refuse_new_process(route: &Route, owner: &str) -> Option<Refuse> {
    if let (Some(until), _) = *lock(&route.backoff)
        && tokio::time::Instant::now() < until
    {
        return Some(Box::new(|id| {
            rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                -32603,
                "the stdio server keeps crashing; retry later",
            )
        }));
    }
    let children = lock(&route.children);
    let mine = children.values().filter(|c| c.owner == owner).count();
    if children.len() >= route.spec.max_processes || mine >= route.spec.max_per_principal {
        return Some(Box::new(|id| {
            rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                -32603,
                "too many processes for this stdio server; end a session first",
            )
        }));
    }
    None
}

/// Sends request `msg` to the child and waits for its response (at most `deadline`).
async fn call(child: &Child, msg: Value, deadline: Option<Duration>) -> Result<Value, StatusCode> {
    let key = msg.get("id").map(Value::to_string).unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    lock(&child.pending).insert(key.clone(), tx);
    child.in_flight.fetch_add(1, Ordering::Relaxed);
    // Removes the waiter however this ends (answered, failed, or the caller went away).
    struct Waiting<'a>(&'a Child, String);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            lock(&self.0.pending).remove(&self.1);
            self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.0.touch();
        }
    }
    let _waiting = Waiting(child, key);
    if child.write(&msg).await.is_err() {
        return Err(StatusCode::BAD_GATEWAY);
    }
    let answered = match deadline {
        Some(d) => tokio::time::timeout(d, rx)
            .await
            .map_err(|_| StatusCode::GATEWAY_TIMEOUT)?,
        None => rx.await,
    };
    // A dropped sender means the process exited before answering.
    answered.map_err(|_| StatusCode::BAD_GATEWAY)
}

fn json_response(answer: &Value, session: Option<&str>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response();
    if let Some(s) = session.and_then(|s| axum::http::HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert("mcp-session-id", s);
    }
    resp
}

async fn initialize(route: &Arc<Route>, headers: &HeaderMap, msg: Value, id: Value) -> Response {
    let Some(owner) = header_text(headers, OWNER_HEADER) else {
        return rpc_error(StatusCode::BAD_REQUEST, &id, -32600, "no owner");
    };
    // A session re-initialized is a new process; the gateway never sends one with a session.
    if headers.contains_key("mcp-session-id") {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            -32600,
            "initialize starts a session",
        );
    }
    if route.spec.share_per_principal {
        // The principal's process already answered `initialize`; this session joins it.
        let child = match shared_child(route, headers).await {
            Ok(child) => child,
            Err(refusal) => return refusal(&id),
        };
        let session = uuid::Uuid::new_v4().simple().to_string();
        lock(&route.sessions).insert(session.clone(), Arc::clone(&child));
        child.touch();
        let mut answer = child.init.get().cloned().unwrap_or(Value::Null);
        answer["id"] = id;
        return json_response(&answer, Some(&session));
    }
    if let Some(refusal) = refuse_new_process(route, &owner) {
        return refusal(&id);
    }
    let assertion = route
        .assertion_header
        .as_ref()
        .and_then(|h| header_text(headers, h.as_str()));
    let child = match spawn(
        route,
        owner,
        header_text(headers, SUBJECT_HEADER),
        assertion,
        false,
    )
    .await
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(route = %route.name, error = %e, "cannot start the stdio server");
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                &id,
                -32603,
                "the stdio server did not start",
            );
        }
    };
    match call(&child, msg, Some(route.spec.start_timeout)).await {
        Ok(answer) => {
            let _ = child.init.set(answer.clone());
            json_response(&answer, Some(&child.session))
        }
        Err(status) => {
            child.stop("did not answer initialize");
            rpc_error(status, &id, -32603, "the stdio server did not start")
        }
    }
}

/// Starts a process for a new session of `owner`, with the tasks that read its stdout and
/// stderr and supervise its exit. Its start record is queued before it is used: a process whose
/// start cannot be recorded is stopped and the session refused (nothing runs unrecorded).
async fn spawn(
    route: &Arc<Route>,
    owner: String,
    subject: Option<String>,
    assertion: Option<String>,
    shared: bool,
) -> std::io::Result<Arc<Child>> {
    let spec = &route.spec;
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v.expose())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(assertion) = assertion {
        cmd.env(ASSERTION_ENV, assertion);
    }
    let mut process = cmd.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (
        process.stdin.take(),
        process.stdout.take(),
        process.stderr.take(),
    ) else {
        return Err(std::io::Error::other("the child's pipes are missing"));
    };
    let session = uuid::Uuid::new_v4().simple().to_string();
    let (kill_tx, kill_rx) = oneshot::channel();
    let child = Arc::new(Child {
        session: session.clone(),
        owner,
        shared,
        init: std::sync::OnceLock::new(),
        subject,
        pid: process.id(),
        stdin: tokio::sync::Mutex::new(stdin),
        pending: Mutex::default(),
        stream: Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        last_used_ms: AtomicI64::new(authz_types::now_unix_ms()),
        kill: Mutex::new(Some(kill_tx)),
    });
    // Counted against the limits at once (before the await below), as before any start.
    lock(&route.children).insert(session.clone(), Arc::clone(&child));
    let started = route.process_record(
        &child,
        "process/start",
        Effect::Allow,
        ReasonCode::ProcessStarted,
        None,
    );
    if let Err(e) = route.audit.append_buffered(started).await {
        // Never handed out; killed when `process` is dropped on return (`kill_on_drop`).
        lock(&route.children).remove(&session);
        tracing::error!(route = %route.name, error = %e, "a stdio process's start could not be recorded; stopping it");
        return Err(std::io::Error::other(format!(
            "the start record could not be queued: {e}"
        )));
    }
    route.started.fetch_add(1, Ordering::Relaxed);
    tracing::info!(route = %route.name, pid = ?child.pid, "stdio server started");

    let name = route.name.clone();
    let pid = child.pid;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(route = %name, pid = ?pid, stderr = %line, "stdio server");
        }
    });
    tokio::spawn(read_stdout(Arc::clone(&child), stdout, route.name.clone()));
    tokio::spawn(supervise(
        Arc::clone(route),
        child.clone(),
        process,
        kill_rx,
    ));
    Ok(child)
}

/// Delivers what the child writes: responses to their waiting requests, the rest to the
/// session's stream (or, for a request nobody can answer, an error back to the child).
async fn read_stdout(child: Arc<Child>, stdout: tokio::process::ChildStdout, route: String) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE => {
                tracing::error!(%route, "the stdio server wrote an oversized message; stopping it");
                child.stop("oversized message");
                return;
            }
            Ok(_) => {}
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            if !line.iter().all(u8::is_ascii_whitespace) {
                tracing::warn!(%route, "the stdio server wrote a line that is not JSON; ignored");
            }
            continue;
        };
        let is_response = msg.get("method").is_none() && msg.get("id").is_some();
        if is_response {
            let key = msg.get("id").map(Value::to_string).unwrap_or_default();
            if let Some(waiter) = lock(&child.pending).remove(&key) {
                let _ = waiter.send(msg);
            }
            continue;
        }
        let delivered = lock(&child.stream)
            .as_ref()
            .is_some_and(|s| s.try_send(msg.clone()).is_ok());
        if !delivered && let Some(id) = msg.get("id") {
            // A request to the client that no stream can carry: refuse it, do not hang.
            let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
                "message": "the client has no open stream for requests from the server"}});
            let _ = child.write(&refusal).await;
        }
    }
}

/// Waits for the process to exit (or to be told to stop), then cleans up and records it.
async fn supervise(
    route: Arc<Route>,
    child: Arc<Child>,
    mut process: tokio::process::Child,
    kill: oneshot::Receiver<&'static str>,
) {
    let started = tokio::time::Instant::now();
    let (why, status) = tokio::select! {
        status = process.wait() => ("exited", status.ok()),
        why = kill => {
            let why = why.unwrap_or("stopped");
            let _ = process.start_kill();
            (why, process.wait().await.ok())
        }
    };
    lock(&route.children).remove(&child.session);
    lock(&route.sessions).retain(|_, c| !Arc::ptr_eq(c, &child));
    // In-flight calls learn the process is gone (their waiters are dropped: 502).
    lock(&child.pending).clear();
    *lock(&child.stream) = None;
    let outcome = match status {
        Some(s) => match s.code() {
            Some(code) => format!("{why} (exit {code})"),
            None => format!("{why} (signal)"),
        },
        None => why.to_owned(),
    };
    let crashed = why == "exited" && started.elapsed() < CRASH_WINDOW;
    {
        let mut backoff = lock(&route.backoff);
        if crashed {
            let wait = backoff.1;
            *backoff = (
                Some(tokio::time::Instant::now() + wait),
                (wait * 2).min(MAX_BACKOFF),
            );
        } else if why == "exited" || why == "idle" || why == "ended by the client" {
            *backoff = (None, Duration::from_secs(1));
        }
    }
    if crashed {
        tracing::error!(route = %route.name, pid = ?child.pid, %outcome, "stdio server crashed soon after starting");
    } else {
        tracing::info!(route = %route.name, pid = ?child.pid, %outcome, "stdio server ended");
    }
    let exit = route.process_record(
        &child,
        "process/exit",
        if crashed { Effect::Deny } else { Effect::Allow },
        ReasonCode::ProcessExited,
        Some(outcome),
    );
    // The process is gone whatever happens here: its exit record is retried for a while (the
    // writer may be waiting out a database outage) before it is given up, loudly.
    let mut wait = Duration::from_millis(100);
    let mut exit = exit;
    for attempt in 1..=6 {
        match route.audit.append_buffered(exit.clone()).await {
            Ok(()) => break,
            Err(e) if attempt == 6 => {
                tracing::error!(route = %route.name, error = %e, record = ?exit, "a stdio process's exit could not be recorded");
            }
            Err(e) => {
                tracing::warn!(route = %route.name, error = %e, attempt, "a stdio process's exit record could not be queued yet");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        exit.time_ms = authz_types::now_unix_ms().max(exit.time_ms);
    }
    // Counted once its record is queued, so a shutdown waiting for every exit has them all.
    route.exited.fetch_add(1, Ordering::Relaxed);
}

impl Route {
    /// The audit record of a process event (queued buffered: nothing waits on it).
    fn process_record(
        &self,
        child: &Child,
        method: &str,
        effect: Effect,
        reason: ReasonCode,
        outcome: Option<String>,
    ) -> AuditRecord {
        let mut rec = AuditRecord::unauthenticated(
            format!(
                "process-{}-{}",
                child.session,
                method.trim_start_matches("process/")
            ),
            self.name.clone(),
            method.to_owned(),
            reason,
            0,
        );
        rec.http_status = None;
        rec.decision = effect;
        rec.subject.clone_from(&child.subject);
        rec.session_id = Some(child.session.clone());
        rec.matched_rule = Some(format!(
            "pid {} {}",
            child.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            self.spec.program.display()
        ));
        rec.outcome = outcome;
        rec
    }
}

async fn get(
    State(bridge): State<Arc<Bridge>>,
    Path(route): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(route) = authorized(&bridge, &route, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Some(child) = child_of(&route, &headers) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (tx, rx) = mpsc::channel::<Value>(UNSOLICITED_QUEUE);
    // One stream per session: a new one replaces the old.
    *lock(&child.stream) = Some(tx);
    child.in_flight.fetch_add(1, Ordering::Relaxed);
    struct Open(Arc<Child>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.0.touch();
        }
    }
    let open = Open(child);
    // Ends when the process does (its sender is dropped) or when the client goes away.
    let events = futures_util::stream::unfold((rx, open), |(mut rx, open)| async move {
        let msg = rx.recv().await?;
        let frame = bytes::Bytes::from(format!("event: message\ndata: {msg}\n\n"));
        Some((Ok::<_, std::io::Error>(frame), (rx, open)))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

async fn delete(
    State(bridge): State<Arc<Bridge>>,
    Path(route): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(route) = authorized(&bridge, &route, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match child_of(&route, &headers) {
        // A session of a shared process ends alone; the process ends when idle.
        Some(child) if child.shared => {
            if let Some(session) = header_text(&headers, "mcp-session-id") {
                lock(&route.sessions).remove(&session);
            }
            StatusCode::OK.into_response()
        }
        Some(child) => {
            child.stop("ended by the client");
            StatusCode::OK.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Stops processes idle for longer than their route allows, every second.
async fn reap_idle(bridge: std::sync::Weak<Bridge>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bridge) = bridge.upgrade() else {
            return;
        };
        let now = authz_types::now_unix_ms();
        for route in bridge.routes.values() {
            let idle_ms = i64::try_from(route.spec.idle.as_millis()).unwrap_or(i64::MAX);
            for child in lock(&route.children).values() {
                if child.in_flight.load(Ordering::Relaxed) == 0
                    && now - child.last_used_ms.load(Ordering::Relaxed) > idle_ms
                {
                    child.stop("idle");
                }
            }
        }
    }
}
