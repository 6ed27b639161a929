//! `authzctl policy import|check|lint|export|history`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use authz_audit::redact_url;
use authz_rbac::{LintConfig, LocatedPolicy, PolicyStore};
use authz_types::{Method, Operation, Principal};
use serde_json::json;

use crate::{
    CheckArgs, ImportArgs, LintArgs, Outcome, StoreArgs, connect_policy_store, format_time,
    with_store, write_table,
};

/// `policy import`: validates the files and adds their lines to the store.
pub(crate) async fn import(a: &ImportArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    // The URL is checked before the files are read so a missing one is reported as the usage
    // error it is, whatever the files contain.
    let url = if a.dry_run {
        None
    } else {
        Some(a.store.url()?)
    };
    let mut set = authz_rbac::PolicySet::default();
    let mut files = Vec::new();
    for path in &a.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file {}", path.display()))?;
        let parsed = authz_rbac::PolicySet::parse_csv(&text, &path.display().to_string())?;
        files.push(serde_json::json!({
            "path": path, "rules": parsed.rules.len(), "assignments": parsed.assignments.len(),
        }));
        if !json {
            writeln!(
                out,
                "{}: {} rules, {} assignments",
                path.display(),
                parsed.rules.len(),
                parsed.assignments.len()
            )?;
        }
        set.extend(parsed);
    }
    let mut report = serde_json::json!({
        "files": files, "rules": set.rules.len(), "assignments": set.assignments.len(),
        "dry_run": a.dry_run,
    });
    if let Some(url) = url {
        // A store that cannot be opened is reported as is; only a failed import says "import".
        let imported = with_store(&a.store, async |store: &PolicyStore, _: &str| {
            Ok(import_into(store, &set).await)
        })
        .await?;
        let (before, after) =
            imported.with_context(|| format!("cannot import into {}", redact_url(url)))?;
        report["store"] = redact_url(url).into();
        report["revision"] = after.into();
        report["changed"] = (after != before).into();
        if !json {
            if after == before {
                writeln!(
                    out,
                    "nothing new: every line is already in {} (policy revision {after})",
                    redact_url(url)
                )?;
            } else {
                writeln!(
                    out,
                    "imported into {}: policy revision {before} -> {after}",
                    redact_url(url)
                )?;
            }
        }
    } else if !json {
        writeln!(out, "dry run: the policy is valid; nothing was written")?;
    }
    if json {
        writeln!(out, "{report}")?;
    }
    Ok(())
}

/// Imports `set` and returns the revisions before and after.
async fn import_into(
    store: &authz_rbac::PolicyStore,
    set: &authz_rbac::PolicySet,
) -> anyhow::Result<(i64, i64)> {
    let before = store.revision().await?;
    let after = store.import(set).await?;
    Ok((before, after))
}

/// Builds the operation named on the command line, the same way the gateway classifies it.
pub fn operation_from_cli(method: &str, target: &str) -> anyhow::Result<Operation> {
    let params = match method {
        "tools/call" | "prompts/get" => serde_json::json!({"name": target}),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            serde_json::json!({"uri": target})
        }
        "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update" => {
            serde_json::json!({"taskId": target})
        }
        "completion/complete" => match target.split_once(':') {
            Some(("prompt", n)) => serde_json::json!({"ref": {"type": "ref/prompt", "name": n}}),
            Some(("resource", u)) => serde_json::json!({"ref": {"type": "ref/resource", "uri": u}}),
            _ => bail!("completion targets are prompt:<name> or resource:<uri>"),
        },
        _ => serde_json::json!({}),
    };
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let msg = authz_types::classify(&serde_json::to_vec(&body)?)
        .map_err(|e| anyhow::anyhow!("`{method} {target}` is not a valid MCP request: {e}"))?;
    if matches!(msg.operation.method, Method::Unknown(_)) {
        bail!("unknown MCP method `{method}`");
    }
    Ok(msg.operation)
}

