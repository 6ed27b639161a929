//! Casbin-backed role-based access control for MCP operations.
//!
//! [`Rbac`] decides whether a verified [`Principal`](authz_types::Principal) may perform an
//! [`Operation`](authz_types::Operation) on an upstream MCP server, per tenant, with deny rules
//! overriding allow rules and default deny. Policies come from Casbin CSV files or from a SQL
//! [`PolicyStore`] (SQLite or Postgres) that the admin CLI edits; [`Rbac::reload`] swaps in a new
//! policy atomically and keeps the old one if the new one does not load.
//!
//! The model (`policies/model.conf`) is `r = sub, dom, obj, act`, `p = sub, dom, obj, act, eft`,
//! `g = _, _, _` (subject, role, tenant). Subjects and roles have separate names: the token
//! subject `alice` is `user:alice` in the policy (`g, user:alice, ticket-agent, default`), roles
//! are bare names that never start with `user:`, so a user named like a role gets nothing of that
//! role and a token role can never stand for a user. Token roles are used as given; one that is
//! not a valid role name is ignored (with a warning). Objects are typed and scoped by upstream —
//! `tool:<upstream>/<name>`, `resource:<upstream>/<uri>`, `prompt:<upstream>/<name>`,
//! `task:<upstream>/<id>` — and rules match them with globs (`*` within a `/` segment, `**`
//! across). Every rule is validated when it is loaded or written, because Casbin panics on an
//! invalid glob at decision time.
//!
//! Casbin is the reference for what a policy means, but it evaluates its matcher over every
//! policy line. [`Rbac::decide`] therefore finds the rules that can match through an index built
//! with each snapshot (by tenant, subject or role, and action, with role inheritance precomputed
//! and globs compiled once), so a decision's cost does not grow with the policy's size (measured
//! by `benches/decide.rs`);
//! [`Rbac::decide_with_casbin`] asks Casbin itself and is what the index is tested against.
//!
//! Policies are linted when they load ([`lint`], [`LintConfig`]): errors refuse the policy,
//! warnings are kept in [`Rbac::lint_report`]. [`Rbac::spawn_watcher`] reloads the policy when
//! its source changes (Postgres notifications, revision polling, file polling) and never
//! replaces a working policy with one that fails to load; [`Rbac::status`] says what is serving.
//! Every change made through a [`PolicyStore`] is recorded in its history
//! ([`PolicyStore::history`]) with the actor given to [`PolicyStore::with_actor`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::path::{Path, PathBuf};
//! use authz_rbac::Rbac;
//! use authz_types::{Method, Operation, Principal, ReasonCode, Target};
//!
//! let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
//! let rbac = Rbac::from_files(&root.join("model.conf"), &[root.join("policy.csv")]).await?;
//!
//! let bob = Principal {
//!     subject: "bob".into(), // `g, user:bob, ticket-reader, default`
//!     issuer: "https://idp.example".into(),
//!     tenant: None,
//!     client_id: None,
//!     actors: vec![],
//!     scopes: vec![],
//!     roles: vec![],
//!     token_id: None,
//!     expires_at: 0,
//!     issued_at: None,
//!     claims: Default::default(),
//! };
//! let get = Operation::new(Method::ToolsCall, Target::Tool("get_ticket".into()));
//! let decision = rbac.decide(&bob, "tickets", &get)?;
//! assert!(decision.is_allowed());
//! assert_eq!(
//!     decision.matched_rule.as_deref(),
//!     Some("p, ticket-reader, default, tool:tickets/get_*, call, allow")
//! );
//!
//! let delete = Operation::new(Method::ToolsCall, Target::Tool("delete_ticket".into()));
//! let decision = rbac.decide(&bob, "tickets", &delete)?;
//! assert_eq!(decision.reason, ReasonCode::NoMatchingRule);
//! println!("{}", rbac.explain(&bob, "tickets", &delete)?);
//!
//! // A user whose `sub` is a role name holds nothing of that role.
//! let impostor = Principal { subject: "ticket-admin".into(), ..bob.clone() };
//! let decision = rbac.decide(&impostor, "tickets", &delete)?;
//! assert_eq!(decision.reason, ReasonCode::NoMatchingRule);
//! # Ok::<(), authz_rbac::Error>(())
//! # }).unwrap();
//! ```
//!
//! With a SQL store instead of files:
//!
//! ```no_run
//! # async fn demo() -> Result<(), authz_rbac::Error> {
//! use std::path::Path;
//! use authz_rbac::{PolicyStore, Rbac};
//! use authz_types::RuleEffect;
//!
//! let store = PolicyStore::connect("sqlite://policy.db?mode=rwc").await?;
//! store.grant("ticket-reader", "default", "call", "tool:tickets/get_*", RuleEffect::Allow).await?;
//! store.assign("bob", "ticket-reader", "default").await?; // stored as `g, user:bob, …`
//! let rbac = Rbac::from_store(Path::new("policies/model.conf"), store.clone()).await?;
//! store.revoke("ticket-reader", "default", "call", "tool:tickets/get_*", RuleEffect::Allow).await?;
//! rbac.reload().await?; // the revoke takes effect here
//! # Ok(()) }
//! ```
//!
//! Following changes live, as a gateway does:
//!
//! ```no_run
//! # async fn demo(rbac: authz_rbac::Rbac) -> Result<(), authz_rbac::Error> {
//! use std::time::Duration;
//! use authz_rbac::WatchConfig;
//!
//! let watcher = rbac.spawn_watcher(WatchConfig {
//!     poll_interval: Duration::from_secs(2),
//!     pg_listen: true,
//!     watch_files: true,
//! })?;
//! // Later, for /readyz and metrics:
//! let status = watcher.status();
//! if let Some(error) = &status.last_error {
//!     eprintln!("serving revision {} but the newest policy was refused: {error}", status.revision);
//! }
//! # Ok(()) }
//! ```

