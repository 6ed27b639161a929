//! `ApiError`: one type that renders both the HTTP response and the JSON-RPC error body.
//!
//! The message shown to the client is fixed per error kind and safe; details for operators go to
//! the log through `tracing`, never into the response (house style, after omicron/dropshot).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The JSON-RPC error code of an authorization refusal. The MCP specification defines none; this
/// is an application code outside the reserved -32768..-32000 range.
pub const FORBIDDEN_CODE: i64 = -31003;
/// The JSON-RPC code for "the gateway cannot make a safe decision right now".
pub const UNAVAILABLE_CODE: i64 = -31004;
/// 2026-07-28: `Mcp-Method`/`Mcp-Name` headers that disagree with the body.
pub const HEADER_MISMATCH_CODE: i64 = -32020;
/// 2026-07-28: unsupported protocol version.
pub const UNSUPPORTED_VERSION_CODE: i64 = -32022;

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
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        jsonrpc_code: i64,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            jsonrpc_code,
            id: None,
            request_id: String::new(),
            www_authenticate: None,
        }
    }

    pub fn with_id(mut self, id: Option<Value>) -> Self {
        self.id = id;
        self
    }

    pub fn with_request_id(mut self, request_id: &str) -> Self {
        request_id.clone_into(&mut self.request_id);
        self
    }

    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>, jsonrpc_code: i64) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, jsonrpc_code)
    }

    /// The gateway could not decide safely (audit store down, policy error): fail closed.
    pub fn unavailable(code: &'static str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "the gateway cannot make a safe decision right now; retry later",
            UNAVAILABLE_CODE,
        )
    }

    /// The JSON-RPC error body.
    pub fn body(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id.clone().unwrap_or(Value::Null),
            "error": {
                "code": self.jsonrpc_code,
                "message": self.message,
                "data": { "reason": self.code, "requestId": self.request_id },
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
        resp
    }
}
