//! Every store change is recorded with its actor and revisions; roles can be declared and
//! deleted with everything that names them.

use authz_rbac::{Error, PolicyStore, Rbac, UNKNOWN_ACTOR};
use authz_test_support::TestDatabase;
use authz_types::{ReasonCode, RuleEffect};

use crate::common::{model_path, policy_path, principal, sqlite_store, tool};

async fn exercise(store: &PolicyStore) {
    let alice = store.with_actor("alice");
    assert_eq!(alice.actor(), "alice");
    assert_eq!(store.actor(), UNKNOWN_ACTOR);

    assert_eq!(
        alice
            .create_role("reader", "reads tickets")
            .await
            .expect("create"),
        1
    );
    assert!(matches!(
        alice.create_role("reader", "").await,
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        alice.create_role("user:bob", "").await,
        Err(Error::InvalidRule { .. })
    ));
    assert!(matches!(
        alice.create_role("x", "two\nlines").await,
        Err(Error::InvalidRule { .. })
    ));
    alice
        .grant(
            "reader",
            "default",
            "call",
            "tool:t/get_*",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    alice
        .assign("bob", "reader", "default")
        .await
        .expect("assign");
    store
        .assign_rule(&authz_rbac::RoleAssignment::new("admin", "reader", "default").expect("g"))
        .await
        .expect("inherit");
    alice.import_csv(&policy_path()).await.expect("import");
    let before = alice.revision().await.expect("revision");
    assert_eq!(before, 5);

    let rbac = Rbac::from_store(&model_path(), store.clone())
        .await
        .expect("load");
    let bob = principal("bob", &[], None);
    assert!(
        rbac.decide(&bob, "t", &tool("get_x"))
            .expect("decide")
            .is_allowed()
    );

    let deleted = alice.delete_role("reader").await.expect("delete");
    assert_eq!(deleted.revision, 6);
    assert_eq!(
        deleted.lines,
        vec![
            "- p, reader, default, tool:t/get_*, call, allow",
            "- g, user:bob, reader, default",
            "- g, admin, reader, default",
            "- role reader",
        ]
    );
    assert!(matches!(
        alice.delete_role("reader").await,
        Err(Error::NotFound)
    ));
    rbac.reload().await.expect("reload");
    assert_eq!(
        rbac.decide(&bob, "t", &tool("get_x"))
            .expect("decide")
            .reason,
        ReasonCode::NoMatchingRule
    );
    // Imported roles are untouched.
    let set = store.snapshot().await.expect("snapshot").0;
    assert!(set.rules.iter().any(|r| r.role == "ticket-reader"));
    assert!(store.declared_roles().await.expect("roles").is_empty());
    alice.create_role("auditor", "").await.expect("create");
    let declared = store.declared_roles().await.expect("roles");
    assert_eq!(declared.len(), 1);
    assert_eq!(declared[0].name, "auditor");

    let history = store.history(100).await.expect("history");
    let summary: Vec<(&str, &str, i64, i64)> = history
        .iter()
        .map(|c| {
            (
                c.action.as_str(),
                c.actor.as_str(),
                c.from_revision,
                c.to_revision,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("role-create", "alice", 6, 7),
            ("role-delete", "alice", 5, 6),
            ("import", "alice", 4, 5),
            ("assign", UNKNOWN_ACTOR, 3, 4),
            ("assign", "alice", 2, 3),
            ("grant", "alice", 1, 2),
            ("role-create", "alice", 0, 1),
        ]
    );
    assert_eq!(history[6].lines, vec!["+ role reader: reads tickets"]);
    assert_eq!(
        history[5].lines,
        vec!["+ p, reader, default, tool:t/get_*, call, allow"]
    );
    assert!(history[2].lines.len() > 10, "{:?}", history[2].lines);
    assert!(history.iter().all(|c| c.at_ms > 0));
    assert_eq!(store.history(2).await.expect("history").len(), 2);
    // Refused changes leave no history.
    assert!(alice.assign("bob", "user:x", "default").await.is_err());
    assert_eq!(store.history(100).await.expect("history").len(), 7);
}

#[tokio::test]
async fn sqlite_records_history_and_deletes_roles() {
    let (store, _dir) = sqlite_store().await;
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_records_history_and_deletes_roles() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url()).await.expect("connect");
    exercise(&store).await;
    store.close().await;
}

/// The policy at each revision, rebuilt from the current one and the history.
async fn policy_at_each_revision(store: &PolicyStore) {
    let p = |role: &str, pattern: &str| {
        authz_rbac::PolicyRule::new(role, "default", pattern, "call", RuleEffect::Allow)
            .expect("rule")
    };
    let r1 = store
        .grant(
            "reader",
            "default",
            "call",
            "tool:t/get_*",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    let r2 = store
        .grant(
            "writer",
            "default",
            "call",
            "tool:t/put_*",
            RuleEffect::Allow,
        )
        .await
        .expect("grant");
    store
        .create_role("auditor", "reads the trail")
        .await
        .expect("role");
    let r3 = store
        .revoke(
            "reader",
            "default",
            "call",
            "tool:t/get_*",
            RuleEffect::Allow,
        )
        .await
        .expect("revoke");
    let r4 = store
        .assign("bob", "writer", "default")
        .await
        .expect("assign");
    // Rules come back in no particular order (an undone revoke is appended): compared sorted.
    let at = |rev: i64| async move {
        let mut set = store.policy_at(rev).await.expect("policy at");
        set.rules.sort_by_key(ToString::to_string);
        set.assignments.sort_by_key(ToString::to_string);
        set
    };
    assert!(at(0).await.rules.is_empty());
    assert_eq!(at(r1).await.rules, [p("reader", "tool:t/get_*")]);
    assert_eq!(
        at(r2).await.rules,
        [p("reader", "tool:t/get_*"), p("writer", "tool:t/put_*")]
    );
    let third = at(r3).await;
    assert_eq!(third.rules, [p("writer", "tool:t/put_*")]);
    assert!(third.assignments.is_empty());
    let now = at(r4).await;
    assert_eq!(now.assignments.len(), 1);
    let mut current = store.snapshot().await.expect("snapshot").0;
    current.rules.sort_by_key(ToString::to_string);
    current.assignments.sort_by_key(ToString::to_string);
    assert_eq!(now, current);
    assert!(matches!(
        store.policy_at(r4 + 1).await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn sqlite_rebuilds_the_policy_at_a_revision() {
    let (store, _dir) = sqlite_store().await;
    policy_at_each_revision(&store).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_rebuilds_the_policy_at_a_revision() {
    let db = TestDatabase::postgres().await;
    let store = PolicyStore::connect(db.url()).await.expect("connect");
    policy_at_each_revision(&store).await;
}
