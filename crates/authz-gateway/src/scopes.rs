//! Scope requirements per operation, with a scope hierarchy.
//!
//! Scopes limit what *kind* of action a token may take, independently of who holds it. Each
//! upstream lists rules `(method, target glob) → required scopes`; the first matching rule
//! applies. A broader scope implies the narrower ones the hierarchy lists under it.

use std::collections::{BTreeMap, BTreeSet};

use authz_types::{Operation, Principal};

use crate::config::ScopeRule;

/// The scope policy of the whole gateway.
#[derive(Debug, Clone, Default)]
pub struct ScopePolicy {
    /// For each scope, every scope it implies (transitively), itself excluded.
    implied: BTreeMap<String, BTreeSet<String>>,
}

impl ScopePolicy {
    pub fn new(hierarchy: &BTreeMap<String, Vec<String>>) -> Self {
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
    pub fn required<'a>(&self, rules: &'a [ScopeRule], op: &Operation) -> &'a [String] {
        let method = op.method.as_str();
        let target = op.target.display();
        rules
            .iter()
            .find(|r| {
                (r.method == "*" || r.method == method)
                    && match &target {
                        Some(t) => glob_match(&r.target, t),
                        None => r.target == "*",
                    }
            })
            .map_or(&[], |r| r.require.as_slice())
    }

    /// The scopes held plus every scope they imply, sorted and deduplicated.
    pub fn expand(&self, scopes: &[String]) -> Vec<String> {
        let mut out: BTreeSet<String> = scopes.iter().cloned().collect();
        for s in scopes {
            if let Some(implied) = self.implied.get(s) {
                out.extend(implied.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    /// The required scopes the principal lacks, honouring the hierarchy.
    pub fn missing(&self, principal: &Principal, required: &[String]) -> Vec<String> {
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
pub fn supported_scopes(rules: &[ScopeRule]) -> Vec<String> {
    let set: BTreeSet<&String> = rules.iter().flat_map(|r| r.require.iter()).collect();
    set.into_iter().cloned().collect()
}

/// Glob match where `*` matches any run of characters and `?` exactly one. Linear-time with
/// backtracking limited to the last `*`, so hostile patterns cannot blow up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::{Method, Target};

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            subject: "a".into(),
            issuer: "i".into(),
            tenant: None,
            client_id: None,
            actors: vec![],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            roles: vec![],
            token_id: None,
            expires_at: 0,
            issued_at: None,
        }
        .normalize()
    }

    fn rules() -> Vec<ScopeRule> {
        let r = |m: &str, t: &str, s: &[&str]| ScopeRule {
            method: m.into(),
            target: t.into(),
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
}
