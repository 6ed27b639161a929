//! [`Rbac`]: the current policy snapshot, its reload, and the decision over MCP operations.

use std::fmt;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use authz_types::{
    CompletionRef, Decision, Method, Operation, Principal, ReasonCode, RuleEffect, Target,
};
use casbin::RbacApi;
use serde::{Deserialize, Serialize};

use crate::condition::{Arguments as ConditionArgs, Outcome};
use crate::engine::{Engine, LoadedRule, Lookup};
use crate::{
    Error, LintConfig, LintReport, LocatedPolicy, PolicyStore, check_role_name, lint, subject_name,
};

/// Casbin-backed RBAC over MCP operations. Cheap to clone; every clone sees the same policy.
///
/// Decisions read an immutable snapshot (enforcer, index and revision) that [`Rbac::reload`]
/// replaces as a whole, so a decision never sees half a policy and never waits for a reload.
#[derive(Clone)]
pub struct Rbac {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) source: Source,
    current: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so an older rebuild can never replace a newer one.
    reloading: tokio::sync::Mutex<()>,
    lint: RwLock<LintConfig>,
    pub(crate) status: Mutex<StatusState>,
}

pub(crate) enum Source {
    Files {
        model: PathBuf,
        policies: Vec<PathBuf>,
    },
    Store {
        model: PathBuf,
        store: PolicyStore,
    },
}

struct Snapshot {
    engine: Engine,
    revision: i64,
    /// The warnings lint reported when this policy loaded (errors refuse a policy).
    report: LintReport,
    /// What was loaded: the content hash of the files, or the store revision.
    marker: Marker,
    loaded_at_ms: i64,
}

/// Identifies the source content a load read, so a watcher can tell a new policy from one it
/// already has (or already refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// The hash of the model and policy files' bytes.
    Files(u64),
    /// The store's revision.
    Revision(i64),
}

/// Bookkeeping for [`Rbac::status`], updated by every reload and by the watcher.
#[derive(Debug, Default)]
pub(crate) struct StatusState {
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_ms: Option<i64>,
    /// The source content whose load failed last, so it is not retried until it changes.
    pub(crate) failed: Option<Marker>,
    pub(crate) reloads: u64,
    pub(crate) failed_reloads: u64,
    pub(crate) last_reload_duration_ms: u64,
    pub(crate) check_error: Option<String>,
    pub(crate) last_check_ms: Option<i64>,
    pub(crate) watching: bool,
    pub(crate) listening: bool,
}

/// The health of the policy for `/readyz` and metrics: what is serving, and whether the newest
/// policy was refused. Returned by [`Rbac::status`] and [`crate::WatchHandle::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStatus {
    /// The revision decisions are made under.
    pub revision: i64,
    /// When the serving policy was loaded, Unix milliseconds.
    pub last_reload_ms: i64,
    /// How long the last successful load took, in milliseconds.
    pub last_reload_duration_ms: u64,
    /// Why the newest policy was refused (load or lint error, with its causes); `None` once a
    /// policy loads again. While it is set, the previous policy keeps serving.
    pub last_error: Option<String>,
    /// When that happened, Unix milliseconds.
    pub last_error_ms: Option<i64>,
    /// Why the watcher could not look at the source the last time it tried (a database
    /// outage, an unreadable file); `None` after a successful check.
    pub check_error: Option<String>,
    /// When the watcher last looked at the source, Unix milliseconds.
    pub last_check_ms: Option<i64>,
    /// Successful reloads since start (the first load not counted).
    pub reloads: u64,
    /// Refused reloads since start.
    pub failed_reloads: u64,
    /// `p` rules in the serving policy.
    pub rules: usize,
    /// Lint warnings of the serving policy.
    pub warnings: usize,
    /// Whether decisions use the index; false when the model's matcher is not the one in
    /// `policies/model.conf` (every decision then runs through Casbin, linear in policy size).
    pub indexed: bool,
    /// Whether a watcher is running.
    pub watching: bool,
    /// Whether the watcher is listening for Postgres notifications right now.
    pub listening: bool,
}

