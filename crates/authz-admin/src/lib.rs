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
//! `AUTHZ_ACTOR`, else `$USER`).
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
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use authz_audit::AuditQuery;
use authz_audit::redact_url;
use authz_token::KeyAlgorithm;
use authz_types::{AuditFilter, Effect, Method, Operation, Principal, ReasonCode};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod audit;
mod policy;
mod revoke;
mod roles;

pub use audit::{FollowControl, audit_tail};

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

/// The environment variable that names the policy store.
pub const POLICY_URL_ENV: &str = "AUTHZ_POLICY_DATABASE_URL";
/// The environment variable that names the audit store.
pub const AUDIT_URL_ENV: &str = "AUTHZ_AUDIT_DATABASE_URL";
/// The environment variable that names the token revocation store; when it is unset,
/// [`AUDIT_URL_ENV`] is used, because the gateway keeps revocations in its audit database by
/// default.
pub const REVOCATION_URL_ENV: &str = "AUTHZ_REVOCATION_DATABASE_URL";
/// The environment variable that names who changes are recorded as (before `$USER`).
pub const ACTOR_ENV: &str = "AUTHZ_ACTOR";

#[derive(Debug, Parser)]
#[command(
    name = "authzctl",
    version,
    about = "Administer the MCP authorization gateway: keys, tokens, roles, policies, audit.",
    long_about = "Administer the MCP authorization gateway.\n\n\
        Role and policy commands work on the same SQL policy store the gateway reads \
        (--database-url or AUTHZ_POLICY_DATABASE_URL); `policy check` can also read policy files. \
        Audit commands use the audit store (--database-url or AUTHZ_AUDIT_DATABASE_URL). \
        Token revocations go to --database-url, else AUTHZ_REVOCATION_DATABASE_URL, else \
        AUTHZ_AUDIT_DATABASE_URL (the gateway's default revocation store).\n\n\
        Destructive changes ask for confirmation (or --yes); --dry-run shows what a change \
        would do. Every policy change is recorded in `policy history` with its actor.\n\n\
        Exit codes: 0 success or allow, 1 error, 2 usage error or unconfirmed change, 3 deny \
        (policy check), 4 lint errors (policy lint), 5 tampered audit trail (audit verify)."
)]
pub struct Cli {
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats. `json` is one JSON document (streaming commands print one object per line);
/// `jsonl` prints lists of records (audit records, revocations) one JSON object per line, and is
/// the same as `json` for commands that print a single document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing keys for development (production keys come from your identity provider).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Mint tokens signed with a local key; revoke tokens and list revocations.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, inspect and delete roles; grant them permissions; assign them to subjects.
    #[command(subcommand)]
    Role(RoleCommand),
    /// What a subject holds: its roles and effective permissions per tenant.
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Import, export, check and lint the policy; read its change history.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read, export, verify and prune the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key (private JWK) and the matching public JWKS.
    Generate {
        /// Directory for `signing-key.jwk` (private, mode 0600) and `jwks.json` (public).
        #[arg(long, default_value = ".authz")]
        out_dir: PathBuf,
        /// Signature algorithm: ES256, RS256 or EdDSA.
        #[arg(long, default_value = "ES256", value_parser = parse_algorithm)]
        alg: KeyAlgorithm,
        /// Key id written into both files and into every token's header.
        #[arg(long, default_value = "dev-1")]
        kid: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Generate the Ed25519 key that signs audit checkpoints; prints its public key.
    GenerateAudit {
        /// The new seed file (32-byte seed as hex, mode 0600); an existing file is never
        /// replaced. Give it to the gateway only, never to the audit database.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a signed access token (printed on stdout).
    Mint(MintArgs),
    /// Revoke one token (--jti) or every token of a subject issued before a time (--subject);
    /// prints the new revocation revision. Gateways following the store refuse them within a
    /// second.
    Revoke(RevokeArgs),
    /// List the revocations in force.
    Revocations {
        #[command(flatten)]
        store: RevocationStoreArgs,
    },
    /// Delete expired revocations (they no longer refuse any token that is not expired anyway).
    PruneRevocations {
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: RevocationStoreArgs,
    },
}

/// Where token revocations are stored.
#[derive(Debug, Args)]
pub struct RevocationStoreArgs {
    /// Revocation store URL: sqlite://path?mode=rwc or postgres://user:password@host/db. When
    /// neither this nor AUTHZ_REVOCATION_DATABASE_URL is set, AUTHZ_AUDIT_DATABASE_URL is used
    /// (the gateway keeps revocations in its audit database by default).
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHZ_REVOCATION_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl RevocationStoreArgs {
    /// The store URL: `--database-url`, else [`REVOCATION_URL_ENV`] (both through clap), else
    /// [`AUDIT_URL_ENV`]; a usage error naming all three when none is set.
    pub fn url(&self) -> anyhow::Result<String> {
        self.url_or(std::env::var(AUDIT_URL_ENV).ok())
    }

    /// [`url`](Self::url) with the audit store URL given instead of read from the environment.
    pub fn url_or(&self, audit_url: Option<String>) -> anyhow::Result<String> {
        self.database_url
            .clone()
            .filter(|u| !u.is_empty())
            .or(audit_url.filter(|u| !u.is_empty()))
            .ok_or_else(|| {
                UsageError::new(format!(
                    "no revocation store given: pass --database-url <URL> or set \
                     {REVOCATION_URL_ENV} (or {AUDIT_URL_ENV}, the gateway's default revocation \
                     store)"
                ))
                .into()
            })
    }
}

/// `token revoke`: exactly one of `--jti` and `--subject`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("revoked").required(true).args(["jti", "subject"])))]
pub struct RevokeArgs {
    /// Revoke the one token with this `jti` (token id).
    #[arg(long, value_name = "ID")]
    pub jti: Option<String>,
    /// With --jti: until when the token stays revoked, at least its `exp`: an RFC 3339 time or
    /// a duration from now (the row can be pruned afterwards).
    #[arg(
        long,
        value_name = "TIME|DURATION",
        default_value = "24h",
        value_parser = parse_until,
        conflicts_with = "subject"
    )]
    pub expires_at: Until,
    /// Revoke every token of this subject (`sub`) issued before --before (tokens without
    /// `iat` too); tokens issued at or after it stay valid.
    #[arg(long, value_name = "SUB", requires = "issuer")]
    pub subject: Option<String>,
    /// With --subject: the issuer (`iss`) of the subject's tokens, exactly as in them.
    #[arg(long, value_name = "ISS", requires = "subject")]
    pub issuer: Option<String>,
    /// With --subject: the cut-off, an RFC 3339 time (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339, requires = "subject")]
    pub before: Option<i64>,
    /// With --subject: how long after the cut-off the revocation is kept. Use at least the
    /// longest token lifetime the gateway accepts (max_lifetime_secs, 24h by default): by then
    /// every token it refuses has expired anyway.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        value_parser = parse_duration,
        conflicts_with = "jti"
    )]
    pub keep_for: i64,
    /// Show what would be revoked and the current revision; write no revocation (opening the
    /// store still creates its tables if they are missing).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: RevocationStoreArgs,
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// Subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Scopes (repeat, or one space-separated value).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Lifetime: e.g. 300, 300s, 15m, 1h (parsed into seconds).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub ttl: i64,
    /// Roles carried by the token (repeatable).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Tenant claim.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Audience: the canonical URI of the gateway route, e.g. http://127.0.0.1:8080/mcp/tickets.
    #[arg(long = "audience", required = true)]
    pub audiences: Vec<String>,
    /// Issuer (`iss`); must match the gateway's trusted issuer.
    #[arg(long, default_value = "authzctl")]
    pub issuer: String,
    /// OAuth client id (`client_id`/`azp`).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Agent acting for the subject (`act.sub`).
    #[arg(long)]
    pub actor: Option<String>,
    /// The private signing key (JWK).
    #[arg(
        long,
        default_value = ".authz/signing-key.jwk",
        env = "AUTHZ_SIGNING_KEY"
    )]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Policy store URL: sqlite://path?mode=rwc or postgres://user:password@host/db.
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHZ_POLICY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Who changes are recorded as in the policy history (default: $USER).
    #[arg(long, value_name = "NAME", env = "AUTHZ_ACTOR", hide_env_values = true)]
    pub actor: Option<String>,
}

