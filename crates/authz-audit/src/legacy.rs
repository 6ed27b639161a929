//! Rows outside any chain, as a database from before the chain (migration 0003) holds: only with
//! the test-only `legacy-rows` feature, for the tests of legacy rows and the ingest benchmark's
//! baseline. The gateway never writes them.

use authz_db::Pool;
use authz_types::AuditRecord;
use sqlx::{Database, Encode, Postgres, QueryBuilder, Sqlite, Type};

use crate::row::{Columns, HASH_VERSION_LITERAL, INSERT_COLUMNS};
use crate::sql::ROWS_PER_INSERT;
use crate::{AuditStore, Error, write_failed};

impl AuditStore {
    /// Appends one record without a chain, as a database from before migration 0003 holds it,
    /// and returns its id once it is committed. For tests of legacy rows only.
    pub async fn append_unchained(&self, record: &AuditRecord) -> Result<i64, Error> {
        let rows = [Columns::new(record)?];
        let id = match &self.pool {
            Pool::Sqlite(pool) => {
                insert::<Sqlite>(&rows, true)
                    .build_query_scalar::<i64>()
                    .fetch_one(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                insert::<Postgres>(&rows, true)
                    .build_query_scalar::<i64>()
                    .fetch_one(pool)
                    .await
            }
        }
        .map_err(write_failed)?;
        Ok(id)
    }

    /// Appends many records without a chain in one transaction, with multi-row inserts of at
    /// most 900 rows each; either every record is committed or none is. For tests and the
    /// ingest benchmark's baseline only.
    pub async fn append_unchained_batch(&self, records: &[AuditRecord]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = records
            .iter()
            .map(Columns::new)
            .collect::<Result<Vec<_>, _>>()?;
        match &self.pool {
            Pool::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so a concurrent writer makes this wait
                // (busy timeout) instead of failing when a deferred transaction upgrades.
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(write_failed)?;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    insert::<Sqlite>(chunk, false)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(write_failed)?;
                }
                tx.commit().await.map_err(write_failed)?;
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(write_failed)?;
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    insert::<Postgres>(chunk, false)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(write_failed)?;
                }
                tx.commit().await.map_err(write_failed)?;
            }
        }
        Ok(())
    }
}

/// `INSERT INTO audit_records (...) VALUES (...), (...)` for `rows`, optionally `RETURNING id`.
fn insert<'a, DB>(rows: &'a [Columns<'a>], returning_id: bool) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!("INSERT INTO audit_records ({INSERT_COLUMNS}) "));
    qb.push_values(rows, |mut row, c| {
        bind_columns(&mut row, c);
    });
    if returning_id {
        qb.push(" RETURNING id");
    }
    qb
}

fn bind_columns<'a, DB>(
    row: &mut sqlx::query_builder::Separated<'_, DB, &'static str>,
    c: &'a Columns<'a>,
) where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
{
    row.push_bind(c.time_ms)
        .push_bind(c.request_id)
        .push_bind(c.session_id)
        .push_bind(c.tenant)
        .push_bind(c.subject)
        .push_bind(c.issuer)
        .push_bind(c.client_id)
        .push_bind(c.actors.as_str())
        .push_bind(c.token_id)
        .push_bind(c.scopes.as_str())
        .push_bind(c.roles.as_str())
        .push_bind(c.upstream)
        .push_bind(c.method)
        .push_bind(c.target)
        .push_bind(c.decision)
        .push_bind(c.reason)
        .push_bind(c.matched_rule)
        .push_bind(c.policy_revision)
        .push_bind(c.http_status)
        .push_bind(c.jsonrpc_error)
        .push_bind(c.kind)
        .push_bind(c.trace_id)
        .push_bind(c.upstream_status)
        .push_bind(c.upstream_latency_ms)
        .push_bind(c.outcome)
        .push_bind(c.args_digest)
        .push_bind(c.arguments)
        .push_bind(c.shown.as_str())
        .push_bind(c.client_addr)
        .push_bind(c.repeat_count)
        .push_bind(c.first_time_ms)
        .push_bind(c.first_round_request_id)
        .push_bind(c.shadow)
        .push(HASH_VERSION_LITERAL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::COLUMN_COUNT;

    #[test]
    fn legacy_rows_carry_the_current_encoding_version_as_a_literal() {
        // Every row carries the current encoding version as a literal, not a bind.
        let record = authz_types::AuditRecord::unauthenticated(
            "r",
            "u",
            "m",
            authz_types::ReasonCode::TokenMissing,
            401,
        );
        let cols = [Columns::new(&record).expect("encode")];
        let insert = insert::<Sqlite>(&cols, false).into_string();
        assert!(insert.ends_with(", 5)"), "{insert}");
        assert_eq!(insert.matches('?').count(), COLUMN_COUNT);
        assert_eq!(
            INSERT_COLUMNS.split(',').count(),
            COLUMN_COUNT + 1,
            "hash_version is the one column not bound"
        );
    }
}
