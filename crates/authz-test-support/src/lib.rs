//! Test fixtures shared by every crate's tests (a dev-dependency only; `xtask tidy` holds that).
//!
//! - [`TestDatabase`]: a throwaway SQLite file or a freshly created Postgres database that
//!   removes itself when dropped, so a failed assertion does not leak it.
//! - Postgres tests are marked `#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run
//!   cargo xtask test")]`. The `authz_postgres` cfg is set by each crate's build script when
//!   `AUTHZ_TEST_POSTGRES` is set at build time, which `cargo xtask test` and `cargo xtask ci` do
//!   (together with `DATABASE_URL`). Under a plain `cargo test` those tests are therefore
//!   reported as ignored, never as passed; a test built for Postgres that finds no
//!   `DATABASE_URL` fails ([`TestDatabase::postgres`]).
//! - [`eventually`] and [`eventually_async`]: polling with a deadline that only stops a test
//!   that would otherwise hang (never a timed assertion).
//! - [`repo_path`] and [`policies_dir`]: files of the repository.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use tempfile::TempDir;

/// The environment variable that builds the Postgres tests (see the crate docs).
pub const POSTGRES_BUILD_ENV: &str = "AUTHZ_TEST_POSTGRES";

/// A database created for one test, removed when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite { dir: TempDir, path: PathBuf },
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A SQLite database file called `file_name` in a fresh temporary directory; the file is
    /// created by the first store that connects (the URL carries no `mode`).
    pub fn sqlite(file_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join(file_name);
        Self {
            url: format!("sqlite://{}", path.display()),
            kind: Kind::Sqlite { dir, path },
        }
    }

    /// A freshly created Postgres database on the server `DATABASE_URL` names.
    ///
    /// Panics when `DATABASE_URL` is not set: call it only from tests marked
    /// `#[cfg_attr(not(authz_postgres), ignore = ...)]`, which run only when the build was made
    /// for Postgres tests, so a missing server is a failure rather than a silent pass.
    pub async fn postgres() -> Self {
        let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "this Postgres test was built ({POSTGRES_BUILD_ENV} set) but DATABASE_URL is \
                 not set; run `cargo xtask test`"
            )
        });
        let name = format!("authz_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        // The name comes from a UUID above, so splicing it in is safe.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.expect("close the admin connection");
        let url = with_database(&admin_url, &name);
        Self {
            url,
            kind: Kind::Postgres { admin_url, name },
        }
    }

    /// The URL a store connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this is a Postgres database.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. })
    }

    /// The Postgres database's name and the URL of the server's admin database (Postgres only).
    pub fn postgres_admin(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::Postgres { admin_url, name } => Some((name, admin_url)),
            Kind::Sqlite { .. } => None,
        }
    }

    /// The SQLite file (SQLite only).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Sqlite { path, .. } => Some(path),
            Kind::Postgres { .. } => None,
        }
    }

    /// The temporary directory holding the SQLite file (SQLite only), for other files of the
    /// same test.
    pub fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Sqlite { dir, .. } => Some(dir.path()),
            Kind::Postgres { .. } => None,
        }
    }

    /// Runs `sql` (one or more statements) on the database, bypassing every store: to plant
    /// bad rows or triggers.
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.kind {
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("open the SQLite file");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw SQL");
                conn.close().await.expect("close");
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect to the test database");
                sqlx::raw_sql(sql)
                    .execute(&mut conn)
                    .await
                    .expect("raw SQL");
                conn.close().await.expect("close");
            }
        }
    }

    /// The names of the database's tables, sorted (the backend's own catalog left out).
    pub async fn tables(&self) -> Vec<String> {
        match &self.kind {
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("open the SQLite file");
                let tables = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables");
                conn.close().await.expect("close");
                tables
            }
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect to the test database");
                let tables = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables");
                conn.close().await.expect("close");
                tables
            }
        }
    }
}

impl Drop for TestDatabase {
    /// Drops the Postgres database (`WITH (FORCE)`, so pools still open do not keep it) on a
    /// thread of its own, since a test's runtime cannot be blocked on from inside; the SQLite
    /// directory goes with its `TempDir`. A failure is printed, not raised: a panic here would
    /// hide the test's own failure.
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
                admin.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.url),
            Err(_) => eprintln!("dropping test database {} panicked", self.url),
        }
    }
}

/// `url` (a Postgres URL) pointing at database `name` instead, keeping any query string.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let authority = host_and_path.split('/').next().unwrap_or_default();
    let mut out = format!("{}{authority}/{name}", &base[..scheme_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Polls `check` every 10 ms until it holds; panics naming `what` after `deadline`. The
/// deadline only stops a test that would otherwise hang: pick it generously.
pub async fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a check that has to await (a query, a request).
pub async fn eventually_async(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> bool,
) {
    let end = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A path relative to the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The repository's `policies/` folder (Casbin model, example policies, decision tables).
pub fn policies_dir() -> PathBuf {
    repo_path("policies")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_and_queries_kept() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://h:1/db?sslmode=disable", "t2"),
            "postgres://h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }

    #[test]
    fn a_sqlite_database_goes_with_its_directory() {
        let db = TestDatabase::sqlite("x.db");
        let dir = db.dir().expect("sqlite").to_path_buf();
        std::fs::write(db.sqlite_path().expect("sqlite"), b"").expect("write");
        assert!(dir.is_dir());
        drop(db);
        assert!(!dir.exists());
    }

    #[test]
    fn the_policies_folder_is_found() {
        assert!(policies_dir().join("model.conf").is_file());
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting for: never")]
    async fn eventually_gives_up_after_its_deadline() {
        eventually("never", Duration::from_millis(30), || false).await;
    }

    #[tokio::test]
    #[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
    async fn a_postgres_database_is_dropped_with_its_value() {
        let db = TestDatabase::postgres().await;
        db.execute("CREATE TABLE t (x INTEGER)").await;
        assert_eq!(db.tables().await, ["t"]);
        let (name, admin_url) = db.postgres_admin().expect("postgres");
        let (name, admin_url) = (name.to_owned(), admin_url.to_owned());
        drop(db);
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query");
        assert_eq!(left, 0, "database {name} outlived its TestDatabase");
    }
}
