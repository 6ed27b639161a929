//! Bearer-token verification: configuration, the per-issuer key sets and the claim rules.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use authz_types::{Principal, ReasonCode};
use josekit::JoseError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{KeyAlgorithm, VerifyKey, load_jwks};
use crate::{Error, b64};

/// Tokens longer than this are refused before any parsing. Real access tokens are a few hundred
/// bytes to a few KiB; the cap bounds the work an unauthenticated caller can cause.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How deep a chain of nested `act` claims may go before the token is refused.
pub const MAX_ACTOR_DEPTH: usize = 8;

/// Claim names a roles or tenant claim may not reuse, because they already mean something else.
pub(crate) const RESERVED_CLAIMS: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "scp",
    "client_id",
    "azp",
    "act",
];

fn default_algorithms() -> Vec<String> {
    KeyAlgorithm::ALL
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}
fn default_roles_claim() -> String {
    "roles".to_owned()
}
fn default_tenant_claim() -> String {
    "tenant".to_owned()
}
fn default_leeway_secs() -> u64 {
    30
}
fn default_max_lifetime_secs() -> u64 {
    86_400
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value this issuer puts in its tokens.
    pub issuer: String,
    /// A JWKS file with the issuer's public signing keys; every key must have a `kid`.
    pub jwks_file: PathBuf,
    /// Allowed `alg` values: a subset of `ES256`, `RS256`, `EdDSA`. `none` and `HS*` are refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding roles (an array of strings or one string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim holding the tenant (a string).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
}

impl IssuerConfig {
    /// An issuer with the default algorithms and claim names.
    pub fn new(issuer: impl Into<String>, jwks_file: impl Into<PathBuf>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_file: jwks_file.into(),
            algorithms: default_algorithms(),
            roles_claim: default_roles_claim(),
            tenant_claim: default_tenant_claim(),
        }
    }
}

/// Configuration of a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    /// The trusted issuers; a token from any other issuer is refused.
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Longest accepted token lifetime: `exp - iat`, or `exp - now` when there is no `iat`.
    #[serde(default = "default_max_lifetime_secs")]
    pub max_lifetime_secs: u64,
}

impl VerifierConfig {
    /// A configuration with the default leeway (30 s) and maximum lifetime (24 h).
    pub fn new(issuers: Vec<IssuerConfig>) -> Self {
        Self {
            issuers,
            leeway_secs: default_leeway_secs(),
            max_lifetime_secs: default_max_lifetime_secs(),
        }
    }
}

/// Why a token was refused. Each variant maps to one [`ReasonCode`].
///
/// The `Display` text is meant for logs and never contains token contents; [`TokenError::description`]
/// is the shorter text to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWS compact serialization (size, segments, base64url, JSON, `crit`).
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the key the token names.
    #[error("token signature does not verify")]
    BadSignature,
    /// `alg` is `none`, symmetric, unsupported or not allowed for the issuer.
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// `kid` is missing, unknown for the issuer, or names a key of another algorithm.
    #[error("token names no known key")]
    UnknownKey,
    /// `exp` has passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not a configured issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` is missing or does not name the protected resource.
    #[error("token audience does not match this resource")]
    WrongAudience,
    /// A required claim is missing, or a claim has the wrong type or value.
    #[error("token claims are invalid: {0}")]
    InvalidClaims(&'static str),
    /// The token lives longer than the configured maximum.
    #[error("token lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
}

