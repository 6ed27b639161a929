//! Mapping between an [`AuditRecord`] and its row in `audit_records`, in both directions.
//!
//! Writing never fails for a well-formed record; reading checks every value that has a narrower
//! type in Rust than in SQL and reports a mismatch as [`Error::Corrupt`] instead of guessing.

use authz_types::{AuditRecord, Effect, ReasonCode, RecordKind};

use crate::hash::HashVersion;
use crate::{Error, StoredRecord};

/// The column list of an insert, in the order [`Columns`] binds them. The last one,
/// `hash_version`, is not bound: every row is written with [`HashVersion::CURRENT`], pushed as
/// a literal (see [`HASH_VERSION_LITERAL`]) so a row binds fewer values.
pub(crate) const INSERT_COLUMNS: &str = "time_ms, request_id, session_id, tenant, subject, issuer, \
     client_id, actors, token_id, scopes, roles, upstream, method, target, decision, reason, \
     matched_rule, policy_revision, http_status, jsonrpc_error, kind, trace_id, upstream_status, \
     upstream_latency_ms, outcome, args_digest, arguments, shown, client_addr, repeat_count, \
     first_time_ms, first_round_request_id, shadow, hash_version";

/// How many values one row binds; keep in step with [`INSERT_COLUMNS`] (all but
/// `hash_version`).
pub(crate) const COLUMN_COUNT: usize = 33;

/// The `hash_version` of every row this build writes, as SQL text.
pub(crate) const HASH_VERSION_LITERAL: &str = HashVersion::CURRENT.sql_literal();

/// The columns a chained insert adds after [`INSERT_COLUMNS`], in the order
/// [`ChainedRow`] binds them.
pub(crate) const CHAIN_COLUMNS: &str = "chain_id, seq, prev_hash, hash";

/// How many values one chained row binds.
pub(crate) const CHAINED_COLUMN_COUNT: usize = COLUMN_COUNT + 4;

/// A record with its place in a hash chain, as bound into an insert.
#[derive(Debug)]
pub(crate) struct ChainedRow<'a> {
    pub columns: Columns<'a>,
    pub chain_id: &'a str,
    pub seq: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The column list of a select: `id` then the record's columns (the insert columns without
/// `hash_version`, which only verification reads).
pub(crate) const SELECT_COLUMNS: &str = "id, time_ms, request_id, session_id, tenant, subject, \
     issuer, client_id, actors, token_id, scopes, roles, upstream, method, target, decision, \
     reason, matched_rule, policy_revision, http_status, jsonrpc_error, kind, trace_id, \
     upstream_status, upstream_latency_ms, outcome, args_digest, arguments, shown, client_addr, \
     repeat_count, first_time_ms, first_round_request_id, shadow";

/// One record as the values bound into an insert. Borrowed from the record except the lists,
/// which are encoded as JSON array text.
#[derive(Debug)]
pub(crate) struct Columns<'a> {
    pub time_ms: i64,
    pub request_id: &'a str,
    pub session_id: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub actors: String,
    pub token_id: Option<&'a str>,
    pub scopes: String,
    pub roles: String,
    pub upstream: &'a str,
    pub method: &'a str,
    pub target: Option<&'a str>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub matched_rule: Option<&'a str>,
    pub policy_revision: Option<i64>,
    pub http_status: Option<i64>,
    pub jsonrpc_error: Option<i64>,
    pub kind: &'static str,
    pub trace_id: Option<&'a str>,
    pub upstream_status: Option<i64>,
    pub upstream_latency_ms: Option<i64>,
    pub outcome: Option<&'a str>,
    pub args_digest: Option<&'a str>,
    pub arguments: Option<&'a str>,
    pub shown: String,
    pub client_addr: Option<&'a str>,
    pub repeat_count: Option<i64>,
    pub first_time_ms: Option<i64>,
    pub first_round_request_id: Option<&'a str>,
    pub shadow: Option<&'a str>,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(r: &'a AuditRecord) -> Result<Self, Error> {
        Ok(Self {
            time_ms: r.time_ms,
            request_id: &r.request_id,
            session_id: r.session_id.as_deref(),
            tenant: r.tenant.as_deref(),
            subject: r.subject.as_deref(),
            issuer: r.issuer.as_deref(),
            client_id: r.client_id.as_deref(),
            actors: encode_list("actors", &r.actors)?,
            token_id: r.token_id.as_deref(),
            scopes: encode_list("scopes", &r.scopes)?,
            roles: encode_list("roles", &r.roles)?,
            upstream: &r.upstream,
            method: &r.method,
            target: r.target.as_deref(),
            decision: r.decision.as_str(),
            reason: r.reason.as_str(),
            matched_rule: r.matched_rule.as_deref(),
            policy_revision: r.policy_revision,
            http_status: r.http_status.map(i64::from),
            jsonrpc_error: r.jsonrpc_error,
            kind: r.kind.as_str(),
            trace_id: r.trace_id.as_deref(),
            upstream_status: r.upstream_status.map(i64::from),
            upstream_latency_ms: r.upstream_latency_ms,
            outcome: r.outcome.as_deref(),
            args_digest: r.args_digest.as_deref(),
            arguments: r.arguments.as_deref(),
            shown: encode_list("shown", &r.shown)?,
            client_addr: r.client_addr.as_deref(),
            repeat_count: r.repeat_count,
            first_time_ms: r.first_time_ms,
            first_round_request_id: r.first_round_request_id.as_deref(),
            shadow: r.shadow.as_deref(),
        })
    }
}

