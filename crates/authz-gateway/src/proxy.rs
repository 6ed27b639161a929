//! The request pipeline for `POST|GET|DELETE /mcp/{upstream}`: authenticate, classify, check
//! scopes, ask RBAC, record the decision, and only then forward with the gateway's own upstream
//! credentials, streaming the answer back (list results filtered per caller).

// `ApiError` is large, but it only travels on the refusal path, where a few bytes of moves are
// irrelevant next to the audit write; boxing it would add an allocation to every refusal.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use authz_types::{
    AuditRecord, Decision, Message, MessageKind, Method, Operation, Principal, ReasonCode, Target,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::Value;
use tracing::{Instrument, info_span};

use crate::config::{AuditMode, Upstream};
use crate::error::{ApiError, Refusal};
use crate::filter::{self, ItemAllowed, ListKind, Rewrite};
use crate::recording::{Arguments, OutcomeRecorder};
use crate::sessions::{Owner, SessionCheck};
use crate::stream::{StreamGuard, rewritten_response, stream_back};
use crate::{App, upstream};

/// Protocol versions the gateway understands.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// The first version with standard `Mcp-Method`/`Mcp-Name` headers and no sessions.
const STATELESS_VERSION: &str = "2026-07-28";

/// Largest total size of request header names and values accepted.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 100;

/// Per-request context shared by the pipeline steps.
struct Ctx {
    /// The URL carries an `access_token` query parameter (refused: tokens only in the header).
    query_token: bool,
    /// The W3C trace id of the request, if it came with a valid `traceparent`.
    trace_id: Option<String>,
    /// The call's argument digest (and recorded arguments), once the body is classified.
    arguments: std::sync::OnceLock<Arguments>,
    request_id: String,
    upstream: Arc<Upstream>,
    session_id: Option<String>,
}

/// Whether a query string names an `access_token` parameter (RFC 6750 §2.3), which we refuse.
///
/// The names are percent-decoded (and `+` read as a space) before they are compared, as any
/// upstream or framework reading the query would: `?access%5Ftoken=` and `?%61ccess_token=` are
/// the same parameter as `?access_token=`. Surrounding whitespace and ASCII case are ignored, so
/// no spelling a lenient reader would accept slips past.
fn query_carries_token(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("access_token"))
}

pub async fn handle(
    State(app): State<Arc<App>>,
    Path(upstream): Path<String>,
    method: HttpMethod,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let span = info_span!("mcp", request_id = %request_id, upstream = %upstream, http.method = %method,
        mcp.method = tracing::field::Empty, target = tracing::field::Empty, subject = tracing::field::Empty,
        decision = tracing::field::Empty);
    let result = async {
        let Some(up) = app.upstreams.get(&upstream).cloned() else {
            return Err(Refusal::UnknownRoute.into());
        };
        let session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let query_token = uri.query().is_some_and(query_carries_token);
        let ctx = Ctx {
            query_token,
            trace_id: crate::recording::trace_id(&headers),
            arguments: std::sync::OnceLock::new(),
            request_id: request_id.clone(),
            upstream: up,
            session_id,
        };
        pipeline(&app, &ctx, method, headers, body).await
    }
    .instrument(span)
    .await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            app.metrics.count_refusal(e.status);
            e.with_request_id(&request_id).into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn pipeline(
    app: &App,
    ctx: &Ctx,
    method: HttpMethod,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Transport check first: a browser page on another origin must not reach us at all.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| app.config.allowed_origins.iter().any(|a| a == o));
        if !ok {
            return Err(Refusal::OriginNotAllowed.into());
        }
    }
    let version = headers
        .get("mcp-protocol-version")
        .map(|v| v.to_str().unwrap_or(""))
        .map(str::to_owned);

    // Oversized header sets are refused before any parsing (431), and recorded.
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        let mut rec = AuditRecord::unauthenticated(
            &ctx.request_id,
            &ctx.upstream.name,
            method.as_str(),
            ReasonCode::LimitExceeded,
            431,
        );
        rec.session_id = ctx.session_id.clone();
        record(app, ctx, rec).await?;
        return Err(Refusal::HeadersTooLarge.into());
    }

    // Authenticate before looking at anything the caller sent.
    let principal = authenticate(app, ctx, &headers, method.as_str()).await?;
    tracing::Span::current().record("subject", principal.subject.as_str());

    if let Err(e) = check_transport_headers(&headers, version.as_deref()) {
        let op = Operation::new(Method::Unknown(format!("http/{method}")), Target::None);
        return Err(deny(app, ctx, &principal, &op, ReasonCode::MalformedRequest, e).await);
    }
    let stateless = version.as_deref() == Some(STATELESS_VERSION);

    match method {
        HttpMethod::POST => post(app, ctx, &principal, &headers, body, stateless).await,
        HttpMethod::GET | HttpMethod::DELETE if stateless => {
            Err(Refusal::StatelessNeedsPost.into())
        }
        HttpMethod::GET | HttpMethod::DELETE => {
            stream_or_end(app, ctx, &principal, &headers, method).await
        }
        _ => Err(Refusal::MethodNotAllowed.into()),
    }
}

