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
//! Conditions see the arguments the record kept (`record_arguments`, as redacted) or a
//! resource's URI; a call whose arguments were not kept is counted as `arguments_not_recorded`
//! when the candidate's answer depends on them (claims are never recorded: a condition on
//! `principal.claims` sees none).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use authz_audit::AuditStore;
use authz_rbac::{ConditionArgs, Rbac};
use authz_types::{AuditRecord, Principal, RecordKind, now_unix_ms};
use serde_json::{Value, json};

use crate::cli::ReplayArgs;
use crate::store::with_store;
use crate::write_table;

/// The window replayed when `--since` is not given.
const DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;

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
        // Records keep no claims: a condition on claims sees none when replayed.
        claims: Default::default(),
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

/// The candidate's CSV text, a label saying where it came from, and the policy built from it
/// with `model` (refused, naming why, when it does not load).
async fn candidate(
    c: &crate::cli::CandidateArgs,
    model: &std::path::Path,
) -> anyhow::Result<(String, String, Rbac)> {
    let (text, label) = match c.candidate_revision {
        Some(revision) => {
            let url = c.policy_database_url.as_deref().ok_or_else(|| {
                crate::UsageError::new(format!(
                    "--candidate-revision needs the policy store: --policy-database-url or {}",
                    crate::cli::POLICY_URL_ENV
                ))
            })?;
            let store = crate::connect_policy_store(url).await?;
            let set = store.policy_at(revision).await.map_err(|e| match e {
                authz_rbac::Error::NotFound => anyhow::Error::from(crate::UsageError::new(
                    format!("the policy store has no revision {revision}"),
                )),
                other => other.into(),
            })?;
            store.close().await;
            (set.to_csv(), format!("policy revision {revision}"))
        }
        None => {
            let mut text = String::new();
            for path in &c.candidates {
                let part = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                text.push_str(&part);
                if !part.ends_with('\n') {
                    text.push('\n');
                }
            }
            let label = c
                .candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ");
            (text, label)
        }
    };
    // Built from the text, as the gateways will build it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!(
        "authzctl-candidate-{}-{nanos}.csv",
        std::process::id()
    ));
    // A new file only (never one someone placed there, nor a link to one).
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(text.as_bytes())?;
    }
    let built = Rbac::from_files(model, std::slice::from_ref(&path)).await;
    let _ = std::fs::remove_file(&path);
    let rbac = built.map_err(|e| anyhow::anyhow!("the candidate policy does not load: {e}"))?;
    Ok((text, label, rbac))
}