impl StoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            UsageError::new(format!(
                "no policy store given: pass --database-url <URL> or set {POLICY_URL_ENV} \
                 (sqlite://path?mode=rwc or postgres://…)"
            ))
            .into()
        })
    }

    async fn connect(&self) -> anyhow::Result<authz_rbac::PolicyStore> {
        let url = self.url()?;
        Ok(connect_policy_store(url).await?.with_actor(&self.actor()))
    }

    /// Who changes are recorded as: `--actor`, `AUTHZ_ACTOR`, `$USER`, `$LOGNAME`, else
    /// `unknown`.
    pub fn actor(&self) -> String {
        self.actor
            .clone()
            .filter(|a| !a.trim().is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| authz_rbac::UNKNOWN_ACTOR.to_owned())
    }
}

/// Options of commands that change the store.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Show what would change and check that it can; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Confirmation of a destructive change.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Declare a role with a description (roles used in rules need not be declared).
    Create {
        /// Role name: not starting with `user:`, no comma or quote.
        role: String,
        /// What the role is for, shown by `role list` and `role show`.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete a role: its rules, who holds it, what it inherits, and its declaration.
    Delete {
        /// The role to delete.
        role: String,
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// List roles with their number of rules and holders.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a role's rules, who holds it and which roles it inherits.
    Show {
        /// The role to show.
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Allow (or with --deny, forbid) a role an action on objects matching a pattern.
    Grant {
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove a grant (or a deny rule with --deny).
    Revoke {
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Give a subject a role in a tenant.
    Assign {
        #[command(flatten)]
        assignment: AssignArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Take a role away from a subject.
    Unassign {
        #[command(flatten)]
        assignment: AssignArgs,
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Show a subject's roles and effective permissions, per tenant.
    Show {
        /// The token subject (`sub`), e.g. alice (stored as user:alice).
        subject: String,
        /// Only this tenant (default: every tenant the subject has roles or rules in).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The role (or user:<sub> for a rule about one subject).
    pub role: String,
    /// call, read, subscribe, get, complete, task or *.
    pub action: String,
    /// e.g. tool:tickets/get_*, resource:tickets/*, prompt:tickets/*.
    pub object: String,
    /// The tenant the rule applies in, or * for every tenant.
    #[arg(long, default_value = authz_types::DEFAULT_TENANT)]
    pub tenant: String,
    /// A deny rule (deny overrides allow).
    #[arg(long)]
    pub deny: bool,
}

impl RuleArgs {
    fn effect(&self) -> Effect {
        if self.deny {
            Effect::Deny
        } else {
            Effect::Allow
        }
    }

    /// The rule as a policy line, for messages.
    fn line(&self) -> String {
        format!(
            "p, {}, {}, {}, {}, {}",
            self.role,
            self.tenant,
            self.object,
            self.action,
            self.effect().as_str()
        )
    }
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The token subject (`sub`), e.g. alice (stored as user:alice).
    pub subject: String,
    /// The role given or taken.
    pub role: String,
    /// The tenant the assignment applies in.
    #[arg(long, default_value = authz_types::DEFAULT_TENANT)]
    pub tenant: String,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate Casbin policy CSV files and add their lines to the store (existing lines are
    /// kept; nothing is removed).
    Import(ImportArgs),
    /// Decide `<subject> <method> <target>` (exit 0 allow, 3 deny).
    Check(CheckArgs),
    /// Find rules that can never take effect (exit 4 when there are errors).
    Lint(LintArgs),
    /// Print the store's policy as a Casbin CSV (or JSON with -o json).
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show who changed the policy, when, what, and from which revision to which.
    History {
        /// How many changes to show, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy CSV files (repeatable). When given, they are used even if a store URL is set;
    /// with neither, policies/policy.csv is read.
    #[arg(long = "policy", value_name = "CSV")]
    pub policies: Vec<PathBuf>,
    /// Lint the policy in this SQL store instead of files.
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHZ_POLICY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// An upstream the gateway routes to (repeatable); rules for any other are errors.
    #[arg(long = "upstream", value_name = "NAME")]
    pub upstreams: Vec<String>,
    /// A tool an upstream offers, as <upstream>/<tool> (repeatable); tool patterns matching
    /// none of an upstream's tools are warnings.
    #[arg(long = "tool", value_name = "UPSTREAM/TOOL", value_parser = parse_tool)]
    pub tools: Vec<(String, String)>,
    /// A role tokens may carry (repeatable); such roles need no g line.
    #[arg(long = "token-role", value_name = "ROLE")]
    pub token_roles: Vec<String>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
}

/// Parses `--tool <upstream>/<tool>`.
fn parse_tool(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((upstream, tool)) if !upstream.is_empty() && !tool.is_empty() => {
            Ok((upstream.to_owned(), tool.to_owned()))
        }
        _ => Err(format!(
            "`{s}` is not <upstream>/<tool>, e.g. tickets/get_ticket"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Policy CSV files (`p` rules and `g` assignments), imported together in one transaction.
    #[arg(required = true, value_name = "CSV")]
    pub files: Vec<PathBuf>,
    /// Validate and count only; the store is not opened (opening it may create its schema).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub subject: String,
    /// MCP method, e.g. tools/call, resources/read, prompts/get.
    pub method: String,
    /// Tool name, resource URI or prompt name ("-" for none).
    pub target: String,
    /// Upstream route name.
    #[arg(long, default_value = "tickets")]
    pub upstream: String,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Roles the token would carry (repeatable).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Show the rules considered and matched.
    #[arg(long)]
    pub explain: bool,
    /// Casbin model.
    #[arg(
        long,
        default_value = "policies/model.conf",
        env = "AUTHZ_POLICY_MODEL"
    )]
    pub model: PathBuf,
    /// Policy CSV files (repeatable). When given, they are used even if a store URL is set;
    /// with neither, policies/policy.csv is read.
    #[arg(long = "policy", value_name = "CSV")]
    pub policies: Vec<PathBuf>,
    /// Read policies from this SQL store instead of files.
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHZ_POLICY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, newest first.
    List(AuditListArgs),
    /// Print the newest records, oldest of them first; with --follow keep printing new ones.
    Tail(AuditTailArgs),
    /// Write every matching record, oldest first, as JSON lines, a JSON array or CSV.
    Export(AuditExportArgs),
    /// Check the hash chains and checkpoints (exit 5 naming the first tampered record).
    Verify(AuditVerifyArgs),
    /// Delete records older than a time; each chain keeps an anchor so the rest still verifies.
    Prune(AuditPruneArgs),
}

/// The audit store.
#[derive(Debug, Args)]
pub struct AuditStoreArgs {
    /// Audit store URL: sqlite://path or postgres://user:password@host/db.
    #[arg(
        long,
        value_name = "URL",
        env = "AUTHZ_AUDIT_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

impl AuditStoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            UsageError::new(format!(
                "no audit store given: pass --database-url <URL> or set {AUDIT_URL_ENV} \
                 (sqlite://path or postgres://…)"
            ))
            .into()
        })
    }
}

/// Which audit records a command reads. Every condition is an exact match.
#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// The token subject (`sub`).
    #[arg(long)]
    pub subject: Option<String>,
    /// The tenant the request was decided in.
    #[arg(long)]
    pub tenant: Option<String>,
    /// allow or deny.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    /// The reason code, e.g. no_matching_rule, token_expired.
    #[arg(long, value_parser = parse_reason)]
    pub reason: Option<ReasonCode>,
    /// The upstream route name.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The MCP method, e.g. tools/call (or the HTTP method of a non-message request).
    #[arg(long)]
    pub method: Option<String>,
    /// The target: a tool name, resource URI or prompt name.
    #[arg(long)]
    pub target: Option<String>,
    /// Only records at or after this: a duration ago (15m, 2h) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Since>,
    /// Only records before this: a duration ago (15m, 2h) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    pub until: Option<Since>,
}

impl AuditFilterArgs {
    /// The conditions as a store query (no limit set), relative times taken from `now_ms`.
    pub fn to_query(&self, now_ms: i64) -> AuditQuery {
        AuditQuery {
            filter: AuditFilter {
                subject: self.subject.clone(),
                decision: self.decision.as_deref().and_then(Effect::parse),
                upstream: self.upstream.clone(),
                since_ms: self.since.map(|s| s.to_unix_ms(now_ms)),
                until_ms: self.until.map(|s| s.to_unix_ms(now_ms)),
                ..AuditFilter::default()
            },
            tenant: self.tenant.clone(),
            method: self.method.clone(),
            target: self.target.clone(),
            reason: self.reason,
            ..AuditQuery::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// At most this many records.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct AuditTailArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// How many of the newest records to print first (0: with --follow, only new ones).
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub limit: u32,
    /// Keep polling for new records every 500 ms until Ctrl-C. -o json and -o jsonl print one
    /// JSON object per line.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop following after this many polls (for tests and scripts).
    #[arg(long, value_name = "N", hide = true, requires = "follow")]
    pub max_polls: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// jsonl: one JSON record per line; json: one array; csv: a header and one row per record
    /// (lists space-separated; text cells a spreadsheet would run as a formula get a leading
    /// quote). The global -o is ignored.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

/// The file format of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    /// Only this chain (one per gateway replica); default: every chain.
    #[arg(long, value_name = "ID")]
    pub chain: Option<String>,
    /// The checkpoint signing key's public half, as 64 hex digits or a file holding them (as
    /// printed by `keys generate-audit`). With it, every checkpoint must carry a valid
    /// signature; without it, signatures are not checked.
    #[arg(long, value_name = "HEX|FILE")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditPruneArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    /// Delete records older than this: a duration ago (90d) or an RFC 3339 time. Per chain only
    /// the records before its first one at or after this time go.
    #[arg(long, value_name = "TIME|DURATION", value_parser = parse_since)]
    pub before: Since,
    /// The checkpoint signing key (seed file) that signs the anchors. Needed when the chains are
    /// verified with --public-key: an unsigned anchor fails that check.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// Count what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A time given as a duration ago or an absolute time (`--since`, `--until`, `--before`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many seconds before the command runs.
    Ago(i64),
    /// This Unix time in milliseconds.
    At(i64),
}

impl Since {
    /// The bound as Unix milliseconds, given the current time.
    pub fn to_unix_ms(self, now_ms: i64) -> i64 {
        match self {
            Since::Ago(secs) => now_ms.saturating_sub(secs.saturating_mul(1000)),
            Since::At(ms) => ms,
        }
    }
}

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

/// The exit code for an error from [`execute`]: [`EXIT_USAGE`] for a [`UsageError`], else
/// [`EXIT_ERROR`].
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

/// How a destructive change run without `--yes` is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Nobody can be asked (stdin is not a terminal): refuse with a usage error (exit 2).
    NonInteractive,
    /// Ask on stderr and read the answer from stdin.
    Terminal,
    /// The answer is known already (tests, or a caller that asked itself).
    Answer(bool),
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
        }) => keys_generate(&out_dir, alg, &kid, force, json, out)?,
        Command::Keys(KeysCommand::GenerateAudit { out: path }) => {
            audit::keys_generate_audit(&path, json, out)?;
        }
        Command::Token(TokenCommand::Mint(args)) => token_mint(&args, out)?,
        Command::Token(TokenCommand::Revoke(args)) => revoke::revoke(&args, json, out).await?,
        Command::Token(TokenCommand::Revocations { store }) => {
            revoke::list(&store, output, out).await?;
        }
        Command::Token(TokenCommand::PruneRevocations { dry_run, store }) => {
            revoke::prune(&store, dry_run, json, out).await?;
        }
        Command::Role(cmd) => roles::role(cmd, json, out, confirmation).await?,
        Command::Subject(SubjectCommand::Show {
            subject,
            tenant,
            store,
        }) => roles::subject_show(&subject, tenant.as_deref(), &store, json, out).await?,
        Command::Policy(PolicyCommand::Import(args)) => policy_import(&args, json, out).await?,
        Command::Policy(PolicyCommand::Check(args)) => return policy_check(&args, json, out).await,
        Command::Policy(PolicyCommand::Lint(args)) => {
            return policy::lint(&args, json, out).await;
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
        Command::Audit(AuditCommand::Verify(args)) => {
            return audit::verify(&args, json, out).await;
        }
        Command::Audit(AuditCommand::Prune(args)) => {
            audit::prune(&args, json, out, confirmation).await?;
        }
    }
    Ok(Outcome::Success)
}

/// Asks before a destructive change unless `yes` was given; see [`Confirmation`]. `preview`
/// lists what will change (shown when asking on a terminal).
pub(crate) fn confirm(
    confirmation: Confirmation,
    yes: bool,
    what: &str,
    preview: &[String],
) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    match confirmation {
        Confirmation::NonInteractive => Err(UsageError::new(format!(
            "refusing to {what} without confirmation: stdin is not a terminal, so pass --yes \
             (or --dry-run to see what would change)"
        ))
        .into()),
        Confirmation::Answer(true) => Ok(()),
        Confirmation::Answer(false) => bail!("did not {what}: not confirmed; nothing was changed"),
        Confirmation::Terminal => {
            let mut err = std::io::stderr().lock();
            for line in preview {
                writeln!(err, "  {line}")?;
            }
            write!(err, "{what}? [y/N] ")?;
            err.flush()?;
            let mut answer = String::new();
            std::io::stdin()
                .read_line(&mut answer)
                .context("cannot read the confirmation")?;
            if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                Ok(())
            } else {
                bail!("did not {what}: not confirmed; nothing was changed")
            }
        }
    }
}

/// Writes `rows` under `headers` in columns two spaces apart (the last column is not padded).
pub(crate) fn write_table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let cells: Vec<&str> = cells.collect();
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut headers.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// How long a Postgres server may take to accept the first connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens one Postgres connection and closes it again, so an unreachable server or a refused
/// login is reported at once with its real cause. The stores' pools retry until their acquire
/// timeout (30 s) and then report only "pool timed out", which tells an operator nothing.
async fn probe_postgres(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return Ok(());
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            // The probe has done its job; a failure to say goodbye does not matter.
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    }
}

async fn connect_policy_store(url: &str) -> anyhow::Result<authz_rbac::PolicyStore> {
    let context = || format!("cannot open the policy store {}", redact_url(url));
    probe_postgres(url).await.with_context(context)?;
    authz_rbac::PolicyStore::connect(url)
        .await
        .with_context(context)
}

/// Parses a JOSE algorithm name for `--alg`.
fn parse_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    s.parse()
        .map_err(|_| format!("unknown algorithm `{s}`; use ES256, RS256 or EdDSA"))
}

