//! `authzctl`, the operator's CLI: development keys, tokens and their revocation, roles and
//! subjects, the policy (import, export, check, lint, history) and the audit trail (list, tail,
//! export, verify, prune).
//!
//! The binary is a thin `main.rs` over [`run`]; tests parse arguments with
//! [`Cli::try_parse_from`](clap::Parser::try_parse_from) and call [`execute`] with a buffer, so
//! no process is spawned.
//!
//! Exit codes: 0 success (and "allow" for `policy check`), 1 runtime error ([`EXIT_ERROR`]),
//! 2 usage error ([`EXIT_USAGE`], clap's own code, also a destructive change refused because it
//! was not confirmed), 3 "deny" from `policy check` ([`EXIT_DENY`]), 4 lint errors from `policy
//! lint` ([`EXIT_LINT`]), 5 a tampered audit trail from `audit verify` ([`EXIT_TAMPERED`]).
//!
//! Destructive changes (`role delete`, `role revoke`, `role unassign`, `audit prune`) ask for
//! confirmation on a terminal and need `--yes` anywhere else; `--dry-run` shows what a change
//! would do without writing. Token revocation is protective, not destructive, so it is not
//! confirmed. Every change is recorded in the policy history with the actor (`--actor`,
//! `AUTHZ_ACTOR`, else `$USER` or `$LOGNAME`, else the OS account name).
//! Errors are printed as one `authzctl: error: …` line plus one `caused by:` line per inner
//! error, never as a backtrace, and database URLs in them have their passwords redacted.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use authz_admin::{Cli, Outcome, execute};
//! use clap::Parser as _;
//!
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}?mode=rwc", dir.path().join("policy.db").display());
//! let cli = Cli::try_parse_from([
//!     "authzctl", "role", "grant", "ticket-reader", "call", "tool:tickets/get_*",
//!     "--database-url", &url,
//! ])?;
//! let mut out = Vec::new();
//! assert_eq!(execute(cli, &mut out).await?, Outcome::Success);
//! assert!(String::from_utf8(out)?.contains("policy revision 1"));
//! # Ok(())
//! # }
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::Parser as _;

mod approvals;
mod audit;
mod cli;
mod exit;
mod keys;
mod policy;
mod replay;
mod role;
mod store;
mod subject;
mod term;
mod times;
mod token;
mod tools;

pub use audit::{FollowControl, audit_tail};
pub use cli::*;
pub use exit::*;
pub use policy::operation_from_cli;
pub use term::Confirmation;
pub use times::*;

pub(crate) use store::{connect_policy_store, with_store};
pub(crate) use term::{confirm, write_table};

/// Parses the process arguments, runs the command and maps the outcome to an exit code.
/// Clap reports argument errors itself (exit 2) before anything runs.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    ExitCode::from(run_cli(cli, &mut stdout, &mut stderr))
}

/// Runs one parsed command on its own runtime, writes output to `out` and a rendered error (see
/// [`render_error`]) to `err`, and returns the exit code. Call it outside any async runtime.
pub fn run_cli(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            // Nothing else can report this, so a failed write to stderr is ignored.
            let _ = writeln!(err, "authzctl: error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let confirmation = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        Confirmation::Terminal
    } else {
        Confirmation::NonInteractive
    };
    match runtime.block_on(execute_with(cli, out, confirmation)) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            // Nothing else can report this, so a failed write to stderr is ignored.
            let _ = writeln!(err, "{}", render_error(&e));
            exit_code_of(&e)
        }
    }
}

/// Runs one command, writing its output to `out`; destructive changes need `--yes` (see
/// [`Confirmation::NonInteractive`]).
pub async fn execute(cli: Cli, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    execute_with(cli, out, Confirmation::NonInteractive).await
}

