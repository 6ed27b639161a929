//! Integration tests of the audit store against real databases: a SQLite file in a temporary
//! directory always, and Postgres when `DATABASE_URL` is set (a fresh database per test).

/// Generates one `#[tokio::test]` per backend for each check function of the calling module.
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = crate::db::TestDb::sqlite().await;
                    super::$check(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(db) = crate::db::TestDb::postgres().await else { return };
                    super::$check(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

mod db;
mod store;
mod tamper;
mod writer;
