//! `authzctl token mint|revoke|revocations|prune-revocations`: minting development tokens, and
//! the token revocation store the gateways follow.

use std::io::Write;

use anyhow::Context as _;
use authz_token::{Revocation, RevocationStore};
use serde_json::json;

use crate::{
    MintArgs, Output, RevocationStoreArgs, RevokeArgs, UsageError, format_time, with_store,
    write_table,
};

/// `token mint`: a signed access token on one line.
pub(crate) fn mint(a: &MintArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let signer = authz_token::Signer::from_private_jwk_file(&a.key).with_context(|| {
        format!(
            "cannot load the signing key {} (`authzctl keys generate` makes one)",
            a.key.display()
        )
    })?;
    let mut req = authz_token::MintRequest::new(a.issuer.clone(), a.sub.clone(), String::new());
    req.audience = a.audiences.clone();
    req.scopes = a
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    req.roles = a.roles.clone();
    req.tenant = a.tenant.clone();
    req.client_id = a.client_id.clone();
    req.actor = a.actor.clone();
    req.ttl_secs = a.ttl;
    let token = signer
        .mint(&req)
        .with_context(|| format!("cannot mint a token for `{}`", a.sub))?;
    writeln!(out, "{token}")?;
    Ok(())
}

/// Formats Unix seconds as RFC 3339 UTC.
fn format_secs(secs: i64) -> String {
    format_time(secs.saturating_mul(1000))
}

/// Works out what `token revoke` will write from the arguments at `now_ms` (times in Unix
/// seconds). A revocation that would already have lapsed protects nothing, so it is refused as a
/// usage error rather than written.
fn plan(a: &RevokeArgs, now_ms: i64) -> anyhow::Result<Revocation> {
    let now = now_ms.div_euclid(1000);
    let planned = match (&a.jti, &a.subject, &a.issuer) {
        (Some(jti), None, _) => Revocation::Token {
            jti: jti.clone(),
            expires_at: a.expires_at.to_unix_ms(now_ms).div_euclid(1000),
        },
        (None, Some(subject), Some(issuer)) => {
            let issued_before = a.before.unwrap_or(now_ms).div_euclid(1000);
            Revocation::Subject {
                issuer: issuer.clone(),
                subject: subject.clone(),
                issued_before,
                expires_at: issued_before.saturating_add(a.keep_for),
            }
        }
        // clap's argument group and `requires` rule these out before anything runs.
        _ => {
            return Err(UsageError::new(
                "give either --jti <ID> or --subject <SUB> --issuer <ISS>",
            )
            .into());
        }
    };
    let (expires_at, flag) = match &planned {
        Revocation::Token { expires_at, .. } => (*expires_at, "--expires-at"),
        Revocation::Subject { expires_at, .. } => (*expires_at, "--before plus --keep-for"),
    };
    if expires_at <= now {
        return Err(UsageError::new(format!(
            "{flag} ends at {}, which is not in the future: the revocation would refuse \
                 nothing",
            format_secs(expires_at)
        ))
        .into());
    }
    Ok(planned)
}

/// What is revoked, as the object of "revoke".
fn describe(r: &Revocation) -> String {
    match r {
        Revocation::Token { jti, expires_at } => {
            format!("token {jti} until {}", format_secs(*expires_at))
        }
        Revocation::Subject {
            issuer,
            subject,
            issued_before,
            expires_at,
        } => format!(
            "every token of {subject} (issuer {issuer}) issued before {} (kept until {})",
            format_secs(*issued_before),
            format_secs(*expires_at)
        ),
    }
}

/// `token revoke`.
pub(crate) async fn revoke(a: &RevokeArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let planned = plan(a, authz_types::now_unix_ms())?;
    let what = describe(&planned);
    with_store(&a.store, async |store: &RevocationStore, shown: &str| {
        let revision = if a.dry_run {
            store
                .revision()
                .await
                .context("cannot read the revocation revision")?
        } else {
            match &planned {
                Revocation::Token { jti, expires_at } => store.revoke_token(jti, *expires_at).await,
                Revocation::Subject {
                    issuer,
                    subject,
                    issued_before,
                    expires_at,
                } => {
                    store
                        .revoke_subject(issuer, subject, *issued_before, *expires_at)
                        .await
                }
            }
            .with_context(|| format!("cannot revoke {what} in {shown}"))?
        };
        if json {
            let mut v = revocation_json(&planned);
            v["revision"] = revision.into();
            v["dry_run"] = a.dry_run.into();
            v["store"] = shown.into();
            writeln!(out, "{v}")?;
        } else if a.dry_run {
            writeln!(
                out,
                "dry run: would revoke {what} (revocation revision {revision}; nothing was written)"
            )?;
        } else {
            writeln!(out, "revoked {what} (revocation revision {revision})")?;
        }
        Ok(())
    })
    .await
}

