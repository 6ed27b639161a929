//! Shared helpers: paths to the policies folder, principals, operations, throwaway databases.

use std::path::PathBuf;

use authz_rbac::PolicyStore;
use authz_types::{CompletionRef, Method, Operation, Principal, Target};

pub(crate) fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

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

/// A SQLite store in a fresh temporary directory (kept alive by the returned guard).
pub(crate) async fn sqlite_store() -> (PolicyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("policy.db").display()
    );
    let store = PolicyStore::connect(&url).await.expect("connect sqlite");
    (store, dir)
}

/// A freshly created Postgres database, or `None` (after saying so) when DATABASE_URL is unset.
pub(crate) struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub(crate) async fn create() -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            println!("skipped: DATABASE_URL not set (run cargo xtask test)");
            return None;
        };
        let name = format!("authz_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("connect admin");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
        let url = format!("{base}/{name}");
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// Drops the database; every pool on it must be closed first.
    pub(crate) async fn drop(self) {
        let admin = sqlx::PgPool::connect(&self.admin_url)
            .await
            .expect("connect admin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await
        .expect("drop database");
        admin.close().await;
    }
}

/// The table names of the SQLite database at `path`, sorted (SQLite's own tables left out).
pub(crate) async fn sqlite_tables(path: &std::path::Path) -> Vec<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the database file");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    conn.close().await.expect("close");
    tables
}
