//! Signing algorithms, key generation and JWKS loading.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};
use serde_json::Value;

use crate::Error;

/// The asymmetric JWS algorithms this crate accepts. Symmetric (`HS*`) algorithms and `none` are
/// deliberately not representable, so a configuration can never enable them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (keys of at least 2048 bits).
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl KeyAlgorithm {
    /// Every supported algorithm, in the default allow-list order.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::Es256,
        KeyAlgorithm::Rs256,
        KeyAlgorithm::EdDsa,
    ];

    /// The JOSE name (`alg` value).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Es256 => "ES256",
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` name exactly (JOSE names are case-sensitive).
    fn parse(s: &str) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JWK `kty` this algorithm needs.
    fn key_type(self) -> &'static str {
        match self {
            KeyAlgorithm::Es256 => "EC",
            KeyAlgorithm::Rs256 => "RSA",
            KeyAlgorithm::EdDsa => "OKP",
        }
    }

    /// Infers the algorithm of a JWK without `alg` from its key type and curve.
    fn infer(jwk: &Jwk) -> Option<KeyAlgorithm> {
        match (jwk.key_type(), jwk.curve()) {
            ("EC", Some("P-256")) => Some(KeyAlgorithm::Es256),
            ("RSA", _) => Some(KeyAlgorithm::Rs256),
            ("OKP", Some("Ed25519")) => Some(KeyAlgorithm::EdDsa),
            _ => None,
        }
    }

    /// The algorithm of `jwk`: its `alg` if present (and supported), else inferred.
    /// `None` means the key cannot be used with any supported algorithm.
    pub(crate) fn of_jwk(jwk: &Jwk) -> Option<KeyAlgorithm> {
        let alg = match jwk.algorithm() {
            Some(name) => KeyAlgorithm::parse(name)?,
            None => KeyAlgorithm::infer(jwk)?,
        };
        (jwk.key_type() == alg.key_type()).then_some(alg)
    }

    pub(crate) fn verifier(self, jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, josekit::JoseError> {
        Ok(match self {
            KeyAlgorithm::Es256 => Box::new(ES256.verifier_from_jwk(jwk)?),
            KeyAlgorithm::Rs256 => Box::new(RS256.verifier_from_jwk(jwk)?),
            KeyAlgorithm::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk)?),
        })
    }

    pub(crate) fn signer(self, jwk: &Jwk) -> Result<Box<dyn JwsSigner>, josekit::JoseError> {
        Ok(match self {
            KeyAlgorithm::Es256 => Box::new(ES256.signer_from_jwk(jwk)?),
            KeyAlgorithm::Rs256 => Box::new(RS256.signer_from_jwk(jwk)?),
            KeyAlgorithm::EdDsa => Box::new(EdDSA.signer_from_jwk(jwk)?),
        })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        KeyAlgorithm::parse(s).ok_or_else(|| Error::UnsupportedAlgorithm {
            algorithm: s.to_owned(),
        })
    }
}

/// A freshly generated key pair, serialised as JWK JSON.
#[derive(Clone)]
pub struct GeneratedKeys {
    /// The private key as one JWK object (with `kid`, `alg`, `use`). Keep it secret.
    pub private_jwk: String,
    /// The public key as a JWKS document: `{"keys":[...]}`.
    pub public_jwks: String,
}

impl fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKeys")
            .field("private_jwk", &"[redacted]")
            .field("public_jwks", &self.public_jwks)
            .finish()
    }
}

/// Generates a signing key pair for `alg` (RSA keys are 2048 bits) named `kid`.
pub fn generate_key_pair(alg: KeyAlgorithm, kid: &str) -> Result<GeneratedKeys, Error> {
    if kid.is_empty() {
        return Err(Error::MissingKid);
    }
    let generated = match alg {
        KeyAlgorithm::Es256 => Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256),
        KeyAlgorithm::Rs256 => Jwk::generate_rsa_key(2048),
        KeyAlgorithm::EdDsa => Jwk::generate_ed_key(josekit::jwk::alg::ed::EdCurve::Ed25519),
    };
    let mut private = generated.map_err(|source| Error::KeyGeneration { source })?;
    // `to_public_key` keeps only `use` and the key parameters, so the naming is set on both.
    let mut public = private
        .to_public_key()
        .map_err(|source| Error::KeyGeneration { source })?;
    for jwk in [&mut private, &mut public] {
        jwk.set_key_id(kid);
        jwk.set_algorithm(alg.as_str());
        jwk.set_key_use("sig");
    }
    let jwks = serde_json::json!({ "keys": [Value::Object(public.into())] });
    Ok(GeneratedKeys {
        private_jwk: private.to_string(),
        public_jwks: jwks.to_string(),
    })
}

/// One verification key: its algorithm and the josekit verifier built once at load time.
pub(crate) struct VerifyKey {
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) verifier: Box<dyn JwsVerifier>,
}

/// Private-key members of RSA, EC and OKP JWKs; a public JWKS must contain none of them.
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// Loads the JWKS file at `path` (see [`parse_jwks`]).
pub(crate) fn load_jwks(
    path: &Path,
    allowed: &[KeyAlgorithm],
) -> Result<HashMap<String, VerifyKey>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_jwks(&bytes, &format!("file {}", path.display()), allowed)
}

/// Parses a JWKS document into a `kid → verifier` map, keeping only signature keys whose
/// algorithm is in `allowed`. `origin` names where the document came from, for errors and logs.
///
/// Keys meant for other uses or algorithms are skipped (identity providers publish encryption keys
/// in the same set); anything that looks like a mistake (no `kid`, private material, a repeated
/// `kid`, a broken key) is an error so it is noticed at start-up (or at a refresh, which then keeps
/// the previous keys) rather than at the first request.
pub(crate) fn parse_jwks(
    bytes: &[u8],
    origin: &str,
    allowed: &[KeyAlgorithm],
) -> Result<HashMap<String, VerifyKey>, Error> {
    let invalid = |problem: &'static str| Error::InvalidJwks {
        origin: origin.to_owned(),
        problem,
    };
    let doc = authz_types::parse_strict(bytes).map_err(|source| Error::JwksJson {
        origin: origin.to_owned(),
        source,
    })?;
    let Some(Value::Array(entries)) = doc.get("keys") else {
        return Err(invalid("the document has no `keys` array"));
    };

    let mut keys = HashMap::new();
    for entry in entries {
        let Value::Object(map) = entry else {
            return Err(invalid("a `keys` entry is not an object"));
        };
        let kid = match map.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            _ => return Err(invalid("a key has no `kid`")),
        };
        if !crate::rules::kid_is_safe(&kid) {
            // Tokens naming such a kid are refused before any lookup, so the key could never be
            // used; say so instead of failing mysteriously later.
            tracing::warn!(
                origin,
                "skipping JWK whose kid is longer than 256 characters or has characters outside A-Z a-z 0-9 - _ . ~ + / = :"
            );
            continue;
        }
        if PRIVATE_MEMBERS.iter().any(|m| map.contains_key(*m)) {
            return Err(Error::PrivateKeyInJwks {
                origin: origin.to_owned(),
                kid,
            });
        }
        let jwk = Jwk::from_map(map.clone()).map_err(|source| Error::InvalidKey {
            origin: origin.to_owned(),
            kid: kid.clone(),
            source,
        })?;
        if jwk.key_use().is_some_and(|u| u != "sig") {
            tracing::debug!(origin, kid, "skipping JWK not meant for signatures");
            continue;
        }
        let Some(algorithm) = KeyAlgorithm::of_jwk(&jwk) else {
            tracing::warn!(
                origin,
                kid,
                "skipping JWK with an unsupported key type or algorithm"
            );
            continue;
        };
        if !allowed.contains(&algorithm) {
            tracing::debug!(origin, kid, alg = %algorithm, "skipping JWK whose algorithm is not allowed for this issuer");
            continue;
        }
        let verifier = algorithm
            .verifier(&jwk)
            .map_err(|source| Error::InvalidKey {
                origin: origin.to_owned(),
                kid: kid.clone(),
                source,
            })?;
        if keys.contains_key(&kid) {
            return Err(Error::DuplicateKid {
                origin: origin.to_owned(),
                kid,
            });
        }
        keys.insert(
            kid,
            VerifyKey {
                algorithm,
                verifier,
            },
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_refuse_the_rest() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.to_string().parse::<KeyAlgorithm>().ok(), Some(alg));
        }
        for bad in [
            "none", "None", "HS256", "HS512", "es256", "PS256", "ES384", "",
        ] {
            assert!(bad.parse::<KeyAlgorithm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_keys_carry_kid_alg_use_and_public_part_has_no_secret() {
        for alg in KeyAlgorithm::ALL {
            let keys = generate_key_pair(alg, "k1").expect("generate");
            let private: Value = serde_json::from_str(&keys.private_jwk).expect("json");
            assert_eq!(private["kid"], "k1");
            assert_eq!(private["alg"], alg.as_str());
            assert_eq!(private["use"], "sig");
            assert!(private.get("d").is_some());
            let public: Value = serde_json::from_str(&keys.public_jwks).expect("json");
            let key = &public["keys"][0];
            assert_eq!(key["kid"], "k1");
            assert_eq!(key["alg"], alg.as_str());
            assert!(key.get("d").is_none());
            assert!(!format!("{keys:?}").contains(private["d"].as_str().expect("d")));
        }
    }

    #[test]
    fn empty_kid_is_refused() {
        assert!(matches!(
            generate_key_pair(KeyAlgorithm::Es256, ""),
            Err(Error::MissingKid)
        ));
    }
}
