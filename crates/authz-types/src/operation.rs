//! The classified MCP operation: which method, on which target.

use serde::{Deserialize, Serialize};

/// Every MCP method a client may send to a server, across the schemas 2025-06-18, 2025-11-25
/// and 2026-07-28, plus catch-alls for notifications, responses and unknown methods.
///
/// Server-to-client requests (`sampling/createMessage`, `elicitation/create`, `roots/list`) never
/// arrive as client requests; a client that sends one gets [`Method::Unknown`] and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Initialize,
    Ping,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    PromptsList,
    PromptsGet,
    CompletionComplete,
    LoggingSetLevel,
    /// 2025-11-25 and 2026-07-28 tasks.
    TasksGet,
    TasksList,
    TasksResult,
    TasksCancel,
    /// 2026-07-28.
    TasksUpdate,
    /// 2026-07-28.
    ServerDiscover,
    /// 2026-07-28.
    SubscriptionsListen,
    /// Any `notifications/*` message from the client (no response expected).
    Notification(String),
    /// A JSON-RPC response from the client to a server-initiated request.
    Response,
    /// A method this gateway does not know. Refused by default.
    Unknown(String),
}

impl Method {
    /// Maps a JSON-RPC `method` string to a [`Method`].
    pub fn from_name(name: &str) -> Method {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            "tasks/get" => Method::TasksGet,
            "tasks/list" => Method::TasksList,
            "tasks/result" => Method::TasksResult,
            "tasks/cancel" => Method::TasksCancel,
            "tasks/update" => Method::TasksUpdate,
            "server/discover" => Method::ServerDiscover,
            "subscriptions/listen" => Method::SubscriptionsListen,
            n if n.starts_with("notifications/") => Method::Notification(n.to_owned()),
            other => Method::Unknown(other.to_owned()),
        }
    }

    /// The JSON-RPC method name (`"response"` for client responses).
    pub fn as_str(&self) -> &str {
        match self {
            Method::Notification(n) | Method::Unknown(n) => n,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The name of a method the gateway knows (and `"response"`), as a `'static` string; `None`
    /// for notifications and unknown methods, whose names come from the caller.
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::TasksGet => "tasks/get",
            Method::TasksList => "tasks/list",
            Method::TasksResult => "tasks/result",
            Method::TasksCancel => "tasks/cancel",
            Method::TasksUpdate => "tasks/update",
            Method::ServerDiscover => "server/discover",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::Response => "response",
            Method::Notification(_) | Method::Unknown(_) => return None,
        })
    }

    /// The RBAC action this method performs on its target. Policies are written in these
    /// verbs: `call` a tool, `read`/`subscribe` a resource, `get` a prompt, `complete` against a
    /// prompt or resource, `list` a collection, act on a `task`, or a bare `protocol` exchange.
    pub fn action(&self) -> &'static str {
        match self {
            Method::ToolsCall => "call",
            Method::ResourcesRead => "read",
            Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => "subscribe",
            Method::SubscriptionsListen => "subscribe",
            Method::PromptsGet => "get",
            Method::CompletionComplete => "complete",
            Method::ToolsList
            | Method::ResourcesList
            | Method::ResourcesTemplatesList
            | Method::PromptsList
            | Method::TasksList => "list",
            Method::TasksGet | Method::TasksResult | Method::TasksCancel | Method::TasksUpdate => {
                "task"
            }
            Method::Initialize
            | Method::Ping
            | Method::LoggingSetLevel
            | Method::ServerDiscover
            | Method::Notification(_)
            | Method::Response => "protocol",
            Method::Unknown(_) => "unknown",
        }
    }

    /// Protocol plumbing that carries no authority over any tool, resource or prompt:
    /// allowed to every authenticated principal (list results are filtered instead).
    pub fn is_protocol_level(&self) -> bool {
        matches!(self.action(), "protocol" | "list")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reference inside a `completion/complete` request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionRef {
    Prompt(String),
    Resource(String),
}

/// What an operation acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Lists, `ping`, `initialize`, notifications: no single object.
    None,
    /// `tools/call`: the tool name.
    Tool(String),
    /// `resources/read|subscribe|unsubscribe`: the resource URI.
    Resource(String),
    /// `subscriptions/listen`: every resource URI in the request.
    Resources(Vec<String>),
    /// `prompts/get`: the prompt name.
    Prompt(String),
    /// `completion/complete`: the referenced prompt or resource.
    Completion(CompletionRef),
    /// `tasks/*` with a task id.
    Task(String),
}

impl Target {
    /// A printable form for logs and audit records (`None` for [`Target::None`]).
    pub fn display(&self) -> Option<String> {
        match self {
            Target::None => None,
            Target::Tool(s) | Target::Resource(s) | Target::Prompt(s) | Target::Task(s) => {
                Some(s.clone())
            }
            Target::Resources(v) => Some(v.join(" ")),
            Target::Completion(CompletionRef::Prompt(p)) => Some(format!("prompt:{p}")),
            Target::Completion(CompletionRef::Resource(r)) => Some(format!("resource:{r}")),
        }
    }
}

/// A classified MCP operation: the unit that is authorized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    pub method: Method,
    pub target: Target,
}

impl Operation {
    pub fn new(method: Method, target: Target) -> Self {
        Self { method, target }
    }

    /// The value a 2026-07-28 client must send in `Mcp-Name` for this operation, if any:
    /// `params.name` for tools and prompts, `params.uri` for resources, `params.taskId` for tasks.
    pub fn mcp_name(&self) -> Option<&str> {
        match (&self.method, &self.target) {
            (Method::ToolsCall, Target::Tool(n)) | (Method::PromptsGet, Target::Prompt(n)) => {
                Some(n)
            }
            (
                Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe,
                Target::Resource(u),
            ) => Some(u),
            (Method::TasksGet | Method::TasksUpdate | Method::TasksCancel, Target::Task(t)) => {
                Some(t)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for name in [
            "initialize",
            "ping",
            "tools/list",
            "tools/call",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "prompts/list",
            "prompts/get",
            "completion/complete",
            "logging/setLevel",
            "tasks/get",
            "tasks/list",
            "tasks/result",
            "tasks/cancel",
            "tasks/update",
            "server/discover",
            "subscriptions/listen",
            "notifications/initialized",
            "x-vendor/whatever",
        ] {
            assert_eq!(Method::from_name(name).as_str(), name);
        }
        assert_eq!(
            Method::from_name("sampling/createMessage"),
            Method::Unknown("sampling/createMessage".into())
        );
    }

    #[test]
    fn only_plumbing_is_protocol_level() {
        assert!(Method::ToolsList.is_protocol_level());
        assert!(Method::Ping.is_protocol_level());
        assert!(!Method::ToolsCall.is_protocol_level());
        assert!(!Method::TasksCancel.is_protocol_level());
        assert!(!Method::Unknown("x".into()).is_protocol_level());
    }
}
