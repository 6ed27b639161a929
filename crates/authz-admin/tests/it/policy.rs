//! `policy import` into a real store and `policy check` against the store and the repository's
//! policy files: exit outcomes, `--explain`, JSON output.

use std::path::Path;

use authz_admin::{EXIT_DENY, EXIT_ERROR, Outcome, exit_code_of, run_cli};
use authz_test_support::{TestDatabase, policies_dir};

use crate::common::{fails, json, model, ok, parse, run, sqlite_url, text};

const POLICY: &str = "\
# Readers look; admins inherit reading and may call every tool; auditors may never delete.
p, ticket-reader, default, tool:tickets/get_*, call, allow
p, ticket-reader, default, tool:tickets/list_*, call, allow
p, ticket-admin, default, tool:tickets/*, call, allow
p, ticket-auditor, default, tool:tickets/delete_*, call, deny
g, ticket-admin, ticket-reader, default
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy");
    path.display().to_string()
}

/// `policy check` against the store at `url` with the token roles given, returning the outcome.
async fn check(url: &str, roles: &[&str], tool: &str) -> Outcome {
    let model = model();
    let mut args = vec![
        "policy",
        "check",
        "mallory",
        "tools/call",
        tool,
        "--model",
        &model,
    ];
    for role in roles {
        args.extend(["--role", role]);
    }
    args.extend(["--database-url", url]);
    match run(&args).await {
        Ok((outcome, _)) => outcome,
        Err(e) => panic!("{args:?}: {e:#}"),
    }
}

async fn import_then_check(url: &str, dir: &Path) {
    let csv = write(dir, "policy.csv", POLICY);
    let out = ok(&["policy", "import", &csv, "--database-url", url]).await;
    assert!(out.contains("4 rules, 1 assignments"), "{out}");
    assert!(out.contains("policy revision 0 -> 1"), "{out}");
    assert!(!out.contains("password"), "{out}");

    // Importing the same file again adds nothing and keeps the revision.
    let again = json(&["policy", "import", &csv, "--database-url", url]).await;
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["revision"], 1);
    assert_eq!(again["rules"], 4);
    assert_eq!(again["assignments"], 1);
    assert_eq!(again["dry_run"], false);

    assert_eq!(
        check(url, &["ticket-reader"], "get_ticket").await,
        Outcome::Success
    );
    assert_eq!(
        check(url, &["ticket-reader"], "delete_ticket").await,
        Outcome::Deny
    );
    assert_eq!(check(url, &[], "get_ticket").await, Outcome::Deny);
    assert_eq!(
        check(url, &["ticket-admin"], "delete_ticket").await,
        Outcome::Success
    );
    assert_eq!(
        check(url, &["ticket-admin", "ticket-auditor"], "delete_ticket").await,
        Outcome::Deny
    );
    // Inherited through `g, ticket-admin, ticket-reader`.
    assert_eq!(
        check(url, &["ticket-admin"], "list_tickets").await,
        Outcome::Success
    );

    // A subject assigned a role in the store is allowed without token roles.
    ok(&[
        "role",
        "assign",
        "bob",
        "ticket-reader",
        "--database-url",
        url,
    ])
    .await;
    let model = model();
    let (outcome, out) = run(&[
        "policy",
        "check",
        "bob",
        "tools/call",
        "get_ticket",
        "--model",
        &model,
        "--database-url",
        url,
    ])
    .await
    .expect("check");
    assert_eq!(outcome, Outcome::Success, "{out}");
    assert!(out.starts_with("ALLOW (policy_allow)"), "{out}");
    assert!(
        out.contains("p, ticket-reader, default, tool:tickets/get_*, call, allow"),
        "{out}"
    );
}

#[tokio::test]
async fn import_then_check_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    import_then_check(&sqlite_url(dir.path(), "policy.db"), dir.path()).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn import_then_check_on_postgres() {
    let db = TestDatabase::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    import_then_check(db.url(), dir.path()).await;
}

#[tokio::test]
async fn explain_and_json_show_how_the_store_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "policy.db");
    let csv = write(dir.path(), "policy.csv", POLICY);
    ok(&["policy", "import", &csv, "--database-url", &url]).await;
    let model = model();
    let base = [
        "policy",
        "check",
        "mallory",
        "tools/call",
        "delete_ticket",
        "--role",
        "ticket-admin",
        "--role",
        "ticket-auditor",
        "--model",
        &model,
        "--database-url",
        &url,
    ];

    let (outcome, out) = run(&[&base[..], &["--explain"]].concat())
        .await
        .expect("check");
    assert_eq!(outcome, Outcome::Deny, "{out}");
    assert!(
        out.starts_with("DENY (explicit_deny) by `p, ticket-auditor"),
        "{out}"
    );
    assert!(out.contains("objects: tool:tickets/delete_ticket"), "{out}");
    assert!(out.contains("candidates:"), "{out}");
    assert!(out.contains("ticket-admin (token role"), "{out}");
    assert!(out.contains("matched rules:"), "{out}");
    // Both the allow and the deny that overrode it are reported.
    assert!(
        out.contains("p, ticket-admin, default, tool:tickets/*, call, allow"),
        "{out}"
    );
    assert!(
        out.contains("p, ticket-auditor, default, tool:tickets/delete_*, call, deny"),
        "{out}"
    );

    let (outcome, out) = run(&[&base[..], &["--explain", "-o", "json"]].concat())
        .await
        .expect("check");
    assert_eq!(outcome, Outcome::Deny);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "explicit_deny");
    assert_eq!(v["policy_revision"], 1);
    assert_eq!(v["target"], "delete_ticket");
    assert_eq!(
        v["explain"]["matches"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    assert_eq!(
        v["explain"]["candidates"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );

    let v = json(&[
        "policy",
        "check",
        "mallory",
        "tools/call",
        "get_ticket",
        "--role",
        "ticket-reader",
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["reason"], "policy_allow");
    assert_eq!(
        v["matched_rule"],
        "p, ticket-reader, default, tool:tickets/get_*, call, allow"
    );
    assert!(v.get("explain").is_none());
}

/// `policy check someone tools/call <tool>` with the role `ticket-reader`, on the repository's
/// `model` and `policy` files.
fn check_reader<'a>(tool: &'a str, model: &'a str, policy: &'a str) -> [&'a str; 11] {
    [
        "policy",
        "check",
        "someone",
        "tools/call",
        tool,
        "--role",
        "ticket-reader",
        "--model",
        model,
        "--policy",
        policy,
    ]
}

#[tokio::test]
async fn check_reads_the_repository_policy_files() {
    let model = model();
    let policy = policies_dir().join("policy.csv").display().to_string();
    let check = |tool: &'static str| {
        let (model, policy) = (model.clone(), policy.clone());
        async move {
            run(&check_reader(tool, &model, &policy))
                .await
                .expect("check")
        }
    };
    let (outcome, out) = check("get_ticket").await;
    assert_eq!(outcome, Outcome::Success, "{out}");
    assert!(out.contains("tool:tickets/get_*"), "{out}");
    let (outcome, out) = check("delete_ticket").await;
    assert_eq!(outcome, Outcome::Deny, "{out}");
    assert!(out.starts_with("DENY (no_matching_rule)"), "{out}");
}

#[test]
fn check_exit_codes_are_0_for_allow_and_3_for_deny() {
    let model = model();
    let policy = policies_dir().join("policy.csv").display().to_string();
    let code = |tool: &str| {
        let cli = parse(&check_reader(tool, &model, &policy));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_cli(cli, &mut out, &mut err);
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        code
    };
    assert_eq!(code("get_ticket"), 0);
    assert_eq!(code("delete_ticket"), EXIT_DENY);
    assert_eq!(Outcome::Deny.exit_code(), EXIT_DENY);
    assert_eq!(
        format!("{:?}", std::process::ExitCode::from(Outcome::Deny)),
        format!("{:?}", std::process::ExitCode::from(EXIT_DENY))
    );
}

#[tokio::test]
async fn a_dry_run_validates_without_touching_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_file = dir.path().join("policy.db");
    let url = sqlite_url(dir.path(), "policy.db");
    let a = write(dir.path(), "a.csv", POLICY);
    let b = write(dir.path(), "b.csv", "g, alice, ticket-reader, default\n");

    let out = ok(&[
        "policy",
        "import",
        &a,
        &b,
        "--dry-run",
        "--database-url",
        &url,
    ])
    .await;
    assert!(
        out.contains(&format!("{a}: 4 rules, 1 assignments")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{b}: 0 rules, 1 assignments")),
        "{out}"
    );
    assert!(out.contains("dry run"), "{out}");
    assert!(!db_file.exists(), "a dry run must not create the store");

    // No store is needed at all for a dry run.
    let v = json(&["policy", "import", &a, &b, "--dry-run"]).await;
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["rules"], 4);
    assert_eq!(v["assignments"], 2);
    assert_eq!(v["files"].as_array().map(Vec::len), Some(2));
    assert!(v.get("revision").is_none(), "{v}");
}

#[tokio::test]
async fn an_invalid_policy_file_imports_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "policy.db");
    let good = write(dir.path(), "good.csv", POLICY);
    let bad = write(
        dir.path(),
        "bad.csv",
        "p, r, default, tool:tickets/x, call, allow\np, r, default, tool:tickets/[, call, allow\n",
    );
    for args in [
        vec!["policy", "import", &good, &bad, "--database-url", &url],
        vec!["policy", "import", &bad, "--dry-run"],
    ] {
        let e = fails(&args).await;
        assert!(text(&e).contains(&format!("line 2 in {bad}")), "{e:#}");
        assert_eq!(exit_code_of(&e), EXIT_ERROR);
    }
    let missing = dir.path().join("missing.csv").display().to_string();
    let e = fails(&["policy", "import", &missing, "--database-url", &url]).await;
    assert!(
        text(&e).contains(&format!("cannot read the policy file {missing}")),
        "{e:#}"
    );

    // Nothing was imported from the good file either.
    let listed = json(&["policy", "export", "--database-url", &url]).await;
    assert_eq!(listed["revision"], 0);
    assert_eq!(listed["rules"], serde_json::json!([]));
}
