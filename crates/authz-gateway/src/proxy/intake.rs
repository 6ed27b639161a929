//! Intake: what the gateway reads from a request before judging it — the per-request context,
//! the size of the header set, and for a POST the media type, the body (bounded) and its strict
//! JSON-RPC classification. Every refusal here is recorded.

use std::sync::Arc;

use authz_types::{AuditRecord, Message, Method, Operation, Principal, ReasonCode, Target};
use axum::body::Body;
use axum::http::{HeaderMap, Method as HttpMethod, Uri, header};
use bytes::Bytes;

use super::record::{deny, record_unauthenticated};
use super::{Ctx, gates};
use crate::App;
use crate::config::Upstream;
use crate::error::{ApiError, Refusal};
use crate::recording::Arguments;

/// Largest total size of request header names and values accepted.
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 100;

impl Ctx {
    /// The context of request `request_id` to route `upstream`, read from its URL and headers.
    pub(super) fn new(
        request_id: String,
        upstream: Arc<Upstream>,
        route: Arc<crate::metrics::RouteMetrics>,
        client: Option<std::net::IpAddr>,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Ctx {
        let session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ctx {
            query_token: uri.query().is_some_and(gates::query_carries_token),
            authority: uri.authority().cloned(),
            // Called inside the request span: with export on, the id it is exported under (the
            // caller's, when it sent a valid `traceparent`); else the caller's, if any.
            trace_id: crate::telemetry::exported_trace_id(&tracing::Span::current())
                .or_else(|| crate::recording::trace_id(headers)),
            arguments: std::sync::OnceLock::new(),
            shadow: std::sync::OnceLock::new(),
            first_round: std::sync::OnceLock::new(),
            request_id,
            upstream,
            route,
            session_id,
            client,
        }
    }
}

impl Ctx {
    /// The context of a message a virtual route hands to one of its members: the member's
    /// route and session, this request's caller and trace.
    pub(super) fn member(
        &self,
        request_id: String,
        upstream: Arc<Upstream>,
        route: Arc<crate::metrics::RouteMetrics>,
        session_id: Option<String>,
    ) -> Ctx {
        Ctx {
            query_token: self.query_token,
            authority: self.authority.clone(),
            trace_id: self.trace_id.clone(),
            arguments: std::sync::OnceLock::new(),
            shadow: std::sync::OnceLock::new(),
            first_round: std::sync::OnceLock::new(),
            request_id,
            upstream,
            route,
            session_id,
            client: self.client,
        }
    }
}

/// Oversized header sets are refused before any parsing (431), and recorded.
pub(super) async fn header_size(
    app: &App,
    ctx: &Ctx,
    headers: &HeaderMap,
    method: &HttpMethod,
) -> Result<(), ApiError> {
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
        record_unauthenticated(app, ctx, rec).await?;
        return Err(Refusal::HeadersTooLarge.into());
    }
    Ok(())
}

/// The JSON-RPC message of a POST and the exact bytes that will be forwarded: a JSON body within
/// `max_body_bytes`, strictly classified. The message's arguments join the request's context and
/// its method and target the span.
pub(super) async fn message(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    stateless: bool,
) -> Result<(Message, Bytes), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Refusals before classification are recorded against the caller like any other.
    let refuse_unclassified = |what: &str, reason: ReasonCode, err: ApiError| {
        let op = Operation::new(Method::Unknown(format!("({what})")), Target::None);
        async move { Err(deny(app, ctx, principal, &op, reason, err).await) }
    };
    if !content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        let err = ApiError::from(Refusal::UnsupportedMediaType);
        return refuse_unclassified("not json", ReasonCode::MalformedRequest, err).await;
    }
    // A body that trickles in holds a connection and a permit: it gets a deadline of its own.
    let read = tokio::time::timeout(
        app.body_limits.read_timeout(),
        axum::body::to_bytes(body, app.body_limits.max_bytes()),
    )
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            let err = ApiError::from(Refusal::BodyTooLarge);
            return refuse_unclassified("too large", ReasonCode::LimitExceeded, err).await;
        }
        Err(_) => {
            app.connections
                .body_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let err = ApiError::from(Refusal::BodyTimeout);
            return refuse_unclassified("body timeout", ReasonCode::LimitExceeded, err).await;
        }
    };
    let msg = match authz_types::classify(&bytes) {
        Ok(m) => m,
        // Methods 2026-07-28 removed are unknown to its clients whatever their params say
        // (404 / -32601, as `gates::removed_methods` answers the well-formed ones).
        Err(authz_types::ClassifyError::InvalidParams { method, .. })
            if stateless
                && matches!(
                    method.as_str(),
                    "resources/subscribe" | "resources/unsubscribe"
                ) =>
        {
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .filter(|id| id.is_string() || id.is_i64() || id.is_u64());
            let op = Operation::new(Method::from_name(&method), Target::None);
            let err = ApiError::from(Refusal::UnknownMethod).with_id(id);
            return Err(deny(app, ctx, principal, &op, ReasonCode::UnknownMethod, err).await);
        }
        Err(e) => {
            let err = ApiError::from(Refusal::Malformed {
                message: e.to_string(),
                jsonrpc_code: e.jsonrpc_code(),
            });
            return refuse_unclassified("malformed", ReasonCode::MalformedRequest, err).await;
        }
    };
    let _ = ctx.arguments.set(Arguments::of(&ctx.upstream, &msg));
    let span = tracing::Span::current();
    span.record("mcp.method", msg.operation.method.as_str());
    if let Some(t) = msg.operation.target.display() {
        span.record("target", t.as_str());
    }
    Ok((msg, bytes))
}

/// The JSON-RPC `id` of a POST body refused before it was classified, so the error answers the
/// request it refuses (a string or an integer, as JSON-RPC allows). Read within the body limits
/// of any request; `None` if the body cannot be read or has no usable id.
pub(super) async fn request_id_of(app: &App, body: Body) -> Option<serde_json::Value> {
    let read = axum::body::to_bytes(body, app.body_limits.max_bytes());
    let bytes = tokio::time::timeout(app.body_limits.read_timeout(), read)
        .await
        .ok()?
        .ok()?;
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("id")?
        .clone();
    (id.is_string() || id.is_i64() || id.is_u64()).then_some(id)
}
