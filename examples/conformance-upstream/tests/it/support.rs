//! Shared helpers: starting the fixture and posting hand-written 2026-07-28 JSON-RPC.

use conformance_upstream::ConformanceUpstream;
use serde_json::{Value, json};

pub(crate) async fn start() -> ConformanceUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    conformance_upstream::spawn(listener)
        .await
        .expect("spawn the conformance upstream")
}

/// A reply read to the end: the HTTP status, whether a session was opened, and the JSON-RPC
/// response (the last message of an SSE stream, the JSON body, or the body as a string).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub session: Option<String>,
    pub message: Value,
}

impl Reply {
    pub(crate) fn result(&self) -> &Value {
        assert!(
            self.message.get("error").is_none(),
            "unexpected error: {self:?}"
        );
        &self.message["result"]
    }
}

/// The JSON-RPC messages carried in an SSE body (events without data are priming events).
fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.trim_start())
                .collect();
            let data = data.join("\n");
            (!data.trim().is_empty())
                .then(|| serde_json::from_str(&data).expect("JSON in SSE data"))
        })
        .collect()
}

/// Posts one 2026-07-28 request: per-request `_meta` (merged under `params._meta`) plus the
/// `MCP-Protocol-Version`, `Mcp-Method` and (for named methods) `Mcp-Name` headers.
pub(crate) async fn call(url: &str, host: Option<&str>, method: &str, mut params: Value) -> Reply {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "fixture-test", "version": "1.0" },
        "io.modelcontextprotocol/clientCapabilities": { "elicitation": {}, "sampling": {} }
    });
    params["_meta"] = meta;
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .body(body.to_string());
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.expect("HTTP exchange");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.expect("response body");
    let message = if is_sse {
        sse_messages(&text).pop().expect("a message on the stream")
    } else {
        // Refusals before the MCP layer (403, 406, ...) may carry plain text.
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        session,
        message,
    }
}
