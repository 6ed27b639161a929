//! Store operations on hash-chained records: reading a chain's head, writing a batch with its
//! checkpoint in one transaction, following the log, and pruning with anchors.

use authz_types::{AuditFilter, ReasonCode, RecordKind};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection, Postgres, QueryBuilder, Sqlite};

use crate::batch::{
    EncodedRows, PgRows, SQLITE_FULL_CHUNK_SQL, SqliteRows, UNNEST_RETURNING_SQL, UNNEST_SQL,
    sqlite_insert_sql,
};
use authz_db::on_pool;
use std::time::Duration;

use crate::hash::{CheckpointKind, GENESIS_HASH, checkpoint_message};
use crate::keys::SigningKey;
use crate::row::RawRow;
use crate::{AuditStore, Error, Pool, StoredRecord, read_failed, sql, write_failed};

/// A search over the audit log: an [`AuditFilter`] plus the conditions the admin CLI needs and
/// `authz_types::AuditFilter` does not have. Empty fields do not filter.
///
/// With `after_id` set, results are the records with a larger id in insert order (oldest
/// first), for following the log; otherwise newest first like [`AuditStore::query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub tenant: Option<String>,
    /// The JSON-RPC (or HTTP) method, e.g. `tools/call`.
    pub method: Option<String>,
    /// The operation's target, e.g. a tool name.
    pub target: Option<String>,
    pub reason: Option<ReasonCode>,
    /// Decision or outcome records only.
    pub kind: Option<RecordKind>,
    pub chain_id: Option<String>,
    /// Only records with a larger id, oldest first.
    pub after_id: Option<i64>,
}

/// Where a chain stands: its last seq and hash (seq 0 and [`GENESIS_HASH`] for a new chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl ChainHead {
    pub(crate) const NEW: Self = Self {
        seq: 0,
        hash: GENESIS_HASH,
    };
}

/// A checkpoint or anchor about to be written.
#[derive(Debug, Clone)]
pub(crate) struct NewCheckpoint {
    pub kind: CheckpointKind,
    pub chain_id: String,
    pub seq: i64,
    pub hash: [u8; 32],
    pub time_ms: i64,
    pub signature: Option<Vec<u8>>,
}

impl NewCheckpoint {
    pub(crate) fn new(
        kind: CheckpointKind,
        chain_id: &str,
        head: ChainHead,
        time_ms: i64,
        key: Option<&SigningKey>,
    ) -> Self {
        let signature = key.map(|k| {
            k.sign(&checkpoint_message(
                kind, chain_id, head.seq, &head.hash, time_ms,
            ))
        });
        Self {
            kind,
            chain_id: chain_id.to_owned(),
            seq: head.seq,
            hash: head.hash,
            time_ms,
            signature,
        }
    }
}

/// A connection the writer keeps for its batches. This saves the pool's liveness ping per
/// batch, and on SQLite keeps the connection's page cache (a connection discards it whenever
/// another connection has written). The gain was within the noise of the benchmark here; it
/// costs one pooled connection.
#[derive(Debug)]
pub(crate) enum WriterConn {
    Sqlite(PoolConnection<Sqlite>),
    /// `single_statements`: whether a batch without a checkpoint may be written as one
    /// statement outside a transaction (see [`AuditStore::writer_conn`]).
    Postgres {
        conn: PoolConnection<Postgres>,
        single_statements: bool,
    },
}

impl WriterConn {
    /// Whether the connection still answers (used before reusing one that sat idle).
    pub(crate) async fn ping(&mut self) -> bool {
        match self {
            Self::Sqlite(c) => c.ping().await.is_ok(),
            Self::Postgres { conn, .. } => conn.ping().await.is_ok(),
        }
    }

    /// Makes sure the connection is closed instead of going back to the pool when dropped: it
    /// failed or was cancelled mid-transaction, so its state is unknown.
    pub(crate) fn discard(mut self) {
        match &mut self {
            Self::Sqlite(c) => c.close_on_drop(),
            Self::Postgres { conn, .. } => conn.close_on_drop(),
        }
    }
}

