//! The SQL policy store: Casbin rules and the policy revision in SQLite or Postgres.
//!
//! Every write validates the rule first, changes `casbin_rule`, bumps `policy_revision` and
//! records who changed what in `policy_history`, all in one transaction, so a revision always
//! names exactly one set of rules and every revision has its history row. On Postgres the same
//! transaction sends `NOTIFY authz_policy_changed` with the new revision, which replicas listen
//! to (delivered on commit only; see [`crate::Rbac::spawn_watcher`]).

use std::path::Path;
use std::sync::Arc;

use authz_db::{Pool, on_pool};
use authz_types::RuleEffect;
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::rule::{format_line, stored_subject};
use crate::{Error, LocatedPolicy, Origin, PolicyRule, PolicySet, RoleAssignment, check_role_name};

/// The Postgres channel every policy change is announced on; the payload is the new revision.
pub const POLICY_NOTIFY_CHANNEL: &str = "authz_policy_changed";

/// The policy store's tables: `casbin_rule`, `policy_revision`, `policy_history`, `policy_role`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "policy",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/policy"),
    postgres: || sqlx::migrate!("../../migrations/postgres/policy"),
};

// `$N` placeholders are understood by both SQLite and Postgres, so the statements are shared;
// only the Postgres notification differs.
const INSERT_RULE: &str = "INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
const DELETE_RULE: &str = "DELETE FROM casbin_rule WHERE ptype = $1 AND v0 = $2 AND v1 = $3 \
     AND v2 = $4 AND v3 = $5 AND v4 = $6 AND v5 = $7";
const BUMP_REVISION: &str = "UPDATE policy_revision SET revision = revision + 1, \
     updated_at_ms = $1 WHERE id = 1 RETURNING revision";
const READ_REVISION: &str = "SELECT revision FROM policy_revision WHERE id = 1";
const READ_RULES: &str = "SELECT id, ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule ORDER BY id";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const INSERT_HISTORY: &str = "INSERT INTO policy_history \
     (at_ms, actor, action, detail, from_revision, to_revision) VALUES ($1, $2, $3, $4, $5, $6)";
const READ_HISTORY: &str = "SELECT id, at_ms, actor, action, detail, from_revision, \
     to_revision FROM policy_history ORDER BY id DESC LIMIT $1";
const INSERT_ROLE: &str = "INSERT INTO policy_role (name, description, created_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const DELETE_ROLE: &str = "DELETE FROM policy_role WHERE name = $1";
const DELETE_ROLE_LINES: &str = "DELETE FROM casbin_rule WHERE (ptype = 'p' AND v0 = $1) \
     OR (ptype = 'g' AND (v0 = $1 OR v1 = $1)) RETURNING id, ptype, v0, v1, v2, v3, v4, v5";
const READ_ROLES: &str = "SELECT name, description, created_at_ms FROM policy_role ORDER BY name";

/// The actor recorded in the history when none was given with [`PolicyStore::with_actor`].
pub const UNKNOWN_ACTOR: &str = "unknown";

/// At most this many changed lines are listed in one history row (a large import lists the
/// first ones and counts the rest).
const HISTORY_LINES: usize = 200;

/// One change of the policy store, as recorded in `policy_history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyChange {
    pub id: i64,
    /// When the change was committed, Unix milliseconds.
    pub at_ms: i64,
    /// Who made it (see [`PolicyStore::with_actor`]).
    pub actor: String,
    /// grant, revoke, assign, unassign, import, role-create or role-delete.
    pub action: String,
    /// The policy lines added (`+ p, …`) and removed (`- g, …`), and roles declared or dropped
    /// (`+ role name: description`).
    pub lines: Vec<String>,
    pub from_revision: i64,
    pub to_revision: i64,
}

/// A role declared with [`PolicyStore::create_role`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeclaredRole {
    pub name: String,
    pub description: String,
    pub created_at_ms: i64,
}

