//! Bearer-token verification: the [`Verifier`], built from a checked configuration and each
//! issuer's keys; the JWS split, the signature check and the claim checks (whose rules live in
//! `rules`); the verified-token cache and the revocation check.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use authz_types::Principal;
use serde_json::Value;

use crate::cache::{self, CacheStats, TokenCache};
use crate::config::{JwksFetchConfig, VerifierConfig};
use crate::error::TokenError;
use crate::json::{self, Json, Object};
use crate::jwks::{IssuerKeyStatus, IssuerKeys, RemoteKeys, spawn_refresher};
use crate::keys::{KeyAlgorithm, VerifyKey, load_jwks, parse_jwks};
use crate::revocation::RevocationList;
use crate::rules::{
    actors, audience_eq, audience_is_empty, check_audience, check_claim_name, check_claim_sizes,
    check_times, kid_is_safe, non_empty_string, roles, scopes, typ_is_at_jwt,
};
use crate::{Error, b64};

/// Tokens longer than this are refused before any parsing. Real access tokens are a few hundred
/// bytes to a few KiB; the cap bounds the work an unauthenticated caller can cause.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verifies bearer tokens against the configured issuers. Cheap to clone (clones share keys,
/// cache and revocation list); shareable across threads.
///
/// Which call to use:
///
/// - [`Verifier::verify_refreshing`] (async) in a request handler: like
///   [`Verifier::verify_shared`], and when the token names a `kid` an issuer with a `jwks_url`
///   does not know (yet), it triggers one rate-limited JWKS re-fetch and retries once. This is
///   what makes key rotation at the identity provider seamless.
/// - [`Verifier::verify_shared`] (sync): the fast path; a cache hit skips the signature check
///   (`benches/verify.rs` measures both) and returns the cached `Arc<Principal>`.
/// - [`Verifier::verify`] (sync): the same, returning an owned [`Principal`] (a clone on hits).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
    revocations: Option<RevocationList>,
}

struct Inner {
    issuers: HashMap<String, Issuer>,
    leeway: i64,
    max_lifetime: i64,
    max_claim_bytes: usize,
    max_claim_items: usize,
    cache: Option<Arc<TokenCache>>,
}

struct Issuer {
    issuer: String,
    algorithms: Vec<KeyAlgorithm>,
    roles_claim: String,
    tenant_claim: String,
    /// Resource URIs as configured (compared with [`audience_eq`]); empty means any.
    audiences: Vec<String>,
    required_claims: Vec<String>,
    require_typ: bool,
    keys: IssuerKeys,
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
            .field(
                "cache_capacity",
                &self.inner.cache.as_ref().map(|c| c.stats().capacity),
            )
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("kids", &self.keys.kids())
            .field("remote", &matches!(self.keys, IssuerKeys::Remote(_)))
            .field("roles_claim", &self.roles_claim)
            .field("tenant_claim", &self.tenant_claim)
            .field("audiences", &self.audiences)
            .field("required_claims", &self.required_claims)
            .field("require_typ_at_jwt", &self.require_typ)
            .finish()
    }
}

/// An issuer's settings checked and its key source chosen, before any network access.
struct Planned {
    issuer: Issuer,
    remote: Option<(String, JwksFetchConfig)>,
}