/// Verifies the bearer token; every failure is answered 401 with a challenge and recorded.
async fn authenticate(
    app: &App,
    ctx: &Ctx,
    headers: &HeaderMap,
    method: &str,
) -> Result<Principal, ApiError> {
    let up = &ctx.upstream;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let auth = values.next().map(|v| v.to_str().unwrap_or(""));
    let repeated = values.next().is_some();
    let token = auth.and_then(|a| {
        let (scheme, rest) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let (reason, description) = match (auth, token) {
        // A token in the URL leaks into logs and proxies; it is refused even next to a header.
        _ if ctx.query_token => (
            ReasonCode::TokenNotInHeader,
            Some("tokens are accepted only in the Authorization header"),
        ),
        // Two Authorization headers are ambiguous: which one would a proxy behind us honour?
        _ if repeated => (
            ReasonCode::TokenMalformed,
            Some("send exactly one Authorization header"),
        ),
        (None, _) => (ReasonCode::TokenMissing, None),
        (Some(_), None) | (Some(_), Some("")) => (
            ReasonCode::TokenMalformed,
            Some("the Authorization header must be `Bearer <token>`"),
        ),
        (Some(_), Some(t)) => match app.verifier.verify_refreshing(t, &up.resource).await {
            Ok(p) => return Ok(Arc::unwrap_or_clone(p)),
            Err(e) => (e.reason(), Some(e.description())),
        },
    };
    tracing::Span::current().record("decision", "deny");
    let mut rec = AuditRecord::unauthenticated(&ctx.request_id, &up.name, method, reason, 401);
    rec.session_id = ctx.session_id.clone();
    record(app, ctx, rec).await?;
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", app.metadata_url(up));
    let scopes = crate::scopes::supported_scopes(&up.scopes);
    if !scopes.is_empty() {
        challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    if let Some(d) = description {
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{d}\""
        ));
    }
    Err(ApiError::from(Refusal::Unauthenticated(reason)).with_challenge(challenge))
}

/// Every record of a request carries its trace, session and argument context.
fn annotate(ctx: &Ctx, rec: &mut AuditRecord) {
    if rec.trace_id.is_none() {
        rec.trace_id.clone_from(&ctx.trace_id);
    }
    if rec.session_id.is_none() {
        rec.session_id.clone_from(&ctx.session_id);
    }
    if let Some(args) = ctx.arguments.get() {
        args.apply(rec);
    }
}

/// Hands an audit record to the writer in the route's mode. Durable: returns once committed.
/// Buffered: returns once queued. Either way, a record the writer cannot take fails the request
/// closed (503): nothing passes without its record.
async fn record(app: &App, ctx: &Ctx, mut rec: AuditRecord) -> Result<(), ApiError> {
    annotate(ctx, &mut rec);
    let request_id = rec.request_id.clone();
    let result = match ctx.upstream.audit_mode {
        AuditMode::Durable => app.audit_writer.append_durable(rec).await.map(drop),
        AuditMode::Buffered => app.audit_writer.append_buffered(rec).await,
    };
    result.map_err(|e| {
        app.metrics.audit_refused(&request_id, &e);
        ApiError::from(Refusal::AuditUnavailable)
    })
}

async fn post(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    stateless: bool,
) -> Result<Response, ApiError> {
    let up = &ctx.upstream;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Refusals before classification are recorded against the caller like any other.
    let refuse_unclassified = |what: &str, reason: ReasonCode, err: ApiError| {
        let op = Operation::new(Method::Unknown(format!("({what})")), Target::None);
        async move { Err::<Response, _>(deny(app, ctx, principal, &op, reason, err).await) }
    };
    if !content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        let err = ApiError::from(Refusal::UnsupportedMediaType);
        return refuse_unclassified("not json", ReasonCode::MalformedRequest, err).await;
    }
    let Ok(bytes) = axum::body::to_bytes(body, app.config.max_body_bytes).await else {
        let err = ApiError::from(Refusal::BodyTooLarge);
        return refuse_unclassified("too large", ReasonCode::LimitExceeded, err).await;
    };
    let msg = match authz_types::classify(&bytes) {
        Ok(m) => m,
        Err(e) => {
            let err = ApiError::from(Refusal::Malformed {
                message: e.to_string(),
                jsonrpc_code: e.jsonrpc_code(),
            });
            return refuse_unclassified("malformed", ReasonCode::MalformedRequest, err).await;
        }
    };
    let _ = ctx.arguments.set(Arguments::of(up, &msg));
    let span = tracing::Span::current();
    span.record("mcp.method", msg.operation.method.as_str());
    if let Some(t) = msg.operation.target.display() {
        span.record("target", t.as_str());
    }

    if let Err(e) = check_standard_headers(headers, &msg, stateless) {
        return Err(deny(
            app,
            ctx,
            principal,
            &msg.operation,
            ReasonCode::MalformedRequest,
            e.with_id(msg.id.clone()),
        )
        .await);
    }

    // A session id presented by anyone but its owner is treated as unknown (404), so a leaked id
    // is useless; the refusal is recorded. This holds for `initialize` too: an upstream that
    // routes by the header would otherwise re-initialize someone else's session.
    if let Some(sid) = &ctx.session_id
        && app.sessions.check(&up.name, sid, principal) != SessionCheck::Owned
    {
        return Err(deny(
            app,
            ctx,
            principal,
            &msg.operation,
            ReasonCode::SessionMismatch,
            session_not_found().with_id(msg.id.clone()),
        )
        .await);
    }

    // A task belongs to the principal that created it; anyone else is told it does not exist.
    if let Target::Task(task_id) = &msg.operation.target
        && !app.tasks.owner_is(&up.name, task_id, &Owner::of(principal))
    {
        return Err(deny(
            app,
            ctx,
            principal,
            &msg.operation,
            ReasonCode::TaskNotOwned,
            ApiError::from(Refusal::TaskNotFound).with_id(msg.id.clone()),
        )
        .await);
    }

    let decision = authorize(app, up, principal, &msg.operation)?;
    tracing::Span::current().record("decision", decision.effect.as_str());
    if !decision.is_allowed() {
        if decision.reason == ReasonCode::InsufficientScope {
            let required = app.scopes.required(&up.scopes, &msg.operation);
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
                required.join(" "),
                app.metadata_url(up)
            );
            let err = ApiError::from(Refusal::InsufficientScope)
                .with_id(msg.id.clone())
                .with_challenge(challenge);
            return Err(refuse(app, ctx, principal, &msg.operation, &decision, err).await);
        }
        // A method the gateway does not know is never passed on; JSON-RPC's answer for that is
        // "method not found" (404 / -32601, as MCP 2026-07-28 specifies), not a policy denial.
        let err = if decision.reason == ReasonCode::UnknownMethod {
            ApiError::from(Refusal::UnknownMethod)
        } else {
            ApiError::from(Refusal::Forbidden(decision.reason))
        };
        return Err(refuse(
            app,
            ctx,
            principal,
            &msg.operation,
            &decision,
            err.with_id(msg.id.clone()),
        )
        .await);
    }

    let Some(permit) = app.in_flight.try_acquire(Owner::of(principal)) else {
        return Err(deny(
            app,
            ctx,
            principal,
            &msg.operation,
            ReasonCode::TooManyRequests,
            too_many().with_id(msg.id.clone()),
        )
        .await);
    };
    let mut rec = AuditRecord::for_decision(
        &ctx.request_id,
        &up.name,
        principal,
        &msg.operation,
        &decision,
    );
    annotate(ctx, &mut rec);
    let mut outcome =
        OutcomeRecorder::start(&app.audit_writer, &app.metrics.outcome_records_lost, &rec);
    // Without its decision record the request goes nowhere, so there is no outcome to record.
    record(app, ctx, rec)
        .await
        .inspect_err(|_| outcome.discard())?;
    app.metrics
        .allowed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let upstream_resp = upstream::forward(app, up, reqwest::Method::POST, headers, Some(bytes))
        .await
        .inspect_err(|e| outcome.failed(e.code, e.status.as_u16()))?;
    outcome.answered(upstream_resp.status().as_u16());
    let guard = StreamGuard::new(permit, outcome, up.max_stream);
    if matches!(msg.operation.method, Method::Initialize)
        && upstream_resp.status().is_success()
        && let Some(sid) = upstream_resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        app.sessions.bind(&up.name, sid, Owner::of(principal));
    }
    let Some(id) = msg.id.clone().filter(|_| msg.kind == MessageKind::Request) else {
        return Ok(stream_back(upstream_resp, guard));
    };
    let mut guard = guard;
    match response_rewrite(app, up, principal, &msg, guard.outcome()) {
        Some((rw, private)) => rewritten_response(id, rw, private, upstream_resp, guard).await,
        None => Ok(stream_back(upstream_resp, guard)),
    }
}

