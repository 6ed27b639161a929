//! Token exchange end to end: a verified IdP token is exchanged for a gateway-signed task token
//! that the same verifier accepts (the gateway's issuer is trusted), never wider than the original.

use authz_token::{
    ExchangePolicy, ExchangeRequest, IssuerConfig, KeyAlgorithm, Signer, generate_key_pair,
};
use serde_json::Value;

use crate::support::{AUDIENCE, Fixture, NOW, b64, b64_decode, request, write};

const GATEWAY: &str = "https://gw.example";

struct Setup {
    fx: Fixture,
    gateway: Signer,
}

fn setup() -> Setup {
    let keys = generate_key_pair(KeyAlgorithm::Es256, "gw-1").expect("keys");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "gw-jwks.json", &keys.public_jwks);
    let fx = Fixture::with(|cfg| {
        let mut gw = IssuerConfig::new(GATEWAY, path);
        // Task tokens are only good for our own routes.
        gw.audiences = vec![AUDIENCE.into(), "https://gw.example/mcp/billing".into()];
        gw.required_claims = vec!["jti".into()];
        gw.require_typ_at_jwt = true;
        cfg.issuers.push(gw);
    });
    Setup {
        fx,
        gateway: Signer::from_private_jwk(&keys.private_jwk).expect("signer"),
    }
}

fn policy() -> ExchangePolicy {
    ExchangePolicy::new(
        GATEWAY,
        vec![AUDIENCE.into(), "https://gw.example/mcp/billing".into()],
        300,
    )
}

fn exchange_request() -> ExchangeRequest {
    ExchangeRequest {
        scopes: vec!["tickets:read".into()],
        audience: AUDIENCE.into(),
        ttl_secs: 120,
        task_id: Some("task-42".into()),
        requesting_agent: Some("agent-7".into()),
    }
}

fn payload(token: &str) -> Value {
    let segment = token.split('.').nth(1).expect("payload");
    // Re-encode check: the test's own encoder round-trips what it decodes.
    let bytes = b64_decode(segment);
    assert_eq!(b64(&bytes), segment);
    serde_json::from_slice(&bytes).expect("json")
}

fn original(s: &Setup) -> authz_types::Principal {
    let mut req = request("alice");
    req.scopes = vec!["tickets:read".into(), "tickets:write".into()];
    req.roles = vec!["support".into()];
    req.tenant = Some("acme".into());
    req.actor = Some("orchestrator".into());
    req.ttl_secs = 600;
    let token = s.fx.mint(&req);
    s.fx.verify(&token).expect("original verifies")
}

#[test]
fn narrowing_works_and_the_new_token_verifies() {
    let s = setup();
    let subject = original(&s);
    let token = s
        .gateway
        .exchange_at(&subject, &exchange_request(), &policy(), NOW)
        .expect("exchange");
    let p = s.fx.verify(&token).expect("task token verifies");
    assert_eq!(p.issuer, GATEWAY);
    assert_eq!(p.subject, "alice");
    assert_eq!(p.scopes, vec!["tickets:read"]);
    assert_eq!(p.roles, vec!["support"]);
    assert_eq!(p.tenant.as_deref(), Some("acme"));
    // The requesting agent on top of the existing chain.
    assert_eq!(p.actors, vec!["agent-7", "orchestrator"]);
    assert_eq!(p.expires_at, NOW + 120);
    assert_ne!(p.token_id, subject.token_id);
    assert_eq!(payload(&token)["task_id"], "task-42");

    // Only for the audience asked for.
    assert!(
        s.fx.verifier
            .verify_at(&token, "https://gw.example/mcp/billing", NOW)
            .is_err()
    );
}

#[test]
fn lifetime_is_capped_by_policy_and_by_the_original() {
    let s = setup();
    let subject = original(&s);
    let mut req = exchange_request();
    req.ttl_secs = 86_400;
    let token = s
        .gateway
        .exchange_at(&subject, &req, &policy(), NOW)
        .expect("exchange");
    let p = s.fx.verify(&token).expect("valid");
    assert_eq!(p.expires_at - p.issued_at.expect("iat"), 300);

    // Near the end of the original, the new token ends with it.
    let later = NOW + 500;
    let token = s
        .gateway
        .exchange_at(&subject, &req, &policy(), later)
        .expect("exchange");
    let p =
        s.fx.verifier
            .verify_at(&token, AUDIENCE, later)
            .expect("valid");
    assert_eq!(p.expires_at, subject.expires_at);
}

#[test]
fn widening_is_refused_with_oauth_errors() {
    let s = setup();
    let subject = original(&s);
    let refuse = |change: fn(&mut ExchangeRequest)| {
        let mut req = exchange_request();
        change(&mut req);
        let err = s
            .gateway
            .exchange_at(&subject, &req, &policy(), NOW)
            .expect_err("refused");
        (err.error_code(), err.http_status())
    };
    assert_eq!(
        refuse(|r| r.scopes = vec!["tickets:admin".into()]),
        ("invalid_scope", 400)
    );
    assert_eq!(
        refuse(|r| r.scopes = vec!["tickets:read".into(), "billing:read".into()]),
        ("invalid_scope", 400)
    );
    assert_eq!(
        refuse(|r| r.audience = "https://evil.example/mcp".into()),
        ("invalid_target", 400)
    );
    assert_eq!(
        refuse(|r| r.audience = "https://gw.example".into()),
        ("invalid_target", 400)
    );
    assert_eq!(refuse(|r| r.ttl_secs = -5), ("invalid_request", 400));

    let err = s
        .gateway
        .exchange_at(&subject, &exchange_request(), &policy(), subject.expires_at)
        .expect_err("expired original");
    assert_eq!(err.error_code(), "invalid_grant");
}
