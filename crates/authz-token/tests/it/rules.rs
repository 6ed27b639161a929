//! Per-issuer rules: `typ: at+jwt`, required claims, the resources an issuer may issue for, and
//! inline JWKS.

use authz_token::{IssuerConfig, KeyAlgorithm, TokenError, Verifier, VerifierConfig};
use serde_json::json;

use crate::support::{AUDIENCE, Fixture, ISSUER, NOW, OTHER_ISSUER, claims, raw_token, request};

#[test]
fn typ_at_jwt_can_be_required() {
    let fx = Fixture::with(|cfg| cfg.issuers[0].require_typ_at_jwt = true);
    let es = fx.jose_signer(KeyAlgorithm::Es256);
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "ES256", "kid": "es-1"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        fx.verify(&raw_token(
            &header.to_string(),
            &claims(json!({})),
            Some(es.as_ref()),
        ))
    };
    for ok in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert!(with_typ(Some(ok)).is_ok(), "{ok}");
    }
    for bad in [
        None,
        Some("JWT"),
        Some("at+jwt2"),
        Some("application/jwt"),
        Some(""),
    ] {
        assert_eq!(
            with_typ(bad).map(|_| ()),
            Err(TokenError::InvalidClaims("typ is not at+jwt")),
            "{bad:?}"
        );
    }
    // Minted tokens carry the type.
    assert!(fx.verify(&fx.mint(&request("a"))).is_ok());
    // The other issuer does not require it.
    let t = fx.other_token(&claims(json!({"iss": OTHER_ISSUER})));
    assert!(fx.verify(&t).is_ok());
}

#[test]
fn required_claims_must_be_present() {
    let fx =
        Fixture::with(|cfg| cfg.issuers[0].required_claims = vec!["jti".into(), "tenant".into()]);
    let signer = fx.signer(KeyAlgorithm::Es256);
    let mut req = request("alice");
    req.tenant = Some("acme".into());
    assert!(fx.verify(&signer.mint(&req).expect("mint")).is_ok());
    req.tenant = None;
    assert_eq!(
        fx.verify(&signer.mint(&req).expect("mint")).map(|_| ()),
        Err(TokenError::InvalidClaims("a required claim is missing"))
    );
    let null_tenant = fx.es_token(&claims(json!({"jti": "x"})).replace('}', r#","tenant":null}"#));
    assert!(fx.verify(&null_tenant).is_err());
}

#[test]
fn an_issuer_can_be_limited_to_some_resources() {
    let fx = Fixture::with(|cfg| {
        cfg.issuers[1].audiences = vec!["HTTPS://GW.example/mcp/billing/".into()];
    });
    let token_for = |aud: &str| fx.other_token(&claims(json!({"iss": OTHER_ISSUER, "aud": aud})));
    let billing = "https://gw.example/mcp/billing";
    assert!(
        fx.verifier
            .verify_at(&token_for(billing), billing, NOW)
            .is_ok()
    );
    // Even a token whose `aud` names the tickets route is refused there.
    assert_eq!(
        fx.verifier
            .verify_at(&token_for(AUDIENCE), AUDIENCE, NOW)
            .map(|_| ()),
        Err(TokenError::WrongAudience)
    );
    // The first issuer is not limited.
    assert!(fx.verify(&fx.mint(&request("a"))).is_ok());
}

#[test]
fn inline_jwks_as_object_or_string() {
    let fx = Fixture::new();
    let jwks: serde_json::Value = serde_json::from_str(&fx.keys[0].1.public_jwks).expect("json");
    let token = fx
        .signer(fx.keys[0].0)
        .mint(&request("alice"))
        .expect("mint");
    for doc in [jwks.clone(), json!(jwks.to_string())] {
        let mut ic = IssuerConfig::with_inline_jwks(ISSUER, doc);
        ic.jwks_file = None;
        let v = Verifier::from_config(&VerifierConfig::new(vec![ic])).expect("verifier");
        assert_eq!(
            v.verify_at(&token, AUDIENCE, NOW).expect("valid").subject,
            "alice"
        );
    }
}
