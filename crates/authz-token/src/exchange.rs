//! Token exchange (RFC 8693) logic: from a verified principal, mint a shorter-lived, narrower
//! token for one of our resources, recording the requesting agent in `act`. The HTTP endpoint
//! (`POST /token`) lives in the gateway; this is the part that decides and signs.

use serde_json::{Map, Value, json};

use crate::mint::Signer;
use crate::rules::{MAX_ACTOR_DEPTH, audience_eq, audience_is_empty};

/// Longest `task_id` or requesting-agent name accepted.
const MAX_LABEL_BYTES: usize = 256;

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    /// Scopes for the new token: a non-empty subset of the subject token's scopes.
    pub scopes: Vec<String>,
    /// The resource (canonical URI of one of our routes) the new token is for.
    pub audience: String,
    /// Requested lifetime; capped by [`ExchangePolicy::max_ttl_secs`] and by the subject token's
    /// own expiry.
    pub ttl_secs: i64,
    /// Binds the token to one task: emitted as the `task_id` claim.
    pub task_id: Option<String>,
    /// The agent asking (RFC 8693 actor): becomes the outermost `act.sub`, over any existing
    /// delegation chain.
    pub requesting_agent: Option<String>,
}

/// What the exchanging authority (the gateway) allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangePolicy {
    /// `iss` of the new tokens: the gateway's own issuer, which verifiers must trust.
    pub issuer: String,
    /// Longest lifetime of a new token (e.g. 300).
    pub max_ttl_secs: i64,
    /// Resources a new token may be for (compared with scheme/host case and one trailing slash
    /// ignored); the token carries the entry as written here.
    pub allowed_audiences: Vec<String>,
    /// Claim name for the roles carried over; default `roles`.
    pub roles_claim: String,
    /// Claim name for the tenant carried over; default `tenant`.
    pub tenant_claim: String,
}

impl ExchangePolicy {
    /// A policy with the default claim names.
    pub fn new(
        issuer: impl Into<String>,
        allowed_audiences: Vec<String>,
        max_ttl_secs: i64,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            max_ttl_secs,
            allowed_audiences,
            roles_claim: "roles".to_owned(),
            tenant_claim: "tenant".to_owned(),
        }
    }
}

/// Why an exchange was refused; [`ExchangeError::error_code`] is the RFC 6749 / RFC 8693 `error`
/// value for the JSON error response.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request is malformed (lifetime, task id, agent name, delegation depth).
    #[error("invalid exchange request: {0}")]
    InvalidRequest(&'static str),
    /// A requested scope is malformed or not held by the subject token.
    #[error("invalid scope: {0}")]
    InvalidScope(&'static str),
    /// The requested audience is not one of ours.
    #[error("the requested audience is not allowed")]
    InvalidTarget,
    /// The subject token can no longer be exchanged (it has expired).
    #[error("invalid subject token: {0}")]
    InvalidGrant(&'static str),
    /// The exchange policy is unusable (a configuration mistake of the gateway).
    #[error("exchange policy is invalid: {0}")]
    InvalidPolicy(&'static str),
    /// Signing the new token failed.
    #[error("signing the exchanged token failed")]
    Signing(#[source] crate::Error),
}

impl ExchangeError {
    /// The OAuth `error` code: `invalid_request`, `invalid_scope`, `invalid_target` (RFC 8693),
    /// `invalid_grant`, or `server_error` for our own failures.
    pub fn error_code(&self) -> &'static str {
        match self {
            ExchangeError::InvalidRequest(_) => "invalid_request",
            ExchangeError::InvalidScope(_) => "invalid_scope",
            ExchangeError::InvalidTarget => "invalid_target",
            ExchangeError::InvalidGrant(_) => "invalid_grant",
            ExchangeError::InvalidPolicy(_) | ExchangeError::Signing(_) => "server_error",
        }
    }

    /// The HTTP status for the error response: 400, or 500 for our own failures.
    pub fn http_status(&self) -> u16 {
        match self {
            ExchangeError::InvalidPolicy(_) | ExchangeError::Signing(_) => 500,
            _ => 400,
        }
    }

    /// A client-safe `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            ExchangeError::InvalidRequest(problem)
            | ExchangeError::InvalidScope(problem)
            | ExchangeError::InvalidGrant(problem) => problem,
            ExchangeError::InvalidTarget => "the requested audience is not allowed",
            ExchangeError::InvalidPolicy(_) | ExchangeError::Signing(_) => {
                "the token could not be issued"
            }
        }
    }
}

fn check_label(value: &Option<String>, problem: &'static str) -> Result<(), ExchangeError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_LABEL_BYTES || v.chars().any(char::is_control) => {
            Err(ExchangeError::InvalidRequest(problem))
        }
        _ => Ok(()),
    }
}

