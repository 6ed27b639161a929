//! Verifier configuration: serde defaults, refused algorithms and broken key files.

use authz_token::{Error, IssuerConfig, KeyAlgorithm, Verifier, VerifierConfig, generate_key_pair};
use serde_json::json;
use tempfile::TempDir;

use crate::support::{ISSUER, write};

fn jwks_dir(alg: KeyAlgorithm) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = generate_key_pair(alg, "k1").expect("keys");
    let path = write(&dir, "jwks.json", &keys.public_jwks);
    (dir, path)
}

fn from_json(value: serde_json::Value) -> Result<Verifier, Error> {
    let cfg: VerifierConfig = serde_json::from_value(value).expect("config shape");
    Verifier::from_config(&cfg)
}

#[test]
fn serde_defaults_and_unknown_fields() {
    let cfg: VerifierConfig = serde_json::from_value(json!({
        "issuers": [{"issuer": ISSUER, "jwks_file": "/x/jwks.json"}]
    }))
    .expect("config");
    assert_eq!(cfg.leeway_secs, 30);
    assert_eq!(cfg.max_lifetime_secs, 86_400);
    assert_eq!(cfg.issuers[0], IssuerConfig::new(ISSUER, "/x/jwks.json"));
    assert_eq!(cfg.issuers[0].algorithms, vec!["ES256", "RS256", "EdDSA"]);
    assert_eq!(cfg.issuers[0].roles_claim, "roles");
    assert_eq!(cfg.issuers[0].tenant_claim, "tenant");

    for bad in [
        json!({"issuers": [], "leeway": 1}),
        json!({"issuers": [{"issuer": ISSUER, "jwks_uri": "https://x"}]}),
        json!({"issuers": [{"issuer": ISSUER, "jwks_url": "https://x", "jwks_fetch": {"ttl": 1}}]}),
    ] {
        assert!(serde_json::from_value::<VerifierConfig>(bad).is_err());
    }
}

#[test]
fn none_and_hmac_algorithms_are_refused_in_config() {
    let (_dir, path) = jwks_dir(KeyAlgorithm::Es256);
    for algorithms in [
        json!(["none"]),
        json!(["HS256"]),
        json!(["ES256", "HS256"]),
        json!(["es256"]),
    ] {
        let err = from_json(json!({
            "issuers": [{"issuer": ISSUER, "jwks_file": path, "algorithms": algorithms}]
        }))
        .expect_err("refused");
        assert!(
            matches!(err, Error::UnsupportedAlgorithm { .. }),
            "{algorithms}: {err}"
        );
    }
    let err =
        from_json(json!({"issuers": [{"issuer": ISSUER, "jwks_file": path, "algorithms": []}]}))
            .expect_err("refused");
    assert!(matches!(err, Error::NoAlgorithms { .. }), "{err}");
}

#[test]
fn issuer_list_mistakes_are_refused() {
    let (_dir, path) = jwks_dir(KeyAlgorithm::Es256);
    assert!(matches!(
        Verifier::from_config(&VerifierConfig::new(vec![])),
        Err(Error::NoIssuers)
    ));
    assert!(matches!(
        Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new("", &path)])),
        Err(Error::EmptyIssuer)
    ));
    assert!(matches!(
        Verifier::from_config(&VerifierConfig::new(vec![
            IssuerConfig::new(ISSUER, &path),
            IssuerConfig::new(ISSUER, &path),
        ])),
        Err(Error::DuplicateIssuer { .. })
    ));
    for (roles, tenant) in [
        ("sub", "tenant"),
        ("roles", "scope"),
        ("", "tenant"),
        ("x", "x"),
    ] {
        let mut ic = IssuerConfig::new(ISSUER, &path);
        ic.roles_claim = roles.into();
        ic.tenant_claim = tenant.into();
        assert!(
            matches!(
                Verifier::from_config(&VerifierConfig::new(vec![ic])),
                Err(Error::ReservedClaimName { .. })
            ),
            "{roles}/{tenant}"
        );
    }
}

