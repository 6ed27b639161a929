//! `cargo xtask fuzz [--secs N] [TARGET...]`: runs the fuzz targets of `authz-fuzz` (release
//! build) for N seconds each (default 60); `cargo xtask ci` runs each for a few seconds.

use anyhow::{Result, bail};

use crate::cmd;

/// Seconds per target when none are given.
const DEFAULT_SECS: u64 = 60;

/// Seconds per target in `cargo xtask ci`.
pub(crate) const CI_SECS: u64 = 3;

pub(crate) fn fuzz(args: &[String]) -> Result<()> {
    let mut secs = DEFAULT_SECS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--secs" {
            let Some(n) = args.next().and_then(|n| n.parse().ok()) else {
                bail!("--secs needs a number of seconds");
            };
            secs = n;
        } else if arg.starts_with('-') {
            bail!("unknown flag `{arg}` (usage: cargo xtask fuzz [--secs N] [TARGET...])");
        } else {
            targets.push(arg.clone());
        }
    }
    run(secs, &targets, true)
}

/// Runs the fuzz driver: `release` for long runs, the test build's profile in CI.
pub(crate) fn run(secs: u64, targets: &[String], release: bool) -> Result<()> {
    let mut c = cmd::cargo();
    c.args(["run", "--quiet", "-p", "authz-fuzz"]);
    if release {
        c.arg("--release");
    }
    c.args(["--", "--secs", &secs.to_string()]).args(targets);
    cmd::run(&mut c)
}