/// Validates the whole configuration and loads the keys that need no network.
fn plan(cfg: &VerifierConfig) -> Result<Vec<Planned>, Error> {
    if cfg.issuers.is_empty() {
        return Err(Error::NoIssuers);
    }
    if cfg.max_claim_bytes == 0 {
        return Err(Error::InvalidConfig {
            field: "max_claim_bytes",
            problem: "must be at least 1",
        });
    }
    if cfg.max_claim_items == 0 {
        return Err(Error::InvalidConfig {
            field: "max_claim_items",
            problem: "must be at least 1",
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut planned = Vec::new();
    for ic in &cfg.issuers {
        if ic.issuer.is_empty() {
            return Err(Error::EmptyIssuer);
        }
        if !seen.insert(ic.issuer.as_str()) {
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
        if ic.required_claims.iter().any(String::is_empty) {
            return Err(Error::InvalidConfig {
                field: "required_claims",
                problem: "must not contain an empty name",
            });
        }
        let audiences = ic.audiences.clone();
        if audiences.iter().any(|a| audience_is_empty(a)) {
            return Err(Error::InvalidConfig {
                field: "audiences",
                problem: "must not contain an empty resource",
            });
        }

        let (keys, remote) = match (&ic.jwks_file, &ic.jwks, &ic.jwks_url) {
            (Some(path), None, None) => {
                let keys = load_jwks(path, &algorithms)?;
                if keys.is_empty() {
                    return Err(Error::NoUsableKeys {
                        origin: format!("file {}", path.display()),
                    });
                }
                (IssuerKeys::Fixed(Arc::new(keys).into()), None)
            }
            (None, Some(doc), None) => {
                let keys = inline_jwks(&ic.issuer, doc, &algorithms)?;
                (IssuerKeys::Fixed(Arc::new(keys).into()), None)
            }
            (None, None, Some(url)) => {
                // Checked now so a bad URL is reported by the synchronous constructor too.
                crate::jwks::parse_jwks_url(&ic.issuer, url, ic.jwks_fetch.allow_http)?;
                (
                    IssuerKeys::Fixed(Arc::new(HashMap::new()).into()),
                    Some((url.clone(), ic.jwks_fetch.clone())),
                )
            }
            _ => {
                return Err(Error::KeySource {
                    issuer: ic.issuer.clone(),
                });
            }
        };
        tracing::info!(issuer = %ic.issuer, keys = keys.kids().len(), remote = remote.is_some(), "configured token issuer");
        planned.push(Planned {
            issuer: Issuer {
                issuer: ic.issuer.clone(),
                algorithms,
                roles_claim: ic.roles_claim.clone(),
                tenant_claim: ic.tenant_claim.clone(),
                audiences,
                required_claims: ic.required_claims.clone(),
                require_typ: ic.require_typ_at_jwt,
                keys,
            },
            remote,
        });
    }
    Ok(planned)
}

/// Parses an inline JWKS (an object, or a string holding one).
fn inline_jwks(
    issuer: &str,
    doc: &Value,
    algorithms: &[KeyAlgorithm],
) -> Result<HashMap<String, VerifyKey>, Error> {
    let origin = format!("inline jwks of issuer {issuer}");
    let text = match doc {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let keys = parse_jwks(text.as_bytes(), &origin, algorithms)?;
    if keys.is_empty() {
        return Err(Error::NoUsableKeys { origin });
    }
    Ok(keys)
}

/// What a successful full verification yields: the principal and the window in which the same
/// token would verify again, so the cache never answers differently from a full check.
struct Verified {
    principal: Principal,
    valid_from: i64,
    valid_until: i64,
}

impl Verifier {
    /// Validates `cfg` and loads every issuer's keys from files or inline JWKS. An issuer with a
    /// `jwks_url` needs network access: use [`Verifier::load`] for that
    /// ([`Error::RemoteKeysNeedLoad`] here).
    pub fn from_config(cfg: &VerifierConfig) -> Result<Self, Error> {
        let planned = plan(cfg)?;
        if let Some(p) = planned.iter().find(|p| p.remote.is_some()) {
            return Err(Error::RemoteKeysNeedLoad {
                issuer: p.issuer.issuer.clone(),
            });
        }
        Ok(Self::assemble(cfg, planned, None))
    }

    /// Like [`Verifier::from_config`], and also fetches the keys of issuers with a `jwks_url`
    /// (start-up fails if a first fetch fails) and starts their background refresh on the current
    /// tokio runtime. The refresh tasks end by themselves when the last clone is dropped.
    pub async fn load(cfg: &VerifierConfig) -> Result<Self, Error> {
        let mut planned = plan(cfg)?;
        let cache = Self::new_cache(cfg);
        for p in &mut planned {
            if let Some((url, fetch)) = &p.remote {
                let remote = RemoteKeys::load(
                    &p.issuer.issuer,
                    url,
                    fetch,
                    &p.issuer.algorithms,
                    cache.clone(),
                )
                .await?;
                p.issuer.keys = IssuerKeys::Remote(remote);
            }
        }
        let verifier = Self::assemble(cfg, planned, cache);
        for issuer in verifier.inner.issuers.values() {
            if let IssuerKeys::Remote(remote) = &issuer.keys {
                spawn_refresher(remote);
            }
        }
        Ok(verifier)
    }

    fn new_cache(cfg: &VerifierConfig) -> Option<Arc<TokenCache>> {
        (cfg.cache_capacity > 0).then(|| Arc::new(TokenCache::new(cfg.cache_capacity)))
    }

    fn assemble(
        cfg: &VerifierConfig,
        planned: Vec<Planned>,
        cache: Option<Arc<TokenCache>>,
    ) -> Self {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let cache = cache.or_else(|| Self::new_cache(cfg));
        Self {
            inner: Arc::new(Inner {
                issuers: planned
                    .into_iter()
                    .map(|p| (p.issuer.issuer.clone(), p.issuer))
                    .collect(),
                leeway: to_i64(cfg.leeway_secs),
                max_lifetime: to_i64(cfg.max_lifetime_secs),
                max_claim_bytes: cfg.max_claim_bytes,
                max_claim_items: cfg.max_claim_items,
                cache,
            }),
            revocations: None,
        }
    }

    /// This verifier, also refusing tokens that `list` says are revoked ([`TokenError::Revoked`]),
    /// on every call including cache hits. Keep the list fresh with
    /// [`RevocationList::follow`].
    pub fn with_revocations(mut self, list: RevocationList) -> Self {
        self.revocations = Some(list);
        self
    }

    /// The revocation list this verifier checks, if any.
    pub fn revocations(&self) -> Option<&RevocationList> {
        self.revocations.as_ref()
    }

    /// Verifies `token` for the protected resource `audience` (the route's canonical URI) at the
    /// current time.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Principal, TokenError> {
        self.verify_shared(token, audience)
            .map(Arc::unwrap_or_clone)
    }

    /// Like [`Verifier::verify`], with the current time given as Unix seconds.
    pub fn verify_at(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Principal, TokenError> {
        self.verify_shared_at(token, audience, now)
            .map(Arc::unwrap_or_clone)
    }

    /// Like [`Verifier::verify`], returning the principal shared with the cache (no copy).
    pub fn verify_shared(&self, token: &str, audience: &str) -> Result<Arc<Principal>, TokenError> {
        self.verify_shared_at(token, audience, authz_types::now_unix_ms().div_euclid(1000))
    }

    /// Like [`Verifier::verify_shared`], with the current time given as Unix seconds.
    pub fn verify_shared_at(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Arc<Principal>, TokenError> {
        let result = self.verify_cached(token, audience, now);
        if let Err(err) = &result {
            // The reason is enough to debug; token contents are never logged.
            tracing::debug!(reason = %err.reason(), detail = %err, "bearer token rejected");
        }
        result
    }

    /// Verifies like [`Verifier::verify_shared`]; when that fails with
    /// [`TokenError::UnknownKey`] for an issuer whose keys come from a `jwks_url`, re-fetches the
    /// issuer's JWKS (at most once per `unknown_kid_min_interval_secs`, shared by all concurrent
    /// callers) and verifies once more. Use this one in request handlers.
    pub async fn verify_refreshing(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Arc<Principal>, TokenError> {
        let first = self.verify_shared(token, audience);
        if first != Err(TokenError::UnknownKey) {
            return first;
        }
        let Some((remote, kid)) = self.remote_for(token) else {
            return first;
        };
        if remote.refresh_for_unknown_kid(&kid).await {
            self.verify_shared(token, audience)
        } else {
            first
        }
    }

    /// The remote key source and `kid` a token would be checked with, if its issuer fetches keys
    /// and its `kid` is one we would look up.
    fn remote_for(&self, token: &str) -> Option<(Arc<RemoteKeys>, String)> {
        let segments = split_token(token).ok()?;
        let (header, claims) = segments.parse().ok()?;
        let iss = claims.get("iss")?.as_str()?;
        let issuer = self.inner.issuers.get(iss)?;
        let IssuerKeys::Remote(remote) = &issuer.keys else {
            return None;
        };
        let alg = header.get("alg")?.as_str()?.parse::<KeyAlgorithm>().ok()?;
        if !issuer.algorithms.contains(&alg) {
            return None;
        }
        let kid = header.get("kid")?.as_str()?;
        kid_is_safe(kid).then(|| (Arc::clone(remote), kid.to_owned()))
    }

    /// Key status per issuer (sorted by issuer), for readiness checks and metrics.
    pub fn key_status(&self) -> Vec<IssuerKeyStatus> {
        let mut out: Vec<IssuerKeyStatus> = self
            .inner
            .issuers
            .values()
            .map(|issuer| match &issuer.keys {
                IssuerKeys::Remote(remote) => remote.status(),
                IssuerKeys::Fixed(_) => IssuerKeyStatus {
                    issuer: issuer.issuer.clone(),
                    jwks_url: None,
                    kids: issuer.keys.kids(),
                    age_secs: 0,
                    stale: false,
                    fetches: 0,
                    fetch_failures: 0,
                },
            })
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }

    /// Counters of the verified-token cache (`None` when it is turned off).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// Forgets every cached verdict (the next call of each token verifies it in full).
    /// Reads again the keys of every issuer whose keys come from a file or inline JWKS in `cfg`
    /// (the same issuers this verifier was built with; `jwks_file` paths may have changed), and
    /// replaces them all, or none if any fails to load (the keys in force stay). The token cache
    /// is cleared, so a token signed with a removed key is refused at once. Returns the issuers
    /// reloaded. Issuers with a `jwks_url` refresh by themselves and are left alone.
    pub fn reload_key_files(&self, cfg: &VerifierConfig) -> Result<Vec<String>, Error> {
        let mut fresh = Vec::new();
        for ic in &cfg.issuers {
            let Some(issuer) = self.inner.issuers.get(&ic.issuer) else {
                continue;
            };
            let IssuerKeys::Fixed(slot) = &issuer.keys else {
                continue;
            };
            let keys = match (&ic.jwks_file, &ic.jwks) {
                (Some(path), _) => {
                    let keys = load_jwks(path, &issuer.algorithms)?;
                    if keys.is_empty() {
                        return Err(Error::NoUsableKeys {
                            origin: format!("file {}", path.display()),
                        });
                    }
                    keys
                }
                (None, Some(doc)) => inline_jwks(&ic.issuer, doc, &issuer.algorithms)?,
                (None, None) => continue,
            };
            fresh.push((ic.issuer.clone(), slot, keys));
        }
        let mut reloaded = Vec::new();
        for (name, slot, keys) in fresh {
            tracing::info!(issuer = %name, keys = keys.len(), "reloaded the issuer's keys");
            *slot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
            reloaded.push(name);
        }
        self.clear_cache();
        Ok(reloaded)
    }

    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
    }

    fn check_revoked(&self, principal: &Principal) -> Result<(), TokenError> {
        match &self.revocations {
            Some(list) if list.is_revoked(principal) => Err(TokenError::Revoked),
            _ => Ok(()),
        }
    }

    fn verify_cached(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Arc<Principal>, TokenError> {
        // Checked before anything else, so an enormous header costs nothing but this comparison.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("token is too large"));
        }
        let Some(cache) = &self.inner.cache else {
            let principal = Arc::new(self.verify_uncached(token, audience, now)?.principal);
            self.check_revoked(&principal)?;
            return Ok(principal);
        };
        let Some(lookup) = cache::lookup(audience, token) else {
            // No `.` at all: the full check refuses it; it is never cached.
            let principal = Arc::new(self.verify_uncached(token, audience, now)?.principal);
            self.check_revoked(&principal)?;
            return Ok(principal);
        };
        if let Some(principal) = cache.get(&lookup, now) {
            self.check_revoked(&principal)?;
            return Ok(principal);
        }
        let verified = self.verify_uncached(token, audience, now)?;
        let principal = Arc::new(verified.principal);
        // A revoked token is refused and, like every failure, not cached.
        self.check_revoked(&principal)?;
        cache.insert(
            &lookup,
            Arc::clone(&principal),
            verified.valid_from,
            verified.valid_until,
            now,
        );
        Ok(principal)
    }

    fn verify_uncached(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<Verified, TokenError> {
        let segments = split_token(token)?;
        let (header, claims) = segments.parse()?;

        // The header decides which key verifies; refuse what can never be verified first.
        let alg = match header.get("alg") {
            Some(Json::Str(alg)) => alg.as_ref(),
            Some(_) => return Err(TokenError::Malformed("alg is not a string")),
            None => return Err(TokenError::Malformed("alg is missing")),
        };
        // `none`, `HS*` and anything else outside the asymmetric set end here, before a key is
        // looked up: this is what stops RS256/HS256 key confusion.
        let Ok(alg) = alg.parse::<KeyAlgorithm>() else {
            return Err(TokenError::AlgorithmNotAllowed);
        };
        // We implement no critical extension, so any `crit` means we cannot honour the token.
        if header.contains_key("crit") {
            return Err(TokenError::Malformed("crit header is not supported"));
        }
        // `jku`, `x5u`, `x5c` and `jwk` are never read: keys come only from configuration.

        // The unverified `iss` only selects the key set; the signature is checked against it.
        let issuer = match claims.get("iss") {
            Some(Json::Str(iss)) => self
                .inner
                .issuers
                .get(iss.as_ref())
                .ok_or(TokenError::WrongIssuer)?,
            Some(_) => return Err(TokenError::InvalidClaims("iss is not a string")),
            None => return Err(TokenError::InvalidClaims("iss is missing")),
        };
        if !issuer.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let kid = match header.get("kid") {
            Some(Json::Str(kid)) if kid_is_safe(kid) => kid.as_ref(),
            _ => return Err(TokenError::UnknownKey),
        };
        // The signature is checked over exactly the bytes parsed above, so the header and claims
        // are now authenticated.
        issuer.keys.verify(
            kid,
            alg,
            segments.signing_input.as_bytes(),
            &segments.signature,
        )?;

        if issuer.require_typ && !typ_is_at_jwt(header.get("typ")) {
            return Err(TokenError::InvalidClaims("typ is not at+jwt"));
        }
        check_claims(&self.inner, issuer, &claims, audience, now)
    }
}

/// The three segments of a compact JWS, base64url-decoded.
struct Segments<'t> {
    header: Vec<u8>,
    payload: Vec<u8>,
    /// `header.payload` exactly as received: what the signature covers.
    signing_input: &'t str,
    signature: Vec<u8>,
}

impl Segments<'_> {
    /// The header and the claims: JSON objects without duplicate keys.
    fn parse(&self) -> Result<(Object<'_>, Object<'_>), TokenError> {
        let header = json::parse_object(&self.header).ok_or(TokenError::Malformed(
            "header is not a base64url JSON object",
        ))?;
        let claims = json::parse_object(&self.payload).ok_or(TokenError::Malformed(
            "payload is not a base64url JSON object",
        ))?;
        Ok((header, claims))
    }
}

/// Splits and strictly decodes a compact JWS: exactly three canonical base64url segments.
fn split_token(token: &str) -> Result<Segments<'_>, TokenError> {
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
    Ok(Segments {
        header: b64::decode(h).ok_or(TokenError::Malformed(
            "header is not a base64url JSON object",
        ))?,
        payload: b64::decode(p).ok_or(TokenError::Malformed(
            "payload is not a base64url JSON object",
        ))?,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: b64::decode(s).ok_or(TokenError::Malformed("signature is not base64url"))?,
    })
}

/// The claims a principal carries besides those it holds in structured form, for policy
/// conditions (`principal.claims`).
fn other_claims(
    claims: &Object<'_>,
    issuer: &Issuer,
) -> serde_json::Map<String, serde_json::Value> {
    const STRUCTURED: &[&str] = &[
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "azp",
        "client_id",
        "scope",
        "scp",
        "act",
        "cnf",
    ];
    claims
        .iter()
        .filter(|(name, _)| {
            !STRUCTURED.contains(name)
                && *name != issuer.roles_claim
                && *name != issuer.tenant_claim
        })
        .map(|(name, value)| (name.to_owned(), value.clone().into_value()))
        .collect()
}

fn check_claims(
    inner: &Inner,
    issuer: &Issuer,
    claims: &Object<'_>,
    audience: &str,
    now: i64,
) -> Result<Verified, TokenError> {
    check_claim_sizes(claims, inner.max_claim_bytes, inner.max_claim_items)?;
    if issuer
        .required_claims
        .iter()
        .any(|name| matches!(claims.get(name), None | Some(Json::Null)))
    {
        return Err(TokenError::InvalidClaims("a required claim is missing"));
    }
    let subject = non_empty_string(claims, "sub", "sub is missing or not a non-empty string")?
        .ok_or(TokenError::InvalidClaims(
            "sub is missing or not a non-empty string",
        ))?;

    let times = check_times(claims, now, inner.leeway, inner.max_lifetime)?;

    // The issuer restriction first: a token from an issuer that may not speak for this resource
    // is refused whatever its `aud` says.
    if !issuer.audiences.is_empty() && !issuer.audiences.iter().any(|a| audience_eq(a, audience)) {
        return Err(TokenError::WrongAudience);
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

    Ok(Verified {
        principal: Principal {
            subject,
            issuer: issuer.issuer.clone(),
            tenant,
            client_id,
            actors: actors(claims)?,
            scopes: scopes(claims)?,
            roles: roles(claims, &issuer.roles_claim)?,
            token_id,
            expires_at: times.expires_at,
            issued_at: times.issued_at,
            claims: std::sync::Arc::new(other_claims(claims, issuer)),
        }
        .normalize(),
        valid_from: times.valid_from,
        valid_until: times.valid_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_token_is_strict() {
        let parse = |t: &str| split_token(t).and_then(|s| s.parse().map(|_| ()));
        let h = b64::encode(br#"{"alg":"ES256"}"#);
        let p = b64::encode(br#"{"sub":"a"}"#);
        assert!(parse(&format!("{h}.{p}.")).is_ok());
        let token = format!("{h}.{p}.AAAA");
        let segments = split_token(&token).expect("segments");
        assert_eq!(segments.signing_input, format!("{h}.{p}"));
        assert_eq!(segments.signature, vec![0, 0, 0]);
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
                matches!(parse(&bad), Err(TokenError::Malformed(_))),
                "{bad:.60}"
            );
        }
    }
}
