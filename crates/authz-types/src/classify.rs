//! Classification of one raw JSON-RPC message into an [`Operation`].
//!
//! Pure code: bytes in, a classified message or a precise error out. The gateway classifies
//! exactly the bytes it forwards, parsed once and strictly (see [`crate::parse_strict`]).

use serde_json::Value;

use crate::operation::{CompletionRef, Method, Operation, Target};
use crate::strict_json::parse_strict;

/// The longest resource URI, prompt name or task id accepted as a target.
const MAX_TARGET_LEN: usize = 4096;

/// Request, notification or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Notification,
    Response,
}

/// A classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: MessageKind,
    /// The JSON-RPC id (a string or an integer); `None` for notifications.
    pub id: Option<Value>,
    pub operation: Operation,
    /// The parsed message, so callers need not parse again.
    pub value: Value,
}

/// Why a body is not one acceptable JSON-RPC message. Each maps to a JSON-RPC error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("the body is not valid JSON: {0}")]
    Parse(String),
    #[error("the body repeats an object key: {0}")]
    DuplicateKey(String),
    #[error("JSON-RPC batches are not supported")]
    Batch,
    #[error("invalid JSON-RPC message: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid params for {method}: {problem}")]
    InvalidParams {
        method: String,
        problem: &'static str,
    },
}

impl ClassifyError {
    /// The JSON-RPC error code for this failure.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            ClassifyError::Parse(_) | ClassifyError::DuplicateKey(_) => -32700,
            ClassifyError::Batch | ClassifyError::InvalidRequest(_) => -32600,
            ClassifyError::InvalidParams { .. } => -32602,
        }
    }
}

/// Classifies one JSON-RPC message.
pub fn classify(body: &[u8]) -> Result<Message, ClassifyError> {
    let value = parse_strict(body).map_err(|e| {
        if e.is_duplicate_key() {
            ClassifyError::DuplicateKey(e.to_string())
        } else {
            ClassifyError::Parse(e.to_string())
        }
    })?;
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(ClassifyError::Batch),
        _ => {
            return Err(ClassifyError::InvalidRequest(
                "a message must be a JSON object",
            ));
        }
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ClassifyError::InvalidRequest("`jsonrpc` must be \"2.0\""));
    }
    let id = match obj.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => {
            return Err(ClassifyError::InvalidRequest(
                "`id` must be a string or an integer",
            ));
        }
    };

    let (kind, operation) = match obj.get("method") {
        Some(Value::String(name)) => {
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                return Err(ClassifyError::InvalidRequest(
                    "`method` must be 1-256 characters without control characters",
                ));
            }
            let method = Method::from_name(name);
            let is_notification = matches!(method, Method::Notification(_));
            let kind = match (&id, is_notification) {
                (Some(_), false) => MessageKind::Request,
                (None, true) => MessageKind::Notification,
                (Some(_), true) => {
                    return Err(ClassifyError::InvalidRequest(
                        "a notification must not have an `id`",
                    ));
                }
                (None, false) => {
                    return Err(ClassifyError::InvalidRequest("a request must have an `id`"));
                }
            };
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(ClassifyError::InvalidRequest(
                    "a message cannot be both a request and a response",
                ));
            }
            let params = match obj.get("params") {
                None => None,
                Some(p @ Value::Object(_)) => Some(p),
                Some(_) => {
                    return Err(ClassifyError::InvalidParams {
                        method: name.clone(),
                        problem: "`params` must be an object",
                    });
                }
            };
            let target =
                target_of(&method, params).map_err(|problem| ClassifyError::InvalidParams {
                    method: name.clone(),
                    problem,
                })?;
            (kind, Operation::new(method, target))
        }
        Some(_) => return Err(ClassifyError::InvalidRequest("`method` must be a string")),
        None => {
            if id.is_none() {
                return Err(ClassifyError::InvalidRequest(
                    "a message needs a `method` or an `id`",
                ));
            }
            match (obj.contains_key("result"), obj.contains_key("error")) {
                (true, false) | (false, true) => {}
                _ => {
                    return Err(ClassifyError::InvalidRequest(
                        "a response must have exactly one of `result` and `error`",
                    ));
                }
            }
            (
                MessageKind::Response,
                Operation::new(Method::Response, Target::None),
            )
        }
    };
    Ok(Message {
        kind,
        id,
        operation,
        value,
    })
}

