//! Test databases: an [`authz_test_support::TestDatabase`] (a SQLite file in a temporary
//! directory, or a freshly created Postgres database, removed when dropped) with an audit store
//! connected to it, plus the raw access the tests need to tamper with it.

use authz_audit::AuditStore;
use authz_test_support::TestDatabase;
use sqlx::Connection;

/// A database created for one test, with a store connected to it. Dropping it removes the
/// database; on Postgres `DROP DATABASE ... WITH (FORCE)` ends the store's connections, so the
/// store need not be closed first.
pub(crate) struct TestDb {
    pub store: AuditStore,
    database: TestDatabase,
}

impl TestDb {
    pub(crate) async fn sqlite() -> Self {
        Self::on(TestDatabase::sqlite("audit.db")).await
    }

    /// A fresh Postgres database; panics when `DATABASE_URL` is unset, so call it only from
    /// tests marked `#[cfg_attr(not(authz_postgres), ignore = ...)]`.
    pub(crate) async fn postgres() -> Self {
        Self::on(TestDatabase::postgres().await).await
    }

    async fn on(database: TestDatabase) -> Self {
        let store = AuditStore::connect(database.url())
            .await
            .expect("connect the audit store");
        Self { store, database }
    }

    /// The URL the store connects to.
    pub(crate) fn url(&self) -> &str {
        self.database.url()
    }

    /// The SQLite database file (SQLite only).
    pub(crate) fn sqlite_path(&self) -> &std::path::Path {
        self.database.sqlite_path().expect("not SQLite")
    }

    /// A second, independent store on the same database (as after a restart).
    pub(crate) async fn reconnect(&self) -> AuditStore {
        AuditStore::connect(self.url()).await.expect("reconnect")
    }

    /// Runs raw SQL on the database, bypassing the store (to plant bad rows or triggers).
    pub(crate) async fn raw(&self, sql: &str) {
        self.database.execute(sql).await;
    }

    /// The database's tables, sorted.
    pub(crate) async fn tables(&self) -> Vec<String> {
        self.database.tables().await
    }

    /// The single bytes value `sql` selects, read bypassing the store.
    pub(crate) async fn fetch_bytes(&self, sql: &str) -> Vec<u8> {
        if self.is_postgres() {
            fetch_bytes_on::<sqlx::PgConnection>(self.url(), sql).await
        } else {
            fetch_bytes_on::<sqlx::SqliteConnection>(self.url(), sql).await
        }
    }

    /// A SQL literal for `bytes` in this database's dialect.
    pub(crate) fn blob(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if self.is_postgres() {
            format!("'\\x{hex}'::bytea")
        } else {
            format!("X'{hex}'")
        }
    }

    /// Opens a transaction on a separate connection that blocks every insert into
    /// `audit_records` until the returned lock is released.
    pub(crate) async fn lock_writes(&self) -> WriteLock {
        if self.is_postgres() {
            WriteLock::Postgres(
                locked(
                    self.url(),
                    "BEGIN; LOCK TABLE audit_records IN EXCLUSIVE MODE",
                )
                .await,
            )
        } else {
            WriteLock::Sqlite(locked(self.url(), "BEGIN IMMEDIATE").await)
        }
    }

    /// Runs SQL on the server's admin database (Postgres only), e.g. to refuse connections to
    /// the test database.
    pub(crate) async fn admin(&self, sql: &str) {
        let (_, admin_url) = self
            .database
            .postgres_admin()
            .expect("admin SQL needs Postgres");
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut admin)
            .await
            .expect("admin SQL");
        admin.close().await.expect("close admin connection");
    }

    /// The test database's name (Postgres only).
    pub(crate) fn pg_name(&self) -> &str {
        self.database.postgres_admin().expect("not Postgres").0
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.database.is_postgres()
    }
}

/// A held write lock; [`WriteLock::release`] rolls its transaction back.
pub(crate) enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    pub(crate) async fn release(self) {
        match self {
            Self::Sqlite(conn) => rolled_back(conn).await,
            Self::Postgres(conn) => rolled_back(conn).await,
        }
    }
}

/// The single bytes value `sql` selects, read on a raw connection of type `C` to `url`.
async fn fetch_bytes_on<C>(url: &str, sql: &str) -> Vec<u8>
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    (Vec<u8>,): for<'r> sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let mut conn = C::connect(url).await.expect("raw connect");
    let v: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("raw select");
    conn.close().await.expect("close");
    v
}

/// A raw connection of type `C` to `url` that has run `begin`, which opens a transaction
/// holding a write lock.
async fn locked<C>(url: &str, begin: &'static str) -> C
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url).await.expect("lock connect");
    sqlx::raw_sql(begin)
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    conn
}

/// Rolls back the transaction [`locked`] opened on `conn` and closes it.
async fn rolled_back<C>(mut conn: C)
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("rollback");
    conn.close().await.expect("close");
}