impl fmt::Debug for Rbac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.inner.source {
            Source::Files { model, policies } => format!("files {model:?} {policies:?}"),
            Source::Store { model, .. } => format!("store with model {model:?}"),
        };
        f.debug_struct("Rbac")
            .field("source", &source)
            .field("revision", &self.revision())
            .finish()
    }
}

impl Rbac {
    /// Loads the model and one or more Casbin policy CSV files (concatenated in order), linted
    /// with the default [`LintConfig`] (which only warns). The revision starts at 1 and grows by
    /// one per successful [`Rbac::reload`].
    pub async fn from_files(model: &Path, policies: &[PathBuf]) -> Result<Self, Error> {
        Self::from_files_with_lint(model, policies, LintConfig::default()).await
    }

    /// [`Rbac::from_files`] with what the linter should know (upstreams, tools, token roles);
    /// a policy with lint errors is refused ([`Error::Lint`]). The same configuration applies to
    /// every reload until [`Rbac::set_lint_config`] changes it.
    pub async fn from_files_with_lint(
        model: &Path,
        policies: &[PathBuf],
        lint: LintConfig,
    ) -> Result<Self, Error> {
        let source = Source::Files {
            model: model.to_owned(),
            policies: policies.to_vec(),
        };
        let (_, loaded) = load(&source, &lint).await;
        let mut snapshot = loaded?;
        snapshot.revision = 1;
        Ok(Self::with_snapshot(source, snapshot, lint))
    }

    /// Loads the model and the rules of a SQL store; the revision is the store's. Linted with
    /// the default [`LintConfig`] (which only warns).
    pub async fn from_store(model: &Path, store: PolicyStore) -> Result<Self, Error> {
        Self::from_store_with_lint(model, store, LintConfig::default()).await
    }

    /// [`Rbac::from_store`] with what the linter should know; see
    /// [`Rbac::from_files_with_lint`]. Lint findings name the `casbin_rule` row.
    pub async fn from_store_with_lint(
        model: &Path,
        store: PolicyStore,
        lint: LintConfig,
    ) -> Result<Self, Error> {
        let source = Source::Store {
            model: model.to_owned(),
            store,
        };
        let (_, loaded) = load(&source, &lint).await;
        Ok(Self::with_snapshot(source, loaded?, lint))
    }

    fn with_snapshot(source: Source, snapshot: Snapshot, lint: LintConfig) -> Self {
        tracing::info!(
            revision = snapshot.revision,
            rules = snapshot.engine.rule_count(),
            warnings = snapshot.report.findings.len(),
            "policy loaded"
        );
        Self {
            inner: Arc::new(Inner {
                source,
                current: RwLock::new(Arc::new(snapshot)),
                reloading: tokio::sync::Mutex::new(()),
                lint: RwLock::new(lint),
                status: Mutex::new(StatusState::default()),
            }),
        }
    }

    /// Replaces what the linter knows (say, once the upstreams' tools have been listed). It
    /// applies from the next reload on; the serving policy is not re-checked.
    pub fn set_lint_config(&self, lint: LintConfig) {
        *self
            .inner
            .lint
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lint;
    }