/// How much longer than its commit timeout the writer waits for a Postgres batch, so that the
/// server's `statement_timeout` fires first (see [`AuditStore::writer_conn`]).
pub(crate) const SERVER_TIMEOUT_GRACE: Duration = Duration::from_millis(1000);

/// Whether `error` is Postgres cancelling a statement (`statement_timeout`, SQLSTATE 57014).
pub(crate) fn is_query_canceled(error: &Error) -> bool {
    matches!(error, Error::Write { source: sqlx::Error::Database(e) } if e.code().as_deref() == Some("57014"))
}

/// What [`AuditStore::prune_before`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Chained records deleted, over all chains.
    pub chained_deleted: u64,
    /// Unchained records (no `chain_id`) deleted.
    pub unchained_deleted: u64,
    /// The anchors written: (chain id, seq of the last deleted record).
    pub anchors: Vec<(String, i64)>,
}

/// A stored hash that must be 32 bytes.
pub(crate) fn hash32(bytes: &[u8], id: i64, field: &'static str) -> Result<[u8; 32], Error> {
    bytes.try_into().map_err(|_| Error::Corrupt { id, field })
}

impl AuditStore {
    /// The head of `chain_id`: its newest record, or the newest anchor if pruning removed every
    /// record, or a new chain.
    pub(crate) async fn chain_head(&self, chain_id: &str) -> Result<ChainHead, Error> {
        type SeqHash = Option<(i64, Vec<u8>)>;
        let (row, anchor): (SeqHash, SeqHash) = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new("SELECT seq, hash FROM audit_records WHERE chain_id = ");
            qb.push_bind(chain_id);
            qb.push(" ORDER BY seq DESC LIMIT 1");
            let row = qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)?;
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT seq, hash FROM audit_checkpoints WHERE kind = 'anchor' AND chain_id = ",
            );
            qb.push_bind(chain_id);
            qb.push(" ORDER BY seq DESC LIMIT 1");
            let anchor = qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)?;
            (row, anchor)
        });
        let best = match (row, anchor) {
            (Some(r), Some(a)) => Some(if a.0 > r.0 { a } else { r }),
            (r, a) => r.or(a),
        };
        match best {
            None => Ok(ChainHead::NEW),
            Some((seq, hash)) => Ok(ChainHead {
                seq,
                hash: hash32(&hash, seq, "hash")?,
            }),
        }
    }

    /// The seq and time of the newest checkpoint of `chain_id`, if any.
    pub(crate) async fn last_checkpoint(
        &self,
        chain_id: &str,
    ) -> Result<Option<(i64, i64)>, Error> {
        on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT seq, time_ms FROM audit_checkpoints WHERE kind = 'checkpoint' AND chain_id = ",
            );
            qb.push_bind(chain_id);
            qb.push(" ORDER BY seq DESC LIMIT 1");
            qb.build_query_as().fetch_optional(pool).await.map_err(read_failed)
        })
    }

    /// A connection from the pool for the writer to keep.
    ///
    /// On Postgres the writer would rather not spend two round trips on `BEGIN` and `COMMIT`
    /// per batch, but a lone statement whose client gave up still commits when it finishes,
    /// which a transaction that never got its `COMMIT` does not. So the server enforces the
    /// commit timeout itself: the connection gets `statement_timeout = commit_timeout`, the
    /// writer waits [`SERVER_TIMEOUT_GRACE`] longer than that for a single-statement batch,
    /// and the server's cancellation (reported as a commit timeout) comes first: a batch the
    /// writer reports as failed was not committed. Only a connection that stops answering
    /// altogether leaves that open, as it does for a `COMMIT` in flight. The connection is
    /// closed instead of going back to the pool, so the setting stays with the writer. If the
    /// server refuses the setting, every batch is a transaction.
    pub(crate) async fn writer_conn(&self, commit_timeout: Duration) -> Result<WriterConn, Error> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await.map_err(write_failed)?;
                // The writer's background checkpointer copies the WAL back; the automatic
                // checkpoint (default at 1000 pages) stays as a safety net at 16,384 pages
                // (64 MiB of 4 KiB pages) should it fall behind. Closed instead of going back
                // to the pool, so the setting stays with the writer.
                conn.close_on_drop();
                sqlx::raw_sql("PRAGMA wal_autocheckpoint = 16384")
                    .execute(&mut *conn)
                    .await
                    .map_err(write_failed)?;
                Ok(WriterConn::Sqlite(conn))
            }
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(write_failed)?;
                conn.close_on_drop();
                // A number formatted here, not caller text.
                let set = sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET statement_timeout = {}",
                    commit_timeout.as_millis().max(1)
                )))
                .execute(&mut *conn)
                .await;
                if let Err(error) = &set {
                    tracing::warn!(%error, "statement_timeout refused; audit batches stay in transactions");
                }
                Ok(WriterConn::Postgres {
                    conn,
                    single_statements: set.is_ok(),
                })
            }
        }
    }

    /// Writes a batch of chained rows (encoded for this backend, `first_seq` onwards) and an
    /// optional checkpoint atomically on `conn`: on SQLite in multi-row inserts in one
    /// transaction, on Postgres in one `unnest` insert (in a transaction with the checkpoint).
    /// With `want_ids`, returns the id of each row in chain order; otherwise an empty list.
    pub(crate) async fn write_chained(
        conn: &mut WriterConn,
        rows: EncodedRows,
        first_seq: i64,
        want_ids: bool,
        checkpoint: Option<&NewCheckpoint>,
    ) -> Result<Vec<i64>, Error> {
        let mut ids = Vec::with_capacity(if want_ids { rows.len() } else { 0 });
        match (conn, rows) {
            (WriterConn::Sqlite(conn), EncodedRows::Sqlite(rows)) => {
                // Always a transaction: sqlx's SQLite worker finishes a statement whose caller
                // gave up, and a lone statement would then commit after its timeout.
                let mut tx = conn
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(write_failed)?;
                sqlite_insert(&mut tx, rows, want_ids, &mut ids).await?;
                if let Some(cp) = checkpoint {
                    insert_checkpoint::<Sqlite>(cp)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(write_failed)?;
                }
                tx.commit().await.map_err(write_failed)?;
            }
            (
                WriterConn::Postgres {
                    conn,
                    single_statements,
                },
                EncodedRows::Postgres(mut chunks),
            ) => {
                // A batch of one chunk without a checkpoint is one statement: atomic, and
                // durable when it returns, on its own. `BEGIN` and `COMMIT` were two round trips
                // per batch (see `writer_conn` for why a timeout cannot leave it to commit later).
                if checkpoint.is_none() && *single_statements && chunks.len() == 1 {
                    if let Some(rows) = chunks.pop() {
                        pg_insert(conn, rows, first_seq, want_ids, &mut ids).await?;
                    }
                } else {
                    let mut tx = conn.begin().await.map_err(write_failed)?;
                    let mut seq = first_seq;
                    for rows in chunks {
                        let n = i64::try_from(rows.rows).unwrap_or(i64::MAX);
                        pg_insert(&mut tx, rows, seq, want_ids, &mut ids).await?;
                        seq += n;
                    }
                    if let Some(cp) = checkpoint {
                        insert_checkpoint::<Postgres>(cp)
                            .build()
                            .execute(&mut *tx)
                            .await
                            .map_err(write_failed)?;
                    }
                    tx.commit().await.map_err(write_failed)?;
                }
            }
            _ => unreachable!("a writer encodes its rows for the backend of its connection"),
        }
        Ok(ids)
    }

    /// SQLite: copies what the WAL holds back into the database file without blocking writers
    /// (`PRAGMA wal_checkpoint(PASSIVE)`), on a pooled connection. Postgres: nothing to do.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), Error> {
        if let Pool::Sqlite(pool) = &self.pool {
            sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await
                .map_err(|source| Error::Write { source })?;
        }
        Ok(())
    }

    /// Writes one checkpoint on its own.
    pub(crate) async fn write_checkpoint(&self, cp: &NewCheckpoint) -> Result<(), Error> {
        on_pool!(self.pool, pool => {
            insert_checkpoint::<DB>(cp).build().execute(pool).await.map_err(write_failed)?;
        });
        Ok(())
    }

    /// At most `limit` records (capped at 10,000) with an id larger than `last_id`, oldest
    /// first: call again with the last id returned to follow the log (`tail -f`). Ids only
    /// grow, but a record of a transaction that commits late can get a smaller id than one
    /// already returned; a follower that must see every record re-reads a short window behind
    /// its last id.
    pub async fn query_after_id(
        &self,
        last_id: i64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, Error> {
        self.search(&AuditQuery {
            filter: AuditFilter {
                limit: Some(limit),
                ..Default::default()
            },
            after_id: Some(last_id),
            ..Default::default()
        })
        .await
    }

    /// Records matching `query`: newest first, or oldest first after `query.after_id`; at most
    /// `query.filter.limit` (default 100, capped at 10,000).
    pub async fn search(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, Error> {
        let raw: Vec<RawRow> = on_pool!(self.pool, pool => {
            sql::select_query::<DB>(query)
                .build_query_as::<RawRow>()
                .fetch_all(pool)
                .await
                .map_err(read_failed)?
        });
        raw.into_iter().map(RawRow::into_stored).collect()
    }

    /// How many records match `query` (its limit is ignored).
    pub async fn count_matching(&self, query: &AuditQuery) -> Result<u64, Error> {
        let n: i64 = on_pool!(self.pool, pool => {
            sql::count_query::<DB>(query)
                .build_query_scalar()
                .fetch_one(pool)
                .await
                .map_err(read_failed)?
        });
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Deletes records older than `before_ms` (Unix milliseconds), keeping every chain
    /// verifiable.
    ///
    /// Per chain, only a prefix is deleted: the records up to (not including) the first one
    /// with `time_ms >= before_ms`, because records of one chain are not strictly ordered by
    /// time. In the same transaction, an anchor (`kind = 'anchor'` in `audit_checkpoints`) is
    /// written with the seq and hash of the last deleted record, signed with `key` when given,
    /// and the checkpoints it supersedes are deleted; [`verify`](crate::verify) then starts the
    /// chain from the anchor. Verifying with a public key requires signed anchors, so prune
    /// with the writer's key when checkpoints are signed. Unchained records (written without a
    /// chain) older than `before_ms` are deleted as well.
    pub async fn prune_before(
        &self,
        before_ms: i64,
        key: Option<&SigningKey>,
    ) -> Result<PruneReport, Error> {
        let mut report = PruneReport::default();
        let chains: Vec<String> = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(
                "SELECT DISTINCT chain_id FROM audit_records WHERE chain_id IS NOT NULL AND time_ms < ",
            );
            qb.push_bind(before_ms);
            qb.build_query_scalar().fetch_all(pool).await.map_err(read_failed)?
        });
        for chain_id in chains {
            let pruned = on_pool!(self.pool, pool => {
                let mut tx = pool.begin_with(BEGIN).await.map_err(write_failed)?;
                let mut qb = QueryBuilder::<DB>::new(
                    "SELECT MIN(seq) FROM audit_records WHERE chain_id = ",
                );
                qb.push_bind(chain_id.as_str());
                qb.push(" AND time_ms >= ");
                qb.push_bind(before_ms);
                let first_kept: Option<i64> =
                    qb.build_query_scalar().fetch_one(&mut *tx).await.map_err(read_failed)?;
                let mut qb = QueryBuilder::<DB>::new("SELECT seq, hash FROM audit_records WHERE chain_id = ");
                qb.push_bind(chain_id.as_str());
                if let Some(first_kept) = first_kept {
                    qb.push(" AND seq < ");
                    qb.push_bind(first_kept);
                }
                qb.push(" ORDER BY seq DESC LIMIT 1");
                let last: Option<(i64, Vec<u8>)> =
                    qb.build_query_as().fetch_optional(&mut *tx).await.map_err(read_failed)?;
                match last {
                    // The oldest record of the chain is not old enough: nothing to prune.
                    None => None,
                    Some((seq, hash)) => {
                        let head = ChainHead { seq, hash: hash32(&hash, seq, "hash")? };
                        let anchor = NewCheckpoint::new(
                            CheckpointKind::Anchor,
                            &chain_id,
                            head,
                            authz_types::now_unix_ms(),
                            key,
                        );
                        insert_checkpoint::<DB>(&anchor).build().execute(&mut *tx).await.map_err(write_failed)?;
                        let mut qb = QueryBuilder::<DB>::new("DELETE FROM audit_records WHERE chain_id = ");
                        qb.push_bind(chain_id.as_str());
                        qb.push(" AND seq <= ");
                        qb.push_bind(seq);
                        let deleted = qb.build().execute(&mut *tx).await.map_err(write_failed)?.rows_affected();
                        let mut qb = QueryBuilder::<DB>::new(
                            "DELETE FROM audit_checkpoints WHERE kind = 'checkpoint' AND chain_id = ",
                        );
                        qb.push_bind(chain_id.as_str());
                        qb.push(" AND seq <= ");
                        qb.push_bind(seq);
                        qb.build().execute(&mut *tx).await.map_err(write_failed)?;
                        tx.commit().await.map_err(write_failed)?;
                        Some((seq, deleted))
                    }
                }
            });
            if let Some((seq, deleted)) = pruned {
                tracing::info!(chain_id = %chain_id, seq, deleted, "pruned audit chain up to an anchor");
                report.chained_deleted += deleted;
                report.anchors.push((chain_id, seq));
            }
        }
        report.unchained_deleted = on_pool!(self.pool, pool => {
            let mut qb = QueryBuilder::<DB>::new(
                "DELETE FROM audit_records WHERE chain_id IS NULL AND time_ms < ",
            );
            qb.push_bind(before_ms);
            qb.build().execute(pool).await.map_err(write_failed)?.rows_affected()
        });
        Ok(report)
    }
}