impl TokenError {
    /// The stable reason code for audit records and error bodies.
    pub fn reason(&self) -> ReasonCode {
        match self {
            TokenError::Malformed(_) => ReasonCode::TokenMalformed,
            TokenError::BadSignature => ReasonCode::TokenBadSignature,
            TokenError::AlgorithmNotAllowed => ReasonCode::TokenAlgorithmNotAllowed,
            TokenError::UnknownKey => ReasonCode::TokenUnknownKey,
            TokenError::Expired => ReasonCode::TokenExpired,
            TokenError::NotYetValid => ReasonCode::TokenNotYetValid,
            TokenError::WrongIssuer => ReasonCode::TokenWrongIssuer,
            TokenError::WrongAudience => ReasonCode::TokenWrongAudience,
            TokenError::InvalidClaims(_) => ReasonCode::TokenInvalidClaims,
            TokenError::LifetimeTooLong => ReasonCode::TokenLifetimeTooLong,
        }
    }

    /// A client-safe description (for `error_description`); never contains token contents.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "The access token is malformed.",
            TokenError::BadSignature => "The access token signature is invalid.",
            TokenError::AlgorithmNotAllowed => "The access token algorithm is not allowed.",
            TokenError::UnknownKey => "The access token is signed with an unknown key.",
            TokenError::Expired => "The access token has expired.",
            TokenError::NotYetValid => "The access token is not yet valid.",
            TokenError::WrongIssuer => "The access token issuer is not trusted.",
            TokenError::WrongAudience => "The access token is not intended for this resource.",
            TokenError::InvalidClaims(_) => "The access token claims are invalid.",
            TokenError::LifetimeTooLong => "The access token lifetime is too long.",
        }
    }
}

/// Verifies bearer tokens against the configured issuers. Cheap to clone; shareable across
/// threads.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, Issuer>,
    leeway: i64,
    max_lifetime: i64,
}

struct Issuer {
    issuer: String,
    algorithms: Vec<KeyAlgorithm>,
    roles_claim: String,
    tenant_claim: String,
    keys: HashMap<String, VerifyKey>,
}

impl fmt::Debug for Verifier {
    /// Lists issuers, algorithms and key ids only; no key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut issuers: Vec<_> = self.inner.issuers.values().collect();
        issuers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        f.debug_struct("Verifier")
            .field("issuers", &issuers)
            .field("leeway_secs", &self.inner.leeway)
            .field("max_lifetime_secs", &self.inner.max_lifetime)
            .finish()
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("kids", &kids)
            .field("roles_claim", &self.roles_claim)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

/// Checks a configurable claim name: non-empty and not one the verifier already interprets.
pub(crate) fn check_claim_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || RESERVED_CLAIMS.contains(&name) {
        return Err(Error::ReservedClaimName {
            claim: name.to_owned(),
        });
    }
    Ok(())
}

