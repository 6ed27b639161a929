//! A table of hostile and invalid tokens, each refused with one exact reason code.

use authz_token::{KeyAlgorithm, MAX_TOKEN_BYTES, MintRequest, Signer, generate_key_pair};
use authz_types::ReasonCode::{self, *};
use josekit::jwk::Jwk;
use josekit::jwk::KeyPair as _;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jws::HS256;
use serde_json::{Value, json};

use crate::support::{
    ES_HEADER, Fixture, ISSUER, NOW, OTHER_ISSUER, b64, claims, jose_signer, raw_token, request,
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

    // Valid claims, or valid claims changed by `extra` (see `claims`), under ES_HEADER.
    let es_claims = |extra: Value| raw_token(ES_HEADER, &claims(extra), Some(es.as_ref()));
    // Valid claims under `header`, signed with our ES256 or RS256 key or the attacker's.
    let es_signed = |header: &str| raw_token(header, &valid_claims, Some(es.as_ref()));
    let rs_signed = |header: &str| raw_token(header, &valid_claims, Some(rs.as_ref()));
    let attacker_signed =
        |header: &str| raw_token(header, &valid_claims, Some(attacker_signer.as_ref()));
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
            es_signed(r#"{"alg":"none","kid":"es-1"}"#),
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
            es_signed(r#"{"alg":"es256","kid":"es-1"}"#),
            TokenAlgorithmNotAllowed,
        ),
        (
            "PS256 is not supported",
            rs_signed(r#"{"alg":"PS256","kid":"rs-1"}"#),
            TokenAlgorithmNotAllowed,
        ),
        (
            "ES256 from an RS256-only issuer",
            es_claims(json!({"iss": OTHER_ISSUER})),
            TokenAlgorithmNotAllowed,
        ),
        (
            "alg missing",
            es_signed(r#"{"kid":"es-1"}"#),
            TokenMalformed,
        ),
        (
            "alg not a string",
            es_signed(r#"{"alg":["ES256"],"kid":"es-1"}"#),
            TokenMalformed,
        ),
        // Keys.
        (
            "unknown kid",
            attacker_signed(r#"{"alg":"ES256","kid":"attacker"}"#),
            TokenUnknownKey,
        ),
        (
            "missing kid",
            es_signed(r#"{"alg":"ES256"}"#),
            TokenUnknownKey,
        ),
        (
            "kid not a string",
            es_signed(r#"{"alg":"ES256","kid":1}"#),
            TokenUnknownKey,
        ),
        (
            "kid of another algorithm",
            rs_signed(r#"{"alg":"RS256","kid":"es-1"}"#),
            TokenUnknownKey,
        ),
        (
            "kid of another issuer",
            rs_signed(r#"{"alg":"RS256","kid":"other-rs"}"#),
            TokenUnknownKey,
        ),
        (
            "kid with a path",
            es_signed(r#"{"alg":"ES256","kid":"../../etc/passwd"}"#),
            TokenUnknownKey,
        ),
        (
            "kid with SQL",
            es_signed(r#"{"alg":"ES256","kid":"' OR 1=1 --"}"#),
            TokenUnknownKey,
        ),
        (
            "kid with a NUL and a newline",
            es_signed(r#"{"alg":"ES256","kid":"es-1\u0000\n"}"#),
            TokenUnknownKey,
        ),
        (
            "kid of 257 characters",
            es_signed(&json!({"alg": "ES256", "kid": "k".repeat(257)}).to_string()),
            TokenUnknownKey,
        ),
        (
            "empty kid",
            es_signed(r#"{"alg":"ES256","kid":""}"#),
            TokenUnknownKey,
        ),
        (
            "jku to the attacker's JWKS",
            attacker_signed(
                r#"{"alg":"ES256","kid":"attacker","jku":"https://evil.example/jwks.json"}"#,
            ),
            TokenUnknownKey,
        ),
        (
            "x5u to the attacker, our kid",
            attacker_signed(
                r#"{"alg":"ES256","kid":"es-1","x5u":"https://evil.example/cert.pem"}"#,
            ),
            TokenBadSignature,
        ),
        (
            "embedded jwk, attacker kid",
            attacker_signed(
                &json!({"alg":"ES256","kid":"attacker","jwk":attacker_jwk}).to_string(),
            ),
            TokenUnknownKey,
        ),
        (
            "embedded jwk, our kid",
            attacker_signed(&json!({"alg":"ES256","kid":"es-1","jwk":impostor_jwk}).to_string()),
            TokenBadSignature,
        ),
        (
            "x5c, our kid",
            attacker_signed(r#"{"alg":"ES256","kid":"es-1","x5c":["MIIB"]}"#),
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
                b64(ES_HEADER.as_bytes()),
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
            es_signed(r#"{"alg":"ES256","kid":"es-1","kid":"es-1"}"#),
            TokenMalformed,
        ),
        (
            "duplicate alg, none first",
            es_signed(r#"{"alg":"none","alg":"ES256","kid":"es-1"}"#),
            TokenMalformed,
        ),
        (
            "duplicate claim",
            raw_token(
                ES_HEADER,
                &format!("{{\"sub\":\"mallory\",{}", &valid_claims[1..]),
                Some(es.as_ref()),
            ),
            TokenMalformed,
        ),
        (
            "crit header",
            es_signed(r#"{"alg":"ES256","kid":"es-1","crit":["exp"],"exp":1}"#),
            TokenMalformed,
        ),
        (
            "empty crit header",
            es_signed(r#"{"alg":"ES256","kid":"es-1","crit":[]}"#),
            TokenMalformed,
        ),
        (
            "b64 crit header",
            es_signed(r#"{"alg":"ES256","kid":"es-1","b64":false,"crit":["b64"]}"#),
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
            es_claims(json!({"iat": null, "exp": NOW + 90_000})),
            TokenLifetimeTooLong,
        ),
        (
            "backdated iat stretching the lifetime",
            es_claims(json!({"iat": NOW - 90_000})),
            TokenLifetimeTooLong,
        ),
        (
            "missing exp",
            es_claims(json!({"exp": null})),
            TokenInvalidClaims,
        ),
        (
            "exp as a string",
            es_claims(json!({"exp": "tomorrow"})),
            TokenInvalidClaims,
        ),
        (
            "negative exp",
            es_claims(json!({"exp": -5})),
            TokenInvalidClaims,
        ),
        (
            "nbf as a string",
            es_claims(json!({"nbf": "now"})),
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
            es_claims(json!({"iss": "https://IDP.example"})),
            TokenWrongIssuer,
        ),
        (
            "issuer with trailing slash",
            es_claims(json!({"iss": format!("{ISSUER}/")})),
            TokenWrongIssuer,
        ),
        (
            "missing iss",
            es_claims(json!({"iss": null})),
            TokenInvalidClaims,
        ),
        (
            "missing sub",
            es_claims(json!({"sub": null})),
            TokenInvalidClaims,
        ),
        (
            "empty sub",
            es_claims(json!({"sub": ""})),
            TokenInvalidClaims,
        ),
        (
            "sub not a string",
            es_claims(json!({"sub": 42})),
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
            es_claims(json!({"aud": null})),
            TokenWrongAudience,
        ),
        (
            "wildcard aud",
            es_claims(json!({"aud": "*"})),
            TokenWrongAudience,
        ),
        (
            "aud as a number",
            es_claims(json!({"aud": 1})),
            TokenInvalidClaims,
        ),
        // Claim sizes.
        (
            "a claim string over 4 KiB",
            es_claims(json!({"note": "x".repeat(4097)})),
            TokenInvalidClaims,
        ),
        (
            "a roles array of 257 items",
            es_claims(json!({"roles": (0..257).map(|i| format!("r{i}")).collect::<Vec<_>>()})),
            TokenInvalidClaims,
        ),
        (
            "an oversized claim name",
            es_claims(json!({ "n".repeat(4097): 1 })),
            TokenInvalidClaims,
        ),
        (
            "claims nested 20 deep",
            es_claims(json!({"deep": (0..20).fold(json!(1), |v, _| json!([v]))})),
            TokenInvalidClaims,
        ),
        (
            "negative iat",
            es_claims(json!({"iat": -1})),
            TokenInvalidClaims,
        ),
        // Mapped claims with the wrong shape.
        (
            "scope as an array",
            es_claims(json!({"scope": ["a"]})),
            TokenInvalidClaims,
        ),
        (
            "scp as a number",
            es_claims(json!({"scp": 1})),
            TokenInvalidClaims,
        ),
        (
            "roles as an object",
            es_claims(json!({"roles": {"admin": true}})),
            TokenInvalidClaims,
        ),
        (
            "tenant as a number",
            es_claims(json!({"tenant": 7})),
            TokenInvalidClaims,
        ),
        (
            "act without sub",
            es_claims(json!({"act": {"client": "x"}})),
            TokenInvalidClaims,
        ),
        (
            "azp and client_id disagree",
            es_claims(json!({"azp": "a", "client_id": "b"})),
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
    let token = fx.es_token(&claims(json!({})));
    assert_eq!(fx.verify(&token).expect("valid").subject, "alice");
    let token = fx.other_token(&claims(json!({"iss": OTHER_ISSUER})));
    assert_eq!(fx.verify(&token).expect("valid").issuer, OTHER_ISSUER);
    // The same header fields that are ignored do not spoil an otherwise valid token.
    let es = fx.jose_signer(KeyAlgorithm::Es256);
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
