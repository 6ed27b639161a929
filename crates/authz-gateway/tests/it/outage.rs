//! The audit store goes away and comes back: durable routes fail closed (503, nothing forwarded)
//! and service resumes without a restart, with no record lost or duplicated.

use std::time::{Duration, Instant};

use authz_test_support::TestDatabase;

use crate::harness::{self, AuditBackend, request_id};

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_postgres_outage_fails_closed_and_service_resumes_without_restart() {
    let db = TestDatabase::postgres().await;
    let (name, admin_url) = db.postgres_admin().expect("postgres");
    let env = harness::start(AuditBackend::Postgres(db.url().to_owned())).await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let mut succeeded = Vec::new();
    let resp = env.post_stateless_call(&adam, 1, "get_ticket").await;
    assert_eq!(resp.status(), 200);
    succeeded.push(request_id(&resp));

    // The audit database goes away.
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
    )))
    .execute(&admin)
    .await
    .expect("disallow");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )))
    .execute(&admin)
    .await
    .expect("terminate");
    let forwarded = env.upstream.log.request_count();
    for id in 2..5 {
        let resp = env.post_stateless_call(&adam, id, "get_ticket").await;
        assert_eq!(resp.status(), 503, "no record, no forwarding");
    }
    assert_eq!(
        env.upstream.log.request_count(),
        forwarded,
        "nothing was forwarded during the outage"
    );
    // `/readyz` says which dependency is missing.
    let ready = env.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("readyz JSON");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(
        body["not_ready"],
        serde_json::json!(["audit_store"]),
        "{body}"
    );

    // It comes back; the same gateway recovers on its own.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .expect("allow");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = env.post_stateless_call(&adam, 10, "get_ticket").await;
        if resp.status() == 200 {
            succeeded.push(request_id(&resp));
            break;
        }
        assert_eq!(resp.status(), 503);
        assert!(Instant::now() < deadline, "the gateway never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 11..15 {
        let resp = env.post_stateless_call(&adam, id, "get_ticket").await;
        assert_eq!(resp.status(), 200);
        succeeded.push(request_id(&resp));
    }
    env.assert_one_decision_each(&succeeded).await;
    env.assert_chain_intact().await;
}

#[tokio::test]
async fn a_refused_decision_record_leaves_no_orphan_outcome() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let adam = env.token("adam", &["ticket-admin"], &["tickets:write"]);
    let pool = env.refuse_audit_inserts("WHEN NEW.kind = 'decision'").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":1}}}"#;
    let resp = env.post(Some(&adam), &[], body).await;
    assert_eq!(resp.status(), 503);
    let id = request_id(&resp);
    // Give a stray outcome write every chance to land, then check there is none.
    let env = env.stop().await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_records WHERE request_id = ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(count, 0, "no outcome without its decision");
    drop(env);
}