impl Verifier {
    /// Validates `cfg` and loads every issuer's JWKS, building one verifier per key.
    pub fn from_config(cfg: &VerifierConfig) -> Result<Self, Error> {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut issuers = HashMap::new();
        if cfg.issuers.is_empty() {
            return Err(Error::NoIssuers);
        }
        for ic in &cfg.issuers {
            if ic.issuer.is_empty() {
                return Err(Error::EmptyIssuer);
            }
            if issuers.contains_key(&ic.issuer) {
                return Err(Error::DuplicateIssuer {
                    issuer: ic.issuer.clone(),
                });
            }
            if ic.algorithms.is_empty() {
                return Err(Error::NoAlgorithms {
                    issuer: ic.issuer.clone(),
                });
            }
            let algorithms = ic
                .algorithms
                .iter()
                .map(|a| a.parse::<KeyAlgorithm>())
                .collect::<Result<Vec<_>, _>>()?;
            check_claim_name(&ic.roles_claim)?;
            check_claim_name(&ic.tenant_claim)?;
            if ic.roles_claim == ic.tenant_claim {
                return Err(Error::ReservedClaimName {
                    claim: ic.tenant_claim.clone(),
                });
            }
            let keys = load_jwks(&ic.jwks_file, &algorithms)?;
            if keys.is_empty() {
                return Err(Error::NoUsableKeys {
                    path: ic.jwks_file.clone(),
                });
            }
            tracing::info!(issuer = %ic.issuer, keys = keys.len(), "loaded token issuer keys");
            issuers.insert(
                ic.issuer.clone(),
                Issuer {
                    issuer: ic.issuer.clone(),
                    algorithms,
                    roles_claim: ic.roles_claim.clone(),
                    tenant_claim: ic.tenant_claim.clone(),
                    keys,
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                issuers,
                leeway: to_i64(cfg.leeway_secs),
                max_lifetime: to_i64(cfg.max_lifetime_secs),
            }),
        })
    }

    /// Verifies `token` for the protected resource `audience` (the route's canonical URI) at the
    /// current time.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Principal, TokenError> {
        self.verify_at(token, audience, authz_types::now_unix_ms().div_euclid(1000))
    }

    /// Like [`Verifier::verify`], with the current time given as Unix seconds.
    pub fn verify_at(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Principal, TokenError> {
        let result = self.verify_inner(token, audience, now);
        if let Err(err) = &result {
            // The reason is enough to debug; token contents are never logged.
            tracing::debug!(reason = %err.reason(), detail = %err, "bearer token rejected");
        }
        result
    }

    fn verify_inner(&self, token: &str, audience: &str, now: i64) -> Result<Principal, TokenError> {
        let parts = split_token(token)?;

        // The header decides which key verifies; refuse what can never be verified first.
        let alg = match parts.header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            Some(_) => return Err(TokenError::Malformed("alg is not a string")),
            None => return Err(TokenError::Malformed("alg is missing")),
        };
        // `none`, `HS*` and anything else outside the asymmetric set end here, before a key is
        // looked up: this is what stops RS256/HS256 key confusion.
        let Ok(alg) = alg.parse::<KeyAlgorithm>() else {
            return Err(TokenError::AlgorithmNotAllowed);
        };
        // We implement no critical extension, so any `crit` means we cannot honour the token.
        if parts.header.contains_key("crit") {
            return Err(TokenError::Malformed("crit header is not supported"));
        }
        // `jku`, `x5u`, `x5c` and `jwk` are never read: keys come only from configuration.

        // The unverified `iss` only selects the key set; the signature is checked against it.
        let issuer = match parts.claims.get("iss") {
            Some(Value::String(iss)) => {
                self.inner.issuers.get(iss).ok_or(TokenError::WrongIssuer)?
            }
            Some(_) => return Err(TokenError::InvalidClaims("iss is not a string")),
            None => return Err(TokenError::InvalidClaims("iss is missing")),
        };
        if !issuer.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key = match parts.header.get("kid") {
            Some(Value::String(kid)) => issuer.keys.get(kid).ok_or(TokenError::UnknownKey)?,
            _ => return Err(TokenError::UnknownKey),
        };
        if key.algorithm != alg {
            return Err(TokenError::UnknownKey);
        }

        let verifier = key.verifier.as_ref();
        josekit::jwt::decode_with_verifier_selector(token, |_header| Ok(Some(verifier)))
            .map_err(classify_jose_error)?;

        // The signature covers exactly the bytes we parsed strictly above, so `parts.claims` is
        // now authenticated.
        check_claims(&self.inner, issuer, &parts.claims, audience, now)
    }
}

/// Maps a josekit decode error to a token error. Format problems were already caught by
/// `split_token`, so what remains is the signature (checked first) or josekit's claim typing.
fn classify_jose_error(err: JoseError) -> TokenError {
    match err {
        JoseError::InvalidSignature(_) => TokenError::BadSignature,
        // josekit raises this only after the signature verified, when a registered claim has a
        // type it refuses (for example a negative `exp`).
        JoseError::InvalidJwtFormat(_) => {
            TokenError::InvalidClaims("registered claim has an invalid type")
        }
        _ => TokenError::Malformed("rejected by the JWS decoder"),
    }
}