    /// What the linter currently knows.
    pub fn lint_config(&self) -> LintConfig {
        self.inner
            .lint
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The lint warnings of the serving policy.
    pub fn lint_report(&self) -> LintReport {
        self.snapshot().report.clone()
    }

    /// Rebuilds the policy off-lock from its source, lints it and swaps it in atomically. A load
    /// or lint failure leaves the serving policy in place, is recorded in [`Rbac::status`] and
    /// returned as `Err`.
    pub async fn reload(&self) -> Result<i64, Error> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let started = Instant::now();
        let lint = self.lint_config();
        let (marker, loaded) = load(&self.inner.source, &lint).await;
        let mut snapshot = match loaded {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    revision = self.revision(),
                    "policy reload failed; keeping the current policy"
                );
                let mut status = self.lock_status();
                status.last_error = Some(error_chain(&error));
                status.last_error_ms = Some(authz_types::now_unix_ms());
                status.failed = marker;
                status.failed_reloads += 1;
                return Err(error);
            }
        };
        if let Source::Files { .. } = self.inner.source {
            snapshot.revision = self.revision() + 1;
        }
        let revision = snapshot.revision;
        let rules = snapshot.engine.rule_count();
        let warnings = snapshot.report.findings.len();
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
        {
            let mut status = self.lock_status();
            status.last_error = None;
            status.last_error_ms = None;
            status.failed = None;
            status.reloads += 1;
            status.last_reload_duration_ms =
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        tracing::info!(revision, rules, warnings, "policy reloaded");
        Ok(revision)
    }

    pub(crate) fn lock_status(&self) -> std::sync::MutexGuard<'_, StatusState> {
        // The status is plain bookkeeping; a panic elsewhere cannot leave it inconsistent.
        self.inner
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is serving and whether the newest policy was refused; see [`WatchStatus`].
    pub fn status(&self) -> WatchStatus {
        let snapshot = self.snapshot();
        let status = self.lock_status();
        WatchStatus {
            revision: snapshot.revision,
            last_reload_ms: snapshot.loaded_at_ms,
            last_reload_duration_ms: status.last_reload_duration_ms,
            last_error: status.last_error.clone(),
            last_error_ms: status.last_error_ms,
            check_error: status.check_error.clone(),
            last_check_ms: status.last_check_ms,
            reloads: status.reloads,
            failed_reloads: status.failed_reloads,
            rules: snapshot.engine.rule_count(),
            warnings: snapshot.report.findings.len(),
            indexed: snapshot.engine.is_indexed(),
            watching: status.watching,
            listening: status.listening,
        }
    }

    /// The revision of the policy decisions are made under right now.
    pub fn revision(&self) -> i64 {
        self.snapshot().revision
    }

    /// What the serving policy was loaded from (for the watcher).
    pub(crate) fn marker(&self) -> Marker {
        self.snapshot().marker
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a complete snapshot (the writer only assigns an `Arc`).
        Arc::clone(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Decides whether `principal` may perform `op` on upstream `upstream`.
    ///
    /// Protocol-level methods are allowed without a rule, unknown methods denied. Otherwise the
    /// candidates are the token subject as `user:<sub>` (with its roles from `g` lines in its
    /// tenant) and every role the token carries, as given; a token role that is not a valid role
    /// name (one starting with `user:` above all) is ignored with a warning and grants nothing.
    /// A deny rule matching any candidate denies, else an allow rule matching any candidate
    /// allows, else default deny. `Err` means the engine could not decide; callers fail closed.
    ///
    /// Sync, and its cost does not grow with the policy's size: the rules that can match are
    /// found through an index built with the snapshot, and only those are tested
    /// (`benches/decide.rs`). Never panics on any input.
    ///
    /// Rules with a condition are judged against no arguments at all: a condition on `args` then
    /// cannot hold (an allow does not apply, a deny does). Calls are decided with
    /// [`Rbac::decide_with`].
    pub fn decide(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
    ) -> Result<Decision, Error> {
        self.decide_by(Lookup::Indexed, principal, upstream, op, NO_ARGS)
    }

    /// [`Rbac::decide`] with the call's arguments for the rules' conditions
    /// ([`ConditionArgs::Known`]), or for a list item ([`ConditionArgs::Unknown`]: a condition
    /// on `args` may hold, so an allow that depends on it shows the item and a deny that depends
    /// on it does not hide it; the call itself is decided again with its arguments).
    pub fn decide_with(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        args: ConditionArgs<'_>,
    ) -> Result<Decision, Error> {
        self.decide_by(Lookup::Indexed, principal, upstream, op, args)
    }

    /// [`Rbac::decide_with`] through Casbin's matcher: the reference for conditions.
    pub fn decide_with_casbin_args(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        args: ConditionArgs<'_>,
    ) -> Result<Decision, Error> {
        self.decide_by(Lookup::Casbin, principal, upstream, op, args)
    }

    /// Decides exactly like [`Rbac::decide`], but asks Casbin's matcher about every policy line
    /// instead of using the index. It is the reference the index is tested against, and the
    /// baseline of the benchmark; its cost grows with the size of the policy.
    pub fn decide_with_casbin(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
    ) -> Result<Decision, Error> {
        self.decide_by(Lookup::Casbin, principal, upstream, op, NO_ARGS)
    }

    fn decide_by(
        &self,
        lookup: Lookup,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        args: ConditionArgs<'_>,
    ) -> Result<Decision, Error> {
        let candidates = Candidates::of(principal);
        evaluate(
            &self.snapshot(),
            lookup,
            principal,
            &candidates,
            upstream,
            op,
            args,
            None,
        )
    }

    /// Decides like [`Rbac::decide`] and reports how: the candidates, every rule that matched
    /// and the final decision. Meant for operators (`authzctl policy check --explain`), not the
    /// hot path: it runs Casbin's matcher over the whole policy.
    pub fn explain(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
    ) -> Result<Explanation, Error> {
        self.explain_with(principal, upstream, op, NO_ARGS)
    }

    /// [`Rbac::explain`] with the call's arguments: each conditional rule's match also says what
    /// its condition saw and how it came out.
    pub fn explain_with(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
        args: ConditionArgs<'_>,
    ) -> Result<Explanation, Error> {
        let snapshot = self.snapshot();
        let tenant = principal.tenant_or_default();
        let mut matches = Vec::new();
        let names = Candidates::of(principal);
        let decision = evaluate(
            &snapshot,
            Lookup::Casbin,
            principal,
            &names,
            upstream,
            op,
            args,
            Some(&mut matches),
        )?;
        let candidates = names
            .iter()
            .map(|(name, origin)| {
                let mut roles = snapshot
                    .engine
                    .enforcer()
                    .get_implicit_roles_for_user(name, Some(tenant));
                roles.sort();
                Candidate {
                    name: name.to_owned(),
                    origin,
                    roles,
                }
            })
            .collect();
        let objects = match objects(op, upstream) {
            Objects::Checked(objects) => objects,
            _ => Vec::new(),
        };
        Ok(Explanation {
            subject: principal.subject.clone(),
            tenant: tenant.to_owned(),
            upstream: upstream.to_owned(),
            method: op.method.as_str().to_owned(),
            action: op.method.action().to_owned(),
            objects,
            candidates,
            ignored_roles: names.ignored.iter().map(|r| (*r).to_owned()).collect(),
            matches,
            decision,
        })
    }
}

/// Where a candidate subject came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateOrigin {
    /// The token's `sub`, asked about as `user:<sub>`.
    Subject,
    /// A role carried in the token's roles claim.
    TokenRole,
}

