//! Header gates: what a request's headers must satisfy before (`Origin`) or beside the policy —
//! the protocol version, unambiguous MCP transport headers, and 2026-07-28 standard headers that
//! agree with the body — and the detection of a token in the query string.

use authz_types::{Message, MessageKind, Method, Operation, Principal, ReasonCode, Target};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, header};
use base64::Engine as _;

use super::Ctx;
use super::record::deny;
use crate::App;
use crate::error::{ApiError, Refusal};
use crate::param_headers;

/// Protocol versions the gateway understands.
const SUPPORTED_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// The first version with standard `Mcp-Method`/`Mcp-Name` headers and no sessions.
const STATELESS_VERSION: &str = "2026-07-28";

/// A browser page on another origin must not reach the gateway at all (refused unrecorded):
/// an `Origin` passes when it is the gateway's own (same-origin) or listed in
/// `server.allowed_origins`. On a loopback listener, a `Host` that does not name the gateway is
/// refused too: a DNS-rebinding page reaches 127.0.0.1 under a name of its own.
pub(super) fn origin(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| {
            app.own().is_own_origin(o) || app.config.allowed_origins.iter().any(|a| a == o)
        });
        if !ok {
            return Err(Refusal::OriginNotAllowed.into());
        }
    }
    // HTTP/1.1 names the host in `Host`; HTTP/2 in `:authority` (the URI), `Host` optional.
    let host = match headers.get(header::HOST) {
        Some(h) => Some(h.to_str().unwrap_or("\u{0}")),
        None => ctx
            .authority
            .as_ref()
            .map(axum::http::uri::Authority::as_str),
    };
    if !app.own().host_allowed(host) {
        return Err(Refusal::HostNotAllowed.into());
    }
    Ok(())
}

/// Checks the MCP transport headers and the protocol version of an authenticated request (a
/// refusal is recorded under `http/<method>`). Returns whether the request speaks the stateless
/// protocol version.
pub(super) async fn transport(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    method: &HttpMethod,
) -> Result<bool, ApiError> {
    let version = headers
        .get("mcp-protocol-version")
        .map(|v| v.to_str().unwrap_or(""));
    if let Err(e) = check_transport_headers(headers, version) {
        let op = Operation::new(Method::Unknown(format!("http/{method}")), Target::None);
        return Err(deny(app, ctx, principal, &op, ReasonCode::MalformedRequest, e).await);
    }
    Ok(version == Some(STATELESS_VERSION))
}

/// Checks a classified message's standard headers against its body; a refusal is recorded.
pub(super) async fn standard_headers(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    msg: &Message,
    stateless: bool,
) -> Result<(), ApiError> {
    let checked = match check_standard_headers(headers, msg, stateless) {
        Ok(()) if stateless => check_custom_headers(app, &ctx.upstream, headers, msg)
            .await
            .map_err(|m| ApiError::from(Refusal::HeaderMismatch(m.message()))),
        other => other,
    };
    refuse_headers(app, ctx, principal, msg, checked).await
}

/// A header check's refusal, recorded against the message it refuses.
async fn refuse_headers(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
    checked: Result<(), ApiError>,
) -> Result<(), ApiError> {
    let Err(e) = checked else {
        return Ok(());
    };
    let err = e.with_id(msg.id.clone());
    Err(deny(
        app,
        ctx,
        principal,
        &msg.operation,
        ReasonCode::MalformedRequest,
        err,
    )
    .await)
}

/// [`standard_headers`] without the `Mcp-Param-*` check, for a virtual route: `Mcp-Method` and
/// `Mcp-Name` must agree with the body as the client sent it, before the message is routed (the
/// member's pipeline checks the rest against the member's tool schemas).
pub(super) async fn routing_headers(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    headers: &HeaderMap,
    msg: &Message,
    stateless: bool,
) -> Result<(), ApiError> {
    let checked = check_standard_headers(headers, msg, stateless);
    refuse_headers(app, ctx, principal, msg, checked).await
}

/// `resources/subscribe` and `resources/unsubscribe` were removed in 2026-07-28 (replaced by
/// `subscriptions/listen`): to a client speaking it they are unknown methods (404, -32601, a
/// recorded refusal), never passed to an upstream that may still implement them.
pub(super) async fn removed_methods(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
    stateless: bool,
) -> Result<(), ApiError> {
    let removed = matches!(
        msg.operation.method,
        Method::ResourcesSubscribe | Method::ResourcesUnsubscribe
    );
    if !(stateless && removed) {
        return Ok(());
    }
    let err = ApiError::from(Refusal::UnknownMethod).with_id(msg.id.clone());
    Err(deny(
        app,
        ctx,
        principal,
        &msg.operation,
        ReasonCode::UnknownMethod,
        err,
    )
    .await)
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
        return Err(
            ApiError::from(Refusal::UnsupportedProtocolVersion(SUPPORTED_VERSIONS))
                .with_data("requested", serde_json::Value::from(v)),
        );
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

/// 2026-07-28 custom headers (`Mcp-Param-*`, see [`crate::param_headers`]) must agree with the
/// `tools/call` arguments they mirror; on any other message there must be none. A tool the
/// gateway has not seen listed, or whose headers disagree with what it saw (the schema may have
/// changed since), is looked up at the upstream once before the call is refused.
async fn check_custom_headers(
    app: &App,
    up: &crate::config::Upstream,
    headers: &HeaderMap,
    msg: &Message,
) -> Result<(), param_headers::Mismatch> {
    use param_headers::Mismatch;
    let present = param_headers::any_present(headers);
    let (Method::ToolsCall, Target::Tool(tool)) = (&msg.operation.method, &msg.operation.target)
    else {
        return if present {
            Err(Mismatch::Unknown)
        } else {
            Ok(())
        };
    };
    let arguments = msg.value.pointer("/params/arguments");
    let first = match app.tool_schemas.get(&up.name, tool) {
        Some(known) => param_headers::check(headers, arguments, &known),
        None if !present => return Ok(()),
        None => Err(Mismatch::Unverifiable),
    };
    match first {
        Err(
            Mismatch::Unverifiable | Mismatch::Unknown | Mismatch::Missing | Mismatch::Unexpected,
        ) => {
            app.tool_schemas.fetch(app, up).await;
            match app.tool_schemas.get(&up.name, tool) {
                Some(known) => param_headers::check(headers, arguments, &known),
                None if !present => Ok(()),
                None => Err(Mismatch::Unverifiable),
            }
        }
        other => other,
    }
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

/// Whether a query string names an `access_token` parameter (RFC 6750 §2.3), which we refuse.
///
/// The names are percent-decoded (and `+` read as a space) before they are compared, as any
/// upstream or framework reading the query would: `?access%5Ftoken=` and `?%61ccess_token=` are
/// the same parameter as `?access_token=`. Surrounding whitespace and ASCII case are ignored, so
/// no spelling a lenient reader would accept slips past.
pub(super) fn query_carries_token(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("access_token"))
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
