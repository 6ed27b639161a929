//! Questions an operator asks of a policy without a request in hand: which roles a subject holds
//! in a tenant, and what it may therefore do (`authzctl subject show`, `authzctl role show`).
//!
//! The answers follow the model's semantics (exact tenants for `g` lines, `*` rules everywhere,
//! inheritance through every level) without loading Casbin.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::index::reachable;
use crate::{ANY_TENANT, PolicyRule, PolicySet, RoleAssignment};

/// One rule that applies to a subject, and through which name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The subject itself (`user:<sub>`) or the role that carries the rule.
    pub via: String,
    pub rule: PolicyRule,
}

/// What one role is in a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSummary {
    pub name: String,
    /// Rules naming the role.
    pub rules: Vec<PolicyRule>,
    /// `g` lines giving the role (to users or to roles that inherit it).
    pub holders: Vec<RoleAssignment>,
    /// `g` lines through which the role inherits other roles.
    pub inherits: Vec<RoleAssignment>,
    /// Tenants where the role has rules or holders, sorted.
    pub tenants: Vec<String>,
}

impl PolicySet {
    /// The roles `name` (`user:<sub>` or a role) holds in `tenant` through `g` lines, directly or
    /// inherited, sorted.
    pub fn roles_of(&self, name: &str, tenant: &str) -> Vec<String> {
        let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
        for a in self.assignments.iter().filter(|a| a.tenant == tenant) {
            graph
                .entry(a.subject.as_str())
                .or_default()
                .push(a.role.as_str());
        }
        let mut roles = reachable(&graph, name);
        roles.sort();
        roles
    }

    /// Every rule that applies to `name` in `tenant`: its own and those of every role it holds
    /// there, tenant rules and `*` rules alike, in policy order.
    pub fn permissions_of(&self, name: &str, tenant: &str) -> Vec<Permission> {
        let roles = self.roles_of(name, tenant);
        self.rules
            .iter()
            .filter(|r| r.tenant == tenant || r.tenant == ANY_TENANT)
            .filter(|r| r.role == name || roles.contains(&r.role))
            .map(|r| Permission {
                via: r.role.clone(),
                rule: r.clone(),
            })
            .collect()
    }

    /// The tenants where `name` heads a `g` line or has rules of its own, sorted.
    pub fn tenants_of(&self, name: &str) -> Vec<String> {
        let mut tenants: BTreeSet<&str> = BTreeSet::new();
        tenants.extend(
            self.assignments
                .iter()
                .filter(|a| a.subject == name)
                .map(|a| a.tenant.as_str()),
        );
        tenants.extend(
            self.rules
                .iter()
                .filter(|r| r.role == name)
                .map(|r| r.tenant.as_str()),
        );
        tenants.into_iter().map(str::to_owned).collect()
    }

    /// Every role named anywhere in the policy (rules, held roles, inheriting roles), sorted.
    pub fn role_names(&self) -> Vec<String> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        names.extend(
            self.rules
                .iter()
                .map(|r| r.role.as_str())
                .filter(|r| !r.starts_with(crate::SUBJECT_PREFIX)),
        );
        for a in &self.assignments {
            names.insert(a.role.as_str());
            if a.user().is_none() {
                names.insert(a.subject.as_str());
            }
        }
        names.into_iter().map(str::to_owned).collect()
    }

    /// What the policy says about the role `name`.
    pub fn role_summary(&self, name: &str) -> RoleSummary {
        let rules: Vec<PolicyRule> = self
            .rules
            .iter()
            .filter(|r| r.role == name)
            .cloned()
            .collect();
        let holders: Vec<RoleAssignment> = self
            .assignments
            .iter()
            .filter(|a| a.role == name)
            .cloned()
            .collect();
        let inherits: Vec<RoleAssignment> = self
            .assignments
            .iter()
            .filter(|a| a.subject == name)
            .cloned()
            .collect();
        let mut tenants: BTreeSet<String> = BTreeSet::new();
        tenants.extend(rules.iter().map(|r| r.tenant.clone()));
        tenants.extend(holders.iter().map(|a| a.tenant.clone()));
        tenants.extend(inherits.iter().map(|a| a.tenant.clone()));
        RoleSummary {
            name: name.to_owned(),
            rules,
            holders,
            inherits,
            tenants: tenants.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_permissions_follow_inheritance_per_tenant() {
        let set = PolicySet::parse_csv(
            "\
p, reader, default, tool:t/get_*, call, allow
p, admin, default, tool:t/*, call, allow
p, officer, *, resource:t/**, read, allow
p, user:alice, default, tool:t/own, call, allow
g, admin, reader, default
g, user:alice, admin, default
g, user:alice, officer, acme
",
            "inline",
        )
        .expect("valid");
        assert_eq!(
            set.roles_of("user:alice", "default"),
            vec!["admin", "reader"]
        );
        assert_eq!(set.roles_of("user:alice", "acme"), vec!["officer"]);
        let vias: Vec<String> = set
            .permissions_of("user:alice", "default")
            .into_iter()
            .map(|p| p.via)
            .collect();
        assert_eq!(vias, vec!["reader", "admin", "user:alice"]);
        assert_eq!(set.permissions_of("user:alice", "acme").len(), 1);
        assert_eq!(set.tenants_of("user:alice"), vec!["acme", "default"]);
        assert_eq!(set.role_names(), vec!["admin", "officer", "reader"]);
        let admin = set.role_summary("admin");
        assert_eq!(admin.rules.len(), 1);
        assert_eq!(admin.holders.len(), 1);
        assert_eq!(admin.inherits.len(), 1);
        assert_eq!(admin.tenants, vec!["default"]);
    }
}
