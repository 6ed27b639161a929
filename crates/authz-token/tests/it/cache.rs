//! The verified-token cache: hits share the principal, misses verify in full, hits end with the
//! token's validity window, failures are never cached, and revocation is checked on hits.

use std::sync::Arc;

use authz_token::{RevocationList, RevocationStore, TokenError};

use crate::support::{AUDIENCE, Fixture, NOW, b64, claims, request};

#[test]
fn hits_share_the_principal_and_misses_verify() {
    let fx = Fixture::new();
    let token = fx.mint(&request("alice"));
    let v = &fx.verifier;
    let first = v.verify_shared_at(&token, AUDIENCE, NOW).expect("valid");
    let second = v
        .verify_shared_at(&token, AUDIENCE, NOW + 1)
        .expect("valid");
    assert!(
        Arc::ptr_eq(&first, &second),
        "second call was not a cache hit"
    );
    let stats = v.cache_stats().expect("cache on by default");
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert_eq!(stats.capacity, 10_000);

    // The owned form returns an equal principal from the cache.
    assert_eq!(v.verify_at(&token, AUDIENCE, NOW).expect("valid"), *first);

    // Another audience spelling is its own entry (verified in full, then cached).
    let other = v
        .verify_shared_at(&token, "HTTPS://gw.example/mcp/tickets/", NOW)
        .expect("valid");
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(*first, *other);

    v.clear_cache();
    let third = v.verify_shared_at(&token, AUDIENCE, NOW).expect("valid");
    assert!(!Arc::ptr_eq(&first, &third));
}

#[test]
fn hits_end_with_the_tokens_window() {
    let fx = Fixture::new();
    let mut req = request("alice");
    req.not_before = Some(NOW + 10);
    let token = fx.mint(&req);
    let v = &fx.verifier;
    // Inside the leeway of nbf: accepted and cached.
    assert!(v.verify_at(&token, AUDIENCE, NOW).is_ok());
    // Before nbf - leeway a cached entry must not answer.
    assert_eq!(
        v.verify_at(&token, AUDIENCE, NOW - 30),
        Err(TokenError::NotYetValid)
    );
    // Still valid just before exp + leeway (300 + 30), expired from then on.
    assert!(v.verify_at(&token, AUDIENCE, NOW + 329).is_ok());
    assert_eq!(
        v.verify_at(&token, AUDIENCE, NOW + 330),
        Err(TokenError::Expired)
    );
}

#[test]
fn a_cached_signature_on_other_claims_is_not_a_hit() {
    let fx = Fixture::new();
    let token = fx.mint(&request("alice"));
    assert!(fx.verify(&token).is_ok());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(claims(serde_json::json!({"sub": "mallory"})).as_bytes());
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(fx.verify(&forged), Err(TokenError::BadSignature));
    assert_eq!(fx.verifier.cache_stats().expect("cache").hits, 0);
}

#[test]
fn failures_are_not_cached() {
    let fx = Fixture::new();
    let token = fx.mint(&request("alice"));
    let v = &fx.verifier;
    for _ in 0..2 {
        assert_eq!(
            v.verify_at(&token, "https://gw.example/mcp/other", NOW),
            Err(TokenError::WrongAudience)
        );
    }
    let stats = v.cache_stats().expect("cache");
    assert_eq!((stats.entries, stats.hits, stats.misses), (0, 0, 2));
}

#[test]
fn cache_can_be_turned_off() {
    let fx = Fixture::with(|cfg| cfg.cache_capacity = 0);
    let token = fx.mint(&request("alice"));
    let v = &fx.verifier;
    assert!(v.cache_stats().is_none());
    let a = v.verify_shared_at(&token, AUDIENCE, NOW).expect("valid");
    let b = v.verify_shared_at(&token, AUDIENCE, NOW).expect("valid");
    assert!(!Arc::ptr_eq(&a, &b));
}

#[tokio::test]
async fn revocation_applies_to_cached_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let store = RevocationStore::connect(&url).await.expect("store");
    let list = RevocationList::load(&store).await.expect("list");
    let fx = Fixture::new();
    let v = fx.verifier.clone().with_revocations(list.clone());
    let mut req = request("alice");
    req.token_id = Some("t-1".into());
    let token = fx.mint(&req);
    assert!(v.verify_at(&token, AUDIENCE, NOW).is_ok());

    store.revoke_token("t-1", NOW + 300).await.expect("revoke");
    assert!(list.refresh(&store).await.expect("refresh"));
    let hits_before = v.cache_stats().expect("cache").hits;
    assert_eq!(v.verify_at(&token, AUDIENCE, NOW), Err(TokenError::Revoked));
    assert_eq!(
        v.cache_stats().expect("cache").hits,
        hits_before + 1,
        "not a cache hit"
    );
    // An unchanged store is not reloaded.
    assert!(!list.refresh(&store).await.expect("refresh"));
    // The verifier without the list (another clone) is unaffected.
    assert!(fx.verifier.verify_at(&token, AUDIENCE, NOW).is_ok());
    store.close().await;
}