pub(crate) async fn check(
    a: &CheckArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let op = operation_from_cli(&a.method, if a.target == "-" { "" } else { &a.target })?;
    let (rbac, store) = match (&a.database_url, a.policies.is_empty()) {
        (Some(url), true) => {
            let store = connect_policy_store(url).await?;
            let rbac = authz_rbac::Rbac::from_store(&a.model, store.clone()).await;
            match rbac {
                Ok(rbac) => (rbac, Some(store)),
                Err(e) => {
                    store.close().await;
                    return Err(e).with_context(|| {
                        format!("cannot load the policy from {}", redact_url(url))
                    });
                }
            }
        }
        (_, no_files) => {
            let files = if no_files {
                vec![PathBuf::from("policies/policy.csv")]
            } else {
                a.policies.clone()
            };
            let rbac = authz_rbac::Rbac::from_files(&a.model, &files)
                .await
                .context("cannot load the policy files")?;
            (rbac, None)
        }
    };
    let object = |flag: &str,
                  text: &Option<String>|
     -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        match text {
            None => Ok(serde_json::Map::new()),
            Some(t) => match authz_types::parse_strict(t.as_bytes()) {
                Ok(serde_json::Value::Object(map)) => Ok(map),
                _ => bail!("--{flag} must be a JSON object"),
            },
        }
    };
    let claims = object("claims", &a.claims);
    let args = object("args", &a.args);
    let (claims, args) = match (claims, args) {
        (Ok(c), Ok(g)) => (c, g),
        (Err(e), _) | (_, Err(e)) => {
            if let Some(store) = store {
                store.close().await;
            }
            return Err(e);
        }
    };
    let principal = Principal {
        subject: a.subject.clone(),
        issuer: "authzctl".into(),
        tenant: a.tenant.clone(),
        client_id: a.client.clone(),
        actors: a.actors.clone(),
        scopes: vec![],
        roles: a.roles.clone(),
        token_id: None,
        expires_at: 0,
        issued_at: None,
        claims: std::sync::Arc::new(claims),
    }
    .normalize();
    // What the gateway's conditions see: the call's arguments, or a resource's URI.
    let args = match (&op.target, a.args.is_some()) {
        (authz_types::Target::Resource(uri), false) => serde_json::json!({ "uri": uri }),
        _ => serde_json::Value::Object(args),
    };
    let decided = decide(&rbac, &principal, &a.upstream, &op, &args, a.explain);
    if let Some(store) = store {
        store.close().await;
    }
    let (decision, explanation) = decided?;
    if json {
        let mut v = serde_json::json!({
            "subject": a.subject, "method": a.method, "target": op.target.display(), "upstream": a.upstream,
            "tenant": principal.tenant_or_default(), "roles": principal.roles,
            "decision": decision.effect.as_str(), "reason": decision.reason.as_str(),
            "matched_rule": decision.matched_rule, "policy_revision": decision.policy_revision,
        });
        if let Some(e) = &explanation {
            v["explain"] = serde_json::to_value(e)?;
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{} ({}){}",
            decision.effect.as_str().to_uppercase(),
            decision.reason,
            decision
                .matched_rule
                .as_deref()
                .map(|r| format!(" by `{r}`"))
                .unwrap_or_default()
        )?;
        if let Some(e) = &explanation {
            write!(out, "{e}")?;
        }
    }
    Ok(if decision.is_allowed() {
        Outcome::Success
    } else {
        Outcome::Deny
    })
}

fn decide(
    rbac: &authz_rbac::Rbac,
    principal: &Principal,
    upstream: &str,
    op: &Operation,
    args: &serde_json::Value,
    explain: bool,
) -> anyhow::Result<(authz_types::Decision, Option<authz_rbac::Explanation>)> {
    let args = authz_rbac::ConditionArgs::Known(args);
    if explain {
        let e = rbac
            .explain_with(principal, upstream, op, args)
            .context("the policy engine could not decide")?;
        Ok((e.decision.clone(), Some(e)))
    } else {
        let d = rbac
            .decide_with(principal, upstream, op, args)
            .context("the policy engine could not decide")?;
        Ok((d, None))
    }
}

