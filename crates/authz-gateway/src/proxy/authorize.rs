//! Who is asking and what they may do: the bearer token (401 with a challenge), ownership of the
//! session and task a request names (someone else's is reported as unknown), the decision —
//! scopes first, then RBAC (Casbin) — and the per-principal in-flight limit. Every refusal is
//! recorded.

use std::sync::Arc;

use authz_rbac::ConditionArgs;
use authz_types::{
    AuditRecord, CompletionRef, Decision, Message, Method, Operation, Principal, ReasonCode, Target,
};
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::Ctx;
use super::record::{deny, record_unauthenticated, refuse};
use crate::App;
use crate::config::Upstream;
use crate::error::{ApiError, Refusal};
use crate::filter::ItemAllowed;
use crate::limits::Permit;
use crate::refusals::ClientKey;
use crate::sessions::{Owner, SessionCheck};

/// Verifies the bearer token; every failure is answered 401 with a challenge and recorded.
pub(super) async fn authenticate(
    app: &App,
    ctx: &Ctx,
    headers: &HeaderMap,
    method: &str,
) -> Result<Principal, ApiError> {
    let up = &ctx.upstream;
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let auth = values.next().map(|v| v.to_str().unwrap_or(""));
    let repeated = values.next().is_some();
    let token = auth.and_then(|a| {
        let (scheme, rest) = a.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let (reason, description) = match (auth, token) {
        // A token in the URL leaks into logs and proxies; it is refused even next to a header.
        _ if ctx.query_token => (
            ReasonCode::TokenNotInHeader,
            Some("tokens are accepted only in the Authorization header"),
        ),
        // Two Authorization headers are ambiguous: which one would a proxy behind us honour?
        _ if repeated => (
            ReasonCode::TokenMalformed,
            Some("send exactly one Authorization header"),
        ),
        (None, _) => (ReasonCode::TokenMissing, None),
        (Some(_), None) | (Some(_), Some("")) => (
            ReasonCode::TokenMalformed,
            Some("the Authorization header must be `Bearer <token>`"),
        ),
        (Some(_), Some(t)) => match app.verifier.verify_refreshing(t, &up.resource).await {
            Ok(p) => return Ok(Arc::unwrap_or_clone(p)),
            Err(e) => (e.reason(), Some(e.description())),
        },
    };
    tracing::Span::current().record("decision", "deny");
    // A client that has caused too many of these lately is told to back off instead; a valid
    // token from the same address was served above all the same.
    let over_budget = ctx.client.and_then(|c| {
        app.refusals
            .over_budget(ClientKey::of(c), tokio::time::Instant::now())
    });
    if let Some(wait) = over_budget {
        app.metrics.client_rate_limited.inc();
        let mut rec = AuditRecord::unauthenticated(
            &ctx.request_id,
            &up.name,
            method,
            ReasonCode::ClientRateLimited,
            429,
        );
        rec.session_id = ctx.session_id.clone();
        record_unauthenticated(app, ctx, rec).await?;
        let retry_after_secs = crate::buckets::retry_after_secs(wait);
        return Err(Refusal::ClientRateLimited { retry_after_secs }.into());
    }
    let mut rec = AuditRecord::unauthenticated(&ctx.request_id, &up.name, method, reason, 401);
    rec.session_id = ctx.session_id.clone();
    record_unauthenticated(app, ctx, rec).await?;
    let mut challenge = format!("Bearer resource_metadata=\"{}\"", app.metadata_url(up));
    let scopes = crate::scopes::supported_scopes(&up.scopes);
    if !scopes.is_empty() {
        challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    if let Some(d) = description {
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{d}\""
        ));
    }
    Err(ApiError::from(Refusal::Unauthenticated(reason)).with_challenge(challenge))
}

/// A session id presented by anyone but its owner is treated as unknown (404), so a leaked id is
/// useless; the refusal is recorded (under `op`, answering request `id`). This holds for
/// `initialize` too: an upstream that routes by the header would otherwise re-initialize someone
/// else's session.
pub(super) async fn session_owned(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    id: Option<Value>,
) -> Result<(), ApiError> {
    if let Some(sid) = &ctx.session_id
        && app.sessions.check(&ctx.upstream.name, sid, principal).await != SessionCheck::Owned
    {
        let err = ApiError::from(Refusal::SessionNotFound).with_id(id);
        return Err(deny(app, ctx, principal, op, ReasonCode::SessionMismatch, err).await);
    }
    Ok(())
}

/// A task belongs to the principal that created it; anyone else is told it does not exist.
pub(super) async fn task_owned(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
) -> Result<(), ApiError> {
    if let Target::Task(task_id) = &msg.operation.target
        && app
            .tasks
            .check(&ctx.upstream.name, task_id, principal)
            .await
            != SessionCheck::Owned
    {
        let err = ApiError::from(Refusal::TaskNotFound).with_id(msg.id.clone());
        return Err(deny(
            app,
            ctx,
            principal,
            &msg.operation,
            ReasonCode::TaskNotOwned,
            err,
        )
        .await);
    }
    Ok(())
}

/// The decision for a classified message, returned when it allows or holds the call for an
/// approver (`approval_required`, decided by [`super::approve::gate`]). A denial is recorded and
/// refused (with an `insufficient_scope` challenge when scopes are missing); a decision that
/// cannot be made fails closed, unrecorded.
pub(super) async fn decide(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
    stateless: bool,
) -> Result<Decision, ApiError> {
    let up = &ctx.upstream;
    let started = std::time::Instant::now();
    let decision = with_condition_args(msg, |args| {
        let decision = scopes_then_rbac(app, up, principal, &msg.operation, args)?;
        app.metrics
            .decision_duration
            .observe(crate::metrics::seconds_since(started));
        // Shadow mode: the candidate's answer goes into the record, never into what happens.
        if let Some(other) =
            app.shadow
                .differs(principal, &up.name, &msg.operation, &decision, args)
        {
            let _ = ctx.shadow.set(other);
        }
        Ok::<_, ApiError>(decision)
    })?;
    tracing::Span::current().record("decision", decision.effect.as_str());
    let held = decision.reason == ReasonCode::ApprovalRequired;
    if decision.is_allowed() || held {
        let Some(pin) = app
            .pins
            .refuses(up.pin_definitions, &up.name, &msg.operation)
        else {
            // A held call (`approval_required`) is returned too: the caller checks quotas and
            // the in-flight limit before an approval is used or created (see
            // `super::approve::gate`). Nobody is asked to approve a call to a definition nobody
            // approved: the pin check above comes first.
            return Ok(decision);
        };
        // Allowed by policy, but what the agent would call is not what was approved.
        let decision = Decision::deny(
            ReasonCode::DefinitionUnapproved,
            Some(pin),
            decision.policy_revision,
        );
        let err = ApiError::from(Refusal::DefinitionUnapproved).with_id(msg.id.clone());
        return Err(refuse(app, ctx, principal, &msg.operation, &decision, err).await);
    }
    if decision.reason == ReasonCode::InsufficientScope {
        let required = app.scopes.required(&up.scopes, &msg.operation);
        let challenge = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
            required.join(" "),
            app.metadata_url(up)
        );
        let err = ApiError::from(Refusal::InsufficientScope)
            .with_id(msg.id.clone())
            .with_challenge(challenge);
        return Err(refuse(app, ctx, principal, &msg.operation, &decision, err).await);
    }
    // A method the gateway does not know is never passed on; JSON-RPC's answer for that is
    // "method not found" (404 / -32601, as MCP 2026-07-28 specifies), not a policy denial.
    let err = if decision.reason == ReasonCode::UnknownMethod {
        ApiError::from(Refusal::UnknownMethod)
    } else if up.structured_denials
        && msg.operation.method == Method::ToolsCall
        && matches!(
            decision.reason,
            ReasonCode::NoMatchingRule | ReasonCode::ExplicitDeny
        )
    {
        // Opted in (draft SEP-2643): the agent gets a tool error result it can reason about.
        ApiError::from(Refusal::Forbidden(decision.reason))
            .as_tool_result(decision.reason, stateless)
    } else {
        ApiError::from(Refusal::Forbidden(decision.reason))
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

/// The caller's in-flight permit, or a recorded refusal (under `op`, answering request `id`)
/// when it already has as many requests in flight as allowed.
pub(super) async fn admit(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    id: Option<Value>,
) -> Result<Permit, ApiError> {
    match app.in_flight.try_acquire(Owner::of(principal)) {
        Some(permit) => Ok(permit),
        None => {
            let err = ApiError::from(Refusal::TooManyRequests).with_id(id);
            Err(deny(app, ctx, principal, op, ReasonCode::TooManyRequests, err).await)
        }
    }
}

/// Calls `f` with what a rule's condition sees of `msg` (see [`authz_rbac::condition`]): the
/// arguments of a `tools/call` or `prompts/get`, `{"uri": …}` for a resource; nothing else.
fn with_condition_args<T>(msg: &Message, f: impl FnOnce(ConditionArgs<'_>) -> T) -> T {
    static NONE: Value = Value::Null;
    match (&msg.operation.method, &msg.operation.target) {
        (Method::ToolsCall | Method::PromptsGet, _) => f(ConditionArgs::Known(
            msg.value.pointer("/params/arguments").unwrap_or(&NONE),
        )),
        (_, Target::Resource(uri) | Target::Completion(CompletionRef::Resource(uri))) => {
            let args = serde_json::json!({ "uri": uri });
            f(ConditionArgs::Known(&args))
        }
        _ => f(ConditionArgs::Known(&NONE)),
    }
}

/// The authorization decision for one operation: scopes first, then RBAC (with the call's
/// arguments for conditions). An `Err` means no decision could be made and the caller must fail
/// closed.
fn scopes_then_rbac(
    app: &App,
    up: &Upstream,
    principal: &Principal,
    op: &Operation,
    args: ConditionArgs<'_>,
) -> Result<Decision, ApiError> {
    let required = app.scopes.required(&up.scopes, op);
    if !app.scopes.missing(principal, required).is_empty() {
        return Ok(Decision::deny(
            ReasonCode::InsufficientScope,
            None,
            app.rbac.revision(),
        ));
    }
    app.rbac
        .decide_with(principal, &up.name, op, args)
        .map_err(|e| {
            tracing::error!(error = %e, "policy evaluation failed; failing closed");
            ApiError::from(Refusal::PolicyUnavailable)
        })
}

/// A predicate for list filtering: the same decision `tools/call` (etc.) would get.
pub(super) fn item_filter(app: &App, up: Arc<Upstream>, principal: Principal) -> ItemAllowed {
    let scopes = app.scopes.clone();
    let rbac = app.rbac.clone();
    Arc::new(move |op: &Operation| {
        scopes
            .missing(&principal, scopes.required(&up.scopes, op))
            .is_empty()
            // A rule whose condition names the arguments may hold for some call: the item
            // shows, and its call is decided with its arguments.
            && rbac
                .decide_with(&principal, &up.name, op, ConditionArgs::Unknown)
                .is_ok_and(|d| {
                // A tool held for approval is shown: the agent may call it, and a person
                // decides then.
                d.is_allowed() || d.reason == ReasonCode::ApprovalRequired
            })
    })
}

/// Rate limits and quotas, checked once the policy allowed the call (so a refused call spends
/// nothing): over one, the call is answered 429 with `Retry-After` and recorded
/// (`quota_exceeded`, the quota named as the matched rule).
pub(super) async fn within_quota(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    op: &Operation,
    id: Option<Value>,
) -> Result<(), ApiError> {
    let now = tokio::time::Instant::now();
    let Err(over) = app.quotas.check(principal, &ctx.upstream.name, op, now) else {
        return Ok(());
    };
    let retry_after_secs = crate::buckets::retry_after_secs(over.retry_after);
    let decision = Decision::deny(
        ReasonCode::QuotaExceeded,
        Some(format!("quota {}", over.quota)),
        app.rbac.revision(),
    );
    let err = ApiError::from(Refusal::QuotaExceeded { retry_after_secs }).with_id(id);
    Err(refuse(app, ctx, principal, op, &decision, err).await)
}

/// Who and what a multi round-trip state belongs to: the caller, the route, the method and the
/// target of `msg`.
pub(super) fn state_binding(
    up: &Upstream,
    principal: &Principal,
    msg: &Message,
) -> crate::request_state::Binding {
    crate::request_state::Binding {
        owner: format!(
            "{}\n{}\n{}",
            principal.issuer,
            principal.subject,
            principal.tenant_or_default()
        ),
        route: up.name.clone(),
        method: msg.operation.method.as_str().to_owned(),
        target: msg.operation.target.display(),
    }
}

/// A 2026-07-28 retry carrying a `requestState` must bring back the envelope the gateway
/// sealed for this caller, route, method and target (see [`crate::request_state`]); the
/// upstream gets its own state back, in bytes re-serialized from the classified message, and
/// the request's records link to the call's first round. Anything else is refused and recorded
/// (`request_state_invalid`).
pub(super) async fn request_state(
    app: &App,
    ctx: &Ctx,
    principal: &Principal,
    msg: &Message,
    bytes: bytes::Bytes,
    stateless: bool,
) -> Result<bytes::Bytes, ApiError> {
    let Some(presented) = msg
        .value
        .pointer("/params/requestState")
        .filter(|_| stateless)
    else {
        return Ok(bytes);
    };
    let binding = state_binding(&ctx.upstream, principal, msg);
    let opened = match presented.as_str() {
        Some(sealed) => app
            .sealer
            .open(sealed, &binding, authz_types::now_unix_ms()),
        None => Err(crate::request_state::Invalid::Malformed),
    };
    match opened {
        Ok(opened) => {
            // Set once per request: this is the only place, and a request is opened once.
            let _ = ctx.first_round.set(opened.first_round);
            let mut value = msg.value.clone();
            if let Some(slot) = value.pointer_mut("/params/requestState") {
                *slot = Value::String(opened.state);
            }
            // A message that parsed always serializes; if it did not, nothing is forwarded.
            serde_json::to_vec(&value)
                .map(bytes::Bytes::from)
                .map_err(|_| ApiError::from(Refusal::RequestStateInvalid).with_id(msg.id.clone()))
        }
        Err(invalid) => {
            tracing::warn!(
                why = invalid.as_str(),
                "multi round-trip requestState refused"
            );
            let err = ApiError::from(Refusal::RequestStateInvalid).with_id(msg.id.clone());
            Err(deny(
                app,
                ctx,
                principal,
                &msg.operation,
                ReasonCode::RequestStateInvalid,
                err,
            )
            .await)
        }
    }
}
