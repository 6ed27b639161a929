//! Domain vocabulary of the MCP authorization gateway.
//!
//! This crate is the bottom of the workspace: it holds the types every other crate speaks
//! (who is calling — [`Principal`]; what they ask for — [`Operation`]; what was decided —
//! [`Decision`]; what is recorded — [`AuditRecord`]) and the pure classification of a raw
//! JSON-RPC body into an operation ([`classify`]). It does no IO and knows no engine.
//!
//! ```
//! use authz_types::{classify, Method, Target};
//!
//! let msg = classify(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_ticket"}}"#)
//!     .expect("a valid tools/call");
//! assert_eq!(msg.operation.method, Method::ToolsCall);
//! assert_eq!(msg.operation.target, Target::Tool("delete_ticket".into()));
//! ```

mod audit;
mod classify;
mod decision;
mod operation;
mod principal;
mod strict_json;

pub use audit::{AuditFilter, AuditRecord, RecordKind};
pub use classify::{ClassifyError, Message, MessageKind, classify};
pub use decision::{Decision, Effect, ReasonCode, RuleEffect};
pub use operation::{CompletionRef, Method, Operation, Target};
pub use principal::{DEFAULT_TENANT, Principal};
pub use strict_json::{Json, JsonObject, StrictJsonError, parse_borrowed, parse_strict};

/// Current time as Unix milliseconds. Kept here so every crate stamps time the same way.
pub fn now_unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
