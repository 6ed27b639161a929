//! Records every HTTP request the demo upstream receives, and enforces the optional bearer token.
//!
//! Tests use the log to prove what reached the upstream (and what did not): which tools were
//! called and which `Authorization` headers arrived.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The largest request body the middleware buffers; the same limit rmcp applies by default.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// One HTTP request as received by the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method (`POST`, `GET`, `DELETE`).
    pub http_method: String,
    /// JSON-RPC `method` of the (first) message in a POST body, when the body parses.
    pub mcp_method: Option<String>,
    /// `params.name` of every `tools/call` in the body (one, unless the body is a batch).
    pub tool_names: Vec<String>,
    /// The raw `Authorization` header value.
    pub authorization: Option<String>,
    /// The `Mcp-Session-Id` header value.
    pub session_id: Option<String>,
    /// The `MCP-Protocol-Version` header value.
    pub protocol_version: Option<String>,
    /// True when the upstream itself refused the request (missing or wrong bearer token), so it
    /// never reached the MCP service.
    pub refused: bool,
}

/// A thread-safe log of every HTTP request the server received, in arrival order.
#[derive(Debug, Default)]
pub struct CallLog {
    entries: Mutex<Vec<RecordedRequest>>,
}

impl CallLog {
    fn lock(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // Entries are only ever pushed whole, so a poisoned lock still guards a consistent list.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, entry: RecordedRequest) {
        self.lock().push(entry);
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// Names of the tools whose `tools/call` reached the MCP service, in order. Calls the
    /// upstream refused for a missing or wrong bearer token are not included.
    pub fn tool_calls(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|r| !r.refused)
            .flat_map(|r| r.tool_names.iter().cloned())
            .collect()
    }

    /// The `Authorization` header of every HTTP request received (refused ones included).
    pub fn authorization_headers(&self) -> Vec<Option<String>> {
        self.lock()
            .iter()
            .map(|r| r.authorization.clone())
            .collect()
    }

    /// How many HTTP requests were received (refused ones included).
    pub fn request_count(&self) -> usize {
        self.lock().len()
    }

    /// Forget everything recorded so far, so a test can look at one phase in isolation.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// State of the recording middleware.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub(crate) log: Arc<CallLog>,
    pub(crate) require_bearer: Option<Arc<str>>,
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Pulls the JSON-RPC method and the called tool names out of a POST body. A body that is not
/// JSON is left for rmcp to reject; the log then simply has no method for it.
fn inspect_body(bytes: &[u8]) -> (Option<String>, Vec<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return (None, Vec::new());
    };
    let messages = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let method_of = |m: &serde_json::Value| {
        m.get("method")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let first_method = messages.first().and_then(method_of);
    let tool_names = messages
        .iter()
        .filter(|m| method_of(m).as_deref() == Some("tools/call"))
        .filter_map(|m| {
            m.pointer("/params/name")
                .and_then(serde_json::Value::as_str)
        })
        .map(str::to_owned)
        .collect();
    (first_method, tool_names)
}

/// Compares in time independent of where the first difference is, so the demo does not teach a
/// timing leak even though it guards nothing of value.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer_matches(authorization: Option<&HeaderValue>, expected: &str) -> bool {
    let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(token.trim().as_bytes(), expected.as_bytes())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer realm="demo-upstream""#)],
        "missing or invalid bearer token",
    )
        .into_response()
}

/// Axum middleware: buffers the body, records the request, checks the bearer token when one is
/// required, then hands the very same bytes on to the rmcp service.
pub(crate) async fn record_and_authorize(
    State(recorder): State<Recorder>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "could not read request body");
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };
    let (mcp_method, tool_names) = inspect_body(&bytes);
    let refused = recorder.require_bearer.as_deref().is_some_and(|expected| {
        !bearer_matches(parts.headers.get(header::AUTHORIZATION), expected)
    });
    recorder.log.push(RecordedRequest {
        http_method: parts.method.to_string(),
        mcp_method: mcp_method.clone(),
        tool_names,
        authorization: header_string(&parts.headers, "authorization"),
        session_id: header_string(&parts.headers, "mcp-session-id"),
        protocol_version: header_string(&parts.headers, "mcp-protocol-version"),
        refused,
    });
    // Never log the Authorization value itself: it is a credential.
    tracing::debug!(
        http.method = %parts.method,
        mcp.method = mcp_method.as_deref().unwrap_or("-"),
        refused,
        "request received"
    );
    if refused {
        return unauthorized();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_body_finds_method_and_tool_name() {
        let (method, tools) = inspect_body(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket"}}"#,
        );
        assert_eq!(method.as_deref(), Some("tools/call"));
        assert_eq!(tools, ["get_ticket"]);
    }

    #[test]
    fn inspect_body_handles_batches_and_garbage() {
        let (method, tools) = inspect_body(
            br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_ticket"}}]"#,
        );
        assert_eq!(method.as_deref(), Some("notifications/initialized"));
        assert_eq!(tools, ["delete_ticket"]);
        assert_eq!(inspect_body(b"not json"), (None, Vec::new()));
        assert_eq!(inspect_body(b""), (None, Vec::new()));
    }

    #[test]
    fn bearer_check_requires_scheme_and_exact_token() {
        let ok = HeaderValue::from_static("Bearer s3cret");
        assert!(bearer_matches(Some(&ok), "s3cret"));
        assert!(bearer_matches(
            Some(&HeaderValue::from_static("bearer s3cret")),
            "s3cret"
        ));
        assert!(!bearer_matches(
            Some(&HeaderValue::from_static("Bearer s3cre")),
            "s3cret"
        ));
        assert!(!bearer_matches(
            Some(&HeaderValue::from_static("Bearer s3cretX")),
            "s3cret"
        ));
        assert!(!bearer_matches(
            Some(&HeaderValue::from_static("Basic s3cret")),
            "s3cret"
        ));
        assert!(!bearer_matches(
            Some(&HeaderValue::from_static("s3cret")),
            "s3cret"
        ));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn tool_calls_skip_refused_requests() {
        let log = CallLog::default();
        let entry = |tool: &str, refused| RecordedRequest {
            http_method: "POST".into(),
            mcp_method: Some("tools/call".into()),
            tool_names: vec![tool.into()],
            authorization: None,
            session_id: None,
            protocol_version: None,
            refused,
        };
        log.push(entry("get_ticket", false));
        log.push(entry("delete_ticket", true));
        assert_eq!(log.tool_calls(), ["get_ticket"]);
        assert_eq!(log.request_count(), 2);
        assert_eq!(log.authorization_headers(), [None, None]);
        log.clear();
        assert_eq!(log.request_count(), 0);
    }
}