fn keys_generate(
    dir: &Path,
    alg: KeyAlgorithm,
    kid: &str,
    force: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let private = dir.join("signing-key.jwk");
    let public = dir.join("jwks.json");
    if !force {
        for path in [&private, &public] {
            if path.exists() {
                bail!(
                    "{} already exists; pass --force to replace the key pair",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let keys = authz_token::generate_key_pair(alg, kid)
        .with_context(|| format!("cannot generate an {alg} key pair"))?;
    write_private(&private, keys.private_jwk.as_bytes(), force)?;
    std::fs::write(&public, keys.public_jwks.as_bytes())
        .with_context(|| format!("cannot write {}", public.display()))?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"private_key": private, "jwks": public, "kid": kid, "alg": alg.as_str()})
        )?;
    } else {
        writeln!(
            out,
            "private key: {} (keep secret)\npublic JWKS: {}\nkid: {kid}, alg: {alg}",
            private.display(),
            public.display()
        )?;
    }
    Ok(())
}

/// Writes the private key readable by its owner only. Without `force` the file must not exist
/// (checked again at creation, so a file that appeared meanwhile is not clobbered); with `force`
/// an existing file is truncated and its mode tightened before the key is written into it.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the permissions of {}", path.display()))?;
    }
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Parses `300`, `300s`, `15m`, `2h`, `1d` into a positive number of seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 300s, 15m, 1h)"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(mul)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("`{s}` must be a positive duration"))
}

