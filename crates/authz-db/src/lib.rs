//! The SQL layer under the gateway's three stores (audit, policy, revocation): which database a
//! URL names, one way to connect to it, the migrations of one store, and `LISTEN`.
//!
//! Every store connects through [`connect`], so every store gets the same guarantees:
//!
//! - **The URL decides the backend**: `sqlite:PATH`, `sqlite://PATH[?mode=…]` or
//!   `postgres://…` / `postgresql://…`; anything else, and an in-memory SQLite database (which
//!   would lose every row and give each pooled connection its own empty database), is refused.
//! - **SQLite is durable**: WAL journal, `synchronous=FULL`, foreign keys on, and a
//!   [`SQLITE_BUSY_TIMEOUT`] so a second writer waits instead of failing. Without an explicit
//!   `mode` the file is created on first start.
//! - **The first connection fails fast with its real cause**: it is made directly, not through
//!   the pool, within the acquire timeout, so an unreachable server or a refused login is
//!   reported as such rather than as the pool's generic "timed out".
//! - **A store migrates only its own tables**: [`Schema`] names the store's own migration folders
//!   (`migrations/<backend>/<store>/` at the workspace root: `audit`, `policy`, `revocation`). All stores share sqlx's
//!   `_sqlx_migrations` table, with versions unique across the workspace, so one database can
//!   hold any combination of stores and migrations that another store (or a newer release, in
//!   a rolling upgrade) applied do not stop this one.
//! - **Errors never contain a password**: URLs appear through [`redact_url`].
//!
//! [`on_pool!`] runs one body of statements against either backend, and [`follow_channel`] keeps
//! a Postgres `LISTEN` alive for a store that announces its changes with `NOTIFY`.
//!
//! ```
//! # async fn run() -> Result<(), authz_db::Error> {
//! const SCHEMA: authz_db::Schema = authz_db::Schema {
//!     store: "example",
//!     sqlite: || sqlx::migrate::Migrator::DEFAULT,
//!     postgres: || sqlx::migrate::Migrator::DEFAULT,
//! };
//! let dir = tempfile::tempdir().expect("temp dir");
//! let url = format!("sqlite://{}", dir.path().join("store.db").display());
//! let pool = authz_db::connect(&url, &authz_db::PoolOptions::default(), &SCHEMA).await?;
//! assert_eq!(pool.backend(), authz_db::Backend::Sqlite);
//! let one: i64 = authz_db::on_pool!(pool, p => sqlx::query_scalar("SELECT 1").fetch_one(p).await)
//!     .expect("select");
//! assert_eq!(one, 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```

mod listen;
mod url;

use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqlitePoolOptions};

pub use listen::follow_channel;
pub use url::redact_url;

/// How long SQLite waits for another writer's lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `$body` once per backend with `$pool` bound to that backend's pool, the type alias `DB`
/// naming its database and `BEGIN` the statement that starts a write transaction (SQLite:
/// `BEGIN IMMEDIATE`, which takes the write lock up front so a concurrent writer waits for the
/// busy timeout instead of failing on upgrade). One body then serves both backends without the
/// long trait bounds generic code over `sqlx::Database` would need.
#[macro_export]
macro_rules! on_pool {
    ($pool_value:expr, $pool:ident => $body:expr) => {
        match &$pool_value {
            $crate::Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = ::sqlx::Sqlite;
                #[allow(dead_code)]
                const BEGIN: &str = "BEGIN IMMEDIATE";
                $body
            }
            $crate::Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = ::sqlx::Postgres;
                #[allow(dead_code)]
                const BEGIN: &str = "BEGIN";
                $body
            }
        }
    };
}

/// Why a store could not be opened. Messages never contain a password: URLs appear redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not one the stores understand.
    #[error("invalid store URL {url_redacted}: {reason}")]
    InvalidUrl {
        url_redacted: String,
        reason: String,
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to {url_redacted}")]
    Connect {
        url_redacted: String,
        #[source]
        source: sqlx::Error,
    },
    /// The store's schema migrations could not be applied.
    #[error("cannot apply the {store} store's migrations")]
    Migrate {
        store: &'static str,
        #[source]
        source: MigrateError,
    },
}

