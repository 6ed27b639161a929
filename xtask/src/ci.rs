//! `cargo xtask ci` and `cargo xtask test`: formatting, lints, the tests against a real Postgres,
//! and (ci) a short run of every fuzz target.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd;
use crate::postgres::Postgres;
use crate::tidy::Workspace;

/// `cargo xtask ci`: fmt check, clippy, then every test with a Postgres.
pub(crate) fn ci() -> Result<()> {
    let mut steps = Steps::default();
    steps.run("fmt", || {
        cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
    });
    steps.run("clippy", || {
        cmd::run(cmd::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    tests_with_postgres(&mut steps, &[]);
    steps.run("fuzz (a few seconds per target)", || {
        crate::fuzz::run(crate::fuzz::CI_SECS, &[], false)
    });
    steps.finish()
}

/// `cargo xtask test [-- ARGS]`: the tests with a Postgres, `ARGS` going to the test runner.
pub(crate) fn test(extra: &[String]) -> Result<()> {
    let mut steps = Steps::default();
    tests_with_postgres(&mut steps, extra);
    steps.finish()
}

/// Set while building and running the tests: it builds the Postgres tests, which are otherwise
/// reported as ignored (see `authz-test-support`).
const POSTGRES_BUILD_ENV: &str = "AUTHZ_TEST_POSTGRES";

/// Starts (or finds) Postgres, runs the tests with `DATABASE_URL` (and [`POSTGRES_BUILD_ENV`])
/// exported, and stops Postgres.
fn tests_with_postgres(steps: &mut Steps, extra: &[String]) {
    let Some(pg) = steps.run("postgres", Postgres::start) else {
        steps.skip("tests", "no Postgres");
        return;
    };
    let url = pg.url().to_owned();
    let nextest = cmd::probe(
        cmd::cargo().args(["nextest", "--version"]),
        Duration::from_secs(60),
    );
    let selection = PackageSelection::from_args(extra);

    // The Postgres tests are built and run against `url`.
    let with_postgres = |c: &mut Command| -> Result<()> {
        cmd::run(c.env("DATABASE_URL", &url).env(POSTGRES_BUILD_ENV, "1"))
    };
    // `cargo RUNNER --no-fail-fast [--workspace] EXTRA`: the whole workspace unless packages
    // are named.
    let run_tests = |runner: &[&str]| {
        let mut c = cmd::cargo();
        c.args(runner).arg("--no-fail-fast");
        if !selection.names_packages() {
            c.arg("--workspace");
        }
        with_postgres(c.args(extra))
    };

    if nextest {
        steps.run("tests (nextest)", || run_tests(&["nextest", "run"]));
        // nextest does not run doctests, so cargo test does, for the same packages.
        steps.run("doctests", || {
            let Some(args) = selection.doctest_args()? else {
                println!("no selected package has a library; no doctests to run");
                return Ok(());
            };
            with_postgres(
                cmd::cargo()
                    .args(["test", "--doc", "--no-fail-fast"])
                    .args(args),
            )
        });
    } else {
        println!("cargo-nextest is not installed; using cargo test (which also runs doctests)");
        steps.run("tests (cargo test)", || run_tests(&["test"]));
    }
    steps.run("stop postgres", || pg.stop());
}

/// The package-selection flags found in the extra arguments of `cargo xtask test`.
///
/// Test runner arguments in general (filters, nextest options) mean nothing to
/// `cargo test --doc`, so only these are passed on to the doctest run.
#[derive(Debug, Default, PartialEq, Eq)]
struct PackageSelection {
    packages: Vec<String>,
    /// Other selection flags (`--exclude x`, `--features f`, ...), verbatim.
    flags: Vec<String>,
}

impl PackageSelection {
    fn from_args(args: &[String]) -> Self {
        const WITH_VALUE: &[&str] = &["--exclude", "--features", "-F"];
        const ALONE: &[&str] = &[
            "--workspace",
            "--all",
            "--all-features",
            "--no-default-features",
        ];
        let mut sel = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let arg = arg.as_str();
            if arg == "--" {
                break;
            } else if arg == "-p" || arg == "--package" {
                sel.packages.extend(args.next().cloned());
            } else if let Some(name) = arg.strip_prefix("--package=") {
                sel.packages.push(name.to_owned());
            } else if let Some(name) = arg.strip_prefix("-p").filter(|n| !n.is_empty()) {
                sel.packages.push(name.to_owned());
            } else if WITH_VALUE.contains(&arg) {
                sel.flags.push(arg.to_owned());
                sel.flags.extend(args.next().cloned());
            } else if ALONE.contains(&arg)
                || WITH_VALUE
                    .iter()
                    .any(|flag| arg.starts_with(&format!("{flag}=")))
            {
                sel.flags.push(arg.to_owned());
            }
        }
        sel
    }

    /// Whether packages are chosen explicitly; cargo ignores `-p` next to `--workspace`.
    fn names_packages(&self) -> bool {
        !self.packages.is_empty()
    }

    /// The arguments for `cargo test --doc`, or `None` if no selected package has a library
    /// (cargo refuses `--doc` for a package without one, such as xtask).
    fn doctest_args(&self) -> Result<Option<Vec<String>>> {
        let mut args = self.flags.clone();
        if !self.names_packages() {
            if !args.iter().any(|a| a == "--workspace" || a == "--all") {
                args.push("--workspace".to_owned());
            }
            return Ok(Some(args));
        }
        let ws = Workspace::load(&cmd::workspace_root())?;
        let with_lib: Vec<&String> = self
            .packages
            .iter()
            .filter(|name| {
                ws.packages
                    .iter()
                    .find(|p| &p.name == *name)
                    // An unknown name is passed on, so cargo reports it.
                    .is_none_or(|p| p.targets.iter().any(|t| t.kinds.iter().any(|k| k == "lib")))
            })
            .collect();
        if with_lib.is_empty() {
            return Ok(None);
        }
        for name in with_lib {
            args.extend(["-p".to_owned(), name.clone()]);
        }
        Ok(Some(args))
    }
}

/// The outcome of each step, printed as a summary at the end.
#[derive(Debug, Default)]
struct Steps {
    results: Vec<(String, Outcome)>,
}

#[derive(Debug)]
enum Outcome {
    Passed(Duration),
    Failed(anyhow::Error),
    Skipped(&'static str),
}

impl Steps {
    /// Runs one step, recording its outcome; later steps run even if this one fails, so one CI
    /// run reports every problem.
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Option<T> {
        println!("\n==> {name}");
        let start = Instant::now();
        match f() {
            Ok(value) => {
                self.results
                    .push((name.to_owned(), Outcome::Passed(start.elapsed())));
                Some(value)
            }
            Err(err) => {
                eprintln!("==> step `{name}` failed: {err:#}");
                self.results.push((name.to_owned(), Outcome::Failed(err)));
                None
            }
        }
    }

    fn skip(&mut self, name: &str, why: &'static str) {
        self.results.push((name.to_owned(), Outcome::Skipped(why)));
    }

    /// Prints the summary and fails naming every failed step.
    fn finish(self) -> Result<()> {
        println!("\n==> summary");
        let mut failed = Vec::new();
        for (name, outcome) in &self.results {
            match outcome {
                Outcome::Passed(took) => {
                    println!("  ok       {name} ({:.1} s)", took.as_secs_f64())
                }
                Outcome::Failed(err) => {
                    println!("  FAILED   {name}: {err:#}");
                    failed.push(name.as_str());
                }
                Outcome::Skipped(why) => println!("  skipped  {name} ({why})"),
            }
        }
        if !failed.is_empty() {
            bail!("failed step(s): {}", failed.join(", "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn package_selection_keeps_only_selection_flags() {
        let sel = PackageSelection::from_args(&args(&[
            "-p",
            "authz-types",
            "--package=authz-rbac",
            "-pauthz-audit",
            "--features",
            "x",
            "-E",
            "test(foo)",
            "--no-capture",
            "--",
            "-p",
            "ignored",
        ]));
        assert_eq!(sel.packages, ["authz-types", "authz-rbac", "authz-audit"]);
        assert_eq!(sel.flags, ["--features", "x"]);
        assert!(sel.names_packages());
    }

    #[test]
    fn without_packages_doctests_cover_the_workspace() {
        let sel = PackageSelection::from_args(&args(&["--exclude", "authz-gateway", "filter"]));
        assert!(!sel.names_packages());
        assert_eq!(
            sel.doctest_args().expect("args"),
            Some(args(&["--exclude", "authz-gateway", "--workspace"]))
        );
    }

    #[test]
    fn doctests_skip_selected_packages_without_a_library() {
        let only_xtask = PackageSelection::from_args(&args(&["-p", "xtask"]));
        assert_eq!(only_xtask.doctest_args().expect("args"), None);
        let mixed = PackageSelection::from_args(&args(&["-p", "xtask", "-p", "authz-types"]));
        assert_eq!(
            mixed.doctest_args().expect("args"),
            Some(args(&["-p", "authz-types"]))
        );
    }

    #[test]
    fn steps_fail_naming_the_failed_step() {
        let mut steps = Steps::default();
        assert_eq!(steps.run("good", || Ok(1)), Some(1));
        assert_eq!(steps.run("bad", || -> Result<()> { bail!("boom") }), None);
        steps.skip("later", "because");
        let err = steps.finish().expect_err("a failed step fails the run");
        assert_eq!(err.to_string(), "failed step(s): bad");
    }
}
