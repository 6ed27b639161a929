//! Shared helpers: paths to the policies folder, principals, operations, throwaway databases.

use std::path::PathBuf;

use authz_rbac::PolicyStore;
use authz_test_support::{TestDatabase, policies_dir};
use authz_types::{CompletionRef, Method, Operation, Principal, Target};

pub(crate) fn model_path() -> PathBuf {
    policies_dir().join("model.conf")
}

pub(crate) fn policy_path() -> PathBuf {
    policies_dir().join("policy.csv")
}

pub(crate) fn principal(subject: &str, roles: &[&str], tenant: Option<&str>) -> Principal {
    Principal {
        subject: subject.to_owned(),
        issuer: "https://idp.example".to_owned(),
        tenant: tenant.map(str::to_owned),
        client_id: None,
        actors: vec![],
        scopes: vec![],
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        token_id: None,
        expires_at: 0,
        issued_at: None,
        claims: Default::default(),
    }
    .normalize()
}

/// Parses the decision-table target notation (see policies/testdata/decisions.toml).
pub(crate) fn target(spec: &str) -> Target {
    if spec == "none" {
        return Target::None;
    }
    let (kind, rest) = spec.split_once(':').expect("target kind");
    match kind {
        "tool" => Target::Tool(rest.to_owned()),
        "resource" => Target::Resource(rest.to_owned()),
        "resources" => Target::Resources(rest.split_whitespace().map(str::to_owned).collect()),
        "prompt" => Target::Prompt(rest.to_owned()),
        "completion-prompt" => Target::Completion(CompletionRef::Prompt(rest.to_owned())),
        "completion-resource" => Target::Completion(CompletionRef::Resource(rest.to_owned())),
        "task" => Target::Task(rest.to_owned()),
        other => panic!("unknown target kind {other}"),
    }
}

pub(crate) fn op(method: &str, target_spec: &str) -> Operation {
    Operation::new(Method::from_name(method), target(target_spec))
}

pub(crate) fn tool(name: &str) -> Operation {
    Operation::new(Method::ToolsCall, Target::Tool(name.to_owned()))
}

/// A SQLite store in a fresh temporary directory (kept alive by the returned database).
pub(crate) async fn sqlite_store() -> (PolicyStore, TestDatabase) {
    let db = TestDatabase::sqlite("policy.db");
    let store = PolicyStore::connect(db.url())
        .await
        .expect("connect sqlite");
    (store, db)
}

/// Writes a `p` row the store would refuse (its pattern `tool:t/[` does not compile) straight
/// into `casbin_rule` and bumps the revision, as a writer bypassing the store's validation would.
pub(crate) async fn write_around_the_store(db: &TestDatabase) {
    db.execute(
        "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) \
         VALUES ('p', 'r', 'default', 'tool:t/[', 'call', 'allow'); \
         UPDATE policy_revision SET revision = revision + 1",
    )
    .await;
}
