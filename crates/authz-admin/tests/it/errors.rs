//! User-grade errors: which flag or variable is missing, redacted URLs, exit codes, and what
//! `run_cli` prints (one error line and its causes, never a backtrace).

use authz_admin::{
    AUDIT_URL_ENV, EXIT_ERROR, EXIT_USAGE, POLICY_URL_ENV, REVOCATION_URL_ENV, UsageError,
    exit_code_of, run_cli,
};

use crate::common::{fails, model, parse};

/// Runs through `run_cli` like the binary and returns (exit code, stdout, stderr).
fn run_like_the_binary(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_cli(parse(args), &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

/// `policy check a tools/call x <extra>`, run like the binary.
fn check_like_the_binary(extra: &[&str]) -> (u8, String, String) {
    run_like_the_binary(&[&["policy", "check", "a", "tools/call", "x"][..], extra].concat())
}

#[tokio::test]
async fn a_missing_policy_store_names_the_flag_and_the_variable() {
    if crate::common::env_is_set(POLICY_URL_ENV) {
        return;
    }
    for args in [
        &["role", "list"][..],
        &["role", "show", "r"],
        &["role", "create", "r"],
        &["role", "delete", "r", "--yes"],
        &["role", "grant", "r", "call", "tool:t/x"],
        &["role", "revoke", "r", "call", "tool:t/x", "--yes"],
        &["role", "assign", "alice", "r"],
        &["role", "unassign", "alice", "r", "--yes"],
        &["subject", "show", "alice"],
        &["policy", "import", "policies/policy.csv"],
        &["policy", "export"],
        &["policy", "history"],
    ] {
        let e = fails(args).await;
        assert!(e.downcast_ref::<UsageError>().is_some(), "{args:?}: {e:#}");
        assert_eq!(exit_code_of(&e), EXIT_USAGE);
        let message = e.to_string();
        assert!(message.contains("--database-url"), "{message}");
        assert!(message.contains(POLICY_URL_ENV), "{message}");
    }
}

#[tokio::test]
async fn a_missing_audit_store_names_the_flag_and_the_variable() {
    if crate::common::env_is_set(AUDIT_URL_ENV) {
        return;
    }
    let e = fails(&["audit", "list"]).await;
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
    assert!(e.to_string().contains("--database-url"), "{e}");
    assert!(e.to_string().contains(AUDIT_URL_ENV), "{e}");
}

#[test]
fn usage_errors_print_a_hint_and_exit_2() {
    if crate::common::env_is_set(POLICY_URL_ENV) {
        return;
    }
    let (code, out, err) = run_like_the_binary(&["role", "list"]);
    assert_eq!(code, EXIT_USAGE);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("authzctl: error: no policy store given"),
        "{err}"
    );
    assert!(err.contains("try '--help'"), "{err}");
}

#[test]
fn store_errors_redact_passwords_and_exit_1() {
    let (code, out, err) = run_like_the_binary(&[
        "role",
        "list",
        "--database-url",
        "mysql://admin:s3cret@db.example/authz",
    ]);
    assert_eq!(code, EXIT_ERROR);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with(
            "authzctl: error: cannot open the policy store mysql://admin:***@db.example/authz"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "caused by: invalid store URL mysql://admin:***@db.example/authz: unsupported scheme"
        ),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("panicked"),
        "{err}"
    );

    let (code, _, err) = run_like_the_binary(&[
        "audit",
        "list",
        "--database-url",
        "mysql://admin:s3cret@db.example/audit",
    ]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("mysql://admin:***@db.example/audit"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    let model = model();
    let (code, _, err) = check_like_the_binary(&[
        "--model",
        &model,
        "--database-url",
        "mysql://admin:s3cret@db.example/authz",
    ]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("mysql://admin:***@db.example/authz"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn missing_policy_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing_model = dir.path().join("model.conf").display().to_string();
    let missing_policy = dir.path().join("policy.csv").display().to_string();
    let model = model();
    let policy = authz_test_support::policies_dir()
        .join("policy.csv")
        .display()
        .to_string();
    let (code, _, err) = check_like_the_binary(&["--model", &missing_model, "--policy", &policy]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains(&missing_model), "{err}");
    let (code, _, err) = check_like_the_binary(&["--model", &model, "--policy", &missing_policy]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains(&missing_policy), "{err}");
    assert!(err.contains("caused by:"), "{err}");
}

#[test]
fn bad_operations_are_explained() {
    let model = model();
    let (code, _, err) =
        run_like_the_binary(&["policy", "check", "a", "tools/nope", "x", "--model", &model]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("unknown MCP method `tools/nope`"), "{err}");
    let (code, _, err) = run_like_the_binary(&[
        "policy",
        "check",
        "a",
        "completion/complete",
        "x",
        "--model",
        &model,
    ]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("prompt:<name> or resource:<uri>"), "{err}");
}

#[test]
fn an_unreachable_postgres_is_reported_with_its_cause() {
    // Nothing listens on port 1, so the connection is refused at once.
    let (code, _, err) = run_like_the_binary(&[
        "role",
        "list",
        "--database-url",
        "postgres://admin:s3cret@127.0.0.1:1/authz",
    ]);
    assert_eq!(code, EXIT_ERROR);
    assert!(
        err.starts_with(
            "authzctl: error: cannot open the policy store postgres://admin:***@127.0.0.1:1/authz"
        ),
        "{err}"
    );
    assert!(err.contains("caused by:"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
fn a_missing_postgres_database_is_reported_with_its_name() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL (run cargo xtask test)");
    let missing = format!("authz_missing_{}", uuid::Uuid::new_v4().simple());
    let url = authz_test_support::with_database(&admin_url, &missing);
    let (code, _, err) = run_like_the_binary(&["audit", "list", "--database-url", &url]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.contains("cannot open the audit store"), "{err}");
    assert!(
        err.contains(&format!("database \"{missing}\" does not exist")),
        "{err}"
    );
}

#[test]
fn bad_arguments_of_the_new_commands_are_usage_errors() {
    for args in [
        &["authzctl", "policy", "history", "--limit", "many"][..],
        &["authzctl", "role", "create"],
        &["authzctl", "role", "delete"],
        &["authzctl", "subject", "show"],
        &["authzctl", "subject", "list"],
        &["authzctl", "role", "show", "a", "b"],
        &["authzctl", "policy", "export", "--yes"],
    ] {
        let err = <authz_admin::Cli as clap::Parser>::try_parse_from(args).expect_err("usage");
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
    }
}

#[tokio::test]
async fn an_empty_subject_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::common::sqlite_url(dir.path(), "policy.db");
    let e = fails(&["subject", "show", "", "--database-url", &url]).await;
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
}

#[test]
fn unreachable_stores_fail_the_new_commands_with_exit_1() {
    for args in [
        &["role", "show", "r"][..],
        &["subject", "show", "alice"],
        &["policy", "export"],
        &["policy", "history"],
        &["policy", "lint"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--database-url", "mysql://admin:s3cret@db.example/authz"]);
        let (code, out, err) = run_like_the_binary(&all);
        assert_eq!(code, EXIT_ERROR, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("mysql://admin:***@db.example/authz"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[tokio::test]
async fn missing_audit_and_revocation_stores_are_usage_errors() {
    if crate::common::env_is_set(AUDIT_URL_ENV) {
        return;
    }
    for args in [
        &["audit", "tail"][..],
        &["audit", "export"],
        &["audit", "verify"],
        &["audit", "prune", "--before", "1h", "--yes"],
    ] {
        let e = fails(args).await;
        assert_eq!(exit_code_of(&e), EXIT_USAGE, "{args:?}: {e:#}");
        assert!(e.to_string().contains(AUDIT_URL_ENV), "{e}");
    }
    if crate::common::env_is_set(REVOCATION_URL_ENV) {
        return;
    }
    for args in [
        &["token", "revoke", "--jti", "t-1"][..],
        &["token", "revocations"],
        &["token", "prune-revocations"],
    ] {
        let e = fails(args).await;
        assert_eq!(exit_code_of(&e), EXIT_USAGE, "{args:?}: {e:#}");
        let message = e.to_string();
        assert!(message.contains("--database-url"), "{message}");
        assert!(message.contains(REVOCATION_URL_ENV), "{message}");
        assert!(message.contains(AUDIT_URL_ENV), "{message}");
    }
}

#[test]
fn revoke_takes_exactly_one_of_jti_and_subject() {
    for args in [
        &["authzctl", "token", "revoke"][..],
        &[
            "authzctl",
            "token",
            "revoke",
            "--jti",
            "a",
            "--subject",
            "b",
            "--issuer",
            "c",
        ],
        &["authzctl", "token", "revoke", "--subject", "b"],
        &["authzctl", "token", "revoke", "--issuer", "c"],
        &[
            "authzctl",
            "token",
            "revoke",
            "--jti",
            "a",
            "--before",
            "2025-01-01T00:00:00Z",
        ],
        &[
            "authzctl",
            "token",
            "revoke",
            "--jti",
            "a",
            "--keep-for",
            "1h",
        ],
        &[
            "authzctl",
            "token",
            "revoke",
            "--subject",
            "b",
            "--issuer",
            "c",
            "--expires-at",
            "1h",
        ],
        &[
            "authzctl",
            "token",
            "revoke",
            "--jti",
            "a",
            "--expires-at",
            "soon",
        ],
        &["authzctl", "audit", "tail", "--max-polls", "1"],
        &["authzctl", "audit", "prune"],
        &["authzctl", "audit", "prune", "--before", "yesterday"],
        &["authzctl", "audit", "export", "--format", "xml"],
        &["authzctl", "audit", "list", "--reason", "nope"],
        &["authzctl", "audit", "list", "--limit", "0"],
        &["authzctl", "keys", "generate-audit"],
    ] {
        let err = <authz_admin::Cli as clap::Parser>::try_parse_from(args).expect_err("usage");
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
    }
}

#[test]
fn revocation_and_audit_store_errors_redact_passwords_and_exit_1() {
    for (args, store) in [
        (&["token", "revocations"][..], "revocation store"),
        (&["token", "revoke", "--jti", "t"], "revocation store"),
        (&["audit", "verify"], "audit store"),
        (&["audit", "export"], "audit store"),
    ] {
        let mut all = args.to_vec();
        all.extend(["--database-url", "mysql://admin:s3cret@db.example/authz"]);
        let (code, out, err) = run_like_the_binary(&all);
        assert_eq!(code, EXIT_ERROR, "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.starts_with(&format!(
                "authzctl: error: cannot open the {store} mysql://admin:***@db.example/authz"
            )),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}