/// `policy lint`: reads the policy from files or the store, lints it and reports every finding.
pub(crate) async fn lint(a: &LintArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let (policy, source) = match (&a.database_url, a.policies.is_empty()) {
        (Some(url), true) => {
            let store = connect_policy_store(url).await?;
            let read = store.snapshot_located().await;
            store.close().await;
            let (policy, revision) =
                read.with_context(|| format!("cannot read the policy from {}", redact_url(url)))?;
            (
                policy,
                format!("{} (policy revision {revision})", redact_url(url)),
            )
        }
        (_, no_files) => {
            let files = if no_files {
                vec![PathBuf::from("policies/policy.csv")]
            } else {
                a.policies.clone()
            };
            let mut policy = LocatedPolicy::default();
            for path in &files {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the policy file {}", path.display()))?;
                policy.extend(LocatedPolicy::parse_csv(
                    &text,
                    &path.display().to_string(),
                )?);
            }
            let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            (policy, names.join(", "))
        }
    };
    let mut tools: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (upstream, tool) in &a.tools {
        tools
            .entry(upstream.clone())
            .or_default()
            .push(tool.clone());
    }
    let config = LintConfig {
        upstreams: (!a.upstreams.is_empty()).then(|| a.upstreams.clone()),
        tools,
        token_roles: (!a.token_roles.is_empty()).then(|| a.token_roles.clone()),
        deny_warnings: a.strict,
    };
    let report = authz_rbac::lint(&policy, &config);
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    if json {
        writeln!(
            out,
            "{}",
            json!({
                "source": source,
                "rules": policy.set.rules.len(),
                "assignments": policy.set.assignments.len(),
                "errors": errors,
                "warnings": warnings,
                "findings": report.findings,
            })
        )?;
    } else {
        for finding in &report.findings {
            writeln!(out, "{finding}")?;
        }
        writeln!(
            out,
            "{errors} error(s), {warnings} warning(s) in {source}: {} rules, {} assignments",
            policy.set.rules.len(),
            policy.set.assignments.len()
        )?;
    }
    Ok(if report.has_errors() {
        Outcome::LintErrors
    } else {
        Outcome::Success
    })
}

/// `policy export`: the store's policy as a Casbin CSV that `policy import` reads back.
pub(crate) async fn export(
    args: &StoreArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let url = args.url()?.to_owned();
    let (set, revision) = with_store(args, async |store: &PolicyStore, _: &str| {
        store
            .snapshot()
            .await
            .context("cannot read the policy store")
    })
    .await?;
    if json {
        writeln!(
            out,
            "{}",
            json!({"revision": revision, "rules": set.rules, "assignments": set.assignments})
        )?;
    } else {
        writeln!(
            out,
            "# policy exported from {} at policy revision {revision}",
            redact_url(&url)
        )?;
        write!(out, "{}", set.to_csv())?;
    }
    Ok(())
}

/// `policy history`: the newest changes first.
pub(crate) async fn history(
    args: &StoreArgs,
    limit: u32,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let changes = with_store(args, async |store: &PolicyStore, _: &str| {
        store
            .history(limit)
            .await
            .context("cannot read the policy history")
    })
    .await?;
    if json {
        let changes: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c)?;
                v["at"] = format_time(c.at_ms).into();
                Ok(v)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        writeln!(out, "{}", json!({"changes": changes}))?;
        return Ok(());
    }
    if changes.is_empty() {
        writeln!(out, "no changes recorded")?;
        return Ok(());
    }
    let mut rows = Vec::new();
    for c in &changes {
        let mut lines = c.lines.iter();
        rows.push(vec![
            format!("{} -> {}", c.from_revision, c.to_revision),
            // Whole seconds keep the column one width.
            format_time(c.at_ms / 1000 * 1000),
            c.actor.clone(),
            c.action.clone(),
            lines.next().cloned().unwrap_or_default(),
        ]);
        for line in lines {
            rows.push(vec![
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                line.clone(),
            ]);
        }
    }
    write_table(
        out,
        &["REVISION", "TIME", "ACTOR", "ACTION", "CHANGES"],
        &rows,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::Target;

    #[test]
    fn cli_operations_classify_like_the_gateway() {
        let op = operation_from_cli("tools/call", "delete_ticket").expect("ok");
        assert_eq!(op.target, Target::Tool("delete_ticket".into()));
        assert!(operation_from_cli("tools/call", "bad name").is_err());
        assert!(operation_from_cli("nope/nope", "x").is_err());
    }
}
