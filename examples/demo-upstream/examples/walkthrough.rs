//! The walk-through of `cargo xtask demo`: an agent's calls through a running gateway in front
//! of the demo upstream, allowed and refused, each with the HTTP status it must get.
//!
//! It speaks MCP 2026-07-28 statelessly over plain HTTP (reqwest), one JSON-RPC request per
//! POST with the per-request `_meta` and the `Mcp-Method`/`Mcp-Name` headers, so every refusal
//! shows its status and challenge as the gateway sent them. The gateway's base URL is the first
//! argument; the tokens come from the environment (`DEMO_READER_TOKEN`, `DEMO_READER_RW_TOKEN`,
//! `DEMO_ADMIN_TOKEN`), so they never show in a process list. Exits non-zero when a call gets
//! another status than the one the policy promises.
//!
//! ```text
//! cargo run -p demo-upstream --example walkthrough -- http://127.0.0.1:8080
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PROTOCOL_VERSION: &str = "2026-07-28";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: walkthrough <gateway base URL>")?;
    let token = |var: &str| std::env::var(var).with_context(|| format!("{var} is not set"));
    let (reader, reader_rw, admin) = (
        token("DEMO_READER_TOKEN")?,
        token("DEMO_READER_RW_TOKEN")?,
        token("DEMO_ADMIN_TOKEN")?,
    );
    let agent = Agent {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        route: format!("{base}/mcp/tickets"),
        id: 0,
    };
    wait_until_ready(&agent.http, &base).await?;
    let mut agent = agent;
    let get_ticket = json!({"name": "get_ticket", "arguments": {"id": 1}});
    let delete_ticket = json!({"name": "delete_ticket", "arguments": {"id": 1}});
    let steps: [(&str, Option<&str>, &str, &Value, StatusCode); 7] = [
        (
            "an agent without a token calls a tool",
            None,
            "tools/call",
            &get_ticket,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "rita lists the tools: only what she may call is shown",
            Some(&reader),
            "tools/list",
            &json!({}),
            StatusCode::OK,
        ),
        (
            "rita reads ticket 1",
            Some(&reader),
            "tools/call",
            &get_ticket,
            StatusCode::OK,
        ),
        (
            "rita tries to delete ticket 1 (her token lacks tickets:write)",
            Some(&reader),
            "tools/call",
            &delete_ticket,
            StatusCode::FORBIDDEN,
        ),
        (
            "rita tries again with a tickets:write token: her role still forbids it",
            Some(&reader_rw),
            "tools/call",
            &delete_ticket,
            StatusCode::FORBIDDEN,
        ),
        (
            "adam lists the tools",
            Some(&admin),
            "tools/list",
            &json!({}),
            StatusCode::OK,
        ),
        (
            "adam deletes ticket 1",
            Some(&admin),
            "tools/call",
            &delete_ticket,
            StatusCode::OK,
        ),
    ];
    for (title, token, method, params, expected) in steps {
        println!("\n--- {title}");
        let reply = agent.call(token, method, params.clone()).await?;
        println!("    HTTP {}", reply.status.as_u16());
        if let Some(challenge) = &reply.challenge {
            println!("    WWW-Authenticate: {challenge}");
        }
        println!("    {}", summarize(method, &reply));
        if reply.status != expected {
            bail!(
                "expected HTTP {}, got {}: {}",
                expected.as_u16(),
                reply.status.as_u16(),
                reply.body
            );
        }
    }
    Ok(())
}

/// Polls the gateway's `/readyz` until it answers 200 (the caller watches the processes).
async fn wait_until_ready(http: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = http.get(format!("{base}/readyz")).send().await
            && reply.status() == StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway at {base} did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent talking to one gateway route.
struct Agent {
    http: reqwest::Client,
    route: String,
    id: u64,
}

/// What the gateway answered.
struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

impl Agent {
    /// One stateless MCP 2026-07-28 request.
    async fn call(
        &mut self,
        token: Option<&str>,
        method: &str,
        mut params: Value,
    ) -> Result<Reply> {
        self.id += 1;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "demo-walkthrough", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        let mut request = self
            .http
            .post(&self.route)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", PROTOCOL_VERSION)
            .header("Mcp-Method", method)
            .json(&json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}));
        if let Some(name) = params.get("name").and_then(Value::as_str) {
            request = request.header("Mcp-Name", name);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = request.send().await.context("calling the gateway")?;
        let status = reply.status();
        let challenge = reply
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = reply.text().await.context("reading the answer")?;
        Ok(Reply {
            status,
            challenge,
            body,
        })
    }
}

/// The JSON-RPC message in a body: plain JSON, or the data of the last SSE event that is one.
fn message(body: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str(body) {
        return Some(value);
    }
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .last()
}

/// One line on what the answer says: the refusal and its reason, the tools shown, or the
/// start of the result text.
fn summarize(method: &str, reply: &Reply) -> String {
    let Some(msg) = message(&reply.body) else {
        return "(no JSON body)".to_owned();
    };
    if let Some(err) = msg.get("error") {
        return format!(
            "refused: {} (reason {}, request {})",
            err["message"].as_str().unwrap_or("?"),
            err["data"]["reason"].as_str().unwrap_or("?"),
            err["data"]["requestId"].as_str().unwrap_or("?")
        );
    }
    let result = &msg["result"];
    if method == "tools/list" {
        let names: Vec<&str> = result["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        return format!("tools shown: {}", names.join(", "));
    }
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let short: String = text.chars().take(100).collect();
    format!("result: {short}")
}
