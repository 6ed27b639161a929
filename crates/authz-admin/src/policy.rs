//! `authzctl policy lint|export|history`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use authz_audit::redact_url;
use authz_rbac::{LintConfig, LocatedPolicy, PolicyStore};
use serde_json::json;

use crate::roles::with_store;
use crate::{LintArgs, Outcome, StoreArgs, connect_policy_store, format_time, write_table};

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
    let (set, revision) = with_store(args, async |store: &PolicyStore| {
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
    let changes = with_store(args, async |store: &PolicyStore| {
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
