//! Shared helpers: starting the server, building rmcp clients, raw HTTP and SSE parsing.

use demo_upstream::{DemoConfig, DemoUpstream};
use rmcp::{
    ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult, ProtocolVersion},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";

pub(crate) type Client = RunningService<RoleClient, ()>;

pub(crate) async fn start(cfg: DemoConfig) -> DemoUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    demo_upstream::spawn(listener, cfg)
        .await
        .expect("spawn the demo upstream")
}

fn transport(url: &str, bearer: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = bearer {
        config = config.auth_header(token);
    }
    StreamableHttpClientTransport::from_config(config)
}

/// rmcp's plain `serve`: the `initialize` handshake, so a session-based (legacy) connection.
pub(crate) async fn legacy_client(url: &str, bearer: Option<&str>) -> Client {
    ().serve(transport(url, bearer))
        .await
        .expect("legacy initialize handshake")
}

/// rmcp's 2026-07-28 lifecycle: `server/discover`, then self-contained stateless requests.
pub(crate) async fn modern_client(url: &str, bearer: Option<&str>) -> Client {
    ().serve_with_lifecycle(
        transport(url, bearer),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("2026-07-28 discover")
}

pub(crate) fn tool_call(name: &'static str, args: Value) -> CallToolRequestParams {
    let Value::Object(args) = args else {
        panic!("tool arguments must be a JSON object");
    };
    CallToolRequestParams::new(name).with_arguments(args)
}

/// The JSON carried in the first text content block of a tool result.
pub(crate) fn result_json(result: &CallToolResult) -> Value {
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("a text content block");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The `_meta` a 2026-07-28 request must carry.
pub(crate) fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "raw-test", "version": "1.0" },
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The JSON-RPC messages in an SSE body, skipping events without data (priming events).
pub(crate) fn sse_messages(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            (!data.trim().is_empty())
                .then(|| serde_json::from_str(&data).expect("JSON in SSE data"))
        })
        .collect()
}

pub(crate) fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A bare reqwest client posting hand-written JSON-RPC, to pin down the wire format.
pub(crate) struct Raw {
    http: reqwest::Client,
    url: String,
}

/// A response read to the end: status, headers and the JSON-RPC messages in its body, whether
/// it came as `application/json` or as an SSE stream.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub messages: Vec<Value>,
}

impl RawReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The single JSON-RPC message of the reply.
    pub(crate) fn message(&self) -> &Value {
        assert_eq!(self.messages.len(), 1, "expected one message in {self:?}");
        &self.messages[0]
    }
}

impl Raw {
    pub(crate) fn new(url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
        }
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> RawReply {
        let response = request.send().await.expect("HTTP exchange");
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let headers = response.headers().clone();
        let body = response.text().await.expect("response body");
        let messages = if content_type.starts_with("text/event-stream") {
            sse_messages(&body)
        } else if content_type.starts_with("application/json") {
            vec![serde_json::from_str(&body).expect("JSON body")]
        } else {
            Vec::new()
        };
        RawReply {
            status,
            content_type,
            headers,
            body,
            messages,
        }
    }

    /// POST `body` with the two headers every Streamable HTTP POST needs plus `headers`.
    pub(crate) async fn post(&self, headers: &[(&str, &str)], body: Value) -> RawReply {
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, ACCEPT_BOTH)
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    pub(crate) fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        self.http.request(method, &self.url)
    }
}
