//! Audit shipping (`[[audit.sinks]]`): each configured sink gets an [`authz_audit::Shipper`]
//! that exports the trail, at least once and in chain order, to a SIEM's HTTP collector or an
//! OTLP logs endpoint. The shipper only reads the store, so a slow or failing sink never holds
//! up a request; the lag is in the metrics (`authz_audit_ship_lag_records`,
//! `authz_audit_ship_lag_seconds`).
//!
//! What a sink receives, per kind, in one `POST` per batch:
//! - `json_lines`: one JSON object per line (`application/x-ndjson`): the record's fields plus
//!   `id`, `chain_id`, `seq` and `hash`, so a receiver can drop a repeat by `(chain_id, seq)`.
//! - `splunk_hec`: one HEC event per record, `{"time", "host", "source", "sourcetype", "event"}`
//!   with the same object as `event`.
//! - `otlp_logs`: an OTLP/HTTP `ExportLogsServiceRequest` in its JSON encoding, one log record
//!   per audit record: the time, a severity (INFO for allow, WARN for anything refused), the
//!   trace id, bounded attributes (`authz.*`, `mcp.method`) and the same object as the body.
//!
//! A response other than 2xx, or no response within `timeout_ms`, fails the batch, which is
//! sent again with backoff, unchanged, until it is taken: a sink that keeps refusing a batch
//! holds its own shipping up (the lag grows and alerts) rather than lose a record. An OTLP
//! partial success is not retried (the protocol says so); its rejected count is logged and
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use authz_audit::{ShippedRecord, Shipper, ShipperConfig, Sink};
use authz_types::Effect;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use crate::config::{AuditSink, SinkKind};

/// One running sink.
#[derive(Debug)]
pub(crate) struct RunningSink {
    pub(crate) name: String,
    pub(crate) shipper: Shipper,
    /// Log records an OTLP receiver said it rejected (a partial success).
    pub(crate) rejected: Arc<AtomicU64>,
}

/// Starts a shipper for every configured sink, shipping as `holder` (this replica's chain id).
pub(crate) fn start(
    store: &authz_audit::AuditStore,
    sinks: &[AuditSink],
    holder: &str,
    service: &str,
) -> anyhow::Result<Vec<RunningSink>> {
    sinks
        .iter()
        .map(|s| {
            let rejected = Arc::new(AtomicU64::new(0));
            let sink = HttpSink::new(s, holder, service, rejected.clone())
                .with_context(|| format!("audit sink `{}`", s.name))?;
            let config = ShipperConfig {
                batch_records: s.batch_records,
                poll_interval: s.poll_interval,
                // Long enough that a send timing out never outlives the lease.
                lease_ms: i64::try_from(s.timeout.as_millis() * 3)
                    .unwrap_or(i64::MAX)
                    .max(30_000),
                start: s.start,
                ..ShipperConfig::new(s.name.clone(), holder)
            };
            let shipper = Shipper::spawn(store.clone(), config, sink)
                .with_context(|| format!("audit sink `{}`", s.name))?;
            tracing::info!(sink = %s.name, url = %s.url, kind = ?s.kind, "audit shipping started");
            Ok(RunningSink {
                name: s.name.clone(),
                shipper,
                rejected,
            })
        })
        .collect()
}

/// A sink reached over HTTP.
struct HttpSink {
    kind: SinkKind,
    url: reqwest::Url,
    client: reqwest::Client,
    authorization: Option<HeaderValue>,
    /// The replica, as Splunk's `host`.
    holder: String,
    service: String,
    rejected: Arc<AtomicU64>,
}

impl HttpSink {
    fn new(
        s: &AuditSink,
        holder: &str,
        service: &str,
        rejected: Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &s.ca_file {
            builder = crate::upstream::trust_ca_file(builder, path)?;
        }
        let authorization = s
            .authorization
            .as_ref()
            .map(|a| {
                let mut v = HeaderValue::from_str(a.expose()).context("the sink token")?;
                v.set_sensitive(true);
                anyhow::Ok(v)
            })
            .transpose()?;
        Ok(Self {
            kind: s.kind,
            url: s.url.clone(),
            client: builder.build().context("building the HTTP client")?,
            authorization,
            holder: holder.to_owned(),
            service: service.to_owned(),
            rejected,
        })
    }
}