/// What, if anything, must be done to the response of an allowed request: list results are
/// filtered per principal; a task-augmented request's answer binds the new task to its creator;
/// `tasks/list` shows only the caller's tasks.
fn response_rewrite(
    app: &App,
    up: &Arc<Upstream>,
    principal: &Principal,
    msg: &Message,
    outcome: &mut OutcomeRecorder,
) -> Option<(Rewrite, bool)> {
    if let Some(kind) = ListKind::of(&msg.operation.method) {
        return Some((
            filter::list_filter_recording(
                kind,
                item_filter(app, up.clone(), principal.clone()),
                Some(outcome.shown_sink()),
            ),
            true,
        ));
    }
    match msg.operation.method {
        Method::TasksList => {
            let tasks = app.tasks.clone();
            let (upstream, owner) = (up.name.clone(), Owner::of(principal));
            let rw: Rewrite = Arc::new(move |v: &mut Value| {
                if let Some(items) = v.pointer_mut("/result/tasks").and_then(Value::as_array_mut) {
                    items.retain(|t| {
                        t.get("taskId")
                            .and_then(Value::as_str)
                            .is_some_and(|id| tasks.owner_is(&upstream, id, &owner))
                    });
                }
                true
            });
            Some((rw, true))
        }
        _ if msg.value.pointer("/params/task").is_some() => {
            let tasks = app.tasks.clone();
            let (upstream, owner) = (up.name.clone(), Owner::of(principal));
            let rw: Rewrite = Arc::new(move |v: &mut Value| {
                if let Some(id) = v.pointer("/result/task/taskId").and_then(Value::as_str) {
                    tasks.bind(&upstream, id, owner.clone());
                }
                false
            });
            Some((rw, false))
        }
        _ => None,
    }
}

