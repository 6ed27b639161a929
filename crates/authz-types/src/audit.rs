//! What the audit store records for every decision, and how records are queried.

use serde::{Deserialize, Serialize};

use crate::{Decision, Effect, Operation, Principal, ReasonCode};

/// One audit record: a decision with its full identity context.
///
/// Written for every request that reaches a decision, allowed or denied, including
/// authentication failures (then the identity fields are empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the decision was made, Unix milliseconds.
    pub time_ms: i64,
    /// The gateway's request id (also returned to the client in `x-request-id`).
    pub request_id: String,
    /// The MCP session id, if the request carried one.
    pub session_id: Option<String>,
    pub tenant: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// The delegation chain (`act`), outermost actor first.
    pub actors: Vec<String>,
    pub token_id: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The upstream route name.
    pub upstream: String,
    /// The JSON-RPC method (or the HTTP method for non-message requests, e.g. `GET`).
    pub method: String,
    /// The operation's target, if any.
    pub target: Option<String>,
    pub decision: Effect,
    pub reason: ReasonCode,
    pub matched_rule: Option<String>,
    pub policy_revision: Option<i64>,
    /// The HTTP status the gateway answered with for a refusal; `None` when forwarded.
    pub http_status: Option<u16>,
    /// The JSON-RPC error code of a refusal, if one was sent.
    pub jsonrpc_error: Option<i64>,
}

impl AuditRecord {
    /// A record for a request that was refused before any identity was established.
    pub fn unauthenticated(
        request_id: impl Into<String>,
        upstream: impl Into<String>,
        method: impl Into<String>,
        reason: ReasonCode,
        http_status: u16,
    ) -> Self {
        Self {
            time_ms: crate::now_unix_ms(),
            request_id: request_id.into(),
            session_id: None,
            tenant: None,
            subject: None,
            issuer: None,
            client_id: None,
            actors: Vec::new(),
            token_id: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            upstream: upstream.into(),
            method: method.into(),
            target: None,
            decision: Effect::Deny,
            reason,
            matched_rule: None,
            policy_revision: None,
            http_status: Some(http_status),
            jsonrpc_error: None,
        }
    }

    /// A record for a decision about an authenticated principal's operation.
    pub fn for_decision(
        request_id: impl Into<String>,
        upstream: impl Into<String>,
        principal: &Principal,
        operation: &Operation,
        decision: &Decision,
    ) -> Self {
        Self {
            time_ms: crate::now_unix_ms(),
            request_id: request_id.into(),
            session_id: None,
            tenant: Some(principal.tenant_or_default().to_owned()),
            subject: Some(principal.subject.clone()),
            issuer: Some(principal.issuer.clone()),
            client_id: principal.client_id.clone(),
            actors: principal.actors.clone(),
            token_id: principal.token_id.clone(),
            scopes: principal.scopes.clone(),
            roles: principal.roles.clone(),
            upstream: upstream.into(),
            method: operation.method.as_str().to_owned(),
            target: operation.target.display(),
            decision: decision.effect,
            reason: decision.reason,
            matched_rule: decision.matched_rule.clone(),
            policy_revision: Some(decision.policy_revision),
            http_status: None,
            jsonrpc_error: None,
        }
    }
}

/// A query over the audit store. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub decision: Option<Effect>,
    pub upstream: Option<String>,
    pub request_id: Option<String>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// At most this many records, newest first. `None` means the store's default (100).
    pub limit: Option<u32>,
}