/// What [`PolicyStore::delete_role`] removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleDeletion {
    pub revision: i64,
    /// The lines removed (`- p, …`, `- g, …`, `- role …`).
    pub lines: Vec<String>,
}

/// A policy store in SQLite or Postgres. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct PolicyStore {
    pool: Pool,
    /// Who the history names for changes made through this handle.
    actor: Arc<str>,
}

/// One row of `casbin_rule` as stored: the type and its six value columns.
type Row7 = [String; 7];

impl PolicyStore {
    /// Connects to `sqlite:PATH` / `sqlite://PATH[?mode=…]` or `postgres://...` through
    /// [`authz_db::connect`] (durable SQLite, fail-fast first connection) and applies this
    /// store's migrations, which create only the policy tables.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self {
            pool,
            actor: Arc::from(UNKNOWN_ACTOR),
        })
    }

    /// The same store (sharing its pool) with changes recorded in the history as made by
    /// `actor` (a user name; `authzctl` passes `--actor` or `$USER`). Without it the history
    /// says [`UNKNOWN_ACTOR`].
    pub fn with_actor(&self, actor: &str) -> Self {
        Self {
            pool: self.pool.clone(),
            actor: Arc::from(actor),
        }
    }

    /// Who changes made through this handle are recorded as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Whether this store is Postgres (which announces changes with `NOTIFY`).
    pub fn is_postgres(&self) -> bool {
        self.pool.postgres().is_some()
    }

    pub(crate) fn pg_pool(&self) -> Option<&PgPool> {
        self.pool.postgres()
    }

    /// Closes the connection pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Adds a `p` rule for a role, or for a token subject written `user:<sub>`. The pattern must
    /// compile as a glob and start with a typed prefix; the action must be known. [`Error::AlreadyExists`] if the same rule is already there.
    pub async fn grant(
        &self,
        role: &str,
        tenant: &str,
        action: &str,
        object_pattern: &str,
        effect: RuleEffect,
    ) -> Result<i64, Error> {
        self.grant_rule(&PolicyRule::new(
            role,
            tenant,
            object_pattern,
            action,
            effect,
        )?)
        .await
    }

    /// Removes a `p` rule; [`Error::NotFound`] if there is no such rule.
    pub async fn revoke(
        &self,
        role: &str,
        tenant: &str,
        action: &str,
        object_pattern: &str,
        effect: RuleEffect,
    ) -> Result<i64, Error> {
        // Built without validation: a rule that no longer validates must still be removable.
        let rule = PolicyRule {
            role: role.to_owned(),
            tenant: tenant.to_owned(),
            object: object_pattern.to_owned(),
            action: action.to_owned(),
            effect,
            condition: None,
        };
        self.revoke_rule(&rule).await
    }

    /// Gives the token subject `subject` (a bare `sub`, e.g. `alice`) the role in `tenant`,
    /// stored as `g, user:alice, <role>, <tenant>`; a `subject` already written `user:alice` is
    /// not prefixed twice. The role must be a role name (never `user:…`).
    /// [`Error::AlreadyExists`] if the subject already holds it. One role inheriting another is
    /// written with [`PolicyStore::assign_rule`] or imported from a policy file.
    pub async fn assign(&self, subject: &str, role: &str, tenant: &str) -> Result<i64, Error> {
        self.assign_rule(&RoleAssignment::for_subject(subject, role, tenant)?)
            .await
    }

    /// Takes the role away from the token subject again (prefixed like [`PolicyStore::assign`]);
    /// [`Error::NotFound`] if there is no such assignment.
    pub async fn unassign(&self, subject: &str, role: &str, tenant: &str) -> Result<i64, Error> {
        // Built without validation: an assignment that no longer validates must still be
        // removable.
        let assignment = RoleAssignment {
            subject: stored_subject(subject),
            role: role.to_owned(),
            tenant: tenant.to_owned(),
        };
        self.unassign_rule(&assignment).await
    }

    /// [`PolicyStore::grant`] for a rule already built.
    pub async fn grant_rule(&self, rule: &PolicyRule) -> Result<i64, Error> {
        rule.validate()?;
        Ok(self.write(Change::Insert(&[p_row(rule)], "grant")).await?.0)
    }

    /// [`PolicyStore::revoke`] for a rule already built.
    pub async fn revoke_rule(&self, rule: &PolicyRule) -> Result<i64, Error> {
        Ok(self
            .write(Change::Delete(&[p_row(rule)], "revoke"))
            .await?
            .0)
    }

    /// [`PolicyStore::assign`] for an assignment already built.
    pub async fn assign_rule(&self, assignment: &RoleAssignment) -> Result<i64, Error> {
        assignment.validate()?;
        Ok(self
            .write(Change::Insert(&[g_row(assignment)], "assign"))
            .await?
            .0)
    }

    /// [`PolicyStore::unassign`] for an assignment already built.
    pub async fn unassign_rule(&self, assignment: &RoleAssignment) -> Result<i64, Error> {
        Ok(self
            .write(Change::Delete(&[g_row(assignment)], "unassign"))
            .await?
            .0)
    }

    /// Declares a role, with a description for operators. Using a role in a rule or an
    /// assignment does not require declaring it; declaring it records it in `policy_role` and
    /// in the history. [`Error::AlreadyExists`] if it is already declared.
    pub async fn create_role(&self, name: &str, description: &str) -> Result<i64, Error> {
        check_role_name(name)?;
        if description.chars().any(char::is_control) {
            return Err(Error::InvalidRule {
                reason: "a role description may not contain control characters".to_owned(),
            });
        }
        Ok(self
            .write(Change::CreateRole { name, description })
            .await?
            .0)
    }

    /// Deletes a role everywhere, in one transaction and one revision: its rules, the `g` lines
    /// giving it to anyone, the `g` lines through which it inherits other roles, and its
    /// declaration. [`Error::NotFound`] if the role appears nowhere.
    pub async fn delete_role(&self, name: &str) -> Result<RoleDeletion, Error> {
        let (revision, lines) = self.write(Change::DeleteRole { name }).await?;
        Ok(RoleDeletion { revision, lines })
    }

    /// The roles declared with [`PolicyStore::create_role`], by name.
    pub async fn declared_roles(&self) -> Result<Vec<DeclaredRole>, Error> {
        on_pool!(self.pool, pool => {
            let rows = sqlx::query(READ_ROLES).fetch_all(pool).await.map_err(db)?;
            rows.iter()
                .map(|row| {
                    Ok(DeclaredRole {
                        name: row.try_get("name")?,
                        description: row.try_get("description")?,
                        created_at_ms: row.try_get("created_at_ms")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db)
    }

    /// The most recent changes, newest first (at most `limit`).
    pub async fn history(&self, limit: u32) -> Result<Vec<PolicyChange>, Error> {
        on_pool!(self.pool, pool => {
            let rows = sqlx::query(READ_HISTORY)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|row| {
                    let detail: String = row.try_get("detail")?;
                    Ok(PolicyChange {
                        id: row.try_get("id")?,
                        at_ms: row.try_get("at_ms")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        lines: detail
                            .lines()
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        from_revision: row.try_get("from_revision")?,
                        to_revision: row.try_get("to_revision")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })
        .map_err(db)
    }

    /// The policy as it stood at `revision`: the current rules and assignments with every
    /// later change undone, from the history ([`Error::NotFound`] for a revision the store has
    /// not reached).
    pub async fn policy_at(&self, revision: i64) -> Result<PolicySet, Error> {
        let (mut set, current) = self.snapshot().await?;
        if revision > current || revision < 0 {
            return Err(Error::NotFound);
        }
        // Newest first: each later change is undone in the reverse order it was made.
        for change in self.history(u32::MAX).await? {
            if change.to_revision <= revision {
                continue;
            }
            for line in change.lines.iter().rev() {
                let (undo_add, text) = match line.split_at_checked(2) {
                    Some(("+ ", t)) => (true, t),
                    Some(("- ", t)) => (false, t),
                    _ => continue,
                };
                // Role declarations are recorded too; only policy lines change the policy.
                if !(text.starts_with("p, ") || text.starts_with("g, ")) {
                    continue;
                }
                let parsed = PolicySet::parse_csv(text, "policy history")?;
                for rule in parsed.rules {
                    if undo_add {
                        set.rules.retain(|r| *r != rule);
                    } else if !set.rules.contains(&rule) {
                        set.rules.push(rule);
                    }
                }
                for a in parsed.assignments {
                    if undo_add {
                        set.assignments.retain(|x| *x != a);
                    } else if !set.assignments.contains(&a) {
                        set.assignments.push(a);
                    }
                }
            }
        }
        Ok(set)
    }

    /// Every `p` rule, in insertion order.
    pub async fn rules(&self) -> Result<Vec<PolicyRule>, Error> {
        Ok(self.snapshot().await?.0.rules)
    }

    /// Every `g` assignment as stored (`user:alice` for a subject, a bare name for a role that
    /// inherits another), in insertion order.
    pub async fn assignments(&self) -> Result<Vec<RoleAssignment>, Error> {
        Ok(self.snapshot().await?.0.assignments)
    }

    /// The current policy revision (0 for an empty, never changed store).
    pub async fn revision(&self) -> Result<i64, Error> {
        on_pool!(self.pool, pool => sqlx::query_scalar(READ_REVISION).fetch_one(pool).await)
            .map_err(db)
    }

    /// Loads a Casbin policy CSV into the store, adding the lines that are not there yet, in one
    /// transaction with one revision bump (none if nothing was new). Lines already in the store
    /// are skipped, not refused, so importing the same file twice is safe. The whole file is
    /// validated first; an invalid line imports nothing.
    pub async fn import_csv(&self, path: &Path) -> Result<i64, Error> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
        let set = PolicySet::parse_csv(&text, &path.display().to_string())?;
        self.import(&set).await
    }

    /// [`PolicyStore::import_csv`] for a policy already parsed (validated again here).
    pub async fn import(&self, set: &PolicySet) -> Result<i64, Error> {
        // A set built in code has not been through the parser; nothing unvalidated may reach
        // the table.
        for rule in &set.rules {
            rule.validate()?;
        }
        for assignment in &set.assignments {
            assignment.validate()?;
        }
        let rows: Vec<Row7> = set
            .rules
            .iter()
            .map(p_row)
            .chain(set.assignments.iter().map(g_row))
            .collect();
        match self.write(Change::Insert(&rows, "import")).await {
            Err(Error::AlreadyExists) => self.revision().await,
            other => other.map(|(revision, _)| revision),
        }
    }

    /// Every rule and the revision they belong to, read in one transaction and validated.
    pub async fn snapshot(&self) -> Result<(PolicySet, i64), Error> {
        let (located, revision) = self.snapshot_located().await?;
        Ok((located.set, revision))
    }

    /// [`PolicyStore::snapshot`] with the `casbin_rule` row of every line, for lint findings.
    pub async fn snapshot_located(&self) -> Result<(LocatedPolicy, i64), Error> {
        // The revision and the rules from one snapshot, so they belong together.
        macro_rules! read {
            ($tx:expr) => {{
                let mut tx = $tx.await.map_err(db)?;
                let revision: i64 = sqlx::query_scalar(READ_REVISION)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let rows = read_rows(
                    &sqlx::query(READ_RULES)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?,
                )?;
                tx.commit().await.map_err(db)?;
                (rows, revision)
            }};
        }
        let (rows, revision) = match &self.pool {
            // In WAL mode a read transaction sees one consistent snapshot from its first read.
            Pool::Sqlite(pool) => read!(pool.begin()),
            Pool::Postgres(pool) => {
                read!(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            }
        };
        let mut located = LocatedPolicy::default();
        for (id, row) in rows {
            let at = |source: Error| Error::InvalidPolicy {
                origin: "casbin_rule".to_owned(),
                line: usize::try_from(id).unwrap_or(0),
                source: Box::new(source),
            };
            let origin = Origin::Row {
                table: "casbin_rule".to_owned(),
                id,
            };
            match row[0].as_str() {
                "p" => {
                    located
                        .set
                        .rules
                        .push(PolicyRule::from_casbin(&row[1..7]).map_err(at)?);
                    located.rule_origins.push(origin);
                }
                "g" => {
                    located
                        .set
                        .assignments
                        .push(RoleAssignment::from_casbin(&row[1..4]).map_err(at)?);
                    located.assignment_origins.push(origin);
                }
                other => {
                    return Err(at(Error::InvalidRule {
                        reason: format!("unknown ptype {other:?}"),
                    }));
                }
            }
        }
        Ok((located, revision))
    }

    /// Applies one change, bumps the revision and records the history row, all in one
    /// transaction; returns the new revision and the lines changed.
    ///
    /// A change that changes nothing fails with [`Error::AlreadyExists`] (inserts, role
    /// declarations) or [`Error::NotFound`] (deletes) and leaves the revision alone.
    async fn write(&self, change: Change<'_>) -> Result<(i64, Vec<String>), Error> {
        let now = authz_types::now_unix_ms();
        let actor: &str = &self.actor;
        // One body for both backends, so the two cannot drift apart.
        on_pool!(self.pool, pool => {
            // The first statement writes, so SQLite takes its write lock up front instead of
            // upgrading a read transaction (which can fail with SQLITE_BUSY).
            let mut tx = pool.begin().await.map_err(db)?;
            let mut lines: Vec<String> = Vec::new();
            match change {
                Change::Insert(rows, _) | Change::Delete(rows, _) => {
                    let (sql, sign) = if matches!(change, Change::Insert(..)) {
                        (INSERT_RULE, '+')
                    } else {
                        (DELETE_RULE, '-')
                    };
                    for row in rows {
                        let mut query = sqlx::query(sql);
                        for value in row {
                            query = query.bind(value.as_str());
                        }
                        let changed = query.execute(&mut *tx).await.map_err(db)?;
                        if changed.rows_affected() > 0 {
                            lines.push(format!("{sign} {}", row_line(row)));
                        }
                    }
                }
                Change::CreateRole { name, description } => {
                    let changed = sqlx::query(INSERT_ROLE)
                        .bind(name)
                        .bind(description)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    if changed.rows_affected() > 0 {
                        lines.push(role_line('+', name, description));
                    }
                }
                Change::DeleteRole { name } => {
                    let mut removed = read_rows(
                        &sqlx::query(DELETE_ROLE_LINES)
                            .bind(name)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(db)?,
                    )?;
                    removed.sort_by_key(|(id, _)| *id);
                    lines.extend(
                        removed
                            .iter()
                            .map(|(_, row)| format!("- {}", row_line(row))),
                    );
                    let changed = sqlx::query(DELETE_ROLE)
                        .bind(name)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    if changed.rows_affected() > 0 {
                        lines.push(role_line('-', name, ""));
                    }
                }
            }
            if lines.is_empty() {
                tx.rollback().await.map_err(db)?;
                return Err(match change {
                    Change::Insert(..) | Change::CreateRole { .. } => Error::AlreadyExists,
                    Change::Delete(..) | Change::DeleteRole { .. } => Error::NotFound,
                });
            }
            let revision: i64 = sqlx::query_scalar(BUMP_REVISION)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(INSERT_HISTORY)
                .bind(now)
                .bind(actor)
                .bind(change.action())
                .bind(history_detail(&lines))
                .bind(revision - 1)
                .bind(revision)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if self.is_postgres() {
                sqlx::query(NOTIFY)
                    .bind(POLICY_NOTIFY_CHANNEL)
                    .bind(revision.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            tracing::info!(
                revision,
                changed = lines.len(),
                action = change.action(),
                actor,
                "policy store changed"
            );
            Ok((revision, lines))
        })
    }
}

/// One change to apply in [`PolicyStore::write`].
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    /// Rows to insert, with the history action (grant, assign, import).
    Insert(&'a [Row7], &'static str),
    /// Rows to delete, with the history action (revoke, unassign).
    Delete(&'a [Row7], &'static str),
    CreateRole {
        name: &'a str,
        description: &'a str,
    },
    DeleteRole {
        name: &'a str,
    },
}

impl Change<'_> {
    fn action(&self) -> &'static str {
        match self {
            Change::Insert(_, action) | Change::Delete(_, action) => action,
            Change::CreateRole { .. } => "role-create",
            Change::DeleteRole { .. } => "role-delete",
        }
    }
}

/// A stored row as a policy line: `p, …` with five fields, `g, …` with three.
fn row_line(row: &Row7) -> String {
    let fields: Vec<&str> = match row[0].as_str() {
        "p" if !row[6].is_empty() => {
            // With its condition, printed (quoted) as a policy file writes it.
            let mut line = format_line(
                "p",
                &row[1..6].iter().map(String::as_str).collect::<Vec<_>>(),
            );
            line.push_str(&format!(", \"{}\"", row[6].replace('"', "\"\"")));
            return line;
        }
        "p" => row[1..6].iter().map(String::as_str).collect(),
        "g" => row[1..4].iter().map(String::as_str).collect(),
        _ => row[1..].iter().map(String::as_str).collect(),
    };
    format_line(&row[0], &fields)
}

fn role_line(sign: char, name: &str, description: &str) -> String {
    if description.is_empty() {
        format!("{sign} role {name}")
    } else {
        format!("{sign} role {name}: {description}")
    }
}

/// The `detail` column: the changed lines, the first [`HISTORY_LINES`] of them and a count of
/// the rest.
fn history_detail(lines: &[String]) -> String {
    let mut detail = lines
        .iter()
        .take(HISTORY_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > HISTORY_LINES {
        detail.push_str(&format!(
            "\n… and {} more line(s)",
            lines.len() - HISTORY_LINES
        ));
    }
    detail
}

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

fn p_row(rule: &PolicyRule) -> Row7 {
    let [role, tenant, object, action, effect] = [
        rule.role.clone(),
        rule.tenant.clone(),
        rule.object.clone(),
        rule.action.clone(),
        rule.effect.as_str().to_owned(),
    ];
    [
        "p".to_owned(),
        role,
        tenant,
        object,
        action,
        effect,
        rule.condition.clone().unwrap_or_default(),
    ]
}

fn g_row(assignment: &RoleAssignment) -> Row7 {
    [
        "g".to_owned(),
        assignment.subject.clone(),
        assignment.role.clone(),
        assignment.tenant.clone(),
        String::new(),
        String::new(),
        String::new(),
    ]
}

/// Rows of `casbin_rule` (with `id`) as read from either backend.
fn read_rows<R>(rows: &[R]) -> Result<Vec<(i64, Row7)>, Error>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let read = |row: &R| -> Result<(i64, Row7), sqlx::Error> {
        Ok((
            row.try_get("id")?,
            [
                row.try_get("ptype")?,
                row.try_get("v0")?,
                row.try_get("v1")?,
                row.try_get("v2")?,
                row.try_get("v3")?,
                row.try_get("v4")?,
                row.try_get("v5")?,
            ],
        ))
    };
    rows.iter().map(read).collect::<Result<_, _>>().map_err(db)
}
