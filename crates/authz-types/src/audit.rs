//! What the audit store records for every decision and its outcome, and how records are
//! queried.

use serde::{Deserialize, Serialize};

use crate::{Decision, Effect, Operation, Principal, ReasonCode};

/// Which of the two records of a request this is.
///
/// The gateway writes a [`Decision`](RecordKind::Decision) record before it forwards a request
/// (in durable mode it is committed first), and, once the upstream answered or the stream
/// ended, an [`Outcome`](RecordKind::Outcome) record with the same request id. A refused
/// request has only its decision record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// What was decided, written before anything is forwarded.
    #[default]
    Decision,
    /// What happened upstream, written after the response.
    Outcome,
}

impl RecordKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: &'static [RecordKind] = &[RecordKind::Decision, RecordKind::Outcome];

    /// The stable string of this kind (`decision` or `outcome`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Decision => "decision",
            RecordKind::Outcome => "outcome",
        }
    }

    /// The kind named by `s`, as written by [`RecordKind::as_str`].
    pub fn parse(s: &str) -> Option<RecordKind> {
        match s {
            "decision" => Some(RecordKind::Decision),
            "outcome" => Some(RecordKind::Outcome),
            _ => None,
        }
    }
}

/// One audit record: a decision with its full identity context, or the outcome of a
/// forwarded request (see [`RecordKind`]).
///
/// A decision record is written for every request that reaches a decision, allowed or denied,
/// including authentication failures (then the identity fields are empty). The fields after
/// `jsonrpc_error` were added later; they default when absent from serialized input, so older
/// exports still parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the decision was made (or, for an outcome, when the response ended), Unix
    /// milliseconds.
    pub time_ms: i64,
    /// Decision or outcome.
    #[serde(default)]
    pub kind: RecordKind,
    /// The gateway's request id (also returned to the client in `x-request-id`).
    pub request_id: String,
    /// The distributed trace id (W3C `traceparent`), if the request carried or was given one.
    #[serde(default)]
    pub trace_id: Option<String>,
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
    /// Outcome records: the HTTP status the upstream answered with, if it answered.
    #[serde(default)]
    pub upstream_status: Option<u16>,
    /// Outcome records: how long the upstream took, from forwarding to the end of the response
    /// (or stream), in milliseconds.
    #[serde(default)]
    pub upstream_latency_ms: Option<i64>,
    /// Outcome records: a short code for what happened upstream, e.g. `ok`, `upstream_error`,
    /// `timeout`, `stream_error`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Lowercase hex SHA-256 of the call's arguments (the JSON text of `params.arguments` as
    /// received), when the call had any.
    #[serde(default)]
    pub args_digest: Option<String>,
    /// The call's arguments as JSON text, only where configured, and already redacted by the
    /// gateway (named fields replaced per tool).
    #[serde(default)]
    pub arguments: Option<String>,
    /// Outcome records of list calls: the names (or URIs) of the items the caller was shown,
    /// after filtering.
    #[serde(default)]
    pub shown: Vec<String>,
    /// The address of the client the request came from (the TCP peer the gateway saw, not a
    /// forwarded header), when known.
    #[serde(default)]
    pub client_addr: Option<String>,
    /// Aggregated refusals: how many identical refusals (same client address, route, reason
    /// and status, all without an identity) this one record stands for, from
    /// `first_time_ms` to `time_ms`. `None` for a record of one request.
    #[serde(default)]
    pub repeat_count: Option<i64>,
    /// Aggregated refusals: when the first of them was refused, Unix milliseconds (`time_ms`
    /// is the last).
    #[serde(default)]
    pub first_time_ms: Option<i64>,
    /// Retries of a multi round-trip call (MCP 2026-07-28): the gateway request id of the
    /// call's first round, the one whose answer first asked for input (the same for every later
    /// round). `None` for a first round and for every other request.
    #[serde(default)]
    pub first_round_request_id: Option<String>,
    /// Shadow mode: how the candidate policy under evaluation would have decided this request,
    /// when it differs from the decision made (`"<allow|deny|held> <reason>[: <rule>]"`). Never
    /// enforced. `None` when no candidate runs or it agrees.
    #[serde(default)]
    pub shadow: Option<String>,
}

impl AuditRecord {
    /// A decision record stamped now with what every record has, and every other field empty.
    fn decided(
        request_id: String,
        upstream: String,
        method: String,
        decision: Effect,
        reason: ReasonCode,
    ) -> Self {
        Self {
            time_ms: crate::now_unix_ms(),
            kind: RecordKind::Decision,
            request_id,
            trace_id: None,
            session_id: None,
            tenant: None,
            subject: None,
            issuer: None,
            client_id: None,
            actors: Vec::new(),
            token_id: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            upstream,
            method,
            target: None,
            decision,
            reason,
            matched_rule: None,
            policy_revision: None,
            http_status: None,
            jsonrpc_error: None,
            upstream_status: None,
            upstream_latency_ms: None,
            outcome: None,
            args_digest: None,
            arguments: None,
            shown: Vec::new(),
            client_addr: None,
            repeat_count: None,
            first_time_ms: None,
            first_round_request_id: None,
            shadow: None,
        }
    }