struct Parts {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// Splits and strictly decodes a compact JWS: three canonical base64url segments, a header and a
/// payload that are JSON objects without duplicate keys, and a decodable signature.
fn split_token(token: &str) -> Result<Parts, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("token is too large"));
    }
    let mut segments = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed("token does not have three segments"));
    };
    let object = |segment: &str, what: &'static str| -> Result<Map<String, Value>, TokenError> {
        let bytes = b64::decode(segment).ok_or(TokenError::Malformed(what))?;
        match authz_types::parse_strict(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(TokenError::Malformed(what)),
        }
    };
    let header = object(h, "header is not a base64url JSON object")?;
    let claims = object(p, "payload is not a base64url JSON object")?;
    if b64::decode(s).is_none() {
        return Err(TokenError::Malformed("signature is not base64url"));
    }
    Ok(Parts { header, claims })
}

fn check_claims(
    inner: &Inner,
    issuer: &Issuer,
    claims: &Map<String, Value>,
    audience: &str,
    now: i64,
) -> Result<Principal, TokenError> {
    let subject = non_empty_string(claims, "sub", "sub is missing or not a non-empty string")?
        .ok_or(TokenError::InvalidClaims(
            "sub is missing or not a non-empty string",
        ))?;

    // josekit does not require `exp`; we do, since every token must be short-lived.
    let expires_at =
        numeric_date(claims, "exp")?.ok_or(TokenError::InvalidClaims("exp is missing"))?;
    let not_before = numeric_date(claims, "nbf")?;
    let issued_at = numeric_date(claims, "iat")?;
    let leeway = inner.leeway;
    if now >= expires_at.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = not_before
        && nbf > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = issued_at
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::InvalidClaims("iat is in the future"));
    }
    let lifetime = expires_at.saturating_sub(issued_at.unwrap_or(now));
    if lifetime > inner.max_lifetime {
        return Err(TokenError::LifetimeTooLong);
    }

    check_audience(claims.get("aud"), audience)?;

    let tenant = non_empty_string(
        claims,
        &issuer.tenant_claim,
        "tenant claim is not a non-empty string",
    )?;
    let azp = non_empty_string(claims, "azp", "azp is not a non-empty string")?;
    let client_id = non_empty_string(claims, "client_id", "client_id is not a non-empty string")?;
    let client_id = match (azp, client_id) {
        (Some(a), Some(c)) if a != c => {
            return Err(TokenError::InvalidClaims("azp and client_id disagree"));
        }
        (Some(a), _) => Some(a),
        (None, c) => c,
    };
    let token_id = non_empty_string(claims, "jti", "jti is not a non-empty string")?;

    Ok(Principal {
        subject,
        issuer: issuer.issuer.clone(),
        tenant,
        client_id,
        actors: actors(claims)?,
        scopes: scopes(claims)?,
        roles: roles(claims, &issuer.roles_claim)?,
        token_id,
        expires_at,
        issued_at,
    }
    .normalize())
}

/// An optional claim that, when present, must be a non-empty string.
fn non_empty_string(
    claims: &Map<String, Value>,
    name: &str,
    problem: &'static str,
) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaims(problem)),
    }
}

/// An optional NumericDate claim as whole Unix seconds (fractions are truncated).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_i64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                // A float beyond i64 saturates, which only makes the time checks stricter.
                Some(f) if f.is_finite() => Ok(Some(f.trunc() as i64)),
                _ => Err(TokenError::InvalidClaims("a time claim is not a number")),
            }
        }
        Some(_) => Err(TokenError::InvalidClaims("a time claim is not a number")),
    }
}

/// Normalises an audience for comparison: scheme and host lowercased, one trailing slash removed.
/// Values that are not `scheme://…` URIs are compared as they are (minus the trailing slash).
pub(crate) fn normalize_audience(aud: &str) -> String {
    let aud = aud.strip_suffix('/').unwrap_or(aud);
    match aud.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase(),
                tail
            )
        }
        None => aud.to_owned(),
    }
}

