//! The quota ledger: token buckets shared by gateway replicas through one SQL store (SQLite
//! for replicas on one host, Postgres across hosts).
//!
//! A replica enforces its quotas from buckets in memory and, every few hundred milliseconds,
//! exchanges with the ledger: it hands over what it took from each bucket since the last
//! exchange ([`Spend`]) and reads back every bucket any replica changed since then ([`Level`]).
//! Applying a spend refills the stored bucket for the time since it was last written, up to its
//! burst, then takes the spend, never below zero, in one statement per bucket.
//!
//! The ledger is approximate by design: replicas see each other's spending one exchange late.
//! Within one exchange interval, each of N replicas may admit up to what the bucket held at the
//! last exchange, so at most (N − 1) times that (never more than the burst) is admitted beyond
//! the quota per interval; when a bucket is empty that is (N − 1) × rate × interval.

use authz_db::{Pool, on_pool};
use sqlx::Row;

use crate::Error;

/// The ledger's table: `quota_bucket`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "quota",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/quota"),
    postgres: || sqlx::migrate!("../../migrations/postgres/quota"),
};

/// Millionths of a token per token.
const MICRO: f64 = 1_000_000.0;

// Refill for the time since the row was written (in floating point: the product of a day in
// milliseconds and a large rate does not fit an integer), cap at the burst, take the spend.
// $1 quota, $2 key, $3 burst, $4 taken, $5 now_ms, $6 amount per period, $7 period_ms.
const SPEND_POSTGRES: &str = "INSERT INTO quota_bucket AS b (quota, key, micro, updated_ms) \
     VALUES ($1, $2, GREATEST(0, ($3::float8 - $4::float8) * 1e6)::bigint, $5) \
     ON CONFLICT (quota, key) DO UPDATE SET \
     micro = GREATEST(0, LEAST($3::float8 * 1e6, b.micro::float8 \
         + GREATEST(0, $5 - b.updated_ms)::float8 * $6::float8 * 1e6 / $7::float8) \
         - $4::float8 * 1e6)::bigint, \
     updated_ms = GREATEST(b.updated_ms, $5)";
const SPEND_SQLITE: &str = "INSERT INTO quota_bucket (quota, key, micro, updated_ms) \
     VALUES ($1, $2, CAST(MAX(0, ($3 * 1.0 - $4) * 1e6) AS INTEGER), $5) \
     ON CONFLICT (quota, key) DO UPDATE SET \
     micro = CAST(MAX(0, MIN($3 * 1e6, quota_bucket.micro \
         + MAX(0, $5 - quota_bucket.updated_ms) * 1.0 * $6 * 1e6 / $7) - $4 * 1e6) AS INTEGER), \
     updated_ms = MAX(quota_bucket.updated_ms, $5)";
const CHANGED_SINCE: &str =
    "SELECT quota, key, micro, updated_ms FROM quota_bucket WHERE updated_ms >= $1";
const PRUNE: &str = "DELETE FROM quota_bucket WHERE updated_ms < $1";

/// What one replica took from one bucket since its last exchange, and the bucket's rate (the
/// same quota file on every replica gives the same rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub quota: String,
    pub key: String,
    /// Whole tokens taken.
    pub taken: u64,
    /// Tokens gained per `period_ms`.
    pub amount: u64,
    pub period_ms: u64,
    pub burst: u64,
}

/// A bucket as stored: millionths of a token as of `updated_ms` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub quota: String,
    pub key: String,
    pub micro: u64,
    pub updated_ms: i64,
}

/// The shared quota ledger. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct QuotaLedger {
    pool: Pool,
}

impl QuotaLedger {
    /// Connects to the store at `url` (`sqlite:` or `postgres:`) and creates its table.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = authz_db::connect(url, &authz_db::PoolOptions::low_traffic(), &SCHEMA)
            .await
            .map_err(|source| Error::Open { source })?;
        Ok(Self { pool })
    }

    /// Applies `spends` at `now_ms` (all or none) and returns every bucket written at or after
    /// `since_ms`, by any replica.
    pub async fn exchange(
        &self,
        spends: &[Spend],
        now_ms: i64,
        since_ms: i64,
    ) -> Result<Vec<Level>, Error> {
        let db = |source| Error::Database { source };
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        on_pool!(&self.pool, pool => {
            let spend_sql = if self.pool.postgres().is_some() { SPEND_POSTGRES } else { SPEND_SQLITE };
            if !spends.is_empty() {
                let mut tx = pool.begin().await.map_err(db)?;
                for s in spends {
                    sqlx::query(spend_sql)
                        .bind(&s.quota)
                        .bind(&s.key)
                        .bind(as_i64(s.burst))
                        .bind(as_i64(s.taken))
                        .bind(now_ms)
                        .bind(as_i64(s.amount))
                        .bind(as_i64(s.period_ms.max(1)))
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
            }
            let rows = sqlx::query(CHANGED_SINCE)
                .bind(since_ms)
                .fetch_all(pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|row| {
                    let micro: i64 = row.try_get("micro").map_err(db)?;
                    Ok(Level {
                        quota: row.try_get("quota").map_err(db)?,
                        key: row.try_get("key").map_err(db)?,
                        micro: u64::try_from(micro).unwrap_or(0),
                        updated_ms: row.try_get("updated_ms").map_err(db)?,
                    })
                })
                .collect()
        })
    }

    /// Deletes buckets not written since `before_ms` (a bucket unused that long has refilled;
    /// a replica that meets its key again starts it full, as the ledger would).
    pub async fn prune(&self, before_ms: i64) -> Result<u64, Error> {
        on_pool!(&self.pool, pool => {
            sqlx::query(PRUNE)
                .bind(before_ms)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|source| Error::Database { source })
        })
    }
}

/// The tokens in `micro` millionths (for tests and messages).
pub fn tokens(micro: u64) -> f64 {
    micro as f64 / MICRO
}