/// The multi-row inserts of `rows` on SQLite; with `want_ids`, their ids are appended to `ids`.
async fn sqlite_insert(
    conn: &mut SqliteConnection,
    rows: SqliteRows,
    want_ids: bool,
    ids: &mut Vec<i64>,
) -> Result<(), Error> {
    for chunk in rows.chunks {
        // No `RETURNING`: it streams every row back from sqlx's SQLite worker thread
        // (allocations and a message per row). While a statement or a `BEGIN IMMEDIATE`
        // transaction runs nobody else inserts, and an AUTOINCREMENT table gives the rows of one
        // multi-row insert consecutive ids in VALUES order, so they follow from the last one.
        let n = chunk.rows;
        let done = if n == sql::ROWS_PER_INSERT {
            sqlx::query_with(SQLITE_FULL_CHUNK_SQL.as_str(), chunk.args)
                .execute(&mut *conn)
                .await
        } else {
            sqlx::query_with(AssertSqlSafe(sqlite_insert_sql(n)), chunk.args)
                .execute(&mut *conn)
                .await
        }
        .map_err(write_failed)?;
        let last = done.last_insert_rowid();
        if done.rows_affected() != n as u64 {
            return Err(Error::Corrupt {
                id: last,
                field: "id",
            });
        }
        if want_ids {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            ids.extend(last - n + 1..=last);
        }
    }
    Ok(())
}