mod adapter;
mod approvals;
mod bindings;
pub mod condition;
mod engine;
mod index;
mod inspect;
mod ledger;
mod lint;
mod pins;
mod rbac;
mod rule;
mod shadow;
mod store;
mod watch;

use std::path::PathBuf;

pub use approvals::{
    Approval, ApprovalEvent, ApprovalFilter, ApprovalState, ApprovalStore, CallContext, HeldCall,
    HoldLimits, Standing,
};
pub use bindings::{BindingKind, BindingStore};
pub use condition::{Arguments as ConditionArgs, Condition, Outcome as ConditionOutcome};
pub use inspect::{Permission, RoleSummary};
pub use ledger::{Level, QuotaLedger, Spend, tokens};
pub use lint::{LintCode, LintConfig, LintFinding, LintReport, Severity, lint};
pub use pins::{DefinitionKind, GATEWAY_ACTOR, Item, Observed, Pin, PinEvent, PinState, PinStore};
pub use rbac::{Candidate, CandidateOrigin, Explanation, Rbac, RuleMatch, WatchStatus};
pub use rule::{
    ACTIONS, ANY_TENANT, LocatedPolicy, OBJECT_KINDS, Origin, PolicyRule, PolicySet,
    RoleAssignment, SUBJECT_PREFIX, check_object_pattern, check_role_name, subject_name,
};
pub use shadow::{ShadowCandidate, ShadowStore};
pub use store::{
    DeclaredRole, POLICY_NOTIFY_CHANNEL, PolicyChange, PolicyStore, RoleDeletion, UNKNOWN_ACTOR,
};
pub use watch::{WatchConfig, WatchHandle};

/// Everything that can go wrong in this crate. A denial is never an error: it is a
/// [`Decision`](authz_types::Decision). An `Err` from [`Rbac::decide`] means "could not decide".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the Casbin model {path}")]
    Model {
        path: PathBuf,
        #[source]
        source: Box<casbin::Error>,
    },
    #[error("the Casbin model {path} is not usable here: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("invalid policy line {line} in {origin}")]
    InvalidPolicy {
        origin: String,
        line: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("invalid rule: {reason}")]
    InvalidRule { reason: String },
    #[error("invalid object pattern {pattern:?}")]
    InvalidPattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("no such rule or assignment")]
    NotFound,
    #[error("the rule or assignment already exists")]
    AlreadyExists,
    #[error("not supported: {operation}")]
    Unsupported { operation: String },
    /// The policy store could not be opened: its URL is not one the stores understand, the
    /// database is unreachable, or its migrations failed.
    #[error("cannot open the policy store")]
    Open {
        #[source]
        source: authz_db::Error,
    },
    #[error("policy database error")]
    Database {
        #[source]
        source: sqlx::Error,
    },
    #[error("Casbin failed to load the policy")]
    Casbin {
        #[source]
        source: Box<casbin::Error>,
    },
    #[error("the policy engine failed while deciding")]
    Engine {
        #[source]
        source: Box<casbin::Error>,
    },
    #[error("the policy engine panicked while deciding")]
    EnginePanicked,
    #[error("the policy has {} lint error(s); the first: {}", report.errors().count(), first_error(report))]
    Lint { report: Box<LintReport> },
    #[error("{what} needs a Tokio runtime")]
    NoRuntime { what: &'static str },
}

fn first_error(report: &LintReport) -> String {
    report
        .errors()
        .next()
        .map(|f| format!("{}: {} ({})", f.origin, f.message, f.rule))
        .unwrap_or_default()
}