fn encode_list(field: &'static str, list: &[String]) -> Result<String, Error> {
    serde_json::to_string(list).map_err(|source| Error::Encode { field, source })
}

/// One row as read back, before its values are checked.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawRow {
    pub id: i64,
    pub time_ms: i64,
    pub request_id: String,
    pub session_id: Option<String>,
    pub tenant: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub actors: String,
    pub token_id: Option<String>,
    pub scopes: String,
    pub roles: String,
    pub upstream: String,
    pub method: String,
    pub target: Option<String>,
    pub decision: String,
    pub reason: String,
    pub matched_rule: Option<String>,
    pub policy_revision: Option<i64>,
    pub http_status: Option<i64>,
    pub jsonrpc_error: Option<i64>,
    pub kind: String,
    pub trace_id: Option<String>,
    pub upstream_status: Option<i64>,
    pub upstream_latency_ms: Option<i64>,
    pub outcome: Option<String>,
    pub args_digest: Option<String>,
    pub arguments: Option<String>,
    pub shown: String,
    pub client_addr: Option<String>,
    pub repeat_count: Option<i64>,
    pub first_time_ms: Option<i64>,
    pub first_round_request_id: Option<String>,
    pub shadow: Option<String>,
}

impl RawRow {
    /// Checks every value and builds the record, or names the first column that does not parse.
    pub(crate) fn into_stored(self) -> Result<StoredRecord, Error> {
        let id = self.id;
        let corrupt = |field: &'static str| Error::Corrupt { id, field };
        let record = AuditRecord {
            time_ms: self.time_ms,
            kind: RecordKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            request_id: self.request_id,
            trace_id: self.trace_id,
            session_id: self.session_id,
            tenant: self.tenant,
            subject: self.subject,
            issuer: self.issuer,
            client_id: self.client_id,
            actors: decode_list(&self.actors).ok_or_else(|| corrupt("actors"))?,
            token_id: self.token_id,
            scopes: decode_list(&self.scopes).ok_or_else(|| corrupt("scopes"))?,
            roles: decode_list(&self.roles).ok_or_else(|| corrupt("roles"))?,
            upstream: self.upstream,
            method: self.method,
            target: self.target,
            decision: Effect::parse(&self.decision).ok_or_else(|| corrupt("decision"))?,
            reason: ReasonCode::parse(&self.reason).ok_or_else(|| corrupt("reason"))?,
            matched_rule: self.matched_rule,
            policy_revision: self.policy_revision,
            http_status: self
                .http_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| corrupt("http_status"))?,
            jsonrpc_error: self.jsonrpc_error,
            upstream_status: self
                .upstream_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| corrupt("upstream_status"))?,
            upstream_latency_ms: self.upstream_latency_ms,
            outcome: self.outcome,
            args_digest: self.args_digest,
            arguments: self.arguments,
            shown: decode_list(&self.shown).ok_or_else(|| corrupt("shown"))?,
            client_addr: self.client_addr,
            repeat_count: self.repeat_count,
            first_time_ms: self.first_time_ms,
            first_round_request_id: self.first_round_request_id,
            shadow: self.shadow,
        };
        Ok(StoredRecord { id, record })
    }
}

