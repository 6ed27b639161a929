//! `cargo xtask`: the project's automation, written in Rust so it runs wherever cargo does.
//!
//! Commands (see [`COMMANDS`]):
//!
//! - `cargo xtask ci` — what CI runs: `cargo fmt --check`, `cargo clippy -D warnings`, then every
//!   test (nextest if installed, else `cargo test`; plus doctests) with `DATABASE_URL` pointing
//!   at a Postgres, then each fuzz target for a few seconds. All steps run even when one fails; a summary names the failed ones and the
//!   exit status is non-zero.
//! - `cargo xtask test [-- ARGS]` — only the tests with a Postgres; `ARGS` go to the test runner
//!   (e.g. `cargo xtask test -- -p authz-audit`).
//! - `cargo xtask bench [-- ARGS]` — every criterion benchmark, then one table of medians
//!   (see [`bench`]).
//! - `cargo xtask bench e2e [--quick]` — the end-to-end load benchmark: the fast upstream
//!   directly, a bare nginx in front of it and the gateway, one table (see [`bench_e2e`]).
//! - `cargo xtask fuzz [--secs N] [TARGET...]` — the fuzz targets of `authz-fuzz` (release
//!   build), N seconds each (see [`fuzz`]).
//! - `cargo xtask bench --soak [--secs N]` — mixed traffic (allowed, streamed, denied,
//!   tokenless, slow clients) against the release gateway; memory and descriptors must stay
//!   flat (see [`bench_soak`]).
//! - `cargo xtask demo [--serve]` — the gateway on embedded defaults with the demo upstream, two
//!   tokens, allowed and refused calls, and the audit trail; `--serve` then keeps it up for a real
//!   MCP client (see [`demo`]).
//! - `cargo xtask tidy` — the repository rules (dependency rule, `//!` headers, workspace lints,
//!   no unfinished code, one test binary per crate); they also run as ordinary tests.
//!
//! The Postgres comes from `DATABASE_URL` if set, else a Docker container, else a throwaway
//! `initdb` cluster; whatever was started is stopped afterwards (see [`postgres`]).
//!
//! To add a command: write `fn my_command(args: &[String]) -> Result<()>` in its own module,
//! add a row to [`COMMANDS`] and an arm to [`dispatch`].

mod bench;
mod bench_e2e;
mod bench_soak;
mod ci;
mod cluster;
mod cmd;
mod demo;
mod fuzz;
mod postgres;
mod tidy;

use std::process::ExitCode;

use anyhow::{Result, bail};

/// Every command with its one-line help, in the order `cargo xtask help` prints them.
const COMMANDS: &[(&str, &str)] = &[
    (
        "ci",
        "fmt check, clippy -D warnings, all tests and doctests with a Postgres",
    ),
    (
        "test [-- ARGS]",
        "the tests with a Postgres; ARGS go to the test runner (nextest or cargo test)",
    ),
    ("tidy", "check the repository rules (also run as tests)"),
    (
        "bench [-- ARGS]",
        "run every criterion benchmark and print one table of medians",
    ),
    (
        "bench --soak [--secs N]",
        "soak the release gateway under mixed traffic for N s (default 300): memory and fds stay flat?",
    ),
    (
        "bench e2e [--quick]",
        "end-to-end load: direct upstream, nginx, gateway (buffered/durable, SQLite/Postgres)",
    ),
    (
        "fuzz [--secs N] [TARGET...]",
        "run the fuzz targets (classify, token, sse, config) for N seconds each (default 60)",
    ),
    (
        "demo [--serve]",
        "run the gateway on embedded defaults and walk through allowed and refused calls (--serve: then stay up for a real MCP client)",
    ),
    (
        "cluster",
        "two gateway replicas on one Postgres behind nginx (round robin), the demo upstream; stays up until Ctrl-C",
    ),
    ("help", "print this help"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command named by the first argument.
fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{}", usage());
        bail!("no command given");
    };
    match command.as_str() {
        "ci" => {
            no_arguments(command, rest)?;
            ci::ci()
        }
        "test" => ci::test(after_double_dash(rest)),
        "tidy" => {
            no_arguments(command, rest)?;
            tidy::run()
        }
        "bench" => match rest.split_first() {
            Some((mode, tail)) if mode == "e2e" => bench_e2e::e2e(tail),
            Some((mode, tail)) if mode == "--soak" => bench_soak::soak(tail),
            _ => bench::bench(after_double_dash(rest)),
        },
        "fuzz" => fuzz::fuzz(rest),
        "demo" => demo::demo(rest),
        "cluster" => cluster::cluster(rest),
        "help" | "-h" | "--help" => {
            println!("{}", usage());
            Ok(())
        }
        other => {
            eprintln!("{}", usage());
            bail!("unknown command `{other}`")
        }
    }
}

fn usage() -> String {
    let width = COMMANDS
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("usage: cargo xtask <command>\n\ncommands:\n");
    for (name, help) in COMMANDS {
        text.push_str(&format!("  {name:width$}  {help}\n"));
    }
    text
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    if !rest.is_empty() {
        bail!("`{command}` takes no arguments, got {rest:?}");
    }
    Ok(())
}

/// The arguments meant for a sub-tool: everything after a leading `--`, which is optional.
fn after_double_dash(rest: &[String]) -> &[String] {
    match rest.split_first() {
        Some((first, tail)) if first == "--" => tail,
        _ => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lists_every_command() {
        let text = usage();
        for (name, _) in COMMANDS {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn unknown_commands_and_stray_arguments_are_errors() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(dispatch(&args(&["frobnicate"])).is_err());
        assert!(dispatch(&args(&["tidy", "--fix"])).is_err());
        assert!(dispatch(&[]).is_err());
    }

    #[test]
    fn a_leading_double_dash_is_dropped() {
        let args = ["--".to_owned(), "-p".to_owned(), "x".to_owned()];
        assert_eq!(after_double_dash(&args), &args[1..]);
        assert_eq!(after_double_dash(&args[1..]), &args[1..]);
    }
}
