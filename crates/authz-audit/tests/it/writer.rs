//! Behaviour of the group-commit `AuditWriter`: durable and buffered appends, chains across
//! restarts, store failures and recovery, back-pressure, shutdown and crash safety.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authz_audit::{
    AuditQuery, AuditStore, AuditWriter, Error, SigningKey, TryAppend, WriterConfig, WriterStats,
    verify,
};
use authz_test_support::eventually_async;
use authz_types::{AuditFilter, AuditRecord, Effect, ReasonCode, RecordKind};

use crate::db::TestDb;
use crate::store::append_concurrently;

on_both_backends!(
    concurrent_durable_appends_commit_into_one_verified_chain,
    buffered_appends_are_all_committed_by_shutdown,
    a_durable_record_is_committed_without_waiting_for_the_flush_interval,
    a_restarted_writer_resumes_its_chain,
    writers_with_different_chains_do_not_interfere,
    refused_inserts_fail_durable_callers_and_recover,
    buffered_records_are_given_up_after_the_retries_and_counted,
    a_blocked_store_times_out_and_fills_the_queue,
    closed_writer_refuses_records,
    following_and_searching_the_log,
    nul_characters,
    every_field_round_trips_through_the_writer,
);

/// The writer copies the SQLite WAL back into the database file in the background: the
/// automatic checkpoint of its connection only fires at 16,384 pages, far beyond what these
/// records take, so the database file grows only through the background checkpointer.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let db = TestDb::sqlite().await;
    let file = db.sqlite_path().display().to_string();
    let size = |path: String| std::fs::metadata(path).map_or(0, |m| m.len());
    let before = size(file.clone());
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-wal"), None)
        .await
        .expect("spawn");
    let mut tasks = Vec::new();
    for t in 0..10 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..400 {
                w.append_durable(rec(t * 1000 + i)).await.expect("durable");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let wal = size(format!("{file}-wal"));
    assert!(
        wal > 1 << 20,
        "the records went through the WAL ({wal} bytes)"
    );
    eventually_async(
        "the database file to take the WAL's pages",
        WAIT,
        async || size(file.clone()) > before + (1 << 20),
    )
    .await;
    writer.shutdown().await.expect("shutdown");
    assert_eq!(count(&db.store).await, 4000);
}

/// SQLite refuses more than one lane; without `lanes` a writer on SQLite has one chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_more_than_one_lane() {
    let lite = TestDb::sqlite().await;
    let refused = AuditWriter::spawn(
        lite.store.clone(),
        WriterConfig {
            lanes: Some(2),
            ..config("gw-l")
        },
        None,
    )
    .await;
    assert!(matches!(refused, Err(Error::Config { .. })), "{refused:?}");
    let one = AuditWriter::spawn(
        lite.store.clone(),
        WriterConfig {
            lanes: None,
            ..config("gw-l")
        },
        None,
    )
    .await
    .expect("spawn");
    assert_eq!(one.chain_ids(), ["gw-l"]);
    one.shutdown().await.expect("shutdown");
}

/// On Postgres a writer has two lanes by default: two chains committed side by side, records
/// spread over them by request id (a request's records in one chain), counters summed, and
/// both chains verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_lanes_spread_requests_over_chains() {
    let db = TestDb::postgres().await;
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            lanes: None,
            ..config("gw-l")
        },
        Some(test_key()),
    )
    .await
    .expect("spawn");
    assert_eq!(writer.chain_ids(), ["gw-l", "gw-l~1"]);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                // A decision and an outcome record per request id.
                let mut decision = rec(t * 100 + i);
                decision.kind = RecordKind::Decision;
                let mut outcome = decision.clone();
                outcome.kind = RecordKind::Outcome;
                w.append_durable(decision).await.expect("decision");
                w.append_durable(outcome).await.expect("outcome");
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.committed, 400);
    assert_eq!(stats.last_seq, 400, "the seqs of both chains add up");
    let report = verify(&db.store, None, Some(&test_key().public_key()))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
    let mut per_chain: Vec<(String, u64)> = report
        .chains
        .iter()
        .map(|c| (c.chain_id.clone(), c.records))
        .collect();
    per_chain.sort();
    assert_eq!(per_chain.len(), 2, "{per_chain:?}");
    assert!(
        per_chain.iter().all(|(_, n)| *n > 0),
        "both lanes took records: {per_chain:?}"
    );
    assert_eq!(per_chain.iter().map(|(_, n)| n).sum::<u64>(), 400);
    // Every request's two records are in one chain: the first chain holds both or neither.
    for t in 0..8 {
        for i in 0..25 {
            let in_first = db
                .store
                .count_matching(&AuditQuery {
                    filter: AuditFilter {
                        request_id: Some(rec(t * 100 + i).request_id),
                        ..Default::default()
                    },
                    chain_id: Some("gw-l".into()),
                    ..Default::default()
                })
                .await
                .expect("count");
            assert!(in_first == 0 || in_first == 2, "request r{}", t * 100 + i);
        }
    }
}

