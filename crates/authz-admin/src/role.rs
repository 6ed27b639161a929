//! `authzctl role …`: roles, their grants and who holds them, in the SQL policy store.

use std::io::Write;

use anyhow::{Context as _, bail};
use authz_rbac::{DeclaredRole, PolicyRule, PolicySet, PolicyStore, RoleAssignment};
use serde_json::json;

use crate::{AssignArgs, Confirmation, RoleCommand, RuleArgs, with_store, write_table};

/// Runs one `role` command.
pub(crate) async fn role(
    cmd: RoleCommand,
    json: bool,
    out: &mut dyn Write,
    confirmation: Confirmation,
) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::List { store } => {
            with_store(&store, async |s: &PolicyStore, _: &str| {
                list(s, json, out).await
            })
            .await
        }
        RoleCommand::Show { role, store } => {
            with_store(&store, async |s: &PolicyStore, _: &str| {
                show(s, &role, json, out).await
            })
            .await
        }
        RoleCommand::Create {
            role,
            description,
            write,
        } => {
            let what = format!("create role {role}");
            authz_rbac::check_role_name(&role).with_context(|| format!("cannot {what}"))?;
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let (_, declared, revision) = read(store).await?;
                if declared.iter().any(|d| d.name == role) {
                    return Err(authz_rbac::Error::AlreadyExists)
                        .with_context(|| format!("cannot {what}"));
                }
                let line = if description.is_empty() {
                    format!("+ role {role}")
                } else {
                    format!("+ role {role}: {description}")
                };
                if write.dry_run {
                    return report(out, json, &format!("would {what}"), &[line], revision, true);
                }
                let revision = store
                    .create_role(&role, &description)
                    .await
                    .with_context(|| format!("cannot {what}"))?;
                report(
                    out,
                    json,
                    &format!("created role {role}"),
                    &[line],
                    revision,
                    false,
                )
            })
            .await
        }
        RoleCommand::Delete {
            role,
            confirm,
            write,
        } => {
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let (set, declared, revision) = read(store).await?;
                let lines = deletion_preview(&set, &declared, &role);
                if lines.is_empty() {
                    return Err(authz_rbac::Error::NotFound).with_context(|| {
                        format!(
                            "cannot delete role {role}: no rule, assignment or declaration names it"
                        )
                    });
                }
                let what = format!(
                    "delete role {role} and the {} line(s) naming it",
                    lines.len()
                );
                if write.dry_run {
                    return report(out, json, &format!("would {what}"), &lines, revision, true);
                }
                crate::confirm(confirmation, confirm.yes, &what, &lines)?;
                let deleted = store
                    .delete_role(&role)
                    .await
                    .with_context(|| format!("cannot delete role {role}"))?;
                report(
                    out,
                    json,
                    &format!(
                        "deleted role {role} ({} line(s) removed)",
                        deleted.lines.len()
                    ),
                    &deleted.lines,
                    deleted.revision,
                    false,
                )
            })
            .await
        }
        RoleCommand::Grant { rule, write } => {
            let line = rule.line();
            let built = PolicyRule::new(
                &rule.role,
                &rule.tenant,
                &rule.object,
                &rule.action,
                rule.effect(),
            )
            .and_then(|r| r.with_condition(rule.when.as_deref()))
            .with_context(|| format!("cannot grant `{line}`"))?;
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let changes = [format!("+ {line}")];
                if write.dry_run {
                    let (set, _, revision) = read(store).await?;
                    if set.rules.contains(&built) {
                        return Err(authz_rbac::Error::AlreadyExists)
                            .with_context(|| format!("cannot grant `{line}`"));
                    }
                    return report(
                        out,
                        json,
                        &format!("would grant `{line}`"),
                        &changes,
                        revision,
                        true,
                    );
                }
                let revision = store
                    .grant_rule(&built)
                    .await
                    .with_context(|| format!("cannot grant `{line}`"))?;
                report(
                    out,
                    json,
                    &format!("granted `{line}`"),
                    &changes,
                    revision,
                    false,
                )
            })
            .await
        }
        RoleCommand::Revoke {
            rule,
            confirm,
            write,
        } => {
            let line = rule.line();
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let (set, _, revision) = read(store).await?;
                if !set.rules.contains(&unchecked_rule(&rule)) {
                    return Err(authz_rbac::Error::NotFound)
                        .with_context(|| format!("cannot revoke `{line}`"));
                }
                let changes = [format!("- {line}")];
                if write.dry_run {
                    return report(
                        out,
                        json,
                        &format!("would revoke `{line}`"),
                        &changes,
                        revision,
                        true,
                    );
                }
                crate::confirm(confirmation, confirm.yes, &format!("revoke `{line}`"), &[])?;
                let revision = store
                    .revoke_rule(&unchecked_rule(&rule))
                    .await
                    .with_context(|| format!("cannot revoke `{line}`"))?;
                report(
                    out,
                    json,
                    &format!("revoked `{line}`"),
                    &changes,
                    revision,
                    false,
                )
            })
            .await
        }
        RoleCommand::Assign {
            assignment: a,
            write,
        } => {
            let message = format!(
                "cannot assign role {} to {} in tenant {}",
                a.role, a.subject, a.tenant
            );
            let context = || message.clone();
            let built = RoleAssignment::for_subject(&a.subject, &a.role, &a.tenant)
                .with_context(context)?;
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let changes = [format!("+ {built}")];
                if write.dry_run {
                    let (set, _, revision) = read(store).await?;
                    if set.assignments.contains(&built) {
                        return Err(authz_rbac::Error::AlreadyExists).with_context(context);
                    }
                    let what = format!(
                        "would assign: {} would have role {} in tenant {}",
                        a.subject, a.role, a.tenant
                    );
                    return report(out, json, &what, &changes, revision, true);
                }
                let revision = store.assign_rule(&built).await.with_context(context)?;
                let what = format!(
                    "assigned: {} has role {} in tenant {}",
                    a.subject, a.role, a.tenant
                );
                report(out, json, &what, &changes, revision, false)
            })
            .await
        }
        RoleCommand::Unassign {
            assignment: a,
            confirm,
            write,
        } => {
            let message = format!(
                "cannot take role {} from {} in tenant {}",
                a.role, a.subject, a.tenant
            );
            let context = || message.clone();
            with_store(&write.store, async |store: &PolicyStore, _: &str| {
                let (set, _, revision) = read(store).await?;
                let existing = unchecked_assignment(&a);
                if !set.assignments.contains(&existing) {
                    return Err(authz_rbac::Error::NotFound).with_context(context);
                }
                let changes = [format!("- {existing}")];
                if write.dry_run {
                    let what = format!(
                        "would unassign: {} would no longer have role {} in tenant {}",
                        a.subject, a.role, a.tenant
                    );
                    return report(out, json, &what, &changes, revision, true);
                }
                let question = format!(
                    "take role {} from {} in tenant {}",
                    a.role, a.subject, a.tenant
                );
                crate::confirm(confirmation, confirm.yes, &question, &[])?;
                let revision = store
                    .unassign(&a.subject, &a.role, &a.tenant)
                    .await
                    .with_context(context)?;
                let what = format!(
                    "unassigned: {} no longer has role {} in tenant {}",
                    a.subject, a.role, a.tenant
                );
                report(out, json, &what, &changes, revision, false)
            })
            .await
        }
    }
}

