//! How verified claims become a Principal: scopes, roles, tenant, client, actors.

use authz_token::{KeyAlgorithm, MAX_ACTOR_DEPTH, TokenError};
use authz_types::{Principal, ReasonCode};
use serde_json::{Value, json};

use crate::support::{Fixture, NOW, claims, request};

fn verify_claims(fx: &Fixture, extra: Value) -> Result<Principal, TokenError> {
    fx.verify(&fx.es_token(&claims(extra)))
}

#[test]
fn minted_claims_map_to_the_principal() {
    let fx = Fixture::new();
    let mut req = request("alice");
    req.scopes = vec![
        "tickets:write".into(),
        "tickets:read".into(),
        "tickets:read".into(),
    ];
    req.roles = vec!["writer".into(), "reader".into()];
    req.tenant = Some("acme".into());
    req.client_id = Some("agent-app".into());
    req.actor = Some("agent-7".into());
    req.token_id = Some("t-1".into());
    let token = fx.signer(KeyAlgorithm::EdDsa).mint(&req).expect("mint");
    let p = fx.verify(&token).expect("valid");
    assert_eq!(
        p,
        Principal {
            subject: "alice".into(),
            issuer: "https://idp.example".into(),
            tenant: Some("acme".into()),
            client_id: Some("agent-app".into()),
            actors: vec!["agent-7".into()],
            scopes: vec!["tickets:read".into(), "tickets:write".into()],
            roles: vec!["reader".into(), "writer".into()],
            token_id: Some("t-1".into()),
            expires_at: NOW + 300,
            issued_at: Some(NOW),
            claims: Default::default(),
        }
    );
    assert_eq!(p.acting_agent(), Some("agent-7"));
    assert_eq!(p.tenant_or_default(), "acme");
}

#[test]
fn scope_and_scp_shapes() {
    let fx = Fixture::new();
    let scopes = |extra| verify_claims(&fx, extra).expect("valid").scopes;
    assert_eq!(scopes(json!({"scope": "b a  a"})), vec!["a", "b"]);
    assert_eq!(scopes(json!({"scp": ["x", "y"]})), vec!["x", "y"]);
    assert_eq!(scopes(json!({"scp": "x y"})), vec!["x", "y"]);
    assert_eq!(scopes(json!({"scope": "a", "scp": ["b"]})), vec!["a", "b"]);
    assert!(scopes(json!({"scope": ""})).is_empty());
    for bad in [
        json!({"scope": 1}),
        json!({"scp": [1]}),
        json!({"scp": {"a": 1}}),
    ] {
        let err = verify_claims(&fx, bad.clone()).expect_err("bad scope");
        assert_eq!(err.reason(), ReasonCode::TokenInvalidClaims, "{bad}");
    }
}

#[test]
fn roles_as_array_or_single_string() {
    let fx = Fixture::new();
    let roles = |extra| verify_claims(&fx, extra).expect("valid").roles;
    assert_eq!(roles(json!({"roles": ["b", "a", "b"]})), vec!["a", "b"]);
    assert_eq!(roles(json!({"roles": "admin"})), vec!["admin"]);
    assert!(roles(json!({})).is_empty());
    for bad in [
        json!({"roles": [1]}),
        json!({"roles": ""}),
        json!({"roles": true}),
    ] {
        assert_eq!(
            verify_claims(&fx, bad).map_err(|e| e.reason()),
            Err(ReasonCode::TokenInvalidClaims)
        );
    }
}

#[test]
fn client_id_prefers_azp_and_falls_back_to_client_id() {
    let fx = Fixture::new();
    let client = |extra| verify_claims(&fx, extra).expect("valid").client_id;
    assert_eq!(client(json!({"azp": "a"})), Some("a".into()));
    assert_eq!(client(json!({"client_id": "c"})), Some("c".into()));
    assert_eq!(
        client(json!({"azp": "a", "client_id": "a"})),
        Some("a".into())
    );
    assert_eq!(client(json!({})), None);
}

#[test]
fn nested_act_is_walked_outermost_first_and_bounded() {
    let fx = Fixture::new();
    let p = verify_claims(
        &fx,
        json!({"act": {"sub": "agent-7", "act": {"sub": "orchestrator", "act": {"sub": "root"}}}}),
    )
    .expect("valid");
    assert_eq!(p.actors, vec!["agent-7", "orchestrator", "root"]);

    let chain = |depth: usize| {
        let mut act = json!({"sub": format!("a{}", depth - 1)});
        for i in (0..depth - 1).rev() {
            act = json!({"sub": format!("a{i}"), "act": act});
        }
        act
    };
    let p = verify_claims(&fx, json!({ "act": chain(MAX_ACTOR_DEPTH) })).expect("at the bound");
    assert_eq!(p.actors.len(), MAX_ACTOR_DEPTH);
    assert_eq!(p.actors[0], "a0");
    assert_eq!(
        verify_claims(&fx, json!({ "act": chain(MAX_ACTOR_DEPTH + 1) })).map_err(|e| e.reason()),
        Err(ReasonCode::TokenInvalidClaims)
    );
}

#[test]
fn issuer_specific_roles_and_tenant_claims() {
    let fx = Fixture::with(|cfg| {
        cfg.issuers[0].roles_claim = "groups".into();
        cfg.issuers[0].tenant_claim = "org".into();
    });
    let p = verify_claims(
        &fx,
        json!({"groups": ["ops"], "org": "acme", "roles": ["admin"], "tenant": "other"}),
    )
    .expect("valid");
    // Only the configured claims count; look-alike claims are ignored.
    assert_eq!(p.roles, vec!["ops"]);
    assert_eq!(p.tenant.as_deref(), Some("acme"));

    let mut req = request("alice");
    req.roles = vec!["ops".into()];
    req.roles_claim = "groups".into();
    req.tenant = Some("acme".into());
    req.tenant_claim = "org".into();
    let token = fx.signer(KeyAlgorithm::Rs256).mint(&req).expect("mint");
    let p = fx.verify(&token).expect("valid");
    assert_eq!(
        (p.roles, p.tenant),
        (vec!["ops".to_owned()], Some("acme".to_owned()))
    );
}

#[test]
fn fractional_times_are_accepted() {
    let fx = Fixture::new();
    let p = verify_claims(
        &fx,
        json!({"iat": NOW as f64 + 0.5, "exp": NOW as f64 + 300.75}),
    )
    .expect("valid");
    assert_eq!((p.issued_at, p.expires_at), (Some(NOW), NOW + 300));
}

#[test]
fn other_claims_are_kept_for_conditions_and_structured_ones_are_not_repeated() {
    let fx = Fixture::new();
    let p = verify_claims(
        &fx,
        json!({"projects": ["alpha", "beta"], "email": "a@example.com", "roles": ["r"],
               "tenant": "acme", "azp": "agent", "scope": "s"}),
    )
    .expect("valid");
    assert_eq!(p.claims.get("projects"), Some(&json!(["alpha", "beta"])));
    assert_eq!(p.claims.get("email"), Some(&json!("a@example.com")));
    for structured in [
        "iss", "sub", "aud", "exp", "iat", "roles", "tenant", "azp", "scope",
    ] {
        assert!(!p.claims.contains_key(structured), "{structured}");
    }
}
