//! `authzctl`, the operator's CLI: development keys, tokens, roles, policy checks and the
//! audit trail.
//!
//! The binary is a thin `main.rs`; tests call [`execute`] with parsed arguments and a buffer, so
//! no process is spawned.
//!
//! Exit codes: 0 success (and "allow" for `policy check`), 1 runtime error, 2 usage error,
//! 3 "deny" from `policy check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use authz_types::{AuditFilter, Effect, Method, Operation, Principal};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code of `policy check` when the decision is deny.
pub const EXIT_DENY: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "authzctl",
    version,
    about = "Administer the MCP authorization gateway: keys, tokens, roles, policy checks, audit.",
    long_about = "Administer the MCP authorization gateway.\n\n\
        Role and policy commands work on the same SQL policy store the gateway reads \
        (--database-url or AUTHZ_POLICY_DATABASE_URL); `policy check` can also read policy files. \
        `audit list` reads the audit store (AUTHZ_AUDIT_DATABASE_URL)."
)]
pub struct Cli {
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing keys for development (production keys come from your identity provider).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Mint tokens signed with a local key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Grant permissions to roles and assign roles to subjects (SQL policy store).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Ask what the policy decides.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read the audit trail.
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
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Key id written into both files and into every token's header.
        #[arg(long, default_value = "dev-1")]
        kid: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a signed access token (printed on stdout).
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// Subject (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Scopes (repeat, or one space-separated value).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Lifetime: e.g. 300, 300s, 15m, 1h.
    #[arg(long, default_value = "15m")]
    pub ttl: String,
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
    /// Policy store URL (sqlite://… or postgres://…).
    #[arg(long, env = "AUTHZ_POLICY_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Allow (or with --deny, forbid) a role an action on objects matching a pattern.
    Grant(RuleArgs),
    /// Remove a grant (or a deny rule with --deny).
    Revoke(RuleArgs),
    /// Give a subject a role in a tenant.
    Assign(AssignArgs),
    /// Take a role away from a subject.
    Unassign(AssignArgs),
    /// List rules and assignments.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    pub role: String,
    /// call, read, subscribe, get, complete, task or *.
    pub action: String,
    /// e.g. tool:tickets/get_*, resource:tickets/*, prompt:tickets/*.
    pub object: String,
    #[arg(long, default_value = authz_types::DEFAULT_TENANT)]
    pub tenant: String,
    /// A deny rule (deny overrides allow).
    #[arg(long)]
    pub deny: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    pub subject: String,
    pub role: String,
    #[arg(long, default_value = authz_types::DEFAULT_TENANT)]
    pub tenant: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide `<subject> <method> <target>` (exit 0 allow, 3 deny).
    Check(CheckArgs),
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
    #[arg(long, default_value = "policies/model.conf")]
    pub model: PathBuf,
    /// Policy CSV files (used when no --database-url is given).
    #[arg(long = "policy", default_value = "policies/policy.csv")]
    pub policies: Vec<PathBuf>,
    /// Read policies from this SQL store instead of files.
    #[arg(long, env = "AUTHZ_POLICY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, newest first.
    List(AuditListArgs),
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Audit store URL.
    #[arg(long, env = "AUTHZ_AUDIT_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long)]
    pub subject: Option<String>,
    /// allow or deny.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    #[arg(long)]
    pub upstream: Option<String>,
    /// Only records newer than this: a duration ago (15m, 2h) or RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// Parses the process arguments, runs the command and maps the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authzctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(execute(cli, &mut stdout)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authzctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command, writing its output to `out`.
pub async fn execute(cli: Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Keys(KeysCommand::Generate {
            out_dir,
            alg,
            kid,
            force,
        }) => {
            keys_generate(&out_dir, &alg, &kid, force, json, out)?;
        }
        Command::Token(TokenCommand::Mint(args)) => token_mint(&args, out)?,
        Command::Role(cmd) => role(cmd, json, out).await?,
        Command::Policy(PolicyCommand::Check(args)) => return policy_check(&args, json, out).await,
        Command::Audit(AuditCommand::List(args)) => audit_list(&args, json, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn keys_generate(
    dir: &Path,
    alg: &str,
    kid: &str,
    force: bool,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let alg: authz_token::KeyAlgorithm = alg
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown algorithm `{alg}`; use ES256, RS256 or EdDSA"))?;
    let private = dir.join("signing-key.jwk");
    let public = dir.join("jwks.json");
    if !force && (private.exists() || public.exists()) {
        bail!(
            "{} or {} already exists; pass --force to replace them",
            private.display(),
            public.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = authz_token::generate_key_pair(alg, kid).context("generating the key pair")?;
    write_private(&private, keys.private_jwk.as_bytes())?;
    std::fs::write(&public, keys.public_jwks.as_bytes())
        .with_context(|| format!("writing {}", public.display()))?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"private_key": private, "jwks": public, "kid": kid, "alg": alg.to_string()})
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

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Parses `300`, `300s`, `15m`, `2h`, `1d` into seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("`{s}` is not a duration (e.g. 300s, 15m, 1h)"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("`{s}`: unknown unit `{unit}` (use s, m, h or d)"),
    };
    n.checked_mul(mul)
        .filter(|v| *v > 0)
        .ok_or_else(|| anyhow::anyhow!("`{s}` must be a positive duration"))
}

fn token_mint(a: &MintArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let signer = authz_token::Signer::from_private_jwk_file(&a.key).with_context(|| {
        format!(
            "loading the signing key {} (authzctl keys generate makes one)",
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
    req.ttl_secs = parse_duration(&a.ttl)?;
    let token = signer.mint(&req).context("signing the token")?;
    writeln!(out, "{token}")?;
    Ok(())
}

async fn role(cmd: RoleCommand, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let connect = |s: &StoreArgs| {
        let url = s.database_url.clone();
        async move {
            authz_rbac::PolicyStore::connect(&url)
                .await
                .context("connecting to the policy store")
        }
    };
    let effect = |deny: bool| if deny { Effect::Deny } else { Effect::Allow };
    let (what, revision) = match cmd {
        RoleCommand::Grant(r) => {
            let store = connect(&r.store).await?;
            let rev = store
                .grant(&r.role, &r.tenant, &r.action, &r.object, effect(r.deny))
                .await?;
            (
                format!(
                    "granted: {} {} {} {} in tenant {}",
                    r.role,
                    effect(r.deny).as_str(),
                    r.action,
                    r.object,
                    r.tenant
                ),
                rev,
            )
        }
        RoleCommand::Revoke(r) => {
            let store = connect(&r.store).await?;
            let rev = store
                .revoke(&r.role, &r.tenant, &r.action, &r.object, effect(r.deny))
                .await?;
            (
                format!(
                    "revoked: {} {} {} {} in tenant {}",
                    r.role,
                    effect(r.deny).as_str(),
                    r.action,
                    r.object,
                    r.tenant
                ),
                rev,
            )
        }
        RoleCommand::Assign(a) => {
            let store = connect(&a.store).await?;
            let rev = store.assign(&a.subject, &a.role, &a.tenant).await?;
            (
                format!(
                    "assigned: {} has role {} in tenant {}",
                    a.subject, a.role, a.tenant
                ),
                rev,
            )
        }
        RoleCommand::Unassign(a) => {
            let store = connect(&a.store).await?;
            let rev = store.unassign(&a.subject, &a.role, &a.tenant).await?;
            (
                format!(
                    "unassigned: {} no longer has role {} in tenant {}",
                    a.subject, a.role, a.tenant
                ),
                rev,
            )
        }
        RoleCommand::List { store } => {
            let store = connect(&store).await?;
            let rules = store.rules().await?;
            let assignments = store.assignments().await?;
            let revision = store.revision().await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"revision": revision, "rules": rules, "assignments": assignments})
                )?;
            } else {
                writeln!(out, "policy revision {revision}\n\nRULES")?;
                for r in &rules {
                    writeln!(out, "  {r}")?;
                }
                writeln!(out, "\nASSIGNMENTS")?;
                for a in &assignments {
                    writeln!(out, "  {a}")?;
                }
            }
            return Ok(());
        }
    };
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"result": what, "revision": revision})
        )?;
    } else {
        writeln!(out, "{what} (policy revision {revision})")?;
    }
    Ok(())
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
    let msg =
        authz_types::classify(&serde_json::to_vec(&body)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    if matches!(msg.operation.method, Method::Unknown(_)) {
        bail!("unknown MCP method `{method}`");
    }
    Ok(msg.operation)
}