/// `token revocations`.
pub(crate) async fn list(
    args: &RevocationStoreArgs,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let now = authz_types::now_unix_ms().div_euclid(1000);
    let (revision, mut rows) = with_store(args, async |store: &RevocationStore, shown: &str| {
        store
            .list(now)
            .await
            .with_context(|| format!("cannot read the revocations in {shown}"))
    })
    .await?;
    rows.sort_by_key(sort_key);
    let values: Vec<serde_json::Value> = rows.iter().map(revocation_json).collect();
    match output {
        Output::Json => {
            writeln!(
                out,
                "{}",
                json!({"revision": revision, "revocations": values})
            )?;
        }
        Output::Jsonl => {
            for v in &values {
                writeln!(out, "{v}")?;
            }
        }
        Output::Table => {
            writeln!(out, "revocation revision {revision}\n")?;
            if rows.is_empty() {
                writeln!(out, "no revocations in force")?;
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| match r {
                    Revocation::Token { jti, expires_at } => vec![
                        "jti".into(),
                        jti.clone(),
                        "-".into(),
                        "-".into(),
                        format_secs(*expires_at),
                    ],
                    Revocation::Subject {
                        issuer,
                        subject,
                        issued_before,
                        expires_at,
                    } => vec![
                        "subject".into(),
                        subject.clone(),
                        issuer.clone(),
                        format_secs(*issued_before),
                        format_secs(*expires_at),
                    ],
                })
                .collect();
            write_table(
                out,
                &["KIND", "JTI/SUBJECT", "ISSUER", "ISSUED BEFORE", "UNTIL"],
                &table,
            )?;
        }
    }
    Ok(())
}

/// Tokens first (by jti), then subjects (by issuer and subject), so listings are stable.
fn sort_key(r: &Revocation) -> (u8, String, String) {
    match r {
        Revocation::Token { jti, .. } => (0, jti.clone(), String::new()),
        Revocation::Subject {
            issuer, subject, ..
        } => (1, issuer.clone(), subject.clone()),
    }
}

fn revocation_json(r: &Revocation) -> serde_json::Value {
    match r {
        Revocation::Token { jti, expires_at } => json!({
            "kind": "jti", "jti": jti,
            "expires_at": expires_at, "expires": format_secs(*expires_at),
        }),
        Revocation::Subject {
            issuer,
            subject,
            issued_before,
            expires_at,
        } => json!({
            "kind": "subject", "issuer": issuer, "subject": subject,
            "issued_before": issued_before, "before": format_secs(*issued_before),
            "expires_at": expires_at, "expires": format_secs(*expires_at),
        }),
    }
}

/// `token prune-revocations`.
pub(crate) async fn prune(
    args: &RevocationStoreArgs,
    dry_run: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let now = authz_types::now_unix_ms().div_euclid(1000);
    with_store(args, async |store: &RevocationStore, shown: &str| {
        let read = || format!("cannot read the revocations in {shown}");
        let (revision, in_force) = store.list(now).await.with_context(read)?;
        let expired = if dry_run {
            // Every row expires after i64::MIN, so this reads them all; the expired ones are
            // those not in force.
            let (_, all) = store.list(i64::MIN).await.with_context(read)?;
            u64::try_from(all.len().saturating_sub(in_force.len())).unwrap_or(u64::MAX)
        } else {
            store
                .prune(now)
                .await
                .with_context(|| format!("cannot prune the revocations in {shown}"))?
        };
        if json {
            writeln!(
                out,
                "{}",
                json!({
                    "expired": expired, "in_force": in_force.len(), "revision": revision,
                    "dry_run": dry_run, "store": shown,
                })
            )?;
        } else if dry_run {
            writeln!(
                out,
                "dry run: would delete {expired} expired revocation(s); {} in force \
                 (revocation revision {revision}; nothing was written)",
                in_force.len()
            )?;
        } else {
            writeln!(
                out,
                "deleted {expired} expired revocation(s); {} in force (revocation revision \
                 {revision})",
                in_force.len()
            )?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Until;

    fn args(jti: Option<&str>, subject: Option<&str>) -> RevokeArgs {
        RevokeArgs {
            jti: jti.map(str::to_owned),
            expires_at: Until::In(86_400),
            subject: subject.map(str::to_owned),
            issuer: subject.map(|_| "https://idp.example".to_owned()),
            before: None,
            keep_for: 86_400,
            dry_run: false,
            store: RevocationStoreArgs { database_url: None },
        }
    }

    #[test]
    fn revocation_times_follow_the_arguments() {
        let now_ms = 1_700_000_000_500;
        let planned = plan(&args(Some("t-1"), None), now_ms).expect("jti");
        assert_eq!(
            planned,
            Revocation::Token {
                jti: "t-1".into(),
                expires_at: 1_700_086_400
            }
        );
        let mut a = args(None, Some("alice"));
        a.before = Some(1_699_999_000_000);
        a.keep_for = 3_600;
        let planned = plan(&a, now_ms).expect("subject");
        assert_eq!(
            planned,
            Revocation::Subject {
                issuer: "https://idp.example".into(),
                subject: "alice".into(),
                issued_before: 1_699_999_000,
                expires_at: 1_700_002_600
            }
        );
        // A revocation that has lapsed already is refused.
        a.before = Some(1_600_000_000_000);
        let e = plan(&a, now_ms).expect_err("lapsed");
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
        let mut a = args(Some("t-1"), None);
        a.expires_at = Until::At(1_000);
        assert!(plan(&a, now_ms).is_err());
    }

    #[test]
    fn the_audit_store_is_the_fallback() {
        let none = RevocationStoreArgs { database_url: None };
        assert_eq!(
            none.url_or(Some("sqlite://audit.db".into())).ok(),
            Some("sqlite://audit.db".to_owned())
        );
        let e = none.url_or(None).expect_err("no URL");
        assert!(e.downcast_ref::<UsageError>().is_some());
        assert!(e.to_string().contains(crate::REVOCATION_URL_ENV), "{e}");
        assert!(e.to_string().contains(crate::AUDIT_URL_ENV), "{e}");
        let given = RevocationStoreArgs {
            database_url: Some("sqlite://rev.db".into()),
        };
        assert_eq!(
            given.url_or(Some("sqlite://audit.db".into())).ok(),
            Some("sqlite://rev.db".to_owned())
        );
    }
}
