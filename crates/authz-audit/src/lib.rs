//! SQL audit store of the MCP authorization gateway: SQLite (embedded default) or Postgres.
//!
//! Every decision the gateway makes, allowed or denied, becomes one [`AuditRecord`] row in the
//! `audit_records` table. A durable append returns only once the row is committed, and a
//! record that cannot be written is an `Err`, never dropped silently, so a caller can fail
//! closed.
//!
//! # Storage
//!
//! One column per [`AuditRecord`] field plus an autoincrementing `id`. The lists (`actors`,
//! `scopes`, `roles`, `shown`) are stored as JSON arrays of strings in TEXT columns (identical
//! text on both backends, order kept); `decision`, `reason` and `kind` as the stable strings of
//! [`Effect::as_str`](authz_types::Effect::as_str), [`ReasonCode::as_str`](authz_types::ReasonCode::as_str)
//! and [`RecordKind::as_str`](authz_types::RecordKind::as_str). A forwarded request has two
//! rows with its request id: the decision, written before forwarding, and the outcome
//! (upstream status and latency, what a list call showed), written after. A stored value
//! that does not parse back is reported as [`Error::Corrupt`]. The schema lives in
//! `migrations/{sqlite,postgres}/audit` at the workspace root and creates only the audit tables
//! (`audit_records`, `audit_checkpoints`, and `audit_ship_cursors` for [`Shipper`]);
//! [`AuditStore::connect`] applies it.
//!
//! The store connects through [`authz_db::connect`]: SQLite in WAL mode with `synchronous=FULL`
//! (a committed record survives power loss), a busy timeout and foreign keys on; Postgres by a
//! `postgres://` URL; the first connection fails fast with its real cause. Postgres cannot store the NUL character in text, so a
//! record containing one is refused with [`Error::Write`] there.
//!
//! # Writing: the group-commit writer
//!
//! The gateway writes through an [`AuditWriter`]: a task that owns a queue and commits records
//! in batches (one atomic write per batch), in durable mode (the caller waits for the commit)
//! or buffered mode (the caller waits only for the queue). See the [`AuditWriter`] docs for
//! the failure and retry policy. There is no other way to write a record in a normal build:
//! rows written outside a chain would weaken the trail. With the `legacy-rows` feature (tests
//! and benchmarks only), `AuditStore::append_unchained` and `append_unchained_batch` write rows
//! without a chain, as a database from before the chain (migration 0003) holds.
//!
//! # Shipping
//!
//! A [`Shipper`] exports the chained records to a [`Sink`] (the gateway's are an HTTP JSON-lines
//! collector and OTLP logs) at least once, in seq order per chain, resumable from a cursor kept
//! in the store and shared by replicas through leases; see the `ship` module's notes on the
//! window in which a record can arrive twice. It only reads the store, so it never holds up a
//! writer.
//!
//! # Tamper evidence
//!
//! Every writer lane has its own hash chain (`chain_id`, one per gateway replica, plus `~1`,
//! `~2`, ... for further lanes; see [`WriterConfig::lanes`]): each record
//! carries its `seq` (gap-free), the previous record's hash and its own hash
//! ([`record_hash`], a versioned, length-prefixed encoding documented there) with the
//! encoding's version ([`HashVersion`]; rows chained before the record grew keep their older
//! version, 1 to 4, and still verify). Checkpoints
//! signed with an Ed25519 [`SigningKey`] are written every K records or T seconds; [`verify`]
//! walks the chains and names the first edited, deleted, inserted or reordered record or bad
//! checkpoint. [`AuditStore::prune_before`] deletes old records behind an anchor so the rest
//! still verifies.
//!
//! # Example
//!
//! ```
//! use authz_audit::{AuditStore, AuditWriter, Backend, SigningKey, WriterConfig, verify};
//! use authz_types::{AuditFilter, AuditRecord, ReasonCode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}?mode=rwc", dir.path().join("audit.db").display());
//! let store = AuditStore::connect(&url).await?;
//! assert_eq!(store.backend(), Backend::Sqlite);
//!
//! // In production the seed comes from a file: `SigningKey::from_seed_file(path)`.
//! let key = SigningKey::from_seed(&SigningKey::generate_seed()?)?;
//! let public = key.public_key();
//! let config = WriterConfig { chain_id: Some("gateway-1".into()), ..Default::default() };
//! let writer = AuditWriter::spawn(store.clone(), config, Some(key)).await?;
//!
//! let record = AuditRecord::unauthenticated("req-1", "tickets", "tools/call", ReasonCode::TokenMissing, 401);
//! let id = writer.append_durable(record.clone()).await?; // committed when this returns
//! writer.append_buffered(record.clone()).await?;         // queued when this returns
//! let stats = writer.shutdown().await?;                  // drains, commits, checkpoints
//! assert_eq!(stats.committed, 2);
//!
//! let found = store.query(&AuditFilter { request_id: Some("req-1".into()), ..Default::default() }).await?;
//! assert_eq!(found.len(), 2);
//! assert_eq!(found[1].id, id);
//! assert_eq!(found[1].record, record);
//!
//! let report = verify(&store, None, Some(&public)).await?;
//! assert!(report.is_intact());
//! assert_eq!(report.chains[0].signed_through, Some(2));
//! # Ok(())
//! # }
//! ```

