//! Token minting: a signer built from a private JWK and the request describing one token.

use std::fmt;
use std::path::Path;

use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, JwsSigner};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value, json};

use crate::Error;
use crate::keys::KeyAlgorithm;
use crate::rules::check_claim_name;

/// What to put in a minted token. Build with [`MintRequest::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `aud`: emitted as a string when there is one entry, else as an array.
    pub audience: Vec<String>,
    /// Emitted as the space-delimited `scope` claim (omitted when empty).
    pub scopes: Vec<String>,
    /// Emitted as an array under `roles_claim` (omitted when empty).
    pub roles: Vec<String>,
    /// The claim name for roles; default `roles`.
    pub roles_claim: String,
    /// Emitted under `tenant_claim` when set.
    pub tenant: Option<String>,
    /// The claim name for the tenant; default `tenant`.
    pub tenant_claim: String,
    /// Emitted as both `client_id` (RFC 9068) and `azp` (OpenID Connect).
    pub client_id: Option<String>,
    /// Emitted as `{"act":{"sub":actor}}` (RFC 8693 delegation).
    pub actor: Option<String>,
    /// Lifetime in seconds: `exp = iat + ttl_secs`. Must be positive.
    pub ttl_secs: i64,
    /// `iat` as Unix seconds; default now. Tests use it to mint expired tokens.
    pub issued_at: Option<i64>,
    /// `nbf` as Unix seconds, if any.
    pub not_before: Option<i64>,
    /// `jti`; default a random UUID v4.
    pub token_id: Option<String>,
    /// More claims (e.g. `projects` for policy conditions); a name the request sets itself
    /// (`iss`, `sub`, `scope`, the roles claim, …) is refused.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl MintRequest {
    /// Default lifetime of a minted token: five minutes, because tokens should be short-lived.
    pub const DEFAULT_TTL_SECS: i64 = 300;

    /// A request for a token for `subject` from `issuer` to the single `audience`, living
    /// [`MintRequest::DEFAULT_TTL_SECS`], with no scopes, roles, tenant, client or actor.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: vec![audience.into()],
            scopes: Vec::new(),
            roles: Vec::new(),
            roles_claim: "roles".to_owned(),
            tenant: None,
            tenant_claim: "tenant".to_owned(),
            client_id: None,
            actor: None,
            ttl_secs: Self::DEFAULT_TTL_SECS,
            issued_at: None,
            not_before: None,
            token_id: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Builds the claims set, refusing requests the verifier would refuse or misread.
    fn claims(&self, now: i64) -> Result<Map<String, Value>, Error> {
        let invalid = |problem: &'static str| Error::InvalidMintRequest { problem };
        if self.issuer.is_empty() {
            return Err(invalid("issuer is empty"));
        }
        if self.subject.is_empty() {
            return Err(invalid("subject is empty"));
        }
        if self.audience.is_empty() || self.audience.iter().any(String::is_empty) {
            return Err(invalid("audience is empty"));
        }
        if self.ttl_secs <= 0 {
            return Err(invalid("ttl_secs is not positive"));
        }
        // A scope with a space would silently become two scopes in the `scope` string.
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(invalid("a scope is empty or contains a space"));
        }
        if self.roles.iter().any(String::is_empty) {
            return Err(invalid("a role is empty"));
        }
        for optional in [&self.tenant, &self.client_id, &self.actor, &self.token_id] {
            if optional.as_deref() == Some("") {
                return Err(invalid("an optional claim is set to an empty string"));
            }
        }
        check_claim_name(&self.roles_claim)?;
        check_claim_name(&self.tenant_claim)?;
        if self.roles_claim == self.tenant_claim {
            return Err(invalid("roles_claim and tenant_claim are the same"));
        }

        let iat = self.issued_at.unwrap_or(now);
        let exp = iat
            .checked_add(self.ttl_secs)
            .ok_or(invalid("iat + ttl_secs overflows"))?;
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(self.subject));
        claims.insert(
            "aud".into(),
            match self.audience.as_slice() {
                [one] => json!(one),
                many => json!(many),
            },
        );
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        if let Some(nbf) = self.not_before {
            claims.insert("nbf".into(), json!(nbf));
        }
        let jti = match &self.token_id {
            Some(id) => id.clone(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        claims.insert("jti".into(), json!(jti));
        if !self.scopes.is_empty() {
            claims.insert("scope".into(), json!(self.scopes.join(" ")));
        }
        if !self.roles.is_empty() {
            claims.insert(self.roles_claim.clone(), json!(self.roles));
        }
        if let Some(tenant) = &self.tenant {
            claims.insert(self.tenant_claim.clone(), json!(tenant));
        }
        if let Some(client_id) = &self.client_id {
            claims.insert("client_id".into(), json!(client_id));
            claims.insert("azp".into(), json!(client_id));
        }
        if let Some(actor) = &self.actor {
            claims.insert("act".into(), json!({ "sub": actor }));
        }
        for (name, value) in &self.extra {
            if claims.contains_key(name) || ["act", "cnf", "nbf", "scp"].contains(&name.as_str()) {
                return Err(invalid(
                    "an extra claim names a claim the request sets itself",
                ));
            }
            claims.insert(name.clone(), value.clone());
        }
        Ok(claims)
    }
}