impl Signer {
    /// Exchanges the verified `subject` (the caller's token) for a new token per `req`, never
    /// wider than the original: scopes a subset, audience one of `policy.allowed_audiences`,
    /// lifetime at most `policy.max_ttl_secs` and never past the original `exp`. `sub`, tenant,
    /// client and roles are carried over; `act` gets the requesting agent on top of the existing
    /// chain. Scopes are compared literally: a gateway with a scope hierarchy expands the
    /// subject's scopes before calling.
    pub fn exchange(
        &self,
        subject: &authz_types::Principal,
        req: &ExchangeRequest,
        policy: &ExchangePolicy,
    ) -> Result<String, ExchangeError> {
        self.exchange_at(
            subject,
            req,
            policy,
            authz_types::now_unix_ms().div_euclid(1000),
        )
    }

    /// Like [`Signer::exchange`], with the current time given as Unix seconds.
    pub fn exchange_at(
        &self,
        subject: &authz_types::Principal,
        req: &ExchangeRequest,
        policy: &ExchangePolicy,
        now: i64,
    ) -> Result<String, ExchangeError> {
        let claims = exchange_claims(subject, req, policy, now)?;
        let token = self.sign_claims(claims).map_err(ExchangeError::Signing)?;
        tracing::info!(
            sub = %subject.subject,
            agent = req.requesting_agent.as_deref().unwrap_or(""),
            audience = %req.audience,
            "token exchanged"
        );
        Ok(token)
    }
}