/// A record numbered `i`: request id `r{i}`, varied subject, decision and target; every third
/// one is an outcome record with every outcome field set, the others decisions with an
/// argument digest on odd numbers.
pub(crate) fn rec(i: usize) -> AuditRecord {
    let mut r = AuditRecord::unauthenticated(
        format!("r{i}"),
        "tickets",
        "tools/call",
        ReasonCode::PolicyAllow,
        200,
    );
    r.time_ms = 1_000 * i64::try_from(i).expect("small");
    r.tenant = Some(["acme", "globex"][i % 2].into());
    r.subject = Some(["alice", "bob", "carol"][i % 3].into());
    r.target = Some(format!("tool_{}", i % 4));
    r.actors = vec!["agent-7".into()];
    r.scopes = vec!["tickets:read".into()];
    r.decision = if i.is_multiple_of(5) {
        Effect::Deny
    } else {
        Effect::Allow
    };
    r.trace_id = Some(format!("{i:032x}"));
    if i % 2 == 1 {
        r.args_digest = Some(format!("{i:064x}"));
        r.arguments = Some(format!(r#"{{"n":{i},"secret":"[redacted]"}}"#));
    }
    if i.is_multiple_of(3) {
        r = AuditRecord {
            time_ms: r.time_ms,
            ..AuditRecord::outcome(&r)
        };
        r.upstream_status = Some(200);
        r.upstream_latency_ms = Some(i64::try_from(i).expect("small") * 7);
        r.outcome = Some("ok".into());
        r.shown = vec![format!("tool_{i}"), "get_ticket".into()];
    }
    r
}

/// A deterministic test key.
pub(crate) fn test_key() -> SigningKey {
    SigningKey::from_seed(&[42; 32]).expect("key")
}

/// A config for chain `chain` with quick retries, one lane (so one chain) on both backends.
pub(crate) fn config(chain: &str) -> WriterConfig {
    WriterConfig {
        chain_id: Some(chain.into()),
        retry_backoff_ms: 5,
        max_retry_backoff_ms: 50,
        lanes: Some(1),
        ..Default::default()
    }
}

async fn count(store: &AuditStore) -> u64 {
    store.count(&AuditFilter::default()).await.expect("count")
}

/// How long `eventually_async` polls: generous, since it only stops a test that would otherwise
/// hang (never a timed assertion).
const WAIT: Duration = Duration::from_secs(30);

/// Installs a trigger that refuses every insert into `audit_records`.
pub(crate) async fn refuse_inserts(db: &TestDb) {
    if db.is_postgres() {
        db.raw(
            "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused'; END $$; \
             CREATE TRIGGER refuse_all BEFORE INSERT ON audit_records FOR EACH ROW \
             EXECUTE FUNCTION refuse_all();",
        )
        .await;
    } else {
        db.raw(
            "CREATE TRIGGER refuse_all BEFORE INSERT ON audit_records \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .await;
    }
}

pub(crate) async fn accept_inserts(db: &TestDb) {
    if db.is_postgres() {
        db.raw("DROP TRIGGER refuse_all ON audit_records").await;
    } else {
        db.raw("DROP TRIGGER refuse_all").await;
    }
}

async fn concurrent_durable_appends_commit_into_one_verified_chain(db: &TestDb) {
    let key = test_key();
    let public = key.public_key();
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-a"), Some(key))
        .await
        .expect("spawn");
    assert_eq!(writer.chain_id(), "gw-a");
    let w = writer.clone();
    let ids = append_concurrently(8, 250, move |t, i| {
        let w = w.clone();
        async move { w.append_durable(rec(t * 1000 + i)).await.expect("durable") }
    })
    .await;
    assert_eq!(ids.len(), 2000);
    // Acknowledged means committed: visible to a separate connection before shutdown.
    let other = db.reconnect().await;
    assert_eq!(count(&other).await, 2000);
    other.close().await;

    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(
        (stats.queued, stats.committed, stats.failed_batches),
        (2000, 2000, 0)
    );
    assert_eq!(stats.last_seq, 2000);
    assert!(stats.checkpoints >= 1, "{stats:?}");

    let report = verify(&db.store, None, Some(&public))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains.len(), 1);
    let chain = &report.chains[0];
    assert_eq!((chain.records, chain.last_seq), (2000, 2000));
    // The shutdown checkpoint covers the whole chain.
    assert_eq!(chain.signed_through, Some(2000));
    assert_eq!(report.unchained_records, 0);
}

async fn buffered_appends_are_all_committed_by_shutdown(db: &TestDb) {
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            checkpoint_every: 500,
            ..config("gw-b")
        },
        Some(test_key()),
    )
    .await
    .expect("spawn");
    for i in 0..2990 {
        writer.append_buffered(rec(i)).await.expect("buffered");
    }
    // The queue (10,000) has room: queued without waiting.
    for i in 2990..3000 {
        assert!(matches!(
            writer.try_append_buffered(rec(i)),
            TryAppend::Queued
        ));
    }
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!((stats.queued, stats.committed), (3000, 3000), "{stats:?}");
    assert_eq!(stats.buffered_records_lost_on_error, 0);
    assert_eq!(count(&db.store).await, 3000);
    let report = verify(&db.store, Some("gw-b"), Some(&test_key().public_key()))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
    // At least every 500 records (at the end of the batch that reaches them).
    assert!(report.chains[0].checkpoints >= 3, "{report:?}");
    assert_eq!(report.chains[0].signed_through, Some(3000));
}