#[test]
fn key_file_mistakes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = generate_key_pair(KeyAlgorithm::Es256, "k1").expect("keys");
    let private: serde_json::Value = serde_json::from_str(&keys.private_jwk).expect("json");
    let public: serde_json::Value = serde_json::from_str(&keys.public_jwks).expect("json");
    let mut no_kid = public["keys"][0].clone();
    no_kid.as_object_mut().map(|m| m.remove("kid"));
    let public_text = public["keys"][0].to_string();

    let load = |contents: &str| {
        let path = write(&dir, "jwks.json", contents);
        Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(ISSUER, path)]))
    };
    // Each row: what is wrong, the file contents, and the error expected for it.
    type Case = (&'static str, String, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        ("not JSON", "{".into(), |e| {
            matches!(e, Error::JwksJson { .. })
        }),
        (
            "duplicate JSON key",
            format!("{{\"keys\":[],\"keys\":[{public_text}]}}"),
            |e| matches!(e, Error::JwksJson { .. }),
        ),
        ("no keys array", "{}".into(), |e| {
            matches!(e, Error::InvalidJwks { .. })
        }),
        (
            "key without kid",
            json!({"keys": [no_kid]}).to_string(),
            |e| matches!(e, Error::InvalidJwks { .. }),
        ),
        (
            "private key in JWKS",
            json!({"keys": [private]}).to_string(),
            |e| matches!(e, Error::PrivateKeyInJwks { .. }),
        ),
        (
            "duplicate kid",
            json!({"keys": [public["keys"][0], public["keys"][0]]}).to_string(),
            |e| matches!(e, Error::DuplicateKid { .. }),
        ),
        (
            "only a symmetric key",
            json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).to_string(),
            |e| matches!(e, Error::NoUsableKeys { .. }),
        ),
        (
            "only an encryption key",
            json!({"keys": [{"kty": "RSA", "kid": "e", "use": "enc", "n": "AQAB", "e": "AQAB"}]})
                .to_string(),
            |e| matches!(e, Error::NoUsableKeys { .. }),
        ),
        (
            "broken EC key",
            json!({"keys": [{"kty": "EC", "kid": "b", "crv": "P-256", "x": "AA", "y": "AA"}]})
                .to_string(),
            |e| matches!(e, Error::InvalidKey { .. }),
        ),
    ];
    for (name, contents, expected) in cases {
        let err = load(&contents).expect_err(name);
        assert!(expected(&err), "{name}: {err}");
    }
    assert!(matches!(
        Verifier::from_config(&VerifierConfig::new(vec![IssuerConfig::new(
            ISSUER,
            dir.path().join("missing.json")
        )])),
        Err(Error::ReadFile { .. })
    ));
}

#[test]
fn keys_outside_the_allow_list_are_skipped_not_trusted() {
    // One JWKS with an ES256 and an RS256 key; the issuer allows RS256 only.
    let dir = tempfile::tempdir().expect("tempdir");
    let es = generate_key_pair(KeyAlgorithm::Es256, "es").expect("keys");
    let rs = generate_key_pair(KeyAlgorithm::Rs256, "rs").expect("keys");
    let jwks =
        crate::support::merge_jwks([es.public_jwks.as_str(), rs.public_jwks.as_str()].into_iter());
    let path = write(&dir, "jwks.json", &jwks);
    let mut ic = IssuerConfig::new(ISSUER, path);
    ic.algorithms = vec!["RS256".into()];
    let verifier = Verifier::from_config(&VerifierConfig::new(vec![ic])).expect("verifier");
    let debug = format!("{verifier:?}");
    assert!(
        debug.contains("\"rs\"") && !debug.contains("\"es\""),
        "{debug}"
    );
}