/// One name the policy was asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The name as used in the policy: `user:<sub>` for the token subject, the bare role name
    /// for a token role.
    pub name: String,
    pub origin: CandidateOrigin,
    /// Roles it holds in the tenant through `g` lines, directly or inherited, sorted.
    pub roles: Vec<String>,
}

/// A policy rule that matched one candidate on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// The candidate the rule matched (the rule itself may name one of its roles).
    pub candidate: String,
    /// The object checked, e.g. `tool:tickets/get_ticket`.
    pub object: String,
    /// The rule, e.g. `p, ticket-reader, default, tool:tickets/get_*, call, allow`.
    pub rule: String,
    pub effect: RuleEffect,
    /// For a rule with a condition: how it came out (`true`, `false`, `error: …`, or
    /// `unknown` without the call's arguments) and the argument values it looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionTrace>,
}

/// What a rule's condition saw and how it came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionTrace {
    pub expression: String,
    pub outcome: String,
    /// The argument fields the expression names, with their values in this call.
    pub seen: serde_json::Value,
    /// Whether the rule applied (an error applies a deny and not an allow).
    pub applied: bool,
}

/// How a decision came about; its `Display` is a short report for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub subject: String,
    pub tenant: String,
    pub upstream: String,
    pub method: String,
    pub action: String,
    /// The objects checked (empty when no rule is consulted).
    pub objects: Vec<String>,
    /// The names asked about, as used in the policy: `user:<sub>` first, then the token roles.
    pub candidates: Vec<Candidate>,
    /// Token roles left out because they are not valid role names (e.g. `user:carol`).
    pub ignored_roles: Vec<String>,
    /// Every rule that matched, allow and deny alike, in candidate then policy order.
    pub matches: Vec<RuleMatch>,
    pub decision: Decision,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        writeln!(
            f,
            "{} ({}) at policy revision {}",
            d.effect.as_str(),
            d.reason,
            d.policy_revision
        )?;
        if let Some(rule) = &d.matched_rule {
            writeln!(f, "  decided by: {rule}")?;
        }
        writeln!(
            f,
            "  request: {} in tenant {} calls {} on upstream {} (action {})",
            self.subject, self.tenant, self.method, self.upstream, self.action
        )?;
        if self.objects.is_empty() {
            writeln!(f, "  objects: none (no rule consulted)")?;
            return Ok(());
        }
        writeln!(f, "  objects: {}", self.objects.join(" "))?;
        writeln!(f, "  candidates:")?;
        for c in &self.candidates {
            let origin = match c.origin {
                CandidateOrigin::Subject => "token subject",
                CandidateOrigin::TokenRole => "token role",
            };
            if c.roles.is_empty() {
                writeln!(f, "    {} ({origin}; no roles in tenant)", c.name)?;
            } else {
                writeln!(
                    f,
                    "    {} ({origin}; roles in tenant: {})",
                    c.name,
                    c.roles.join(", ")
                )?;
            }
        }
        if !self.ignored_roles.is_empty() {
            writeln!(
                f,
                "  ignored token roles (not valid role names): {}",
                self.ignored_roles.join(", ")
            )?;
        }
        if self.matches.is_empty() {
            writeln!(f, "  matched rules: none")?;
        } else {
            writeln!(f, "  matched rules:")?;
            for m in &self.matches {
                writeln!(
                    f,
                    "    {:<5} {}  (for {} on {})",
                    m.effect.as_str(),
                    m.rule,
                    m.candidate,
                    m.object
                )?;
                if let Some(c) = &m.condition {
                    writeln!(
                        f,
                        "          condition {} saw {} -> {}{}",
                        c.expression,
                        c.seen,
                        c.outcome,
                        if c.applied { "" } else { " (rule not applied)" }
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Reads, lints and builds a policy from `source`. Returns what was read (when reading got that
/// far) alongside the outcome, so a refused policy is not retried until its source changes.
async fn load(
    source: &Source,
    lint_config: &LintConfig,
) -> (Option<Marker>, Result<Snapshot, Error>) {
    let (model, located, marker, revision) = match source {
        Source::Files { model, policies } => {
            let texts = match read_files(model, policies).await {
                Ok(texts) => texts,
                Err(error) => return (None, Err(error)),
            };
            let marker =
                Marker::Files(fingerprint(texts.iter().map(|(_, bytes)| bytes.as_slice())));
            let mut located = LocatedPolicy::default();
            // The first text is the model, which Casbin reads itself.
            for (path, bytes) in texts.iter().skip(1) {
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        let error = Error::Io {
                            path: path.clone(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "the policy file is not UTF-8",
                            ),
                        };
                        return (Some(marker), Err(error));
                    }
                };
                match LocatedPolicy::parse_csv(text, &path.display().to_string()) {
                    Ok(part) => located.extend(part),
                    Err(error) => return (Some(marker), Err(error)),
                }
            }
            (model, located, marker, 0)
        }
        Source::Store { model, store } => match store.snapshot_located().await {
            Ok((located, revision)) => (model, located, Marker::Revision(revision), revision),
            Err(error) => return (None, Err(error)),
        },
    };
    let report = lint(&located, lint_config);
    if report.has_errors() {
        return (
            Some(marker),
            Err(Error::Lint {
                report: Box::new(report),
            }),
        );
    }
    for finding in report.findings.iter().take(20) {
        tracing::warn!(origin = %finding.origin, code = finding.code.as_str(), rule = %finding.rule, "policy lint: {}", finding.message);
    }
    if report.findings.len() > 20 {
        tracing::warn!(
            more = report.findings.len() - 20,
            "policy lint: more warnings not logged"
        );
    }
    let engine = match Engine::build(model, located.set).await {
        Ok(engine) => engine,
        Err(error) => return (Some(marker), Err(error)),
    };
    (
        Some(marker),
        Ok(Snapshot {
            engine,
            revision,
            report,
            marker,
            loaded_at_ms: authz_types::now_unix_ms(),
        }),
    )
}

/// Reads the model and every policy file, the model first.
pub(crate) async fn read_files(
    model: &Path,
    policies: &[PathBuf],
) -> Result<Vec<(PathBuf, Vec<u8>)>, Error> {
    let mut texts = Vec::with_capacity(policies.len() + 1);
    for path in std::iter::once(model).chain(policies.iter().map(PathBuf::as_path)) {
        let bytes = tokio::fs::read(path).await.map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        texts.push((path.to_owned(), bytes));
    }
    Ok(texts)
}

/// A hash of file contents, to tell a changed policy from a touched one. Not cryptographic: it
/// only has to notice edits.
pub(crate) fn fingerprint<'a>(contents: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for bytes in contents {
        hasher.write_usize(bytes.len());
        hasher.write(bytes);
    }
    hasher.finish()
}

pub(crate) use authz_db::error_chain;

/// The objects an operation needs permission on.
enum Objects {
    /// No rule is consulted (protocol plumbing, or `subscriptions/listen` naming no resource).
    Protocol,
    /// The method is unknown.
    Unknown,
    /// The target does not fit the method (a caller bug): nothing can allow it.
    Mismatch,
    /// Every object must be allowed.
    Checked(Vec<String>),
}

fn objects(op: &Operation, upstream: &str) -> Objects {
    let one = |kind: &str, name: &str| Objects::Checked(vec![format!("{kind}:{upstream}/{name}")]);
    match (&op.method, &op.target) {
        (method, _) if method.is_protocol_level() => Objects::Protocol,
        (Method::Unknown(_), _) => Objects::Unknown,
        (Method::ToolsCall, Target::Tool(name)) => one("tool", name),
        (
            Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe,
            Target::Resource(uri),
        ) => one("resource", uri),
        (Method::PromptsGet, Target::Prompt(name)) => one("prompt", name),
        (Method::CompletionComplete, Target::Completion(CompletionRef::Prompt(name))) => {
            one("prompt", name)
        }
        (Method::CompletionComplete, Target::Completion(CompletionRef::Resource(uri))) => {
            one("resource", uri)
        }
        (
            Method::TasksGet | Method::TasksResult | Method::TasksCancel | Method::TasksUpdate,
            Target::Task(id),
        ) => one("task", id),
        (Method::SubscriptionsListen, Target::None) => Objects::Protocol,
        (Method::SubscriptionsListen, Target::Resources(uris)) if uris.is_empty() => {
            Objects::Protocol
        }
        (Method::SubscriptionsListen, Target::Resources(uris)) => Objects::Checked(
            uris.iter()
                .map(|uri| format!("resource:{upstream}/{uri}"))
                .collect(),
        ),
        _ => Objects::Mismatch,
    }
}

/// The names the policy is asked about for one principal: `user:<sub>`, then every valid token
/// role as given. Token roles that are not valid role names (above all those starting with
/// `user:`, which would impersonate a subject) are left out and reported in `ignored`.
struct Candidates<'p> {
    subject: String,
    roles: Vec<&'p str>,
    ignored: Vec<&'p str>,
}

