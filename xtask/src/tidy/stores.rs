//! Tidy checks of the SQL layer: only `authz-db` and the stores use sqlx, and each store's
//! migrations touch only that store's tables.
//!
//! The migrations live in `migrations/<backend>/<store>/`; all stores share sqlx's
//! `_sqlx_migrations` table, so versions must be unique across stores, and both backends must
//! have the same files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::{DepKind, LEAF_LIBRARIES, SQL_LAYER, TEST_SUPPORT, Workspace, read, rust_files};

/// One store: the crate it lives in, its folder under `migrations/<backend>/`, its tables.
#[derive(Debug)]
pub(super) struct Store {
    pub crate_name: &'static str,
    pub folder: &'static str,
    pub tables: &'static [&'static str],
}

/// Every store of the workspace and the tables it owns.
pub(super) const STORES: &[Store] = &[
    Store {
        crate_name: "authz-audit",
        folder: "audit",
        tables: &["audit_records", "audit_checkpoints", "audit_ship_cursors"],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "policy",
        tables: &[
            "casbin_rule",
            "policy_revision",
            "policy_history",
            "policy_role",
        ],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "quota",
        tables: &["quota_bucket"],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "binding",
        tables: &["owner_binding"],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "pins",
        tables: &["definition_pin", "definition_pin_history"],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "approvals",
        tables: &["approval", "approval_history"],
    },
    Store {
        crate_name: "authz-rbac",
        folder: "shadow",
        tables: &["policy_shadow"],
    },
    Store {
        crate_name: "authz-token",
        folder: "revocation",
        tables: &["revoked_token", "revoked_subject", "revocation_revision"],
    },
];

/// The backends, one folder each under `migrations/`.
pub(super) const BACKENDS: &[&str] = &["sqlite", "postgres"];

/// Crates with a normal or build dependency on sqlx that are neither the SQL layer, a store nor
/// the test fixtures (themselves only ever a dev-dependency). Dev-dependencies are allowed:
/// tests tamper with stored rows directly.
pub(super) fn check_sqlx_users(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for pkg in &ws.packages {
        let allowed = pkg.name == SQL_LAYER
            || pkg.name == TEST_SUPPORT
            || LEAF_LIBRARIES.contains(&pkg.name.as_str());
        for dep in &pkg.dependencies {
            if dep.name == "sqlx" && dep.kind != DepKind::Dev && !allowed {
                violations.push(format!(
                    "crate `{}` has a {} on sqlx; only `{SQL_LAYER}` and the stores ({}) talk \
                     SQL (a dev-dependency for tests is fine)",
                    pkg.name,
                    dep.kind,
                    LEAF_LIBRARIES.join(", ")
                ));
            }
        }
    }
    Ok(violations)
}

/// The layout of `migrations/`, the tables each migration touches, unique versions, and which
/// folder each store crate embeds.
pub(super) fn check_migrations(ws: &Workspace) -> Result<Vec<String>> {
    let root = ws.root.join("migrations");
    let mut violations = Vec::new();
    let backends = subdirectories(&root)?;
    let expected: BTreeSet<String> = BACKENDS.iter().map(|b| (*b).to_owned()).collect();
    for extra in backends.difference(&expected) {
        violations.push(format!(
            "migrations/{extra}/ is not a backend ({BACKENDS:?})"
        ));
    }
    let mut files_per_backend: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for backend in BACKENDS {
        let dir = root.join(backend);
        if !dir.is_dir() {
            violations.push(format!("migrations/{backend}/ is missing"));
            continue;
        }
        let folders = subdirectories(&dir)?;
        let known: BTreeSet<String> = STORES.iter().map(|s| s.folder.to_owned()).collect();
        for stray in folders.difference(&known) {
            violations.push(format!(
                "migrations/{backend}/{stray}/ belongs to no store; stores: {known:?}"
            ));
        }
        let mut versions: BTreeMap<i64, String> = BTreeMap::new();
        for store in STORES {
            let dir = dir.join(store.folder);
            for name in sql_files(&dir)? {
                let path = format!("migrations/{backend}/{}/{name}", store.folder);
                files_per_backend
                    .entry(backend)
                    .or_default()
                    .insert(format!("{}/{name}", store.folder));
                match version_of(&name) {
                    Some(version) => {
                        if let Some(first) = versions.insert(version, path.clone()) {
                            violations.push(format!(
                                "{path} and {first} share version {version}; the stores share \
                                 one `_sqlx_migrations` table, so versions must be unique"
                            ));
                        }
                    }
                    None => violations.push(format!("{path} does not start with `<version>_`")),
                }
                let text = read(&dir.join(&name))?;
                violations.extend(foreign_tables(&path, store, &text));
            }
        }
    }
    if let (Some(sqlite), Some(postgres)) = (
        files_per_backend.get("sqlite"),
        files_per_backend.get("postgres"),
    ) {
        for only in sqlite.symmetric_difference(postgres) {
            violations.push(format!(
                "migration {only} exists for one backend only; SQLite and Postgres must have the \
                 same migrations"
            ));
        }
    }
    violations.extend(embedded_folders(ws)?);
    Ok(violations)
}

/// One message per table `text` (the migration at `path`) touches that `store` does not own.
pub(super) fn foreign_tables(path: &str, store: &Store, text: &str) -> Vec<String> {
    tables_touched(text)
        .into_iter()
        .filter(|table| !store.tables.contains(&table.as_str()))
        .map(|table| {
            let owner = STORES
                .iter()
                .find(|s| s.tables.contains(&table.as_str()))
                .map_or("no store".to_owned(), |s| format!("`{}`", s.crate_name));
            format!(
                "{path} touches table `{table}`, which belongs to {owner}; a store's migrations \
                 create and change only its own tables ({:?})",
                store.tables
            )
        })
        .collect()
}