fn decode_list(text: &str) -> Option<Vec<String>> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> AuditRecord {
        AuditRecord {
            time_ms: -5,
            kind: RecordKind::Outcome,
            request_id: "req-1".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            session_id: Some("sess".into()),
            tenant: Some("acme".into()),
            subject: Some("alice".into()),
            issuer: Some("https://idp.example".into()),
            client_id: Some("agent-app".into()),
            actors: vec!["agent-7".into(), "orchestrator \"x\"".into()],
            token_id: Some("jti-1".into()),
            scopes: vec!["a".into(), "b c".into()],
            roles: vec!["reader".into()],
            upstream: "tickets".into(),
            method: "tools/call".into(),
            target: Some("get_ticket".into()),
            decision: Effect::Allow,
            reason: ReasonCode::PolicyAllow,
            matched_rule: Some("p, reader, default, tool:tickets/get_*, call, allow".into()),
            policy_revision: Some(i64::MAX),
            http_status: Some(u16::MAX),
            jsonrpc_error: Some(i64::MIN),
            upstream_status: Some(0),
            upstream_latency_ms: Some(i64::MIN),
            outcome: Some("stream_error".into()),
            args_digest: Some(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            ),
            arguments: Some(r#"{"id":7,"note":"[redacted]"}"#.into()),
            shown: vec!["get_ticket".into(), "file:///a b".into()],
            client_addr: Some("2001:db8::7".into()),
            repeat_count: Some(i64::MAX),
            first_time_ms: Some(-9),
            first_round_request_id: Some("req-0 \"first\"".into()),
            shadow: Some("deny no_matching_rule".into()),
        }
    }

    /// The raw row the store would read back for `r`, as if written under `id`.
    fn raw(id: i64, r: &AuditRecord) -> RawRow {
        let c = Columns::new(r).expect("encode");
        RawRow {
            id,
            time_ms: c.time_ms,
            request_id: c.request_id.into(),
            session_id: c.session_id.map(Into::into),
            tenant: c.tenant.map(Into::into),
            subject: c.subject.map(Into::into),
            issuer: c.issuer.map(Into::into),
            client_id: c.client_id.map(Into::into),
            actors: c.actors,
            token_id: c.token_id.map(Into::into),
            scopes: c.scopes,
            roles: c.roles,
            upstream: c.upstream.into(),
            method: c.method.into(),
            target: c.target.map(Into::into),
            decision: c.decision.into(),
            reason: c.reason.into(),
            matched_rule: c.matched_rule.map(Into::into),
            policy_revision: c.policy_revision,
            http_status: c.http_status,
            jsonrpc_error: c.jsonrpc_error,
            kind: c.kind.into(),
            trace_id: c.trace_id.map(Into::into),
            upstream_status: c.upstream_status,
            upstream_latency_ms: c.upstream_latency_ms,
            outcome: c.outcome.map(Into::into),
            args_digest: c.args_digest.map(Into::into),
            arguments: c.arguments.map(Into::into),
            shown: c.shown,
            client_addr: c.client_addr.map(Into::into),
            repeat_count: c.repeat_count,
            first_time_ms: c.first_time_ms,
            first_round_request_id: c.first_round_request_id.map(Into::into),
            shadow: c.shadow.map(Into::into),
        }
    }

    #[test]
    fn columns_round_trip_every_field() {
        let r = full();
        let stored = raw(7, &r).into_stored().expect("valid");
        assert_eq!(stored.id, 7);
        assert_eq!(stored.record, r);

        let minimal = AuditRecord::unauthenticated("r", "u", "GET", ReasonCode::TokenMissing, 401);
        assert_eq!(
            raw(1, &minimal).into_stored().expect("valid").record,
            minimal
        );
    }

    #[test]
    fn lists_are_json_arrays() {
        let r = full();
        let c = Columns::new(&r).expect("encode");
        assert_eq!(c.actors, r#"["agent-7","orchestrator \"x\""]"#);
        assert_eq!(c.roles, r#"["reader"]"#);
        assert_eq!(c.shown, r#"["get_ticket","file:///a b"]"#);
        assert_eq!(c.kind, "outcome");
    }

    #[test]
    fn every_reason_code_round_trips() {
        for reason in ReasonCode::ALL {
            let mut r = full();
            r.reason = *reason;
            assert_eq!(
                raw(1, &r).into_stored().expect("valid").record.reason,
                *reason
            );
        }
    }

    #[test]
    fn unparsable_values_are_corrupt_with_the_column_named() {
        type Spoil = fn(&mut RawRow);
        let cases: [(&str, Spoil); 9] = [
            ("reason", |r| r.reason = "not_a_reason".into()),
            ("decision", |r| r.decision = "maybe".into()),
            ("actors", |r| r.actors = "agent-7".into()),
            ("scopes", |r| r.scopes = "[1,2]".into()),
            ("roles", |r| r.roles = "null".into()),
            ("http_status", |r| r.http_status = Some(70_000)),
            ("kind", |r| r.kind = "Outcome".into()),
            ("upstream_status", |r| r.upstream_status = Some(-1)),
            ("shown", |r| r.shown = "".into()),
        ];
        for (field, spoil) in cases {
            let mut row = raw(42, &full());
            spoil(&mut row);
            match row.into_stored() {
                Err(Error::Corrupt { id: 42, field: f }) => assert_eq!(f, field),
                other => panic!("{field}: expected Corrupt, got {other:?}"),
            }
        }
    }
}
