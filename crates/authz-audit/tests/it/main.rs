//! Integration tests of the audit store against real databases: a SQLite file in a temporary
//! directory always, and a fresh Postgres database per test in a build made for Postgres tests
//! (`cargo xtask test`; elsewhere those tests are reported as ignored). See `authz-test-support`.

/// Generates one `#[tokio::test]` per backend for each check function of the calling module.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = crate::db::TestDb::sqlite().await;
                    super::$check(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
                async fn $check() {
                    let db = crate::db::TestDb::postgres().await;
                    super::$check(&db).await;
                }
            )*
        }
    };
}

mod db;
mod lanes;
mod ship;
mod store;
mod tamper;
mod writer;