impl<'p> Candidates<'p> {
    fn of(principal: &'p Principal) -> Self {
        let mut roles = Vec::with_capacity(principal.roles.len());
        let mut ignored = Vec::new();
        for role in &principal.roles {
            if check_role_name(role).is_ok() {
                roles.push(role.as_str());
            } else {
                ignored.push(role.as_str());
            }
        }
        Self {
            subject: subject_name(&principal.subject),
            roles,
            ignored,
        }
    }

    /// Says which token roles were left out; called only when the policy is consulted, so
    /// protocol plumbing stays quiet.
    fn warn_ignored(&self, principal: &Principal) {
        for role in &self.ignored {
            tracing::warn!(
                subject = %principal.subject,
                role = %role,
                "ignoring a token role that is not a valid role name (roles never start with \
                 `user:`); it grants nothing"
            );
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, CandidateOrigin)> {
        std::iter::once((self.subject.as_str(), CandidateOrigin::Subject)).chain(
            self.roles
                .iter()
                .map(|role| (*role, CandidateOrigin::TokenRole)),
        )
    }
}

/// The arguments [`Rbac::decide`] judges conditions against: none at all.
const NO_ARGS: ConditionArgs<'static> = ConditionArgs::Known(&serde_json::Value::Null);

/// Whether `rule` applies to this call: always without a condition; with one, when it holds —
/// and when it cannot be decided, only if that is the restrictive answer (a deny applies, an
/// allow does not). Without the call (a list item) a condition on `args` may hold: an allow
/// applies (the item shows) and a deny does not (the call is decided again with its arguments).
fn applies(
    rule: &LoadedRule,
    args: ConditionArgs<'_>,
    principal: &Principal,
) -> (bool, Option<Outcome>) {
    let Some(condition) = &rule.condition else {
        return (true, None);
    };
    let deny = rule.effect == RuleEffect::Deny;
    match condition.eval(args, principal) {
        Some(Outcome::True) => (true, Some(Outcome::True)),
        Some(Outcome::False) => (false, Some(Outcome::False)),
        Some(error @ Outcome::Error(_)) => (deny, Some(error)),
        None => (!deny, None),
    }
}

/// A rule's text for a decision record, with its condition's outcome when it has one.
fn decided_by<'s>(rule: &'s LoadedRule, outcome: Option<&Outcome>) -> std::borrow::Cow<'s, str> {
    match outcome {
        Some(o) => std::borrow::Cow::Owned(format!("{} [condition {}]", rule.text, o.describe())),
        None if rule.condition.is_some() => {
            std::borrow::Cow::Owned(format!("{} [condition unknown]", rule.text))
        }
        None => std::borrow::Cow::Borrowed(&rule.text),
    }
}

