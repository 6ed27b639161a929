//! Quotas over real loopback calls: a principal over its quota is answered 429 with
//! `Retry-After` and recorded (`quota_exceeded`, the quota named), others are unaffected, a
//! refused call spends nothing, and an edited quota file applies without a restart (a broken
//! edit keeps the quotas in force).

use std::time::Duration;

use authz_types::{Effect, ReasonCode};

use crate::connections::metric;
use crate::harness::{self, AuditBackend, Options};

const QUOTAS: &str = "[[quota]]\nname = \"deletes\"\nmethods = [\"tools/call\"]\n\
    targets = [\"delete_*\"]\nrate = 1\nper = \"hour\"\nburst = 2\n";

#[tokio::test]
async fn a_principal_over_its_quota_gets_429_recorded_and_edits_apply_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("quotas.toml");
    std::fs::write(&file, QUOTAS).expect("write quotas");
    let env = harness::start_with(
        AuditBackend::Sqlite,
        Options {
            quotas_file: Some(file.clone()),
            ..Options::default()
        },
    )
    .await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let ada = env.token("ada", &["ticket-admin"], &["tickets:write"]);
    let ada_reader = env.token("ada", &["ticket-reader"], &["tickets:read"]);
    for id in 1..=2 {
        let resp = env.post_stateless_call(&adam, id, "delete_ticket").await;
        assert_eq!(resp.status(), 200, "within the burst");
    }
    let forwarded = env.upstream.log.request_count();
    let resp = env.post_stateless_call(&adam, 3, "delete_ticket").await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After");
    // One per hour, the bucket empty: the next token is an hour away.
    assert!((3590..=3600).contains(&retry), "{retry}");
    let record = env.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::QuotaExceeded);
    assert_eq!(record.decision, Effect::Deny);
    assert_eq!(record.subject.as_deref(), Some("adam"));
    assert_eq!(record.matched_rule.as_deref(), Some("quota deletes"));
    assert_eq!(record.http_status, Some(429));
    let v: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(v["error"]["data"]["reason"], "quota_exceeded");
    assert_eq!(
        env.upstream.log.request_count(),
        forwarded,
        "nothing forwarded"
    );

    // Another principal has its own bucket; calls the rule does not select pass.
    assert_eq!(
        env.post_stateless_call(&ada, 4, "delete_ticket")
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post_stateless_call(&adam, 5, "get_ticket")
            .await
            .status(),
        200
    );
    // A call the policy refuses spends nothing: ada, with a token that may not delete, is
    // refused three times, and her one call left is still there.
    for id in 6..=8 {
        assert_eq!(
            env.post_stateless_call(&ada_reader, id, "delete_ticket")
                .await
                .status(),
            403
        );
    }
    assert_eq!(
        env.post_stateless_call(&ada, 80, "delete_ticket")
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post_stateless_call(&ada, 81, "delete_ticket")
            .await
            .status(),
        429
    );

    // A broken edit is refused; the quota in force stays.
    std::fs::write(&file, "[[quota]]\nname = \"deletes\"\nrate = \"lots\"\n").expect("write");
    wait_for(&env, "authz_quota_failed_reloads_total", 1).await;
    assert_eq!(
        env.post_stateless_call(&adam, 9, "delete_ticket")
            .await
            .status(),
        429
    );
    // A larger burst applies without a restart (the rule's buckets start afresh).
    std::fs::write(&file, QUOTAS.replace("burst = 2", "burst = 5")).expect("write");
    wait_for(&env, "authz_quota_reloads_total", 1).await;
    for id in 10..=14 {
        let resp = env.post_stateless_call(&adam, id, "delete_ticket").await;
        assert_eq!(resp.status(), 200, "call {id} within the new burst");
    }
    assert_eq!(
        env.post_stateless_call(&adam, 15, "delete_ticket")
            .await
            .status(),
        429
    );
    assert_eq!(metric(&env, "authz_quota_exceeded_total").await, 4);
    assert_eq!(metric(&env, "authz_quota_rules").await, 1);
}

/// Waits (bounded) until the counter `name` reaches `at_least`: the file is polled every 200 ms.
async fn wait_for(env: &harness::Env, name: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(env, name).await < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn two_gateways_on_one_postgres_share_a_quota() {
    let db = authz_test_support::TestDatabase::postgres().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("quotas.toml");
    std::fs::write(&file, QUOTAS.replace("burst = 2", "burst = 3")).expect("write quotas");
    let options = || Options {
        quotas_file: Some(file.clone()),
        policy_extra: Some("quota_sync_interval_ms = 50".into()),
        ..Options::default()
    };
    let a = harness::start_with(AuditBackend::Postgres(db.url().to_owned()), options()).await;
    // The second replica serves the same resource and trusts the same issuer key.
    let b = harness::start_with(
        AuditBackend::Postgres(db.url().to_owned()),
        Options {
            public_url: Some(a.base.clone()),
            keys: Some((a.private_jwk.clone(), a.jwks_path.clone())),
            ..options()
        },
    )
    .await;
    let adam = a.token("adam", &["ticket-admin"], &["tickets:write"]);
    for id in 1..=3 {
        assert_eq!(
            a.post_stateless_call(&adam, id, "delete_ticket")
                .await
                .status(),
            200
        );
    }
    // Both replicas exchange every 50 ms: wait for two more exchanges on each after the spend.
    let (a0, b0) = (
        metric(&a, "authz_quota_exchanges_total").await,
        metric(&b, "authz_quota_exchanges_total").await,
    );
    wait_for(&a, "authz_quota_exchanges_total", a0 + 2).await;
    wait_for(&b, "authz_quota_exchanges_total", b0 + 2).await;
    // The other replica knows the burst is spent.
    let resp = b.post_stateless_call(&adam, 4, "delete_ticket").await;
    assert_eq!(resp.status(), 429);
    let record = b.the_record_for(&resp).await;
    assert_eq!(record.reason, ReasonCode::QuotaExceeded);
    // Another principal is served by either.
    let ada = a.token("ada", &["ticket-admin"], &["tickets:write"]);
    assert_eq!(
        b.post_stateless_call(&ada, 5, "delete_ticket")
            .await
            .status(),
        200
    );
    assert_eq!(metric(&b, "authz_quota_failed_exchanges_total").await, 0);
}