fn str_param<'a>(params: Option<&'a Value>, key: &str) -> Result<&'a str, &'static str> {
    params
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .ok_or(match key {
            "name" => "`params.name` must be a string",
            "uri" => "`params.uri` must be a string",
            "taskId" => "`params.taskId` must be a string",
            _ => "a required parameter is missing",
        })
}

/// Tool names per the MCP schema: 1–128 of `[A-Za-z0-9_.-]`, case-sensitive.
fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Names, URIs and ids used as targets: non-empty, bounded, no control characters.
fn valid_target(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TARGET_LEN && !s.chars().any(char::is_control)
}

fn checked(s: &str, problem: &'static str) -> Result<String, &'static str> {
    if valid_target(s) {
        Ok(s.to_owned())
    } else {
        Err(problem)
    }
}

fn target_of(method: &Method, params: Option<&Value>) -> Result<Target, &'static str> {
    Ok(match method {
        Method::ToolsCall => {
            let name = str_param(params, "name")?;
            if !valid_tool_name(name) {
                return Err("tool names are 1-128 characters of [A-Za-z0-9_.-]");
            }
            Target::Tool(name.to_owned())
        }
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            Target::Resource(checked(str_param(params, "uri")?, "invalid resource URI")?)
        }
        Method::PromptsGet => {
            Target::Prompt(checked(str_param(params, "name")?, "invalid prompt name")?)
        }
        Method::CompletionComplete => {
            let r = params
                .and_then(|p| p.get("ref"))
                .ok_or("`params.ref` is required")?;
            match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => Target::Completion(CompletionRef::Prompt(checked(
                    str_param(Some(r), "name")?,
                    "invalid prompt name",
                )?)),
                Some("ref/resource") => Target::Completion(CompletionRef::Resource(checked(
                    str_param(Some(r), "uri")?,
                    "invalid resource URI",
                )?)),
                _ => return Err("`params.ref.type` must be ref/prompt or ref/resource"),
            }
        }
        Method::TasksGet | Method::TasksResult | Method::TasksCancel | Method::TasksUpdate => {
            Target::Task(checked(str_param(params, "taskId")?, "invalid task id")?)
        }
        Method::SubscriptionsListen => {
            let uris = params
                .and_then(|p| p.get("notifications"))
                .and_then(|n| n.get("resourceSubscriptions"));
            match uris {
                None | Some(Value::Null) => Target::Resources(Vec::new()),
                Some(Value::Array(items)) => Target::Resources(
                    items
                        .iter()
                        .map(|u| {
                            u.as_str()
                                .ok_or("resource subscriptions must be strings")
                                .and_then(|u| checked(u, "invalid resource URI"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err("`resourceSubscriptions` must be an array"),
            }
        }
        _ => Target::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, params: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"jsonrpc":"2.0","id":7,"method":method,"params":params}))
            .expect("serialize")
    }

    /// (method, params, expected target). One row per method of the three MCP schemas.
    fn table() -> Vec<(&'static str, Value, Target)> {
        use CompletionRef as C;
        use Target as T;
        vec![
            (
                "initialize",
                json!({"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}),
                T::None,
            ),
            ("ping", json!({}), T::None),
            ("tools/list", json!({"cursor":"abc"}), T::None),
            (
                "tools/call",
                json!({"name":"delete_ticket","arguments":{"id":3}}),
                T::Tool("delete_ticket".into()),
            ),
            (
                "tools/call",
                json!({"name":"a.b-c_D9"}),
                T::Tool("a.b-c_D9".into()),
            ),
            ("resources/list", json!({}), T::None),
            ("resources/templates/list", json!({}), T::None),
            (
                "resources/read",
                json!({"uri":"tickets://open"}),
                T::Resource("tickets://open".into()),
            ),
            (
                "resources/subscribe",
                json!({"uri":"file:///x"}),
                T::Resource("file:///x".into()),
            ),
            (
                "resources/unsubscribe",
                json!({"uri":"file:///x"}),
                T::Resource("file:///x".into()),
            ),
            ("prompts/list", json!({}), T::None),
            (
                "prompts/get",
                json!({"name":"triage","arguments":{}}),
                T::Prompt("triage".into()),
            ),
            (
                "completion/complete",
                json!({"ref":{"type":"ref/prompt","name":"triage"},"argument":{"name":"a","value":"b"}}),
                T::Completion(C::Prompt("triage".into())),
            ),
            (
                "completion/complete",
                json!({"ref":{"type":"ref/resource","uri":"tickets://{id}"},"argument":{"name":"id","value":"1"}}),
                T::Completion(C::Resource("tickets://{id}".into())),
            ),
            ("logging/setLevel", json!({"level":"info"}), T::None),
            ("tasks/get", json!({"taskId":"t-1"}), T::Task("t-1".into())),
            (
                "tasks/result",
                json!({"taskId":"t-1"}),
                T::Task("t-1".into()),
            ),
            (
                "tasks/cancel",
                json!({"taskId":"t-1"}),
                T::Task("t-1".into()),
            ),
            (
                "tasks/update",
                json!({"taskId":"t-1","inputResponses":{}}),
                T::Task("t-1".into()),
            ),
            ("tasks/list", json!({}), T::None),
            ("server/discover", json!({}), T::None),
            (
                "subscriptions/listen",
                json!({"notifications":{"toolsListChanged":true,"resourceSubscriptions":["a://1","b://2"]}}),
                T::Resources(vec!["a://1".into(), "b://2".into()]),
            ),
            (
                "subscriptions/listen",
                json!({"notifications":{}}),
                T::Resources(vec![]),
            ),
            ("x-vendor/custom", json!({}), T::None),
        ]
    }

    #[test]
    fn every_method_is_classified_with_its_target() {
        for (method, params, target) in table() {
            let m = classify(&req(method, params)).unwrap_or_else(|e| panic!("{method}: {e}"));
            assert_eq!(m.kind, MessageKind::Request, "{method}");
            assert_eq!(m.operation.method.as_str(), method);
            assert_eq!(m.operation.target, target, "{method}");
            assert_eq!(m.id, Some(json!(7)));
        }
    }

    #[test]
    fn notifications_and_responses() {
        let n = classify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("ok");
        assert_eq!(n.kind, MessageKind::Notification);
        assert_eq!(
            n.operation.method,
            Method::Notification("notifications/initialized".into())
        );
        let r = classify(br#"{"jsonrpc":"2.0","id":"s-1","result":{"roots":[]}}"#).expect("ok");
        assert_eq!(r.kind, MessageKind::Response);
        assert_eq!(r.operation.method, Method::Response);
        let e = classify(br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#)
            .expect("ok");
        assert_eq!(e.kind, MessageKind::Response);
    }

    #[test]
    fn malformed_messages_are_refused_with_the_right_code() {
        let cases: Vec<(&[u8], i64)> = vec![
            (b"not json", -32700),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"method\":\"tools/call\"}", -32700),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","name":"delete_ticket"}}"#, -32700),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
            (br#""ping""#, -32600),
            (br#"{"id":1,"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":3}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":""}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":"x\u0000y"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1}"#, -32600),
            (br#"{"jsonrpc":"2.0","result":{}}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a/b"}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"del ete"}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a\nb"}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":""}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}}"#, -32602),
            (br#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[1]}}}"#, -32602),
        ];
        for (body, code) in cases {
            let err = classify(body).expect_err(std::str::from_utf8(body).unwrap_or("?"));
            assert_eq!(
                err.jsonrpc_code(),
                code,
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn tool_name_length_is_bounded() {
        let ok = "a".repeat(128);
        let long = "a".repeat(129);
        assert!(classify(&req("tools/call", json!({"name": ok}))).is_ok());
        assert!(classify(&req("tools/call", json!({"name": long}))).is_err());
    }

    #[test]
    fn mcp_name_header_value_follows_the_target() {
        let m = classify(&req("tools/call", json!({"name":"t"}))).expect("ok");
        assert_eq!(m.operation.mcp_name(), Some("t"));
        let m = classify(&req("resources/read", json!({"uri":"u://1"}))).expect("ok");
        assert_eq!(m.operation.mcp_name(), Some("u://1"));
        let m = classify(&req("tools/list", json!({}))).expect("ok");
        assert_eq!(m.operation.mcp_name(), None);
    }
}