/// The decision procedure shared by `decide`, `decide_with_casbin` and `explain`, so they can
/// never disagree in anything but how matching rules are found.
/// With `trace`, every matching rule is recorded and nothing short-circuits.
#[allow(clippy::too_many_arguments)]
fn evaluate<'s>(
    snapshot: &'s Snapshot,
    lookup: Lookup,
    principal: &Principal,
    candidates: &Candidates<'_>,
    upstream: &str,
    op: &Operation,
    args: ConditionArgs<'_>,
    mut trace: Option<&mut Vec<RuleMatch>>,
) -> Result<Decision, Error> {
    use std::borrow::Cow;
    let revision = snapshot.revision;
    let objects = match objects(op, upstream) {
        Objects::Protocol => {
            return Ok(Decision::allow(ReasonCode::ProtocolMethod, None, revision));
        }
        Objects::Unknown => return Ok(Decision::deny(ReasonCode::UnknownMethod, None, revision)),
        Objects::Mismatch => {
            tracing::debug!(method = %op.method, "operation target does not fit its method; denied");
            return Ok(Decision::deny(ReasonCode::NoMatchingRule, None, revision));
        }
        Objects::Checked(objects) => objects,
    };
    candidates.warn_ignored(principal);
    let tenant = principal.tenant_or_default();
    let action = op.method.action();

    // Rule texts are borrowed from the snapshot (unless a condition's outcome is added); only
    // the final decision allocates.
    let mut first_deny: Option<Cow<'s, str>> = None;
    let mut first_approve: Option<Cow<'s, str>> = None;
    // An allow that would have applied but for its condition: named when nothing else allows.
    let mut first_unmet: Option<Cow<'s, str>> = None;
    let mut unmatched = false;
    let mut allows: Vec<Cow<'s, str>> = Vec::new();
    for object in &objects {
        let mut allow_here: Option<Cow<'s, str>> = None;
        for (candidate, _) in candidates.iter() {
            let on_match = |rule: &'s LoadedRule| {
                let (applied, outcome) = applies(rule, args, principal);
                if let Some(trace) = trace.as_deref_mut() {
                    let condition = rule.condition.as_ref().map(|c| ConditionTrace {
                        expression: c.source().to_owned(),
                        outcome: outcome
                            .as_ref()
                            .map_or_else(|| "unknown".to_owned(), Outcome::describe),
                        seen: match args {
                            ConditionArgs::Known(a) => c.seen(a),
                            ConditionArgs::Unknown => serde_json::Value::Null,
                        },
                        applied,
                    });
                    trace.push(RuleMatch {
                        candidate: candidate.to_owned(),
                        object: object.clone(),
                        rule: rule.text.clone(),
                        effect: rule.effect,
                        condition,
                    });
                }
                if !applied {
                    if rule.effect != RuleEffect::Deny && first_unmet.is_none() {
                        first_unmet = Some(decided_by(rule, outcome.as_ref()));
                    }
                    return;
                }
                match rule.effect {
                    RuleEffect::Deny if first_deny.is_none() => {
                        first_deny = Some(decided_by(rule, outcome.as_ref()));
                    }
                    RuleEffect::Allow if allow_here.is_none() => {
                        allow_here = Some(decided_by(rule, outcome.as_ref()));
                    }
                    // An approve rule both makes the object reachable and holds the call.
                    RuleEffect::Approve => {
                        if first_approve.is_none() {
                            first_approve = Some(decided_by(rule, outcome.as_ref()));
                        }
                        if allow_here.is_none() {
                            allow_here = Some(decided_by(rule, outcome.as_ref()));
                        }
                    }
                    _ => {}
                }
            };
            snapshot
                .engine
                .for_each_match(lookup, candidate, tenant, object, action, on_match)?;
            if let Some(rule) = &first_deny
                && trace.is_none()
            {
                return Ok(Decision::deny(
                    ReasonCode::ExplicitDeny,
                    Some(rule.clone().into_owned()),
                    revision,
                ));
            }
        }
        match allow_here {
            Some(rule) if !allows.contains(&rule) => allows.push(rule),
            Some(_) => {}
            None => unmatched = true,
        }
    }
    Ok(if let Some(rule) = first_deny {
        Decision::deny(ReasonCode::ExplicitDeny, Some(rule.into_owned()), revision)
    } else if unmatched {
        match first_unmet {
            // A conditional allow matched but its condition did not hold (or could not be
            // decided): the record names it and how it came out.
            Some(rule) => Decision::deny(
                ReasonCode::ConditionNotMet,
                Some(rule.into_owned()),
                revision,
            ),
            None => Decision::deny(ReasonCode::NoMatchingRule, None, revision),
        }
    } else if let Some(rule) = first_approve {
        // Deny overrides approve, approve overrides allow: the call waits for a person.
        Decision::deny(
            ReasonCode::ApprovalRequired,
            Some(rule.into_owned()),
            revision,
        )
    } else {
        Decision::allow(ReasonCode::PolicyAllow, Some(allows.join("; ")), revision)
    })
}
