//! Calls held for a person: what an `approve` rule does at request time.
//!
//! The policy answers `approval_required` for a tool call an `approve` rule matches (deny still
//! overrides it). The gateway then looks in the shared [`ApprovalStore`] for this exact call —
//! the principal, who acts for it (client id and `act` chain), the route, the tool and the
//! digest of its arguments:
//!
//! - an approved, unexpired approval is used, once (atomically across replicas), and the call
//!   goes through the rest of the pipeline like any allowed call: quotas, the in-flight limit,
//!   its decision record (`approval_granted`, linked to the held call's request id as its
//!   first round) before anything is forwarded;
//! - otherwise the call is held: a pending approval is created (or the one already pending is
//!   reused), the held call is recorded (deny, `approval_required`, naming the approval) and
//!   the agent is told in a form its SDK understands: a 2026-07-28 client gets an
//!   `input_required` result whose URL-mode elicitation points at the approval page, an older
//!   one the JSON-RPC error "URL elicitation required" (-32042) with the same URL, the approval
//!   id and a retry hint; without a page, a JSON-RPC error with its own code (-31005). Both
//!   retry the identical call once an approver said yes;
//! - a recent rejection refuses identical calls (403 `approval_rejected`); a principal with as
//!   many pending approvals as allowed gets 429 and no new one.
//!
//! Approvers decide with `authzctl approvals` or on the admin listener's page
//! ([`crate::approval_page`]); every decision is appended to the store's history and written
//! into exactly one replica's audit chain by the task started here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use authz_rbac::{ApprovalEvent, ApprovalStore, HeldCall, HoldLimits};
use authz_types::{AuditRecord, Effect, Principal, ReasonCode};
use serde_json::{Value, json};

use crate::config;
use crate::error::{ApiError, Refusal};

/// The key of the gateway's own entry in `inputRequests` / `inputResponses`.
pub(crate) const INPUT_KEY: &str = "authz_gateway_approval";

/// How often approvers' decisions are looked for, to be written into the audit chain.
const AUDIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The approval service of one gateway.
#[derive(Debug)]
pub(crate) struct Approvals {
    pub(crate) store: ApprovalStore,
    pub(crate) settings: config::Approvals,
    /// The approval page's base URL (the admin listener's public URL), if it is served.
    pub(crate) page_url: Option<String>,
    /// Held calls answered (a new or a pending approval).
    pub(crate) held: AtomicU64,
    /// Calls let through on an approval.
    pub(crate) granted: AtomicU64,
    /// Approvers' decisions this replica wrote into its audit chain.
    pub(crate) decisions_audited: AtomicU64,
    /// Failed store operations (the call failed closed, or a decision waits to be audited).
    pub(crate) store_errors: AtomicU64,
}

impl Approvals {
    /// Opens the service and starts the task writing approvers' decisions into `writer`'s
    /// chain (claimed under `holder`); the task ends when the returned value is dropped.
    pub(crate) fn start(
        store: ApprovalStore,
        settings: config::Approvals,
        admin: Option<&config::Admin>,
        writer: authz_audit::AuditWriter,
        holder: String,
    ) -> Arc<Approvals> {
        let approvals = Arc::new(Approvals {
            store,
            settings,
            page_url: admin.map(|a| a.public_url.clone()),
            held: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            decisions_audited: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
        });
        tokio::spawn(audit_decisions(Arc::downgrade(&approvals), writer, holder));
        approvals
    }

    pub(crate) fn limits(&self) -> HoldLimits {
        HoldLimits {
            pending_ttl_ms: millis(self.settings.pending_ttl),
            max_pending_per_principal: i64::from(self.settings.max_pending_per_principal),
        }
    }

    pub(crate) fn approved_ttl_ms(&self) -> i64 {
        millis(self.settings.approved_ttl)
    }

    pub(crate) fn rejected_ttl_ms(&self) -> i64 {
        millis(self.settings.rejected_ttl)
    }

    /// The page of approval `id`, when a page is served.
    pub(crate) fn link(&self, id: &str) -> Option<String> {
        self.page_url
            .as_ref()
            .map(|base| format!("{base}/approvals/{id}"))
    }

    pub(crate) fn store_failed(&self, e: &authz_rbac::Error) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "the approval store failed; the call fails closed");
    }

    /// The answer to a held call: see the module documentation.
    pub(crate) fn held_answer(
        &self,
        approval_id: &str,
        expires_ms: i64,
        tool: &str,
        stateless: bool,
    ) -> ApiError {
        self.held.fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "The call to `{tool}` waits for an approver (approval {approval_id}). Once it is \
             approved, send the same call again; it goes through once."
        );
        let Some(url) = self.link(approval_id) else {
            let mut err = ApiError::from(Refusal::ApprovalPendingWithoutPage);
            err.data = Some(json!({
                "approvalId": approval_id,
                "expiresAtMs": expires_ms,
                "retry": "send the identical call again once an approver approved it \
                          (authzctl approvals approve <id>)",
            }));
            return err;
        };
        let elicitation = json!({
            "mode": "url",
            "elicitationId": approval_id,
            "url": url,
            "message": message,
        });
        if stateless {
            let mut err = ApiError::from(Refusal::ApprovalPending);
            err.result = Some(json!({
                "resultType": "input_required",
                "inputRequests": {
                    INPUT_KEY: {"method": "elicitation/create", "params": elicitation}
                },
            }));
            return err;
        }
        let mut err = ApiError::from(Refusal::ApprovalPending);
        err.data = Some(json!({
            "elicitations": [elicitation],
            "approvalId": approval_id,
            "expiresAtMs": expires_ms,
            "retry": "send the identical call again once an approver approved it",
        }));
        err
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The exact call an approval is bound to.
pub(crate) fn held_call(
    principal: &Principal,
    upstream: &str,
    tool: &str,
    args_digest: Option<&str>,
) -> HeldCall {
    HeldCall {
        upstream: upstream.to_owned(),
        tool: tool.to_owned(),
        issuer: principal.issuer.clone(),
        subject: principal.subject.clone(),
        tenant: principal.tenant_or_default().to_owned(),
        acting: acting(principal),
        // A call without arguments has a digest too: that of nothing.
        args_digest: args_digest.unwrap_or("-").to_owned(),
    }
}

