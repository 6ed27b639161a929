//! Hostile tokens through the gateway: each is refused with 401 and leaves exactly one audit
//! record with its specific reason; none reaches the upstream.

use authz_types::{Effect, ReasonCode, ReasonCode::*};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, HS256, JwsSigner};
use serde_json::{Value, json};

use crate::harness::{self, AuditBackend, Env, ISSUER, challenge};

fn b64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input)
}

/// A compact JWS from exact header and payload text.
fn raw(header: &str, payload: &str, signer: Option<&dyn JwsSigner>) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = signer
        .map(|s| s.sign(input.as_bytes()).expect("sign"))
        .unwrap_or_default();
    format!("{input}.{}", b64(&sig))
}

fn claims(env: &Env, extra: Value) -> String {
    let now = authz_types::now_unix_ms() / 1000;
    let mut base = json!({"iss": ISSUER, "sub": "mallory", "aud": env.route, "iat": now, "exp": now + 300, "roles": ["ticket-admin"], "scope": "tickets:write"});
    for (k, v) in extra.as_object().expect("object") {
        base[k] = v.clone();
    }
    base.to_string()
}

fn cases(env: &Env) -> Vec<(&'static str, String, ReasonCode)> {
    let ours = ES256
        .signer_from_jwk(&Jwk::from_bytes(env.private_jwk.as_bytes()).expect("jwk"))
        .expect("signer");
    let evil =
        authz_token::generate_key_pair(authz_token::KeyAlgorithm::Es256, "attacker").expect("keys");
    let evil_signer = ES256
        .signer_from_jwk(&Jwk::from_bytes(evil.private_jwk.as_bytes()).expect("jwk"))
        .expect("signer");
    let evil_jwk: Value =
        serde_json::from_str::<Value>(&evil.public_jwks).expect("json")["keys"][0].clone();
    let jwks_bytes = std::fs::read(&env.jwks_path).expect("jwks");
    let hs = HS256.signer_from_bytes(&jwks_bytes).expect("hmac");
    let ok = claims(env, json!({}));
    let our_header = r#"{"alg":"ES256","kid":"test-key","typ":"at+jwt"}"#;
    let now = authz_types::now_unix_ms() / 1000;
    let good = raw(our_header, &ok, Some(&ours));
    let flipped = {
        let mut b = good.clone().into_bytes();
        let i = good.rfind('.').expect("dot") + 5;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    let mut revoked = env.token_request("mallory", &["ticket-admin"], &["tickets:write"]);
    revoked.token_id = Some("hostile-revoked-jti".into());
    vec![
        (
            "alg none",
            raw(r#"{"alg":"none","kid":"test-key"}"#, &ok, None),
            TokenAlgorithmNotAllowed,
        ),
        (
            "HS256 keyed with our public JWKS",
            raw(r#"{"alg":"HS256","kid":"test-key"}"#, &ok, Some(&hs)),
            TokenAlgorithmNotAllowed,
        ),
        (
            "unknown kid",
            raw(r#"{"alg":"ES256","kid":"nope"}"#, &ok, Some(&ours)),
            TokenUnknownKey,
        ),
        (
            "kid with a path",
            raw(
                r#"{"alg":"ES256","kid":"../../etc/passwd"}"#,
                &ok,
                Some(&ours),
            ),
            TokenUnknownKey,
        ),
        (
            "kid with SQL",
            raw(r#"{"alg":"ES256","kid":"' OR 1=1 --"}"#, &ok, Some(&ours)),
            TokenUnknownKey,
        ),
        (
            "jku to the attacker",
            raw(
                r#"{"alg":"ES256","kid":"attacker","jku":"https://evil.test/jwks"}"#,
                &ok,
                Some(&evil_signer),
            ),
            TokenUnknownKey,
        ),
        (
            "x5u with our kid",
            raw(
                r#"{"alg":"ES256","kid":"test-key","x5u":"https://evil.test/c.pem"}"#,
                &ok,
                Some(&evil_signer),
            ),
            TokenBadSignature,
        ),
        (
            "embedded jwk with our kid",
            raw(
                &json!({"alg":"ES256","kid":"test-key","jwk":evil_jwk}).to_string(),
                &ok,
                Some(&evil_signer),
            ),
            TokenBadSignature,
        ),
        ("bad signature", flipped, TokenBadSignature),
        (
            "truncated",
            good.rsplit_once('.').expect("dot").0.to_owned(),
            TokenMalformed,
        ),
        (
            "non-base64url segment",
            format!("e$J.{}", &good[good.find('.').expect("dot") + 1..]),
            TokenMalformed,
        ),
        (
            "expired",
            raw(
                our_header,
                &claims(env, json!({"iat": now - 1000, "exp": now - 500})),
                Some(&ours),
            ),
            TokenExpired,
        ),
        (
            "nbf in the future",
            raw(
                our_header,
                &claims(env, json!({"nbf": now + 600})),
                Some(&ours),
            ),
            TokenNotYetValid,
        ),
        (
            "lifetime over the maximum",
            raw(
                our_header,
                &claims(env, json!({"exp": now + 7200})),
                Some(&ours),
            ),
            TokenLifetimeTooLong,
        ),
        (
            "wrong issuer",
            raw(
                our_header,
                &claims(env, json!({"iss": "https://evil.test"})),
                Some(&ours),
            ),
            TokenWrongIssuer,
        ),
        (
            "wrong audience",
            raw(
                our_header,
                &claims(env, json!({"aud": "https://elsewhere.test/mcp/tickets"})),
                Some(&ours),
            ),
            TokenWrongAudience,
        ),
        (
            "generic audience",
            raw(
                our_header,
                &claims(env, json!({"aud": env.base})),
                Some(&ours),
            ),
            TokenWrongAudience,
        ),
        (
            "a token for another route",
            raw(
                our_header,
                &claims(env, json!({"aud": format!("{}/mcp/billing", env.base)})),
                Some(&ours),
            ),
            TokenWrongAudience,
        ),
        (
            "oversized",
            format!("{good}{}", "A".repeat(20_000)),
            TokenMalformed,
        ),
        (
            "duplicate header key",
            raw(
                r#"{"alg":"ES256","kid":"test-key","kid":"test-key"}"#,
                &ok,
                Some(&ours),
            ),
            TokenMalformed,
        ),
        (
            "duplicate claim",
            raw(
                our_header,
                &format!("{{\"sub\":\"root\",{}", &ok[1..]),
                Some(&ours),
            ),
            TokenMalformed,
        ),
        ("revoked jti", env.mint(&revoked), TokenRevoked),
    ]
}

#[tokio::test]
async fn every_hostile_token_is_a_401_with_exactly_one_specific_record() {
    // Aggregation off: each hostile token's own record is looked up by its request id, and the
    // revocation probe below causes many identical refusals first.
    let env = harness::start_with(
        AuditBackend::Sqlite,
        harness::Options {
            server_extra: Some("refusal_aggregate_window_ms = 0".into()),
            ..harness::Options::default()
        },
    )
    .await;
    let store = authz_token::RevocationStore::connect(&env.audit_url)
        .await
        .expect("revocations");
    store
        .revoke_token(
            "hostile-revoked-jti",
            authz_types::now_unix_ms() / 1000 + 600,
        )
        .await
        .expect("revoke");
    // The gateway polls revocations every 500 ms: wait until it has seen this one.
    let probe = env.mint(&{
        let mut r = env.token_request("mallory", &["ticket-admin"], &["tickets:write"]);
        r.token_id = Some("hostile-revoked-jti".into());
        r
    });
    let body = json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while env.post(Some(&probe), &[], &body).await.status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let forwarded_before = env.upstream.log.request_count();

    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_ticket","arguments":{"id":1}}}).to_string();
    for (name, token, reason) in cases(&env) {
        let resp = env.post(Some(&token), &[], &call).await;
        assert_eq!(resp.status(), 401, "{name}");
        let challenge = challenge(&resp);
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            !challenge.contains(&token[..token.len().min(40)]),
            "{name}: the challenge never echoes the token"
        );
        let records = env.records_for(&resp).await;
        assert_eq!(records.len(), 1, "{name}: exactly one record");
        assert_eq!(records[0].reason, reason, "{name}");
        assert_eq!(records[0].decision, Effect::Deny, "{name}");
    }
    assert_eq!(
        env.upstream.log.request_count(),
        forwarded_before,
        "no hostile token reached the upstream"
    );
}
