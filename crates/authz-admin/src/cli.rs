//! The clap tree of `authzctl`: every command, its arguments and their value parsers, and the
//! environment variables that name the stores.

use std::path::PathBuf;

use authz_audit::AuditQuery;
use authz_token::KeyAlgorithm;
use authz_types::{AuditFilter, Effect, ReasonCode, RuleEffect};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{Since, Until, UsageError, parse_duration, parse_rfc3339, parse_since, parse_until};

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
    /// Definitions the gateways pinned (tools, prompts, resource templates): list them, show
    /// what changed, approve or reject a change.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Calls held by approve rules: list and show them, approve or reject one.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals, newest first (default: the pending ones).
    List {
        /// Only approvals in this state (`all` for every one).
        #[arg(long, default_value = "pending", value_parser = ["pending", "approved", "rejected", "used", "expired", "all"])]
        state: String,
        /// Only this route's.
        #[arg(long)]
        upstream: Option<String>,
        /// Only calls by this token subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only calls made in this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        store: ApprovalStoreArgs,
    },
    /// One approval: the held call, who asked, its (redacted) arguments, its state and history.
    Show {
        /// The approval id (`apv-...`), as the agent and the list show it.
        id: String,
        #[command(flatten)]
        store: ApprovalStoreArgs,
    },
    /// Approve a pending call: the identical call may then be made once.
    Approve {
        id: String,
        /// How long the caller has to make the call again (seconds).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        use_within_secs: u64,
        /// Who the decision is recorded as (default: $USER, else the OS account).
        #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
        actor: Option<String>,
        #[command(flatten)]
        store: ApprovalStoreArgs,
    },
    /// Delete approvals that lapsed before a time (pending ones nobody decided, approvals used
    /// or left unused, rejections whose block ended) and the approvers' decisions about them
    /// that are already in an audit chain.
    Prune {
        /// A duration ago (30d) or an RFC 3339 time.
        #[arg(long, value_name = "TIME|DURATION", value_parser = parse_since)]
        before: Since,
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        store: ApprovalStoreArgs,
    },
    /// Reject a pending call: identical calls are refused for a while.
    Reject {
        id: String,
        /// Why, shown to whoever looks at the approval.
        #[arg(long)]
        reason: Option<String>,
        /// How long identical calls are refused (seconds).
        #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        block_secs: u64,
        /// Who the decision is recorded as (default: $USER, else the OS account).
        #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
        actor: Option<String>,
        #[command(flatten)]
        store: ApprovalStoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Every pinned definition with its state (approved, pending, rejected).
    List {
        /// Only this upstream's.
        #[arg(long)]
        upstream: Option<String>,
        /// Only pins in this state.
        #[arg(long, value_parser = ["approved", "pending", "rejected"])]
        state: Option<String>,
        #[command(flatten)]
        store: PinStoreArgs,
    },
    /// What changed: the approved definition against the pending one, line by line.
    Diff(PinItemArgs),
    /// Approve the pending definition: every gateway shows it and lets it be called within
    /// seconds.
    Approve(PinDecisionArgs),
    /// Reject the pending definition: it stays hidden and its calls refused.
    Reject(PinDecisionArgs),
    /// Every step of every pin: first sight, changes, reverts, approvals and rejections.
    History {
        /// Only this upstream's.
        #[arg(long)]
        upstream: Option<String>,
        #[command(flatten)]
        store: PinStoreArgs,
    },
}

/// Where pins are stored: the gateway's audit database.
#[derive(Debug, Args)]
pub struct PinStoreArgs {
    /// The gateway's audit store URL (pins live there): sqlite://path or postgres://….
    #[arg(long, value_name = "URL", env = AUDIT_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
}

impl PinStoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        given_url(
            self.database_url.as_deref(),
            "pin store (the gateway's audit database)",
            AUDIT_URL_ENV,
            "sqlite://path or postgres://…",
        )
    }
}

/// Where approvals are stored: the gateway's audit database.
#[derive(Debug, Args)]
pub struct ApprovalStoreArgs {
    /// The gateway's audit store URL (approvals live there): sqlite://path or postgres://….
    #[arg(long, value_name = "URL", env = AUDIT_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
}

impl ApprovalStoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        given_url(
            self.database_url.as_deref(),
            "approval store (the gateway's audit database)",
            AUDIT_URL_ENV,
            "sqlite://path or postgres://…",
        )
    }
}

/// One pinned definition.
#[derive(Debug, Args)]
pub struct PinItemArgs {
    /// The tool or prompt name, or the resource template's URI template.
    pub name: String,
    /// The upstream route it belongs to.
    #[arg(long)]
    pub upstream: String,
    #[arg(long, default_value = "tool", value_parser = ["tool", "prompt", "resource_template"])]
    pub kind: String,
    #[command(flatten)]
    pub store: PinStoreArgs,
}

