//! Snapshot tests: the `--help` of every command, and the table and JSON output of the
//! inspection commands on a fixed policy.
//!
//! Expected texts live in `tests/it/snapshots/`. After an intended change, run the tests with
//! `UPDATE_SNAPSHOTS=1` to rewrite them, and review the diff before committing.

use std::path::PathBuf;

use authz_admin::{Cli, format_time};
use authz_test_support::policies_dir;
use clap::CommandFactory as _;
use clap::Parser as _;

use crate::common::{json, ok, run, sqlite_url};

/// The environment variable that makes snapshot tests rewrite their expected files.
const UPDATE: &str = "UPDATE_SNAPSHOTS";

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots")
}

/// Compares `actual` with the snapshot `name`, or rewrites it when `UPDATE_SNAPSHOTS=1`.
/// Returns a description of the mismatch instead of panicking, so one run reports them all.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = snapshot_dir().join(name);
    if std::env::var(UPDATE).is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create snapshot dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{name} differs (run with {UPDATE}=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}"
        )),
        Err(_) => Some(format!(
            "{name} is missing (run with {UPDATE}=1 to create it):\n{actual}"
        )),
    }
}

fn assert_all(mismatches: Vec<String>) {
    assert!(
        mismatches.is_empty(),
        "{} snapshot(s) differ:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// Every command path, e.g. `[]`, `["role"]`, `["role", "create"]`.
fn command_paths(cmd: &clap::Command, prefix: Vec<String>, paths: &mut Vec<Vec<String>>) {
    paths.push(prefix.clone());
    for sub in cmd.get_subcommands() {
        let mut path = prefix.clone();
        path.push(sub.get_name().to_owned());
        command_paths(sub, path, paths);
    }
}

#[test]
fn help_of_every_command_matches_its_snapshot() {
    let mut paths = Vec::new();
    command_paths(&Cli::command(), Vec::new(), &mut paths);
    assert!(paths.len() > 20, "{paths:?}");
    let mut mismatches = Vec::new();
    let mut expected_files = Vec::new();
    for path in &paths {
        let argv = std::iter::once("authzctl".to_owned())
            .chain(path.iter().cloned())
            .chain(["--help".to_owned()]);
        let err = Cli::try_parse_from(argv).expect_err("--help exits early");
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelp,
            "{path:?}: {err}"
        );
        let name = if path.is_empty() {
            "help/authzctl.txt".to_owned()
        } else {
            format!("help/authzctl-{}.txt", path.join("-"))
        };
        expected_files.push(name.clone());
        mismatches.extend(check(&name, &err.to_string()));
    }
    // A snapshot of a command that no longer exists is stale.
    if std::env::var(UPDATE).is_err() {
        let dir = snapshot_dir().join("help");
        for entry in std::fs::read_dir(&dir).expect("help snapshots") {
            let file = format!(
                "help/{}",
                entry.expect("entry").file_name().to_string_lossy()
            );
            if !expected_files.contains(&file) {
                mismatches.push(format!("{file} belongs to no command; delete it"));
            }
        }
    }
    assert_all(mismatches);
}

/// The store every output snapshot is taken from: the repository's policy, a declared role,
/// a deleted role and a revoke, all made by the actor `snapshot`.
async fn fixture(url: &str) {
    let db = ["--database-url", url, "--actor", "snapshot"];
    let policy = policies_dir().join("policy.csv").display().to_string();
    for args in [
        &["policy", "import", &policy][..],
        &[
            "role",
            "create",
            "ticket-reader",
            "--description",
            "Analysts: read tickets, never change them",
        ],
        &["role", "create", "on-call"],
        &["role", "grant", "temp", "call", "tool:tickets/list_*"],
        &["role", "delete", "temp", "--yes"],
        &[
            "role",
            "revoke",
            "security-officer",
            "read",
            "resource:tickets/**",
            "--tenant",
            "*",
            "--yes",
        ],
    ] {
        ok(&[args, &db[..]].concat()).await;
    }
}

#[tokio::test]
async fn output_of_inspection_commands_matches_its_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "policy.db");
    fixture(&url).await;
    let db = ["--database-url", url.as_str()];
    let policy = policies_dir().join("policy.csv").display().to_string();

    // Times and the store path differ from run to run; they are replaced by placeholders.
    let history = json(&[&["policy", "history"][..], &db].concat()).await;
    let times: Vec<String> = history["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| format_time(c["at_ms"].as_i64().expect("at_ms") / 1000 * 1000))
        .collect();
    let stable = |text: String| {
        let mut text = text.replace(&url, "<store>");
        for time in &times {
            text = text.replace(time, "<time>");
        }
        text
    };
    let masked_json = |mut v: serde_json::Value| {
        if let Some(changes) = v.get_mut("changes").and_then(|c| c.as_array_mut()) {
            for c in changes.iter_mut().filter(|c| c.is_object()) {
                c["at_ms"] = 0.into();
                c["at"] = "<time>".into();
            }
        }
        stable(serde_json::to_string_pretty(&v).expect("json") + "\n")
    };

    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("role-list", vec!["role", "list"]),
        ("role-show", vec!["role", "show", "ticket-reader"]),
        ("role-show-undeclared", vec!["role", "show", "ticket-admin"]),
        ("subject-show", vec!["subject", "show", "dave"]),
        (
            "subject-show-tenant",
            vec!["subject", "show", "sam", "--tenant", "acme"],
        ),
        ("subject-show-nobody", vec!["subject", "show", "nobody"]),
        ("policy-export", vec!["policy", "export"]),
        ("policy-history", vec!["policy", "history"]),
        (
            "role-grant-dry-run",
            vec![
                "role",
                "grant",
                "on-call",
                "call",
                "tool:tickets/*",
                "--dry-run",
            ],
        ),
        (
            "role-delete-dry-run",
            vec!["role", "delete", "ticket-admin", "--dry-run"],
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, args) in &cases {
        let with_db = [&args[..], &db[..]].concat();
        mismatches.extend(check(
            &format!("output/{name}.txt"),
            &stable(ok(&with_db).await),
        ));
        mismatches.extend(check(
            &format!("output/{name}.json"),
            &masked_json(json(&with_db).await),
        ));
    }
    // Lint reads files; its exit outcome is checked elsewhere.
    let lint_args = [
        "policy",
        "lint",
        "--policy",
        &policy,
        "--upstream",
        "tickets",
        "--tool",
        "tickets/get_ticket",
        "--tool",
        "tickets/list_tickets",
    ];
    let (_, text) = run(&lint_args).await.expect("lint");
    let policy_rel = "policies/policy.csv";
    mismatches.extend(check(
        "output/policy-lint.txt",
        &text.replace(&policy, policy_rel),
    ));
    let (_, text) = run(&[&lint_args[..], &["-o", "json"]].concat())
        .await
        .expect("lint");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    mismatches.extend(check(
        "output/policy-lint.json",
        &(serde_json::to_string_pretty(&v).expect("json") + "\n").replace(&policy, policy_rel),
    ));
    assert_all(mismatches);
}
