//! The Casbin side: loading and checking the model, building an enforcer, and asking it which
//! rules match one (subject, tenant, object, action) request.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use authz_types::RuleEffect;
use casbin::{CoreApi, DefaultModel, EffectKind, Effector, EffectorStream, Enforcer, Model};

use crate::adapter::SetAdapter;
use crate::condition::Condition;
use crate::index::Index;
use crate::{Error, PolicyRule, PolicySet, RoleAssignment};

/// The definitions the crate relies on, whitespace removed and `.` written as Casbin stores it
/// (`p.eft` becomes `p_eft`). The effect must be deny-overrides-allow because [`crate::Rbac`]
/// combines several candidate subjects with exactly that rule.
const EXPECTED: &[(&str, &str)] = &[
    ("r", "sub,dom,obj,act"),
    ("p", "sub,dom,obj,act,eft"),
    ("g", "_,_,_"),
    ("e", "some(where(p_eft==allow))&&!some(where(p_eft==deny))"),
];

/// Reads the model file and checks that it has the shape the crate relies on.
pub(crate) async fn load_model(path: &Path) -> Result<DefaultModel, Error> {
    let model = DefaultModel::from_file(path)
        .await
        .map_err(|source| Error::Model {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    for (section, expected) in EXPECTED {
        let found = model
            .get_model()
            .get(*section)
            .and_then(|assertions| assertions.get(*section))
            .map(|assertion| normalise(&assertion.value));
        if found.as_deref() != Some(*expected) {
            return Err(Error::InvalidModel {
                path: path.to_owned(),
                reason: format!(
                    "section {section} must be {expected:?} (whitespace aside), found {found:?}"
                ),
            });
        }
    }
    let has_matcher = model
        .get_model()
        .get("m")
        .and_then(|assertions| assertions.get("m"))
        .is_some_and(|assertion| !assertion.value.trim().is_empty());
    if !has_matcher {
        return Err(Error::InvalidModel {
            path: path.to_owned(),
            reason: "the [matchers] section has no `m` line".to_owned(),
        });
    }
    Ok(model)
}

/// The matcher the [`Index`] reproduces, as `policies/model.conf` writes it. A model with any
/// other matcher still works, but every decision then runs through Casbin.
const INDEXED_MATCHER: &str = "(r.dom == p.dom || p.dom == \"*\") && (r.sub == p.sub || \
     g(r.sub, p.sub, r.dom)) && (r.act == p.act || p.act == \"*\") && globMatch(r.obj, p.obj)";

/// Whether the model's matcher is the one the index reproduces (whitespace aside).
fn indexable(model: &DefaultModel) -> bool {
    model
        .get_model()
        .get("m")
        .and_then(|assertions| assertions.get("m"))
        .is_some_and(|assertion| normalise(&assertion.value) == normalise(INDEXED_MATCHER))
}

fn normalise(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == '.' { '_' } else { c })
        .collect()
}

/// A loaded policy: the Casbin enforcer plus its `p` lines in Casbin's own order, printed once,
/// so a match found by index costs no formatting on the hot path.
pub(crate) struct Engine {
    enforcer: Enforcer,
    /// By Casbin position: the rules sharing that line (rules differing only in effect or
    /// condition become one Casbin line, see [`PolicyRule::casbin_key`]), in source order.
    rules: Vec<Vec<LoadedRule>>,
    /// The same policy partitioned for lookups; `None` only if a rule had a shape the index
    /// cannot serve, in which case every decision goes through Casbin.
    index: Option<Index>,
}

/// One `p` line of the loaded policy.
pub(crate) struct LoadedRule {
    /// The line as written in a policy file, e.g. `p, reader, default, tool:t/*, call, allow`.
    pub(crate) text: String,
    pub(crate) effect: RuleEffect,
    /// The rule applies only when this holds (see [`crate::condition`]).
    pub(crate) condition: Option<std::sync::Arc<Condition>>,
}

impl Engine {
    /// Builds the engine from a checked model and an adapter. The matcher is first tried on a
    /// tiny known policy (see [`probe`]) so a matcher that cannot run or matches wrongly fails
    /// the load instead of every request.
    pub(crate) async fn build(model_path: &Path, set: PolicySet) -> Result<Self, Error> {
        let model = load_model(model_path).await?;
        probe(model_path, model.clone()).await?;
        let indexed = indexable(&model);
        if !indexed {
            tracing::warn!(
                model = %model_path.display(),
                "the model's matcher differs from the one the decision index reproduces; every \
                 decision will run through Casbin (slower, linear in the policy size)"
            );
        }
        let enforcer = Enforcer::new(model, SetAdapter::new(set.clone()))
            .await
            .map_err(crate::adapter::unwrap_adapter_error)?;
        Self::from_enforcer(enforcer, &set, indexed)
    }

    fn from_enforcer(
        mut enforcer: Enforcer,
        set: &PolicySet,
        indexed: bool,
    ) -> Result<Self, Error> {
        enforcer.set_effector(Box::new(CollectAll));
        let policy = |section: &str| {
            enforcer
                .get_model()
                .get_model()
                .get(section)
                .and_then(|assertions| assertions.get(section))
                .map(|assertion| assertion.get_policy())
        };
        let index = if indexed {
            Index::build(
                policy("p").into_iter().flatten().map(Vec::as_slice),
                policy("g").into_iter().flatten().map(Vec::as_slice),
            )
        } else {
            None
        };
        if indexed && index.is_none() {
            tracing::warn!("the policy cannot be indexed; every decision will run through Casbin");
        }
        // Casbin's policy is a set in insertion order: the position of each distinct line.
        let positions: std::collections::HashMap<&[String], usize> = policy("p")
            .map(|lines| {
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, values)| (values.as_slice(), i))
                    .collect()
            })
            .unwrap_or_default();
        let mut rules: Vec<Vec<LoadedRule>> = Vec::new();
        rules.resize_with(positions.len(), Vec::new);
        for rule in &set.rules {
            let key = rule.casbin_key();
            // Every rule was handed to Casbin as exactly this line; one it does not hold would
            // be a rule silently dropped (a deny among them): the policy is refused instead.
            let Some(&position) = positions.get(key.as_slice()) else {
                return Err(Error::InvalidRule {
                    reason: format!("the policy engine did not load `{rule}`"),
                });
            };
            let condition = match &rule.condition {
                Some(c) => Some(std::sync::Arc::new(Condition::compile(c).map_err(|e| {
                    Error::InvalidRule {
                        reason: format!("condition {c:?}: {e}"),
                    }
                })?)),
                None => None,
            };
            let text = rule.to_string();
            let variants = &mut rules[position];
            // An exact duplicate adds nothing.
            if !variants.iter().any(|v| v.text == text) {
                variants.push(LoadedRule {
                    text,
                    effect: rule.effect,
                    condition,
                });
            }
        }
        Ok(Self {
            enforcer,
            rules,
            index,
        })
    }

    pub(crate) fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// The number of `p` rules loaded (after Casbin dropped exact duplicates).
    pub(crate) fn rule_count(&self) -> usize {
        self.rules.iter().map(Vec::len).sum()
    }

    /// Whether decisions use the index (false when the model's matcher is not the known one).
    pub(crate) fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Calls `on_match` with every policy line that matches the request, in policy order.
    ///
    /// With [`Lookup::Indexed`] the lines are found through the [`Index`], without running
    /// Casbin's matcher over the whole policy (Casbin answers when there is no index); with
    /// [`Lookup::Casbin`] the matcher runs over every line. Both report the same lines.
    pub(crate) fn for_each_match<'e>(
        &'e self,
        lookup: Lookup,
        subject: &str,
        tenant: &str,
        object: &str,
        action: &str,
        mut on_match: impl FnMut(&'e LoadedRule),
    ) -> Result<(), Error> {
        let (Lookup::Indexed, Some(index)) = (lookup, &self.index) else {
            return self.for_each_casbin_match(vec![subject, tenant, object, action], on_match);
        };
        let mut hits = Vec::new();
        index.matches(subject, tenant, object, action, &mut hits);
        for position in hits {
            for rule in self.rules.get(position as usize).into_iter().flatten() {
                on_match(rule);
            }
        }
        Ok(())
    }

    /// Calls `on_match` with every policy line that matches `request` (subject, tenant, object,
    /// action), in policy order, as Casbin's matcher finds them.
    ///
    /// Casbin reports only a boolean without its `explain` feature (which drags in its logging
    /// stack), so the [`CollectAll`] effector records the index of every matching line in a
    /// thread-local while `enforce` runs; `enforce` is synchronous and evaluates on the calling
    /// thread, so the record belongs to this call. A panic inside Casbin (which validating every
    /// rule should make impossible) is caught and reported as an error: callers fail closed.
    fn for_each_casbin_match<'e>(
        &'e self,
        request: Vec<&str>,
        mut on_match: impl FnMut(&'e LoadedRule),
    ) -> Result<(), Error> {
        // Cleared here as well as in `new_stream`: should Casbin ever answer without asking the
        // effector (a disabled enforcer does), no stale matches from an earlier call may remain.
        MATCHED.with_borrow_mut(Vec::clear);
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.enforcer.enforce(request))) {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                return Err(Error::Engine {
                    source: Box::new(source),
                });
            }
            Err(_) => return Err(Error::EnginePanicked),
        }
        MATCHED.with_borrow(|matched| {
            for &index in matched {
                // With no `p` line at all Casbin still pushes one effect, for an index that
                // names no rule; `get` skips it.
                for rule in self.rules.get(index).into_iter().flatten() {
                    on_match(rule);
                }
            }
        });
        Ok(())
    }
}

