//! Revocation by `jti` and by subject-before-time, written through one store and seen by a
//! verifier following another connection to the same database (a second replica).

use std::time::{Duration, Instant};

use authz_test_support::{TestDatabase, eventually};
use authz_token::{
    FollowOptions, MintRequest, Revocation, RevocationList, RevocationStore, TokenError,
};

use crate::support::{AUDIENCE, Fixture, ISSUER};

/// Real-time tokens: the revocation list compares against real `iat`s.
fn mint(fx: &Fixture, sub: &str, jti: &str, iat: i64) -> String {
    let mut req = MintRequest::new(ISSUER, sub, AUDIENCE);
    req.token_id = Some(jti.into());
    req.issued_at = Some(iat);
    fx.mint(&req)
}

fn now() -> i64 {
    authz_types::now_unix_ms() / 1000
}

async fn revocations_reach_a_second_replica(writer_url: &str, replica_url: &str) {
    let writer = RevocationStore::connect(writer_url).await.expect("writer");
    let replica = RevocationStore::connect(replica_url)
        .await
        .expect("replica");
    let (list, _follower) = RevocationList::follow(replica, FollowOptions::default())
        .await
        .expect("follow");
    let fx = Fixture::new();
    let verifier = fx.verifier.clone().with_revocations(list.clone());

    let t = now();
    let by_jti = mint(&fx, "alice", "jti-1", t);
    let other = mint(&fx, "alice", "jti-2", t);
    let old_bob = mint(&fx, "bob", "jti-3", t - 100);
    let new_bob = mint(&fx, "bob", "jti-4", t);
    for token in [&by_jti, &other, &old_bob, &new_bob] {
        // Verified once first, so the later refusals also prove the cache re-checks revocation.
        assert!(verifier.verify(token, AUDIENCE).is_ok());
    }

    // By jti: only that token.
    let revision = writer.revoke_token("jti-1", t + 300).await.expect("revoke");
    assert_eq!(revision, 1);
    let started = Instant::now();
    eventually(
        "jti revocation seen by the replica",
        Duration::from_secs(5),
        || verifier.verify(&by_jti, AUDIENCE) == Err(TokenError::Revoked),
    )
    .await;
    println!("jti revocation visible after {:?}", started.elapsed());
    assert!(verifier.verify(&other, AUDIENCE).is_ok());

    // By subject before a time: bob's older token only.
    writer
        .revoke_subject(ISSUER, "bob", t - 50, t - 50 + 86_400)
        .await
        .expect("revoke subject");
    let started = Instant::now();
    eventually(
        "subject revocation seen by the replica",
        Duration::from_secs(5),
        || verifier.verify(&old_bob, AUDIENCE) == Err(TokenError::Revoked),
    )
    .await;
    println!("subject revocation visible after {:?}", started.elapsed());
    assert!(verifier.verify(&new_bob, AUDIENCE).is_ok());
    assert!(verifier.verify(&other, AUDIENCE).is_ok());
    let counts = list.counts();
    assert_eq!((counts.revision, counts.tokens, counts.subjects), (2, 1, 1));

    // Re-revoking keeps the later cut-off; the store lists what is in force.
    writer
        .revoke_subject(ISSUER, "bob", t - 200, t + 10)
        .await
        .expect("revoke again");
    let (revision, rows) = writer.list(t).await.expect("list");
    assert_eq!(revision, 3);
    assert!(rows.contains(&Revocation::Subject {
        issuer: ISSUER.into(),
        subject: "bob".into(),
        issued_before: t - 50,
        expires_at: t - 50 + 86_400,
    }));

    // Pruning removes rows whose tokens have expired anyway.
    writer
        .revoke_token("jti-old", t - 10)
        .await
        .expect("revoke expired");
    assert_eq!(writer.prune(t).await.expect("prune"), 1);
    assert_eq!(writer.list(t).await.expect("list").1.len(), 2);

    // Bad requests are refused before the database.
    assert!(writer.revoke_token("", t).await.is_err());
    assert!(
        writer
            .revoke_subject(ISSUER, "bob", t, t - 1)
            .await
            .is_err()
    );
    writer.close().await;
}

#[tokio::test]
async fn sqlite_revocations_reach_a_second_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("revocations.db").display()
    );
    revocations_reach_a_second_replica(&url, &url).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_revocations_reach_a_second_replica() {
    let db = TestDatabase::postgres().await;
    revocations_reach_a_second_replica(db.url(), db.url()).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_notify_reloads_without_waiting_for_the_poll() {
    let db = TestDatabase::postgres().await;
    let writer = RevocationStore::connect(db.url()).await.expect("writer");
    let replica = RevocationStore::connect(db.url()).await.expect("replica");
    // Polling alone would take an hour here; only the notification can make this pass.
    let options = FollowOptions {
        poll_interval: Duration::from_secs(3600),
        listen: true,
    };
    let (list, follower) = RevocationList::follow(replica, options)
        .await
        .expect("follow");
    // The listener connects in the background; keep revoking until one notification lands.
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while list.counts().tokens == 0 {
        assert!(Instant::now() < deadline, "no notification arrived");
        n += 1;
        writer
            .revoke_token(&format!("jti-{n}"), now() + 60)
            .await
            .expect("revoke");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    follower.stop();
    writer.close().await;
}

/// Connecting to a fresh database creates the revocation store's own tables and no other
/// store's.
async fn a_fresh_database_gets_only_the_revocation_tables(db: &TestDatabase) {
    let store = RevocationStore::connect(db.url()).await.expect("connect");
    store.close().await;
    assert_eq!(
        db.tables().await,
        [
            "_sqlx_migrations",
            "revocation_revision",
            "revoked_subject",
            "revoked_token"
        ]
    );
}

#[tokio::test]
async fn a_fresh_sqlite_database_gets_only_the_revocation_tables() {
    a_fresh_database_gets_only_the_revocation_tables(&TestDatabase::sqlite("revocations.db")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_fresh_postgres_database_gets_only_the_revocation_tables() {
    a_fresh_database_gets_only_the_revocation_tables(&TestDatabase::postgres().await).await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        RevocationStore::connect("mysql://x/y").await,
        Err(authz_token::Error::Open {
            source: authz_db::Error::InvalidUrl { .. }
        })
    ));
}
