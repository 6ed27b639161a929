//! The decision table in policies/testdata/decisions.toml, against every policy source.

use authz_rbac::{PolicyStore, Rbac};
use authz_test_support::{TestDatabase, policies_dir};
use authz_types::{Effect, ReasonCode};
use serde::Deserialize;

use crate::common::{model_path, op, policy_path, principal, sqlite_store};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    subject: String,
    #[serde(default)]
    roles: Vec<String>,
    tenant: Option<String>,
    upstream: Option<String>,
    method: String,
    target: String,
    effect: String,
    reason: String,
    rule: Option<String>,
}

fn table() -> Table {
    let path = policies_dir().join("testdata/decisions.toml");
    let text = std::fs::read_to_string(&path).expect("read decisions.toml");
    toml::from_str(&text).expect("parse decisions.toml")
}

/// Runs every row and reports all failures at once, naming the backend.
fn run_table(rbac: &Rbac, backend: &str) {
    let table = table();
    assert!(table.case.len() >= 30, "the table lost rows");
    let mut failures = Vec::new();
    for (i, case) in table.case.iter().enumerate() {
        let roles: Vec<&str> = case.roles.iter().map(String::as_str).collect();
        let who = principal(&case.subject, &roles, case.tenant.as_deref());
        let operation = op(&case.method, &case.target);
        let upstream = case.upstream.as_deref().unwrap_or("tickets");
        let decision = rbac
            .decide(&who, upstream, &operation)
            .unwrap_or_else(|e| panic!("{backend} case {i}: {e:?}"));
        let expected_effect = Effect::parse(&case.effect).expect("effect");
        let expected_reason = ReasonCode::parse(&case.reason).expect("reason");
        if decision.effect != expected_effect
            || decision.reason != expected_reason
            || decision.matched_rule != case.rule
            || decision.policy_revision != rbac.revision()
        {
            failures.push(format!("case {i} {case:?}\n  got {decision:?}"));
        }
        // The indexed path must agree with plain Casbin enforcement, and explain (which runs
        // through Casbin too) with both, on every row.
        let reference = rbac
            .decide_with_casbin(&who, upstream, &operation)
            .unwrap_or_else(|e| panic!("{backend} case {i} through Casbin: {e:?}"));
        assert_eq!(reference, decision, "{backend} case {i}: index vs Casbin");
        let explanation = rbac.explain(&who, upstream, &operation).expect("explain");
        assert_eq!(explanation.decision, decision, "{backend} case {i}");
    }
    assert!(
        failures.is_empty(),
        "{backend}: {} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn table_against_policy_files() {
    let rbac = Rbac::from_files(&model_path(), &[policy_path()])
        .await
        .expect("load files");
    assert_eq!(rbac.revision(), 1);
    run_table(&rbac, "files");
}

async fn run_against_store(store: PolicyStore, backend: &str) {
    let revision = store.import_csv(&policy_path()).await.expect("import");
    assert_eq!(revision, 1, "one import is one revision");
    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load store");
    assert_eq!(rbac.revision(), revision);
    run_table(&rbac, backend);
}

#[tokio::test]
async fn table_against_sqlite_store() {
    let (store, _dir) = sqlite_store().await;
    run_against_store(store, "sqlite").await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn table_against_postgres_store() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url())
        .await
        .expect("connect postgres");
    run_against_store(store.clone(), "postgres").await;
    store.close().await;
}
