//! Mint → verify round trips for every algorithm, audience normalisation and time leeway.

use authz_token::{KeyAlgorithm, Signer, TokenError};
use authz_types::ReasonCode;

use crate::support::{AUDIENCE, Fixture, ISSUER, NOW, b64_decode, request};

#[test]
fn round_trip_for_every_algorithm() {
    let fx = Fixture::new();
    for alg in KeyAlgorithm::ALL {
        let signer = fx.signer(alg);
        assert_eq!(signer.algorithm(), alg);
        let mut req = request("alice");
        req.token_id = Some(format!("jti-{alg}"));
        let token = signer.mint(&req).expect("mint");
        let p = fx.verify(&token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(p.subject, "alice");
        assert_eq!(p.issuer, ISSUER);
        assert_eq!(p.token_id.as_deref(), Some(format!("jti-{alg}").as_str()));
        assert_eq!(p.issued_at, Some(NOW));
        assert_eq!(p.expires_at, NOW + 300);
        assert_eq!(p.tenant, None);
        assert!(p.actors.is_empty() && p.scopes.is_empty() && p.roles.is_empty());
    }
}

#[test]
fn header_names_the_key_and_token_type() {
    let fx = Fixture::new();
    let token = fx
        .signer(KeyAlgorithm::EdDsa)
        .mint(&request("alice"))
        .expect("mint");
    let header = token.split('.').next().expect("header");
    let header: serde_json::Value =
        serde_json::from_slice(&b64_decode(header)).expect("header json");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], "ed-1");
    assert_eq!(header["typ"], "at+jwt");
}

#[test]
fn audience_variants_are_accepted_both_ways() {
    let fx = Fixture::new();
    let signer = fx.signer(KeyAlgorithm::Es256);
    for (minted, checked) in [
        ("HTTPS://Host.Example/mcp/x/", "https://host.example/mcp/x"),
        ("https://host.example/mcp/x", "HTTPS://HOST.example/mcp/x/"),
        ("https://host.example/mcp/x/", "https://host.example/mcp/x/"),
    ] {
        let mut req = request("alice");
        req.audience = vec![minted.into()];
        let token = signer.mint(&req).expect("mint");
        fx.verifier
            .verify_at(&token, checked, NOW)
            .unwrap_or_else(|e| panic!("{minted} vs {checked}: {e}"));
    }
    // The path is case-sensitive, and a prefix or sibling resource is another audience.
    let mut req = request("alice");
    req.audience = vec!["https://host.example/mcp/x".into()];
    let token = signer.mint(&req).expect("mint");
    for other in [
        "https://host.example/mcp/X",
        "https://host.example/mcp",
        "https://host.example/mcp/x/y",
        "http://host.example/mcp/x",
    ] {
        assert_eq!(
            fx.verifier.verify_at(&token, other, NOW),
            Err(TokenError::WrongAudience),
            "{other}"
        );
    }
}

#[test]
fn one_of_several_audiences_is_enough() {
    let fx = Fixture::new();
    let mut req = request("alice");
    req.audience = vec!["https://gw.example/mcp/billing".into(), AUDIENCE.into()];
    let token = fx.signer(KeyAlgorithm::Rs256).mint(&req).expect("mint");
    assert!(fx.verify(&token).is_ok());
    let err = fx
        .verifier
        .verify_at(&token, "https://gw.example/mcp/other", NOW)
        .expect_err("not an audience");
    assert_eq!(err.reason(), ReasonCode::TokenWrongAudience);
}

#[test]
fn leeway_applies_to_exp_nbf_and_iat() {
    let fx = Fixture::new();
    let signer = fx.signer(KeyAlgorithm::Es256);
    let mint = |iat: i64, ttl: i64, nbf: Option<i64>| {
        let mut req = request("alice");
        req.issued_at = Some(iat);
        req.ttl_secs = ttl;
        req.not_before = nbf;
        signer.mint(&req).expect("mint")
    };
    // Expired 10 s ago, within the default 30 s leeway; 31 s ago is beyond it.
    assert!(fx.verify(&mint(NOW - 100, 90, None)).is_ok());
    assert_eq!(
        fx.verify(&mint(NOW - 100, 69, None)),
        Err(TokenError::Expired)
    );
    // Not before 20 s from now, and issued 20 s in the future: clock skew, accepted.
    assert!(fx.verify(&mint(NOW + 20, 300, Some(NOW + 20))).is_ok());
    assert_eq!(
        fx.verify(&mint(NOW, 300, Some(NOW + 31))),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn verify_uses_the_real_clock() {
    let fx = Fixture::new();
    let signer = fx.signer(KeyAlgorithm::Es256);
    let mut req = request("alice");
    req.issued_at = None;
    let token = signer.mint(&req).expect("mint");
    assert!(fx.verifier.verify(&token, AUDIENCE).is_ok());
    // Issued an hour from the real now: refused, which shows the real clock was used.
    let mut req = request("alice");
    req.issued_at = Some(authz_types::now_unix_ms() / 1000 + 3600);
    let future = signer.mint(&req).expect("mint");
    assert_eq!(
        fx.verifier
            .verify(&future, AUDIENCE)
            .map_err(|e| e.reason()),
        Err(ReasonCode::TokenInvalidClaims)
    );
}

#[test]
fn signer_loads_from_a_key_file() {
    let fx = Fixture::new();
    let path = fx.path("signing-key.json");
    std::fs::write(&path, fx.private_jwk(KeyAlgorithm::Rs256)).expect("write");
    let signer = Signer::from_private_jwk_file(&path).expect("signer");
    assert_eq!(signer.kid(), "rs-1");
    assert_eq!(signer.algorithm(), KeyAlgorithm::Rs256);
    let token = signer.mint(&request("bob")).expect("mint");
    assert_eq!(fx.verify(&token).expect("valid").subject, "bob");
    assert!(Signer::from_private_jwk_file(&fx.path("missing.json")).is_err());
}

#[test]
fn verifier_is_shareable_and_debug_shows_no_key_material() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<authz_token::Verifier>();

    let fx = Fixture::new();
    let clone = fx.verifier.clone();
    let token = fx.mint(&request("alice"));
    std::thread::spawn(move || clone.verify_at(&token, AUDIENCE, NOW).map(|p| p.subject))
        .join()
        .expect("thread")
        .expect("valid");

    let debug = format!("{:?}", fx.verifier);
    assert!(debug.contains("es-1") && debug.contains(ISSUER), "{debug}");
    for (_, keys) in &fx.keys {
        let jwks: serde_json::Value = serde_json::from_str(&keys.public_jwks).expect("json");
        let x = jwks["keys"][0]
            .get("x")
            .or_else(|| jwks["keys"][0].get("n"))
            .and_then(|v| v.as_str())
            .expect("key parameter");
        assert!(!debug.contains(x));
    }
}
