//! Lint: rules that can never take effect, found when a policy is loaded and by `authzctl policy
//! lint`, each with the file and line or the SQL row it came from.
//!
//! Errors refuse the policy (a reload keeps the working one); warnings are reported and the
//! policy loads. What the linter can know depends on what it is told: without a list of
//! upstreams it cannot call an upstream unknown, without the tools of an upstream it cannot say a
//! tool pattern matches nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use authz_types::RuleEffect;
use serde::{Deserialize, Serialize};

use crate::{ANY_TENANT, LocatedPolicy, Origin, PolicyRule, SUBJECT_PREFIX};

/// What the linter knows beyond the policy itself. The default knows nothing, so only the
/// checks that need no outside knowledge run (and those only warn).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintConfig {
    /// The upstreams the gateway routes to. When given, a rule whose object names no such
    /// upstream can never match: an error.
    pub upstreams: Option<Vec<String>>,
    /// The tools each upstream is known to offer (by upstream name). For an upstream listed
    /// here, a `tool:` pattern that matches none of its tools is a warning (tools come and go,
    /// so it never refuses a policy).
    pub tools: BTreeMap<String, Vec<String>>,
    /// The roles tokens may carry, if that is known. A rule for a role that no `g` line gives
    /// anyone is only usable by tokens carrying that role; roles listed here are not reported.
    pub token_roles: Option<Vec<String>>,
    /// Treat every warning as an error.
    pub deny_warnings: bool,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported; the policy loads.
    Warning,
    /// The policy is refused.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LintCode {
    /// The object names an upstream the gateway does not route to.
    UnknownUpstream,
    /// A `tool:` pattern matches none of the upstream's known tools.
    UnknownTool,
    /// A rule for a role that no `g` line gives anyone in the rule's tenant.
    UnheldRole,
    /// An allow rule every object of which a deny rule for the same role also covers.
    ShadowedByDeny,
}

impl LintCode {
    pub fn as_str(self) -> &'static str {
        match self {
            LintCode::UnknownUpstream => "unknown_upstream",
            LintCode::UnknownTool => "unknown_tool",
            LintCode::UnheldRole => "unheld_role",
            LintCode::ShadowedByDeny => "shadowed_by_deny",
        }
    }
}

/// One finding: where, how serious, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintFinding {
    pub severity: Severity,
    pub code: LintCode,
    /// Where the rule is: a file and line, or a SQL row.
    pub origin: Origin,
    /// The rule as a policy line.
    pub rule: String,
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} [{}]: {}\n    {}",
            self.origin,
            self.severity.as_str(),
            self.code.as_str(),
            self.message,
            self.rule
        )
    }
}

/// Every finding of one lint run, errors first, then in policy order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LintReport {
    pub findings: Vec<LintFinding>,
}

impl LintReport {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &LintFinding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &LintFinding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }
}

impl fmt::Display for LintReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(f, "{errors} error(s), {warnings} warning(s)")
    }
}