/// Signs tokens with one private key. Its `Debug` output shows the key id and algorithm only.
pub struct Signer {
    kid: String,
    algorithm: KeyAlgorithm,
    signer: Box<dyn JwsSigner>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Builds a signer from one private JWK (JSON) with a `kid`; the algorithm is the JWK's `alg`
    /// or is inferred from its key type (P-256 → ES256, RSA → RS256, Ed25519 → EdDSA).
    pub fn from_private_jwk(json: &str) -> Result<Self, Error> {
        // Strict parsing: a key with two `d` members is a broken key, not a choice.
        let map = match authz_types::parse_strict(json.as_bytes()) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(Error::InvalidPrivateJwk {
                    problem: "not a JSON object",
                });
            }
            Err(source) => return Err(Error::PrivateJwkJson { source }),
        };
        let jwk = Jwk::from_map(map).map_err(|source| Error::PrivateJwk { source })?;
        let kid = match jwk.key_id() {
            Some(kid) if !kid.is_empty() => kid.to_owned(),
            _ => return Err(Error::MissingKid),
        };
        if jwk.parameter("d").is_none() {
            return Err(Error::InvalidPrivateJwk {
                problem: "the JWK has no private part",
            });
        }
        let algorithm = KeyAlgorithm::of_jwk(&jwk).ok_or(Error::InvalidPrivateJwk {
            problem: "the JWK's key type or algorithm is not ES256, RS256 or EdDSA",
        })?;
        let signer = algorithm
            .signer(&jwk)
            .map_err(|source| Error::PrivateJwk { source })?;
        Ok(Self {
            kid,
            algorithm,
            signer,
        })
    }

    /// Reads a private JWK from `path` (see [`Signer::from_private_jwk`]).
    pub fn from_private_jwk_file(path: &Path) -> Result<Self, Error> {
        let json = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::from_private_jwk(&json)
    }

    /// The key id written to every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Mints a signed compact JWT (`typ` `at+jwt`, RFC 9068) for `req`.
    pub fn mint(&self, req: &MintRequest) -> Result<String, Error> {
        let now = authz_types::now_unix_ms().div_euclid(1000);
        self.sign_claims(req.claims(now)?)
    }

    /// Signs an already validated claims set as an access token (`typ` `at+jwt`).
    pub(crate) fn sign_claims(&self, claims: Map<String, Value>) -> Result<String, Error> {
        self.sign_claims_typed(claims, "at+jwt")
    }

    /// Signs an already validated claims set with the header `typ` given.
    pub(crate) fn sign_claims_typed(
        &self,
        claims: Map<String, Value>,
        typ: &str,
    ) -> Result<String, Error> {
        let payload = JwtPayload::from_map(claims).map_err(|source| Error::Sign { source })?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(self.kid.clone());
        let token = josekit::jwt::encode_with_signer(&payload, &header, self.signer.as_ref())
            .map_err(|source| Error::Sign { source })?;
        tracing::debug!(kid = %self.kid, alg = %self.algorithm, "minted token");
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_the_request() {
        let mut req = MintRequest::new("iss", "alice", "https://gw/mcp/x");
        req.scopes = vec!["a".into(), "b".into()];
        req.roles = vec!["reader".into()];
        req.roles_claim = "groups".into();
        req.tenant = Some("acme".into());
        req.client_id = Some("agent-app".into());
        req.actor = Some("agent-7".into());
        req.issued_at = Some(1000);
        req.not_before = Some(990);
        req.token_id = Some("t1".into());
        let c = Value::Object(req.claims(5).expect("claims"));
        assert_eq!(
            c,
            json!({
                "iss": "iss", "sub": "alice", "aud": "https://gw/mcp/x", "iat": 1000, "exp": 1300,
                "nbf": 990, "jti": "t1", "scope": "a b", "groups": ["reader"], "tenant": "acme",
                "client_id": "agent-app", "azp": "agent-app", "act": {"sub": "agent-7"}
            })
        );
    }

    #[test]
    fn defaults_use_now_and_a_fresh_jti() {
        let req = MintRequest::new("iss", "alice", "aud");
        let a = req.claims(50).expect("claims");
        let b = req.claims(50).expect("claims");
        assert_eq!(a["iat"], json!(50));
        assert_eq!(a["exp"], json!(350));
        assert_ne!(a["jti"], b["jti"]);
        assert!(!a.contains_key("scope") && !a.contains_key("roles") && !a.contains_key("act"));
    }

    #[test]
    fn bad_requests_are_refused() {
        let base = MintRequest::new("iss", "alice", "aud");
        let cases: Vec<fn(&mut MintRequest)> = vec![
            |r| r.subject.clear(),
            |r| r.issuer.clear(),
            |r| r.audience.clear(),
            |r| r.ttl_secs = 0,
            |r| r.scopes = vec!["a b".into()],
            |r| r.roles_claim = "sub".into(),
            |r| r.tenant_claim = "roles".into(),
            |r| r.tenant = Some(String::new()),
            |r| r.issued_at = Some(i64::MAX),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut req = base.clone();
            change(&mut req);
            assert!(req.claims(0).is_err(), "case {i}");
        }
    }

    #[test]
    fn signer_refuses_public_or_kidless_keys_and_hides_key_material() {
        let keys = crate::generate_key_pair(KeyAlgorithm::Es256, "k").expect("keys");
        let signer = Signer::from_private_jwk(&keys.private_jwk).expect("signer");
        assert_eq!(signer.kid(), "k");
        assert_eq!(signer.algorithm(), KeyAlgorithm::Es256);
        let private: Value = serde_json::from_str(&keys.private_jwk).expect("json");
        let d = private["d"].as_str().expect("d");
        assert!(!format!("{signer:?}").contains(d));

        let public: Value = serde_json::from_str(&keys.public_jwks).expect("json");
        let public_key = public["keys"][0].to_string();
        assert!(Signer::from_private_jwk(&public_key).is_err());
        let mut no_kid = private.clone();
        no_kid.as_object_mut().map(|m| m.remove("kid"));
        assert!(matches!(
            Signer::from_private_jwk(&no_kid.to_string()),
            Err(Error::MissingKid)
        ));
        assert!(
            Signer::from_private_jwk("{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"h\",\"d\":\"x\"}")
                .is_err()
        );
    }
}
