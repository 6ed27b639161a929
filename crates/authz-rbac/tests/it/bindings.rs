//! The shared owner bindings: the first binding of an id wins until it expires or is ended.

use authz_rbac::{BindingKind, BindingStore};
use authz_test_support::TestDatabase;

async fn exercise(store: &BindingStore) {
    let (s, t) = (BindingKind::Session, BindingKind::Task);
    let now = 1_000_000;
    assert_eq!(store.owner(s, "up", "s1", now).await.expect("owner"), None);
    let bound = store.bind(s, "up", "s1", "alice", now + 1000, now).await;
    assert_eq!(bound.expect("bind").as_deref(), Some("alice"));
    // A second binder does not take a live binding over; it learns who holds it.
    let bound = store
        .bind(s, "up", "s1", "mallory", now + 5000, now + 10)
        .await;
    assert_eq!(bound.expect("bind").as_deref(), Some("alice"));
    assert_eq!(
        store
            .owner(s, "up", "s1", now + 20)
            .await
            .expect("owner")
            .as_deref(),
        Some("alice")
    );
    // Kinds and routes are separate namespaces.
    assert_eq!(store.owner(t, "up", "s1", now).await.expect("owner"), None);
    assert_eq!(
        store.owner(s, "other", "s1", now).await.expect("owner"),
        None
    );
    // Expired: gone for readers, and free to bind again.
    assert_eq!(
        store.owner(s, "up", "s1", now + 1000).await.expect("owner"),
        None
    );
    let bound = store
        .bind(s, "up", "s1", "bob", now + 9000, now + 2000)
        .await;
    assert_eq!(bound.expect("bind").as_deref(), Some("bob"));
    // Ended.
    store.end(s, "up", "s1").await.expect("end");
    assert_eq!(
        store.owner(s, "up", "s1", now + 2001).await.expect("owner"),
        None
    );
    // Pruning removes only what expired.
    store
        .bind(t, "up", "t1", "alice", now + 100, now)
        .await
        .expect("bind");
    store
        .bind(t, "up", "t2", "alice", now + 900, now)
        .await
        .expect("bind");
    assert_eq!(store.prune(now + 500).await.expect("prune"), 1);
    assert!(
        store
            .owner(t, "up", "t2", now + 501)
            .await
            .expect("owner")
            .is_some()
    );
}

#[tokio::test]
async fn sqlite_bindings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    exercise(&BindingStore::connect(&url).await.expect("store")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_bindings() {
    let db = TestDatabase::postgres().await;
    exercise(&BindingStore::connect(db.url()).await.expect("store")).await;
}
