//! Test databases: a SQLite file in a `TempDir`, or a freshly created Postgres database.

use authz_audit::AuditStore;
use sqlx::Connection;
use tempfile::TempDir;

/// A database created for one test, with a store connected to it.
pub(crate) struct TestDb {
    pub url: String,
    pub store: AuditStore,
    kind: Kind,
}

enum Kind {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("audit.db").display()
        );
        let store = AuditStore::connect(&url).await.expect("connect to SQLite");
        Self {
            url,
            store,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh Postgres database, or `None` (after saying so) when `DATABASE_URL` is unset.
    pub(crate) async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            println!("skipped: DATABASE_URL not set (run cargo xtask test)");
            return None;
        };
        let name = format!("authz_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        let url = with_database(&admin_url, &name);
        let store = AuditStore::connect(&url)
            .await
            .expect("connect to Postgres");
        Some(Self {
            url,
            store,
            kind: Kind::Postgres { admin_url, name },
        })
    }

    /// A second, independent store on the same database (as after a restart).
    pub(crate) async fn reconnect(&self) -> AuditStore {
        AuditStore::connect(&self.url).await.expect("reconnect")
    }

    /// Runs raw SQL on the database, bypassing the store (to plant bad rows or triggers).
    pub(crate) async fn raw(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.kind {
            Kind::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw SQL");
                conn.close().await.expect("close");
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw SQL");
                conn.close().await.expect("close");
            }
        }
    }

    /// The single bytes value `sql` selects, read bypassing the store.
    pub(crate) async fn fetch_bytes(&self, sql: &str) -> Vec<u8> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.kind {
            Kind::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                let v: Vec<u8> = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("raw select");
                conn.close().await.expect("close");
                v
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("raw connect");
                let v: Vec<u8> = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("raw select");
                conn.close().await.expect("close");
                v
            }
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
        match &self.kind {
            Kind::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("lock connect");
                sqlx::raw_sql("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("take the write lock");
                WriteLock::Sqlite(conn)
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("lock connect");
                sqlx::raw_sql("BEGIN; LOCK TABLE audit_records IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .expect("lock the table");
                WriteLock::Postgres(conn)
            }
        }
    }

    /// Runs SQL on the server's admin database (Postgres only), e.g. to refuse connections to
    /// the test database.
    pub(crate) async fn admin(&self, sql: &str) {
        let Kind::Postgres { admin_url, .. } = &self.kind else {
            panic!("admin SQL needs Postgres")
        };
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
        match &self.kind {
            Kind::Postgres { name, .. } => name,
            Kind::Sqlite(_) => panic!("not Postgres"),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    /// Closes the store and removes the database.
    pub(crate) async fn finish(self) {
        self.store.close().await;
        match self.kind {
            Kind::Sqlite(dir) => drop(dir),
            Kind::Postgres { admin_url, name } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .expect("drop test database");
                admin.close().await.expect("close admin connection");
            }
        }
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
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("rollback");
                conn.close().await.expect("close");
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("rollback");
                conn.close().await.expect("close");
            }
        }
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[test]
fn with_database_swaps_only_the_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:55432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:55432/t1"
    );
    assert_eq!(
        with_database("postgres://u@h:1?sslmode=disable", "t2"),
        "postgres://u@h:1/t2?sslmode=disable"
    );
}