/// A decision on one pinned definition's pending change.
#[derive(Debug, Args)]
pub struct PinDecisionArgs {
    #[command(flatten)]
    pub item: PinItemArgs,
    /// Decide only if the pending definition's digest starts with this (at least 8 hex digits,
    /// as `tools diff` shows it), so the decision is about what was reviewed.
    #[arg(long)]
    pub digest: Option<String>,
    /// Who the decision is recorded as (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
    pub actor: Option<String>,
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
    #[arg(long, value_name = "URL", env = REVOCATION_URL_ENV, hide_env_values = true)]
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
    #[arg(long, value_name = "URL", env = POLICY_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Who changes are recorded as in the policy history (default: $USER, else the OS account).
    #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
    pub actor: Option<String>,
}

impl StoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        given_url(
            self.database_url.as_deref(),
            "policy store",
            POLICY_URL_ENV,
            "sqlite://path?mode=rwc or postgres://…",
        )
    }

    /// Who changes are recorded as: `--actor`, `AUTHZ_ACTOR`, `$USER`, `$LOGNAME`, the
    /// operating-system account the process runs as, else `unknown`.
    pub fn actor(&self) -> String {
        resolve_actor(self.actor.as_deref())
    }
}

/// Who a change is recorded as: `explicit` (`--actor` or `AUTHZ_ACTOR`), `$USER`, `$LOGNAME`,
/// the operating-system account the process runs as, else `unknown`.
pub fn resolve_actor(explicit: Option<&str>) -> String {
    explicit
        .filter(|a| !a.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .or_else(os_account)
        .unwrap_or_else(|| authz_rbac::UNKNOWN_ACTOR.to_owned())
}

/// The account this process runs as, for when the environment names nobody (cron, containers,
/// `env -i`): its real uid from `/proc/self/status` and that uid's name in `/etc/passwd`, or
/// `uid:<n>` when the uid has no name there. `None` where `/proc` is not available.
fn os_account() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let named = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let uid_field = fields.nth(1)?;
                (uid_field == uid && !name.is_empty()).then(|| name.to_owned())
            })
        });
    Some(named.unwrap_or_else(|| format!("uid:{uid}")))
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
    /// Allow (or with --deny, forbid; with --approve, hold for an approver) a role an action on objects matching a pattern.
    Grant {
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove a grant (or a deny rule with --deny, an approve rule with --approve).
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
    #[arg(long, conflicts_with = "approve")]
    pub deny: bool,
    /// An approve rule: the call is held until an approver approves it (tool calls only;
    /// deny overrides approve, approve overrides allow).
    #[arg(long)]
    pub approve: bool,
    /// A condition (CEL) over the call's `args` and the `principal`: the rule applies only
    /// when it holds, e.g. 'args.amount <= 500'. A condition that cannot be decided never
    /// allows (and always denies). To revoke such a rule, give the same condition.
    #[arg(long, value_name = "EXPR")]
    pub when: Option<String>,
}

impl RuleArgs {
    pub(crate) fn effect(&self) -> RuleEffect {
        if self.deny {
            RuleEffect::Deny
        } else if self.approve {
            RuleEffect::Approve
        } else {
            RuleEffect::Allow
        }
    }

    /// The rule as a policy line, for messages.
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "p, {}, {}, {}, {}, {}",
            self.role,
            self.tenant,
            self.object,
            self.action,
            self.effect().as_str()
        );
        if let Some(c) = self
            .when
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            line.push_str(&format!(", \"{}\"", c.replace('"', "\"\"")));
        }
        line
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
    /// Re-decide the audited decisions of a window under a candidate policy and report every
    /// decision that would change (who, what, old and new result, the rule responsible).
    Replay(ReplayArgs),
    /// Evaluate a candidate policy beside the live one on real traffic, never enforced: every
    /// gateway sharing the audit database records where it would decide otherwise.
    #[command(subcommand)]
    Shadow(ShadowCommand),
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

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Start evaluating the candidate (it is checked first; one that does not load is refused);
    /// a candidate already running is stopped.
    Start {
        #[command(flatten)]
        candidate: CandidateArgs,
        /// Casbin model.
        #[arg(
            long,
            default_value = "policies/model.conf",
            env = "AUTHZ_POLICY_MODEL"
        )]
        model: PathBuf,
        /// Who the start is recorded as (default: $USER, else the OS account).
        #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
        actor: Option<String>,
        #[command(flatten)]
        store: AuditStoreArgs,
    },
    /// Stop evaluating the candidate.
    Stop {
        #[arg(long, value_name = "NAME", env = ACTOR_ENV, hide_env_values = true)]
        actor: Option<String>,
        #[command(flatten)]
        store: AuditStoreArgs,
    },
    /// The candidate running (if any) and the ones before it.
    Status {
        #[command(flatten)]
        store: AuditStoreArgs,
    },
    /// The decisions the candidate would have made otherwise, from the audit trail, grouped
    /// and counted (default: the last 24 hours).
    Report {
        #[command(flatten)]
        store: AuditStoreArgs,
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// How many groups to list (all are counted).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        top: u32,
    },
}

