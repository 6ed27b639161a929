//! The SQL policy store: Casbin rules and the policy revision in SQLite or Postgres.
//!
//! Every write validates the rule first, changes `casbin_rule` and bumps `policy_revision` in one
//! transaction, so a revision always names exactly one set of rules. On Postgres the same
//! transaction sends `NOTIFY authz_policy_changed` with the new revision, which replicas can
//! listen to (delivered on commit only).

use std::path::Path;
use std::str::FromStr;

use authz_types::Effect;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::rule::stored_subject;
use crate::{Error, PolicyRule, PolicySet, RoleAssignment};

/// The Postgres channel every policy change is announced on; the payload is the new revision.
pub const POLICY_NOTIFY_CHANNEL: &str = "authz_policy_changed";

// Both folders hold every migration of the workspace (audit and policy alike), so whichever crate
// connects first brings the database to the same version.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

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

/// A policy store in SQLite or Postgres. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct PolicyStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One row of `casbin_rule` as stored: the type and its six value columns.
type Row7 = [String; 7];

impl PolicyStore {
    /// Connects to `sqlite://path?mode=rwc` (WAL journal) or `postgres://...` and applies the
    /// workspace migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|source| Error::Database { source })?
                .journal_mode(SqliteJournalMode::Wal);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .map_err(|source| Error::Database { source })?;
            Self::from_sqlite_pool(pool).await
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await
                .map_err(|source| Error::Database { source })?;
            Self::from_pg_pool(pool).await
        } else {
            Err(Error::UnsupportedUrl)
        }
    }

    /// Uses an existing SQLite pool (set WAL on it yourself) and applies the migrations.
    pub async fn from_sqlite_pool(pool: SqlitePool) -> Result<Self, Error> {
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(Self {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Uses an existing Postgres pool and applies the migrations.
    pub async fn from_pg_pool(pool: PgPool) -> Result<Self, Error> {
        POSTGRES_MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { source })?;
        Ok(Self {
            backend: Backend::Postgres(pool),
        })
    }

    /// Closes the connection pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Adds a `p` rule for a role, or for a token subject written `user:<sub>`. The pattern must
    /// compile as a glob and start with a typed prefix; the action must be known. [`Error::AlreadyExists`] if the same rule is already there.
    pub async fn grant(
        &self,
        role: &str,
        tenant: &str,
        action: &str,
        object_pattern: &str,
        effect: Effect,
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
        effect: Effect,
    ) -> Result<i64, Error> {
        // Built without validation: a rule that no longer validates must still be removable.
        let rule = PolicyRule {
            role: role.to_owned(),
            tenant: tenant.to_owned(),
            object: object_pattern.to_owned(),
            action: action.to_owned(),
            effect,
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
        self.write(&[p_row(rule)], Write::Insert).await
    }

    /// [`PolicyStore::revoke`] for a rule already built.
    pub async fn revoke_rule(&self, rule: &PolicyRule) -> Result<i64, Error> {
        self.write(&[p_row(rule)], Write::Delete).await
    }

    /// [`PolicyStore::assign`] for an assignment already built.
    pub async fn assign_rule(&self, assignment: &RoleAssignment) -> Result<i64, Error> {
        assignment.validate()?;
        self.write(&[g_row(assignment)], Write::Insert).await
    }

    /// [`PolicyStore::unassign`] for an assignment already built.
    pub async fn unassign_rule(&self, assignment: &RoleAssignment) -> Result<i64, Error> {
        self.write(&[g_row(assignment)], Write::Delete).await
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
        let revision = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_scalar(READ_REVISION).fetch_one(pool).await,
            Backend::Postgres(pool) => sqlx::query_scalar(READ_REVISION).fetch_one(pool).await,
        };
        revision.map_err(|source| Error::Database { source })
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
        match self.write(&rows, Write::Import).await {
            Err(Error::AlreadyExists) => self.revision().await,
            other => other,
        }
    }

    /// Every rule and the revision they belong to, read in one transaction and validated.
    pub async fn snapshot(&self) -> Result<(PolicySet, i64), Error> {
        let (rows, revision) = match &self.backend {
            Backend::Sqlite(pool) => {
                // In WAL mode a read transaction sees one consistent snapshot from its first read.
                let mut tx = pool.begin().await.map_err(db)?;
                let revision: i64 = sqlx::query_scalar(READ_REVISION)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let rows = sqlx::query(READ_RULES)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(read_row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                (rows, revision)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(db)?;
                let revision: i64 = sqlx::query_scalar(READ_REVISION)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let rows = sqlx::query(READ_RULES)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(read_row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                (rows, revision)
            }
        };
        let mut set = PolicySet::default();
        for (id, row) in rows {
            let at = |source: Error| Error::InvalidPolicy {
                origin: "casbin_rule".to_owned(),
                line: usize::try_from(id).unwrap_or(0),
                source: Box::new(source),
            };
            match row[0].as_str() {
                "p" => set
                    .rules
                    .push(PolicyRule::from_casbin(&row[1..6]).map_err(at)?),
                "g" => set
                    .assignments
                    .push(RoleAssignment::from_casbin(&row[1..4]).map_err(at)?),
                other => {
                    return Err(at(Error::InvalidRule {
                        reason: format!("unknown ptype {other:?}"),
                    }));
                }
            }
        }
        Ok((set, revision))
    }

    /// Applies inserts or deletes and bumps the revision, all in one transaction.
    ///
    /// Inserts and deletes fail with [`Error::AlreadyExists`] / [`Error::NotFound`] when they
    /// change nothing, and then leave the revision alone.
    async fn write(&self, rows: &[Row7], kind: Write) -> Result<i64, Error> {
        let sql = match kind {
            Write::Insert | Write::Import => INSERT_RULE,
            Write::Delete => DELETE_RULE,
        };
        let now = authz_types::now_unix_ms();
        // The two arms are the same statements on two transaction types; the macro keeps them
        // from drifting apart.
        macro_rules! run {
            ($pool:expr, $notify:expr) => {{
                // The first statement writes, so SQLite takes its write lock up front instead of
                // upgrading a read transaction (which can fail with SQLITE_BUSY).
                let mut tx = $pool.begin().await.map_err(db)?;
                let mut changed = 0u64;
                for row in rows {
                    let mut query = sqlx::query(sql);
                    for value in row {
                        query = query.bind(value.as_str());
                    }
                    changed += query.execute(&mut *tx).await.map_err(db)?.rows_affected();
                }
                if changed == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Err(match kind {
                        Write::Insert | Write::Import => Error::AlreadyExists,
                        Write::Delete => Error::NotFound,
                    });
                }
                let revision: i64 = sqlx::query_scalar(BUMP_REVISION)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                if $notify {
                    sqlx::query(NOTIFY)
                        .bind(POLICY_NOTIFY_CHANNEL)
                        .bind(revision.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                tracing::info!(revision, changed, kind = ?kind, "policy store changed");
                Ok(revision)
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => run!(pool, false),
            Backend::Postgres(pool) => run!(pool, true),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Insert,
    Delete,
    Import,
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
        String::new(),
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

fn read_row<R>(row: &R) -> Result<(i64, Row7), sqlx::Error>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
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
}