/// Parses `--since`: an RFC 3339 time, or a duration ago.
pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(ms) = parse_rfc3339(s) {
        return Ok(Since::At(ms));
    }
    parse_duration(s)
        .map(Since::Ago)
        .map_err(|_| format!("`{s}` is neither a duration (15m, 2h) nor an RFC 3339 time"))
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`{s}` is out of range"))
}

/// A time given as a duration from now or an absolute time (`token revoke --expires-at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// This many seconds after the command runs.
    In(i64),
    /// This Unix time in milliseconds.
    At(i64),
}

impl Until {
    /// The time as Unix milliseconds, given the current time.
    pub fn to_unix_ms(self, now_ms: i64) -> i64 {
        match self {
            Until::In(secs) => now_ms.saturating_add(secs.saturating_mul(1000)),
            Until::At(ms) => ms,
        }
    }
}

/// Parses `--expires-at`: an RFC 3339 time, or a duration from now.
pub fn parse_until(s: &str) -> Result<Until, String> {
    if let Ok(ms) = parse_rfc3339(s) {
        return Ok(Until::At(ms));
    }
    parse_duration(s)
        .map(Until::In)
        .map_err(|_| format!("`{s}` is neither a duration (15m, 24h) nor an RFC 3339 time"))
}

/// Parses `--reason`: one of the stable reason codes.
pub fn parse_reason(s: &str) -> Result<ReasonCode, String> {
    ReasonCode::parse(s).ok_or_else(|| {
        let known: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown reason `{s}`; one of: {}", known.join(", "))
    })
}