/// Group commit without a linger for durable callers: with a flush interval of ten minutes, a
/// durable record is still committed within its 5 s durable timeout, alone on an idle writer
/// and after a buffered record that had started a batch (whose wait it cuts short: both are
/// committed when the durable caller returns). Shutdown does not wait for it either.
async fn a_durable_record_is_committed_without_waiting_for_the_flush_interval(db: &TestDb) {
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            flush_interval_ms: 600_000,
            durable_timeout_ms: 5_000,
            ..config("gw-linger")
        },
        None,
    )
    .await
    .expect("spawn");
    writer.append_durable(rec(1)).await.expect("alone");
    assert_eq!(count(&db.store).await, 1);

    writer.append_buffered(rec(2)).await.expect("buffered");
    writer
        .append_durable(rec(3))
        .await
        .expect("durable after a buffered record");
    assert_eq!(count(&db.store).await, 3);

    writer.append_buffered(rec(4)).await.expect("buffered");
    // `WAIT` only stops a regression that would otherwise hang for ten minutes.
    let stats = tokio::time::timeout(WAIT, writer.shutdown())
        .await
        .expect("shutdown does not wait out the flush interval")
        .expect("shutdown");
    assert_eq!(
        (stats.committed, stats.durable_failures),
        (4, 0),
        "{stats:?}"
    );
}

async fn a_restarted_writer_resumes_its_chain(db: &TestDb) {
    for round in 0..3 {
        let writer = AuditWriter::spawn(db.store.clone(), config("gw-r"), Some(test_key()))
            .await
            .expect("spawn");
        for i in 0..10 {
            writer
                .append_durable(rec(round * 10 + i))
                .await
                .expect("durable");
        }
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!(
            stats.last_seq,
            i64::try_from(round * 10 + 10).expect("small")
        );
    }
    // A record written around the writer is counted but not part of any chain.
    db.store
        .append_unchained(&rec(99))
        .await
        .expect("plain append");
    let report = verify(&db.store, None, Some(&test_key().public_key()))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains.len(), 1);
    assert_eq!(report.chains[0].last_seq, 30);
    assert_eq!(report.chains[0].checkpoints, 3);
    assert_eq!(report.unchained_records, 1);
}

