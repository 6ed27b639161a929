//! `authzctl approvals`: calls held by approve rules, and an approver's decision on one.

use std::io::Write;

use authz_rbac::{Approval, ApprovalFilter, ApprovalStore};
use serde_json::{Value, json};

use crate::UsageError;
use crate::cli::{ApprovalStoreArgs, ApprovalsCommand};
use crate::times::format_time;
use crate::write_table;

async fn open(store: &ApprovalStoreArgs) -> anyhow::Result<ApprovalStore> {
    Ok(ApprovalStore::connect(store.url()?).await?)
}

fn approval_json(a: &Approval, now: i64) -> Value {
    json!({
        "id": a.id,
        "state": a.shown_state(now),
        "upstream": a.call.upstream,
        "tool": a.call.tool,
        "issuer": a.call.issuer,
        "subject": a.call.subject,
        "tenant": a.call.tenant,
        "acting": a.call.acting,
        "args_digest": a.call.args_digest,
        "arguments": a.context.arguments.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
        "roles": a.context.roles,
        "rule": a.context.rule,
        "request_id": a.context.request_id,
        "created_ms": a.created_ms,
        "expires_ms": a.expires_ms,
        "decided_by": a.decided_by,
        "decided_ms": a.decided_ms,
        "reason": a.reason,
        "used_ms": a.used_ms,
        "used_request_id": a.used_request_id,
    })
}

