//! The decision index: the same answers as Casbin's matcher, found without visiting every rule.
//!
//! Casbin evaluates `policies/model.conf`'s matcher over every `p` line for every request, so
//! its cost grows with the policy (`benches/decide.rs` measures both). The matcher only ever compares the tenant, the subject
//! (or a role it holds through `g`), the action and a glob, so the policy can be partitioned by
//! those fields once per snapshot:
//!
//! - `p` rules are bucketed by tenant (a concrete one or `*`), subject or role, and action (one
//!   bucket per action of [`ACTIONS`], `*` included);
//! - every name that heads a `g` line gets the roles it reaches in that tenant, precomputed with
//!   the same reachability Casbin's role manager uses (exact domains, links followed through
//!   every level, cycles terminating);
//! - every object glob is compiled once (equal patterns share one compiled matcher), and the two
//!   shapes that dominate real policies (a literal name, and `prefix*`) skip the regex entirely.
//!
//! A request then looks at a handful of buckets and tests only the rules in them. The rules it
//! reports are the ones Casbin's matcher accepts, in Casbin's order, so [`crate::Rbac`] feeds
//! both into one decision procedure; the tests hold the two paths to the same answer on every
//! decision-table row and on randomly generated policies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use globset::GlobMatcher;

use crate::{ACTIONS, ANY_TENANT};

/// The bucket of rules whose action is `*`.
const ANY_ACTION_SLOT: usize = ACTIONS.len() - 1;

/// The slot of an action in the per-subject buckets, or `None` for an action no rule can name.
fn action_slot(action: &str) -> Option<usize> {
    ACTIONS.iter().position(|known| *known == action)
}

/// One rule's index within the enforcer's policy, per action slot.
#[derive(Debug, Default)]
struct Buckets {
    by_action: [Vec<u32>; ACTIONS.len()],
}

/// An object pattern compiled for matching.
#[derive(Debug, Clone)]
enum Pattern {
    /// No glob syntax at all: the object must be equal.
    Literal(String),
    /// `prefix*` with a literal prefix: with `/` as a literal separator, the object must start
    /// with the prefix and the rest must not contain `/`.
    Prefix(String),
    /// Anything else, compiled by globset exactly the way Casbin's `globMatch` compiles it.
    Glob(Arc<GlobMatcher>),
}

/// Characters that give a pattern glob meaning; a pattern without any of them is a literal.
const GLOB_SYNTAX: &[char] = &['*', '?', '[', ']', '{', '}', '\\', ','];

impl Pattern {
    fn compile(pattern: &str, cache: &mut HashMap<String, Arc<GlobMatcher>>) -> Option<Self> {
        if !pattern.contains(GLOB_SYNTAX) {
            return Some(Pattern::Literal(pattern.to_owned()));
        }
        if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(GLOB_SYNTAX)
        {
            return Some(Pattern::Prefix(prefix.to_owned()));
        }
        if let Some(matcher) = cache.get(pattern) {
            return Some(Pattern::Glob(Arc::clone(matcher)));
        }
        // The same builder settings as `casbin::function_map::glob_match`.
        let matcher = Arc::new(
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .ok()?
                .compile_matcher(),
        );
        cache.insert(pattern.to_owned(), Arc::clone(&matcher));
        Some(Pattern::Glob(matcher))
    }

    fn matches(&self, object: &str) -> bool {
        match self {
            Pattern::Literal(literal) => object == literal,
            Pattern::Prefix(prefix) => object
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.contains('/')),
            Pattern::Glob(matcher) => matcher.is_match(object),
        }
    }
}

/// A policy partitioned for lookups; see the module documentation.
#[derive(Debug)]
pub(crate) struct Index {
    /// The compiled pattern of every `p` rule, in the enforcer's policy order.
    patterns: Vec<Pattern>,
    /// Rule tenant (`*` included) → rule subject → rules by action.
    rules: HashMap<String, HashMap<String, Buckets>>,
    /// Tenant → name heading a `g` line there → every role it reaches (itself excluded).
    reach: HashMap<String, HashMap<String, Box<[String]>>>,
}