async fn writers_with_different_chains_do_not_interfere(db: &TestDb) {
    let a = AuditWriter::spawn(db.store.clone(), config("replica-a"), None)
        .await
        .expect("a");
    // No chain id configured: a random one.
    let b = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            lanes: Some(1),
            ..WriterConfig::default()
        },
        None,
    )
    .await
    .expect("b");
    assert_eq!(b.chain_id().len(), 32);
    let (wa, wb) = (a.clone(), b.clone());
    let ta = tokio::spawn(async move {
        for i in 0..300 {
            wa.append_durable(rec(i)).await.expect("a");
        }
    });
    let tb = tokio::spawn(async move {
        for i in 0..300 {
            wb.append_durable(rec(i)).await.expect("b");
        }
    });
    ta.await.expect("ta");
    tb.await.expect("tb");
    a.shutdown().await.expect("a down");
    b.shutdown().await.expect("b down");
    let report = verify(&db.store, None, None).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains.len(), 2);
    assert!(report.chains.iter().all(|c| c.last_seq == 300));
}

async fn refused_inserts_fail_durable_callers_and_recover(db: &TestDb) {
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            retry_attempts: 1_000,
            ..config("gw-f")
        },
        Some(test_key()),
    )
    .await
    .expect("spawn");
    writer.append_durable(rec(1)).await.expect("before");
    refuse_inserts(db).await;
    let err = writer.append_durable(rec(2)).await.expect_err("refused");
    assert!(matches!(err, Error::BatchFailed { .. }), "{err:?}");
    // Buffered records wait in the writer for the store to come back.
    for i in 3..13 {
        writer.append_buffered(rec(i)).await.expect("queued");
    }
    eventually_async("the buffered records to be retried", WAIT, async || {
        let s = writer.stats();
        s.pending_retry == 10 && s.failed_batches >= 2
    })
    .await;
    accept_inserts(db).await;
    // The same writer recovers without a restart.
    let id = writer
        .append_durable(rec(13))
        .await
        .expect("after recovery");
    assert!(id > 0);
    eventually_async("the buffered records to commit", WAIT, async || {
        writer.stats().committed == 12
    })
    .await;
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.buffered_records_lost_on_error, 0);
    assert_eq!(stats.durable_failures, 1);
    assert_eq!(count(&db.store).await, 12);
    let report = verify(&db.store, None, Some(&test_key().public_key()))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains[0].last_seq, 12);
}

async fn buffered_records_are_given_up_after_the_retries_and_counted(db: &TestDb) {
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            retry_attempts: 3,
            ..config("gw-l")
        },
        None,
    )
    .await
    .expect("spawn");
    refuse_inserts(db).await;
    for i in 0..5 {
        writer.append_buffered(rec(i)).await.expect("queued");
    }
    eventually_async("the records to be given up", WAIT, async || {
        writer.stats().buffered_records_lost_on_error == 5
    })
    .await;
    assert_eq!(writer.stats().pending_retry, 0);
    assert!(writer.stats().failed_batches >= 3);
    accept_inserts(db).await;
    writer.append_durable(rec(9)).await.expect("recovered");
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(
        (stats.committed, stats.buffered_records_lost_on_error),
        (1, 5)
    );
    // The chain has no gap where the lost records would have been.
    let report = verify(&db.store, None, None).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains[0].last_seq, 1);
}