impl Sink for HttpSink {
    async fn send(&self, batch: &[ShippedRecord]) -> Result<(), String> {
        let (body, content_type) = match self.kind {
            SinkKind::JsonLines => (json_lines(batch), "application/x-ndjson"),
            SinkKind::SplunkHec => (splunk_hec(batch, &self.holder), "application/json"),
            SinkKind::OtlpLogs => (otlp_logs(batch, &self.service), "application/json"),
        };
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let excerpt: String = text.chars().take(200).collect();
            return Err(format!("{status}: {excerpt}"));
        }
        if self.kind == SinkKind::OtlpLogs {
            let rejected = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.pointer("/partialSuccess/rejectedLogRecords").cloned())
                .and_then(|n| n.as_u64().or_else(|| n.as_str()?.parse().ok()))
                .unwrap_or(0);
            if rejected > 0 {
                self.rejected.fetch_add(rejected, Ordering::Relaxed);
                tracing::warn!(rejected, response = %text, "the OTLP receiver rejected audit log records");
            }
        }
        Ok(())
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn json_lines(batch: &[ShippedRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 600);
    for r in batch {
        // A record always serializes: its fields are strings, numbers and lists of them.
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

fn splunk_hec(batch: &[ShippedRecord], host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 700);
    for r in batch {
        let event = json!({
            "time": r.record.time_ms as f64 / 1000.0,
            "host": host,
            "source": "authz-gateway",
            "sourcetype": "mcp:authz:audit",
            "event": r,
        });
        if serde_json::to_writer(&mut out, &event).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// An OTLP `AnyValue` holding a string.
fn string(value: &str) -> Value {
    json!({ "stringValue": value })
}

fn attribute(key: &str, value: Value) -> Value {
    json!({ "key": key, "value": value })
}

/// The OTLP/HTTP JSON encoding of the batch: 64-bit integers as strings, ids as hex.
fn otlp_logs(batch: &[ShippedRecord], service: &str) -> Vec<u8> {
    let records: Vec<Value> = batch
        .iter()
        .map(|r| {
            let rec = &r.record;
            let allowed = rec.decision == Effect::Allow;
            let mut attributes = vec![
                attribute("authz.audit.id", json!({ "intValue": r.id.to_string() })),
                attribute("authz.audit.chain_id", string(&r.chain_id)),
                attribute("authz.audit.seq", json!({ "intValue": r.seq.to_string() })),
                attribute("authz.audit.hash", string(&r.hash)),
                attribute("authz.kind", string(rec.kind.as_str())),
                attribute("authz.decision", string(rec.decision.as_str())),
                attribute("authz.reason", string(rec.reason.as_str())),
                attribute("authz.upstream", string(&rec.upstream)),
                attribute("authz.request_id", string(&rec.request_id)),
                attribute("mcp.method", string(&rec.method)),
            ];
            for (key, value) in [
                ("authz.target", &rec.target),
                ("authz.subject", &rec.subject),
                ("authz.tenant", &rec.tenant),
                ("authz.session_id", &rec.session_id),
            ] {
                if let Some(v) = value {
                    attributes.push(attribute(key, string(v)));
                }
            }
            let nanos = i128::from(rec.time_ms) * 1_000_000;
            let mut log = json!({
                "timeUnixNano": nanos.max(0).to_string(),
                "severityNumber": if allowed { 9 } else { 13 },
                "severityText": if allowed { "INFO" } else { "WARN" },
                "eventName": "authz.audit",
                "body": string(&serde_json::to_string(r).unwrap_or_default()),
                "attributes": attributes,
            });
            if let Some(trace) = rec.trace_id.as_deref().filter(|t| is_trace_id(t)) {
                log["traceId"] = Value::String(trace.to_owned());
            }
            log
        })
        .collect();
    let body = json!({
        "resourceLogs": [{
            "resource": { "attributes": [attribute("service.name", string(service))] },
            "scopeLogs": [{
                "scope": { "name": "authz-audit", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": records,
            }],
        }],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// 32 lowercase hex digits, not all zero (a valid W3C trace id).
fn is_trace_id(t: &str) -> bool {
    t.len() == 32
        && t.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && t.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::{AuditRecord, ReasonCode};

    fn shipped(seq: i64) -> ShippedRecord {
        let mut record = AuditRecord::unauthenticated(
            format!("r{seq}"),
            "tickets",
            "tools/call",
            ReasonCode::TokenMissing,
            401,
        );
        record.time_ms = 1_700_000_000_123;
        record.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        ShippedRecord {
            id: seq + 10,
            chain_id: "gw-1".into(),
            seq,
            hash: "ab".repeat(32),
            record,
        }
    }

    #[test]
    fn json_lines_are_one_record_per_line_that_parses_back() {
        let body = json_lines(&[shipped(1), shipped(2)]);
        let text = String::from_utf8(body).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: ShippedRecord = serde_json::from_str(lines[1]).expect("parses");
        assert_eq!(back, shipped(2));
    }

    #[test]
    fn splunk_events_carry_the_time_in_seconds_and_the_record_as_event() {
        let body = splunk_hec(&[shipped(1)], "gw-1");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["time"], json!(1_700_000_000.123));
        assert_eq!(v["host"], "gw-1");
        assert_eq!(v["event"]["request_id"], "r1");
        assert_eq!(v["event"]["seq"], 1);
    }

    #[test]
    fn otlp_logs_follow_the_json_encoding() {
        let mut denied = shipped(2);
        denied.record.trace_id = Some("00000000000000000000000000000000".into());
        let v: Value = serde_json::from_slice(&otlp_logs(&[shipped(1), denied], "authz-gateway"))
            .expect("json");
        let logs = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(logs[0]["timeUnixNano"], "1700000000123000000");
        assert_eq!(logs[0]["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(logs[0]["severityText"], "WARN", "a 401 refusal is not INFO");
        assert!(
            logs[1].get("traceId").is_none(),
            "an all-zero trace id is left out"
        );
        let attrs = logs[0]["attributes"].as_array().expect("attributes");
        assert!(attrs.contains(&json!({"key": "authz.audit.seq", "value": {"intValue": "1"}})));
        assert!(
            attrs.contains(
                &json!({"key": "authz.reason", "value": {"stringValue": "token_missing"}})
            )
        );
        let body: ShippedRecord =
            serde_json::from_str(logs[0]["body"]["stringValue"].as_str().expect("body"))
                .expect("the body is the record");
        assert_eq!(body, shipped(1));
        assert_eq!(
            v["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "authz-gateway"
        );
    }
}
