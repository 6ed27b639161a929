//! Identity assertions: short-lived JWTs the gateway signs to tell an upstream who is calling,
//! so the upstream can do per-user work without ever receiving the agent's token.
//!
//! Claims: `iss` (the gateway's identity issuer), `sub`, `aud` (the upstream), `iat`, `exp`
//! (seconds later, never after the agent token's own `exp`), `jti`, `subject_issuer` (the
//! issuer of the agent's token, whose namespace `sub` is in), the tenant and roles under
//! the verifier's claim names, `client_id`/`azp` and the `act` delegation chain as nested
//! objects (outermost actor first), as the agent's token carried them. The header's `typ` is
//! [`ASSERTION_TYPE`], so an assertion is never mistaken for an access token (RFC 8725 §3.11):
//! a verifier that requires `at+jwt` refuses it, and an upstream should require this type.

use serde_json::{Map, Value, json};

use crate::Error;
use crate::mint::Signer;
use crate::rules::MAX_ACTOR_DEPTH;

/// The `typ` header of an identity assertion.
pub const ASSERTION_TYPE: &str = "identity-assertion+jwt";

/// What an identity assertion says, beside the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionRequest<'a> {
    pub issuer: &'a str,
    /// The upstream the assertion is for.
    pub audience: &'a str,
    /// Seconds; the assertion never outlives the principal's token.
    pub lifetime_secs: i64,
    /// `jti`.
    pub id: &'a str,
    pub roles_claim: &'a str,
    pub tenant_claim: &'a str,
}

impl Signer {
    /// Signs an identity assertion of `principal` per `req` at `now` (Unix seconds); returns
    /// the compact JWT and its `exp`.
    pub fn identity_assertion(
        &self,
        principal: &authz_types::Principal,
        req: &AssertionRequest<'_>,
        now: i64,
    ) -> Result<(String, i64), Error> {
        let claims = assertion_claims(principal, req, now)?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        Ok((self.sign_claims_typed(claims, ASSERTION_TYPE)?, exp))
    }
}

fn assertion_claims(
    p: &authz_types::Principal,
    req: &AssertionRequest<'_>,
    now: i64,
) -> Result<Map<String, Value>, Error> {
    let invalid = |problem: &'static str| Error::InvalidMintRequest { problem };
    if req.issuer.is_empty() || req.audience.is_empty() || req.id.is_empty() {
        return Err(invalid("issuer, audience and id must not be empty"));
    }
    if req.lifetime_secs <= 0 {
        return Err(invalid("the lifetime must be positive"));
    }
    if p.actors.len() > MAX_ACTOR_DEPTH {
        return Err(invalid("the delegation chain is too deep"));
    }
    let exp = now.saturating_add(req.lifetime_secs).min(p.expires_at);
    if exp <= now {
        return Err(invalid("the principal's token has expired"));
    }
    let mut c = Map::new();
    c.insert("iss".into(), json!(req.issuer));
    c.insert("sub".into(), json!(p.subject));
    c.insert("aud".into(), json!(req.audience));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(exp));
    c.insert("jti".into(), json!(req.id));
    c.insert("subject_issuer".into(), json!(p.issuer));
    if let Some(t) = &p.tenant {
        c.insert(req.tenant_claim.into(), json!(t));
    }
    if !p.roles.is_empty() {
        c.insert(req.roles_claim.into(), json!(p.roles));
    }
    if let Some(client) = &p.client_id {
        c.insert("client_id".into(), json!(client));
        c.insert("azp".into(), json!(client));
    }
    let act = p
        .actors
        .iter()
        .rev()
        .fold(None, |inner: Option<Value>, actor| {
            let mut obj = Map::new();
            obj.insert("sub".into(), json!(actor));
            if let Some(inner) = inner {
                obj.insert("act".into(), inner);
            }
            Some(Value::Object(obj))
        });
    if let Some(act) = act {
        c.insert("act".into(), act);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> authz_types::Principal {
        authz_types::Principal {
            subject: "sue".into(),
            issuer: "https://idp".into(),
            tenant: Some("acme".into()),
            client_id: Some("agent-app".into()),
            actors: vec!["agent-2".into(), "agent-1".into()],
            scopes: vec!["tickets:read".into()],
            roles: vec!["ticket-steward".into()],
            token_id: Some("t-1".into()),
            expires_at: 1_000,
            issued_at: Some(0),
            claims: Default::default(),
        }
    }

    fn req() -> AssertionRequest<'static> {
        AssertionRequest {
            issuer: "https://gw/",
            audience: "https://tickets.internal/mcp",
            lifetime_secs: 30,
            id: "r-1",
            roles_claim: "roles",
            tenant_claim: "tenant",
        }
    }

    #[test]
    fn claims_say_who_calls_and_never_outlive_the_token() {
        let c = Value::Object(assertion_claims(&principal(), &req(), 100).expect("claims"));
        assert_eq!(
            c,
            json!({"iss": "https://gw/", "sub": "sue", "aud": "https://tickets.internal/mcp",
                   "iat": 100, "exp": 130, "jti": "r-1", "subject_issuer": "https://idp",
                   "tenant": "acme", "roles": ["ticket-steward"], "client_id": "agent-app",
                   "azp": "agent-app", "act": {"sub": "agent-2", "act": {"sub": "agent-1"}}})
        );
        let late = assertion_claims(&principal(), &req(), 990).expect("claims");
        assert_eq!(late["exp"], json!(1_000));
        assert!(assertion_claims(&principal(), &req(), 1_000).is_err());
        let mut bad = req();
        bad.lifetime_secs = 0;
        assert!(assertion_claims(&principal(), &bad, 100).is_err());
    }
}
