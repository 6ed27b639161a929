//! `role grant/revoke/assign/unassign` against a real SQLite policy store, and one round trip
//! on Postgres; the rules and assignments are read back with `policy export`.

use authz_admin::{EXIT_ERROR, exit_code_of};
use authz_test_support::TestDatabase;

use crate::common::{fails, json, ok, sqlite_url, text, with_db};

/// The revision a mutating command reports in its JSON output.
async fn revision_after(args: &[&str]) -> i64 {
    let v = json(args).await;
    v["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no revision in {v}"))
}

/// Grants, assigns, lists, revokes and unassigns on the store at `url`.
async fn round_trip(url: &str) {
    // `role <verb> ticket-reader call <object> <extra>` on the store.
    let rule = |verb: &'static str, object: &'static str, extra: &[&'static str]| {
        let args = [&["role", verb, "ticket-reader", "call", object][..], extra].concat();
        with_db(&args, url)
    };
    let grant = || rule("grant", "tool:tickets/get_*", &[]);

    let out = ok(&grant()).await;
    assert!(out.contains("granted `p, ticket-reader, default, tool:tickets/get_*, call, allow`"));
    assert!(out.contains("(policy revision 1)"), "{out}");
    let r2 = revision_after(&rule(
        "grant",
        "tool:tickets/delete_*",
        &["--deny", "--tenant", "acme"],
    ))
    .await;
    assert_eq!(r2, 2);
    let r3 = revision_after(&with_db(&["role", "assign", "alice", "ticket-reader"], url)).await;
    assert_eq!(r3, 3);

    let table = ok(&with_db(&["policy", "export"], url)).await;
    assert!(table.contains("at policy revision 3"), "{table}");
    assert!(
        table.contains("p, ticket-reader, default, tool:tickets/get_*, call, allow"),
        "{table}"
    );
    assert!(
        table.contains("p, ticket-reader, acme, tool:tickets/delete_*, call, deny"),
        "{table}"
    );
    assert!(
        table.contains("g, user:alice, ticket-reader, default"),
        "{table}"
    );

    let listed = json(&with_db(&["policy", "export"], url)).await;
    assert_eq!(listed["revision"], 3);
    let rules = listed["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "{listed}");
    assert_eq!(rules[0]["object"], "tool:tickets/get_*");
    assert_eq!(rules[1]["effect"], "deny");
    let assignments = listed["assignments"].as_array().expect("assignments");
    assert_eq!(assignments.len(), 1, "{listed}");
    assert!(
        assignments[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("alice"))
    );
    assert_eq!(assignments[0]["role"], "ticket-reader");

    // Granting the same rule twice, or revoking one that is not there, changes nothing.
    let e = fails(&grant()).await;
    assert!(text(&e).contains("already exists"), "{e:#}");
    let e = fails(&rule("revoke", "tool:tickets/list_*", &["--yes"])).await;
    assert!(
        text(&e).contains(
            "cannot revoke `p, ticket-reader, default, tool:tickets/list_*, call, allow`"
        ),
        "{e:#}"
    );
    assert!(text(&e).contains("no such rule"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    // The deny rule is only revoked as a deny rule, in its tenant.
    fails(&rule(
        "revoke",
        "tool:tickets/delete_*",
        &["--tenant", "acme", "--yes"],
    ))
    .await;
    let e = fails(&with_db(
        &["role", "unassign", "bob", "ticket-reader", "--yes"],
        url,
    ))
    .await;
    assert!(text(&e).contains("bob"), "{e:#}");
    assert_eq!(
        json(&with_db(&["policy", "export"], url)).await["revision"],
        3
    );

    let r4 = revision_after(&rule("revoke", "tool:tickets/get_*", &["--yes"])).await;
    assert_eq!(r4, 4);
    let r5 = revision_after(&rule(
        "revoke",
        "tool:tickets/delete_*",
        &["--deny", "--tenant", "acme", "-y"],
    ))
    .await;
    assert_eq!(r5, 5);
    let r6 = revision_after(&with_db(
        &["role", "unassign", "alice", "ticket-reader", "--yes"],
        url,
    ))
    .await;
    assert_eq!(r6, 6);

    let empty = json(&with_db(&["policy", "export"], url)).await;
    assert_eq!(empty["revision"], 6);
    assert_eq!(empty["rules"], serde_json::json!([]));
    assert_eq!(empty["assignments"], serde_json::json!([]));
    let table = ok(&with_db(&["role", "list"], url)).await;
    assert!(table.contains("no roles"), "{table}");
}

#[tokio::test]
async fn roles_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(&sqlite_url(dir.path(), "policy.db")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn roles_round_trip_on_postgres() {
    let db = TestDatabase::postgres().await;
    round_trip(db.url()).await;
}

#[tokio::test]
async fn invalid_rules_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "policy.db");
    ok(&with_db(
        &["role", "grant", "r", "call", "tool:tickets/x"],
        &url,
    ))
    .await;

    let e = fails(&with_db(
        &["role", "grant", "r", "call", "tool:tickets/[oops"],
        &url,
    ))
    .await;
    assert!(text(&e).contains("invalid object pattern"), "{e:#}");
    assert!(text(&e).contains("tool:tickets/[oops"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);

    let e = fails(&with_db(
        &["role", "grant", "r", "call", "tickets/get_*"],
        &url,
    ))
    .await;
    assert!(text(&e).contains("cannot grant"), "{e:#}");
    let e = fails(&with_db(
        &["role", "grant", "r", "delete", "tool:tickets/*"],
        &url,
    ))
    .await;
    assert!(text(&e).contains("delete"), "{e:#}");
    // An assignment to every tenant would silently never apply, so it is refused.
    fails(&with_db(
        &["role", "assign", "alice", "r", "--tenant", "*"],
        &url,
    ))
    .await;

    let listed = json(&with_db(&["policy", "export"], &url)).await;
    assert_eq!(listed["revision"], 1);
    assert_eq!(listed["rules"].as_array().map(Vec::len), Some(1));
}