fn token_mint(a: &MintArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let signer = authz_token::Signer::from_private_jwk_file(&a.key).with_context(|| {
        format!(
            "cannot load the signing key {} (`authzctl keys generate` makes one)",
            a.key.display()
        )
    })?;
    let mut req = authz_token::MintRequest::new(a.issuer.clone(), a.sub.clone(), String::new());
    req.audience = a.audiences.clone();
    req.scopes = a
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    req.roles = a.roles.clone();
    req.tenant = a.tenant.clone();
    req.client_id = a.client_id.clone();
    req.actor = a.actor.clone();
    req.ttl_secs = a.ttl;
    let token = signer
        .mint(&req)
        .with_context(|| format!("cannot mint a token for `{}`", a.sub))?;
    writeln!(out, "{token}")?;
    Ok(())
}

async fn policy_import(a: &ImportArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    // The URL is checked before the files are read so a missing one is reported as the usage
    // error it is, whatever the files contain.
    let url = if a.dry_run {
        None
    } else {
        Some(a.store.url()?)
    };
    let mut set = authz_rbac::PolicySet::default();
    let mut files = Vec::new();
    for path in &a.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file {}", path.display()))?;
        let parsed = authz_rbac::PolicySet::parse_csv(&text, &path.display().to_string())?;
        files.push(serde_json::json!({
            "path": path, "rules": parsed.rules.len(), "assignments": parsed.assignments.len(),
        }));
        if !json {
            writeln!(
                out,
                "{}: {} rules, {} assignments",
                path.display(),
                parsed.rules.len(),
                parsed.assignments.len()
            )?;
        }
        set.extend(parsed);
    }
    let mut report = serde_json::json!({
        "files": files, "rules": set.rules.len(), "assignments": set.assignments.len(),
        "dry_run": a.dry_run,
    });
    if let Some(url) = url {
        let store = a.store.connect().await?;
        let imported = import_into(&store, &set).await;
        store.close().await;
        let (before, after) =
            imported.with_context(|| format!("cannot import into {}", redact_url(url)))?;
        report["store"] = redact_url(url).into();
        report["revision"] = after.into();
        report["changed"] = (after != before).into();
        if !json {
            if after == before {
                writeln!(
                    out,
                    "nothing new: every line is already in {} (policy revision {after})",
                    redact_url(url)
                )?;
            } else {
                writeln!(
                    out,
                    "imported into {}: policy revision {before} -> {after}",
                    redact_url(url)
                )?;
            }
        }
    } else if !json {
        writeln!(out, "dry run: the policy is valid; nothing was written")?;
    }
    if json {
        writeln!(out, "{report}")?;
    }
    Ok(())
}