pub(crate) async fn run(
    command: ApprovalsCommand,
    json: bool,
    out: &mut dyn Write,
    confirmation: crate::Confirmation,
) -> anyhow::Result<()> {
    let now = authz_types::now_unix_ms();
    match command {
        ApprovalsCommand::Prune {
            before,
            confirm,
            store,
        } => {
            let before_ms = before.to_unix_ms(now);
            let when = format_time(before_ms);
            crate::confirm(
                confirmation,
                confirm.yes,
                &format!("delete the approvals that lapsed before {when}"),
                &[],
            )?;
            let store = open(&store).await?;
            let (approvals, decisions) = store.prune(before_ms).await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"before": when, "before_ms": before_ms, "approvals": approvals,
                           "decisions": decisions})
                )?;
            } else {
                writeln!(
                    out,
                    "deleted {approvals} approval(s) that lapsed before {when} and {decisions} \
                     decision(s) about them already in an audit chain"
                )?;
            }
        }
        ApprovalsCommand::List {
            state,
            upstream,
            subject,
            tenant,
            limit,
            store,
        } => {
            let filter = ApprovalFilter {
                state: (state != "all").then_some(state),
                upstream,
                subject,
                tenant,
                limit: Some(limit),
            };
            let list = open(&store).await?.list(&filter, now).await?;
            if json {
                let items: Vec<Value> = list.iter().map(|a| approval_json(a, now)).collect();
                writeln!(out, "{}", json!({ "approvals": items }))?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.shown_state(now).to_owned(),
                        a.call.upstream.clone(),
                        a.call.tool.clone(),
                        a.call.subject.clone(),
                        a.call.tenant.clone(),
                        format_time(a.created_ms),
                        format_time(a.expires_ms),
                        a.decided_by.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            write_table(
                out,
                &[
                    "ID",
                    "STATE",
                    "UPSTREAM",
                    "TOOL",
                    "SUBJECT",
                    "TENANT",
                    "ASKED",
                    "LAPSES",
                    "DECIDED BY",
                ],
                &rows,
            )?;
        }
        ApprovalsCommand::Show { id, store } => {
            let store = open(&store).await?;
            let a = the_approval(&store, &id).await?;
            let events = store.events(Some(&id)).await?;
            if json {
                let history: Vec<Value> = events
                    .iter()
                    .map(|e| json!({"event": e.event, "actor": e.actor, "time_ms": e.time_ms}))
                    .collect();
                let mut v = approval_json(&a, now);
                v["history"] = Value::Array(history);
                writeln!(out, "{}", json!({ "approval": v }))?;
                return Ok(());
            }
            writeln!(out, "approval  {}", a.id)?;
            writeln!(out, "state     {}", a.shown_state(now))?;
            writeln!(out, "call      {} on {}", a.call.tool, a.call.upstream)?;
            writeln!(
                out,
                "asked by  {} ({}), tenant {}, {}",
                a.call.subject, a.call.issuer, a.call.tenant, a.call.acting
            )?;
            writeln!(out, "roles     {}", a.context.roles.join(", "))?;
            writeln!(out, "held by   {}", a.context.rule)?;
            writeln!(out, "request   {}", a.context.request_id)?;
            writeln!(out, "asked     {}", format_time(a.created_ms))?;
            writeln!(out, "lapses    {}", format_time(a.expires_ms))?;
            if let (Some(by), Some(at)) = (&a.decided_by, a.decided_ms) {
                write!(out, "decided   by {by} at {}", format_time(at))?;
                match &a.reason {
                    Some(r) => writeln!(out, ": {r}")?,
                    None => writeln!(out)?,
                }
            }
            if let (Some(at), Some(rid)) = (a.used_ms, &a.used_request_id) {
                writeln!(out, "used      at {} by request {rid}", format_time(at))?;
            }
            writeln!(out, "digest    {}", a.call.args_digest)?;
            match &a.context.arguments {
                Some(args) => {
                    let pretty = serde_json::from_str::<Value>(args)
                        .ok()
                        .and_then(|v| serde_json::to_string_pretty(&v).ok())
                        .unwrap_or_else(|| args.clone());
                    writeln!(out, "arguments")?;
                    for line in pretty.lines() {
                        writeln!(out, "  {line}")?;
                    }
                }
                None => writeln!(out, "arguments (not kept)")?,
            }
        }
        ApprovalsCommand::Approve {
            id,
            use_within_secs,
            actor,
            store,
        } => {
            let store = open(&store).await?;
            let actor = crate::cli::resolve_actor(actor.as_deref());
            let ttl = i64::try_from(use_within_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let decided = store.approve(&id, &actor, ttl, now).await;
            report(&store, &id, decided, "approved", &actor, json, now, out).await?;
        }
        ApprovalsCommand::Reject {
            id,
            reason,
            block_secs,
            actor,
            store,
        } => {
            let store = open(&store).await?;
            let actor = crate::cli::resolve_actor(actor.as_deref());
            let block = i64::try_from(block_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let decided = store
                .reject(&id, &actor, reason.as_deref(), block, now)
                .await;
            report(&store, &id, decided, "rejected", &actor, json, now, out).await?;
        }
    }
    Ok(())
}

async fn the_approval(store: &ApprovalStore, id: &str) -> anyhow::Result<Approval> {
    store
        .get(id)
        .await?
        .ok_or_else(|| UsageError::new(format!("no approval `{id}`")).into())
}

/// The outcome of a decision: what was decided, or why nothing was (unknown, or no longer
/// pending: decided meanwhile or lapsed).
#[allow(clippy::too_many_arguments)]
async fn report(
    store: &ApprovalStore,
    id: &str,
    decided: Result<Approval, authz_rbac::Error>,
    verb: &str,
    actor: &str,
    json: bool,
    now: i64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let a = match decided {
        Ok(a) => a,
        Err(authz_rbac::Error::NotFound) => {
            let a = the_approval(store, id).await?;
            return Err(UsageError::new(format!(
                "approval `{id}` is {}, not pending: nothing was changed",
                a.shown_state(now)
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        writeln!(out, "{}", json!({ "approval": approval_json(&a, now) }))?;
    } else {
        writeln!(
            out,
            "{verb} {} ({} on {} for {}) as {actor}; {} until {}",
            a.id,
            a.call.tool,
            a.call.upstream,
            a.call.subject,
            if verb == "approved" {
                "usable once"
            } else {
                "identical calls refused"
            },
            format_time(a.expires_ms)
        )?;
    }
    Ok(())
}
