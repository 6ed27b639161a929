//! JWKS URLs against a JWKS served over loopback by the test: rotation, the unknown-`kid` rate
//! limit, staleness then failing closed, and the fetch limits.

use std::time::Duration;

use authz_test_support::eventually;
use authz_token::{
    Error, IssuerConfig, KeyAlgorithm, MintRequest, Signer, TokenError, Verifier, VerifierConfig,
    generate_key_pair,
};
use serde_json::json;

use crate::support::{AUDIENCE, ISSUER, JwksServer, claims, jose_signer, merge_jwks, raw_token};

const WAIT: Duration = Duration::from_secs(20);

struct Key {
    public_jwks: String,
    signer: Signer,
}

fn key(kid: &str) -> Key {
    let keys = generate_key_pair(KeyAlgorithm::Es256, kid).expect("keys");
    Key {
        signer: Signer::from_private_jwk(&keys.private_jwk).expect("signer"),
        public_jwks: keys.public_jwks,
    }
}

fn jwks(keys: &[&Key]) -> String {
    merge_jwks(keys.iter().map(|k| k.public_jwks.as_str()))
}

/// A real-time token (the refresher runs on the real clock).
fn token(key: &Key, sub: &str) -> String {
    key.signer
        .mint(&MintRequest::new(ISSUER, sub, AUDIENCE))
        .expect("mint")
}

fn config(url: &str, adjust: impl FnOnce(&mut IssuerConfig)) -> VerifierConfig {
    let mut ic = IssuerConfig::with_jwks_url(ISSUER, url);
    ic.jwks_fetch.allow_http = true;
    adjust(&mut ic);
    VerifierConfig::new(vec![ic])
}

fn fetch_failures(v: &Verifier) -> u64 {
    v.key_status()[0].fetch_failures
}

