//! 2026-07-28 custom headers (SEP-2243): a tool's input schema may mark a parameter with
//! `"x-mcp-header": "<Name>"`, and the client then mirrors that argument of a `tools/call` into
//! an `Mcp-Param-<Name>` header, so load balancers and upstreams can route on it without reading
//! the body. A header that says one thing while the body says another is a parser differential:
//! whatever routes on the header sees a call the gateway did not authorize. So, like `Mcp-Method`
//! and `Mcp-Name`, every `Mcp-Param-*` header must agree with the body (the body is the truth)
//! before it is forwarded, or the call is refused (400, -32020).
//!
//! Which headers a tool has comes from its input schema, learned from every `tools/list` result
//! the gateway passes on ([`ToolSchemas::learn`]). A call carrying `Mcp-Param-*` headers for a
//! tool this replica has not seen listed makes the gateway list the upstream's tools itself once
//! ([`ToolSchemas::fetch`]); a tool still unknown after that cannot have its headers checked, and
//! the call is refused rather than forwarded with headers nobody vouched for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::config::Upstream;

/// The prefix of every custom header (lowercase, as `HeaderMap` stores names).
pub(crate) const PREFIX: &str = "mcp-param-";
/// The most tools remembered per upstream; a list beyond it is learned only in part (calls to
/// the tools left out are then treated as unknown: checked after a fetch, or refused).
const MAX_TOOLS: usize = 10_000;
/// The most pages one fetch of an upstream's tool list reads.
const MAX_PAGES: usize = 20;
/// An upstream's tools are fetched at most this often (a burst of calls to a tool it does not
/// list must not become a burst of `tools/list` requests).
const REFETCH_AFTER: Duration = Duration::from_secs(5);
/// The protocol version of the gateway's own `tools/list` (custom headers exist only in it).
const VERSION: &str = "2026-07-28";

/// One annotated parameter: where its value sits in `arguments`, and its header's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Annotation {
    /// Property names from the schema root to the annotated property.
    path: Vec<String>,
    /// The full header name, lowercase: `mcp-param-<name>`.
    header: String,
}

