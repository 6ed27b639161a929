//! `Refusal`, the status policy in one `match`, and `ApiError`, which renders a refusal as both
//! the HTTP response and the JSON-RPC error body.
//!
//! The message shown to the client is fixed per error kind and safe; details for operators go to
//! the log through `tracing`, never into the response (house style, after omicron/dropshot).

use authz_types::ReasonCode;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::borrow::Cow;

/// The JSON-RPC error code of an authorization refusal. The MCP specification defines none; this
/// is an application code outside the reserved -32768..-32000 range.
pub const FORBIDDEN_CODE: i64 = -31003;
/// The JSON-RPC code for "the gateway cannot make a safe decision right now".
pub const UNAVAILABLE_CODE: i64 = -31004;
/// MCP 2025-11-25's "URL elicitation required": the client shows the URLs in `data.elicitations`
/// and retries the call; the answer to a call held for an approver, when there is a page.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;
/// A call held for an approver when the gateway serves no approval page: retry once approved.
pub const APPROVAL_PENDING_CODE: i64 = -31005;
/// 2026-07-28: `Mcp-Method`/`Mcp-Name` headers that disagree with the body.
pub const HEADER_MISMATCH_CODE: i64 = -32020;
/// 2026-07-28: unsupported protocol version.
pub const UNSUPPORTED_VERSION_CODE: i64 = -32022;