#[tokio::test]
async fn rotation_keeps_old_keys_until_they_leave_the_set() {
    let (k1, k2) = (key("k1"), key("k2"));
    let server = JwksServer::start(&jwks(&[&k1]), Some("max-age=1")).await;
    let verifier = Verifier::load(&config(&server.url(), |ic| {
        ic.jwks_fetch.min_refresh_secs = 1;
        ic.jwks_fetch.max_refresh_secs = 1;
        ic.jwks_fetch.unknown_kid_min_interval_secs = 1;
    }))
    .await
    .expect("load");
    assert_eq!(server.hits(), 1);
    let (old, new) = (token(&k1, "old"), token(&k2, "new"));
    assert_eq!(
        verifier.verify(&old, AUDIENCE).expect("old key").subject,
        "old"
    );

    // The identity provider publishes k2 next to k1 and starts signing with it: the sync path
    // does not know k2 yet, the refreshing path fetches it.
    assert_eq!(verifier.verify(&new, AUDIENCE), Err(TokenError::UnknownKey));
    server.set(|r| r.body = jwks(&[&k1, &k2]));
    let p = verifier
        .verify_refreshing(&new, AUDIENCE)
        .await
        .expect("new key");
    assert_eq!(p.subject, "new");
    assert!(
        verifier.verify(&old, AUDIENCE).is_ok(),
        "old key still in the set"
    );

    // k1 leaves the set: once the background refresh sees that, old tokens are refused, even
    // though they are in the verified-token cache.
    server.set(|r| r.body = jwks(&[&k2]));
    eventually("k1 tokens refused after k1 left the set", WAIT, || {
        verifier.verify(&old, AUDIENCE) == Err(TokenError::UnknownKey)
    })
    .await;
    assert!(verifier.verify(&new, AUDIENCE).is_ok());
    assert_eq!(verifier.key_status()[0].kids, vec!["k2"]);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_causes_one_fetch() {
    let k1 = key("k1");
    let server = JwksServer::start(&jwks(&[&k1]), Some("max-age=3600")).await;
    let verifier = Verifier::load(&config(&server.url(), |ic| {
        ic.jwks_fetch.unknown_kid_min_interval_secs = 3600;
    }))
    .await
    .expect("load");
    assert_eq!(server.hits(), 1);

    // A `kid` with path or SQL characters is refused without a lookup or a fetch.
    let signer = jose_signer(
        KeyAlgorithm::Es256,
        &generate_key_pair(KeyAlgorithm::Es256, "x")
            .expect("keys")
            .private_jwk,
    );
    for kid in [
        "../../etc/passwd",
        "' OR 1=1 --",
        "k\u{0}1",
        &"k".repeat(300),
    ] {
        let header = json!({"alg": "ES256", "kid": kid}).to_string();
        let t = raw_token(&header, &claims(json!({})), Some(signer.as_ref()));
        assert_eq!(
            verifier.verify_refreshing(&t, AUDIENCE).await,
            Err(TokenError::UnknownKey),
            "{kid:.20}"
        );
    }
    assert_eq!(server.hits(), 1, "unsafe kids caused a fetch");

    // 100 concurrent requests with random kids: one re-fetch, the rest are rate-limited.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let header = json!({"alg": "ES256", "kid": format!("random-{i}-{}", uuid::Uuid::new_v4())})
            .to_string();
        let t = raw_token(&header, &claims(json!({})), Some(signer.as_ref()));
        let v = verifier.clone();
        tasks.spawn(async move { v.verify_refreshing(&t, AUDIENCE).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.expect("task"), Err(TokenError::UnknownKey));
    }
    assert_eq!(server.hits(), 2, "the burst caused more than one fetch");
    // Known keys keep working throughout.
    assert!(
        verifier
            .verify_refreshing(&token(&k1, "a"), AUDIENCE)
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn stale_keys_are_kept_for_a_while_then_fail_closed_then_recover() {
    let k1 = key("k1");
    let server = JwksServer::start(&jwks(&[&k1]), Some("max-age=1")).await;
    let verifier = Verifier::load(&config(&server.url(), |ic| {
        ic.jwks_fetch.min_refresh_secs = 1;
        ic.jwks_fetch.max_refresh_secs = 1;
        ic.jwks_fetch.max_staleness_secs = 6;
    }))
    .await
    .expect("load");
    let t = token(&k1, "alice");
    assert!(verifier.verify(&t, AUDIENCE).is_ok());

    // The endpoint goes down: the last good keys stay in use...
    server.set(|r| r.status = 503);
    eventually("a failed refresh", WAIT, || fetch_failures(&verifier) >= 1).await;
    verifier.clear_cache();
    assert!(
        verifier.verify(&t, AUDIENCE).is_ok(),
        "last good keys dropped too early"
    );
    assert!(!verifier.key_status()[0].stale);

    // ...until they are older than max_staleness_secs; then the issuer fails closed.
    eventually("stale keys refused", WAIT, || {
        verifier.verify(&t, AUDIENCE) == Err(TokenError::UnknownKey)
    })
    .await;
    assert!(verifier.key_status()[0].stale);
    assert_eq!(
        verifier.verify_refreshing(&t, AUDIENCE).await,
        Err(TokenError::UnknownKey)
    );

    // The endpoint comes back: the next refresh restores service.
    server.set(|r| r.status = 200);
    eventually("keys usable again", WAIT, || {
        verifier.verify(&t, AUDIENCE).is_ok()
    })
    .await;
    assert!(!verifier.key_status()[0].stale);
}

#[tokio::test]
async fn fetches_are_limited_in_size_scheme_status_and_redirects() {
    let k1 = key("k1");
    let server = JwksServer::start(&jwks(&[&k1]), None).await;

    // Oversized documents are refused (with and without a Content-Length that says so).
    let padded = json!({"keys": serde_json::from_str::<serde_json::Value>(&jwks(&[&k1])).expect("json")["keys"], "pad": "x".repeat(4096)}).to_string();
    server.set(|r| r.body = padded);
    let err = Verifier::load(&config(&server.url(), |ic| ic.jwks_fetch.max_bytes = 1024))
        .await
        .expect_err("too large");
    assert!(matches!(err, Error::JwksTooLarge { .. }), "{err}");

    // Server errors and empty sets fail start-up rather than starting without keys.
    server.set(|r| {
        r.body = jwks(&[&k1]);
        r.status = 500;
    });
    let err = Verifier::load(&config(&server.url(), |_| {}))
        .await
        .expect_err("status");
    assert!(
        matches!(err, Error::JwksStatus { status: 500, .. }),
        "{err}"
    );
    server.set(|r| {
        r.status = 200;
        r.body = r#"{"keys":[]}"#.into();
    });
    let err = Verifier::load(&config(&server.url(), |_| {}))
        .await
        .expect_err("empty");
    assert!(matches!(err, Error::NoUsableKeys { .. }), "{err}");

    // A redirect within the origin is followed; one to another host is not.
    server.set(|r| {
        r.body = jwks(&[&k1]);
        r.redirect_to = Some("/moved/jwks".into());
    });
    let v = Verifier::load(&config(&server.url(), |_| {}))
        .await
        .expect("same-origin redirect");
    assert!(v.verify(&token(&k1, "a"), AUDIENCE).is_ok());
    let other_host = server.base.replace("127.0.0.1", "localhost");
    server.set(|r| r.redirect_to = Some(format!("{other_host}/jwks")));
    let err = Verifier::load(&config(&server.url(), |_| {}))
        .await
        .expect_err("other host");
    assert!(
        matches!(err, Error::JwksStatus { status: 302, .. }),
        "{err}"
    );

    // HTTP needs the explicit opt-in, and the synchronous constructor cannot fetch.
    let mut cfg = config(&server.url(), |_| {});
    cfg.issuers[0].jwks_fetch.allow_http = false;
    assert!(matches!(
        Verifier::load(&cfg).await,
        Err(Error::JwksUrl { .. })
    ));
    assert!(matches!(
        Verifier::from_config(&cfg),
        Err(Error::JwksUrl { .. })
    ));
    let cfg = config(&server.url(), |_| {});
    assert!(matches!(
        Verifier::from_config(&cfg),
        Err(Error::RemoteKeysNeedLoad { .. })
    ));
}
