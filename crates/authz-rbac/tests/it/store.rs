//! The SQL policy store: writes validate, bump the revision, and take effect after a reload.

use authz_rbac::{Error, PolicyRule, PolicySet, PolicyStore, Rbac, RoleAssignment};
use authz_test_support::TestDatabase;
use authz_types::{ReasonCode, RuleEffect};

use crate::common::{model_path, policy_path, principal, sqlite_store, tool};

async fn exercise(store: &PolicyStore) {
    assert_eq!(store.revision().await.expect("revision"), 0);
    assert_eq!(
        store
            .grant(
                "reader",
                "default",
                "call",
                "tool:t/get_*",
                RuleEffect::Allow
            )
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
            .grant("reader", "default", action, pattern, RuleEffect::Allow)
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
            .grant(
                "reader",
                "default",
                "call",
                "tool:t/get_*",
                RuleEffect::Allow
            )
            .await,
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        store.assign("u", "reader", "*").await,
        Err(Error::InvalidRule { .. })
    ));
    // `user:u` is the stored form of `u`: it is not prefixed twice.
    assert!(matches!(
        store.assign("user:u", "reader", "default").await,
        Err(Error::AlreadyExists)
    ));
    // Role names never start with `user:`, and a subject needs a name after the prefix.
    for (subject, role) in [("u", "user:carol"), ("u", "user:"), ("", "reader")] {
        let err = store
            .assign(subject, role, "default")
            .await
            .expect_err(role);
        let Error::InvalidRule { reason } = &err else {
            panic!("{subject:?} {role:?}: {err:?}");
        };
        assert!(reason.contains("\"user:\""), "{reason}");
    }
    for role in ["user:", "user:*", ""] {
        let err = store
            .grant(role, "default", "call", "tool:t/x", RuleEffect::Allow)
            .await
            .expect_err(role);
        assert!(matches!(err, Error::InvalidRule { .. }), "{err:?}");
    }
    assert!(matches!(
        store
            .revoke(
                "reader",
                "default",
                "call",
                "tool:t/nothing",
                RuleEffect::Allow
            )
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
                RuleEffect::Deny
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
            PolicyRule::new(
                "reader",
                "default",
                "tool:t/get_*",
                "call",
                RuleEffect::Allow
            )
            .expect("rule"),
            PolicyRule::new(
                "auditor",
                "default",
                "tool:t/get_secret",
                "call",
                RuleEffect::Deny
            )
            .expect("rule"),
        ]
    );
    // Assignments come back as stored, and print and serialize that way.
    let assignments = store.assignments().await.expect("assignments");
    assert_eq!(
        assignments,
        vec![
            RoleAssignment::new("user:u", "reader", "default").expect("assignment"),
            RoleAssignment::new("user:u", "auditor", "default").expect("assignment"),
        ]
    );
    assert_eq!(assignments[0].user(), Some("u"));
    assert_eq!(assignments[0].to_string(), "g, user:u, reader, default");
    assert_eq!(
        serde_json::to_value(&assignments[0]).expect("json"),
        serde_json::json!({"subject": "user:u", "role": "reader", "tenant": "default"})
    );

    // Revoke and unassign bump the revision and take effect after the next reload.
    assert_eq!(
        store
            .revoke(
                "reader",
                "default",
                "call",
                "tool:t/get_*",
                RuleEffect::Allow
            )
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

    // Importing adds what is new in one revision, and nothing (no bump, no error, no duplicate)
    // the second time.
    let after_import = store.import_csv(&policy_path()).await.expect("import");
    assert_eq!(after_import, 7);
    let (imported, _) = store.snapshot().await.expect("snapshot");
    assert_eq!(
        store.import_csv(&policy_path()).await.expect("re-import"),
        7
    );
    assert_eq!(store.snapshot().await.expect("snapshot"), (imported, 7));
    assert_eq!(rbac.reload().await.expect("reload"), 7);
    let bob = principal("bob", &[], None);
    assert_eq!(
        rbac.decide(&bob, "tickets", &tool("get_ticket"))
            .expect("decide")
            .reason,
        ReasonCode::PolicyAllow
    );
    // The imported `g, user:bob, …` is what `unassign("bob", …)` removes.
    assert_eq!(
        store
            .unassign("bob", "ticket-reader", "default")
            .await
            .expect("unassign bob"),
        8
    );
    assert_eq!(rbac.reload().await.expect("reload"), 8);
    assert_eq!(
        rbac.decide(&bob, "tickets", &tool("get_ticket"))
            .expect("decide")
            .reason,
        ReasonCode::NoMatchingRule
    );

    // A user whose `sub` is a role name gets nothing from the store either.
    let impostor = principal("ticket-admin", &[], None);
    assert_eq!(
        rbac.decide(&impostor, "tickets", &tool("delete_ticket"))
            .expect("decide")
            .reason,
        ReasonCode::NoMatchingRule
    );

    // An import with a role named like a subject imports nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "g, user:zoe, ticket-reader, default\ng, user:zoe, user:carol, default\n",
    )
    .expect("write");
    let err = store.import_csv(&bad).await.expect_err("invalid import");
    assert!(
        matches!(err, Error::InvalidPolicy { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(store.revision().await.expect("revision"), 8);
    // So does a set built in code that skips validation.
    let unchecked = PolicySet {
        rules: vec![],
        assignments: vec![RoleAssignment {
            subject: "user:zoe".to_owned(),
            role: "user:carol".to_owned(),
            tenant: "default".to_owned(),
        }],
    };
    assert!(matches!(
        store.import(&unchecked).await,
        Err(Error::InvalidRule { .. })
    ));
    assert_eq!(store.revision().await.expect("revision"), 8);
}

#[tokio::test]
async fn sqlite_store_writes_bump_revision_and_apply_after_reload() {
    let (store, _dir) = sqlite_store().await;
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_store_writes_bump_revision_and_apply_after_reload() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url())
        .await
        .expect("connect postgres");
    // Every change is announced on the notification channel with its revision.
    let mut listener = sqlx::postgres::PgListener::connect(db.url())
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
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        PolicyStore::connect("mysql://localhost/x").await,
        Err(Error::Open {
            source: authz_db::Error::InvalidUrl { .. }
        })
    ));
}

/// The tables a policy store creates, and no other store's.
const POLICY_TABLES: [&str; 5] = [
    "_sqlx_migrations",
    "casbin_rule",
    "policy_history",
    "policy_revision",
    "policy_role",
];

/// Pulling `authz-rbac` alone into a service must not create another store's tables there.
#[tokio::test]
async fn connecting_creates_only_the_policy_tables() {
    let (store, db) = sqlite_store().await;
    store.close().await;
    assert_eq!(db.tables().await, POLICY_TABLES);
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn connecting_creates_only_the_policy_tables_on_postgres() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url())
        .await
        .expect("connect postgres");
    store.close().await;
    assert_eq!(db.tables().await, POLICY_TABLES);
}