#[test]
fn new_fields_have_defaults_and_key_sources_are_exclusive() {
    let cfg: VerifierConfig = serde_json::from_value(json!({
        "issuers": [{"issuer": ISSUER, "jwks_url": "https://idp.example/jwks"}]
    }))
    .expect("config");
    assert_eq!(cfg.max_claim_bytes, 4096);
    assert_eq!(cfg.max_claim_items, 256);
    assert_eq!(cfg.cache_capacity, 10_000);
    let ic = &cfg.issuers[0];
    assert_eq!(
        ic,
        &IssuerConfig::with_jwks_url(ISSUER, "https://idp.example/jwks")
    );
    assert_eq!(ic.jwks_fetch, authz_token::JwksFetchConfig::default());
    assert!(!ic.jwks_fetch.allow_http && !ic.require_typ_at_jwt);
    assert!(ic.audiences.is_empty() && ic.required_claims.is_empty());

    let (_dir, path) = jwks_dir(KeyAlgorithm::Es256);
    let inline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    for issuer in [
        json!({"issuer": ISSUER}),
        json!({"issuer": ISSUER, "jwks_file": path, "jwks": inline}),
        json!({"issuer": ISSUER, "jwks_file": path, "jwks_url": "https://idp.example/jwks"}),
    ] {
        let err = from_json(json!({ "issuers": [issuer] })).expect_err("refused");
        assert!(matches!(err, Error::KeySource { .. }), "{err}");
    }
    assert!(from_json(json!({"issuers": [{"issuer": ISSUER, "jwks": inline}]})).is_ok());
    let err = from_json(json!({"issuers": [{"issuer": ISSUER, "jwks": {"keys": []}}]}))
        .expect_err("no keys");
    assert!(matches!(err, Error::NoUsableKeys { .. }), "{err}");
    for (field, value) in [("max_claim_bytes", json!(0)), ("max_claim_items", json!(0))] {
        let mut doc = json!({"issuers": [{"issuer": ISSUER, "jwks_file": path}]});
        doc[field] = value;
        assert!(
            matches!(from_json(doc), Err(Error::InvalidConfig { .. })),
            "{field}"
        );
    }
    let err = from_json(
        json!({"issuers": [{"issuer": ISSUER, "jwks_file": path, "required_claims": [""]}]}),
    )
    .expect_err("empty claim name");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
}

#[test]
fn key_files_reload_as_a_whole_or_not_at_all() {
    use authz_token::{MintRequest, Signer, TokenError};
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (
        generate_key_pair(KeyAlgorithm::Es256, "old").expect("keys"),
        generate_key_pair(KeyAlgorithm::Es256, "new").expect("keys"),
    );
    let path = write(&dir, "jwks.json", &old.public_jwks);
    let cfg = VerifierConfig::new(vec![IssuerConfig::new(ISSUER, &path)]);
    let verifier = Verifier::from_config(&cfg).expect("verifier");
    let token = |private: &str| {
        let mut req = MintRequest::new(ISSUER, "alice", crate::support::AUDIENCE);
        req.ttl_secs = 600;
        Signer::from_private_jwk(private)
            .expect("signer")
            .mint(&req)
            .expect("mint")
    };
    let (by_old, by_new) = (token(&old.private_jwk), token(&new.private_jwk));
    let aud = crate::support::AUDIENCE;
    assert!(verifier.verify(&by_old, aud).is_ok());
    assert_eq!(
        verifier.verify(&by_new, aud).err(),
        Some(TokenError::UnknownKey)
    );

    // A broken file changes nothing: the keys in force stay.
    std::fs::write(&path, "{").expect("write");
    assert!(verifier.reload_key_files(&cfg).is_err());
    assert!(verifier.verify(&by_old, aud).is_ok(), "still the old key");

    // Rotated: the new key verifies, and the old one is refused at once (cache cleared).
    std::fs::write(&path, &new.public_jwks).expect("write");
    assert_eq!(verifier.reload_key_files(&cfg).expect("reload"), [ISSUER]);
    assert!(verifier.verify(&by_new, aud).is_ok());
    assert_eq!(
        verifier.verify(&by_old, aud).err(),
        Some(TokenError::UnknownKey)
    );
}