/// The authorization decision for one operation: scopes first, then RBAC. An `Err` means no
/// decision could be made and the caller must fail closed.
fn authorize(
    app: &App,
    up: &Upstream,
    principal: &Principal,
    op: &Operation,
) -> Result<Decision, ApiError> {
    let required = app.scopes.required(&up.scopes, op);
    if !app.scopes.missing(principal, required).is_empty() {
        return Ok(Decision::deny(
            ReasonCode::InsufficientScope,
            None,
            app.rbac.revision(),
        ));
    }
    app.rbac.decide(principal, &up.name, op).map_err(|e| {
        tracing::error!(error = %e, "policy evaluation failed; failing closed");
        ApiError::from(Refusal::PolicyUnavailable)
    })
}

/// A predicate for list filtering: the same decision `tools/call` (etc.) would get.
fn item_filter(app: &App, up: Arc<Upstream>, principal: Principal) -> ItemAllowed {
    let scopes = app.scopes.clone();
    let rbac = app.rbac.clone();
    Arc::new(move |op: &Operation| {
        scopes
            .missing(&principal, scopes.required(&up.scopes, op))
            .is_empty()
            && rbac
                .decide(&principal, &up.name, op)
                .is_ok_and(|d| d.is_allowed())
    })
}

/// Records a refusal and returns the error to answer with — or, if the record cannot be
/// written, the 503 that failing closed calls for.
async fn refuse(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    decision: &Decision,
    err: ApiError,
) -> ApiError {
    app.metrics
        .denied
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut rec =
        AuditRecord::for_decision(&ctx.request_id, &ctx.upstream.name, principal, op, decision);
    rec.http_status = Some(err.status.as_u16());
    rec.jsonrpc_error = Some(err.jsonrpc_code);
    match record(app, ctx, rec).await {
        Ok(()) => err,
        Err(unavailable) => unavailable,
    }
}

