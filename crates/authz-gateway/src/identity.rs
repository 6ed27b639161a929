//! Identity assertions for upstreams: a route with `identity_assertion` sends its upstream, on
//! every request of an authenticated caller, a short-lived JWT signed by the gateway's identity
//! key (`[identity]`) saying who is calling — `sub`, the tenant, the roles, the client and the
//! `act` chain, `aud` the upstream — so the upstream can do per-user work and bind its own
//! state to the user. The agent's token itself never leaves the gateway. The public keys are
//! served at `/.well-known/jwks.json`; the header's `typ` is `identity-assertion+jwt`
//! ([`authz_token::ASSERTION_TYPE`]).
//!
//! An assertion is reused for the same caller and upstream while at least half its lifetime is
//! left (signing costs tens of microseconds); it never outlives the agent's token. A signing
//! failure fails the request closed (502), never forwards it without the assertion.

use std::collections::HashMap;
use std::sync::Mutex;

use authz_types::Principal;
use axum::http::HeaderValue;

use crate::config::{Identity, IdentityAssertion};

/// Assertions kept for reuse, at most; the cache starts over when full.
const CACHE_ENTRIES: usize = 10_000;

/// The gateway's identity issuer.
pub(crate) struct IdentityIssuer {
    signer: authz_token::Signer,
    issuer: String,
    /// The public JWKS, as served.
    jwks: String,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for IdentityIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.signer.kid())
            .finish_non_exhaustive()
    }
}

struct Cached {
    value: HeaderValue,
    issued: i64,
    expires: i64,
}

impl IdentityIssuer {
    /// Loads the signing key and the public JWKS, which must hold the key's `kid`.
    pub(crate) fn load(cfg: &Identity) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let signer = authz_token::Signer::from_private_jwk_file(&cfg.signing_key_file)
            .with_context(|| {
                format!(
                    "identity.signing_key_file {}",
                    cfg.signing_key_file.display()
                )
            })?;
        let jwks = std::fs::read_to_string(&cfg.jwks_file)
            .with_context(|| format!("reading identity.jwks_file {}", cfg.jwks_file.display()))?;
        let parsed: serde_json::Value = serde_json::from_str(&jwks).with_context(|| {
            format!("identity.jwks_file {} is not JSON", cfg.jwks_file.display())
        })?;
        let has_kid = parsed["keys"].as_array().is_some_and(|keys| {
            keys.iter()
                .any(|k| k["kid"].as_str() == Some(signer.kid()) && k.get("d").is_none())
        });
        anyhow::ensure!(
            has_kid,
            "identity.jwks_file {} has no public key with kid `{}` (or holds a private key)",
            cfg.jwks_file.display(),
            signer.kid()
        );
        Ok(Self {
            signer,
            issuer: cfg.issuer.clone(),
            jwks,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The public JWKS, for `/.well-known/jwks.json`.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The assertion of `principal` for the route's upstream, signed now or reused.
    pub(crate) fn assertion(
        &self,
        route: &IdentityAssertion,
        principal: &Principal,
        request_id: &str,
    ) -> Result<HeaderValue, authz_token::Error> {
        let now = authz_types::now_unix_ms().div_euclid(1000);
        let key = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            route.audience,
            principal.issuer,
            principal.subject,
            principal.tenant.as_deref().unwrap_or(""),
            principal.client_id.as_deref().unwrap_or(""),
            principal.actors.join(" "),
            principal.roles.join(" "),
            principal.expires_at,
        );
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cache.get(&key)
            && (c.expires - now) * 2 >= c.expires - c.issued
            && c.expires > now
        {
            return Ok(c.value.clone());
        }
        let req = authz_token::AssertionRequest {
            issuer: &self.issuer,
            audience: &route.audience,
            lifetime_secs: route.lifetime_secs,
            id: request_id,
            roles_claim: "roles",
            tenant_claim: "tenant",
        };
        let (jwt, expires) = self.signer.identity_assertion(principal, &req, now)?;
        // A compact JWS is base64url and dots: always a valid header value.
        let value =
            HeaderValue::from_str(&jwt).map_err(|_| authz_token::Error::InvalidMintRequest {
                problem: "the assertion is not a header value",
            })?;
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            key,
            Cached {
                value: value.clone(),
                issued: now,
                expires,
            },
        );
        Ok(value)
    }
}
