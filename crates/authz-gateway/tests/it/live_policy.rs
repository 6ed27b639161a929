//! Live policy changes across gateways sharing one Postgres policy store.

use std::time::{Duration, Instant};

use authz_test_support::{TestDatabase, policies_dir};
use serde_json::json;

use crate::harness::{self, AuditBackend, Options};

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_revoke_through_the_store_reaches_another_gateway_within_a_second() {
    let db = TestDatabase::postgres().await;
    let url = db.url().to_owned();
    let store = authz_rbac::PolicyStore::connect(&url)
        .await
        .expect("policy store")
        .with_actor("test-operator");
    let policy = policies_dir().join("policy.csv");
    store
        .import_csv(&policy)
        .await
        .expect("import the example policy");

    let opts = || Options {
        policy_database_url: Some(url.clone()),
        ..Default::default()
    };
    let a = harness::start_with(AuditBackend::Sqlite, opts()).await;
    let b = harness::start_with(AuditBackend::Sqlite, opts()).await;
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":1}}}).to_string();
    let reader_b = b.token("rita", &["ticket-reader"], &["tickets:read"]);
    // Before: allowed (the upstream answers 400 for a session-less legacy call, but not 403).
    assert_ne!(b.post(Some(&reader_b), &[], &call).await.status(), 403);

    // What `authzctl role revoke` does, against the shared store (gateway `a` is not involved).
    store
        .revoke(
            "ticket-reader",
            "default",
            "call",
            "tool:tickets/get_*",
            authz_types::RuleEffect::Allow,
        )
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    loop {
        let status = b.post(Some(&reader_b), &[], &call).await.status();
        if status == 403 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "gateway b still allows a second after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reader_a = a.token("rita", &["ticket-reader"], &["tickets:read"]);
    let deadline = Instant::now() + Duration::from_secs(1);
    while a.post(Some(&reader_a), &[], &call).await.status() != 403 {
        assert!(Instant::now() < deadline, "gateway a never saw the revoke");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_broken_policy_file_keeps_the_last_good_one_serving_and_shows_in_readyz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.csv");
    let repo = policies_dir().join("policy.csv");
    std::fs::copy(&repo, &policy).expect("copy policy");
    // The harness reads the repository's file; this test points a gateway at its own copy.
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            policy_file: Some(policy.clone()),
            ..Default::default()
        },
    )
    .await;
    let reader = env.token("rita", &["ticket-reader"], &["tickets:read"]);
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":1}}}).to_string();
    assert_ne!(env.post(Some(&reader), &[], &call).await.status(), 403);

    std::fs::write(
        &policy,
        "p, ticket-reader, default, tool:tickets/[, call, allow\n",
    )
    .expect("break it");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready: serde_json::Value = env.get("/readyz").await.json().await.expect("json");
        if ready["policy"]["state"] == "degraded" {
            assert!(ready["policy"]["last_error"].is_string(), "{ready}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken policy was never reported: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(
        env.post(Some(&reader), &[], &call).await.status(),
        403,
        "the last good policy keeps serving"
    );
}