/// Every way the gateway refuses a request. [`Refusal::parts`] is the status policy: one `match`
/// giving the HTTP status, the stable machine-readable code, the client-safe message and the
/// JSON-RPC error code; the snapshot test below pins that table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No MCP route of that name.
    UnknownRoute,
    /// The `Origin` is not on the allow-list (DNS rebinding).
    OriginNotAllowed,
    /// On a loopback listener, a `Host` that does not name the gateway (DNS rebinding).
    HostNotAllowed,
    /// The request head is larger than the configured limit.
    HeadersTooLarge,
    /// GET or DELETE on a route whose clients speak the stateless 2026-07-28 protocol.
    StatelessNeedsPost,
    /// An HTTP method MCP does not use.
    MethodNotAllowed,
    /// No usable bearer token; the reason says why.
    Unauthenticated(ReasonCode),
    /// A POST body that is not `application/json`.
    UnsupportedMediaType,
    /// A POST body over the configured limit.
    BodyTooLarge,
    /// A POST body that did not arrive in full within `server.body_read_timeout_ms`.
    BodyTimeout,
    /// A body that is not one well-formed JSON-RPC message; the classifier's message and code.
    Malformed { message: String, jsonrpc_code: i64 },
    /// An MCP transport header given more than once.
    AmbiguousHeader(&'static str),
    /// An MCP transport header that is not printable ASCII.
    InvalidHeader(&'static str),
    /// An `MCP-Protocol-Version` the gateway does not speak.
    UnsupportedProtocolVersion(&'static [&'static str]),
    /// 2026-07-28 `Mcp-Method`/`Mcp-Name` headers that disagree with the body, or are missing.
    HeaderMismatch(&'static str),
    /// A multi round-trip retry whose `requestState` does not open for this caller and call.
    RequestStateInvalid,
    /// A task the caller does not own (reported as unknown).
    TaskNotFound,
    /// A session the caller does not own or that ended (reported as unknown).
    SessionNotFound,
    /// The token lacks a scope the operation needs.
    InsufficientScope,
    /// A method the gateway does not know is never passed on.
    UnknownMethod,
    /// The policy refused; the reason code names why.
    Forbidden(ReasonCode),
    /// The tool's or prompt's definition changed upstream (or was never approved under strict
    /// pinning); it waits for an operator's approval.
    DefinitionUnapproved,
    /// The call waits for an approver, who decides on the approval page (URL elicitation).
    ApprovalPending,
    /// The call waits for an approver; no page is served (`authzctl approvals`).
    ApprovalPendingWithoutPage,
    /// An approver rejected this very call; identical calls are refused for a while.
    ApprovalRejected,
    /// The principal has too many requests in flight.
    TooManyRequests,
    /// The client address has caused too many unauthenticated refusals; retry after this many
    /// seconds.
    ClientRateLimited { retry_after_secs: u64 },
    /// The call is over a quota; retry after this many seconds.
    QuotaExceeded { retry_after_secs: u64 },
    /// The audit store did not take the record: fail closed.
    AuditUnavailable,
    /// The policy engine could not decide: fail closed.
    PolicyUnavailable,
    /// The upstream could not be reached or failed.
    UpstreamUnavailable,
    /// The gateway could not obtain its own upstream credential.
    UpstreamCredentialsUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream refused the gateway's credential (its 401/403).
    UpstreamRejectedGateway,
    /// The upstream's answer could not be read.
    UpstreamInvalid,
}

/// The JSON-RPC code for an invalid request.
const INVALID_REQUEST: i64 = -32600;
/// The JSON-RPC code for an unknown method.
const METHOD_NOT_FOUND: i64 = -32601;
/// The JSON-RPC code for invalid parameters.
const INVALID_PARAMS: i64 = -32602;
/// The JSON-RPC code for an internal error.
const INTERNAL_ERROR: i64 = -32603;
/// The JSON-RPC code used for "authentication required" and "session not found".
const AUTH_OR_SESSION: i64 = -32001;

impl Refusal {
    /// The status policy: HTTP status, machine-readable code, client message, JSON-RPC code.
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, Cow<'static, str>, i64) {
        use Refusal::*;
        let fixed = Cow::Borrowed;
        match self {
            UnknownRoute => (
                StatusCode::NOT_FOUND,
                "unknown_route",
                fixed("no such MCP endpoint"),
                METHOD_NOT_FOUND,
            ),
            OriginNotAllowed => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                fixed("origin not allowed"),
                INVALID_REQUEST,
            ),
            HostNotAllowed => (
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                fixed("host not allowed"),
                INVALID_REQUEST,
            ),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                fixed("the request headers are too large"),
                INVALID_REQUEST,
            ),
            StatelessNeedsPost => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                fixed("MCP 2026-07-28 is stateless: use POST"),
                INVALID_REQUEST,
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                fixed("use POST, GET or DELETE"),
                INVALID_REQUEST,
            ),
            Unauthenticated(reason) => (
                StatusCode::UNAUTHORIZED,
                reason.as_str(),
                fixed("authentication required"),
                AUTH_OR_SESSION,
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                fixed("POST bodies must be application/json"),
                INVALID_REQUEST,
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                fixed("the request body is too large"),
                INVALID_REQUEST,
            ),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                fixed("the request body did not arrive in time"),
                INVALID_REQUEST,
            ),
            Malformed {
                message,
                jsonrpc_code,
            } => (
                StatusCode::BAD_REQUEST,
                "malformed_request",
                Cow::Owned(message.clone()),
                *jsonrpc_code,
            ),
            AmbiguousHeader(name) => (
                StatusCode::BAD_REQUEST,
                "ambiguous_header",
                Cow::Owned(format!("{name} must appear at most once")),
                INVALID_REQUEST,
            ),
            InvalidHeader(name) => (
                StatusCode::BAD_REQUEST,
                "invalid_header",
                Cow::Owned(format!("{name} must be printable ASCII")),
                INVALID_REQUEST,
            ),
            UnsupportedProtocolVersion(supported) => (
                StatusCode::BAD_REQUEST,
                "unsupported_protocol_version",
                Cow::Owned(format!(
                    "unsupported MCP-Protocol-Version; supported: {}",
                    supported.join(", ")
                )),
                UNSUPPORTED_VERSION_CODE,
            ),
            HeaderMismatch(what) => (
                StatusCode::BAD_REQUEST,
                "header_mismatch",
                fixed(what),
                HEADER_MISMATCH_CODE,
            ),
            RequestStateInvalid => (
                StatusCode::BAD_REQUEST,
                "request_state_invalid",
                fixed("the requestState is not valid for this request"),
                INVALID_PARAMS,
            ),
            TaskNotFound => (
                StatusCode::NOT_FOUND,
                "task_not_found",
                fixed("task not found"),
                INVALID_PARAMS,
            ),
            SessionNotFound => (
                StatusCode::NOT_FOUND,
                "session_not_found",
                fixed("session not found"),
                AUTH_OR_SESSION,
            ),
            InsufficientScope => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                fixed("insufficient scope"),
                FORBIDDEN_CODE,
            ),
            UnknownMethod => (
                StatusCode::NOT_FOUND,
                "unknown_method",
                fixed("method not found"),
                METHOD_NOT_FOUND,
            ),
            Forbidden(reason) => (
                StatusCode::FORBIDDEN,
                reason.as_str(),
                fixed("forbidden by policy"),
                FORBIDDEN_CODE,
            ),
            DefinitionUnapproved => (
                StatusCode::FORBIDDEN,
                "definition_unapproved",
                fixed("this definition changed upstream and waits for an operator's approval"),
                FORBIDDEN_CODE,
            ),
            // Held, not refused: a JSON-RPC answer (200) the client's SDK acts on.
            ApprovalPending => (
                StatusCode::OK,
                "approval_required",
                fixed("this call waits for an approver: open the URL, then retry the same call"),
                URL_ELICITATION_REQUIRED,
            ),
            ApprovalPendingWithoutPage => (
                StatusCode::OK,
                "approval_required",
                fixed("this call waits for an approver; retry the same call once it is approved"),
                APPROVAL_PENDING_CODE,
            ),
            ApprovalRejected => (
                StatusCode::FORBIDDEN,
                "approval_rejected",
                fixed("an approver rejected this call"),
                FORBIDDEN_CODE,
            ),
            TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                fixed("too many requests in flight for this principal"),
                INTERNAL_ERROR,
            ),
            QuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                fixed("rate limit or quota exceeded; retry later"),
                INTERNAL_ERROR,
            ),
            ClientRateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "client_rate_limited",
                fixed("too many unauthenticated requests from this client; retry later"),
                AUTH_OR_SESSION,
            ),
            AuditUnavailable => unavailable("audit_unavailable"),
            PolicyUnavailable => unavailable("policy_unavailable"),
            UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                fixed("the upstream MCP server failed"),
                INTERNAL_ERROR,
            ),
            UpstreamCredentialsUnavailable => (
                StatusCode::BAD_GATEWAY,
                "upstream_credentials_unavailable",
                fixed("the gateway cannot authenticate to the upstream MCP server"),
                INTERNAL_ERROR,
            ),
            UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                fixed("the upstream MCP server timed out"),
                INTERNAL_ERROR,
            ),
            UpstreamRejectedGateway => (
                StatusCode::BAD_GATEWAY,
                "upstream_rejected_gateway",
                fixed("the upstream MCP server refused the gateway"),
                INTERNAL_ERROR,
            ),
            UpstreamInvalid => (
                StatusCode::BAD_GATEWAY,
                "upstream_invalid",
                fixed("the upstream response could not be read"),
                INTERNAL_ERROR,
            ),
        }
    }
}

