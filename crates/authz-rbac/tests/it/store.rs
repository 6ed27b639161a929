//! The SQL policy store: writes validate, bump the revision, and take effect after a reload.

use authz_rbac::{Error, PolicyRule, PolicyStore, Rbac, RoleAssignment};
use authz_types::{Effect, ReasonCode};

use crate::common::{PgDatabase, model_path, policy_path, principal, sqlite_store, tool};

async fn exercise(store: &PolicyStore) {
    assert_eq!(store.revision().await.expect("revision"), 0);
    assert_eq!(
        store
            .grant("reader", "default", "call", "tool:t/get_*", Effect::Allow)
            .await
            .expect("grant"),
        1
    );
    assert_eq!(
        store
            .assign("u", "reader", "default")
            .await
            .expect("assign"),
        2
    );

    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load");
    assert_eq!(rbac.revision(), 2);
    let u = principal("u", &[], None);
    let decide = |name: &str| rbac.decide(&u, "t", &tool(name)).expect("decide");
    assert_eq!(decide("get_x").reason, ReasonCode::PolicyAllow);
    assert_eq!(decide("get_x").policy_revision, 2);

    // Refused writes change nothing, not even the revision.
    for (action, pattern) in [
        ("call", "tool:t/[oops"),
        ("call", "tool:t/{a,b"),
        ("call", "t/get_*"),
        ("call", "*"),
        ("delete", "tool:t/*"),
        ("list", "tool:t/*"),
    ] {
        let err = store
            .grant("reader", "default", action, pattern, Effect::Allow)
            .await
            .expect_err(pattern);
        assert!(
            matches!(
                err,
                Error::InvalidPattern { .. } | Error::InvalidRule { .. }
            ),
            "{err:?}"
        );
    }
    assert!(matches!(
        store
            .grant("reader", "default", "call", "tool:t/get_*", Effect::Allow)
            .await,
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        store.assign("u", "reader", "*").await,
        Err(Error::InvalidRule { .. })
    ));
    assert!(matches!(
        store
            .revoke("reader", "default", "call", "tool:t/nothing", Effect::Allow)
            .await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.unassign("nobody", "reader", "default").await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.revision().await.expect("revision"), 2);

    // A deny, then reload: the change applies only after the reload.
    assert_eq!(
        store
            .grant(
                "auditor",
                "default",
                "call",
                "tool:t/get_secret",
                Effect::Deny
            )
            .await
            .expect("grant deny"),
        3
    );
    assert_eq!(
        store
            .assign("u", "auditor", "default")
            .await
            .expect("assign"),
        4
    );
    assert_eq!(decide("get_secret").reason, ReasonCode::PolicyAllow);
    assert_eq!(rbac.reload().await.expect("reload"), 4);
    assert_eq!(decide("get_secret").reason, ReasonCode::ExplicitDeny);
    assert_eq!(decide("get_secret").policy_revision, 4);

    assert_eq!(
        store.rules().await.expect("rules"),
        vec![
            PolicyRule::new("reader", "default", "tool:t/get_*", "call", Effect::Allow)
                .expect("rule"),
            PolicyRule::new(
                "auditor",
                "default",
                "tool:t/get_secret",
                "call",
                Effect::Deny
            )
            .expect("rule"),
        ]
    );
    assert_eq!(
        store.assignments().await.expect("assignments"),
        vec![
            RoleAssignment::new("u", "reader", "default").expect("assignment"),
            RoleAssignment::new("u", "auditor", "default").expect("assignment"),
        ]
    );

    // Revoke and unassign bump the revision and take effect after the next reload.
    assert_eq!(
        store
            .revoke("reader", "default", "call", "tool:t/get_*", Effect::Allow)
            .await
            .expect("revoke"),
        5
    );
    assert_eq!(
        store
            .unassign("u", "auditor", "default")
            .await
            .expect("unassign"),
        6
    );
    assert_eq!(
        decide("get_x").reason,
        ReasonCode::PolicyAllow,
        "old snapshot until reload"
    );
    assert_eq!(rbac.reload().await.expect("reload"), 6);
    assert_eq!(decide("get_x").reason, ReasonCode::NoMatchingRule);
    assert_eq!(decide("get_secret").reason, ReasonCode::NoMatchingRule);

    // Importing adds what is new in one revision, and nothing (no bump) the second time.
    let after_import = store.import_csv(&policy_path()).await.expect("import");
    assert_eq!(after_import, 7);
    assert_eq!(
        store.import_csv(&policy_path()).await.expect("re-import"),
        7
    );
    assert_eq!(rbac.reload().await.expect("reload"), 7);
    let bob = principal("bob", &[], None);
    assert_eq!(
        rbac.decide(&bob, "tickets", &tool("get_ticket"))
            .expect("decide")
            .reason,
        ReasonCode::PolicyAllow
    );
}

#[tokio::test]
async fn sqlite_store_writes_bump_revision_and_apply_after_reload() {
    let (store, _dir) = sqlite_store().await;
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_store_writes_bump_revision_and_apply_after_reload() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let store = PolicyStore::connect(&db.url)
        .await
        .expect("connect postgres");
    // Every change is announced on the notification channel with its revision.
    let mut listener = sqlx::postgres::PgListener::connect(&db.url)
        .await
        .expect("listen");
    listener
        .listen(authz_rbac::POLICY_NOTIFY_CHANNEL)
        .await
        .expect("listen");
    exercise(&store).await;
    let first = listener.recv().await.expect("notification");
    assert_eq!(first.payload(), "1");
    drop(listener);
    store.close().await;
    db.drop().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        PolicyStore::connect("mysql://localhost/x").await,
        Err(Error::UnsupportedUrl)
    ));
}
