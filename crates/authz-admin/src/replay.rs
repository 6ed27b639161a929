//! `authzctl policy replay`: the audited decisions of a window re-decided under a candidate
//! policy, and every decision that would change, grouped and counted.
//!
//! A decision record is re-decided when the policy decided it: allowed by a rule
//! (`policy_allow`), refused by one or by none (`explicit_deny`, `no_matching_rule`), or held
//! for an approver (`approval_required`, and `approval_granted` for the retry that went through
//! on one). The principal is rebuilt from what the record keeps (subject, issuer, tenant, token
//! roles, client, `act` chain) and the operation from its method and target; the candidate's
//! own role assignments apply. Everything else is counted as not re-decided, by reason: what
//! was decided before the policy was asked (a bad token, a missing scope, a malformed request)
//! or beside it (a quota, a pin, the in-flight limit), and records without a subject.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use authz_audit::AuditStore;
use authz_rbac::Rbac;
use authz_types::{AuditRecord, Principal, ReasonCode, RecordKind, now_unix_ms};
use serde_json::{Value, json};

use crate::cli::ReplayArgs;
use crate::store::with_store;
use crate::write_table;

/// The window replayed when `--since` is not given.
const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;

/// What the policy made of a call, as replay compares it.
fn outcome(reason: ReasonCode) -> Option<&'static str> {
    Some(match reason {
        ReasonCode::PolicyAllow => "allow",
        ReasonCode::ExplicitDeny | ReasonCode::NoMatchingRule => "deny",
        ReasonCode::ApprovalRequired | ReasonCode::ApprovalGranted => "held",
        _ => return None,
    })
}

fn principal_of(rec: &AuditRecord) -> Option<Principal> {
    Some(Principal {
        subject: rec.subject.clone()?,
        issuer: rec.issuer.clone().unwrap_or_default(),
        tenant: rec.tenant.clone(),
        client_id: rec.client_id.clone(),
        actors: rec.actors.clone(),
        scopes: rec.scopes.clone(),
        roles: rec.roles.clone(),
        token_id: rec.token_id.clone(),
        expires_at: i64::MAX,
        issued_at: None,
    })
}

/// One group of changed decisions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Change {
    subject: String,
    tenant: String,
    upstream: String,
    method: String,
    target: String,
    old: &'static str,
    new: &'static str,
    /// The candidate's rule that decided, or its reason when no rule did.
    rule: String,
}

pub(crate) async fn replay(
    args: &ReplayArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let rbac = Rbac::from_files(&args.model, &args.candidates)
        .await
        .map_err(|e| anyhow::anyhow!("the candidate policy does not load: {e}"))?;
    let now = now_unix_ms();
    let mut base = args.filter.to_query(now);
    base.kind = Some(RecordKind::Decision);
    let since = *base.filter.since_ms.get_or_insert(now - DEFAULT_WINDOW_MS);
    let until = base.filter.until_ms.unwrap_or(now);
    let mut changes: HashMap<Change, u64> = HashMap::new();
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let (mut redecided, mut unchanged, mut failed) = (0u64, 0u64, 0u64);
    with_store(&args.store, async |store: &AuditStore, shown: &str| {
        crate::audit::each_record(store, &base, shown, |r| {
            let rec = &r.record;
            let n = u64::try_from(rec.repeat_count.unwrap_or(1)).unwrap_or(1);
            let (Some(old), Some(principal)) = (outcome(rec.reason), principal_of(rec)) else {
                *skipped.entry(rec.reason.as_str().to_owned()).or_default() += n;
                return Ok(());
            };
            let target = rec.target.clone().unwrap_or_else(|| "-".to_owned());
            let Ok(op) = crate::operation_from_cli(&rec.method, &target) else {
                *skipped
                    .entry("unreadable_operation".to_owned())
                    .or_default() += n;
                return Ok(());
            };
            let decision = match rbac.decide(&principal, &rec.upstream, &op) {
                Ok(d) => d,
                Err(_) => {
                    failed += n;
                    return Ok(());
                }
            };
            redecided += n;
            let new = outcome(decision.reason).unwrap_or("deny");
            if new == old {
                unchanged += n;
                return Ok(());
            }
            let change = Change {
                subject: principal.subject.clone(),
                tenant: principal.tenant_or_default().to_owned(),
                upstream: rec.upstream.clone(),
                method: rec.method.clone(),
                target,
                old,
                new,
                rule: decision
                    .matched_rule
                    .unwrap_or_else(|| decision.reason.as_str().to_owned()),
            };
            *changes.entry(change).or_default() += n;
            Ok(())
        })
        .await
    })
    .await?;
    let mut groups: Vec<(Change, u64)> = changes.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let changed: u64 = groups.iter().map(|(_, n)| n).sum();
    let not_redecided: u64 = skipped.values().sum();
    let shown: Vec<&(Change, u64)> = groups.iter().take(args.top as usize).collect();
    if json {
        let items: Vec<Value> = shown
            .iter()
            .map(|(c, n)| {
                json!({"count": n, "subject": c.subject, "tenant": c.tenant,
                       "upstream": c.upstream, "method": c.method, "target": c.target,
                       "old": c.old, "new": c.new, "rule": c.rule})
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"since_ms": since, "until_ms": until, "redecided": redecided,
                   "unchanged": unchanged, "changed": changed, "failed": failed,
                   "not_redecided": skipped, "changes": items})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{redecided} decisions re-decided: {unchanged} unchanged, {changed} would change{}",
        if failed > 0 {
            format!(", {failed} could not be decided")
        } else {
            String::new()
        }
    )?;
    if not_redecided > 0 {
        let why: Vec<String> = skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
        writeln!(
            out,
            "{not_redecided} not re-decided (decided before or beside the policy): {}",
            why.join(", ")
        )?;
    }
    if !shown.is_empty() {
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|(c, n)| {
                vec![
                    n.to_string(),
                    c.subject.clone(),
                    c.tenant.clone(),
                    c.upstream.clone(),
                    c.method.clone(),
                    c.target.clone(),
                    format!("{} -> {}", c.old, c.new),
                    c.rule.clone(),
                ]
            })
            .collect();
        write_table(
            out,
            &[
                "COUNT", "SUBJECT", "TENANT", "UPSTREAM", "METHOD", "TARGET", "CHANGE", "RULE",
            ],
            &rows,
        )?;
    }
    Ok(())
}