mod batch;
mod chained;
mod hash;
mod keys;
#[cfg(feature = "legacy-rows")]
mod legacy;
mod row;
mod ship;
mod sql;
mod verify;
mod writer;

use std::time::Duration;

use authz_db::Pool;
use authz_types::{AuditFilter, AuditRecord};
use serde::{Deserialize, Serialize};

pub use authz_db::{Backend, redact_url};
pub use chained::{AuditQuery, PruneReport};
pub use hash::{CheckpointKind, GENESIS_HASH, HashVersion, record_hash, record_hash_with};
pub use keys::{PublicKey, SigningKey, write_seed_file};
pub use ship::{ShipCursor, ShipStart, ShipStatus, ShippedRecord, Shipper, ShipperConfig, Sink};
pub use verify::{ChainReport, Finding, Tamper, VerifyReport, verify};
pub use writer::{AuditWriter, TryAppend, WriterConfig, WriterStats};

/// Errors of the audit store. Messages never contain a password: URLs appear redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not one this store understands.
    #[error("invalid audit store URL {url_redacted}: {reason}")]
    InvalidUrl {
        url_redacted: String,
        reason: String,
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the audit store at {url_redacted}")]
    Connect {
        url_redacted: String,
        #[source]
        source: sqlx::Error,
    },
    /// The store could not be opened for a reason the variants above do not name.
    #[error("cannot open the audit store")]
    Open {
        #[source]
        source: authz_db::Error,
    },
    /// The schema migrations could not be applied.
    #[error("cannot apply the audit store migrations")]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A record could not be written; nothing of the call was committed.
    #[error("cannot write to the audit store")]
    Write {
        #[source]
        source: sqlx::Error,
    },
    /// The store could not be read (or did not answer a ping).
    #[error("cannot read from the audit store")]
    Read {
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not parse back into its field.
    #[error("audit record {id} has an invalid stored value in column {field}")]
    Corrupt { id: i64, field: &'static str },
    /// A field could not be encoded for storage.
    #[error("cannot encode the {field} field of an audit record")]
    Encode {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The record cannot be stored by this backend (Postgres text cannot hold NUL).
    #[error(
        "the {field} field of an audit record contains a NUL character, which the store cannot hold"
    )]
    Unstorable { field: &'static str },
    /// The writer's queue stayed full for the enqueue timeout; the record was not accepted.
    #[error("the audit queue is full")]
    QueueFull,
    /// The writer is shut down (or its task ended); the record was not accepted.
    #[error("the audit writer is closed")]
    WriterClosed,
    /// A durable append got no answer in time; the record may or may not be committed.
    #[error("no confirmation from the audit writer within {timeout_ms} ms")]
    DurableTimeout { timeout_ms: u128 },
    /// A batch's transaction took longer than the commit timeout.
    #[error("the audit batch did not commit within {timeout_ms} ms")]
    CommitTimeout { timeout_ms: u128 },
    /// The batch a durable record was part of failed; shared by every caller of that batch.
    #[error("the audit batch failed")]
    BatchFailed {
        #[source]
        source: std::sync::Arc<Error>,
    },
    /// The writer task panicked or was cancelled.
    #[error("the audit writer task failed")]
    WriterFailed {
        #[source]
        source: tokio::task::JoinError,
    },
    /// A writer setting is out of range.
    #[error("invalid audit writer configuration: {reason}")]
    Config { reason: &'static str },
    /// A key is malformed.
    #[error("invalid audit signing key: {reason}")]
    Key { reason: &'static str },
    /// A key file could not be read or written.
    #[error("cannot access the audit key file {path}")]
    KeyFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A record as stored, with the id the store gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: i64,
    pub record: AuditRecord,
}

/// Connection pool settings. Defaults suit the gateway; embed this in a larger config if needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreOptions {
    /// Most open connections. Default: 4 for SQLite (one writer at a time anyway), 10 for
    /// Postgres.
    pub max_connections: Option<u32>,
    /// How long the first connection attempt, and later a wait for a free pooled connection,
    /// may take before the call fails, in milliseconds. Default 5000. A short wait matters: in
    /// durable mode the request is held until its record is committed.
    pub acquire_timeout_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout_ms: 5_000,
        }
    }
}

/// The audit store: a connection pool over SQLite or Postgres. Cheap to clone (clones share the
/// pool).
#[derive(Debug, Clone)]
pub struct AuditStore {
    pool: Pool,
}

/// The audit store's tables: `audit_records`, `audit_checkpoints`, `audit_ship_cursors`.
const SCHEMA: authz_db::Schema = authz_db::Schema {
    store: "audit",
    sqlite: || sqlx::migrate!("../../migrations/sqlite/audit"),
    postgres: || sqlx::migrate!("../../migrations/postgres/audit"),
};

impl From<authz_db::Error> for Error {
    fn from(error: authz_db::Error) -> Self {
        match error {
            authz_db::Error::InvalidUrl {
                url_redacted,
                reason,
                source,
            } => Error::InvalidUrl {
                url_redacted,
                reason,
                source,
            },
            authz_db::Error::Connect {
                url_redacted,
                source,
            } => Error::Connect {
                url_redacted,
                source,
            },
            authz_db::Error::Migrate { source, .. } => Error::Migrate { source },
            // `authz_db::Error` is non-exhaustive; a future variant still fails closed here.
            other => Error::Open { source: other },
        }
    }
}

impl AuditStore {
    /// Connects with default [`StoreOptions`] and applies pending migrations.
    ///
    /// `url` is `sqlite://PATH?mode=rwc`, `sqlite:PATH` (the file is created when missing unless
    /// the URL sets `mode`) or `postgres://user:pass@host:port/db`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects and applies pending migrations.
    ///
    /// A first connection is made directly, not through the pool, so an unreachable database
    /// fails fast with its real cause instead of the pool's generic timeout.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, Error> {
        let pool_options = authz_db::PoolOptions {
            max_connections: options.max_connections,
            acquire_timeout: Duration::from_millis(options.acquire_timeout_ms),
        };
        let pool = authz_db::connect(url, &pool_options, &SCHEMA).await?;
        Ok(Self { pool })
    }

    /// Which database this store writes to.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Records matching `filter`, newest first (ties broken by id), at most `filter.limit`
    /// (default 100, capped at 10,000).
    pub async fn query(&self, filter: &AuditFilter) -> Result<Vec<StoredRecord>, Error> {
        self.search(&AuditQuery {
            filter: filter.clone(),
            ..Default::default()
        })
        .await
    }

    /// How many records match `filter` (its limit is ignored).
    pub async fn count(&self, filter: &AuditFilter) -> Result<u64, Error> {
        self.count_matching(&AuditQuery {
            filter: filter.clone(),
            ..Default::default()
        })
        .await
    }

    /// A cheap liveness probe (`SELECT 1`), for readiness checks.
    pub async fn ping(&self) -> Result<(), Error> {
        self.pool
            .ping()
            .await
            .map_err(|source| Error::Read { source })
    }

    /// Closes the pool, waiting for connections in use to be returned. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

fn read_failed(source: sqlx::Error) -> Error {
    Error::Read { source }
}

fn write_failed(source: sqlx::Error) -> Error {
    tracing::warn!(error = %source, "audit record write failed");
    Error::Write { source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shareable_across_tasks() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        fn assert_sendable<T: Send + Sync + 'static>() {}
        assert_shareable::<AuditStore>();
        assert_sendable::<Error>();
    }

    #[tokio::test]
    async fn sqlite_is_opened_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("a.db").display());
        let store = AuditStore::connect(&url).await.expect("connect");
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("expected SQLite")
        };
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .expect("journal_mode");
        assert_eq!(journal, "wal");
        let pragma = |name: &'static str| async move {
            let sql = sqlx::AssertSqlSafe(format!("PRAGMA {name}"));
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .expect(name)
        };
        // 2 is FULL.
        assert_eq!(pragma("synchronous").await, 2);
        assert_eq!(pragma("foreign_keys").await, 1);
        assert_eq!(pragma("busy_timeout").await, 5000);
        store.ping().await.expect("ping");
    }
}