/// Which database a store writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to either backend. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// Which database this pool connects to.
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The Postgres pool, for `LISTEN`; `None` on SQLite.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// A cheap liveness probe (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    }

    /// Closes the pool, waiting for connections in use to be returned. Later calls fail.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// The migrations of one store. Each store keeps its own folders and creates only its own
/// tables; versions are unique across the workspace because the stores share one
/// `_sqlx_migrations` table.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The store's name in messages ("cannot apply the audit store's migrations").
    pub store: &'static str,
    /// `sqlx::migrate!("../../migrations/sqlite/<store>")` in the store's crate.
    pub sqlite: fn() -> Migrator,
    /// `sqlx::migrate!("../../migrations/postgres/<store>")` in the store's crate.
    pub postgres: fn() -> Migrator,
}

impl Schema {
    fn migrator(&self, backend: Backend) -> Migrator {
        let mut migrator = match backend {
            Backend::Sqlite => (self.sqlite)(),
            Backend::Postgres => (self.postgres)(),
        };
        // Versions applied by another store sharing the database, or by a newer release during a
        // rolling upgrade, are not this build's; the tables it needs are still there.
        migrator.set_ignore_missing(true);
        migrator
    }
}

/// Pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most open connections. `None`: 4 for SQLite (one writer at a time anyway), 10 for
    /// Postgres.
    pub max_connections: Option<u32>,
    /// How long the first connection attempt, and later a wait for a free pooled connection, may
    /// take before the call fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    /// Default pool size, 5 s acquire timeout.
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolOptions {
    /// For a store read once per change and written by operators (the policy and revocation
    /// stores): four connections, the default acquire timeout.
    pub fn low_traffic() -> Self {
        Self {
            max_connections: Some(4),
            ..Self::default()
        }
    }
}

/// Connects to the database `url` names and applies `schema`'s pending migrations.
///
/// The first connection is made directly, within `options.acquire_timeout`, and runs the
/// migrations; the pool then opens its own connections lazily with the same options.
pub async fn connect(url: &str, options: &PoolOptions, schema: &Schema) -> Result<Pool, Error> {
    let url_redacted = redact_url(url);
    let timeout = options.acquire_timeout;
    let connect_err = |source| Error::Connect {
        url_redacted: url_redacted.clone(),
        source,
    };
    let migrate_err = |source| Error::Migrate {
        store: schema.store,
        source,
    };
    let pool = match url::parse(url)? {
        url::Target::Sqlite(opts) => {
            let mut conn = within(timeout, SqliteConnection::connect_with(&opts))
                .await
                .map_err(connect_err)?;
            schema
                .migrator(Backend::Sqlite)
                .run(&mut conn)
                .await
                .map_err(migrate_err)?;
            close_quietly(conn).await;
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(4))
                    .acquire_timeout(timeout)
                    .connect_lazy_with(opts),
            )
        }
        url::Target::Postgres(opts) => {
            let mut conn = within(timeout, PgConnection::connect_with(&opts))
                .await
                .map_err(connect_err)?;
            schema
                .migrator(Backend::Postgres)
                .run(&mut conn)
                .await
                .map_err(migrate_err)?;
            close_quietly(conn).await;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(options.max_connections.unwrap_or(10))
                    .acquire_timeout(timeout)
                    .connect_lazy_with(opts),
            )
        }
    };
    tracing::debug!(url = %url_redacted, store = schema.store, "store connected and migrated");
    Ok(pool)
}

/// `error` and its sources, joined with `: `, for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs a connection attempt with a deadline, reporting a timeout as an IO error so it keeps its
/// meaning in the error chain.
async fn within<T>(
    timeout: Duration,
    attempt: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connection attempt timed out",
        ))
    })?
}

/// Closes a setup connection. A failure to say goodbye politely does not matter: the schema is
/// already committed and the pool opens its own connections.
async fn close_quietly(conn: impl Connection) {
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
}
