//! `role grant/revoke/assign/unassign` against a real SQLite policy store, and one round trip
//! on Postgres; the rules and assignments are read back with `policy export`.

use authz_admin::{EXIT_ERROR, exit_code_of};
use authz_test_support::TestDatabase;

use crate::common::{fails, json, ok, sqlite_url, text};

/// The revision a mutating command reports in its JSON output.
async fn revision_after(args: &[&str]) -> i64 {
    let v = json(args).await;
    v["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no revision in {v}"))
}

/// Grants, assigns, lists, revokes and unassigns on the store at `url`.
async fn round_trip(url: &str) {
    let db = ["--database-url", url];
    let grant = |extra: &'static [&'static str]| {
        let mut args = vec![
            "role",
            "grant",
            "ticket-reader",
            "call",
            "tool:tickets/get_*",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&db);
        args
    };

    let out = ok(&grant(&[])).await;
    assert!(out.contains("granted `p, ticket-reader, default, tool:tickets/get_*, call, allow`"));
    assert!(out.contains("(policy revision 1)"), "{out}");
    let r2 = revision_after(
        &[
            &[
                "role",
                "grant",
                "ticket-reader",
                "call",
                "tool:tickets/delete_*",
                "--deny",
                "--tenant",
                "acme",
            ][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert_eq!(r2, 2);
    let r3 =
        revision_after(&[&["role", "assign", "alice", "ticket-reader"][..], &db].concat()).await;
    assert_eq!(r3, 3);

    let table = ok(&[&["policy", "export"][..], &db].concat()).await;
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

    let listed = json(&[&["policy", "export"][..], &db].concat()).await;
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
    let e = fails(&grant(&[])).await;
    assert!(text(&e).contains("already exists"), "{e:#}");
    let e = fails(
        &[
            &[
                "role",
                "revoke",
                "ticket-reader",
                "call",
                "tool:tickets/list_*",
                "--yes",
            ][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert!(
        text(&e).contains(
            "cannot revoke `p, ticket-reader, default, tool:tickets/list_*, call, allow`"
        ),
        "{e:#}"
    );
    assert!(text(&e).contains("no such rule"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    // The deny rule is only revoked as a deny rule, in its tenant.
    fails(
        &[
            &[
                "role",
                "revoke",
                "ticket-reader",
                "call",
                "tool:tickets/delete_*",
                "--tenant",
                "acme",
                "--yes",
            ][..],
            &db,
        ]
        .concat(),
    )
    .await;
    let e = fails(
        &[
            &["role", "unassign", "bob", "ticket-reader", "--yes"][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert!(text(&e).contains("bob"), "{e:#}");
    assert_eq!(
        json(&[&["policy", "export"][..], &db].concat()).await["revision"],
        3
    );

    let r4 = revision_after(
        &[
            &[
                "role",
                "revoke",
                "ticket-reader",
                "call",
                "tool:tickets/get_*",
                "--yes",
            ][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert_eq!(r4, 4);
    let r5 = revision_after(
        &[
            &[
                "role",
                "revoke",
                "ticket-reader",
                "call",
                "tool:tickets/delete_*",
                "--deny",
                "--tenant",
                "acme",
                "-y",
            ][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert_eq!(r5, 5);
    let r6 = revision_after(
        &[
            &["role", "unassign", "alice", "ticket-reader", "--yes"][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert_eq!(r6, 6);

    let empty = json(&[&["policy", "export"][..], &db].concat()).await;
    assert_eq!(empty["revision"], 6);
    assert_eq!(empty["rules"], serde_json::json!([]));
    assert_eq!(empty["assignments"], serde_json::json!([]));
    let table = ok(&[&["role", "list"][..], &db].concat()).await;
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
    let db = ["--database-url", url.as_str()];
    ok(&[&["role", "grant", "r", "call", "tool:tickets/x"][..], &db].concat()).await;

    let e = fails(
        &[
            &["role", "grant", "r", "call", "tool:tickets/[oops"][..],
            &db,
        ]
        .concat(),
    )
    .await;
    assert!(text(&e).contains("invalid object pattern"), "{e:#}");
    assert!(text(&e).contains("tool:tickets/[oops"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);

    let e = fails(&[&["role", "grant", "r", "call", "tickets/get_*"][..], &db].concat()).await;
    assert!(text(&e).contains("cannot grant"), "{e:#}");
    let e = fails(&[&["role", "grant", "r", "delete", "tool:tickets/*"][..], &db].concat()).await;
    assert!(text(&e).contains("delete"), "{e:#}");
    // An assignment to every tenant would silently never apply, so it is refused.
    fails(&[&["role", "assign", "alice", "r", "--tenant", "*"][..], &db].concat()).await;

    let listed = json(&[&["policy", "export"][..], &db].concat()).await;
    assert_eq!(listed["revision"], 1);
    assert_eq!(listed["rules"].as_array().map(Vec::len), Some(1));
}
