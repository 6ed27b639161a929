//! The authenticated identity behind a request, as established from a verified token.

use serde::{Deserialize, Serialize};

/// The tenant (Casbin domain) used when a token names none.
pub const DEFAULT_TENANT: &str = "default";

/// Who is calling: the verified claims of a bearer token, normalised.
///
/// Built only by a token verifier; everything here has been checked cryptographically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `sub`: the user or service the token was issued to.
    pub subject: String,
    /// `iss`: the issuer that vouched for the subject.
    pub issuer: String,
    /// The tenant claim, if the issuer sets one (see [`Principal::tenant_or_default`]).
    pub tenant: Option<String>,
    /// `azp` or `client_id`: the OAuth client (often the agent application).
    pub client_id: Option<String>,
    /// The delegation chain from `act` (RFC 8693), outermost (current) actor first.
    /// Empty when the subject acts for itself.
    pub actors: Vec<String>,
    /// Granted scopes, sorted and deduplicated.
    pub scopes: Vec<String>,
    /// Roles carried by the token (the configured roles claim), sorted and deduplicated.
    pub roles: Vec<String>,
    /// `jti`, if present.
    pub token_id: Option<String>,
    /// `exp` as Unix seconds.
    pub expires_at: i64,
    /// `iat` as Unix seconds, if present.
    pub issued_at: Option<i64>,
    /// The token's other claims (everything but the registered and structured ones above), for
    /// policy conditions (`principal.claims.projects`). Shared: a principal is cloned per request
    /// from the token cache, its claims are not.
    #[serde(default, skip_serializing_if = "claims_empty")]
    pub claims: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
}

fn claims_empty(claims: &std::sync::Arc<serde_json::Map<String, serde_json::Value>>) -> bool {
    claims.is_empty()
}

impl Principal {
    /// The tenant this principal acts in; [`DEFAULT_TENANT`] when the token names none.
    pub fn tenant_or_default(&self) -> &str {
        self.tenant.as_deref().unwrap_or(DEFAULT_TENANT)
    }

    /// The agent acting for the subject right now (the outermost `act.sub`), if any.
    pub fn acting_agent(&self) -> Option<&str> {
        self.actors.first().map(String::as_str)
    }

    /// Whether the token literally carries `scope` (no hierarchy is applied here).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .binary_search_by(|s| s.as_str().cmp(scope))
            .is_ok()
    }

    /// Sorts and deduplicates scopes and roles so lookups can binary-search.
    pub fn normalize(mut self) -> Self {
        self.scopes.sort();
        self.scopes.dedup();
        self.roles.sort();
        self.roles.dedup();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Principal {
        Principal {
            subject: "alice".into(),
            issuer: "https://idp.example".into(),
            tenant: None,
            client_id: None,
            actors: vec!["agent-7".into(), "orchestrator".into()],
            scopes: vec![
                "tickets:write".into(),
                "tickets:read".into(),
                "tickets:read".into(),
            ],
            roles: vec![],
            token_id: None,
            expires_at: 0,
            issued_at: None,
            claims: Default::default(),
        }
        .normalize()
    }

    #[test]
    fn scopes_are_normalised_and_searchable() {
        let p = p();
        assert_eq!(p.scopes, vec!["tickets:read", "tickets:write"]);
        assert!(p.has_scope("tickets:read"));
        assert!(!p.has_scope("tickets"));
    }

    #[test]
    fn tenant_defaults_and_actor_is_outermost() {
        let p = p();
        assert_eq!(p.tenant_or_default(), DEFAULT_TENANT);
        assert_eq!(p.acting_agent(), Some("agent-7"));
    }
}