/// The `unnest` insert of `rows` (from `first_seq` on) on Postgres; with `want_ids`, their ids
/// in chain order are appended to `ids`.
async fn pg_insert(
    conn: &mut PgConnection,
    rows: PgRows,
    first_seq: i64,
    want_ids: bool,
    ids: &mut Vec<i64>,
) -> Result<(), Error> {
    let expected = rows.rows;
    let args = rows.into_arguments()?;
    if !want_ids {
        let done = sqlx::query_with(UNNEST_SQL.as_str(), args)
            .execute(conn)
            .await
            .map_err(write_failed)?;
        if done.rows_affected() != expected as u64 {
            return Err(write_failed(sqlx::Error::Protocol(format!(
                "the insert stored {} rows of {expected}",
                done.rows_affected()
            ))));
        }
        return Ok(());
    }
    let returned: Vec<(i64, i64)> = sqlx::query_as_with(UNNEST_RETURNING_SQL.as_str(), args)
        .fetch_all(conn)
        .await
        .map_err(write_failed)?;
    let start = ids.len();
    ids.resize(start + expected, 0);
    let mut placed = 0;
    for (id, seq) in returned {
        let slot = usize::try_from(seq - first_seq)
            .ok()
            .filter(|&i| i < expected)
            .and_then(|i| ids.get_mut(start + i))
            .ok_or(Error::Corrupt { id, field: "seq" })?;
        *slot = id;
        placed += 1;
    }
    if placed != expected {
        return Err(write_failed(sqlx::Error::Protocol(format!(
            "the insert returned {placed} rows of {expected}"
        ))));
    }
    Ok(())
}

