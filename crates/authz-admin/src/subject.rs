//! `authzctl subject show`: a subject's roles and effective permissions per tenant.

use std::io::Write;

use authz_rbac::PolicyStore;
use serde_json::json;

use crate::role::{read, stored_subject};
use crate::{StoreArgs, UsageError, with_store, write_table};

/// `subject show`.
pub(crate) async fn show(
    subject: &str,
    tenant: Option<&str>,
    store: &StoreArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if subject.is_empty() {
        return Err(UsageError::new("the subject is empty").into());
    }
    let name = stored_subject(subject);
    let (set, _, revision) =
        with_store(store, async |s: &PolicyStore, _: &str| read(s).await).await?;
    let tenants = match tenant {
        Some(t) => vec![t.to_owned()],
        None => {
            let tenants = set.tenants_of(&name);
            if tenants.is_empty() {
                vec![authz_types::DEFAULT_TENANT.to_owned()]
            } else {
                // A `*` of the subject's own rules is not a tenant one acts in.
                tenants
                    .into_iter()
                    .filter(|t| t != authz_rbac::ANY_TENANT)
                    .collect()
            }
        }
    };
    let per_tenant: Vec<(String, Vec<String>, Vec<authz_rbac::Permission>)> = tenants
        .iter()
        .map(|t| {
            (
                t.clone(),
                set.roles_of(&name, t),
                set.permissions_of(&name, t),
            )
        })
        .collect();
    if json {
        let tenants: Vec<serde_json::Value> = per_tenant
            .iter()
            .map(|(t, roles, permissions)| {
                json!({"tenant": t, "roles": roles, "permissions": permissions})
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"subject": subject, "name": name, "revision": revision, "tenants": tenants})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "subject {subject} ({name}) at policy revision {revision}\n"
    )?;
    let role_rows: Vec<Vec<String>> = per_tenant
        .iter()
        .map(|(t, roles, _)| {
            vec![
                t.clone(),
                if roles.is_empty() {
                    "(none)".to_owned()
                } else {
                    roles.join(", ")
                },
            ]
        })
        .collect();
    write_table(out, &["TENANT", "ROLES"], &role_rows)?;
    writeln!(out)?;
    let permission_rows: Vec<Vec<String>> = per_tenant
        .iter()
        .flat_map(|(t, _, permissions)| {
            permissions.iter().map(move |p| {
                vec![
                    t.clone(),
                    p.rule.effect.as_str().to_owned(),
                    p.rule.action.clone(),
                    p.rule.object.clone(),
                    if p.rule.tenant == authz_rbac::ANY_TENANT {
                        format!("{} (every tenant)", p.via)
                    } else {
                        p.via.clone()
                    },
                    p.rule.condition.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
        })
        .collect();
    if permission_rows.is_empty() {
        writeln!(out, "no permissions: every operation is denied")?;
    } else {
        write_table(
            out,
            &["TENANT", "EFFECT", "ACTION", "OBJECT", "VIA", "WHEN"],
            &permission_rows,
        )?;
    }
    Ok(())
}
