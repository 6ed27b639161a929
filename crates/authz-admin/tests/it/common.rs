//! Helpers shared by the test modules: parsing and running commands, store URLs.

use std::path::Path;

use authz_admin::{Cli, Outcome, execute};
use authz_test_support::policies_dir;
use clap::Parser as _;

/// Parses `authzctl <args>`, panicking on a usage error (tests of usage errors parse themselves).
pub(crate) fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("authzctl").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("authzctl {args:?} did not parse:\n{e}"),
    }
}

/// Runs `authzctl <args>` and returns the outcome and stdout, or the error.
pub(crate) async fn run(args: &[&str]) -> anyhow::Result<(Outcome, String)> {
    let mut out = Vec::new();
    let outcome = execute(parse(args), &mut out).await?;
    Ok((outcome, String::from_utf8(out).expect("utf-8 output")))
}

/// Runs `authzctl <args>`, expects success and returns stdout.
pub(crate) async fn ok(args: &[&str]) -> String {
    match run(args).await {
        Ok((Outcome::Success, out)) => out,
        Ok((outcome, out)) => panic!("authzctl {args:?} ended {outcome:?}:\n{out}"),
        Err(e) => panic!("authzctl {args:?} failed: {e:#}"),
    }
}

/// Runs `authzctl <args>`, expects an error and returns it.
pub(crate) async fn fails(args: &[&str]) -> anyhow::Error {
    match run(args).await {
        Ok((outcome, out)) => panic!("authzctl {args:?} should fail but ended {outcome:?}:\n{out}"),
        Err(e) => e,
    }
}

/// Runs `authzctl <args>` with `-o json` appended and parses stdout as one JSON document.
pub(crate) async fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = ok(&all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The error with its causes on one line, as the binary prints it (minus the prefix).
pub(crate) fn text(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// `args` followed by `--database-url <url>`.
pub(crate) fn with_db<'a>(args: &[&'a str], url: &'a str) -> Vec<&'a str> {
    [args, &["--database-url", url][..]].concat()
}

/// A SQLite URL for a new database file in `dir`.
pub(crate) fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(name).display())
}

/// The repository's Casbin model, as a string argument.
pub(crate) fn model() -> String {
    policies_dir().join("model.conf").display().to_string()
}

/// Whether an environment variable that clap would read instead of a missing flag is set; tests
/// of "missing URL" messages can only run when it is not.
pub(crate) fn env_is_set(name: &str) -> bool {
    let set = std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set {
        println!("skipped: {name} is set in the environment, so the flag is never missing");
    }
    set
}