fn insert_checkpoint<DB>(cp: &NewCheckpoint) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: Default,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a [u8]>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO audit_checkpoints (kind, chain_id, seq, hash, time_ms, signature) VALUES (",
    );
    let mut values = qb.separated(", ");
    values
        .push_bind(cp.kind.as_str())
        .push_bind(cp.chain_id.as_str())
        .push_bind(cp.seq)
        .push_bind(&cp.hash[..])
        .push_bind(cp.time_ms)
        .push_bind(cp.signature.as_deref());
    qb.push(")");
    qb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::push_chunked;
    use crate::row::{ChainedRow, Columns};
    use authz_types::AuditRecord;

    /// Rows 1..=1203 of chain `c`, each with 300 bytes of arguments.
    fn records() -> Vec<AuditRecord> {
        (1..=1203)
            .map(|i| {
                let mut r = AuditRecord::unauthenticated(
                    format!("r{i}"),
                    "u",
                    "m",
                    ReasonCode::PolicyAllow,
                    200,
                );
                r.arguments = Some("x".repeat(300));
                r
            })
            .collect()
    }

    /// A batch that needs several statements (SQLite: more than 900 rows; Postgres: arrays
    /// over a small cap) is written whole, in seq order, with an id per row.
    async fn several_chunks_are_written_in_one_batch(store: &AuditStore, pg_cap: usize) {
        let records = records();
        let mut rows = EncodedRows::new(store.backend());
        for (record, seq) in records.iter().zip(1..) {
            let row = ChainedRow {
                columns: Columns::new(record).expect("columns"),
                chain_id: "c",
                seq,
                prev_hash: [0; 32],
                hash: [1; 32],
            };
            match &mut rows {
                EncodedRows::Postgres(chunks) => push_chunked(chunks, &row, pg_cap).expect("push"),
                rows => rows.push(&row).expect("push"),
            }
        }
        let chunks = match &rows {
            EncodedRows::Sqlite(r) => r.chunks.len(),
            EncodedRows::Postgres(c) => c.len(),
        };
        assert!(chunks > 1, "{chunks} chunks");
        let mut conn = store
            .writer_conn(Duration::from_secs(30))
            .await
            .expect("conn");
        let ids = AuditStore::write_chained(&mut conn, rows, 1, true, None)
            .await
            .expect("write");
        assert_eq!(ids.len(), records.len());
        let stored = store
            .search(&AuditQuery {
                filter: AuditFilter {
                    limit: Some(10_000),
                    ..Default::default()
                },
                chain_id: Some("c".into()),
                after_id: Some(0),
                ..Default::default()
            })
            .await
            .expect("search");
        assert_eq!(stored.len(), records.len());
        for ((found, id), record) in stored.iter().zip(&ids).zip(&records) {
            assert_eq!(found.id, *id);
            assert_eq!(found.record, *record);
        }
        assert_eq!(store.chain_head("c").await.expect("head").seq, 1203);
    }

    #[tokio::test]
    async fn several_chunks_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("a.db").display());
        let store = AuditStore::connect(&url).await.expect("connect");
        several_chunks_are_written_in_one_batch(&store, usize::MAX).await;
        store.close().await;
    }

    #[tokio::test]
    #[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
    async fn several_chunks_on_postgres() {
        let db = authz_test_support::TestDatabase::postgres().await;
        let store = AuditStore::connect(db.url()).await.expect("connect");
        // About 100 rows of ~330 bytes per chunk: a dozen statements.
        several_chunks_are_written_in_one_batch(&store, 32 << 10).await;
        store.close().await;
    }
}
