//! [`Rbac`]: the current policy snapshot, its reload, and the decision over MCP operations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use authz_types::{
    CompletionRef, Decision, Effect, Method, Operation, Principal, ReasonCode, Target,
};
use casbin::RbacApi;
use serde::{Deserialize, Serialize};

use crate::adapter::{SetAdapter, StoreAdapter};
use crate::engine::Engine;
use crate::{Error, PolicySet, PolicyStore, check_role_name, subject_name};

/// Casbin-backed RBAC over MCP operations. Cheap to clone; every clone sees the same policy.
///
/// Decisions read an immutable snapshot (enforcer + revision) that [`Rbac::reload`] replaces as a
/// whole, so a decision never sees half a policy and never waits for a reload.
#[derive(Clone)]
pub struct Rbac {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    current: RwLock<Arc<Snapshot>>,
    /// Serialises reloads so an older rebuild can never replace a newer one.
    reloading: tokio::sync::Mutex<()>,
}

enum Source {
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
    /// Loads the model and one or more Casbin policy CSV files (concatenated in order).
    /// The revision starts at 1 and grows by one per successful [`Rbac::reload`].
    pub async fn from_files(model: &Path, policies: &[PathBuf]) -> Result<Self, Error> {
        let engine = load_files(model, policies).await?;
        Ok(Self::with_snapshot(
            Source::Files {
                model: model.to_owned(),
                policies: policies.to_vec(),
            },
            Snapshot {
                engine,
                revision: 1,
            },
        ))
    }

    /// Loads the model and the rules of a SQL store; the revision is the store's.
    pub async fn from_store(model: &Path, store: PolicyStore) -> Result<Self, Error> {
        let snapshot = load_store(model, &store).await?;
        Ok(Self::with_snapshot(
            Source::Store {
                model: model.to_owned(),
                store,
            },
            snapshot,
        ))
    }

    fn with_snapshot(source: Source, snapshot: Snapshot) -> Self {
        tracing::info!(revision = snapshot.revision, "policy loaded");
        Self {
            inner: Arc::new(Inner {
                source,
                current: RwLock::new(Arc::new(snapshot)),
                reloading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Rebuilds the policy off-lock from its source and swaps it in atomically; a load that fails
    /// leaves the old policy in place and returns Err.
    pub async fn reload(&self) -> Result<i64, Error> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let loaded = match &self.inner.source {
            Source::Files { model, policies } => {
                load_files(model, policies).await.map(|engine| Snapshot {
                    engine,
                    revision: self.revision() + 1,
                })
            }
            Source::Store { model, store } => load_store(model, store).await,
        };
        let snapshot = match loaded {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    revision = self.revision(),
                    "policy reload failed; keeping the current policy"
                );
                return Err(error);
            }
        };
        let revision = snapshot.revision;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
        tracing::info!(revision, "policy reloaded");
        Ok(revision)
    }

    /// The revision of the policy decisions are made under right now.
    pub fn revision(&self) -> i64 {
        self.snapshot().revision
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
    /// Sync and fast; never panics on any input.
    pub fn decide(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
    ) -> Result<Decision, Error> {
        let snapshot = self.snapshot();
        let candidates = Candidates::of(principal);
        evaluate(&snapshot, principal, &candidates, upstream, op, None)
    }

    /// Decides like [`Rbac::decide`] and reports how: the candidates, every rule that matched
    /// and the final decision. Meant for operators (`authzctl explain`), not the hot path.
    pub fn explain(
        &self,
        principal: &Principal,
        upstream: &str,
        op: &Operation,
    ) -> Result<Explanation, Error> {
        let snapshot = self.snapshot();
        let tenant = principal.tenant_or_default();
        let mut matches = Vec::new();
        let names = Candidates::of(principal);
        let decision = evaluate(
            &snapshot,
            principal,
            &names,
            upstream,
            op,
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
    pub effect: Effect,
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
            }
        }
        Ok(())
    }
}

async fn load_files(model: &Path, policies: &[PathBuf]) -> Result<Engine, Error> {
    let mut set = PolicySet::default();
    for path in policies {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        set.extend(PolicySet::parse_csv(&text, &path.display().to_string())?);
    }
    Engine::build(model, SetAdapter::new(set)).await
}

async fn load_store(model: &Path, store: &PolicyStore) -> Result<Snapshot, Error> {
    let adapter = StoreAdapter::new(store.clone());
    let engine = Engine::build(model, adapter.clone()).await?;
    let revision = adapter.loaded_revision().ok_or(Error::Unsupported {
        operation: "a store load that did not report its revision".to_owned(),
    })?;
    Ok(Snapshot { engine, revision })
}

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

/// The decision procedure shared by `decide` and `explain`, so the two can never disagree.
/// With `trace`, every matching rule is recorded and nothing short-circuits.
fn evaluate(
    snapshot: &Snapshot,
    principal: &Principal,
    candidates: &Candidates<'_>,
    upstream: &str,
    op: &Operation,
    mut trace: Option<&mut Vec<RuleMatch>>,
) -> Result<Decision, Error> {
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

    // Rule texts are borrowed from the snapshot; only the final decision allocates.
    let mut first_deny: Option<&str> = None;
    let mut unmatched = false;
    let mut allows: Vec<&str> = Vec::new();
    for object in &objects {
        let mut allow_here: Option<&str> = None;
        for (candidate, _) in candidates.iter() {
            snapshot
                .engine
                .for_each_match(candidate, tenant, object, action, |rule| {
                    if let Some(trace) = trace.as_deref_mut() {
                        trace.push(RuleMatch {
                            candidate: candidate.to_owned(),
                            object: object.clone(),
                            rule: rule.text.clone(),
                            effect: rule.effect,
                        });
                    }
                    match rule.effect {
                        Effect::Deny if first_deny.is_none() => first_deny = Some(&rule.text),
                        Effect::Allow if allow_here.is_none() => allow_here = Some(&rule.text),
                        _ => {}
                    }
                })?;
            if let Some(rule) = first_deny
                && trace.is_none()
            {
                return Ok(Decision::deny(
                    ReasonCode::ExplicitDeny,
                    Some(rule.to_owned()),
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
        Decision::deny(ReasonCode::ExplicitDeny, Some(rule.to_owned()), revision)
    } else if unmatched {
        Decision::deny(ReasonCode::NoMatchingRule, None, revision)
    } else {
        Decision::allow(ReasonCode::PolicyAllow, Some(allows.join("; ")), revision)
    })
}