/// Imports `set` and returns the revisions before and after.
async fn import_into(
    store: &authz_rbac::PolicyStore,
    set: &authz_rbac::PolicySet,
) -> anyhow::Result<(i64, i64)> {
    let before = store.revision().await?;
    let after = store.import(set).await?;
    Ok((before, after))
}

/// Builds the operation named on the command line, the same way the gateway classifies it.
pub fn operation_from_cli(method: &str, target: &str) -> anyhow::Result<Operation> {
    let params = match method {
        "tools/call" | "prompts/get" => serde_json::json!({"name": target}),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            serde_json::json!({"uri": target})
        }
        "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update" => {
            serde_json::json!({"taskId": target})
        }
        "completion/complete" => match target.split_once(':') {
            Some(("prompt", n)) => serde_json::json!({"ref": {"type": "ref/prompt", "name": n}}),
            Some(("resource", u)) => serde_json::json!({"ref": {"type": "ref/resource", "uri": u}}),
            _ => bail!("completion targets are prompt:<name> or resource:<uri>"),
        },
        _ => serde_json::json!({}),
    };
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let msg = authz_types::classify(&serde_json::to_vec(&body)?)
        .map_err(|e| anyhow::anyhow!("`{method} {target}` is not a valid MCP request: {e}"))?;
    if matches!(msg.operation.method, Method::Unknown(_)) {
        bail!("unknown MCP method `{method}`");
    }
    Ok(msg.operation)
}