fn check_audience(aud: Option<&Value>, expected: &str) -> Result<(), TokenError> {
    let expected = normalize_audience(expected);
    // An empty expected audience would match a token with an empty `aud`; never accept that.
    if expected.is_empty() {
        return Err(TokenError::WrongAudience);
    }
    let matches = |v: &Value| match v {
        Value::String(s) => Ok(normalize_audience(s) == expected),
        _ => Err(TokenError::InvalidClaims(
            "aud is not a string or array of strings",
        )),
    };
    let found = match aud {
        None => false,
        Some(Value::Array(values)) => {
            let mut found = false;
            for v in values {
                // Check every element's type, so a bad entry is refused even after a match.
                found |= matches(v)?;
            }
            found
        }
        Some(v) => matches(v)?,
    };
    if found {
        Ok(())
    } else {
        Err(TokenError::WrongAudience)
    }
}

/// The delegation chain of nested `act` claims (RFC 8693), outermost (current actor) first.
fn actors(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let mut out = Vec::new();
    let mut current = claims.get("act");
    while let Some(act) = current {
        if out.len() == MAX_ACTOR_DEPTH {
            return Err(TokenError::InvalidClaims("act is nested too deeply"));
        }
        let Value::Object(act) = act else {
            return Err(TokenError::InvalidClaims("act is not an object"));
        };
        let sub = non_empty_string(act, "sub", "act.sub is not a non-empty string")?
            .ok_or(TokenError::InvalidClaims("act.sub is missing"))?;
        out.push(sub);
        current = act.get("act");
    }
    Ok(out)
}