/// The gateway could not decide safely (audit store down, policy error): fail closed.
fn unavailable(code: &'static str) -> (StatusCode, &'static str, Cow<'static, str>, i64) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        Cow::Borrowed("the gateway cannot make a safe decision right now; retry later"),
        UNAVAILABLE_CODE,
    )
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let (status, code, message, jsonrpc_code) = refusal.parts();
        let retry_after_secs = match refusal {
            Refusal::ClientRateLimited { retry_after_secs }
            | Refusal::QuotaExceeded { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        // 2026-07-28 gives this error's data a layout clients read to fall back: the versions
        // the server supports (`requested` is added where the version is known).
        let data = match &refusal {
            Refusal::UnsupportedProtocolVersion(supported) => {
                Some(json!({ "supported": supported }))
            }
            _ => None,
        };
        Self {
            status,
            code,
            message: message.into_owned(),
            jsonrpc_code,
            id: None,
            request_id: String::new(),
            www_authenticate: None,
            retry_after_secs,
            data,
            tool_result: None,
            result: None,
        }
    }
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code (a `ReasonCode` string or a transport code).
    pub code: &'static str,
    /// Client-safe message.
    pub message: String,
    pub jsonrpc_code: i64,
    /// The JSON-RPC id of the refused request, when known.
    pub id: Option<Value>,
    pub request_id: String,
    pub www_authenticate: Option<String>,
    /// Sent as `Retry-After` (seconds), when the refusal says when to come back.
    pub retry_after_secs: Option<u64>,
    /// Members the refusal adds to the error's `data` (beside `reason` and `requestId`).
    pub data: Option<Value>,
    /// When set, the refusal is answered as a tool error result instead (see
    /// [`ApiError::as_tool_result`]).
    pub tool_result: Option<ToolDenial>,
    /// When set, the answer is this JSON-RPC result instead of an error (a held call's
    /// 2026-07-28 `input_required` result).
    pub result: Option<Value>,
}

/// A policy denial of a `tools/call` rendered as a tool error result (draft SEP-2643).
#[derive(Debug, Clone)]
pub struct ToolDenial {
    /// What an agent can do about it: `request_access` (no rule grants it: a role could) or
    /// `none` (a rule forbids it: asking will not help).
    pub remediation: &'static str,
    /// The text content shown to the model.
    pub text: &'static str,
    /// The call spoke 2026-07-28, whose results carry `resultType`.
    pub stateless: bool,
}

