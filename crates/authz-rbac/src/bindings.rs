//! Owner bindings shared by gateway replicas through one SQL store (Postgres across hosts; a
//! SQLite file serves replicas on one host, or tests).
//!
//! An MCP session id or a task id belongs to the principal whose request created it. The
//! gateway that saw the creation binds the id here before it answers, so the next request of
//! the session may reach any replica: that replica finds the owner here and refuses the id to
//! anyone else. The first binding of an id wins (an expired one may be taken over); a binding
//! lasts until it expires or is ended (a session's `DELETE`), and [`BindingStore::prune`] drops
//! what has expired.

use authz_db::{Pool, on_pool};
use sqlx::Row;

use crate::Error;

/// The store's table: `owner_binding`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "binding",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/binding"),
    postgres: || sqlx::migrate!("../../migrations/postgres/binding"),
};

// $1 kind, $2 upstream, $3 id, $4 owner, $5 expires_ms, $6 now_ms: insert, or take over a
// binding that has expired; a live one stays as it is.
const BIND_POSTGRES: &str = "INSERT INTO owner_binding AS b (kind, upstream, id, owner, expires_ms) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kind, upstream, id) DO UPDATE SET owner = EXCLUDED.owner, \
     expires_ms = EXCLUDED.expires_ms WHERE b.expires_ms <= $6";
const BIND_SQLITE: &str = "INSERT INTO owner_binding (kind, upstream, id, owner, expires_ms) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kind, upstream, id) DO UPDATE SET owner = excluded.owner, \
     expires_ms = excluded.expires_ms WHERE owner_binding.expires_ms <= $6";
const OWNER: &str = "SELECT owner FROM owner_binding \
     WHERE kind = $1 AND upstream = $2 AND id = $3 AND expires_ms > $4";
const END: &str = "DELETE FROM owner_binding WHERE kind = $1 AND upstream = $2 AND id = $3";
const PRUNE: &str = "DELETE FROM owner_binding WHERE expires_ms <= $1";

/// What is bound: an MCP session id or a task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    Session,
    Task,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Session => "session",
            BindingKind::Task => "task",
        }
    }
}

/// The shared owner bindings. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct BindingStore {
    pool: Pool,
}

impl BindingStore {
    /// Connects to the store at `url` (`sqlite:` or `postgres:`) and creates its table.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// Binds `id` to `owner` until `expires_ms`, unless a live binding exists. Returns the owner
    /// the id is bound to afterwards: `owner` itself, or the one that was there first.
    pub async fn bind(
        &self,
        kind: BindingKind,
        upstream: &str,
        id: &str,
        owner: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Option<String>, Error> {
        let db = |source| Error::Database { source };
        on_pool!(&self.pool, pool => {
            let sql = if self.pool.postgres().is_some() { BIND_POSTGRES } else { BIND_SQLITE };
            sqlx::query(sql)
                .bind(kind.as_str())
                .bind(upstream)
                .bind(id)
                .bind(owner)
                .bind(expires_ms)
                .bind(now_ms)
                .execute(pool)
                .await
                .map_err(db)?;
        });
        self.owner(kind, upstream, id, now_ms).await
    }

    /// The owner of a live binding of `id`, if any.
    pub async fn owner(
        &self,
        kind: BindingKind,
        upstream: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<String>, Error> {
        let db = |source| Error::Database { source };
        on_pool!(&self.pool, pool => {
            let row = sqlx::query(OWNER)
                .bind(kind.as_str())
                .bind(upstream)
                .bind(id)
                .bind(now_ms)
                .fetch_optional(pool)
                .await
                .map_err(db)?;
            row.map(|r| r.try_get::<String, _>("owner").map_err(db)).transpose()
        })
    }

    /// Ends the binding of `id` (a session's `DELETE`).
    pub async fn end(&self, kind: BindingKind, upstream: &str, id: &str) -> Result<(), Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(END)
                .bind(kind.as_str())
                .bind(upstream)
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|source| Error::Database { source })
        })
    }

    /// Deletes bindings expired at `now_ms`; returns how many.
    pub async fn prune(&self, now_ms: i64) -> Result<u64, Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(PRUNE)
                .bind(now_ms)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|source| Error::Database { source })
        })
    }
}
