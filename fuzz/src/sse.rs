//! The SSE response rewriter: whatever an upstream sends, what a client's SSE parser takes
//! from the rewritten stream never shows a tool the filter hides, and the output does not
//! depend on where the network cut the chunks.

use serde_json::{Value, json};

pub const DICTIONARY: &[&[u8]] = &[
    b"data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[{\"name\":\"delete_ticket\"}]}}\n\n",
    b"data: ",
    b"data:",
    b"data",
    b"event: message\n",
    b"id: 1\n",
    b": comment\n",
    b"\n\n",
    b"\r\n\r\n",
    b"\r\r",
    b"\r",
    b"\n",
    b"\xef\xbb\xbf",
    b"\"delete_ticket\"",
    b"\"get_ticket\"",
    b"{\"name\":\"delete_ticket\"}",
    b"\"tools\":",
    b"\"result\":",
    b"\"id\":5",
    b"\"method\":\"x\"",
];

/// The filter under test: only `get_*` tools may be shown.
fn allowed(name: &str) -> bool {
    name.starts_with("get_")
}

/// The input's first byte picks the chunk size (1..=64); the rest is the upstream's body.
pub fn run(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let size = usize::from(first % 64) + 1;
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let (out, error) = authz_gateway::fuzzing::sse_tools_filter(json!(5), &chunks, allowed);
    let whole = authz_gateway::fuzzing::sse_tools_filter(json!(5), &[body], allowed);
    assert_eq!(
        (&out, &error),
        (&whole.0, &whole.1),
        "the output depends on where chunks were cut ({size})"
    );
    for data in client_events(&out) {
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        let is_response = v.get("method").is_none() && v.get("result").is_some();
        if !is_response {
            continue;
        }
        if let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array) {
            for tool in tools {
                let name = tool.get("name").and_then(Value::as_str);
                assert!(
                    name.is_some_and(allowed),
                    "a client was shown {tool} in {data:?}"
                );
            }
        }
    }
}

/// The data of every event a WHATWG-conformant SSE client dispatches from `stream` (decoded
/// as UTF-8 with replacement, one leading BOM dropped, lines ended by CRLF, LF or CR).
fn client_events(stream: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut events = Vec::new();
    let mut data = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match rest.find(['\r', '\n']) {
            // A line without its end is not dispatched (the stream ended inside it).
            None => break,
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
        };
        rest = next;
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                events.push(std::mem::take(&mut data));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            data.push_str(value);
            data.push('\n');
        }
    }
    events
}