async fn a_blocked_store_times_out_and_fills_the_queue(db: &TestDb) {
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            queue_capacity: 1,
            max_batch: 1,
            enqueue_timeout_ms: 20,
            commit_timeout_ms: 300,
            retry_attempts: 1_000,
            ..config("gw-q")
        },
        None,
    )
    .await
    .expect("spawn");
    writer.append_durable(rec(0)).await.expect("before");
    let lock = db.lock_writes().await;
    // The commit cannot get the lock: the durable caller hears so within the commit timeout.
    let err = writer.append_durable(rec(1)).await.expect_err("blocked");
    match &err {
        Error::BatchFailed { source } => {
            assert!(matches!(**source, Error::CommitTimeout { .. }), "{err:?}")
        }
        other => panic!("expected BatchFailed, got {other:?}"),
    }
    // The writer holds one record and the queue one more; then callers are refused.
    let mut accepted = 0;
    let refused = loop {
        match writer.append_buffered(rec(10 + accepted)).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10, "the queue never filled");
    };
    assert!(matches!(refused, Error::QueueFull), "{refused:?}");
    assert_eq!(writer.stats().queue_full_rejections, 1);
    // Without waiting, a full queue hands the record back (and counts no refusal).
    let TryAppend::Full(back) = writer.try_append_buffered(rec(99)) else {
        panic!("a full queue hands the record back");
    };
    assert_eq!(*back, rec(99));
    assert_eq!(writer.stats().queue_full_rejections, 1);
    assert_eq!(writer.stats().queue_depth, 1);
    lock.release().await;
    let accepted = u64::try_from(accepted).expect("small");
    eventually_async("the accepted records to commit", WAIT, async || {
        writer.stats().committed == 1 + accepted
    })
    .await;
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.buffered_records_lost_on_error, 0);
    assert_eq!(count(&db.store).await, 1 + accepted);
    let report = verify(&db.store, None, None).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
}

async fn closed_writer_refuses_records(db: &TestDb) {
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-c"), None)
        .await
        .expect("spawn");
    let clone = writer.clone();
    let stats: WriterStats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.committed, 0);
    assert!(matches!(
        clone.append_buffered(rec(1)).await,
        Err(Error::WriterClosed)
    ));
    assert!(matches!(
        clone.append_durable(rec(1)).await,
        Err(Error::WriterClosed)
    ));
    assert!(matches!(
        clone.try_append_buffered(rec(1)),
        TryAppend::Refused(Error::WriterClosed, _)
    ));
    // Shutting down a second handle is harmless.
    clone.shutdown().await.expect("second shutdown");

    let bad = WriterConfig {
        max_batch: 0,
        ..config("gw-c")
    };
    assert!(matches!(
        AuditWriter::spawn(db.store.clone(), bad, None).await,
        Err(Error::Config { .. })
    ));
}

async fn following_and_searching_the_log(db: &TestDb) {
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-s"), None)
        .await
        .expect("spawn");
    let mut ids = Vec::new();
    for i in 1..=25 {
        ids.push(writer.append_durable(rec(i)).await.expect("durable"));
    }
    writer.shutdown().await.expect("shutdown");

    // Following: pages in insert order, resuming after the last id seen.
    let mut seen = Vec::new();
    let mut last = 0;
    loop {
        let page = db.store.query_after_id(last, 10).await.expect("page");
        let Some(tail) = page.last() else { break };
        last = tail.id;
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, ids);

    let q = AuditQuery {
        tenant: Some("acme".into()),
        target: Some("tool_2".into()),
        ..Default::default()
    };
    let got = db.store.search(&q).await.expect("search");
    let want: Vec<String> = (1..=25)
        .rev()
        .filter(|i| i % 2 == 0 && i % 4 == 2)
        .map(|i| format!("r{i}"))
        .collect();
    let got_ids: Vec<&str> = got.iter().map(|r| r.record.request_id.as_str()).collect();
    assert_eq!(got_ids, want);
    assert_eq!(
        db.store.count_matching(&q).await.expect("count"),
        u64::try_from(want.len()).expect("small")
    );
    let by_reason = AuditQuery {
        reason: Some(ReasonCode::PolicyAllow),
        method: Some("tools/call".into()),
        chain_id: Some("gw-s".into()),
        ..Default::default()
    };
    assert_eq!(
        db.store.count_matching(&by_reason).await.expect("count"),
        25
    );
    let none = AuditQuery {
        reason: Some(ReasonCode::TokenMissing),
        ..Default::default()
    };
    assert_eq!(db.store.count_matching(&none).await.expect("count"), 0);

    // Decision and outcome records apart: every third record is an outcome.
    let outcomes = AuditQuery {
        kind: Some(RecordKind::Outcome),
        ..Default::default()
    };
    let got = db.store.search(&outcomes).await.expect("search");
    let got_ids: Vec<&str> = got.iter().map(|r| r.record.request_id.as_str()).collect();
    let want: Vec<String> = (1..=25)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| format!("r{i}"))
        .collect();
    assert_eq!(got_ids, want);
    assert!(got.iter().all(|r| r.record.kind == RecordKind::Outcome));
    let decisions = AuditQuery {
        kind: Some(RecordKind::Decision),
        tenant: Some("acme".into()),
        ..Default::default()
    };
    assert_eq!(
        db.store.count_matching(&decisions).await.expect("count"),
        u64::try_from((1..=25).filter(|i| i % 3 != 0 && i % 2 == 0).count()).expect("small")
    );
}

