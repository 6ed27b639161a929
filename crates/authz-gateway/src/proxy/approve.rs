//! The pipeline step for a call an `approve` rule holds (see [`crate::approvals`]): use an
//! approval for exactly this call, or hold the call and tell the agent where a person decides.

use authz_rbac::{CallContext, Standing};
use authz_types::{Decision, Message, Principal, ReasonCode};

use super::Ctx;
use super::record::refuse;
use crate::App;
use crate::error::{ApiError, Refusal};

/// The decision for a call the policy answered `approval_required`: allowed
/// (`approval_granted`) when an approval for this exact call was used now; otherwise the held
/// call is recorded and answered (a pending approval, a rejection, or too many pending).
pub(super) async fn gate(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
    held: &Decision,
    stateless: bool,
) -> Result<Decision, ApiError> {
    let approvals = &app.approvals;
    let up = &ctx.upstream;
    let tool = msg.operation.mcp_name().unwrap_or("");
    let digest = ctx.arguments.get().and_then(|a| a.digest.as_deref());
    let call = crate::approvals::held_call(principal, &up.name, tool, digest);
    let rule = held.matched_rule.clone().unwrap_or_default();
    // What the route records for its audit records, or (when it keeps only the digest) the
    // same redaction made for the approver.
    let recorded = ctx.arguments.get().and_then(|a| a.recorded.clone());
    let context = CallContext {
        arguments: recorded.or_else(|| crate::recording::redacted_arguments(up, msg)),
        roles: principal.roles.clone(),
        rule: rule.clone(),
        request_id: ctx.request_id.clone(),
    };
    let new_id = format!("apv-{}", uuid::Uuid::new_v4().simple());
    let now = authz_types::now_unix_ms();
    let standing = approvals
        .store
        .hold_or_use(&new_id, &call, &context, approvals.limits(), now)
        .await
        .map_err(|e| {
            approvals.store_failed(&e);
            ApiError::from(Refusal::PolicyUnavailable).with_id(msg.id.clone())
        })?;
    let revision = held.policy_revision;
    let (decision, err) = match standing {
        Standing::Used(approval) => {
            approvals
                .granted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The call's records link to the call that was held.
            let _ = ctx.first_round.set(approval.context.request_id.clone());
            tracing::Span::current().record("decision", "allow");
            return Ok(Decision::allow(
                ReasonCode::ApprovalGranted,
                Some(format!(
                    "{rule}; approval {} by {}",
                    approval.id,
                    approval.decided_by.as_deref().unwrap_or("-")
                )),
                revision,
            ));
        }
        Standing::Pending(approval) | Standing::Created(approval) => (
            Decision::deny(
                ReasonCode::ApprovalRequired,
                Some(format!("{rule}; approval {} pending", approval.id)),
                revision,
            ),
            approvals.held_answer(&approval.id, approval.expires_ms, tool, stateless),
        ),
        Standing::Rejected(approval) => {
            let mut err = ApiError::from(Refusal::ApprovalRejected);
            err.data = Some(serde_json::json!({
                "approvalId": approval.id,
                "retryAfterMs": (approval.expires_ms - now).max(0),
            }));
            (
                Decision::deny(
                    ReasonCode::ApprovalRejected,
                    Some(format!(
                        "{rule}; approval {} rejected by {}",
                        approval.id,
                        approval.decided_by.as_deref().unwrap_or("-")
                    )),
                    revision,
                ),
                err,
            )
        }
        Standing::TooManyPending { pending } => (
            Decision::deny(
                ReasonCode::TooManyRequests,
                Some(format!("{rule}; {pending} approvals already pending")),
                revision,
            ),
            {
                let mut err = ApiError::from(Refusal::TooManyRequests);
                err.data = Some(serde_json::json!({ "pendingApprovals": pending }));
                err
            },
        ),
    };
    Err(refuse(
        app,
        ctx,
        principal,
        &msg.operation,
        &decision,
        err.with_id(msg.id.clone()),
    )
    .await)
}

/// The bytes to forward without the gateway's own entry in `inputResponses` (the answer a
/// 2026-07-28 client gives the approval elicitation); unchanged when there is none.
pub(super) fn without_own_response(msg: &Message, bytes: bytes::Bytes) -> bytes::Bytes {
    let has_own = msg
        .value
        .pointer("/params/inputResponses")
        .and_then(|r| r.get(crate::approvals::INPUT_KEY))
        .is_some();
    if !has_own {
        return bytes;
    }
    // Stripped from the bytes about to be forwarded (a requestState may have been restored in
    // them), which parse: they were classified or re-serialized from what was.
    let stripped = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| crate::approvals::strip_own_response(&v))
        .and_then(|v| serde_json::to_vec(&v).ok());
    stripped.map_or(bytes, bytes::Bytes::from)
}
