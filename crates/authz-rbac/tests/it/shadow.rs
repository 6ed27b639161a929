//! The shadow store: one candidate runs at a time, a start stops the one running, a stop is
//! recorded, history keeps every candidate.

use authz_rbac::ShadowStore;
use authz_test_support::TestDatabase;

async fn exercise(store: &ShadowStore) {
    assert_eq!(store.current().await.expect("current"), None);
    assert!(
        !store.stop("olivia", 1).await.expect("stop"),
        "nothing to stop"
    );
    let first = store
        .start("p, a\n", "a.csv", "olivia", 10)
        .await
        .expect("start");
    let second = store
        .start("p, b\n", "b.csv", "omar", 20)
        .await
        .expect("start");
    assert!(second > first);
    let running = store.current().await.expect("current").expect("running");
    assert_eq!((running.id, running.candidate.as_str()), (second, "p, b\n"));
    let history = store.history().await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[1].stopped_by.as_deref(), history[1].stopped_ms),
        (Some("omar"), Some(20)),
        "starting b stopped a"
    );
    assert!(store.stop("olivia", 30).await.expect("stop"));
    assert_eq!(store.current().await.expect("current"), None);
}

#[tokio::test]
async fn sqlite_shadow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    exercise(&ShadowStore::connect(&url).await.expect("store")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_shadow() {
    let db = TestDatabase::postgres().await;
    exercise(&ShadowStore::connect(db.url()).await.expect("store")).await;
}