/// Who acts for the principal, as an approval remembers it: the client id and the `act` chain.
pub(crate) fn acting(principal: &Principal) -> String {
    format!(
        "client={} act={}",
        principal.client_id.as_deref().unwrap_or("-"),
        if principal.actors.is_empty() {
            "-".to_owned()
        } else {
            principal.actors.join(">")
        }
    )
}

/// Removes the gateway's own entry from a retry's `inputResponses` (and the member, once
/// empty), so the upstream sees the call as the agent first made it. `None`: nothing to remove.
pub(crate) fn strip_own_response(value: &Value) -> Option<Value> {
    let responses = value.pointer("/params/inputResponses")?.as_object()?;
    if !responses.contains_key(INPUT_KEY) {
        return None;
    }
    let mut value = value.clone();
    let params = value.get_mut("params")?.as_object_mut()?;
    let emptied = match params.get_mut("inputResponses") {
        Some(Value::Object(map)) => {
            map.remove(INPUT_KEY);
            map.is_empty()
        }
        _ => false,
    };
    if emptied {
        params.remove("inputResponses");
    }
    Some(value)
}

async fn audit_decisions(
    approvals: std::sync::Weak<Approvals>,
    writer: authz_audit::AuditWriter,
    holder: String,
) {
    let mut tick = tokio::time::interval(AUDIT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(approvals) = approvals.upgrade() else {
            return;
        };
        approvals.audit_pending_decisions(&writer, &holder).await;
    }
}

impl Approvals {
    /// Writes every approver's decision no replica has written yet into this replica's chain:
    /// claimed in the store first, so exactly one replica writes each; one whose record cannot
    /// be written is given back for the next round.
    pub(crate) async fn audit_pending_decisions(
        &self,
        writer: &authz_audit::AuditWriter,
        holder: &str,
    ) {
        let events = match self.store.unaudited(100).await {
            Ok(events) => events,
            Err(e) => {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "reading approvers' decisions failed; trying again");
                return;
            }
        };
        for event in events {
            match self.store.claim_audit(event.id, holder).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    self.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "claiming an approver's decision failed");
                    return;
                }
            }
            let approval = self.store.get(&event.approval_id).await.ok().flatten();
            let rec = decision_record(&event, approval.as_ref());
            if let Err(e) = writer.append_durable(rec).await {
                tracing::error!(error = %e, decision = event.id, "an approver's decision could not be audited; trying again later");
                if self.store.release_audit(event.id, holder).await.is_err() {
                    self.store_errors.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            self.decisions_audited.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The audit record of an approver's decision: method `approval/<event>` (`approved`,
/// `rejected`), the approver as subject, the tool as target, allow with `approval_granted` for
/// an approval and deny with `approval_rejected` for a rejection; the rule names the approval,
/// whose call it was and its argument digest; the request id links to the held call.
pub(crate) fn decision_record(
    event: &ApprovalEvent,
    approval: Option<&authz_rbac::Approval>,
) -> AuditRecord {
    let approves = event.event == "approved";
    let reason = if approves {
        ReasonCode::ApprovalGranted
    } else {
        ReasonCode::ApprovalRejected
    };
    let upstream = approval.map_or("-", |a| a.call.upstream.as_str());
    let mut rec = AuditRecord::unauthenticated(
        format!("approval-{}", event.id),
        upstream,
        format!("approval/{}", event.event),
        reason,
        0,
    );
    rec.http_status = None;
    rec.decision = if approves {
        Effect::Allow
    } else {
        Effect::Deny
    };
    rec.time_ms = event.time_ms;
    rec.subject = Some(event.actor.clone());
    if let Some(a) = approval {
        rec.target = Some(a.call.tool.clone());
        rec.tenant = Some(a.call.tenant.clone());
        rec.args_digest = Some(a.call.args_digest.clone());
        rec.first_round_request_id = Some(a.context.request_id.clone());
        rec.matched_rule = Some(format!(
            "approval {} for {} ({}) {}",
            a.id, a.call.subject, a.call.issuer, a.call.acting
        ));
    } else {
        rec.matched_rule = Some(format!("approval {}", event.approval_id));
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_own_response_is_removed() {
        let v =
            json!({"params": {"name": "t", "inputResponses": {INPUT_KEY: {"action": "accept"}}}});
        assert_eq!(
            strip_own_response(&v),
            Some(json!({"params": {"name": "t"}}))
        );
        let v =
            json!({"params": {"inputResponses": {INPUT_KEY: {}, "other": {"action": "accept"}}}});
        assert_eq!(
            strip_own_response(&v),
            Some(json!({"params": {"inputResponses": {"other": {"action": "accept"}}}}))
        );
        assert_eq!(
            strip_own_response(&json!({"params": {"inputResponses": {"x": 1}}})),
            None
        );
        assert_eq!(strip_own_response(&json!({"params": {}})), None);
    }
}