async fn policy_check(a: &CheckArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let rbac = match &a.database_url {
        Some(url) => {
            let store = authz_rbac::PolicyStore::connect(url)
                .await
                .context("connecting to the policy store")?;
            authz_rbac::Rbac::from_store(&a.model, store)
                .await
                .context("loading policies from the store")?
        }
        None => authz_rbac::Rbac::from_files(&a.model, &a.policies)
            .await
            .context("loading policy files")?,
    };
    let op = operation_from_cli(&a.method, if a.target == "-" { "" } else { &a.target })?;
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
    let decision = rbac.decide(&principal, &a.upstream, &op)?;
    let explanation = if a.explain {
        Some(rbac.explain(&principal, &a.upstream, &op)?)
    } else {
        None
    };
    if json {
        let mut v = serde_json::json!({
            "subject": a.subject, "method": a.method, "target": op.target.display(), "upstream": a.upstream,
            "decision": decision.effect.as_str(), "reason": decision.reason.as_str(),
            "matched_rule": decision.matched_rule, "policy_revision": decision.policy_revision,
        });
        if let Some(e) = &explanation {
            v["explain"] = serde_json::Value::String(e.to_string());
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
            writeln!(out, "{e}")?;
        }
    }
    Ok(if decision.is_allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENY)
    })
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

fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000)?);
    }
    let secs =
        parse_duration(s).context("--since takes a duration (15m, 2h) or an RFC 3339 time")?;
    Ok(authz_types::now_unix_ms() - secs * 1000)
}

async fn audit_list(a: &AuditListArgs, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = authz_audit::AuditStore::connect(&a.database_url)
        .await
        .context("opening the audit store")?;
    let filter = AuditFilter {
        subject: a.subject.clone(),
        decision: a.decision.as_deref().and_then(Effect::parse),
        upstream: a.upstream.clone(),
        since_ms: a.since.as_deref().map(parse_since).transpose()?,
        limit: Some(a.limit),
        ..AuditFilter::default()
    };
    let records = store
        .query(&filter)
        .await
        .context("querying the audit store")?;
    if json {
        for r in &records {
            writeln!(
                out,
                "{}",
                serde_json::json!({"id": r.id, "record": r.record})
            )?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<6} {:<22} {:<10} {:<18} {:<24} {:<26} RULE",
        "TIME", "RESULT", "REASON", "SUBJECT", "ROLES", "METHOD", "TARGET"
    )?;
    for r in &records {
        let rec = &r.record;
        writeln!(
            out,
            "{:<24} {:<6} {:<22} {:<10} {:<18} {:<24} {:<26} {}",
            format_time(rec.time_ms),
            rec.decision.as_str(),
            rec.reason.as_str(),
            rec.subject.as_deref().unwrap_or("-"),
            if rec.roles.is_empty() {
                "-".to_owned()
            } else {
                rec.roles.join(",")
            },
            rec.method,
            rec.target.as_deref().unwrap_or("-"),
            rec.matched_rule.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
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
    }

    #[test]
    fn cli_operations_classify_like_the_gateway() {
        let op = operation_from_cli("tools/call", "delete_ticket").expect("ok");
        assert_eq!(op.target, Target::Tool("delete_ticket".into()));
        assert!(operation_from_cli("tools/call", "bad name").is_err());
        assert!(operation_from_cli("nope/nope", "x").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
