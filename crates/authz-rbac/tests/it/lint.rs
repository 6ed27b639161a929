//! Lint at load: errors refuse a policy, warnings are reported, each with its file and line or
//! its SQL row; the repository's own policy lints clean.

use std::collections::BTreeMap;

use authz_rbac::{
    Error, LintCode, LintConfig, LocatedPolicy, Origin, PolicyStore, Rbac, Severity, lint,
};
use authz_types::RuleEffect;

use crate::common::{model_path, policy_path, sqlite_store};

const POLICY: &str = "\
# line 1
p, reader, default, tool:tickets/get_*, call, allow
p, reader, default, tool:tickets/get_secret, call, deny
p, reader, default, tool:tickets/get_secret, call, allow
p, ghost, default, tool:tickets/list_*, call, allow
p, ghost, default, tool:tickets/get_*, call, allow
p, reader, default, tool:tickets/frobnicate, call, allow
p, reader, default, tool:billing/*, call, allow
g, user:alice, reader, default
";

fn config() -> LintConfig {
    LintConfig {
        upstreams: Some(vec!["tickets".to_owned()]),
        tools: BTreeMap::from([(
            "tickets".to_owned(),
            ["get_ticket", "get_secret", "list_tickets"]
                .map(str::to_owned)
                .to_vec(),
        )]),
        token_roles: None,
        deny_warnings: false,
    }
}

fn at(line: usize) -> Origin {
    Origin::File {
        path: "policy.csv".to_owned(),
        line,
    }
}

#[test]
fn findings_name_their_line_and_errors_come_first() {
    let policy = LocatedPolicy::parse_csv(POLICY, "policy.csv").expect("parse");
    let report = lint(&policy, &config());
    let found: Vec<(Severity, LintCode, Origin)> = report
        .findings
        .iter()
        .map(|f| (f.severity, f.code, f.origin.clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            (Severity::Error, LintCode::UnknownUpstream, at(8)),
            (Severity::Warning, LintCode::ShadowedByDeny, at(4)),
            (Severity::Warning, LintCode::UnheldRole, at(5)),
            (Severity::Warning, LintCode::UnknownTool, at(7)),
        ],
        "{report}"
    );
    assert!(report.has_errors());
    let text = report.to_string();
    assert!(
        text.contains(
            "policy.csv:8: error [unknown_upstream]: can never match: upstream \"billing\""
        ),
        "{text}"
    );
    assert!(
        text.contains("p, reader, default, tool:billing/*, call, allow"),
        "{text}"
    );
    assert!(text.ends_with("1 error(s), 3 warning(s)"), "{text}");

    // Without outside knowledge only the self-contained checks run, and they only warn.
    let report = lint(&policy, &LintConfig::default());
    assert!(!report.has_errors());
    assert_eq!(report.findings.len(), 2, "{report}");
    // Token roles the identity provider hands out are held, even without a g line.
    let report = lint(
        &policy,
        &LintConfig {
            token_roles: Some(vec!["ghost".to_owned()]),
            ..LintConfig::default()
        },
    );
    assert_eq!(report.findings.len(), 1, "{report}");
    // Strict mode turns warnings into errors.
    let report = lint(
        &policy,
        &LintConfig {
            deny_warnings: true,
            ..LintConfig::default()
        },
    );
    assert_eq!(report.errors().count(), 2, "{report}");
}

#[tokio::test]
async fn lint_errors_refuse_to_load_and_warnings_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.csv");
    std::fs::write(&path, POLICY).expect("write");
    let err = Rbac::from_files_with_lint(&model_path(), std::slice::from_ref(&path), config())
        .await
        .expect_err("lint error");
    let Error::Lint { report } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(report.errors().count(), 1);
    assert!(err.to_string().contains("policy.csv:8"), "{err}");

    // Loaded without the upstream list, it serves and reports its warnings.
    let rbac = Rbac::from_files(&model_path(), std::slice::from_ref(&path))
        .await
        .expect("load");
    assert_eq!(rbac.lint_report().findings.len(), 2);
    assert_eq!(rbac.status().warnings, 2);
    // Telling it about the upstreams later applies from the next reload, which is refused.
    rbac.set_lint_config(config());
    assert_eq!(rbac.lint_config(), config());
    assert!(matches!(rbac.reload().await, Err(Error::Lint { .. })));
    assert_eq!(rbac.revision(), 1);
    assert!(rbac.status().last_error.is_some());
}

#[tokio::test]
async fn store_findings_name_the_row() {
    let (store, _dir) = sqlite_store().await;
    store
        .grant(
            "reader",
            "default",
            "call",
            "tool:tickets/*",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    store
        .grant(
            "reader",
            "default",
            "call",
            "tool:billing/*",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    store
        .assign("alice", "reader", "default")
        .await
        .expect("assign");
    let err = Rbac::from_store_with_lint(&model_path(), store.clone(), config())
        .await
        .expect_err("lint error");
    let Error::Lint { report } = err else {
        panic!("{err:?}");
    };
    let finding = report.errors().next().expect("an error");
    assert_eq!(
        finding.origin,
        Origin::Row {
            table: "casbin_rule".to_owned(),
            id: 2
        }
    );
    assert_eq!(finding.origin.to_string(), "casbin_rule row 2");
    let (located, _) = store.snapshot_located().await.expect("snapshot");
    assert_eq!(lint(&located, &config()).findings, report.findings);
    store.close().await;
}

#[test]
fn the_repository_policy_lints_clean() {
    let text = std::fs::read_to_string(policy_path()).expect("read");
    let policy = LocatedPolicy::parse_csv(&text, "policies/policy.csv").expect("parse");
    let config = LintConfig {
        upstreams: Some(vec!["tickets".to_owned()]),
        tools: BTreeMap::from([(
            "tickets".to_owned(),
            [
                "list_tickets",
                "get_ticket",
                "create_ticket",
                "delete_ticket",
            ]
            .map(str::to_owned)
            .to_vec(),
        )]),
        token_roles: None,
        deny_warnings: true,
    };
    let report = lint(&policy, &config);
    assert!(report.findings.is_empty(), "{report}");
}

#[tokio::test]
async fn unused_store_is_fine() {
    // A fresh store has nothing to lint.
    let (store, _dir) = sqlite_store().await;
    let (located, revision) = store.snapshot_located().await.expect("snapshot");
    assert_eq!(revision, 0);
    assert!(lint(&located, &config()).findings.is_empty());
    let _: &PolicyStore = &store;
    store.close().await;
}