impl Index {
    /// Builds the index from the enforcer's `p` rules (`sub, dom, obj, act, eft`) and `g` links
    /// (`name, role, tenant`), both in Casbin's order. `None` if a rule has a shape the index
    /// cannot serve (which validation makes impossible); the caller then stays on Casbin.
    pub(crate) fn build<'a>(
        rules: impl IntoIterator<Item = &'a [String]>,
        links: impl IntoIterator<Item = &'a [String]>,
    ) -> Option<Self> {
        let mut cache = HashMap::new();
        let mut patterns = Vec::new();
        let mut by_tenant: HashMap<String, HashMap<String, Buckets>> = HashMap::new();
        for (position, rule) in rules.into_iter().enumerate() {
            let [sub, dom, obj, act, _eft] = rule else {
                return None;
            };
            let slot = action_slot(act)?;
            let position = u32::try_from(position).ok()?;
            patterns.push(Pattern::compile(obj, &mut cache)?);
            by_tenant
                .entry(dom.clone())
                .or_default()
                .entry(sub.clone())
                .or_default()
                .by_action[slot]
                .push(position);
        }

        let mut edges: HashMap<&str, HashMap<&str, Vec<&str>>> = HashMap::new();
        for link in links {
            let [name, role, tenant] = link else {
                return None;
            };
            // Casbin's role manager ignores a link from a name to itself.
            if name != role {
                edges
                    .entry(tenant.as_str())
                    .or_default()
                    .entry(name.as_str())
                    .or_default()
                    .push(role.as_str());
            }
        }
        let mut reach = HashMap::new();
        for (tenant, graph) in &edges {
            let mut reached = HashMap::new();
            for start in graph.keys() {
                let roles = reachable(graph, start);
                if !roles.is_empty() {
                    reached.insert((*start).to_owned(), roles.into_boxed_slice());
                }
            }
            reach.insert((*tenant).to_owned(), reached);
        }
        Some(Self {
            patterns,
            rules: by_tenant,
            reach,
        })
    }

    /// The roles `name` holds in `tenant` through `g` links, directly or inherited.
    fn roles_of(&self, name: &str, tenant: &str) -> &[String] {
        self.reach
            .get(tenant)
            .and_then(|names| names.get(name))
            .map_or(&[], |roles| roles)
    }

    /// Pushes the policy positions of every rule Casbin's matcher would accept for the request
    /// onto `hits`, sorted and without repeats.
    pub(crate) fn matches(
        &self,
        subject: &str,
        tenant: &str,
        object: &str,
        action: &str,
        hits: &mut Vec<u32>,
    ) {
        hits.clear();
        // `r.act == p.act || p.act == "*"`: the request's own bucket, then the `*` bucket.
        let slot = action_slot(action).filter(|slot| *slot != ANY_ACTION_SLOT);
        // `r.dom == p.dom || p.dom == "*"`, visiting the `*` rules once when the request's
        // tenant is itself `*`.
        let tenants = [
            self.rules.get(tenant),
            if tenant == ANY_TENANT {
                None
            } else {
                self.rules.get(ANY_TENANT)
            },
        ];
        // `r.sub == p.sub || g(r.sub, p.sub, r.dom)`.
        let names = std::iter::once(subject)
            .chain(self.roles_of(subject, tenant).iter().map(String::as_str));
        for name in names {
            for subjects in tenants.iter().flatten() {
                let Some(buckets) = subjects.get(name) else {
                    continue;
                };
                let own = slot.map(|slot| &buckets.by_action[slot]);
                for bucket in own.into_iter().chain([&buckets.by_action[ANY_ACTION_SLOT]]) {
                    for &position in bucket {
                        let matched = self
                            .patterns
                            .get(position as usize)
                            .is_some_and(|pattern| pattern.matches(object));
                        if matched {
                            hits.push(position);
                        }
                    }
                }
            }
        }
        if hits.len() > 1 {
            hits.sort_unstable();
            hits.dedup();
        }
    }
}

/// Every role reachable from `start` over `g` links (one tenant's), `start` itself excluded;
/// cycles terminate.
pub(crate) fn reachable(graph: &HashMap<&str, Vec<&str>>, start: &str) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::from([start]);
    let mut queue: VecDeque<&str> = VecDeque::from([start]);
    let mut found = Vec::new();
    while let Some(name) = queue.pop_front() {
        for role in graph.get(name).into_iter().flatten() {
            if seen.insert(role) {
                found.push((*role).to_owned());
                queue.push_back(role);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_patterns_agree_with_casbin_glob_match() {
        let patterns = [
            "tool:t/get_ticket",
            "tool:t/get_*",
            "tool:t/*",
            "resource:t/tickets://**",
            "resource:t/**",
            "prompt:t/{a,b}*",
            "task:t/[ab]?",
            "tool:t/a**",
            "tool:t/*x",
        ];
        let objects = [
            "tool:t/get_ticket",
            "tool:t/get_",
            "tool:t/get_x/y",
            "tool:t/",
            "tool:t",
            "tool:t/a",
            "tool:t/ab",
            "tool:t/abx",
            "resource:t/tickets://open",
            "resource:t/tickets://",
            "resource:t/x/y/z",
            "prompt:t/a1",
            "prompt:t/c",
            "task:t/a1",
            "task:t/ab/",
            "",
        ];
        let mut cache = HashMap::new();
        for pattern in patterns {
            let compiled = Pattern::compile(pattern, &mut cache).expect(pattern);
            for object in objects {
                assert_eq!(
                    compiled.matches(object),
                    casbin::function_map::glob_match(object, pattern),
                    "{pattern} on {object}"
                );
            }
        }
        assert!(matches!(
            Pattern::compile("tool:t/x", &mut cache),
            Some(Pattern::Literal(_))
        ));
        assert!(matches!(
            Pattern::compile("tool:t/x*", &mut cache),
            Some(Pattern::Prefix(_))
        ));
    }

    #[test]
    fn reach_follows_links_through_cycles() {
        let graph: HashMap<&str, Vec<&str>> =
            HashMap::from([("a", vec!["b"]), ("b", vec!["c", "a"]), ("c", vec!["b"])]);
        let mut roles = reachable(&graph, "a");
        roles.sort();
        assert_eq!(roles, vec!["b", "c"]);
        assert!(reachable(&graph, "z").is_empty());
    }
}