    /// A record for a request that was refused before any identity was established.
    pub fn unauthenticated(
        request_id: impl Into<String>,
        upstream: impl Into<String>,
        method: impl Into<String>,
        reason: ReasonCode,
        http_status: u16,
    ) -> Self {
        Self {
            http_status: Some(http_status),
            ..Self::decided(
                request_id.into(),
                upstream.into(),
                method.into(),
                Effect::Deny,
                reason,
            )
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
            tenant: Some(principal.tenant_or_default().to_owned()),
            subject: Some(principal.subject.clone()),
            issuer: Some(principal.issuer.clone()),
            client_id: principal.client_id.clone(),
            actors: principal.actors.clone(),
            token_id: principal.token_id.clone(),
            scopes: principal.scopes.clone(),
            roles: principal.roles.clone(),
            target: operation.target.display(),
            matched_rule: decision.matched_rule.clone(),
            policy_revision: Some(decision.policy_revision),
            ..Self::decided(
                request_id.into(),
                upstream.into(),
                operation.method.as_str().to_owned(),
                decision.effect,
                decision.reason,
            )
        }
    }

    /// The outcome record that follows `decision`, stamped now.
    ///
    /// Copies what identifies the request and its decision: request, trace and session ids,
    /// the identity fields, upstream, method, target, decision, reason, matched rule, policy
    /// revision, the argument digest, the client address and the first round a retry links to (so
    /// an outcome row can be matched on its own). Not
    /// copied: the raw `arguments` (they are in the decision record already) and the refusal
    /// fields `http_status` and `jsonrpc_error`. The outcome fields (`upstream_status`,
    /// `upstream_latency_ms`, `outcome`, `shown`) are left empty for the caller to fill.
    pub fn outcome(decision: &AuditRecord) -> Self {
        Self {
            kind: RecordKind::Outcome,
            trace_id: decision.trace_id.clone(),
            session_id: decision.session_id.clone(),
            tenant: decision.tenant.clone(),
            subject: decision.subject.clone(),
            issuer: decision.issuer.clone(),
            client_id: decision.client_id.clone(),
            actors: decision.actors.clone(),
            token_id: decision.token_id.clone(),
            scopes: decision.scopes.clone(),
            roles: decision.roles.clone(),
            target: decision.target.clone(),
            matched_rule: decision.matched_rule.clone(),
            policy_revision: decision.policy_revision,
            args_digest: decision.args_digest.clone(),
            client_addr: decision.client_addr.clone(),
            first_round_request_id: decision.first_round_request_id.clone(),
            ..Self::decided(
                decision.request_id.clone(),
                decision.upstream.clone(),
                decision.method.clone(),
                decision.decision,
                decision.reason,
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_kind_strings_round_trip() {
        for kind in RecordKind::ALL {
            assert_eq!(RecordKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_string(kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(RecordKind::parse("Decision"), None);
        assert_eq!(RecordKind::default(), RecordKind::Decision);
    }

    #[test]
    fn constructors_leave_the_new_fields_empty() {
        let r = AuditRecord::unauthenticated("r", "u", "GET", ReasonCode::TokenMissing, 401);
        assert_eq!(r.kind, RecordKind::Decision);
        assert_eq!(
            (&r.trace_id, r.upstream_status, r.upstream_latency_ms),
            (&None, None, None)
        );
        assert!(r.outcome.is_none() && r.args_digest.is_none() && r.arguments.is_none());
        assert!(r.shown.is_empty());
    }

    #[test]
    fn outcome_copies_the_request_and_leaves_the_outcome_to_fill() {
        let mut d = AuditRecord::unauthenticated(
            "req-9",
            "tickets",
            "tools/list",
            ReasonCode::ProtocolMethod,
            200,
        );
        d.decision = Effect::Allow;
        d.http_status = None;
        d.jsonrpc_error = Some(-1);
        d.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        d.session_id = Some("s".into());
        d.tenant = Some("acme".into());
        d.subject = Some("alice".into());
        d.issuer = Some("iss".into());
        d.client_id = Some("app".into());
        d.actors = vec!["agent".into()];
        d.token_id = Some("jti".into());
        d.scopes = vec!["a".into()];
        d.roles = vec!["reader".into()];
        d.target = Some("t".into());
        d.matched_rule = Some("rule".into());
        d.policy_revision = Some(3);
        d.args_digest = Some("ab".repeat(32));
        d.arguments = Some("{}".into());
        d.client_addr = Some("203.0.113.9".into());
        d.first_round_request_id = Some("req-8".into());

        let o = AuditRecord::outcome(&d);
        assert_eq!(o.kind, RecordKind::Outcome);
        assert!(o.time_ms >= d.time_ms);
        let expected = AuditRecord {
            time_ms: o.time_ms,
            kind: RecordKind::Outcome,
            http_status: None,
            jsonrpc_error: None,
            arguments: None,
            ..d.clone()
        };
        assert_eq!(o, expected);
    }

    #[test]
    fn records_serialized_without_the_new_fields_still_parse() {
        let r = AuditRecord::unauthenticated("r", "u", "GET", ReasonCode::TokenMissing, 401);
        let mut v = serde_json::to_value(&r).expect("serialize");
        let obj = v.as_object_mut().expect("object");
        for field in [
            "kind",
            "trace_id",
            "upstream_status",
            "upstream_latency_ms",
            "outcome",
            "args_digest",
            "arguments",
            "shown",
            "client_addr",
            "repeat_count",
            "first_time_ms",
            "first_round_request_id",
            "shadow",
        ] {
            assert!(obj.remove(field).is_some(), "{field}");
        }
        let back: AuditRecord = serde_json::from_value(v).expect("parse");
        assert_eq!(back, r);
    }
}
