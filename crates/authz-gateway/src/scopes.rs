//! Scope requirements per operation, with a scope hierarchy.
//!
//! Scopes limit what *kind* of action a token may take, independently of who holds it. Each
//! upstream lists rules `(method, target glob) → required scopes`; the first matching rule
//! applies. A broader scope implies the narrower ones the hierarchy lists under it. Target
//! globs are compiled once, when the configuration is loaded ([`Glob`] gives the dialect).

use std::collections::{BTreeMap, BTreeSet};

use authz_types::{Operation, Principal};

use crate::config::{ANY_TARGET, ScopeRule};

/// The scope policy of the whole gateway.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopePolicy {
    /// For each scope, every scope it implies (transitively), itself excluded.
    implied: BTreeMap<String, BTreeSet<String>>,
}

impl ScopePolicy {
    pub(crate) fn new(hierarchy: &BTreeMap<String, Vec<String>>) -> Self {
        let mut implied = BTreeMap::new();
        for scope in hierarchy.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = hierarchy
                .get(scope)
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            while let Some(s) = stack.pop() {
                if s != scope
                    && seen.insert(s.clone())
                    && let Some(next) = hierarchy.get(s)
                {
                    stack.extend(next.iter());
                }
            }
            implied.insert(scope.clone(), seen);
        }
        Self { implied }
    }

    /// The scopes an operation requires on an upstream (empty when no rule matches).
    pub(crate) fn required<'a>(&self, rules: &'a [ScopeRule], op: &Operation) -> &'a [String] {
        let method = op.method.as_str();
        let target = op.target.display();
        rules
            .iter()
            .find(|r| {
                (r.method == "*" || r.method == method)
                    && match &target {
                        Some(t) => r.target.is_match(t),
                        None => r.target.as_str() == ANY_TARGET,
                    }
            })
            .map_or(&[], |r| r.require.as_slice())
    }

    /// The scopes held plus every scope they imply, sorted and deduplicated.
    pub(crate) fn expand(&self, scopes: &[String]) -> Vec<String> {
        let mut out: BTreeSet<String> = scopes.iter().cloned().collect();
        for s in scopes {
            if let Some(implied) = self.implied.get(s) {
                out.extend(implied.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    /// The required scopes the principal lacks, honouring the hierarchy.
    pub(crate) fn missing(&self, principal: &Principal, required: &[String]) -> Vec<String> {
        required
            .iter()
            .filter(|need| {
                !principal.has_scope(need)
                    && !principal.scopes.iter().any(|have| {
                        self.implied
                            .get(have)
                            .is_some_and(|set| set.contains(*need))
                    })
            })
            .cloned()
            .collect()
    }
}

/// Every scope named by an upstream's rules, for `scopes_supported` and 401 challenges.
pub(crate) fn supported_scopes(rules: &[ScopeRule]) -> Vec<String> {
    let set: BTreeSet<&String> = rules.iter().flat_map(|r| r.require.iter()).collect();
    set.into_iter().cloned().collect()
}

/// A glob over an operation's target or an MCP name, compiled once when the configuration is
/// loaded (scope-rule targets, `record_arguments`, `redact_arguments`).
///
/// The dialect is globset's, built the way authz-rbac builds object patterns (`?`, `[abc]`,
/// `[!a]`, `{a,b}`, `\` escapes), with one deliberate difference: `*` and `?` also match `/`
/// (no literal separator). A rule's target is a bare name or a whole resource URI within one
/// route, not a `<kind>:<upstream>/<name>` object, and the default target `*` of a catch-all
/// rule must cover every URI (`tickets://open/123` included), as it always has.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    matcher: globset::GlobMatcher,
}

impl Glob {
    /// Compiles a pattern; an invalid one (an unclosed `[` or `{`, a trailing `\`) is an error.
    pub fn new(pattern: &str) -> Result<Self, globset::Error> {
        let matcher = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()?
            .compile_matcher();
        Ok(Self {
            pattern: pattern.to_owned(),
            matcher,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
}

impl std::fmt::Debug for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::{Method, Target};

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..crate::sessions::test_principal("a")
        }
        .normalize()
    }

    fn rules() -> Vec<ScopeRule> {
        let r = |m: &str, t: &str, s: &[&str]| ScopeRule {
            method: m.into(),
            target: Glob::new(t).expect("valid glob"),
            require: s.iter().map(|x| (*x).to_owned()).collect(),
        };
        vec![
            r(
                "tools/call",
                "delete_*",
                &["tickets:write", "tickets:delete"],
            ),
            r("tools/call", "create_*", &["tickets:write"]),
            r("tools/call", "*", &["tickets:read"]),
            r("*", "*", &["tickets:read"]),
        ]
    }

    #[test]
    fn first_matching_rule_applies() {
        let sp = ScopePolicy::default();
        let call = |n: &str| Operation::new(Method::ToolsCall, Target::Tool(n.into()));
        assert_eq!(
            sp.required(&rules(), &call("delete_ticket")),
            ["tickets:write", "tickets:delete"]
        );
        assert_eq!(sp.required(&rules(), &call("get_ticket")), ["tickets:read"]);
        assert_eq!(
            sp.required(&rules(), &Operation::new(Method::Ping, Target::None)),
            ["tickets:read"]
        );
        assert!(sp.required(&[], &call("x")).is_empty());
    }

    #[test]
    fn hierarchy_implies_narrower_scopes_transitively() {
        let mut h = BTreeMap::new();
        h.insert("tickets:admin".to_owned(), vec!["tickets:write".to_owned()]);
        h.insert("tickets:write".to_owned(), vec!["tickets:read".to_owned()]);
        let sp = ScopePolicy::new(&h);
        let need = vec!["tickets:read".to_owned()];
        assert!(sp.missing(&principal(&["tickets:admin"]), &need).is_empty());
        assert!(sp.missing(&principal(&["tickets:write"]), &need).is_empty());
        assert_eq!(sp.missing(&principal(&["other"]), &need), need);
        let both = vec!["tickets:write".to_owned(), "tickets:delete".to_owned()];
        assert_eq!(
            sp.missing(&principal(&["tickets:read"]), &both),
            both,
            "all missing scopes are named"
        );
    }

    fn glob_match(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).expect("valid glob").is_match(text)
    }

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("get_*", "get_ticket"));
        assert!(!glob_match("get_*", "delete_ticket"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match(&"*a".repeat(20), &"a".repeat(40)));
        assert!(!glob_match(&"*a".repeat(20), &"b".repeat(200)));
    }

    #[test]
    fn star_crosses_slashes_unlike_rbac_object_globs() {
        assert!(glob_match("*", "tickets://open/123"));
        assert!(glob_match("tickets://*", "tickets://open/123"));
        assert!(glob_match("tickets://open/?23", "tickets://open/123"));
        assert!(!glob_match("tickets://*", "billing://invoices"));
    }

    #[test]
    fn the_rest_of_the_syntax_is_globset_s() {
        assert!(glob_match("{get,list}_*", "list_tickets"));
        assert!(!glob_match("{get,list}_*", "delete_ticket"));
        assert!(glob_match("ticket_[0-9]", "ticket_7"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "x"));
        for bad in ["get_[", "{get", "a\\"] {
            assert!(Glob::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_without_target_matches_only_the_catch_all() {
        let sp = ScopePolicy::default();
        let ping = Operation::new(Method::Ping, Target::None);
        let r = |t: &str| ScopeRule {
            method: "*".into(),
            target: Glob::new(t).expect("valid glob"),
            require: vec!["s".into()],
        };
        assert_eq!(sp.required(&[r("*")], &ping), ["s"]);
        assert!(sp.required(&[r("**")], &ping).is_empty());
        let read = Operation::new(
            Method::ResourcesRead,
            Target::Resource("tickets://open/1".into()),
        );
        assert_eq!(sp.required(&[r("*")], &read), ["s"]);
    }
}