/// How [`Engine::for_each_match`] finds the rules matching a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Through the snapshot's index (the hot path).
    Indexed,
    /// By running Casbin's matcher over every policy line (the reference).
    Casbin,
}

/// Runs the model's matcher against a one-rule policy where every condition holds, and one
/// where the tenant differs. Casbin evaluates matchers lazily (Rhai short-circuits `&&`), so only
/// a request that passes every condition reaches, say, a misspelt function at the end.
async fn probe(model_path: &Path, model: DefaultModel) -> Result<(), Error> {
    let failed = |reason: String| Error::InvalidModel {
        path: model_path.to_owned(),
        reason,
    };
    let rule = PolicyRule::new(
        "probe-role",
        "probe-tenant",
        "tool:probe/*",
        "call",
        RuleEffect::Allow,
    )?;
    let set = PolicySet {
        rules: vec![rule],
        assignments: vec![RoleAssignment::new(
            "user:probe-user",
            "probe-role",
            "probe-tenant",
        )?],
    };
    let as_model_error = |source: casbin::Error| Error::Model {
        path: model_path.to_owned(),
        source: Box::new(source),
    };
    let enforcer = Enforcer::new(model, SetAdapter::new(set.clone()))
        .await
        .map_err(as_model_error)?;
    let engine = Engine::from_enforcer(enforcer, &set, false)?;
    for (tenant, expected) in [("probe-tenant", 1), ("other-tenant", 0)] {
        let mut matched = 0;
        engine
            .for_each_match(
                Lookup::Casbin,
                "user:probe-user",
                tenant,
                "tool:probe/x",
                "call",
                |_| matched += 1,
            )
            .map_err(|error| match error {
                Error::Engine { source } => as_model_error(*source),
                _ => failed("the matcher panicked on a probe request".to_owned()),
            })?;
        if matched != expected {
            return Err(failed(format!(
                "the matcher matched {matched} rule(s) instead of {expected} on a probe request \
                 in tenant {tenant}"
            )));
        }
    }
    Ok(())
}