/// The candidate policy of a replay or a shadow run: files, or a revision of the policy store.
#[derive(Debug, Args)]
pub struct CandidateArgs {
    /// The candidate policy's CSV files (repeatable).
    #[arg(
        long = "candidate",
        value_name = "CSV",
        required_unless_present = "candidate_revision"
    )]
    pub candidates: Vec<PathBuf>,
    /// Or the policy store's policy as it stood at this revision (`policy history` shows them).
    #[arg(long, value_name = "N", conflicts_with = "candidates")]
    pub candidate_revision: Option<i64>,
    /// The policy store holding that revision.
    #[arg(long, value_name = "URL", env = POLICY_URL_ENV, hide_env_values = true)]
    pub policy_database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub candidate: CandidateArgs,
    /// Casbin model.
    #[arg(
        long,
        default_value = "policies/model.conf",
        env = "AUTHZ_POLICY_MODEL"
    )]
    pub model: PathBuf,
    /// The audit store holding the decisions (the gateway's audit database).
    #[command(flatten)]
    pub store: AuditStoreArgs,
    /// Which decisions to re-decide (default: the last 24 hours).
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// How many groups of changes to list (all are counted).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub top: u32,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Policy CSV files (repeatable). When given, they are used even if a store URL is set;
    /// with neither, policies/policy.csv is read.
    #[arg(long = "policy", value_name = "CSV")]
    pub policies: Vec<PathBuf>,
    /// Lint the policy in this SQL store instead of files.
    #[arg(long, value_name = "URL", env = POLICY_URL_ENV, hide_env_values = true)]
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
    /// Show the rules considered and matched (and for a rule with a condition, the values it
    /// saw and how it came out).
    #[arg(long)]
    pub explain: bool,
    /// The call's arguments (a JSON object) for rules with conditions; a resource's condition
    /// sees its URI as args.uri. Without it, a condition on args cannot hold.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
    /// More token claims (a JSON object), as a condition sees them in principal.claims.
    #[arg(long, value_name = "JSON")]
    pub claims: Option<String>,
    /// The token's client (azp / client_id), as principal.client_id.
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// The delegation chain (act), outermost (current) actor first (repeatable).
    #[arg(long = "actor", value_name = "SUB")]
    pub actors: Vec<String>,
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
    #[arg(long, value_name = "URL", env = POLICY_URL_ENV, hide_env_values = true)]
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
    /// Summarise denials over a window (default the last 24 h): by reason, subject and target.
    Stats(AuditStatsArgs),
    /// Check the hash chains and checkpoints (exit 5 naming the first tampered record).
    Verify(AuditVerifyArgs),
    /// Delete records older than a time; each chain keeps an anchor so the rest still verifies.
    Prune(AuditPruneArgs),
}

/// The audit store.
#[derive(Debug, Args)]
pub struct AuditStoreArgs {
    /// Audit store URL: sqlite://path or postgres://user:password@host/db.
    #[arg(long, value_name = "URL", env = AUDIT_URL_ENV, hide_env_values = true)]
    pub database_url: Option<String>,
}

impl AuditStoreArgs {
    /// The store URL, or a usage error naming the flag and the environment variable.
    pub fn url(&self) -> anyhow::Result<&str> {
        given_url(
            self.database_url.as_deref(),
            "audit store",
            AUDIT_URL_ENV,
            "sqlite://path or postgres://…",
        )
    }
}

/// `url`, else a usage error saying that no `store` was given, naming the flag and `env` and
/// showing the `forms` of a URL.
fn given_url<'a>(
    url: Option<&'a str>,
    store: &str,
    env: &str,
    forms: &str,
) -> anyhow::Result<&'a str> {
    url.ok_or_else(|| {
        UsageError::new(format!(
            "no {store} given: pass --database-url <URL> or set {env} ({forms})"
        ))
        .into()
    })
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

#[derive(Debug, Args)]
pub struct AuditStatsArgs {
    #[command(flatten)]
    pub store: AuditStoreArgs,
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// How many of the most frequent reasons, subjects and targets to show.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,
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

/// Parses a JOSE algorithm name for `--alg`.
fn parse_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    s.parse()
        .map_err(|_| format!("unknown algorithm `{s}`; use ES256, RS256 or EdDSA"))
}

/// Parses `--reason`: one of the stable reason codes.
pub fn parse_reason(s: &str) -> Result<ReasonCode, String> {
    ReasonCode::parse(s).ok_or_else(|| {
        let known: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown reason `{s}`; one of: {}", known.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_account_is_the_one_whoami_names() {
        let Ok(out) = std::process::Command::new("whoami").output() else {
            return; // no whoami here: nothing to compare with
        };
        let expected = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if cfg!(target_os = "linux") {
            assert_eq!(os_account().as_deref(), Some(expected.as_str()));
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