/// [`refuse`] for a refusal the gateway decides itself (a check beside the policy), denied
/// for `reason` at the policy revision in force.
async fn deny(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    reason: ReasonCode,
    err: ApiError,
) -> ApiError {
    let decision = Decision::deny(reason, None, app.rbac.revision());
    refuse(app, ctx, principal, op, &decision, err).await
}

/// MCP transport headers must be unambiguous: each at most once and printable ASCII. A
/// repeated `Mcp-Session-Id` could be read as the first value here and the last one upstream
/// (a session-binding bypass), so it is refused rather than interpreted.
fn check_transport_headers(headers: &HeaderMap, version: Option<&str>) -> Result<(), ApiError> {
    for name in [
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    ] {
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(Refusal::AmbiguousHeader(name).into());
        }
        if let Some(v) = first
            && !v.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b))
        {
            return Err(Refusal::InvalidHeader(name).into());
        }
    }
    if let Some(v) = version
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return Err(Refusal::UnsupportedProtocolVersion(SUPPORTED_VERSIONS).into());
    }
    Ok(())
}

/// 2026-07-28 standard headers must agree with the body (the body is the source of truth).
fn check_standard_headers(
    headers: &HeaderMap,
    msg: &Message,
    stateless: bool,
) -> Result<(), ApiError> {
    let mismatch = |what: &'static str| ApiError::from(Refusal::HeaderMismatch(what));
    let body_method = match msg.kind {
        MessageKind::Response => None,
        _ => Some(msg.operation.method.as_str()),
    };
    match (headers.get("mcp-method"), body_method) {
        (Some(h), Some(m)) if h.to_str().ok() != Some(m) => {
            return Err(mismatch("Mcp-Method does not match the body"));
        }
        (None, Some(_)) if stateless => return Err(mismatch("Mcp-Method header is required")),
        _ => {}
    }
    let expected = msg.operation.mcp_name();
    match (headers.get("mcp-name"), expected) {
        (Some(h), Some(e)) if decode_header_value(h).as_deref() != Some(e) => {
            return Err(mismatch("Mcp-Name does not match the body"));
        }
        (Some(_), None) => return Err(mismatch("Mcp-Name is not expected for this method")),
        (None, Some(_)) if stateless => return Err(mismatch("Mcp-Name header is required")),
        _ => {}
    }
    Ok(())
}

