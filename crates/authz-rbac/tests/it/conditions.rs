//! The decision table for argument conditions (policies/testdata/conditions.toml over
//! conditions.csv), against every policy source: each row through the index, through plain
//! Casbin with the condition evaluator, and through explain, which must agree.

use authz_rbac::{ConditionArgs, PolicyStore, Rbac};
use authz_test_support::{TestDatabase, policies_dir};
use authz_types::{Effect, ReasonCode};
use serde::Deserialize;
use serde_json::Value;

use crate::common::{model_path, op, principal, sqlite_store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    note: String,
    subject: Option<String>,
    roles: Option<Vec<String>>,
    tenant: Option<String>,
    upstream: String,
    method: String,
    target: String,
    args: Option<String>,
    #[serde(default)]
    listing: bool,
    claims: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    actors: Vec<String>,
    effect: String,
    reason: String,
    rule: Option<String>,
    rule_prefix: Option<String>,
}

fn policy() -> std::path::PathBuf {
    policies_dir().join("testdata/conditions.csv")
}

fn run_table(rbac: &Rbac, backend: &str) {
    let text = std::fs::read_to_string(policies_dir().join("testdata/conditions.toml"))
        .expect("read conditions.toml");
    let table: Table = toml::from_str(&text).expect("parse conditions.toml");
    assert!(table.case.len() >= 30, "the table lost rows");
    let mut failures = Vec::new();
    for (i, case) in table.case.iter().enumerate() {
        let roles: Vec<&str> = case
            .roles
            .as_ref()
            .map_or(vec!["support"], |r| r.iter().map(String::as_str).collect());
        let mut who = principal(
            case.subject.as_deref().unwrap_or("sam"),
            &roles,
            case.tenant.as_deref(),
        );
        who.client_id.clone_from(&case.client_id);
        who.actors.clone_from(&case.actors);
        if let Some(c) = &case.claims {
            let Value::Object(map) = serde_json::from_str(c).expect("claims JSON") else {
                panic!("case {i}: claims must be an object");
            };
            who.claims = std::sync::Arc::new(map);
        }
        let operation = op(&case.method, &case.target);
        // A resource's condition sees its URI as `args.uri`.
        let args: Value = match (&case.args, &operation.target) {
            (Some(a), _) => serde_json::from_str(a).expect("args JSON"),
            (None, authz_types::Target::Resource(uri)) => serde_json::json!({ "uri": uri }),
            (None, _) => Value::Null,
        };
        let given = if case.listing {
            ConditionArgs::Unknown
        } else {
            ConditionArgs::Known(&args)
        };
        let decision = rbac
            .decide_with(&who, &case.upstream, &operation, given)
            .unwrap_or_else(|e| panic!("{backend} case {i}: {e:?}"));
        let rule_ok = match (&case.rule, &case.rule_prefix) {
            (Some(r), _) => decision.matched_rule.as_ref() == Some(r),
            (None, Some(p)) => decision
                .matched_rule
                .as_deref()
                .is_some_and(|m| m.starts_with(p.as_str())),
            (None, None) => decision.matched_rule.is_none(),
        };
        if decision.effect != Effect::parse(&case.effect).expect("effect")
            || decision.reason != ReasonCode::parse(&case.reason).expect("reason")
            || !rule_ok
        {
            failures.push(format!("case {i} ({}):\n  got {decision:?}", case.note));
        }
        let reference = rbac
            .decide_with_casbin_args(&who, &case.upstream, &operation, given)
            .unwrap_or_else(|e| panic!("{backend} case {i} through Casbin: {e:?}"));
        assert_eq!(reference, decision, "{backend} case {i}: index vs Casbin");
        let explained = rbac
            .explain_with(&who, &case.upstream, &operation, given)
            .expect("explain");
        assert_eq!(explained.decision, decision, "{backend} case {i}: explain");
        // Every conditional rule that matched says what it saw and how it came out.
        for m in &explained.matches {
            if m.rule.matches(", \"").count() > 0 {
                let c = m.condition.as_ref().expect("a condition trace");
                assert!(!c.outcome.is_empty(), "{backend} case {i}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{backend}: {} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_conditional_deny_does_not_make_allows_useless_in_lint() {
    let text = std::fs::read_to_string(policy()).expect("read");
    let located = authz_rbac::LocatedPolicy::parse_csv(&text, "conditions.csv").expect("parse");
    let report = authz_rbac::lint(&located, &authz_rbac::LintConfig::default());
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.code == authz_rbac::LintCode::ShadowedByDeny),
        "{:?}",
        report.findings
    );
    // An unconditional deny still does.
    let text = "p, r, default, tool:t/x, call, allow, \"args.a == 1\"\np, r, default, tool:t/*, call, deny\n";
    let located = authz_rbac::LocatedPolicy::parse_csv(text, "inline").expect("parse");
    let report = authz_rbac::lint(&located, &authz_rbac::LintConfig::default());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == authz_rbac::LintCode::ShadowedByDeny),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn conditions_against_policy_files() {
    let rbac = Rbac::from_files(&model_path(), &[policy()])
        .await
        .expect("load files");
    run_table(&rbac, "files");
}

async fn run_against_store(store: PolicyStore, backend: &str) {
    store.import_csv(&policy()).await.expect("import");
    // The store keeps each condition and gives it back exactly.
    let (set, _) = store.snapshot().await.expect("snapshot");
    let from_file =
        authz_rbac::PolicySet::parse_csv(&std::fs::read_to_string(policy()).expect("read"), "f")
            .expect("parse");
    assert_eq!(set.rules, from_file.rules, "{backend}");
    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load store");
    run_table(&rbac, backend);
}

#[tokio::test]
async fn conditions_against_sqlite_store() {
    let (store, _dir) = sqlite_store().await;
    run_against_store(store, "sqlite").await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn conditions_against_postgres_store() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url())
        .await
        .expect("connect postgres");
    run_against_store(store.clone(), "postgres").await;
    store.close().await;
}

#[tokio::test]
async fn a_condition_that_cannot_compile_refuses_the_policy_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "p, support, *, tool:billing/refund, call, allow, \"args.amount <= 500\"\n\
         p, support, *, tool:billing/refund, call, allow, \"args.amount <=\"\n",
    )
    .expect("write");
    let Err(err) = Rbac::from_files(&model_path(), std::slice::from_ref(&path)).await else {
        panic!("a condition that does not compile must refuse the policy");
    };
    let text = format!("{err}");
    assert!(
        text.contains(&format!("{}", path.display())) && text.contains('2'),
        "{text}"
    );
    let text = format!("{err:?}");
    assert!(text.contains("does not parse"), "{text}");
}
