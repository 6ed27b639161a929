//! The audit side of the pipeline: every record of a request carries its context, is handed to
//! the writer in the route's mode, and fails the request closed when the writer cannot take it.

use authz_types::{AuditRecord, Decision, Operation, Principal, ReasonCode};

use super::Ctx;
use crate::App;
use crate::config::AuditMode;
use crate::error::{ApiError, Refusal};
use crate::recording::OutcomeRecorder;

/// Every record of a request carries its trace, session and argument context, and a retry's
/// its first round.
fn annotate(ctx: &Ctx, rec: &mut AuditRecord) {
    if rec.trace_id.is_none() {
        rec.trace_id.clone_from(&ctx.trace_id);
    }
    if rec.session_id.is_none() {
        rec.session_id.clone_from(&ctx.session_id);
    }
    if rec.client_addr.is_none() {
        rec.client_addr = ctx.client.map(|c| c.to_string());
    }
    if rec.first_round_request_id.is_none() {
        rec.first_round_request_id = ctx.first_round.get().cloned();
    }
    if let Some(args) = ctx.arguments.get() {
        args.apply(rec);
    }
    if rec.kind == authz_types::RecordKind::Decision && rec.shadow.is_none() {
        rec.shadow = ctx.shadow.get().cloned();
    }
}

/// Hands an audit record to the writer in the route's mode. Durable: returns once committed.
/// Buffered: returns once queued. Either way, a record the writer cannot take fails the request
/// closed (503): nothing passes without its record.
pub(super) async fn record(app: &App, ctx: &Ctx, mut rec: AuditRecord) -> Result<(), ApiError> {
    annotate(ctx, &mut rec);
    submit(app, ctx, rec).await
}

/// Records a refusal of a request without an identity: the first of its kind (client, route,
/// method, reason, status) in the current window as [`record`] does, the identical ones after
/// it only counted into the window's aggregate record (see [`crate::refusals`]).
pub(super) async fn record_unauthenticated(
    app: &App,
    ctx: &Ctx,
    rec: AuditRecord,
) -> Result<(), ApiError> {
    if app.counted_as_repeat(ctx.client, &rec) {
        return Ok(());
    }
    record(app, ctx, rec).await
}

/// [`record`] for a record already annotated.
async fn submit(app: &App, ctx: &Ctx, rec: AuditRecord) -> Result<(), ApiError> {
    let request_id = rec.request_id.clone();
    let result = match ctx.upstream.audit_mode {
        AuditMode::Durable => {
            let started = std::time::Instant::now();
            let committed = app.audit_writer.append_durable(rec).await.map(drop);
            if committed.is_ok() {
                app.metrics
                    .audit_commit_duration
                    .observe(crate::metrics::seconds_since(started));
            }
            committed
        }
        AuditMode::Buffered => app.audit_writer.append_buffered(rec).await,
    };
    result.map_err(|e| {
        app.metrics.audit_refused(&request_id, &e);
        ApiError::from(Refusal::AuditUnavailable)
    })
}

/// Commits the decision record of an allowed request and starts its outcome record. Without its
/// decision record the request goes nowhere, so there is then no outcome to record.
pub(super) async fn commit_decision(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    decision: &Decision,
) -> Result<OutcomeRecorder, ApiError> {
    let mut rec =
        AuditRecord::for_decision(&ctx.request_id, &ctx.upstream.name, principal, op, decision);
    annotate(ctx, &mut rec);
    let mut outcome = OutcomeRecorder::start(
        &app.audit_writer,
        &app.metrics.outcome_records_lost,
        &app.pending_outcomes,
        &ctx.route.upstream_duration,
        &rec,
    );
    // Annotated once, above: the outcome record starts from the same context.
    submit(app, ctx, rec)
        .await
        .inspect_err(|_| outcome.discard())?;
    app.metrics.count_request(&ctx.route, &op.method, decision);
    // The caller forwards next.
    outcome.forwarding();
    Ok(outcome)
}

/// Records a refusal and returns the error to answer with — or, if the record cannot be
/// written, the 503 that failing closed calls for.
pub(super) async fn refuse(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    decision: &Decision,
    err: ApiError,
) -> ApiError {
    app.metrics.denied.inc();
    app.metrics.count_request(&ctx.route, &op.method, decision);
    let mut rec =
        AuditRecord::for_decision(&ctx.request_id, &ctx.upstream.name, principal, op, decision);
    rec.http_status = Some(err.status.as_u16());
    // A structured denial answers with a result, not a JSON-RPC error: recorded as sent.
    // So does a held call's 2026-07-28 `input_required` answer.
    rec.jsonrpc_error =
        (err.tool_result.is_none() && err.result.is_none()).then_some(err.jsonrpc_code);
    match record(app, ctx, rec).await {
        Ok(()) => err,
        Err(unavailable) => unavailable,
    }
}

/// [`refuse`] for a refusal the gateway decides itself (a check beside the policy), denied
/// for `reason` at the policy revision in force.
pub(super) async fn deny(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    reason: ReasonCode,
    err: ApiError,
) -> ApiError {
    let decision = Decision::deny(reason, None, app.rbac.revision());
    refuse(app, ctx, principal, op, &decision, err).await
}