/// The `_meta` key of a structured denial (draft SEP-2643).
pub const AUTHORIZATION_META_KEY: &str = "io.modelcontextprotocol/authorization";

impl ApiError {
    pub fn with_id(mut self, id: Option<Value>) -> Self {
        self.id = id;
        self
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        request_id.clone_into(&mut self.request_id);
        self
    }

    /// Adds `key: value` to the error's `data`.
    pub fn with_data(mut self, key: &str, value: Value) -> Self {
        let data = self.data.get_or_insert_with(|| json!({}));
        if let Some(map) = data.as_object_mut() {
            map.insert(key.to_owned(), value);
        }
        self
    }

    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// Renders a policy denial (`reason` is the decision's) as an HTTP 200 tool error result:
    /// `isError: true`, a text for the model, and
    /// `_meta["io.modelcontextprotocol/authorization"] = {reason, remediation, requestId}`, so an
    /// agent can tell a denial a role could lift from one nothing will.
    pub fn as_tool_result(mut self, reason: ReasonCode, stateless: bool) -> Self {
        let (remediation, text) = match reason {
            ReasonCode::NoMatchingRule => (
                "request_access",
                "Not allowed: no policy rule grants your roles this tool. An administrator can \
                 grant a role that allows it; quote the request id.",
            ),
            _ => (
                "none",
                "Not allowed: the policy forbids this tool for you. Retrying or asking for \
                 another role will not change that.",
            ),
        };
        self.status = StatusCode::OK;
        self.tool_result = Some(ToolDenial {
            remediation,
            text,
            stateless,
        });
        self
    }