/// The annotated parameters of one tool's input schema. Only well-formed annotations count
/// (a non-empty HTTP token on a property reached from the root through `properties` alone):
/// clients mirror no others.
pub(crate) fn annotations(input_schema: &Value) -> Vec<Annotation> {
    fn walk(properties: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<Annotation>) {
        let Some(Value::Object(properties)) = properties else {
            return;
        };
        for (name, schema) in properties {
            path.push(name.clone());
            if let Some(Value::String(header)) = schema.get("x-mcp-header")
                && is_token(header)
            {
                out.push(Annotation {
                    path: path.clone(),
                    header: format!("{PREFIX}{}", header.to_ascii_lowercase()),
                });
            }
            walk(schema.get("properties"), path, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(input_schema.get("properties"), &mut Vec::new(), &mut out);
    out
}

/// An RFC 9110 token (the characters a header name may have), non-empty.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The SEP-2243 string form of an argument: strings as they are, numbers and booleans as JSON
/// writes them; anything else (objects, arrays, null) has no header form.
fn header_form(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A header value as the client meant it: `=?base64?<b64>?=` decoded, anything else as sent.
/// `None` when the Base64 or the UTF-8 inside is broken.
fn decoded(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// Whether the request carries any `Mcp-Param-*` header.
pub(crate) fn any_present(headers: &HeaderMap) -> bool {
    headers.keys().any(|n| n.as_str().starts_with(PREFIX))
}

/// Why a call's custom headers are refused (the `message` of the -32020 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// A header whose (decoded) value is not the body's argument.
    Differs,
    /// An annotated argument in the body without its header.
    Missing,
    /// A header for an annotated argument the body does not have (or has as null).
    Unexpected,
    /// A header that names no annotated parameter of the tool.
    Unknown,
    /// A header sent more than once, or not printable ASCII, or broken Base64.
    Malformed,
    /// The tool's input schema is not known, so its headers cannot be checked.
    Unverifiable,
}

impl Mismatch {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Mismatch::Differs => "an Mcp-Param header does not match the body",
            Mismatch::Missing => "an Mcp-Param header is required for an annotated argument",
            Mismatch::Unexpected => "an Mcp-Param header names an argument the body does not have",
            Mismatch::Unknown => "an Mcp-Param header names no annotated parameter of the tool",
            Mismatch::Malformed => "an Mcp-Param header is repeated or not validly encoded",
            Mismatch::Unverifiable => {
                "Mcp-Param headers cannot be checked: the tool's input schema is not known"
            }
        }
    }
}

/// Checks a `tools/call`'s `Mcp-Param-*` headers against its `arguments`, given the tool's
/// annotated parameters: every annotated argument present in the body has exactly one header
/// with its value, no header is left over, and none names a parameter the tool lacks.
pub(crate) fn check(
    headers: &HeaderMap,
    arguments: Option<&Value>,
    known: &[Annotation],
) -> Result<(), Mismatch> {
    for a in known {
        let mut values = headers.get_all(a.header.as_str()).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Err(Mismatch::Malformed);
        }
        let body = arguments
            .and_then(|args| a.path.iter().try_fold(args, |v, k| v.get(k)))
            .and_then(header_form);
        match (first, body) {
            (None, None) => {}
            (None, Some(_)) => return Err(Mismatch::Missing),
            (Some(_), None) => return Err(Mismatch::Unexpected),
            (Some(raw), Some(expected)) => {
                let raw = raw
                    .to_str()
                    .ok()
                    .filter(|s| s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
                    .ok_or(Mismatch::Malformed)?;
                if decoded(raw).ok_or(Mismatch::Malformed)? != expected {
                    return Err(Mismatch::Differs);
                }
            }
        }
    }
    let unknown = headers.keys().any(|name| {
        name.as_str().starts_with(PREFIX) && !known.iter().any(|a| a.header == name.as_str())
    });
    if unknown {
        return Err(Mismatch::Unknown);
    }
    Ok(())
}

/// The annotated parameters of every tool the gateway has seen an upstream list.
#[derive(Debug, Default)]
pub(crate) struct ToolSchemas {
    by_upstream: Mutex<HashMap<String, Learned>>,
    /// One lock per upstream: concurrent calls share a fetch, and a slow upstream holds up
    /// only its own.
    fetching: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct Learned {
    tools: HashMap<String, std::sync::Arc<[Annotation]>>,
    fetched: Option<Instant>,
}

impl ToolSchemas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Learned>> {
        self.by_upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the annotated parameters of every tool in a `tools/list` result's `tools`
    /// (the upstream's answer, before it is filtered for the caller). A tool listed again is
    /// replaced: its schema may have changed.
    pub(crate) fn learn(&self, upstream: &str, tools: &[Value]) {
        let mut all = self.lock();
        let learned = all.entry(upstream.to_owned()).or_default();
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            if learned.tools.len() >= MAX_TOOLS && !learned.tools.contains_key(name) {
                continue;
            }
            let found = tool.get("inputSchema").map(annotations).unwrap_or_default();
            learned.tools.insert(name.to_owned(), found.into());
        }
    }

    /// The annotated parameters of `tool`, if the upstream has listed it.
    pub(crate) fn get(&self, upstream: &str, tool: &str) -> Option<std::sync::Arc<[Annotation]>> {
        self.lock().get(upstream)?.tools.get(tool).cloned()
    }

    /// Lists the upstream's tools itself (2026-07-28, with the gateway's own credential, every
    /// page) and learns them, unless that was done less than [`REFETCH_AFTER`] ago. Failures are
    /// logged; the caller then finds the tool still unknown.
    pub(crate) async fn fetch(&self, app: &crate::App, up: &Upstream) {
        let lock = std::sync::Arc::clone(
            self.fetching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(up.name.clone())
                .or_default(),
        );
        let _one_at_a_time = lock.lock().await;
        if self
            .lock()
            .get(&up.name)
            .and_then(|l| l.fetched)
            .is_some_and(|at| at.elapsed() < REFETCH_AFTER)
        {
            return;
        }
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            match list_page(app, up, page, cursor.as_deref()).await {
                Ok(result) => {
                    if let Some(tools) = result.get("tools").and_then(Value::as_array) {
                        self.learn(&up.name, tools);
                    }
                    cursor = result
                        .get("nextCursor")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    if cursor.is_none() {
                        break;
                    }
                }
                Err(why) => {
                    tracing::warn!(upstream = %up.name, %why, "could not list the upstream's tools to check Mcp-Param headers");
                    break;
                }
            }
        }
        self.lock().entry(up.name.clone()).or_default().fetched = Some(Instant::now());
    }
}

/// One `tools/list` page from the upstream: its `result`.
async fn list_page(
    app: &crate::App,
    up: &Upstream,
    page: usize,
    cursor: Option<&str>,
) -> Result<Value, String> {
    let mut params = json!({
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {
                "name": "authz-gateway",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    });
    if let Some(c) = cursor {
        params["cursor"] = Value::String(c.to_owned());
    }
    let id = format!("authz-gateway-tools-{page}");
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
    let mut headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, axum::http::HeaderValue::from_static(v));
    };
    set(&mut headers, "content-type", "application/json");
    set(
        &mut headers,
        "accept",
        "application/json, text/event-stream",
    );
    set(&mut headers, "mcp-protocol-version", VERSION);
    set(&mut headers, "mcp-method", "tools/list");
    let resp = crate::upstream::forward(
        app,
        up,
        reqwest::Method::POST,
        &headers,
        Some(serde_json::to_vec(&body).map_err(|e| e.to_string())?.into()),
        false,
        None,
    )
    .await
    .map_err(|e| format!("HTTP {}", e.status.as_u16()))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let id = Value::String(id);
    let answer = read_answer(resp, sse, &id).await?;
    match answer.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err("tools/list answered with an error".to_owned()),
    }
}