/// The writer's insert paths (multi-row on SQLite, `UNNEST` on Postgres) store every field of
/// full and minimal records of both kinds, as `AuditStore::append` does.
async fn every_field_round_trips_through_the_writer(db: &TestDb) {
    use crate::store::{full, minimal, minimal_outcome};
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-f"), None)
        .await
        .expect("spawn");
    let records = [
        full("w-full"),
        AuditRecord {
            kind: RecordKind::Decision,
            ..full("w-full-decision")
        },
        minimal("w-minimal"),
        minimal_outcome("w-minimal-outcome"),
    ];
    // Durable and buffered, so some land in one batch together.
    let mut ids = Vec::new();
    for r in &records[..2] {
        ids.push(writer.append_durable(r.clone()).await.expect("durable"));
    }
    for r in &records[2..] {
        writer.append_buffered(r.clone()).await.expect("buffered");
    }
    writer.shutdown().await.expect("shutdown");
    for want in &records {
        let got = db
            .store
            .query(&AuditFilter {
                request_id: Some(want.request_id.clone()),
                ..Default::default()
            })
            .await
            .expect("query");
        assert_eq!(got.len(), 1, "{}", want.request_id);
        assert_eq!(&got[0].record, want);
    }
    assert_eq!(
        db.store
            .query(&AuditFilter {
                request_id: Some("w-full".into()),
                ..Default::default()
            })
            .await
            .expect("query")[0]
            .id,
        ids[0]
    );
    let report = verify(&db.store, Some("gw-f"), None).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chains[0].records, 4);
}

async fn nul_characters(db: &TestDb) {
    let writer = AuditWriter::spawn(db.store.clone(), config("gw-n"), None)
        .await
        .expect("spawn");
    let mut r = rec(1);
    r.target = Some("a\0b".into());
    let result = writer.append_durable(r.clone()).await;
    if db.is_postgres() {
        // Refused up front, so it cannot fail a whole batch of other records.
        assert!(
            matches!(result, Err(Error::Unstorable { field: "target" })),
            "{result:?}"
        );
        assert!(matches!(
            writer.append_buffered(r).await,
            Err(Error::Unstorable { .. })
        ));
    } else {
        result.expect("SQLite stores NUL");
    }
    writer
        .append_durable(rec(2))
        .await
        .expect("the next record");
    writer.shutdown().await.expect("shutdown");
    let report = verify(&db.store, None, None).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
}