/// The tables an SQL script creates, alters, drops, indexes, references or writes to.
pub(super) fn tables_touched(sql: &str) -> BTreeSet<String> {
    let without_comments: String = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let words: Vec<String> = without_comments
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut tables = BTreeSet::new();
    for (i, word) in words.iter().enumerate() {
        let mut next = i + 1;
        let takes_name = match word.as_str() {
            "table" | "into" | "references" => true,
            // `UPDATE t SET`, not `DO UPDATE SET` or `ON UPDATE CASCADE`.
            "update" => words
                .get(next)
                .is_some_and(|w| w != "set" && w != "cascade"),
            // `CREATE INDEX i ON t`, not `ON CONFLICT` or `ON DELETE`.
            "on" => words
                .get(next)
                .is_some_and(|w| !matches!(w.as_str(), "conflict" | "delete" | "update")),
            _ => false,
        };
        if !takes_name {
            continue;
        }
        // `TABLE IF NOT EXISTS t`, `TABLE IF EXISTS t`.
        while words
            .get(next)
            .is_some_and(|w| matches!(w.as_str(), "if" | "not" | "exists" | "only"))
        {
            next += 1;
        }
        if let Some(name) = words.get(next) {
            tables.insert(name.clone());
        }
    }
    tables
}

/// Each store crate must embed its own migration folders (a crate may hold several stores) and
/// no other store's.
fn embedded_folders(ws: &Workspace) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for pkg in &ws.packages {
        let own: Vec<&Store> = STORES.iter().filter(|s| s.crate_name == pkg.name).collect();
        let mut embedded = BTreeSet::new();
        for file in rust_files(&pkg.dir().join("src"))? {
            let text = read(&file)?;
            for backend in BACKENDS {
                let marker = format!("migrations/{backend}/");
                for (at, _) in text.match_indices(&marker) {
                    let rest = &text[at + marker.len()..];
                    let folder: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
                    let in_comment = text[line_start..at].trim_start().starts_with("//");
                    if !in_comment && text[..at].ends_with("sqlx::migrate!(\"../../") {
                        embedded.insert((backend.to_owned(), folder, ws.rel(&file).to_owned()));
                    }
                }
            }
        }
        for (backend, folder, file) in &embedded {
            if !own.iter().any(|s| s.folder == folder) {
                violations.push(format!(
                    "{} embeds migrations/{backend}/{folder}, which is not crate `{}`'s store",
                    file.display(),
                    pkg.name
                ));
            }
        }
        for store in &own {
            for backend in BACKENDS {
                if !embedded
                    .iter()
                    .any(|(b, f, _)| b == backend && f == store.folder)
                {
                    violations.push(format!(
                        "crate `{}` does not embed migrations/{backend}/{} with sqlx::migrate!",
                        pkg.name, store.folder
                    ));
                }
            }
        }
    }
    Ok(violations)
}

/// The version prefix of a migration file name (`0003_audit_chain.sql` → 3).
fn version_of(name: &str) -> Option<i64> {
    name.split_once('_')?.0.parse().ok()
}

fn subdirectories(dir: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    if !dir.is_dir() {
        return Ok(names);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

fn sql_files(dir: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    if !dir.is_dir() {
        return Ok(names);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") {
            names.insert(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd;

    fn workspace() -> Workspace {
        Workspace::load(&cmd::workspace_root()).expect("cargo metadata")
    }

    #[test]
    fn tables_are_found_in_every_statement_that_touches_one() {
        let sql = "-- CREATE TABLE commented_out (x)\n\
                   CREATE TABLE IF NOT EXISTS a (id INTEGER REFERENCES b (id));\n\
                   ALTER TABLE c ADD COLUMN x TEXT;\n\
                   CREATE UNIQUE INDEX i ON d (x);\n\
                   INSERT INTO e (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1;\n\
                   UPDATE f SET x = 1;\n\
                   DROP TABLE IF EXISTS g;";
        let want: BTreeSet<String> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        assert_eq!(tables_touched(sql), want);
    }

    #[test]
    fn a_migration_touching_another_stores_table_is_reported() {
        let audit = &STORES[0];
        let bad = "CREATE TABLE audit_records (id INTEGER);\nCREATE TABLE casbin_rule (x TEXT);\n\
                   CREATE TABLE stray (y TEXT);";
        let violations = foreign_tables("migrations/sqlite/audit/0009_x.sql", audit, bad);
        assert_eq!(violations.len(), 2, "{violations:#?}");
        assert!(violations[0].contains("`casbin_rule`, which belongs to `authz-rbac`"));
        assert!(violations[1].contains("`stray`, which belongs to no store"));
    }

    #[test]
    fn versions_are_read_from_file_names() {
        assert_eq!(version_of("0003_audit_chain.sql"), Some(3));
        assert_eq!(version_of("audit.sql"), None);
    }

    #[test]
    fn each_store_migrates_only_its_own_tables() {
        let violations = check_migrations(&workspace()).expect("check runs");
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn only_the_sql_layer_and_the_stores_depend_on_sqlx() {
        let violations = check_sqlx_users(&workspace()).expect("check runs");
        assert!(violations.is_empty(), "{violations:#?}");
    }
}
