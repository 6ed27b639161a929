//! What the gateway adds to audit records beyond the decision: the trace id, a digest of the
//! call's arguments (and the arguments themselves where configured, with named fields
//! redacted), and the *outcome* record written when the upstream's answer has ended.
//!
//! The decision record is written before forwarding (committed first in durable mode); the
//! outcome record — upstream status, latency, how the exchange ended, what a list showed —
//! follows it with the same request id. Outcome records are buffered: they never delay the
//! response, and a record the writer refuses is counted and logged, never silently lost.

use std::sync::Arc;
use std::time::Instant;

use authz_audit::{AuditWriter, TryAppend};
use authz_types::{AuditRecord, Message};
use axum::http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Upstream;
use crate::filter::Shown;
use crate::input_requests::{Asked, AskedSink};

/// The W3C trace id of a valid `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then(|| trace.to_owned())
}

/// The digest of a request's `params.arguments`, and the (redacted) arguments when the route
/// records them for this tool or prompt.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arguments {
    pub digest: Option<String>,
    pub recorded: Option<String>,
}

impl Arguments {
    pub(crate) fn of(up: &Upstream, msg: &Message) -> Arguments {
        let Some(args) = msg.value.pointer("/params/arguments") else {
            return Arguments::default();
        };
        let bytes = serde_json::to_vec(args).unwrap_or_default();
        let digest = Some(hex::encode(Sha256::digest(&bytes)));
        let name = msg.operation.mcp_name().unwrap_or("");
        let recorded = if up.record_arguments.iter().any(|g| g.is_match(name)) {
            redacted_arguments(up, msg)
        } else {
            None
        };
        Arguments { digest, recorded }
    }

    pub(crate) fn apply(&self, rec: &mut AuditRecord) {
        rec.args_digest.clone_from(&self.digest);
        rec.arguments.clone_from(&self.recorded);
    }
}

/// A request's `params.arguments` as an approver sees them: redacted as the route redacts
/// them for audit records (`redact_arguments`), whether or not the route records them.
pub(crate) fn redacted_arguments(up: &Upstream, msg: &Message) -> Option<String> {
    let args = msg.value.pointer("/params/arguments")?;
    let name = msg.operation.mcp_name().unwrap_or("");
    let fields: Vec<&str> = up
        .redact_arguments
        .iter()
        .filter(|(g, _)| g.is_match(name))
        .flat_map(|(_, f)| f.iter().map(String::as_str))
        .collect();
    let mut copy = args.clone();
    redact(&mut copy, &fields);
    Some(copy.to_string())
}

/// Replaces the value of every object key named in `fields`, at any depth.
fn redact(v: &mut Value, fields: &[&str]) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if fields.contains(&k.as_str()) {
                    *val = Value::String("[redacted]".to_owned());
                } else {
                    redact(val, fields);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact(i, fields)),
        _ => {}
    }
}

