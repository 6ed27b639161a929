//! A table of hostile and invalid tokens, each refused with one exact reason code.

use authz_token::{KeyAlgorithm, MAX_TOKEN_BYTES, MintRequest, Signer, generate_key_pair};
use authz_types::ReasonCode::{self, *};
use josekit::jwk::Jwk;
use josekit::jwk::KeyPair as _;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jws::HS256;
use serde_json::json;

use crate::support::{
    Fixture, ISSUER, NOW, OTHER_ISSUER, b64, claims, jose_signer, raw_token, request,
};

/// Replaces the character at `index` of `token` with a different base64url character.
fn flip_char(token: &str, index: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

fn signature_start(token: &str) -> usize {
    token.rfind('.').expect("three segments") + 1
}

fn cases(fx: &Fixture) -> Vec<(&'static str, String, ReasonCode)> {
    let es = fx.jose_signer(KeyAlgorithm::Es256);
    let rs = fx.jose_signer(KeyAlgorithm::Rs256);
    let valid_claims = claims(json!({}));
    let minted = |alg: KeyAlgorithm, req: &MintRequest| fx.signer(alg).mint(req).expect("mint");
    let good = minted(KeyAlgorithm::Es256, &request("alice"));

    // An attacker's own ES256 key, with their own kid or impersonating ours.
    let attacker = generate_key_pair(KeyAlgorithm::Es256, "attacker").expect("keys");
    let attacker_signer = jose_signer(KeyAlgorithm::Es256, &attacker.private_jwk);
    let attacker_public: serde_json::Value =
        serde_json::from_str(&attacker.public_jwks).expect("json");
    let attacker_jwk = attacker_public["keys"][0].clone();
    let mut impostor_jwk = attacker_jwk.clone();
    impostor_jwk["kid"] = json!("es-1");
    let impostor = Signer::from_private_jwk(
        &attacker
            .private_jwk
            .replace("\"kid\":\"attacker\"", "\"kid\":\"es-1\""),
    )
    .expect("impostor signer");
    assert_eq!(impostor.kid(), "es-1");

    // RS/HS confusion: HMAC keyed with the RSA public key as the verifier would know it.
    let rsa_private = Jwk::from_bytes(fx.private_jwk(KeyAlgorithm::Rs256)).expect("jwk");
    let rsa_pem = RsaKeyPair::from_jwk(&rsa_private)
        .expect("rsa")
        .to_pem_public_key();
    let hs_with_pem = HS256.signer_from_bytes(&rsa_pem).expect("hmac");
    let jwks_file_bytes = std::fs::read(fx.path("idp-jwks.json")).expect("jwks");
    let hs_with_jwks = HS256.signer_from_bytes(&jwks_file_bytes).expect("hmac");

    let time = |iat: i64, ttl: i64, nbf: Option<i64>| {
        let mut req = request("alice");
        req.issued_at = Some(iat);
        req.ttl_secs = ttl;
        req.not_before = nbf;
        minted(KeyAlgorithm::Es256, &req)
    };
    let mut wrong_issuer = request("alice");
    wrong_issuer.issuer = "https://evil.example".into();
    let mut wrong_audience = request("alice");
    wrong_audience.audience = vec!["https://gw.example/mcp/billing".into()];
    let mut generic_audience = request("alice");
    generic_audience.audience = vec!["https://gw.example".into()];

    let es_header = r#"{"alg":"ES256","kid":"es-1"}"#;
    vec![
        // Algorithms.
        (
            "alg none",
            raw_token(r#"{"alg":"none","kid":"es-1"}"#, &valid_claims, None),
            TokenAlgorithmNotAllowed,
        ),
        (
            "alg None",
            raw_token(r#"{"alg":"None","kid":"es-1"}"#, &valid_claims, None),
            TokenAlgorithmNotAllowed,
        ),
        (
            "alg none with a real signature",
            raw_token(
                r#"{"alg":"none","kid":"es-1"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "HS256 keyed with the RSA public key PEM",
            raw_token(
                r#"{"alg":"HS256","kid":"rs-1"}"#,
                &valid_claims,
                Some(&hs_with_pem),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "HS256 keyed with the JWKS file",
            raw_token(
                r#"{"alg":"HS256","kid":"rs-1"}"#,
                &valid_claims,
                Some(&hs_with_jwks),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "lowercase es256",
            raw_token(
                r#"{"alg":"es256","kid":"es-1"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "PS256 is not supported",
            raw_token(
                r#"{"alg":"PS256","kid":"rs-1"}"#,
                &valid_claims,
                Some(rs.as_ref()),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "ES256 from an RS256-only issuer",
            raw_token(
                es_header,
                &claims(json!({"iss": OTHER_ISSUER})),
                Some(es.as_ref()),
            ),
            TokenAlgorithmNotAllowed,
        ),
        (
            "alg missing",
            raw_token(r#"{"kid":"es-1"}"#, &valid_claims, Some(es.as_ref())),
            TokenMalformed,
        ),
        (
            "alg not a string",
            raw_token(
                r#"{"alg":["ES256"],"kid":"es-1"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        // Keys.
        (
            "unknown kid",
            raw_token(
                r#"{"alg":"ES256","kid":"attacker"}"#,
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "missing kid",
            raw_token(r#"{"alg":"ES256"}"#, &valid_claims, Some(es.as_ref())),
            TokenUnknownKey,
        ),
        (
            "kid not a string",
            raw_token(
                r#"{"alg":"ES256","kid":1}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid of another algorithm",
            raw_token(
                r#"{"alg":"RS256","kid":"es-1"}"#,
                &valid_claims,
                Some(rs.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid of another issuer",
            raw_token(
                r#"{"alg":"RS256","kid":"other-rs"}"#,
                &valid_claims,
                Some(rs.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid with a path",
            raw_token(
                r#"{"alg":"ES256","kid":"../../etc/passwd"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid with SQL",
            raw_token(
                r#"{"alg":"ES256","kid":"' OR 1=1 --"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid with a NUL and a newline",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1\u0000\n"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "kid of 257 characters",
            raw_token(
                &json!({"alg": "ES256", "kid": "k".repeat(257)}).to_string(),
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "empty kid",
            raw_token(
                r#"{"alg":"ES256","kid":""}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "jku to the attacker's JWKS",
            raw_token(
                r#"{"alg":"ES256","kid":"attacker","jku":"https://evil.example/jwks.json"}"#,
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "x5u to the attacker, our kid",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","x5u":"https://evil.example/cert.pem"}"#,
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenBadSignature,
        ),
        (
            "embedded jwk, attacker kid",
            raw_token(
                &json!({"alg":"ES256","kid":"attacker","jwk":attacker_jwk}).to_string(),
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenUnknownKey,
        ),
        (
            "embedded jwk, our kid",
            raw_token(
                &json!({"alg":"ES256","kid":"es-1","jwk":impostor_jwk}).to_string(),
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenBadSignature,
        ),
        (
            "x5c, our kid",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","x5c":["MIIB"]}"#,
                &valid_claims,
                Some(attacker_signer.as_ref()),
            ),
            TokenBadSignature,
        ),
        (
            "attacker key claiming our kid",
            impostor.mint(&request("alice")).expect("mint"),
            TokenBadSignature,
        ),
        // Signatures and encoding.
        (
            "flipped signature byte",
            flip_char(&good, signature_start(&good) + 10),
            TokenBadSignature,
        ),
        (
            "payload swapped under a valid signature",
            {
                let parts: Vec<&str> = good.split('.').collect();
                let forged = b64(claims(json!({"sub": "mallory"})).as_bytes());
                format!("{}.{forged}.{}", parts[0], parts[2])
            },
            TokenBadSignature,
        ),
        (
            "signature truncated",
            {
                let s = signature_start(&good);
                good[..s + 40].to_owned()
            },
            TokenBadSignature,
        ),
        (
            "empty signature",
            {
                let s = signature_start(&good);
                good[..s].to_owned()
            },
            TokenBadSignature,
        ),
        (
            "truncated to two segments",
            good[..signature_start(&good) - 1].to_owned(),
            TokenMalformed,
        ),
        ("four segments", format!("{good}.AAAA"), TokenMalformed),
        ("empty string", String::new(), TokenMalformed),
        (
            "non-base64url header",
            format!("%%%{}", &good[good.find('.').expect("dot")..]),
            TokenMalformed,
        ),
        (
            "padded header",
            {
                let d = good.find('.').expect("dot");
                format!("{}={}", &good[..d], &good[d..])
            },
            TokenMalformed,
        ),
        (
            "standard-alphabet signature",
            {
                let s = signature_start(&good);
                format!("{}+/{}", &good[..s], &good[s + 2..])
            },
            TokenMalformed,
        ),
        (
            "payload not JSON",
            format!(
                "{}.{}.{}",
                b64(es_header.as_bytes()),
                b64(b"hello"),
                b64(b"sig")
            ),
            TokenMalformed,
        ),
        (
            "oversized token",
            format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
            TokenMalformed,
        ),
        (
            "duplicate header key",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","kid":"es-1"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "duplicate alg, none first",
            raw_token(
                r#"{"alg":"none","alg":"ES256","kid":"es-1"}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "duplicate claim",
            raw_token(
                es_header,
                &format!("{{\"sub\":\"mallory\",{}", &valid_claims[1..]),
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "crit header",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","crit":["exp"],"exp":1}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "empty crit header",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","crit":[]}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "b64 crit header",
            raw_token(
                r#"{"alg":"ES256","kid":"es-1","b64":false,"crit":["b64"]}"#,
                &valid_claims,
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        // Time.
        ("expired", time(NOW - 1000, 100, None), TokenExpired),
        (
            "nbf in the future",
            time(NOW, 300, Some(NOW + 600)),
            TokenNotYetValid,
        ),
        (
            "iat in the future",
            time(NOW + 600, 300, None),
            TokenInvalidClaims,
        ),
        (
            "lifetime over max",
            time(NOW, 2 * 86_400, None),
            TokenLifetimeTooLong,
        ),
        (
            "lifetime over max without iat",
            raw_token(
                es_header,
                &claims(json!({"iat": null, "exp": NOW + 90_000})),
                Some(es.as_ref()),
            ),
            TokenLifetimeTooLong,
        ),
        (
            "backdated iat stretching the lifetime",
            raw_token(
                es_header,
                &claims(json!({"iat": NOW - 90_000})),
                Some(es.as_ref()),
            ),
            TokenLifetimeTooLong,
        ),
        (
            "missing exp",
            raw_token(es_header, &claims(json!({"exp": null})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "exp as a string",
            raw_token(
                es_header,
                &claims(json!({"exp": "tomorrow"})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "negative exp",
            raw_token(es_header, &claims(json!({"exp": -5})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "nbf as a string",
            raw_token(es_header, &claims(json!({"nbf": "now"})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        // Issuer, subject, audience.
        (
            "wrong issuer",
            minted(KeyAlgorithm::Es256, &wrong_issuer),
            TokenWrongIssuer,
        ),
        (
            "issuer differs in case",
            raw_token(
                es_header,
                &claims(json!({"iss": "https://IDP.example"})),
                Some(es.as_ref()),
            ),
            TokenWrongIssuer,
        ),
        (
            "issuer with trailing slash",
            raw_token(
                es_header,
                &claims(json!({"iss": format!("{ISSUER}/")})),
                Some(es.as_ref()),
            ),
            TokenWrongIssuer,
        ),
        (
            "missing iss",
            raw_token(es_header, &claims(json!({"iss": null})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "missing sub",
            raw_token(es_header, &claims(json!({"sub": null})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "empty sub",
            raw_token(es_header, &claims(json!({"sub": ""})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "sub not a string",
            raw_token(es_header, &claims(json!({"sub": 42})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "wrong audience",
            minted(KeyAlgorithm::Es256, &wrong_audience),
            TokenWrongAudience,
        ),
        (
            "generic audience",
            minted(KeyAlgorithm::Es256, &generic_audience),
            TokenWrongAudience,
        ),
        (
            "missing aud",
            raw_token(es_header, &claims(json!({"aud": null})), Some(es.as_ref())),
            TokenWrongAudience,
        ),
        (
            "wildcard aud",
            raw_token(es_header, &claims(json!({"aud": "*"})), Some(es.as_ref())),
            TokenWrongAudience,
        ),
        (
            "aud as a number",
            raw_token(es_header, &claims(json!({"aud": 1})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        // Claim sizes.
        (
            "a claim string over 4 KiB",
            raw_token(
                es_header,
                &claims(json!({"note": "x".repeat(4097)})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "a roles array of 257 items",
            raw_token(
                es_header,
                &claims(json!({"roles": (0..257).map(|i| format!("r{i}")).collect::<Vec<_>>()})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "an oversized claim name",
            raw_token(
                es_header,
                &claims(json!({ "n".repeat(4097): 1 })),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "claims nested 20 deep",
            raw_token(
                es_header,
                &claims(json!({"deep": (0..20).fold(json!(1), |v, _| json!([v]))})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "negative iat",
            raw_token(es_header, &claims(json!({"iat": -1})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        // Mapped claims with the wrong shape.
        (
            "scope as an array",
            raw_token(
                es_header,
                &claims(json!({"scope": ["a"]})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "scp as a number",
            raw_token(es_header, &claims(json!({"scp": 1})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "roles as an object",
            raw_token(
                es_header,
                &claims(json!({"roles": {"admin": true}})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "tenant as a number",
            raw_token(es_header, &claims(json!({"tenant": 7})), Some(es.as_ref())),
            TokenInvalidClaims,
        ),
        (
            "act without sub",
            raw_token(
                es_header,
                &claims(json!({"act": {"client": "x"}})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
        (
            "azp and client_id disagree",
            raw_token(
                es_header,
                &claims(json!({"azp": "a", "client_id": "b"})),
                Some(es.as_ref()),
            ),
            TokenInvalidClaims,
        ),
    ]
}

#[test]
fn hostile_tokens_are_refused_with_the_exact_reason() {
    let fx = Fixture::new();
    let cases = cases(&fx);
    let mut failures = Vec::new();
    for (name, token, expected) in &cases {
        match fx.verify(token) {
            Ok(p) => failures.push(format!("{name}: ACCEPTED as {}", p.subject)),
            Err(err) if err.reason() != *expected => {
                failures.push(format!(
                    "{name}: {} ({err}), expected {expected}",
                    err.reason()
                ));
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_is_anchored_by_a_valid_token() {
    // The hand-built helpers produce acceptable tokens when nothing is wrong, so each row above
    // fails for the reason it names and not for an accident of construction.
    let fx = Fixture::new();
    let es = fx.jose_signer(KeyAlgorithm::Es256);
    let token = raw_token(
        r#"{"alg":"ES256","kid":"es-1"}"#,
        &claims(json!({})),
        Some(es.as_ref()),
    );
    assert_eq!(fx.verify(&token).expect("valid").subject, "alice");
    let other = jose_signer(KeyAlgorithm::Rs256, &fx.other_keys.private_jwk);
    let token = raw_token(
        r#"{"alg":"RS256","kid":"other-rs"}"#,
        &claims(json!({"iss": OTHER_ISSUER})),
        Some(other.as_ref()),
    );
    assert_eq!(fx.verify(&token).expect("valid").issuer, OTHER_ISSUER);
    // The same header fields that are ignored do not spoil an otherwise valid token.
    let token = raw_token(
        r#"{"alg":"ES256","kid":"es-1","jku":"https://evil.example/jwks.json","typ":"JWT"}"#,
        &claims(json!({})),
        Some(es.as_ref()),
    );
    assert!(fx.verify(&token).is_ok());
}

#[test]
fn errors_describe_without_echoing_the_token() {
    let fx = Fixture::new();
    for (name, token, _) in cases(&fx) {
        let err = fx.verify(&token).expect_err(name);
        let texts = [
            err.to_string(),
            err.description().to_owned(),
            format!("{err:?}"),
        ];
        for text in texts {
            assert!(
                !text.contains("alice") && !text.contains("evil") && !text.contains("es-1"),
                "{name}: {text}"
            );
        }
    }
}