pub(crate) async fn replay(
    args: &ReplayArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (_, _, rbac) = candidate(&args.candidate, &args.model).await?;
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
            let (Some(old), Some(principal)) = (rec.reason.policy_outcome(), principal_of(rec))
            else {
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
            // What the conditions see: the recorded arguments (as the gateway redacted them), a
            // resource's URI; a call whose arguments were not kept is re-decided only when its
            // decision does not depend on them.
            let recorded = rec
                .arguments
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok());
            let decided = match (&op.target, &recorded) {
                (authz_types::Target::Resource(uri), _) => {
                    let args = json!({ "uri": uri });
                    rbac.decide_with(&principal, &rec.upstream, &op, ConditionArgs::Known(&args))
                }
                (_, Some(args)) => {
                    rbac.decide_with(&principal, &rec.upstream, &op, ConditionArgs::Known(args))
                }
                (_, None) => {
                    let none = Value::Null;
                    let without = rbac.decide_with(
                        &principal,
                        &rec.upstream,
                        &op,
                        ConditionArgs::Known(&none),
                    );
                    let unknown =
                        rbac.decide_with(&principal, &rec.upstream, &op, ConditionArgs::Unknown);
                    match (without, unknown) {
                        (Ok(a), Ok(b)) if a.effect != b.effect || a.reason != b.reason => {
                            *skipped
                                .entry("arguments_not_recorded".to_owned())
                                .or_default() += n;
                            return Ok(());
                        }
                        (a, _) => a,
                    }
                }
            };
            let decision = match decided {
                Ok(d) => d,
                Err(_) => {
                    failed += n;
                    return Ok(());
                }
            };
            redecided += n;
            let new = decision.reason.policy_outcome().unwrap_or("deny");
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

/// `authzctl policy shadow start|stop|status|report`.
pub(crate) async fn shadow(
    command: crate::cli::ShadowCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::cli::ShadowCommand;
    let open = |store: &crate::cli::AuditStoreArgs| {
        let url = store.url().map(str::to_owned);
        async move { Ok::<_, anyhow::Error>(authz_rbac::ShadowStore::connect(&url?).await?) }
    };
    let now = now_unix_ms();
    match command {
        ShadowCommand::Start {
            candidate: c,
            model,
            actor,
            store,
        } => {
            // Checked as the gateways will load it: a candidate that does not load never runs.
            let (text, label, _) = candidate(&c, &model).await?;
            let actor = crate::cli::resolve_actor(actor.as_deref());
            let id = open(&store)
                .await?
                .start(&text, &label, &actor, now)
                .await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"id": id, "label": label, "started_by": actor})
                )?;
            } else {
                writeln!(
                    out,
                    "shadow candidate {id} started as {actor} ({label}); gateways evaluate it within a second"
                )?;
            }
        }
        ShadowCommand::Stop { actor, store } => {
            let actor = crate::cli::resolve_actor(actor.as_deref());
            let stopped = open(&store).await?.stop(&actor, now).await?;
            if json {
                writeln!(out, "{}", json!({"stopped": stopped}))?;
            } else if stopped {
                writeln!(out, "shadow candidate stopped as {actor}")?;
            } else {
                writeln!(out, "no shadow candidate was running")?;
            }
        }
        ShadowCommand::Status { store } => {
            let history = open(&store).await?.history().await?;
            if json {
                let items: Vec<Value> = history
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "label": c.label, "started_by": c.started_by,
                               "started_ms": c.started_ms, "stopped_by": c.stopped_by,
                               "stopped_ms": c.stopped_ms, "running": c.stopped_ms.is_none()})
                    })
                    .collect();
                writeln!(out, "{}", json!({"candidates": items}))?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = history
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        if c.stopped_ms.is_none() {
                            "running"
                        } else {
                            "stopped"
                        }
                        .to_owned(),
                        crate::times::format_time(c.started_ms),
                        c.started_by.clone(),
                        c.stopped_ms
                            .map_or_else(|| "-".to_owned(), crate::times::format_time),
                        c.label.clone(),
                    ]
                })
                .collect();
            write_table(
                out,
                &["ID", "STATE", "STARTED", "BY", "STOPPED", "CANDIDATE"],
                &rows,
            )?;
        }
        ShadowCommand::Report { store, filter, top } => {
            let mut base = filter.to_query(now);
            base.kind = Some(RecordKind::Decision);
            let since = *base.filter.since_ms.get_or_insert(now - DEFAULT_WINDOW_MS);
            let until = base.filter.until_ms.unwrap_or(now);
            let mut groups: HashMap<(String, String, String, String, String, String), u64> =
                HashMap::new();
            let mut total = 0u64;
            with_store(&store, async |s: &AuditStore, shown: &str| {
                crate::audit::each_record(s, &base, shown, |r| {
                    let rec = &r.record;
                    let Some(candidate) = &rec.shadow else {
                        return Ok(());
                    };
                    let n = u64::try_from(rec.repeat_count.unwrap_or(1)).unwrap_or(1);
                    total += n;
                    let live = match rec.reason.policy_outcome() {
                        Some(o) => format!("{o} {}", rec.reason),
                        None => rec.reason.as_str().to_owned(),
                    };
                    let key = (
                        rec.subject.clone().unwrap_or_else(|| "-".to_owned()),
                        rec.upstream.clone(),
                        rec.method.clone(),
                        rec.target.clone().unwrap_or_else(|| "-".to_owned()),
                        live,
                        candidate.clone(),
                    );
                    *groups.entry(key).or_default() += n;
                    Ok(())
                })
                .await
            })
            .await?;
            let mut groups: Vec<_> = groups.into_iter().collect();
            groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let shown: Vec<_> = groups.iter().take(top as usize).collect();
            if json {
                let items: Vec<Value> = shown
                    .iter()
                    .map(
                        |((subject, upstream, method, target, live, candidate), n)| {
                            json!({"count": n, "subject": subject, "upstream": upstream,
                               "method": method, "target": target, "live": live,
                               "candidate": candidate})
                        },
                    )
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({"since_ms": since, "until_ms": until, "differences": total,
                           "groups": items})
                )?;
                return Ok(());
            }
            writeln!(
                out,
                "{total} decisions the shadow candidate would have made otherwise"
            )?;
            if !shown.is_empty() {
                let rows: Vec<Vec<String>> = shown
                    .iter()
                    .map(
                        |((subject, upstream, method, target, live, candidate), n)| {
                            vec![
                                n.to_string(),
                                subject.clone(),
                                upstream.clone(),
                                method.clone(),
                                target.clone(),
                                live.clone(),
                                candidate.clone(),
                            ]
                        },
                    )
                    .collect();
                write_table(
                    out,
                    &[
                        "COUNT",
                        "SUBJECT",
                        "UPSTREAM",
                        "METHOD",
                        "TARGET",
                        "LIVE",
                        "CANDIDATE",
                    ],
                    &rows,
                )?;
            }
        }
    }
    Ok(())
}
