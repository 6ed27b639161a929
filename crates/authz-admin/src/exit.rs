//! Exit codes, how a command ended ([`Outcome`]), usage errors and how errors are printed.

use std::process::ExitCode;

/// Exit code of a command that failed at run time (a file, store or key problem).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a usage error: clap's code for bad arguments, also used for a missing store URL.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `policy check` when the decision is deny.
pub const EXIT_DENY: u8 = 3;
/// Exit code of `policy lint` when it found errors.
pub const EXIT_LINT: u8 = 4;
/// Exit code of `audit verify` when a chain shows tampering (edited, deleted, inserted or
/// reordered records, or a bad checkpoint).
pub const EXIT_TAMPERED: u8 = 5;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or "allow" from `policy check`).
    Success,
    /// `policy check` decided deny.
    Deny,
    /// `policy lint` found errors.
    LintErrors,
    /// `audit verify` found tampering.
    Tampered,
}

impl Outcome {
    /// The process exit code: 0, [`EXIT_DENY`], [`EXIT_LINT`] or [`EXIT_TAMPERED`].
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Deny => EXIT_DENY,
            Outcome::LintErrors => EXIT_LINT,
            Outcome::Tampered => EXIT_TAMPERED,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.exit_code())
    }
}

/// A mistake in how the command was called that clap cannot see (such as a store URL missing
/// from both the flag and the environment). It exits with [`EXIT_USAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error from [`execute`](crate::execute): [`EXIT_USAGE`] for a
/// [`UsageError`], else [`EXIT_ERROR`].
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_ERROR
    }
}

/// The text printed for an error: `authzctl: error: …` and one `caused by:` line per source.
pub fn render_error(error: &anyhow::Error) -> String {
    let mut text = format!("authzctl: error: {error}");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        // Some errors (sqlx's among them) repeat their source in their own message; the
        // repetition is dropped so every line adds something.
        let line = cause.to_string();
        if !previous.contains(&line) {
            text.push_str(&format!("\n  caused by: {line}"));
        }
        previous = line;
    }
    if error.downcast_ref::<UsageError>().is_some() {
        text.push_str("\n\nFor more information, try '--help'.");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_others_1() {
        let usage = anyhow::Error::new(UsageError::new("no store"));
        assert_eq!(exit_code_of(&usage), EXIT_USAGE);
        let runtime = anyhow::anyhow!("disk full").context("cannot write x");
        assert_eq!(exit_code_of(&runtime), EXIT_ERROR);
        assert_eq!(
            render_error(&runtime),
            "authzctl: error: cannot write x\n  caused by: disk full"
        );
        let repeated = anyhow::anyhow!("refused")
            .context("io error: refused")
            .context("cannot open");
        assert_eq!(
            render_error(&repeated),
            "authzctl: error: cannot open\n  caused by: io error: refused"
        );
    }
}