    /// The JSON-RPC body: the error, or the tool error result of a structured denial.
    pub fn body(&self) -> Value {
        if let Some(result) = &self.result {
            return json!({
                "jsonrpc": "2.0",
                "id": self.id.clone().unwrap_or(Value::Null),
                "result": result,
            });
        }
        if let Some(t) = &self.tool_result {
            let mut result = json!({
                "content": [{"type": "text", "text": t.text}],
                "isError": true,
                "_meta": {
                    AUTHORIZATION_META_KEY: {
                        "reason": self.code,
                        "remediation": t.remediation,
                        "requestId": self.request_id,
                    }
                }
            });
            if t.stateless {
                result["resultType"] = json!("complete");
            }
            return json!({
                "jsonrpc": "2.0",
                "id": self.id.clone().unwrap_or(Value::Null),
                "result": result,
            });
        }
        let mut data = json!({ "reason": self.code, "requestId": self.request_id });
        if let (Some(map), Some(Value::Object(extra))) = (data.as_object_mut(), &self.data) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        json!({
            "jsonrpc": "2.0",
            "id": self.id.clone().unwrap_or(Value::Null),
            "error": {
                "code": self.jsonrpc_code,
                "message": self.message,
                "data": data,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", v);
        }
        if let Some(c) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // A client whose body stalled gets no second chance on this connection (and hyper does
        // not wait to drain the rest of its body).
        if self.status == StatusCode::REQUEST_TIMEOUT {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal::{self, *};
    use authz_types::ReasonCode;

    /// One example of every refusal. The exhaustive `match` stops compiling when a variant is
    /// added, which is the cue to add its example (and its row in the table below) too.
    fn examples() -> Vec<Refusal> {
        let all = vec![
            UnknownRoute,
            OriginNotAllowed,
            HostNotAllowed,
            HeadersTooLarge,
            StatelessNeedsPost,
            MethodNotAllowed,
            Unauthenticated(ReasonCode::TokenMissing),
            UnsupportedMediaType,
            BodyTooLarge,
            BodyTimeout,
            Malformed {
                message: "invalid JSON".into(),
                jsonrpc_code: -32700,
            },
            AmbiguousHeader("mcp-session-id"),
            InvalidHeader("mcp-name"),
            UnsupportedProtocolVersion(&["2025-11-25", "2026-07-28"]),
            HeaderMismatch("Mcp-Method does not match the body"),
            RequestStateInvalid,
            TaskNotFound,
            SessionNotFound,
            InsufficientScope,
            UnknownMethod,
            Forbidden(ReasonCode::NoMatchingRule),
            DefinitionUnapproved,
            ApprovalPending,
            ApprovalPendingWithoutPage,
            ApprovalRejected,
            TooManyRequests,
            QuotaExceeded {
                retry_after_secs: 1,
            },
            ClientRateLimited {
                retry_after_secs: 1,
            },
            AuditUnavailable,
            PolicyUnavailable,
            UpstreamUnavailable,
            UpstreamCredentialsUnavailable,
            UpstreamTimeout,
            UpstreamRejectedGateway,
            UpstreamInvalid,
        ];
        for r in &all {
            match r {
                UnknownRoute
                | OriginNotAllowed
                | HostNotAllowed
                | HeadersTooLarge
                | StatelessNeedsPost
                | MethodNotAllowed
                | Unauthenticated(_)
                | UnsupportedMediaType
                | BodyTooLarge
                | BodyTimeout
                | Malformed { .. }
                | AmbiguousHeader(_)
                | InvalidHeader(_)
                | UnsupportedProtocolVersion(_)
                | HeaderMismatch(_)
                | RequestStateInvalid
                | TaskNotFound
                | SessionNotFound
                | InsufficientScope
                | UnknownMethod
                | Forbidden(_)
                | DefinitionUnapproved
                | ApprovalPending
                | ApprovalPendingWithoutPage
                | ApprovalRejected
                | TooManyRequests
                | QuotaExceeded { .. }
                | ClientRateLimited { .. }
                | AuditUnavailable
                | PolicyUnavailable
                | UpstreamUnavailable
                | UpstreamCredentialsUnavailable
                | UpstreamTimeout
                | UpstreamRejectedGateway
                | UpstreamInvalid => {}
            }
        }
        all
    }

    /// The status policy (ARCHITECTURE.md, "Errors and status policy"), pinned row by row:
    /// HTTP status, machine code, JSON-RPC code, client message.
    const POLICY: &str = concat!(
        "404 unknown_route -32601 no such MCP endpoint\n",
        "403 origin_not_allowed -32600 origin not allowed\n",
        "403 host_not_allowed -32600 host not allowed\n",
        "431 headers_too_large -32600 the request headers are too large\n",
        "405 method_not_allowed -32600 MCP 2026-07-28 is stateless: use POST\n",
        "405 method_not_allowed -32600 use POST, GET or DELETE\n",
        "401 token_missing -32001 authentication required\n",
        "415 unsupported_media_type -32600 POST bodies must be application/json\n",
        "413 body_too_large -32600 the request body is too large\n",
        "408 body_timeout -32600 the request body did not arrive in time\n",
        "400 malformed_request -32700 invalid JSON\n",
        "400 ambiguous_header -32600 mcp-session-id must appear at most once\n",
        "400 invalid_header -32600 mcp-name must be printable ASCII\n",
        "400 unsupported_protocol_version -32022 unsupported MCP-Protocol-Version; supported: 2025-11-25, 2026-07-28\n",
        "400 header_mismatch -32020 Mcp-Method does not match the body\n",
        "400 request_state_invalid -32602 the requestState is not valid for this request\n",
        "404 task_not_found -32602 task not found\n",
        "404 session_not_found -32001 session not found\n",
        "403 insufficient_scope -31003 insufficient scope\n",
        "404 unknown_method -32601 method not found\n",
        "403 no_matching_rule -31003 forbidden by policy\n",
        "403 definition_unapproved -31003 this definition changed upstream and waits for an operator's approval\n",
        "200 approval_required -32042 this call waits for an approver: open the URL, then retry the same call\n",
        "200 approval_required -31005 this call waits for an approver; retry the same call once it is approved\n",
        "403 approval_rejected -31003 an approver rejected this call\n",
        "429 too_many_requests -32603 too many requests in flight for this principal\n",
        "429 quota_exceeded -32603 rate limit or quota exceeded; retry later\n",
        "429 client_rate_limited -32001 too many unauthenticated requests from this client; retry later\n",
        "503 audit_unavailable -31004 the gateway cannot make a safe decision right now; retry later\n",
        "503 policy_unavailable -31004 the gateway cannot make a safe decision right now; retry later\n",
        "502 upstream_unavailable -32603 the upstream MCP server failed\n",
        "502 upstream_credentials_unavailable -32603 the gateway cannot authenticate to the upstream MCP server\n",
        "504 upstream_timeout -32603 the upstream MCP server timed out\n",
        "502 upstream_rejected_gateway -32603 the upstream MCP server refused the gateway\n",
        "502 upstream_invalid -32603 the upstream response could not be read\n",
    );

    #[test]
    fn the_status_policy_is_this_table() {
        let table: String = examples()
            .iter()
            .map(|r| {
                let (status, code, message, jsonrpc) = r.parts();
                format!("{} {code} {jsonrpc} {message}\n", status.as_u16())
            })
            .collect();
        assert_eq!(table, POLICY, "the status policy changed:\n{table}");
    }
}