/// Postgres outage: the database stops accepting connections and its sessions are killed;
/// durable callers get errors promptly, and the same writer recovers when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_outage_and_recovery() {
    let db = TestDb::postgres().await;
    let writer = AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            commit_timeout_ms: 500,
            retry_attempts: 10_000,
            ..config("gw-o")
        },
        Some(test_key()),
    )
    .await
    .expect("spawn");
    writer.append_durable(rec(1)).await.expect("before");
    let name = db.pg_name().to_owned();
    db.admin(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ))
    .await;
    let err = writer.append_durable(rec(2)).await.expect_err("outage");
    assert!(matches!(err, Error::BatchFailed { .. }), "{err:?}");
    for i in 3..8 {
        writer.append_buffered(rec(i)).await.expect("queued");
    }
    eventually_async(
        "the buffered records to wait for a retry",
        WAIT,
        async || writer.stats().pending_retry == 5,
    )
    .await;
    db.admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    // The pool reconnects on its own; the writer was never restarted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while writer.append_durable(rec(100)).await.is_err() {
        assert!(Instant::now() < deadline, "the writer never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually_async("the buffered records to commit", WAIT, async || {
        writer.stats().pending_retry == 0
    })
    .await;
    let stats = writer.shutdown().await.expect("shutdown");
    assert_eq!(stats.buffered_records_lost_on_error, 0);
    // rec(1), the five buffered records, and at least one rec(100).
    assert!(stats.committed >= 7, "{stats:?}");
    let report = verify(&db.store, None, Some(&test_key().public_key()))
        .await
        .expect("verify");
    assert!(report.is_intact(), "{report:?}");
}

/// Crash safety: the runtime running the writer and its callers is dropped abruptly; every
/// record that was acknowledged must be stored, and the chain must still verify and resume.
fn crash_keeps_every_acknowledged_record(db: TestDb, setup: tokio::runtime::Runtime) {
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let writer = crashing.block_on(async {
        let store = AuditStore::connect(db.url()).await.expect("connect");
        AuditWriter::spawn(store, config("gw-x"), Some(test_key()))
            .await
            .expect("spawn")
    });
    for t in 0..8 {
        let w = writer.clone();
        let acked = Arc::clone(&acked);
        crashing.spawn(async move {
            for i in 0.. {
                let r = rec(t * 1_000_000 + i);
                let request_id = r.request_id.clone();
                if let Ok(id) = w.append_durable(r).await {
                    acked.lock().expect("lock").push((id, request_id));
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 2_000 {
        assert!(Instant::now() < deadline, "no progress before the crash");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Abrupt: tasks are dropped wherever they are, transactions in flight included.
    crashing.shutdown_background();
    drop(writer);
    let acked = acked.lock().expect("lock").clone();

    setup.block_on(async {
        let store = db.reconnect().await;
        for chunk in acked.chunks(500) {
            let first = chunk.iter().map(|(id, _)| *id).min().expect("non-empty") - 1;
            let mut stored = std::collections::HashMap::new();
            let mut after = first;
            let last = chunk.iter().map(|(id, _)| *id).max().expect("non-empty");
            while after < last {
                let page = store.query_after_id(after, 10_000).await.expect("page");
                let Some(tail) = page.last() else { break };
                after = tail.id;
                stored.extend(page.into_iter().map(|r| (r.id, r.record.request_id)));
            }
            for (id, request_id) in chunk {
                assert_eq!(
                    stored.get(id),
                    Some(request_id),
                    "acknowledged record {id} is missing"
                );
            }
        }
        let report = verify(&store, None, Some(&test_key().public_key()))
            .await
            .expect("verify");
        assert!(report.is_intact(), "{report:?}");
        let before = report.chains[0].last_seq;
        assert!(before >= 2_000);
        // A new writer resumes the chain where the crash left it.
        let writer = AuditWriter::spawn(store.clone(), config("gw-x"), Some(test_key()))
            .await
            .expect("respawn");
        writer.append_durable(rec(7)).await.expect("after crash");
        let stats = writer.shutdown().await.expect("shutdown");
        assert_eq!(stats.last_seq, before + 1);
        let report = verify(&store, None, Some(&test_key().public_key()))
            .await
            .expect("verify");
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.chains[0].signed_through, Some(before + 1));
        store.close().await;
        db.store.close().await;
    });
}

fn setup_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn crash_keeps_every_acknowledged_record_sqlite() {
    let rt = setup_runtime();
    let db = rt.block_on(TestDb::sqlite());
    crash_keeps_every_acknowledged_record(db, rt);
}

#[test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
fn crash_keeps_every_acknowledged_record_postgres() {
    let rt = setup_runtime();
    let db = rt.block_on(TestDb::postgres());
    crash_keeps_every_acknowledged_record(db, rt);
}
