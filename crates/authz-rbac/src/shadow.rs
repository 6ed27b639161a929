//! Shadow mode: the candidate policy every gateway replica evaluates beside the live one, kept
//! in one SQL store they share (the audit database). At most one candidate runs at a time;
//! starting another stops the one running. Gateways read [`ShadowStore::current`] every second.

use authz_db::{Pool, on_pool};
use sqlx::Row;

use crate::Error;

/// The store's table: `policy_shadow`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "shadow",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/shadow"),
    postgres: || sqlx::migrate!("../../migrations/postgres/shadow"),
};

/// A candidate policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowCandidate {
    /// Increases with every start: a gateway reloads when it changes.
    pub id: i64,
    /// The candidate policy as Casbin CSV text.
    pub candidate: String,
    /// Where it came from (the files named when it was started).
    pub label: String,
    pub started_by: String,
    pub started_ms: i64,
    pub stopped_by: Option<String>,
    pub stopped_ms: Option<i64>,
}

/// The shared shadow candidate. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct ShadowStore {
    pool: Pool,
}

fn db(source: sqlx::Error) -> Error {
    Error::Database { source }
}

fn read<R>(row: &R) -> Result<ShadowCandidate, Error>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ShadowCandidate {
        id: row.try_get("id").map_err(db)?,
        candidate: row.try_get("candidate").map_err(db)?,
        label: row.try_get("label").map_err(db)?,
        started_by: row.try_get("started_by").map_err(db)?,
        started_ms: row.try_get("started_ms").map_err(db)?,
        stopped_by: row.try_get("stopped_by").map_err(db)?,
        stopped_ms: row.try_get("stopped_ms").map_err(db)?,
    })
}

impl ShadowStore {
    /// Connects to the store at `url` (`sqlite:` or `postgres:`) and creates its table.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// The candidate running now, if any.
    pub async fn current(&self) -> Result<Option<ShadowCandidate>, Error> {
        on_pool!(&self.pool, pool => {
            let row = sqlx::query(
                "SELECT id, candidate, label, started_by, started_ms, stopped_by, stopped_ms \
                 FROM policy_shadow WHERE stopped_ms IS NULL ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .map_err(db)?;
            row.as_ref().map(read).transpose()
        })
    }

    /// Every candidate that ran or runs, newest first.
    pub async fn history(&self) -> Result<Vec<ShadowCandidate>, Error> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, candidate, label, started_by, started_ms, stopped_by, stopped_ms \
                 FROM policy_shadow ORDER BY id DESC",
            )
            .fetch_all(pool)
            .await
            .map_err(db)?;
            rows.iter().map(read).collect()
        })
    }

    /// Starts `candidate` (CSV text the caller validated), stopping the one running; returns
    /// its id.
    pub async fn start(
        &self,
        candidate: &str,
        label: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, Error> {
        self.stop(actor, now_ms).await?;
        on_pool!(&self.pool, pool => {
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM policy_shadow")
                .fetch_one(pool)
                .await
                .and_then(|r| r.try_get("n"))
                .map_err(db)?;
            sqlx::query(
                "INSERT INTO policy_shadow (id, candidate, label, started_by, started_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(next)
            .bind(candidate)
            .bind(label)
            .bind(actor)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(db)?;
            Ok(next)
        })
    }

    /// Stops the candidate running, if any; `true` when one was stopped.
    pub async fn stop(&self, actor: &str, now_ms: i64) -> Result<bool, Error> {
        let n = on_pool!(&self.pool, pool => {
            sqlx::query(
                "UPDATE policy_shadow SET stopped_by = $1, stopped_ms = $2 WHERE stopped_ms IS NULL",
            )
            .bind(actor)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        Ok(n > 0)
    }
}