/// Lints a policy. Never fails: a rule it cannot reason about is simply not reported.
pub fn lint(policy: &LocatedPolicy, config: &LintConfig) -> LintReport {
    let mut findings = Vec::new();
    let rules = &policy.set.rules;
    let mut push = |severity: Severity, code: LintCode, index: usize, message: String| {
        let severity = if config.deny_warnings {
            Severity::Error
        } else {
            severity
        };
        findings.push(LintFinding {
            severity,
            code,
            origin: policy.rule_origin(index),
            rule: rules
                .get(index)
                .map(ToString::to_string)
                .unwrap_or_default(),
            message,
        });
    };

    // Which roles some `g` line gives in which tenant (holders of a role that inherits it count).
    let mut held: HashSet<(&str, &str)> = HashSet::new();
    let mut held_anywhere: HashSet<&str> = HashSet::new();
    for assignment in &policy.set.assignments {
        held.insert((assignment.role.as_str(), assignment.tenant.as_str()));
        held_anywhere.insert(assignment.role.as_str());
    }
    let token_roles: HashSet<&str> = config
        .token_roles
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut unheld_reported: HashMap<(&str, &str), usize> = HashMap::new();

    // Each deny's glob is compiled once, however many allows it is compared with. A deny with a
    // condition overrides only some calls, so it never makes an allow useless.
    let mut denies_by_role: HashMap<&str, Vec<(&PolicyRule, Option<globset::GlobMatcher>)>> =
        HashMap::new();
    for rule in rules
        .iter()
        .filter(|r| r.effect == RuleEffect::Deny && r.condition.is_none())
    {
        denies_by_role
            .entry(rule.role.as_str())
            .or_default()
            .push((rule, compile(&rule.object)));
    }

    for (index, rule) in rules.iter().enumerate() {
        let Some((kind, upstream_pattern, _)) = split_object(&rule.object) else {
            continue;
        };

        if let Some(upstreams) = &config.upstreams {
            let known = upstreams
                .iter()
                .any(|u| segment_matches(upstream_pattern, u));
            if !known {
                push(
                    Severity::Error,
                    LintCode::UnknownUpstream,
                    index,
                    format!(
                        "can never match: upstream {upstream_pattern:?} is not one of the \
                         configured upstreams ({})",
                        upstreams.join(", ")
                    ),
                );
                continue;
            }
        }

        if kind == "tool" {
            let lists: Vec<(&String, &Vec<String>)> = config
                .tools
                .iter()
                .filter(|(upstream, _)| segment_matches(upstream_pattern, upstream))
                .collect();
            if !lists.is_empty()
                && let Some(matcher) = compile(&rule.object)
            {
                let any = lists.iter().any(|(upstream, tools)| {
                    tools
                        .iter()
                        .any(|tool| matcher.is_match(format!("tool:{upstream}/{tool}")))
                });
                if !any {
                    push(
                        Severity::Warning,
                        LintCode::UnknownTool,
                        index,
                        "matches none of the tools the upstream is known to offer".to_owned(),
                    );
                }
            }
        }

        if !rule.role.starts_with(SUBJECT_PREFIX) && !token_roles.contains(rule.role.as_str()) {
            let is_held = if rule.tenant == ANY_TENANT {
                held_anywhere.contains(rule.role.as_str())
            } else {
                held.contains(&(rule.role.as_str(), rule.tenant.as_str()))
            };
            if !is_held {
                *unheld_reported
                    .entry((rule.role.as_str(), rule.tenant.as_str()))
                    .or_insert(0) += 1;
                if unheld_reported[&(rule.role.as_str(), rule.tenant.as_str())] == 1 {
                    let tenant = if rule.tenant == ANY_TENANT {
                        "any tenant".to_owned()
                    } else {
                        format!("tenant {}", rule.tenant)
                    };
                    push(
                        Severity::Warning,
                        LintCode::UnheldRole,
                        index,
                        format!(
                            "role {} is held by nobody in {tenant} (no g line gives it), so \
                             only tokens carrying the role {} can use its rules",
                            rule.role, rule.role
                        ),
                    );
                }
            }
        }

        if rule.effect != RuleEffect::Deny {
            let shadow = denies_by_role
                .get(rule.role.as_str())
                .into_iter()
                .flatten()
                .find(|(deny, matcher)| {
                    (deny.tenant == rule.tenant || deny.tenant == ANY_TENANT)
                        && (deny.action == rule.action || deny.action == "*")
                        && covers(&deny.object, matcher.as_ref(), &rule.object)
                });
            if let Some((deny, _)) = shadow {
                push(
                    Severity::Warning,
                    LintCode::ShadowedByDeny,
                    index,
                    format!("never allows anything: every object it matches is denied by `{deny}`"),
                );
            }
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    LintReport { findings }
}

/// Splits `kind:upstream/rest` into its parts; `rest` is empty when there is no `/`.
fn split_object(object: &str) -> Option<(&str, &str, &str)> {
    let (kind, scoped) = object.split_once(':')?;
    Some(match scoped.split_once('/') {
        Some((upstream, rest)) => (kind, upstream, rest),
        None => (kind, scoped, ""),
    })
}

/// Characters with glob meaning.
const GLOB_SYNTAX: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Whether the upstream part of a pattern can match the upstream name `name`.
fn segment_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(GLOB_SYNTAX) {
        return pattern == name;
    }
    // `**` swallows the separator too, so such a pattern can reach any upstream.
    pattern.contains("**") || compile(pattern).is_some_and(|m| m.is_match(name))
}

fn compile(pattern: &str) -> Option<globset::GlobMatcher> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|glob| glob.compile_matcher())
}

/// Whether every object `allow` matches is also matched by `deny`. Conservative: `false` when in
/// doubt, so a warning is never wrong about shadowing.
/// `matcher` is `deny` compiled.
fn covers(deny: &str, matcher: Option<&globset::GlobMatcher>, allow: &str) -> bool {
    if deny == allow {
        return true;
    }
    // A literal allow is one object.
    if !allow.contains(GLOB_SYNTAX) {
        return matcher.is_some_and(|m| m.is_match(allow));
    }
    // `prefix*` covers every pattern under the same prefix that stays within one segment.
    if let Some(prefix) = deny.strip_suffix('*')
        && !prefix.contains(GLOB_SYNTAX)
        && let Some(rest) = allow.strip_prefix(prefix)
    {
        return !rest.contains(['/', '[', '{', '\\']) && !rest.contains("**");
    }
    // `prefix/**` covers everything below `prefix/`.
    if let Some(prefix) = deny.strip_suffix("/**")
        && !prefix.contains(GLOB_SYNTAX)
        && let Some(rest) = allow.strip_prefix(prefix)
    {
        return rest.starts_with('/') && rest.len() > 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_conservative() {
        let covers = |deny: &str, allow: &str| covers(deny, compile(deny).as_ref(), allow);
        assert!(covers("tool:t/*", "tool:t/get_*"));
        assert!(covers("tool:t/*", "tool:t/x"));
        assert!(covers("tool:t/delete_*", "tool:t/delete_ticket"));
        assert!(!covers("tool:t/delete_*", "tool:t/*"));
        assert!(!covers("tool:t/?", "tool:t/*"));
        assert!(covers("resource:t/**", "resource:t/a/*"));
        assert!(!covers("resource:t/*", "resource:t/a/b"));
        assert!(!covers("resource:t/*", "resource:t/**"));
    }

    #[test]
    fn upstream_segments() {
        assert_eq!(
            split_object("tool:tickets/get_*"),
            Some(("tool", "tickets", "get_*"))
        );
        assert!(segment_matches("tickets", "tickets"));
        assert!(segment_matches("tick*", "tickets"));
        assert!(!segment_matches("tick*", "other"));
        assert!(segment_matches("**", "other"));
    }
}
