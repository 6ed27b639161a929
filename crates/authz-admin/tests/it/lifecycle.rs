//! Role lifecycle (create, show, delete), subjects, confirmations and dry runs, export, lint and
//! history through the CLI, on SQLite and Postgres.

use authz_admin::{
    Confirmation, EXIT_ERROR, EXIT_LINT, EXIT_USAGE, Outcome, UsageError, execute_with,
    exit_code_of,
};
use authz_test_support::{TestDatabase, policies_dir};

use crate::common::{fails, json, ok, parse, run, sqlite_url, text};

/// Runs `authzctl <args>` answering a confirmation with `answer`.
async fn answered(args: &[&str], answer: bool) -> anyhow::Result<(Outcome, String)> {
    let mut out = Vec::new();
    let outcome = execute_with(parse(args), &mut out, Confirmation::Answer(answer)).await?;
    Ok((outcome, String::from_utf8(out).expect("utf-8")))
}

async fn revision(db: &[&str]) -> i64 {
    json(&[&["policy", "export"][..], db].concat()).await["revision"]
        .as_i64()
        .expect("revision")
}

async fn lifecycle(url: &str) {
    let db = ["--database-url", url, "--actor", "ops"];
    let with = |args: &[&'static str]| [args, &db[..]].concat();

    // Declaring a role, once.
    let created = json(&with(&[
        "role",
        "create",
        "reader",
        "--description",
        "reads",
    ]))
    .await;
    assert_eq!(created["revision"], 1);
    assert_eq!(
        created["lines"],
        serde_json::json!(["+ role reader: reads"])
    );
    let e = fails(&with(&["role", "create", "reader"])).await;
    assert!(text(&e).contains("cannot create role reader"), "{e:#}");
    assert!(text(&e).contains("already exists"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    let e = fails(&with(&["role", "create", "user:bob"])).await;
    assert!(text(&e).contains("may not start with"), "{e:#}");
    let out = ok(&with(&["role", "create", "writer", "--dry-run"])).await;
    assert!(
        out.starts_with("dry run: would create role writer"),
        "{out}"
    );
    assert_eq!(revision(&db).await, 1);

    ok(&with(&[
        "role",
        "grant",
        "reader",
        "call",
        "tool:tickets/get_*",
    ]))
    .await;
    ok(&with(&[
        "role",
        "grant",
        "reader",
        "call",
        "tool:tickets/list_*",
    ]))
    .await;
    ok(&with(&["role", "assign", "alice", "reader"])).await;
    ok(&with(&[
        "role", "assign", "alice", "reader", "--tenant", "acme",
    ]))
    .await;
    assert_eq!(revision(&db).await, 5);

    // Dry runs check what the change would meet, and write nothing.
    let e = fails(&with(&[
        "role",
        "grant",
        "reader",
        "call",
        "tool:tickets/get_*",
        "--dry-run",
    ]))
    .await;
    assert!(text(&e).contains("already exists"), "{e:#}");
    let e = fails(&with(&[
        "role",
        "revoke",
        "reader",
        "call",
        "tool:tickets/nope",
        "--dry-run",
    ]))
    .await;
    assert!(text(&e).contains("no such rule"), "{e:#}");
    let v = json(&with(&["role", "unassign", "alice", "reader", "--dry-run"])).await;
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        v["lines"],
        serde_json::json!(["- g, user:alice, reader, default"])
    );
    let v = json(&with(&["role", "assign", "bob", "reader", "--dry-run"])).await;
    assert_eq!(
        v["lines"],
        serde_json::json!(["+ g, user:bob, reader, default"])
    );
    assert_eq!(revision(&db).await, 5);

    // Who holds what.
    let alice = json(&with(&["subject", "show", "alice"])).await;
    assert_eq!(alice["name"], "user:alice");
    let tenants = alice["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 2, "{alice}");
    assert_eq!(tenants[0]["tenant"], "acme");
    assert_eq!(tenants[0]["permissions"], serde_json::json!([]));
    assert_eq!(tenants[1]["roles"], serde_json::json!(["reader"]));
    assert_eq!(tenants[1]["permissions"].as_array().map(Vec::len), Some(2));
    let listed = json(&with(&["role", "list"])).await;
    assert_eq!(listed["roles"][0]["name"], "reader");
    assert_eq!(listed["roles"][0]["declared"], true);
    assert_eq!(listed["roles"][0]["rules"], 2);
    assert_eq!(listed["roles"][0]["holders"], 2);

    // Destructive changes need confirmation: refused without a terminal (exit 2), declined
    // (exit 1), and nothing changes either way.
    let delete = with(&["role", "delete", "reader"]);
    let e = fails(&delete).await;
    assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
    assert!(text(&e).contains("pass --yes"), "{e:#}");
    let e = answered(&delete, false).await.expect_err("declined");
    assert!(
        text(&e).contains("not confirmed; nothing was changed"),
        "{e:#}"
    );
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    for args in [
        with(&["role", "revoke", "reader", "call", "tool:tickets/get_*"]),
        with(&["role", "unassign", "alice", "reader"]),
    ] {
        let e = fails(&args).await;
        assert_eq!(exit_code_of(&e), EXIT_USAGE, "{args:?}: {e:#}");
    }
    assert_eq!(revision(&db).await, 5);

    let (_, out) = answered(&delete, true).await.expect("confirmed");
    assert!(
        out.starts_with("deleted role reader (5 line(s) removed) (policy revision 6)"),
        "{out}"
    );
    assert!(out.contains("  - g, user:alice, reader, acme"), "{out}");
    let e = fails(&[&delete[..], &["--yes"]].concat()).await;
    assert!(
        text(&e).contains("no rule, assignment or declaration names it"),
        "{e:#}"
    );
    let e = fails(&with(&["role", "show", "reader"])).await;
    assert!(text(&e).contains("no role named reader"), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);

    // Every change is in the history, with the actor and the revisions it moved between.
    let history = json(&with(&["policy", "history", "--limit", "3"])).await;
    let changes = history["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["action"], "role-delete");
    assert_eq!(changes[0]["actor"], "ops");
    assert_eq!(changes[0]["from_revision"], 5);
    assert_eq!(changes[0]["to_revision"], 6);
    assert_eq!(changes[1]["action"], "assign");
    assert!(changes[0]["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let all = json(&with(&["policy", "history"])).await;
    let actions: Vec<&str> = all["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        vec![
            "role-delete",
            "assign",
            "assign",
            "grant",
            "grant",
            "role-create"
        ]
    );
}

#[tokio::test]
async fn role_lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    lifecycle(&sqlite_url(dir.path(), "policy.db")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn role_lifecycle_on_postgres() {
    let db = TestDatabase::postgres().await;
    lifecycle(db.url()).await;
}

#[tokio::test]
async fn export_round_trips_through_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = sqlite_url(dir.path(), "first.db");
    let second = sqlite_url(dir.path(), "second.db");
    let policy = policies_dir().join("policy.csv").display().to_string();
    ok(&["policy", "import", &policy, "--database-url", &first]).await;
    let csv = ok(&["policy", "export", "--database-url", &first]).await;
    assert!(csv.starts_with("# policy exported from sqlite://"), "{csv}");
    let exported = dir.path().join("exported.csv");
    std::fs::write(&exported, &csv).expect("write");
    let exported = exported.display().to_string();
    ok(&["policy", "import", &exported, "--database-url", &second]).await;
    let a = json(&["policy", "export", "--database-url", &first]).await;
    let b = json(&["policy", "export", "--database-url", &second]).await;
    assert_eq!(a["rules"], b["rules"]);
    assert_eq!(a["assignments"], b["assignments"]);
    assert_eq!(a["rules"].as_array().map(Vec::len), Some(13));
}

#[tokio::test]
async fn lint_reports_and_exits_by_severity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policies_dir().join("policy.csv").display().to_string();
    let lint = |extra: &[&str]| {
        let mut args = vec!["policy", "lint", "--policy", policy.as_str()];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run_owned = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs).await
    };

    let (outcome, out) = run_owned(lint(&["--upstream", "tickets"]))
        .await
        .expect("lint");
    assert_eq!(outcome, Outcome::Success);
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
    let (outcome, out) = run_owned(lint(&["--upstream", "billing"]))
        .await
        .expect("lint");
    assert_eq!(outcome, Outcome::LintErrors);
    assert_eq!(outcome.exit_code(), EXIT_LINT);
    assert!(
        out.contains("policy.csv:17: error [unknown_upstream]"),
        "{out}"
    );
    let (outcome, out) = run_owned(lint(&[
        "--tool",
        "tickets/get_ticket",
        "--strict",
        "-o",
        "json",
    ]))
    .await
    .expect("lint");
    assert_eq!(outcome, Outcome::LintErrors);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(v["errors"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["findings"][0]["severity"], "error");
    assert_eq!(v["findings"][0]["origin"]["kind"], "file");

    // From the store, findings name the row.
    let url = sqlite_url(dir.path(), "policy.db");
    ok(&[
        "role",
        "grant",
        "r",
        "call",
        "tool:billing/*",
        "--database-url",
        &url,
    ])
    .await;
    let (outcome, out) = run(&[
        "policy",
        "lint",
        "--upstream",
        "tickets",
        "--database-url",
        &url,
    ])
    .await
    .expect("lint");
    assert_eq!(outcome, Outcome::LintErrors);
    assert!(
        out.contains("casbin_rule row 1: error [unknown_upstream]"),
        "{out}"
    );
    assert!(out.contains("(policy revision 1)"), "{out}");

    // A file that does not parse is an error naming its line; a malformed --tool is a usage
    // error from clap.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "p, r, default, tool:t/x, call, allow\np, r, default, tool:t/[, call, allow\n",
    )
    .expect("write");
    let bad = bad.display().to_string();
    let e = fails(&["policy", "lint", "--policy", &bad]).await;
    assert!(text(&e).contains(&format!("line 2 in {bad}")), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    let err = <authz_admin::Cli as clap::Parser>::try_parse_from([
        "authzctl", "policy", "lint", "--tool", "no-slash",
    ])
    .expect_err("bad --tool");
    assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
    assert!(
        err.to_string().contains("is not <upstream>/<tool>"),
        "{err}"
    );
}
