//! Small helpers for running external programs: echo the command, check its status, probe tools.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The interval between two polls of something we wait for (a process exit, a server coming up).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The workspace root: the parent of the xtask package directory.
///
/// Cargo sets `CARGO_MANIFEST_DIR` at run time for `cargo run` and for tests; it is preferred over
/// the compile-time value because the build cache may be shared between several checkouts.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// A `cargo` command run from the workspace root, using the same cargo that runs xtask.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd` with inherited stdio, echoing it first; fails unless it exits successfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` capturing its output; fails (showing stderr and stdout) unless it exits successfully.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({})\n--- stderr ---\n{}--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed invalid UTF-8"))
}

/// Whether `cmd` exits successfully within `timeout`, with all output discarded.
///
/// A command still running at the deadline is killed and counts as a failure; this keeps probes
/// such as `docker info` against a hung daemon from stalling the whole run.
pub(crate) fn probe(cmd: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            // Timed out, or waiting failed: either way the probe did not succeed.
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The first executable called `name` on `PATH`, like `command -v`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file with an execute bit set.
pub(crate) fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Quotes `arg` for a POSIX shell if it contains anything but plainly safe characters.
pub(crate) fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A shell-like rendering of `cmd` for logs (environment changes are not shown).
pub(crate) fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .map(|arg| shell_quote(&arg))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/tmp/x-1/data"), "/tmp/x-1/data");
        assert_eq!(shell_quote("-p 5432"), "'-p 5432'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn display_renders_program_and_arguments() {
        let mut cmd = Command::new("pg_ctl");
        cmd.args(["-o", "-p 1 -k /tmp", "start"]);
        assert_eq!(display(&cmd), "pg_ctl -o '-p 1 -k /tmp' start");
    }

    #[test]
    fn probe_reports_exit_status_and_times_out() {
        assert!(probe(&mut Command::new("true"), Duration::from_secs(10)));
        assert!(!probe(&mut Command::new("false"), Duration::from_secs(10)));
        // A command that outlives its deadline is killed and reported as not answering.
        let mut slow = Command::new("sh");
        slow.args(["-c", "exec sleep 30"]);
        assert!(!probe(&mut slow, Duration::from_millis(200)));
    }
}