/// The answer to `id` in the response body (JSON, or SSE read up to the event holding it: the
/// stream may stay open after it), reading at most [`crate::filter::MAX_FILTERED_BYTES`].
async fn read_answer(mut resp: reqwest::Response, sse: bool, id: &Value) -> Result<Value, String> {
    let (mut body, mut read) = (Vec::new(), 0);
    let mut events = SseEvents::default();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        read += chunk.len();
        if read > crate::filter::MAX_FILTERED_BYTES {
            return Err("tools/list answer too large".to_owned());
        }
        if !sse {
            body.extend_from_slice(&chunk);
        } else if let Some(answer) = events
            .push(&chunk)
            .into_iter()
            .find(|m| m.get("id") == Some(id))
        {
            return Ok(answer);
        }
    }
    if sse {
        return Err("no answer to tools/list in the stream".to_owned());
    }
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
}

/// An incremental SSE reader yielding the JSON message of each complete event (`data:` lines
/// joined), whatever line endings the stream uses, also when a CRLF is split across chunks.
#[derive(Debug, Default)]
struct SseEvents {
    /// Bytes of an unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting this one belongs to it.
    after_cr: bool,
    data: Option<String>,
}

impl SseEvents {
    fn push(&mut self, chunk: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        for &b in chunk {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.end_line(&line, &mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<Value>) {
        if line.is_empty() {
            if let Some(data) = self.data.take()
                && let Ok(v) = serde_json::from_str(&data)
            {
                out.push(v);
            }
            return;
        }
        if let Some(v) = line.strip_prefix(b"data:") {
            let v = String::from_utf8_lossy(v.strip_prefix(b" ").unwrap_or(v));
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&v);
                }
                None => self.data = Some(v.into_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "count": {"type": "integer", "x-mcp-header": "Count"},
                "plain": {"type": "string"},
                "bad": {"type": "string", "x-mcp-header": "not a token"},
                "nested": {"type": "object", "properties": {
                    "tenant": {"type": "string", "x-mcp-header": "Tenant"}
                }}
            }
        })
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn well_formed_annotations_along_properties_are_found() {
        let found = annotations(&schema());
        let names: Vec<_> = found.iter().map(|a| a.header.as_str()).collect();
        assert_eq!(
            names,
            ["mcp-param-region", "mcp-param-count", "mcp-param-tenant"],
            "{found:?}"
        );
        assert_eq!(found[2].path, ["nested", "tenant"]);
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let known = annotations(&schema());
        let args = json!({"region": "eu-west", "count": 3, "nested": {"tenant": "ünï"}});
        let b64 = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("ünï")
        );
        let good = headers(&[
            ("mcp-param-region", "eu-west"),
            ("Mcp-Param-Count", "3"),
            ("mcp-param-tenant", &b64),
        ]);
        assert_eq!(check(&good, Some(&args), &known), Ok(()));
        // Arguments not in the body need no header; no headers and no arguments is fine.
        assert_eq!(check(&HeaderMap::new(), Some(&json!({})), &known), Ok(()));
        assert_eq!(check(&HeaderMap::new(), None, &known), Ok(()));

