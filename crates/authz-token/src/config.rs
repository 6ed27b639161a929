//! Configuration types (serde, so they load from TOML): [`VerifierConfig`], [`IssuerConfig`] and
//! [`JwksFetchConfig`], with their defaults and the fetch settings' bounds check.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::keys::KeyAlgorithm;

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
fn default_max_claim_bytes() -> usize {
    4096
}
fn default_max_claim_items() -> usize {
    256
}
fn default_cache_capacity() -> usize {
    10_000
}

/// One trusted token issuer. Exactly one key source must be set: `jwks_file`, `jwks` or
/// `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value this issuer puts in its tokens.
    pub issuer: String,
    /// A JWKS file with the issuer's public signing keys; every key must have a `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The JWKS inline: a `{"keys": [...]}` object (a TOML table works) or a string holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// An HTTPS URL serving the JWKS, fetched at start-up and refreshed as `jwks_fetch` says.
    /// Needs [`Verifier::load`](crate::Verifier::load) (async).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Fetch limits and refresh timing for `jwks_url`.
    #[serde(default)]
    pub jwks_fetch: JwksFetchConfig,
    /// Allowed `alg` values: a subset of `ES256`, `RS256`, `EdDSA`. `none` and `HS*` are refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding roles (an array of strings or one string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The claim holding the tenant (a string).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The protected resources (canonical URIs) this issuer may issue tokens for; a token of this
    /// issuer is refused (`token_wrong_audience`) for any other resource. Empty: any resource.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims every token of this issuer must carry (for example `jti`, so tokens can be revoked
    /// one by one).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Require the RFC 9068 header `typ: at+jwt` (or `application/at+jwt`, any case), so ID
    /// tokens and other JWTs of the same issuer are not accepted as access tokens.
    #[serde(default)]
    pub require_typ_at_jwt: bool,
}

impl IssuerConfig {
    /// An issuer with keys from a JWKS file and the default algorithms and claim names.
    pub fn new(issuer: impl Into<String>, jwks_file: impl Into<PathBuf>) -> Self {
        Self {
            jwks_file: Some(jwks_file.into()),
            ..Self::without_keys(issuer)
        }
    }

    /// An issuer whose keys are fetched from `jwks_url` (see [`Verifier::load`](crate::Verifier::load)).
    pub fn with_jwks_url(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: Some(jwks_url.into()),
            ..Self::without_keys(issuer)
        }
    }

    /// An issuer with an inline JWKS document.
    pub fn with_inline_jwks(issuer: impl Into<String>, jwks: Value) -> Self {
        Self {
            jwks: Some(jwks),
            ..Self::without_keys(issuer)
        }
    }

    fn without_keys(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_file: None,
            jwks: None,
            jwks_url: None,
            jwks_fetch: JwksFetchConfig::default(),
            algorithms: default_algorithms(),
            roles_claim: default_roles_claim(),
            tenant_claim: default_tenant_claim(),
            audiences: Vec::new(),
            required_claims: Vec::new(),
            require_typ_at_jwt: false,
        }
    }
}

/// Configuration of a [`Verifier`](crate::Verifier).
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
    /// Longest string anywhere in the claims (values and member names), in bytes.
    #[serde(default = "default_max_claim_bytes")]
    pub max_claim_bytes: usize,
    /// Most items in any claim array, and most members in any claim object.
    #[serde(default = "default_max_claim_items")]
    pub max_claim_items: usize,
    /// Entries in the verified-token cache; 0 turns the cache off.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
}

impl VerifierConfig {
    /// A configuration with the default leeway (30 s), maximum lifetime (24 h), claim limits
    /// (4 KiB strings, 256 items) and cache (10,000 entries).
    pub fn new(issuers: Vec<IssuerConfig>) -> Self {
        Self {
            issuers,
            leeway_secs: default_leeway_secs(),
            max_lifetime_secs: default_max_lifetime_secs(),
            max_claim_bytes: default_max_claim_bytes(),
            max_claim_items: default_max_claim_items(),
            cache_capacity: default_cache_capacity(),
        }
    }
}

fn default_timeout_secs() -> u64 {
    5
}
fn default_max_bytes() -> usize {
    256 * 1024
}
fn default_min_refresh_secs() -> u64 {
    60
}
fn default_max_refresh_secs() -> u64 {
    3600
}
fn default_max_staleness_secs() -> u64 {
    86_400
}
fn default_unknown_kid_min_interval_secs() -> u64 {
    30
}

/// How an issuer's `jwks_url` is fetched and refreshed. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksFetchConfig {
    /// Accept an `http://` URL. Only for tests and local development: keys fetched without TLS
    /// can be replaced by anyone on the path.
    #[serde(default)]
    pub allow_http: bool,
    /// Whole-request deadline for one fetch (connect, headers and body).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Largest JWKS document accepted.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Shortest time between background refreshes, whatever `Cache-Control` says; also the retry
    /// interval after a failed fetch.
    #[serde(default = "default_min_refresh_secs")]
    pub min_refresh_secs: u64,
    /// Longest time between background refreshes; used when the response has no `max-age`.
    #[serde(default = "default_max_refresh_secs")]
    pub max_refresh_secs: u64,
    /// How long the last good keys keep being used while the endpoint fails; after that every
    /// token of the issuer is refused (`token_unknown_key`) until a fetch succeeds.
    #[serde(default = "default_max_staleness_secs")]
    pub max_staleness_secs: u64,
    /// Shortest time between two fetches caused by tokens with an unknown `kid`, so a flood of
    /// random `kid`s cannot hammer the identity provider.
    #[serde(default = "default_unknown_kid_min_interval_secs")]
    pub unknown_kid_min_interval_secs: u64,
}

impl Default for JwksFetchConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            timeout_secs: default_timeout_secs(),
            max_bytes: default_max_bytes(),
            min_refresh_secs: default_min_refresh_secs(),
            max_refresh_secs: default_max_refresh_secs(),
            max_staleness_secs: default_max_staleness_secs(),
            unknown_kid_min_interval_secs: default_unknown_kid_min_interval_secs(),
        }
    }
}

impl JwksFetchConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |field, problem| Err(Error::InvalidConfig { field, problem });
        if self.timeout_secs == 0 {
            return bad("jwks_fetch.timeout_secs", "must be at least 1");
        }
        if self.max_bytes < 64 {
            return bad("jwks_fetch.max_bytes", "must be at least 64");
        }
        if self.min_refresh_secs == 0 {
            return bad("jwks_fetch.min_refresh_secs", "must be at least 1");
        }
        if self.max_refresh_secs < self.min_refresh_secs {
            return bad(
                "jwks_fetch.max_refresh_secs",
                "must not be below min_refresh_secs",
            );
        }
        if self.max_staleness_secs == 0 {
            return bad("jwks_fetch.max_staleness_secs", "must be at least 1");
        }
        if self.unknown_kid_min_interval_secs == 0 {
            return bad(
                "jwks_fetch.unknown_kid_min_interval_secs",
                "must be at least 1",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_config_bounds_are_checked() {
        assert!(JwksFetchConfig::default().validate().is_ok());
        let cases: Vec<fn(&mut JwksFetchConfig)> = vec![
            |c| c.timeout_secs = 0,
            |c| c.max_bytes = 1,
            |c| c.min_refresh_secs = 0,
            |c| c.max_refresh_secs = 1,
            |c| c.max_staleness_secs = 0,
            |c| c.unknown_kid_min_interval_secs = 0,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut c = JwksFetchConfig::default();
            change(&mut c);
            assert!(c.validate().is_err(), "case {i}");
        }
    }
}