/// Runs one command, writing its output to `out` and confirming destructive changes run
/// without `--yes` as `confirmation` says.
pub async fn execute_with(
    cli: Cli,
    out: &mut dyn Write,
    confirmation: Confirmation,
) -> anyhow::Result<Outcome> {
    let output = cli.output;
    // Commands printing one document print it the same way for json and jsonl (one line).
    let json = output != Output::Table;
    match cli.command {
        Command::Keys(KeysCommand::Generate {
            out_dir,
            alg,
            kid,
            force,
        }) => keys::generate(&out_dir, alg, &kid, force, json, out)?,
        Command::Keys(KeysCommand::GenerateAudit { out: path }) => {
            keys::generate_audit(&path, json, out)?;
        }
        Command::Token(TokenCommand::Mint(args)) => token::mint(&args, out)?,
        Command::Token(TokenCommand::Revoke(args)) => token::revoke(&args, json, out).await?,
        Command::Token(TokenCommand::Revocations { store }) => {
            token::list(&store, output, out).await?;
        }
        Command::Token(TokenCommand::PruneRevocations { dry_run, store }) => {
            token::prune(&store, dry_run, json, out).await?;
        }
        Command::Role(cmd) => role::role(cmd, json, out, confirmation).await?,
        Command::Subject(SubjectCommand::Show {
            subject,
            tenant,
            store,
        }) => subject::show(&subject, tenant.as_deref(), &store, json, out).await?,
        Command::Policy(PolicyCommand::Import(args)) => policy::import(&args, json, out).await?,
        Command::Policy(PolicyCommand::Check(args)) => {
            return policy::check(&args, json, out).await;
        }
        Command::Policy(PolicyCommand::Lint(args)) => {
            return policy::lint(&args, json, out).await;
        }
        Command::Policy(PolicyCommand::Replay(args)) => replay::replay(&args, json, out).await?,
        Command::Policy(PolicyCommand::Shadow(command)) => {
            replay::shadow(command, json, out).await?
        }
        Command::Policy(PolicyCommand::Export { store }) => {
            policy::export(&store, json, out).await?;
        }
        Command::Policy(PolicyCommand::History { limit, store }) => {
            policy::history(&store, limit, json, out).await?;
        }
        Command::Audit(AuditCommand::List(args)) => audit::list(&args, output, out).await?,
        Command::Audit(AuditCommand::Tail(args)) => {
            let mut polls_left = args.max_polls;
            let mut stop = |_: &[authz_audit::StoredRecord]| match polls_left.as_mut() {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
                None => false,
            };
            let control = FollowControl {
                interval: audit::POLL_INTERVAL,
                stop_on_ctrl_c: true,
                stop: &mut stop,
            };
            audit_tail(&args, output, out, control).await?;
        }
        Command::Audit(AuditCommand::Export(args)) => audit::export(&args, out).await?,
        Command::Audit(AuditCommand::Stats(args)) => audit::stats(&args, output, out).await?,
        Command::Audit(AuditCommand::Verify(args)) => {
            return audit::verify(&args, json, out).await;
        }
        Command::Audit(AuditCommand::Prune(args)) => {
            audit::prune(&args, json, out, confirmation).await?;
        }
        Command::Tools(ToolsCommand::List {
            upstream,
            state,
            store,
        }) => tools::list(&store, upstream.as_deref(), state.as_deref(), json, out).await?,
        Command::Tools(ToolsCommand::Diff(args)) => tools::diff(&args, json, out).await?,
        Command::Tools(ToolsCommand::Approve(args)) => {
            tools::decide(&args, true, json, out).await?;
        }
        Command::Tools(ToolsCommand::Reject(args)) => {
            tools::decide(&args, false, json, out).await?;
        }
        Command::Tools(ToolsCommand::History { upstream, store }) => {
            tools::history(&store, upstream.as_deref(), json, out).await?;
        }
        Command::Approvals(command) => approvals::run(command, json, out, confirmation).await?,
    }
    Ok(Outcome::Success)
}
