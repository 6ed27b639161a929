//! The classifier and strict JSON parser against `serde_json`: every body the gateway accepts
//! means to an ordinary JSON parser exactly what the gateway decided on.

use authz_types::{MessageKind, Target};
use serde_json::Value;

pub const DICTIONARY: &[&[u8]] = &[
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"get_ticket\"}}",
    b"\"jsonrpc\"",
    b"\"2.0\"",
    b"\"method\"",
    b"\"params\"",
    b"\"name\"",
    b"\"uri\"",
    b"\"id\"",
    b"\"tools/call\"",
    b"\"resources/read\"",
    b"\"prompts/get\"",
    b"\"notifications/initialized\"",
    b"\\u0000",
    b"\\ud800",
    b"\\udc00",
    b"\\u006e\\u0061me",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"null",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b":",
    b"\xef\xbb\xbf",
    b"\xc0\xae",
];

pub fn run(data: &[u8]) {
    if let Ok(strict) = authz_types::parse_strict(data) {
        let ordinary: Value = serde_json::from_slice(data)
            .unwrap_or_else(|e| panic!("strict accepted what serde_json refuses ({e})"));
        assert_eq!(strict, ordinary, "strict and ordinary parses differ");
    }
    let Ok(message) = authz_types::classify(data) else {
        return;
    };
    let value: Value = serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("the classifier accepted what serde_json refuses ({e})"));
    assert_eq!(
        message.value, value,
        "the classified value is not what was sent"
    );
    if message.kind == MessageKind::Response {
        return;
    }
    let method = value.get("method").and_then(Value::as_str);
    assert_eq!(
        Some(message.operation.method.as_str()),
        method,
        "the method decided on is not the one sent"
    );
    let params = value.get("params");
    let field = |name: &str| params.and_then(|p| p.get(name)).and_then(Value::as_str);
    match &message.operation.target {
        Target::Tool(name) => {
            assert_eq!(method, Some("tools/call"));
            assert_eq!(Some(name.as_str()), field("name"), "tool name");
        }
        Target::Prompt(name) => {
            assert_eq!(method, Some("prompts/get"));
            assert_eq!(Some(name.as_str()), field("name"), "prompt name");
        }
        Target::Resource(uri) => {
            assert_eq!(Some(uri.as_str()), field("uri"), "resource uri");
        }
        _ => {}
    }
    if method == Some("tools/call") {
        assert!(
            matches!(message.operation.target, Target::Tool(_)),
            "a tools/call without a tool target"
        );
    }
}