thread_local! {
    /// The indices of the policy lines that matched during the last `enforce` on this thread.
    static MATCHED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// An effector that never stops early and records every matching line in [`MATCHED`].
///
/// Casbin's default effector stops at the first deny, which would hide later matches from
/// [`crate::Explanation`]; this one costs the same on the common path (the default effector also
/// visits every line unless a deny matches). Its boolean answer is still deny-overrides-allow
/// with default deny, though [`crate::Rbac`] decides from the recorded lines.
#[derive(Debug, Default)]
struct CollectAll;

impl Effector for CollectAll {
    fn new_stream(&self, _expr: &str, cap: usize) -> Box<dyn EffectorStream> {
        MATCHED.with_borrow_mut(Vec::clear);
        Box::new(CollectAllStream {
            cap: cap.max(1),
            idx: 0,
            allow: false,
            deny: false,
            done: false,
        })
    }
}

struct CollectAllStream {
    cap: usize,
    idx: usize,
    allow: bool,
    deny: bool,
    done: bool,
}

impl EffectorStream for CollectAllStream {
    fn next(&self) -> bool {
        self.allow && !self.deny
    }

    fn push_effect(&mut self, eft: EffectKind) -> bool {
        if self.done {
            return true;
        }
        match eft {
            EffectKind::Allow => self.allow = true,
            EffectKind::Deny => self.deny = true,
            EffectKind::Indeterminate => {}
        }
        if eft != EffectKind::Indeterminate {
            let index = self.idx;
            MATCHED.with_borrow_mut(|matched| matched.push(index));
        }
        self.idx += 1;
        if self.idx >= self.cap {
            self.done = true;
        }
        self.done
    }
}