/// The store's rules, declared roles and revision.
pub(crate) async fn read(
    store: &PolicyStore,
) -> anyhow::Result<(PolicySet, Vec<DeclaredRole>, i64)> {
    let (set, revision) = store
        .snapshot()
        .await
        .context("cannot read the policy store")?;
    let declared = store
        .declared_roles()
        .await
        .context("cannot read the declared roles")?;
    Ok((set, declared, revision))
}

/// The rule as given, unvalidated: a rule that no longer validates must still be removable.
fn unchecked_rule(rule: &RuleArgs) -> PolicyRule {
    PolicyRule {
        role: rule.role.clone(),
        tenant: rule.tenant.clone(),
        object: rule.object.clone(),
        action: rule.action.clone(),
        effect: rule.effect(),
        condition: rule
            .when
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    }
}

fn unchecked_assignment(a: &AssignArgs) -> RoleAssignment {
    RoleAssignment {
        subject: stored_subject(&a.subject),
        role: a.role.clone(),
        tenant: a.tenant.clone(),
    }
}

/// `user:<subject>` unless the subject is already written that way (as the store does).
pub(crate) fn stored_subject(subject: &str) -> String {
    if subject.starts_with(authz_rbac::SUBJECT_PREFIX) {
        subject.to_owned()
    } else {
        authz_rbac::subject_name(subject)
    }
}

