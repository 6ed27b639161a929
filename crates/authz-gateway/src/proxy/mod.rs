//! The request pipeline for `POST|GET|DELETE /mcp/{upstream}`: authenticate, classify, check
//! scopes, ask RBAC, record the decision, and only then forward with the gateway's own upstream
//! credentials, streaming the answer back (list results filtered per caller).
//!
//! This module is the order of the steps; each step is a function in a submodule: [`intake`]
//! (context, header size, body, classification), [`gates`] (Origin, protocol version, transport
//! and standard headers), [`authorize`] (token, ownership, scopes then RBAC, in-flight limit),
//! [`record`] (audit records; nothing passes without one) and [`respond`] (session binding,
//! response rewriting). Forwarding is [`crate::upstream::forward`]; the response body machinery
//! is [`crate::stream`]. Every refusal's status comes from [`crate::error::Refusal`].

// `ApiError` is large, but it only travels on the refusal path, where a few bytes of moves are
// irrelevant next to the audit write; boxing it would add an allocation to every refusal.
#![allow(clippy::result_large_err)]

mod approve;
mod authorize;
mod gates;
mod intake;
mod record;
mod respond;
pub(crate) mod virtual_route;

use std::sync::Arc;

use authz_types::{Decision, Method, Operation, Principal, ReasonCode, Target};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, Uri};
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, info_span};

use crate::App;
use crate::config::Upstream;
use crate::error::{ApiError, Refusal};
use crate::metrics::{RouteMetrics, seconds_since};
use crate::recording::Arguments;
use crate::stream::{StreamGuard, stream_back};
use crate::upstream::forward;

/// Per-request context shared by the pipeline steps.
struct Ctx {
    /// The URL carries an `access_token` query parameter (refused: tokens only in the header).
    query_token: bool,
    /// The W3C trace id of the request, if it came with a valid `traceparent`.
    trace_id: Option<String>,
    /// The call's argument digest (and recorded arguments), once the body is classified.
    arguments: std::sync::OnceLock<Arguments>,
    /// A multi round-trip retry: the gateway request id of the call's first round, once its
    /// `requestState` opened (see [`crate::request_state`]).
    first_round: std::sync::OnceLock<String>,
    /// Shadow mode: the candidate policy's answer, when it differs from the live decision.
    shadow: std::sync::OnceLock<String>,
    request_id: String,
    upstream: Arc<Upstream>,
    /// The route's histograms and label.
    route: Arc<RouteMetrics>,
    session_id: Option<String>,
    /// The client's address (the TCP peer), when the request came through the accept loop.
    client: Option<std::net::IpAddr>,
    /// The request URI's authority (HTTP/2 `:authority`), for the `Host` check when there is
    /// no `Host` header.
    authority: Option<axum::http::uri::Authority>,
}

pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    Path(upstream): Path<String>,
    client: Option<axum::Extension<crate::connections::ClientAddr>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    let span = info_span!("mcp", request_id = %request_id, upstream = %upstream, http.method = %method,
        mcp.method = tracing::field::Empty, target = tracing::field::Empty, subject = tracing::field::Empty,
        decision = tracing::field::Empty);
    crate::telemetry::adopt_caller(&span, &headers);
    let route = app.metrics.route(&upstream).cloned();
    let result = async {
        let client = client.map(|axum::Extension(c)| c.0);
        if let (Some(v), Some(route)) = (app.virtuals.get(&upstream).cloned(), route.clone()) {
            let ctx = Ctx::new(
                request_id.clone(),
                v.front.clone(),
                route,
                client,
                &uri,
                &headers,
            );
            return virtual_route::pipeline(&app, &ctx, &v, method, headers, body).await;
        }
        let (Some(up), Some(route)) = (app.upstreams.get(&upstream).cloned(), route.clone()) else {
            return Err(Refusal::UnknownRoute.into());
        };
        let ctx = Ctx::new(request_id.clone(), up, route, client, &uri, &headers);
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
    // Only configured routes are timed: an unknown name must not become a label.
    if let Some(route) = route {
        route.request_duration.observe(seconds_since(started));
    }
    resp
}

