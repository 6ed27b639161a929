//! JWT bearer-token verification and minting for the MCP authorization gateway (josekit, JWKS).
//!
//! [`Verifier`] checks a compact JWS access token against pinned issuers and their keys and
//! turns it into an [`authz_types::Principal`]; every refusal is a [`TokenError`] with a stable
//! [`authz_types::ReasonCode`]. [`Signer`] mints tokens (for tests, the demo issuer and token
//! exchange), and [`generate_key_pair`] makes the keys.
//!
//! Verification fails closed:
//!
//! - only asymmetric algorithms (`ES256`, `RS256`, `EdDSA`) from the issuer's allow-list; `none`
//!   and `HS*` are refused before a key is looked up, so RS/HS key confusion is impossible;
//! - keys come only from configuration, by `kid` (at most [`MAX_KID_LEN`] characters of a safe
//!   set); `jku`, `x5u`, `x5c` and `jwk` headers are never read, and any `crit` header is refused;
//! - the header and claims are parsed strictly (duplicate keys are refused), and the signature is
//!   checked over exactly those bytes, so the claims we read are exactly the signed ones;
//! - `iss` must be a configured issuer, `sub` and `exp` are required, `nbf`/`iat` are honoured
//!   with a leeway, the lifetime is capped, `aud` must name the protected resource, claims are
//!   size-limited; per issuer, `typ: at+jwt`, required claims and the resources it may issue for
//!   can be enforced.
//!
//! Keys per issuer come from a JWKS file, an inline JWKS, or a JWKS URL ([`Verifier::load`]):
//! fetched with time and size limits, cached by `Cache-Control`, refreshed in the background,
//! re-fetched at a bounded rate for unknown `kid`s ([`Verifier::verify_refreshing`]), and failed
//! closed once older than the configured staleness.
//!
//! Verified tokens are cached (bounded, keyed by SHA-256, never past the token's own window);
//! a hit skips the signature check (`benches/verify.rs`) but still checks the [`RevocationList`], which follows a
//! [`RevocationStore`] (SQLite or Postgres) within a second. [`Signer::exchange`] implements the
//! decision half of RFC 8693 token exchange.
//!
//! ```
//! use authz_token::{
//!     IssuerConfig, KeyAlgorithm, MintRequest, Signer, Verifier, VerifierConfig, generate_key_pair,
//! };
//!
//! let keys = generate_key_pair(KeyAlgorithm::Es256, "key-1")?;
//! let dir = tempfile::tempdir()?;
//! let jwks_file = dir.path().join("jwks.json");
//! std::fs::write(&jwks_file, &keys.public_jwks)?;
//!
//! let issuer = "https://idp.example";
//! let verifier = Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(
//!     issuer, jwks_file,
//! )]))?;
//! let signer = Signer::from_private_jwk(&keys.private_jwk)?;
//!
//! let mut request = MintRequest::new(issuer, "alice", "https://gw.example/mcp/tickets");
//! request.scopes = vec!["tickets:read".into()];
//! let token = signer.mint(&request)?;
//!
//! let principal = verifier.verify(&token, "https://gw.example/mcp/tickets")?;
//! assert_eq!(principal.subject, "alice");
//! assert!(principal.has_scope("tickets:read"));
//!
//! let refused = verifier.verify(&token, "https://gw.example/mcp/billing").unwrap_err();
//! assert_eq!(refused.reason(), authz_types::ReasonCode::TokenWrongAudience);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Revocations written to the store reach every verifier following it:
//!
//! ```
//! # use authz_token::*;
//! # let keys = generate_key_pair(KeyAlgorithm::Es256, "key-1")?;
//! # let jwks: serde_json::Value = serde_json::from_str(&keys.public_jwks)?;
//! # let signer = Signer::from_private_jwk(&keys.private_jwk)?;
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}", dir.path().join("revocations.db").display());
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let store = RevocationStore::connect(&url).await?;
//!     let (list, _follower) =
//!         RevocationList::follow(store.clone(), FollowOptions::default()).await?;
//!     let issuer = IssuerConfig::with_inline_jwks("https://idp.example", jwks);
//!     let verifier = Verifier::load(&VerifierConfig::new(vec![issuer]))
//!         .await?
//!         .with_revocations(list.clone());
//!
//!     let mut request = MintRequest::new("https://idp.example", "alice", "https://gw.example/mcp");
//!     request.token_id = Some("t-1".into());
//!     let token = signer.mint(&request)?;
//!     assert!(verifier.verify_refreshing(&token, "https://gw.example/mcp").await.is_ok());
//!
//!     store.revoke_token("t-1", i64::MAX).await?;
//!     list.refresh(&store).await?; // the follower would do this within half a second
//!     let refused = verifier.verify(&token, "https://gw.example/mcp").unwrap_err();
//!     assert_eq!(refused, TokenError::Revoked);
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The modules in layers, lowest first. Each refers (by a `crate::` path, directly or through a
// re-export below) only to modules before it, so the module graph has no cycle; the root's own
// items (`Error`) sit below them all. tests/it/layering.rs checks this order:
// error, json, b64, rules, keys, config, cache, jwks, revocation, verify, mint, exchange, assertion
mod assertion;
mod b64;
mod cache;
mod config;
mod error;
mod exchange;
mod json;
mod jwks;
mod keys;
mod mint;
mod revocation;
mod rules;
mod verify;

use std::path::PathBuf;

pub use assertion::{ASSERTION_TYPE, AssertionRequest};
pub use cache::CacheStats;
pub use config::{IssuerConfig, JwksFetchConfig, VerifierConfig};
pub use error::TokenError;
pub use exchange::{ExchangeError, ExchangePolicy, ExchangeRequest};
pub use jwks::IssuerKeyStatus;
pub use keys::{GeneratedKeys, KeyAlgorithm, generate_key_pair};
pub use mint::{MintRequest, Signer};
pub use revocation::{
    FollowOptions, REVOCATION_NOTIFY_CHANNEL, Revocation, RevocationCounts, RevocationFollower,
    RevocationList, RevocationStore,
};
pub use rules::{MAX_ACTOR_DEPTH, MAX_KID_LEN};
pub use verify::{MAX_TOKEN_BYTES, Verifier};

/// Errors of this crate other than token refusals (which are [`TokenError`]) and exchange
/// refusals (which are [`ExchangeError`]): configuration, key loading and fetching, key
/// generation, minting and the revocation store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or JWKS file could not be read.
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JWKS document (file, inline or fetched) is not valid JSON (or repeats a key).
    #[error("JWKS ({origin}) is not valid JSON")]
    JwksJson {
        origin: String,
        #[source]
        source: authz_types::StrictJsonError,
    },
    /// A JWKS document has the wrong shape.
    #[error("JWKS ({origin}) is invalid: {problem}")]
    InvalidJwks {
        origin: String,
        problem: &'static str,
    },
    /// A public JWKS contains private key material.
    #[error("JWKS ({origin}) contains private key material (kid {kid:?})")]
    PrivateKeyInJwks { origin: String, kid: String },
    /// Two usable keys in one JWKS share a `kid`.
    #[error("JWKS ({origin}) has more than one key with kid {kid:?}")]
    DuplicateKid { origin: String, kid: String },
    /// A JWKS key could not be turned into a verifier.
    #[error("key {kid:?} in JWKS ({origin}) is not a valid verification key")]
    InvalidKey {
        origin: String,
        kid: String,
        #[source]
        source: josekit::JoseError,
    },
    /// A JWKS holds no key usable with the issuer's allowed algorithms.
    #[error("JWKS ({origin}) has no signature key for the allowed algorithms")]
    NoUsableKeys { origin: String },
    /// An issuer names no key source or more than one (`jwks_file`, `jwks`, `jwks_url`).
    #[error("token issuer {issuer:?} must have exactly one of jwks_file, jwks, jwks_url")]
    KeySource { issuer: String },
    /// A `jwks_url` is not an absolute HTTPS URL (HTTP only with `allow_http`).
    #[error("jwks_url of token issuer {issuer:?} is not usable: {problem}")]
    JwksUrl {
        issuer: String,
        problem: &'static str,
    },
    /// An issuer with a `jwks_url` was given to the synchronous constructor.
    #[error("token issuer {issuer:?} fetches its keys; build the verifier with Verifier::load")]
    RemoteKeysNeedLoad { issuer: String },
    /// The HTTP client for JWKS fetching could not be built.
    #[error("cannot build the HTTP client for JWKS fetching")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    /// Fetching a JWKS failed (connection, timeout, redirect elsewhere, reading the body).
    #[error("fetching the JWKS at {url} failed")]
    JwksFetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The JWKS endpoint answered with a status other than 200.
    #[error("the JWKS endpoint {url} answered HTTP {status}")]
    JwksStatus { url: String, status: u16 },
    /// The JWKS document is larger than the configured limit.
    #[error("the JWKS at {url} is larger than {limit} bytes")]
    JwksTooLarge { url: String, limit: usize },
    /// A configuration value is out of range.
    #[error("invalid token configuration: {field} {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: &'static str,
    },
    /// An algorithm name is not one of `ES256`, `RS256`, `EdDSA` (`none` and `HS*` never are).
    #[error("algorithm {algorithm:?} is not supported (allowed: ES256, RS256, EdDSA)")]
    UnsupportedAlgorithm { algorithm: String },
    /// The verifier configuration names no issuer.
    #[error("no token issuer is configured")]
    NoIssuers,
    /// An issuer is configured with an empty `issuer`.
    #[error("a token issuer has an empty issuer value")]
    EmptyIssuer,
    /// The same issuer is configured twice.
    #[error("token issuer {issuer:?} is configured more than once")]
    DuplicateIssuer { issuer: String },
    /// An issuer allows no algorithm.
    #[error("token issuer {issuer:?} allows no algorithm")]
    NoAlgorithms { issuer: String },
    /// A roles or tenant claim name is empty, reserved, or used twice.
    #[error("claim name {claim:?} cannot be used for roles or tenant")]
    ReservedClaimName { claim: String },
    /// A key was expected to have a non-empty `kid`.
    #[error("the key has no kid")]
    MissingKid,
    /// A private JWK is not valid JSON.
    #[error("the private JWK is not valid JSON")]
    PrivateJwkJson {
        #[source]
        source: authz_types::StrictJsonError,
    },
    /// A private JWK is not usable for signing.
    #[error("the private JWK is unusable: {problem}")]
    InvalidPrivateJwk { problem: &'static str },
    /// josekit refused a private JWK.
    #[error("the private JWK is not a valid signing key")]
    PrivateJwk {
        #[source]
        source: josekit::JoseError,
    },
    /// Key generation failed.
    #[error("key generation failed")]
    KeyGeneration {
        #[source]
        source: josekit::JoseError,
    },
    /// A mint request is invalid.
    #[error("invalid mint request: {problem}")]
    InvalidMintRequest { problem: &'static str },
    /// Signing failed.
    #[error("signing the token failed")]
    Sign {
        #[source]
        source: josekit::JoseError,
    },
    /// The revocation store could not be opened: its URL is not one the stores understand, the
    /// database is unreachable, or its migrations failed.
    #[error("cannot open the revocation store")]
    Open {
        #[source]
        source: authz_db::Error,
    },
    /// The revocation store failed.
    #[error("revocation store operation failed")]
    Database {
        #[source]
        source: sqlx::Error,
    },
    /// A revocation request is invalid.
    #[error("invalid revocation: {problem}")]
    InvalidRevocation { problem: &'static str },
}