/// Scopes from `scope` (a space-delimited string, RFC 9068) and `scp` (an array of strings, or a
/// space-delimited string as some providers emit it); both are merged if both are present.
fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let split = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut out = Vec::new();
    match claims.get("scope") {
        None => {}
        Some(Value::String(s)) => out.extend(split(s)),
        Some(_) => return Err(TokenError::InvalidClaims("scope is not a string")),
    }
    match claims.get("scp") {
        None => {}
        Some(Value::String(s)) => out.extend(split(s)),
        Some(Value::Array(values)) => {
            for v in values {
                match v {
                    Value::String(s) if !s.is_empty() && !s.contains(' ') => out.push(s.clone()),
                    _ => {
                        return Err(TokenError::InvalidClaims(
                            "scp is not an array of scope strings",
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(TokenError::InvalidClaims("scp is not an array of strings")),
    }
    Ok(out)
}

/// Roles from the issuer's roles claim: an array of non-empty strings or one string.
fn roles(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, TokenError> {
    const PROBLEM: &str = "roles claim is not a string or array of non-empty strings";
    match claims.get(claim) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(TokenError::InvalidClaims(PROBLEM)),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaims(PROBLEM)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn audience_normalisation() {
        assert_eq!(
            normalize_audience("HTTPS://Gw.Example:8443/mcp/Tickets/"),
            "https://gw.example:8443/mcp/Tickets"
        );
        assert_eq!(normalize_audience("https://h/"), "https://h");
        assert_eq!(normalize_audience("urn:Thing/"), "urn:Thing");
        // Only one trailing slash is removed and the path keeps its case.
        assert_eq!(normalize_audience("https://h/A//"), "https://h/A/");
    }

    #[test]
    fn audience_matching() {
        let want = "https://gw.example/mcp/tickets";
        assert!(check_audience(Some(&json!("HTTPS://GW.example/mcp/tickets/")), want).is_ok());
        assert!(
            check_audience(
                Some(&json!(["other", "https://gw.example/mcp/tickets"])),
                want
            )
            .is_ok()
        );
        for (aud, code) in [
            (
                json!("https://gw.example/mcp/other"),
                ReasonCode::TokenWrongAudience,
            ),
            (
                json!("https://gw.example/mcp/Tickets"),
                ReasonCode::TokenWrongAudience,
            ),
            (
                json!("https://gw.example/mcp"),
                ReasonCode::TokenWrongAudience,
            ),
            (json!([]), ReasonCode::TokenWrongAudience),
            (json!("*"), ReasonCode::TokenWrongAudience),
            (json!(7), ReasonCode::TokenInvalidClaims),
            (json!([want, 7]), ReasonCode::TokenInvalidClaims),
        ] {
            let err = check_audience(Some(&aud), want).expect_err("refused");
            assert_eq!(err.reason(), code, "{aud}");
        }
        assert_eq!(check_audience(None, want), Err(TokenError::WrongAudience));
        assert_eq!(
            check_audience(Some(&json!("")), ""),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn actors_walk_outermost_first_and_are_bounded() {
        let c = obj(json!({"act": {"sub": "agent", "act": {"sub": "orchestrator"}}}));
        assert_eq!(
            actors(&c),
            Ok(vec!["agent".to_owned(), "orchestrator".to_owned()])
        );
        let mut deep = json!({"sub": "a8"});
        for i in (0..8).rev() {
            deep = json!({"sub": format!("a{i}"), "act": deep});
        }
        assert_eq!(
            actors(&obj(json!({ "act": deep }))),
            Err(TokenError::InvalidClaims("act is nested too deeply"))
        );
        for bad in [
            json!({"act": "agent"}),
            json!({"act": {}}),
            json!({"act": {"sub": 1}}),
        ] {
            assert!(actors(&obj(bad)).is_err());
        }
    }

    #[test]
    fn scopes_and_roles_shapes() {
        let c = obj(json!({"scope": "a  b", "scp": ["c"], "roles": "admin"}));
        assert_eq!(scopes(&c), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(roles(&c, "roles"), Ok(vec!["admin".into()]));
        for bad in [
            json!({"scope": ["a"]}),
            json!({"scp": [1]}),
            json!({"scp": 1}),
            json!({"scp": ["a b"]}),
        ] {
            assert!(scopes(&obj(bad)).is_err());
        }
        for bad in [
            json!({"roles": 1}),
            json!({"roles": [""]}),
            json!({"roles": [true]}),
        ] {
            assert!(roles(&obj(bad), "roles").is_err());
        }
    }

    #[test]
    fn numeric_dates_accept_integers_and_finite_floats() {
        let c = obj(json!({"a": 10, "b": 10.9, "c": "10"}));
        assert_eq!(numeric_date(&c, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(10)));
        assert!(numeric_date(&c, "c").is_err());
        assert_eq!(numeric_date(&c, "d"), Ok(None));
    }

    #[test]
    fn split_token_is_strict() {
        let h = b64::encode(br#"{"alg":"ES256"}"#);
        let p = b64::encode(br#"{"sub":"a"}"#);
        assert!(split_token(&format!("{h}.{p}.")).is_ok());
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.x.y"),
            format!("{h}.{p}.AB+/"),
            format!("{h}=.{p}.AA"),
            format!("{}.{p}.AA", b64::encode(b"[1]")),
            format!("{}.{p}.AA", b64::encode(br#"{"alg":"a","alg":"b"}"#)),
            format!("{h}.{}.AA", b64::encode(br#"{"sub":"a","sub":"b"}"#)),
            "a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(split_token(&bad), Err(TokenError::Malformed(_))),
                "{bad:.60}"
            );
        }
    }

    #[test]
    fn every_error_has_its_own_reason_and_a_safe_description() {
        let all = [
            TokenError::Malformed("x"),
            TokenError::BadSignature,
            TokenError::AlgorithmNotAllowed,
            TokenError::UnknownKey,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
            TokenError::InvalidClaims("x"),
            TokenError::LifetimeTooLong,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        for e in all {
            assert!(e.reason().as_str().starts_with("token_"));
            assert!(!e.description().is_empty());
        }
    }
}