        let cases: &[(&[(&str, &str)], Mismatch)] = &[
            (
                &[("mcp-param-region", "us-east"), ("mcp-param-count", "3")],
                Mismatch::Differs,
            ),
            (&[("mcp-param-region", "eu-west")], Mismatch::Missing),
            (
                &[
                    ("mcp-param-region", "eu-west"),
                    ("mcp-param-region", "eu-west"),
                ],
                Mismatch::Malformed,
            ),
            (
                &[
                    ("mcp-param-region", "=?base64?!!!?="),
                    ("mcp-param-count", "3"),
                ],
                Mismatch::Malformed,
            ),
        ];
        let args = json!({"region": "eu-west", "count": 3});
        for (pairs, want) in cases {
            assert_eq!(
                check(&headers(pairs), Some(&args), &known),
                Err(*want),
                "{pairs:?}"
            );
        }
        let only_region = json!({"region": "eu-west"});
        assert_eq!(
            check(
                &headers(&[("mcp-param-region", "eu-west"), ("mcp-param-count", "3")]),
                Some(&only_region),
                &known
            ),
            Err(Mismatch::Unexpected)
        );
        assert_eq!(
            check(
                &headers(&[("mcp-param-region", "eu-west"), ("mcp-param-zone", "a")]),
                Some(&only_region),
                &known
            ),
            Err(Mismatch::Unknown)
        );
        // A null argument has no header form: a header for it is unexpected.
        assert_eq!(
            check(
                &headers(&[("mcp-param-region", "null")]),
                Some(&json!({"region": null})),
                &known
            ),
            Err(Mismatch::Unexpected)
        );
    }

    #[test]
    fn sse_answers_are_read_with_any_line_ending_however_chunked() {
        let body: &[u8] =
            b"event: message\r\ndata: {\"id\":1,\r\ndata: \"result\":{}}\r\n\r\ndata: {\"id\":2}\r\rdata: 3";
        let want = [json!({"id": 1, "result": {}}), json!({"id": 2})];
        for size in 1..=body.len() {
            let mut events = SseEvents::default();
            let got: Vec<Value> = body.chunks(size).flat_map(|c| events.push(c)).collect();
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn learned_tools_are_replaced_when_listed_again() {
        let schemas = ToolSchemas::default();
        schemas.learn("up", &[json!({"name": "t", "inputSchema": schema()})]);
        assert_eq!(schemas.get("up", "t").map(|a| a.len()), Some(3));
        schemas.learn(
            "up",
            &[json!({"name": "t", "inputSchema": {"type": "object"}})],
        );
        assert_eq!(schemas.get("up", "t").map(|a| a.len()), Some(0));
        assert!(schemas.get("other", "t").is_none());
    }
}