/// Decodes an `Mcp-Name` value, including the `=?base64?…?=` form used for non-ASCII values.
fn decode_header_value(h: &HeaderValue) -> Option<String> {
    let s = h.to_str().ok()?;
    match s
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(raw).ok()
        }
        None => Some(s.to_owned()),
    }
}

/// GET (server-to-client stream) and DELETE (end session) for session-based protocol versions.
async fn stream_or_end(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    method: HttpMethod,
) -> Result<Response, ApiError> {
    let up = &ctx.upstream;
    // Not a JSON-RPC message: recorded under its HTTP method (`GET`, `DELETE`).
    let op = Operation::new(Method::Unknown(method.as_str().to_owned()), Target::None);
    if let Some(sid) = &ctx.session_id
        && app.sessions.check(&up.name, sid, principal) != SessionCheck::Owned
    {
        let err = session_not_found();
        return Err(deny(app, ctx, principal, &op, ReasonCode::SessionMismatch, err).await);
    }
    let Some(permit) = app.in_flight.try_acquire(Owner::of(principal)) else {
        return Err(deny(
            app,
            ctx,
            principal,
            &op,
            ReasonCode::TooManyRequests,
            too_many(),
        )
        .await);
    };
    let decision = Decision::allow(ReasonCode::ProtocolMethod, None, app.rbac.revision());
    let mut rec = AuditRecord::for_decision(&ctx.request_id, &up.name, principal, &op, &decision);
    annotate(ctx, &mut rec);
    let mut outcome =
        OutcomeRecorder::start(&app.audit_writer, &app.metrics.outcome_records_lost, &rec);
    // Without its decision record the request goes nowhere, so there is no outcome to record.
    record(app, ctx, rec)
        .await
        .inspect_err(|_| outcome.discard())?;
    let m = if method == HttpMethod::GET {
        reqwest::Method::GET
    } else {
        reqwest::Method::DELETE
    };
    let resp = upstream::forward(app, up, m, headers, None)
        .await
        .inspect_err(|e| outcome.failed(e.code, e.status.as_u16()))?;
    outcome.answered(resp.status().as_u16());
    let guard = StreamGuard::new(permit, outcome, up.max_stream);
    if method == HttpMethod::DELETE
        && resp.status().is_success()
        && let Some(sid) = &ctx.session_id
    {
        app.sessions.end(&up.name, sid);
    }
    Ok(stream_back(resp, guard))
}

/// A session the caller does not own is reported as unknown (a leaked id reveals nothing).
fn session_not_found() -> ApiError {
    Refusal::SessionNotFound.into()
}

fn too_many() -> ApiError {
    Refusal::TooManyRequests.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_in_the_query_is_found_however_it_is_spelled() {
        for q in [
            "access_token=x",
            "a=1&access_token=x",
            "ACCESS_TOKEN=x",
            "access%5Ftoken=x",
            "access%5ftoken=x",
            "%61ccess_token=x",
            "%61%63%63%65%73%73%5F%74%6F%6B%65%6E=x",
            "access_token",
            "+access_token+=x",
            "access_token%20=x",
        ] {
            assert!(super::query_carries_token(q), "{q}");
        }
        for q in [
            "",
            "a=access_token",
            "access_tokens=x",
            "x_access_token=x",
            "access%2Dtoken=x",
        ] {
            assert!(!super::query_carries_token(q), "{q}");
        }
    }
}