/// What every route (virtual ones too) checks first: the origin, the size of the header set,
/// the bearer token and the transport headers. Returns who is asking, whether the request speaks
/// the stateless protocol version, and the body still unread.
async fn entry(
    app: &App,
    ctx: &Ctx,
    method: &HttpMethod,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Principal, bool, Body), ApiError> {
    // Transport check first: a browser page on another origin must not reach us at all.
    gates::origin(app, ctx, headers)?;
    intake::header_size(app, ctx, headers, method).await?;
    // Authenticate before looking at anything the caller sent.
    let principal = authorize::authenticate(app, ctx, headers, method.as_str()).await?;
    tracing::Span::current().record("subject", principal.subject.as_str());
    match gates::transport(app, ctx, &principal, headers, method).await {
        Ok(stateless) => Ok((principal, stateless, body)),
        // The refusal is recorded; a POST's answer still names the request it refuses.
        Err(e) if method == HttpMethod::POST => {
            Err(e.with_id(intake::request_id_of(app, body).await))
        }
        Err(e) => Err(e),
    }
}

async fn pipeline(
    app: &App,
    ctx: &Ctx,
    method: HttpMethod,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (principal, stateless, body) = entry(app, ctx, &method, &headers, body).await?;
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

/// One JSON-RPC message: classified, checked, decided, recorded, forwarded, answered.
async fn post(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    stateless: bool,
) -> Result<Response, ApiError> {
    let up = &ctx.upstream;
    let (msg, bytes) = intake::message(app, ctx, principal, headers, body, stateless).await?;
    let bytes = authorize::request_state(app, ctx, principal, &msg, bytes, stateless).await?;
    let (op, id) = (&msg.operation, &msg.id);
    gates::standard_headers(app, ctx, principal, headers, &msg, stateless).await?;
    gates::removed_methods(app, ctx, principal, &msg, stateless).await?;
    authorize::session_owned(app, ctx, principal, op, id.clone()).await?;
    authorize::task_owned(app, ctx, principal, &msg).await?;
    let decision = authorize::decide(app, ctx, principal, &msg, stateless).await?;
    let bytes = approve::without_own_response(&msg, bytes);
    authorize::within_quota(app, ctx, principal, op, id.clone()).await?;
    let permit = authorize::admit(app, ctx, principal, op, id.clone()).await?;
    // Held for an approver: an approval is used (or the call held) only once the call is within
    // its quotas and limits, so a refusal there does not spend the approver's yes.
    let decision = if decision.reason == ReasonCode::ApprovalRequired {
        approve::gate(app, ctx, principal, &msg, &decision, stateless).await?
    } else {
        decision
    };
    let mut outcome = record::commit_decision(app, ctx, principal, op, &decision).await?;
    app.metrics.allowed.inc();

    // Custom headers pass only in 2026-07-28, where the gate above checked them.
    let resp = forward(
        app,
        up,
        reqwest::Method::POST,
        headers,
        Some(bytes),
        stateless,
        Some((principal, &ctx.request_id)),
    )
    .await
    .inspect_err(|e| outcome.failed(e.code, e.status.as_u16()))?;
    outcome.answered(resp.status().as_u16());
    let mut guard = StreamGuard::new(permit, outcome, up.max_stream);
    respond::bind_session(app, up, principal, &msg, &resp).await;
    if !stateless
        && let Some(requests) =
            respond::session_input_guard(app, up, &msg, &resp, &mut guard, headers)
    {
        return Ok(crate::stream::guarded_sse_response(resp, guard, requests));
    }
    // A retry's answer, if it asks for input again, still names the first round.
    let first_round = ctx.first_round.get().unwrap_or(&ctx.request_id);
    respond::answer(
        app,
        up,
        principal,
        &msg,
        resp,
        guard,
        stateless,
        first_round,
    )
    .await
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
    authorize::session_owned(app, ctx, principal, &op, None).await?;
    let permit = authorize::admit(app, ctx, principal, &op, None).await?;
    let decision = Decision::allow(ReasonCode::ProtocolMethod, None, app.rbac.revision());
    let mut outcome = record::commit_decision(app, ctx, principal, &op, &decision).await?;

    let m = if method == HttpMethod::GET {
        reqwest::Method::GET
    } else {
        reqwest::Method::DELETE
    };
    let resp = forward(
        app,
        up,
        m,
        headers,
        None,
        false,
        Some((principal, &ctx.request_id)),
    )
    .await
    .inspect_err(|e| outcome.failed(e.code, e.status.as_u16()))?;
    outcome.answered(resp.status().as_u16());
    let mut guard = StreamGuard::new(permit, outcome, up.max_stream);
    if method == HttpMethod::DELETE
        && resp.status().is_success()
        && let Some(sid) = &ctx.session_id
    {
        app.sessions.end(&up.name, sid).await;
    }
    if method == HttpMethod::GET
        && let Some(requests) =
            respond::session_stream_guard(app, up, &op, &resp, &mut guard, headers)
    {
        return Ok(crate::stream::guarded_sse_response(resp, guard, requests));
    }
    Ok(stream_back(resp, guard))
}