/// The lines `role delete` would remove, in the order the store reports them.
fn deletion_preview(set: &PolicySet, declared: &[DeclaredRole], role: &str) -> Vec<String> {
    let mut lines: Vec<String> = set
        .rules
        .iter()
        .filter(|r| r.role == role)
        .map(|r| format!("- {r}"))
        .collect();
    lines.extend(
        set.assignments
            .iter()
            .filter(|a| a.role == role || a.subject == role)
            .map(|a| format!("- {a}")),
    );
    if declared.iter().any(|d| d.name == role) {
        lines.push(format!("- role {role}"));
    }
    lines
}

/// Reports a change (or, with `dry_run`, what it would be).
fn report(
    out: &mut dyn Write,
    json: bool,
    what: &str,
    changes: &[String],
    revision: i64,
    dry_run: bool,
) -> anyhow::Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            json!({"result": what, "revision": revision, "dry_run": dry_run, "lines": changes})
        )?;
        return Ok(());
    }
    if dry_run {
        writeln!(
            out,
            "dry run: {what} (policy revision {revision}; nothing was written)"
        )?;
    } else {
        writeln!(out, "{what} (policy revision {revision})")?;
    }
    if changes.len() > 1 || dry_run {
        for line in changes {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

async fn list(store: &PolicyStore, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let (set, declared, revision) = read(store).await?;
    let mut names = set.role_names();
    names.extend(declared.iter().map(|d| d.name.clone()));
    names.sort();
    names.dedup();
    let roles: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let summary = set.role_summary(name);
            let declaration = declared.iter().find(|d| &d.name == name);
            json!({
                "name": name,
                "declared": declaration.is_some(),
                "description": declaration.map(|d| d.description.as_str()).unwrap_or(""),
                "rules": summary.rules.len(),
                "holders": summary.holders.len(),
                "tenants": summary.tenants,
            })
        })
        .collect();
    if json {
        writeln!(out, "{}", json!({"revision": revision, "roles": roles}))?;
        return Ok(());
    }
    writeln!(out, "policy revision {revision}\n")?;
    if roles.is_empty() {
        writeln!(out, "no roles")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let tenants: Vec<&str> = r["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            let description = r["description"].as_str().unwrap_or("");
            vec![
                r["name"].as_str().unwrap_or("").to_owned(),
                r["rules"].to_string(),
                r["holders"].to_string(),
                if tenants.is_empty() {
                    "-".to_owned()
                } else {
                    tenants.join(",")
                },
                if description.is_empty() {
                    "-".to_owned()
                } else {
                    description.to_owned()
                },
            ]
        })
        .collect();
    write_table(
        out,
        &["ROLE", "RULES", "HOLDERS", "TENANTS", "DESCRIPTION"],
        &rows,
    )?;
    Ok(())
}

async fn show(
    store: &PolicyStore,
    role: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (set, declared, revision) = read(store).await?;
    let summary = set.role_summary(role);
    let declaration = declared.iter().find(|d| d.name == role);
    if declaration.is_none()
        && summary.rules.is_empty()
        && summary.holders.is_empty()
        && summary.inherits.is_empty()
    {
        bail!("no role named {role}: no rule, assignment or declaration names it");
    }
    if json {
        let mut value = serde_json::to_value(&summary)?;
        value["declared"] = declaration.is_some().into();
        value["description"] = declaration
            .map(|d| d.description.as_str())
            .unwrap_or("")
            .into();
        writeln!(out, "{}", json!({"revision": revision, "role": value}))?;
        return Ok(());
    }
    writeln!(out, "role {role} at policy revision {revision}")?;
    match declaration {
        Some(d) if !d.description.is_empty() => writeln!(out, "description: {}", d.description)?,
        Some(_) => writeln!(out, "description: -")?,
        None => writeln!(out, "description: - (not declared with `role create`)")?,
    }
    writeln!(
        out,
        "tenants: {}",
        if summary.tenants.is_empty() {
            "-".to_owned()
        } else {
            summary.tenants.join(", ")
        }
    )?;
    let section = |out: &mut dyn Write, title: &str, lines: Vec<String>| -> std::io::Result<()> {
        writeln!(out, "\n{title}")?;
        if lines.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for line in lines {
            writeln!(out, "  {line}")?;
        }
        Ok(())
    };
    section(
        out,
        "RULES",
        summary.rules.iter().map(ToString::to_string).collect(),
    )?;
    section(
        out,
        "HELD BY",
        summary.holders.iter().map(ToString::to_string).collect(),
    )?;
    section(
        out,
        "INHERITS",
        summary.inherits.iter().map(ToString::to_string).collect(),
    )?;
    Ok(())
}