fn exchange_claims(
    subject: &authz_types::Principal,
    req: &ExchangeRequest,
    policy: &ExchangePolicy,
    now: i64,
) -> Result<Map<String, Value>, ExchangeError> {
    if policy.issuer.is_empty() {
        return Err(ExchangeError::InvalidPolicy("issuer is empty"));
    }
    if policy.max_ttl_secs <= 0 {
        return Err(ExchangeError::InvalidPolicy("max_ttl_secs is not positive"));
    }
    if policy.roles_claim.is_empty()
        || policy.tenant_claim.is_empty()
        || policy.roles_claim == policy.tenant_claim
    {
        return Err(ExchangeError::InvalidPolicy("roles_claim and tenant_claim"));
    }

    // Lifetime: the subject token must still be valid, and the new one ends no later.
    if subject.expires_at <= now {
        return Err(ExchangeError::InvalidGrant("the subject token has expired"));
    }
    if req.ttl_secs <= 0 {
        return Err(ExchangeError::InvalidRequest(
            "the requested lifetime is not positive",
        ));
    }
    let ttl = req.ttl_secs.min(policy.max_ttl_secs);
    let exp = now.saturating_add(ttl).min(subject.expires_at);

    // Scopes: a non-empty subset of what the subject holds.
    if req.scopes.is_empty() {
        return Err(ExchangeError::InvalidScope(
            "at least one scope must be requested",
        ));
    }
    if req.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
        return Err(ExchangeError::InvalidScope(
            "a scope is empty or contains a space",
        ));
    }
    if !req.scopes.iter().all(|s| subject.has_scope(s)) {
        return Err(ExchangeError::InvalidScope(
            "a requested scope is not held by the subject token",
        ));
    }
    let mut scopes = req.scopes.clone();
    scopes.sort();
    scopes.dedup();

    // Audience: one of ours, written as configured.
    if audience_is_empty(&req.audience) {
        return Err(ExchangeError::InvalidTarget);
    }
    let audience = policy
        .allowed_audiences
        .iter()
        .find(|a| audience_eq(a, &req.audience))
        .ok_or(ExchangeError::InvalidTarget)?;

    check_label(
        &req.task_id,
        "task_id is empty, too long or has control characters",
    )?;
    check_label(
        &req.requesting_agent,
        "the requesting agent is empty, too long or has control characters",
    )?;

    // The delegation chain, outermost (current) actor first, as nested `act` objects.
    let mut chain: Vec<&str> = Vec::new();
    if let Some(agent) = &req.requesting_agent {
        chain.push(agent);
    }
    chain.extend(subject.actors.iter().map(String::as_str));
    if chain.len() > MAX_ACTOR_DEPTH {
        return Err(ExchangeError::InvalidRequest(
            "the delegation chain is too deep",
        ));
    }
    let act = chain
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

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(policy.issuer));
    claims.insert("sub".into(), json!(subject.subject));
    claims.insert("aud".into(), json!(audience));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert("scope".into(), json!(scopes.join(" ")));
    if !subject.roles.is_empty() {
        claims.insert(policy.roles_claim.clone(), json!(subject.roles));
    }
    if let Some(tenant) = &subject.tenant {
        claims.insert(policy.tenant_claim.clone(), json!(tenant));
    }
    if let Some(client_id) = &subject.client_id {
        claims.insert("client_id".into(), json!(client_id));
        claims.insert("azp".into(), json!(client_id));
    }
    if let Some(act) = act {
        claims.insert("act".into(), act);
    }
    if let Some(task_id) = &req.task_id {
        claims.insert("task_id".into(), json!(task_id));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authz_types::Principal;

    fn subject() -> Principal {
        Principal {
            subject: "alice".into(),
            issuer: "https://idp".into(),
            tenant: Some("acme".into()),
            client_id: Some("app".into()),
            actors: vec!["orchestrator".into()],
            scopes: vec!["a".into(), "b".into()],
            roles: vec!["reader".into()],
            token_id: Some("orig".into()),
            expires_at: 1_000,
            issued_at: Some(0),
            claims: Default::default(),
        }
    }

    fn request() -> ExchangeRequest {
        ExchangeRequest {
            scopes: vec!["a".into()],
            audience: "HTTPS://GW/mcp/x/".into(),
            ttl_secs: 60,
            task_id: Some("task-1".into()),
            requesting_agent: Some("agent-7".into()),
        }
    }

    fn policy() -> ExchangePolicy {
        ExchangePolicy::new("https://gw", vec!["https://gw/mcp/x".into()], 300)
    }

    #[test]
    fn claims_are_narrow_and_record_the_chain() {
        let c = Value::Object(exchange_claims(&subject(), &request(), &policy(), 100).expect("ok"));
        assert_eq!(c["iss"], "https://gw");
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["aud"], "https://gw/mcp/x");
        assert_eq!(c["exp"], 160);
        assert_eq!(c["scope"], "a");
        assert_eq!(c["task_id"], "task-1");
        assert_eq!(c["tenant"], "acme");
        assert_eq!(c["roles"], json!(["reader"]));
        assert_eq!(
            c["act"],
            json!({"sub": "agent-7", "act": {"sub": "orchestrator"}})
        );
        assert_ne!(c["jti"], "orig");
    }

    #[test]
    fn lifetime_is_capped_by_policy_and_original() {
        let mut req = request();
        req.ttl_secs = 10_000;
        let c = exchange_claims(&subject(), &req, &policy(), 100).expect("ok");
        assert_eq!(c["exp"], 400);
        let c = exchange_claims(&subject(), &req, &policy(), 900).expect("ok");
        assert_eq!(c["exp"], 1_000);
    }

    #[test]
    fn refusals_map_to_oauth_codes() {
        type Change = fn(&mut ExchangeRequest, &mut ExchangePolicy, &mut Principal);
        let cases: Vec<(Change, &str)> = vec![
            (|r, _, _| r.scopes = vec!["c".into()], "invalid_scope"),
            (|r, _, _| r.scopes.clear(), "invalid_scope"),
            (|r, _, _| r.scopes = vec!["a b".into()], "invalid_scope"),
            (
                |r, _, _| r.audience = "https://gw/mcp/y".into(),
                "invalid_target",
            ),
            (|r, _, _| r.audience = String::new(), "invalid_target"),
            (|r, _, _| r.ttl_secs = 0, "invalid_request"),
            (|r, _, _| r.task_id = Some(String::new()), "invalid_request"),
            (|r, _, _| r.task_id = Some("a\nb".into()), "invalid_request"),
            (
                |r, _, _| r.requesting_agent = Some("x".repeat(300)),
                "invalid_request",
            ),
            (|_, _, s| s.actors = vec!["a".into(); 8], "invalid_request"),
            (|_, _, s| s.expires_at = 100, "invalid_grant"),
            (|_, p, _| p.max_ttl_secs = 0, "server_error"),
        ];
        for (i, (change, code)) in cases.into_iter().enumerate() {
            let (mut r, mut p, mut s) = (request(), policy(), subject());
            change(&mut r, &mut p, &mut s);
            let err = exchange_claims(&s, &r, &p, 100).expect_err("refused");
            assert_eq!(err.error_code(), code, "case {i}: {err}");
            assert!(!err.description().is_empty());
        }
    }
}