async fn policy_check(a: &CheckArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let op = operation_from_cli(&a.method, if a.target == "-" { "" } else { &a.target })?;
    let (rbac, store) = match (&a.database_url, a.policies.is_empty()) {
        (Some(url), true) => {
            let store = connect_policy_store(url).await?;
            let rbac = authz_rbac::Rbac::from_store(&a.model, store.clone()).await;
            match rbac {
                Ok(rbac) => (rbac, Some(store)),
                Err(e) => {
                    store.close().await;
                    return Err(e).with_context(|| {
                        format!("cannot load the policy from {}", redact_url(url))
                    });
                }
            }
        }
        (_, no_files) => {
            let files = if no_files {
                vec![PathBuf::from("policies/policy.csv")]
            } else {
                a.policies.clone()
            };
            let rbac = authz_rbac::Rbac::from_files(&a.model, &files)
                .await
                .context("cannot load the policy files")?;
            (rbac, None)
        }
    };
    let principal = Principal {
        subject: a.subject.clone(),
        issuer: "authzctl".into(),
        tenant: a.tenant.clone(),
        client_id: None,
        actors: vec![],
        scopes: vec![],
        roles: a.roles.clone(),
        token_id: None,
        expires_at: 0,
        issued_at: None,
    }
    .normalize();
    let decided = decide(&rbac, &principal, &a.upstream, &op, a.explain);
    if let Some(store) = store {
        store.close().await;
    }
    let (decision, explanation) = decided?;
    if json {
        let mut v = serde_json::json!({
            "subject": a.subject, "method": a.method, "target": op.target.display(), "upstream": a.upstream,
            "tenant": principal.tenant_or_default(), "roles": principal.roles,
            "decision": decision.effect.as_str(), "reason": decision.reason.as_str(),
            "matched_rule": decision.matched_rule, "policy_revision": decision.policy_revision,
        });
        if let Some(e) = &explanation {
            v["explain"] = serde_json::to_value(e)?;
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{} ({}){}",
            decision.effect.as_str().to_uppercase(),
            decision.reason,
            decision
                .matched_rule
                .as_deref()
                .map(|r| format!(" by `{r}`"))
                .unwrap_or_default()
        )?;
        if let Some(e) = &explanation {
            write!(out, "{e}")?;
        }
    }
    Ok(if decision.is_allowed() {
        Outcome::Success
    } else {
        Outcome::Deny
    })
}

