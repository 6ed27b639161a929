//! Lanes after an outage: when Postgres goes away and comes back, a lane that saw no traffic
//! meanwhile does not fail its first caller afterwards on the connection the outage closed.

use authz_audit::{AuditWriter, WriterConfig};

use crate::db::TestDb;
use crate::writer::{config, rec, test_key};

/// The chain each record went to, by request id.
async fn chain_of(db: &TestDb, request_id: &str) -> String {
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    let chain: String =
        sqlx::query_scalar("SELECT chain_id FROM audit_records WHERE request_id = $1 LIMIT 1")
            .bind(request_id)
            .fetch_one(&pool)
            .await
            .expect("the record's chain");
    pool.close().await;
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn a_quiet_lane_checks_its_connection_after_another_lane_lost_its() {
    let db = TestDb::postgres().await;
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            lanes: None,
            retry_attempts: 10_000,
            ..config("gw-q")
        },
        Some(test_key()),
    )
    .await
    .expect("spawn");
    assert_eq!(writer.chain_ids().len(), 2, "two lanes on Postgres");
    // One record on each lane, so both keep a connection.
    let (mut first, mut second) = (None, None);
    for i in 1..200 {
        writer.append_durable(rec(i)).await.expect("before");
        let chain = chain_of(&db, &format!("r{i}")).await;
        if chain == writer.chain_ids()[0] {
            first.get_or_insert(i);
        } else {
            second.get_or_insert(i);
        }
        if first.is_some() && second.is_some() {
            break;
        }
    }
    let (first, second) = (first.expect("lane 0"), second.expect("lane 1"));

    let name = db.pg_name().to_owned();
    db.admin(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ))
    .await;
    // Only the first lane is used during the outage.
    writer
        .append_durable(rec(first))
        .await
        .expect_err("the outage fails the first lane");
    db.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    // The second lane's kept connection was closed by the same outage; it notices before
    // writing instead of failing this caller.
    writer
        .append_durable(rec(second))
        .await
        .expect("the quiet lane's first record after the outage");
    writer.shutdown().await.expect("shutdown");
}