/// Outcome records a `Drop` could not queue at once (the audit queue was full), being written
/// by a task of their own; [`crate::serve`] waits for them before it drains the writer, so a
/// graceful shutdown does not lose them.
#[derive(Debug, Default)]
pub(crate) struct PendingWrites {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl PendingWrites {
    fn begin(&self) {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn end(&self) {
        if self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves once no write is pending.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Writes the outcome record of one forwarded request when dropped.
#[derive(Debug)]
pub(crate) struct OutcomeRecorder {
    writer: AuditWriter,
    /// Counts an outcome record the writer refused (`Metrics::outcome_records_lost`).
    lost: Counter,
    pending: Arc<PendingWrites>,
    record: Option<AuditRecord>,
    started: Instant,
    /// `authz_upstream_duration_seconds` of the route, observed from [`Self::forwarding`] on.
    duration: Histogram,
    forwarded: Option<Instant>,
    outcome: &'static str,
    shown: Option<Shown>,
    /// Input requests a rewrite refused (see [`crate::input_requests`]).
    asked: Option<AskedSink>,
}

impl OutcomeRecorder {
    /// Starts timing the upstream exchange for the request whose decision record is `decision`.
    pub(crate) fn start(
        writer: &AuditWriter,
        lost: &Counter,
        pending: &Arc<PendingWrites>,
        duration: &Histogram,
        decision: &AuditRecord,
    ) -> Self {
        Self {
            writer: writer.clone(),
            lost: lost.clone(),
            pending: Arc::clone(pending),
            record: Some(AuditRecord::outcome(decision)),
            started: Instant::now(),
            duration: duration.clone(),
            forwarded: None,
            outcome: "incomplete",
            shown: None,
            asked: None,
        }
    }

    /// The decision record stands and the request goes upstream now. The upstream duration
    /// metric starts here; the record's `upstream_latency_ms` counts from [`Self::start`] (it
    /// includes a durable decision record's commit), as it always has.
    pub(crate) fn forwarding(&mut self) {
        self.forwarded = Some(Instant::now());
    }

    /// The upstream answered with `status`; the body has not ended yet.
    pub(crate) fn answered(&mut self, status: u16) {
        if let Some(r) = self.record.as_mut() {
            r.upstream_status = Some(status);
        }
        self.outcome = "client_closed";
    }

    /// The answer ended normally.
    pub(crate) fn finished(&mut self) {
        let status = self
            .record
            .as_ref()
            .and_then(|r| r.upstream_status)
            .unwrap_or(0);
        self.outcome = if status < 400 { "ok" } else { "upstream_error" };
    }

    /// The exchange failed: `code` is the gateway's error code (e.g. `upstream_timeout`).
    pub(crate) fn failed(&mut self, code: &'static str, http_status: u16) {
        if let Some(r) = self.record.as_mut() {
            r.http_status = Some(http_status);
        }
        self.outcome = code;
    }

    /// Nothing was forwarded after all: write no outcome record.
    pub(crate) fn discard(&mut self) {
        self.record = None;
    }

    /// The list items the caller was shown end up in the outcome record.
    pub(crate) fn shown_sink(&mut self) -> Shown {
        self.shown.get_or_insert_with(Default::default).clone()
    }

    /// Input requests refused while the answer passed: each becomes a deny record of its own,
    /// and the outcome `input_request_forbidden`.
    pub(crate) fn asked_sink(&mut self) -> AskedSink {
        self.asked.get_or_insert_with(Default::default).clone()
    }

    /// The gateway's id of the request this records.
    pub(crate) fn request_id(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.request_id.as_str())
    }
}

/// The deny record of one forbidden input request, from the call's outcome record: who asked
/// (the call's identity), what was asked (method; the URL's origin, else the call's target).
fn forbidden_input_record(outcome: &AuditRecord, asked: &Asked) -> AuditRecord {
    let mut rec = outcome.clone();
    rec.kind = authz_types::RecordKind::Decision;
    rec.decision = authz_types::Effect::Deny;
    rec.reason = authz_types::ReasonCode::InputRequestForbidden;
    rec.method = asked.method.clone();
    if let Some(origin) = &asked.url_origin {
        rec.target = Some(origin.clone());
    }
    rec.matched_rule = None;
    rec.http_status = Some(200);
    rec.jsonrpc_error = Some(crate::error::FORBIDDEN_CODE);
    rec.upstream_status = None;
    rec.upstream_latency_ms = None;
    rec.outcome = None;
    rec.shown = Vec::new();
    rec
}

impl Drop for OutcomeRecorder {
    fn drop(&mut self) {
        let Some(mut rec) = self.record.take() else {
            return;
        };
        if let Some(forwarded) = self.forwarded {
            self.duration
                .observe(crate::metrics::seconds_since(forwarded));
        }
        rec.time_ms = authz_types::now_unix_ms();
        rec.upstream_latency_ms =
            Some(i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX));
        rec.outcome = Some(self.outcome.to_owned());
        if let Some(shown) = &self.shown {
            rec.shown = std::mem::take(
                &mut *shown
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        }
        let asked = self.asked.as_ref().map_or_else(Vec::new, |a| {
            std::mem::take(&mut *a.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
        });
        if !asked.is_empty() {
            rec.outcome = Some("input_request_forbidden".to_owned());
        }
        let mut records: Vec<AuditRecord> = asked
            .iter()
            .map(|a| forbidden_input_record(&rec, a))
            .collect();
        records.push(rec);
        // Queued at once when the queue has room (almost always); a record that is not taken
        // is counted and logged, never dropped silently.
        let mut waiting = Vec::new();
        for rec in records {
            match self.writer.try_append_buffered(rec) {
                TryAppend::Queued => {}
                TryAppend::Full(rec) => waiting.push(*rec),
                TryAppend::Refused(e, rec) => {
                    self.lost.inc();
                    tracing::error!(error = %e, request_id = %rec.request_id, "the audit writer refused an outcome record");
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        let records = waiting;
        let writer = self.writer.clone();
        let lost = self.lost.clone();
        let pending = Arc::clone(&self.pending);
        // The queue is full: wait for room (bounded by the writer's enqueue timeout) in a task,
        // inside the server's runtime (the body stream ends there); outside one there is nobody
        // left to answer, and the decision record already stands.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            pending.begin();
            handle.spawn(async move {
                for rec in records {
                    let request_id = rec.request_id.clone();
                    if let Err(e) = writer.append_buffered(rec).await {
                        lost.inc();
                        tracing::error!(error = %e, %request_id, "the audit writer refused an outcome record");
                    }
                }
                pending.end();
            });
        } else {
            lost.inc_by(records.len() as u64);
            tracing::error!(request_id = %self.request_id(), "no runtime to record an outcome");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            h.insert("traceparent", bad.parse().expect("header"));
            assert_eq!(trace_id(&h), None, "{bad}");
        }
    }

    #[test]
    fn redaction_reaches_every_depth() {
        let mut v =
            json!({"body": "secret", "nested": [{"password": "p", "keep": 1}], "title": "t"});
        redact(&mut v, &["body", "password"]);
        assert_eq!(
            v,
            json!({"body": "[redacted]", "nested": [{"password": "[redacted]", "keep": 1}], "title": "t"})
        );
    }

    /// An outcome record the writer refuses is counted (and logged), not dropped silently.
    #[tokio::test]
    async fn a_refused_outcome_record_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("a.db").display());
        let store = authz_audit::AuditStore::connect(&url).await.expect("store");
        let writer = AuditWriter::spawn(store, Default::default(), None)
            .await
            .expect("writer");
        let closed = writer.clone();
        writer.shutdown().await.expect("shutdown");
        let lost = Counter::default();
        let decision = AuditRecord::unauthenticated(
            "r1",
            "tickets",
            "tools/call",
            authz_types::ReasonCode::PolicyAllow,
            200,
        );
        let mut outcome = OutcomeRecorder::start(
            &closed,
            &lost,
            &Arc::default(),
            &Histogram::new([]),
            &decision,
        );
        outcome.answered(200);
        outcome.finished();
        drop(outcome);
        for _ in 0..500 {
            if lost.get() == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the refused outcome record was not counted");
    }
}