fn decide(
    rbac: &authz_rbac::Rbac,
    principal: &Principal,
    upstream: &str,
    op: &Operation,
    explain: bool,
) -> anyhow::Result<(authz_types::Decision, Option<authz_rbac::Explanation>)> {
    if explain {
        let e = rbac
            .explain(principal, upstream, op)
            .context("the policy engine could not decide")?;
        Ok((e.decision.clone(), Some(e)))
    } else {
        let d = rbac
            .decide(principal, upstream, op)
            .context("the policy engine could not decide")?;
        Ok((d, None))
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::Target;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").ok(), Some(300));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("2h").ok(), Some(7200));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        assert_eq!(parse_since("15m").ok(), Some(Since::Ago(900)));
        assert_eq!(
            parse_since("2024-01-01T00:00:00Z").ok(),
            Some(Since::At(1_704_067_200_000))
        );
        assert!(parse_since("yesterday").is_err());
        assert_eq!(Since::Ago(2).to_unix_ms(10_000), 8_000);
    }

    #[test]
    fn cli_operations_classify_like_the_gateway() {
        let op = operation_from_cli("tools/call", "delete_ticket").expect("ok");
        assert_eq!(op.target, Target::Tool("delete_ticket".into()));
        assert!(operation_from_cli("tools/call", "bad name").is_err());
        assert!(operation_from_cli("nope/nope", "x").is_err());
    }

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

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
