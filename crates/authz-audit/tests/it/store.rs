//! Behaviour of `AuditStore`, each check run on SQLite and on Postgres.

use authz_audit::{AuditStore, Backend, Error};
use authz_types::{AuditFilter, AuditRecord, Effect, ReasonCode, RecordKind};

use crate::db::TestDb;

on_both_backends!(
    round_trips_full_and_minimal_records,
    queries_filter_and_order_newest_first,
    limit_defaults_to_100_and_is_capped,
    batch_crosses_chunk_boundaries,
    empty_batch_writes_nothing,
    failed_batch_commits_nothing,
    failed_append_is_an_error,
    bad_stored_reason_is_corrupt,
    bad_stored_new_fields_are_corrupt,
    reconnecting_keeps_records_and_migrations_are_idempotent,
    concurrent_appends_all_land,
    closed_store_fails_closed,
    nul_in_text,
    a_fresh_database_gets_only_the_audit_tables,
);

/// A record with every field set, including edge values.
pub(crate) fn full(request_id: &str) -> AuditRecord {
    AuditRecord {
        time_ms: 1_767_225_600_123,
        kind: RecordKind::Outcome,
        request_id: request_id.into(),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        // Empty is not absent: Some("") must come back as Some("").
        session_id: Some(String::new()),
        tenant: Some("acme".into()),
        subject: Some("alice@example.com".into()),
        issuer: Some("https://idp.example/realms/ü".into()),
        client_id: Some("agent-app".into()),
        actors: vec![
            "agent-7".into(),
            "orchestrator \"prime\"".into(),
            String::new(),
        ],
        token_id: Some("jti-'quoted'".into()),
        scopes: vec!["tickets:read".into(), "tickets:write".into()],
        roles: vec!["reader".into(), "日本語".into()],
        upstream: "tickets".into(),
        method: "tools/call".into(),
        target: Some("get_ticket".into()),
        decision: Effect::Allow,
        reason: ReasonCode::PolicyAllow,
        matched_rule: Some("p, reader, default, tool:tickets/get_*, call, allow".into()),
        policy_revision: Some(i64::MAX),
        http_status: Some(u16::MAX),
        jsonrpc_error: Some(i64::MIN),
        upstream_status: Some(u16::MAX),
        upstream_latency_ms: Some(i64::MAX),
        outcome: Some("upstream_error".into()),
        args_digest: Some(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        ),
        // Redacted arguments as the gateway writes them: JSON text, kept byte for byte.
        arguments: Some(r#"{"id": 7, "password":"[redacted]", "ü":"\u0000"}"#.into()),
        shown: vec![
            "get_ticket".into(),
            "file:///tmp/a \"b\".txt".into(),
            String::new(),
        ],
        client_addr: Some("::ffff:203.0.113.9".into()),
        repeat_count: Some(i64::MAX),
        first_time_ms: Some(i64::MIN),
        first_round_request_id: Some("0198c3a1b2c34d5e8f90a1b2c3d4e5f6".into()),
        shadow: Some("deny no_matching_rule".into()),
    }
}

/// A record with only the required fields.
pub(crate) fn minimal(request_id: &str) -> AuditRecord {
    let mut r = AuditRecord::unauthenticated(request_id, "", "", ReasonCode::TokenMissing, 401);
    r.http_status = None;
    r.time_ms = 0;
    r
}

/// `minimal` as an outcome record with an empty-but-present value in every new option.
pub(crate) fn minimal_outcome(request_id: &str) -> AuditRecord {
    let mut r = AuditRecord::outcome(&minimal(request_id));
    r.time_ms = 0;
    r.trace_id = Some(String::new());
    r.upstream_status = Some(0);
    r.upstream_latency_ms = Some(0);
    r.outcome = Some(String::new());
    r.args_digest = Some(String::new());
    r.arguments = Some(String::new());
    r
}

fn by_request(id: &str) -> AuditFilter {
    AuditFilter {
        request_id: Some(id.into()),
        ..Default::default()
    }
}

/// A varied record for bulk tests: subject, decision and upstream cycle with `i`.
fn numbered(i: usize) -> AuditRecord {
    let mut r = full(&format!("req-{i}"));
    r.time_ms = 1_000 + i64::try_from(i).expect("small");
    r.subject = Some(["alice", "bob", "carol"][i % 3].into());
    r.decision = if i.is_multiple_of(2) {
        Effect::Allow
    } else {
        Effect::Deny
    };
    r.upstream = ["tickets", "wiki"][i % 2].into();
    r
}

async fn round_trips_full_and_minimal_records(db: &TestDb) {
    let s = &db.store;
    let full_record = full("full");
    let minimal_record = minimal("minimal");
    let id_full = s.append_unchained(&full_record).await.expect("append full");
    let id_min = s
        .append_unchained(&minimal_record)
        .await
        .expect("append minimal");
    assert!(id_min > id_full, "ids increase: {id_full} then {id_min}");

    let got = s.query(&by_request("full")).await.expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id_full);
    assert_eq!(got[0].record, full_record);

    let got = s.query(&by_request("minimal")).await.expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id_min);
    assert_eq!(got[0].record, minimal_record);

    // Empty is not absent for the new fields either, and a decision is not an outcome.
    let outcome = minimal_outcome("minimal-outcome");
    let decision = AuditRecord {
        kind: RecordKind::Decision,
        ..full("full-decision")
    };
    s.append_unchained_batch(&[outcome.clone(), decision.clone()])
        .await
        .expect("batch");
    for want in [&outcome, &decision] {
        let got = s.query(&by_request(&want.request_id)).await.expect("query");
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].record, want);
    }

    // Every reason code and both decisions survive the trip.
    let records: Vec<AuditRecord> = ReasonCode::ALL
        .iter()
        .enumerate()
        .map(|(i, reason)| {
            let mut r = minimal(&format!("reason-{i}"));
            r.reason = *reason;
            r.decision = if i.is_multiple_of(2) {
                Effect::Deny
            } else {
                Effect::Allow
            };
            r
        })
        .collect();
    s.append_unchained_batch(&records).await.expect("batch");
    for (i, want) in records.iter().enumerate() {
        let got = s
            .query(&by_request(&format!("reason-{i}")))
            .await
            .expect("q");
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].record, want);
    }
    let expected = match db.is_postgres() {
        true => Backend::Postgres,
        false => Backend::Sqlite,
    };
    assert_eq!(s.backend(), expected);
}

async fn queries_filter_and_order_newest_first(db: &TestDb) {
    let s = &db.store;
    let records: Vec<AuditRecord> = (0..30).map(numbered).collect();
    s.append_unchained_batch(&records).await.expect("batch");
    // Two records in the same millisecond: the later insert counts as newer.
    let mut tie_a = numbered(100);
    tie_a.time_ms = 5_000;
    tie_a.request_id = "tie-a".into();
    let mut tie_b = tie_a.clone();
    tie_b.request_id = "tie-b".into();
    let id_a = s.append_unchained(&tie_a).await.expect("a");
    let id_b = s.append_unchained(&tie_b).await.expect("b");

    let all = s.query(&AuditFilter::default()).await.expect("all");
    assert_eq!(all.len(), 32);
    assert_eq!((all[0].id, all[1].id), (id_b, id_a));
    for pair in all.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        assert!(
            (newer.record.time_ms, newer.id) > (older.record.time_ms, older.id),
            "not newest first: {} then {}",
            newer.id,
            older.id
        );
    }

    let check = |filter: AuditFilter, pred: fn(&AuditRecord) -> bool| {
        let want: Vec<&str> = {
            let mut v: Vec<&AuditRecord> = records.iter().filter(|r| pred(r)).collect();
            v.sort_by_key(|r| std::cmp::Reverse(r.time_ms));
            v.into_iter().map(|r| r.request_id.as_str()).collect()
        };
        async move {
            let got = s.query(&filter).await.expect("query");
            let got: Vec<String> = got.into_iter().map(|r| r.record.request_id).collect();
            assert_eq!(got, want, "filter {filter:?}");
            let n = s.count(&filter).await.expect("count");
            assert_eq!(
                n,
                u64::try_from(want.len()).expect("small"),
                "count {filter:?}"
            );
        }
    };
    // Restrict every filter to the numbered records' time span, leaving the ties out.
    let span = |f: AuditFilter| AuditFilter {
        until_ms: Some(2_000),
        ..f
    };
    check(
        span(AuditFilter {
            subject: Some("bob".into()),
            ..Default::default()
        }),
        |r| r.subject.as_deref() == Some("bob"),
    )
    .await;
    check(
        span(AuditFilter {
            decision: Some(Effect::Deny),
            ..Default::default()
        }),
        |r| r.decision == Effect::Deny,
    )
    .await;
    check(
        span(AuditFilter {
            upstream: Some("wiki".into()),
            ..Default::default()
        }),
        |r| r.upstream == "wiki",
    )
    .await;
    check(by_request("req-7"), |r| r.request_id == "req-7").await;
    check(
        AuditFilter {
            since_ms: Some(1_010),
            until_ms: Some(1_020),
            ..Default::default()
        },
        |r| (1_010..1_020).contains(&r.time_ms),
    )
    .await;
    check(
        span(AuditFilter {
            subject: Some("alice".into()),
            decision: Some(Effect::Allow),
            upstream: Some("tickets".into()),
            since_ms: Some(1_003),
            ..Default::default()
        }),
        |r| {
            r.subject.as_deref() == Some("alice")
                && r.decision == Effect::Allow
                && r.upstream == "tickets"
                && r.time_ms >= 1_003
        },
    )
    .await;
    check(
        AuditFilter {
            subject: Some("nobody".into()),
            ..Default::default()
        },
        |_| false,
    )
    .await;

    // A limit keeps the newest records; count ignores it.
    let limited = AuditFilter {
        limit: Some(5),
        until_ms: Some(2_000),
        ..Default::default()
    };
    let got = s.query(&limited).await.expect("limited");
    let ids: Vec<&str> = got.iter().map(|r| r.record.request_id.as_str()).collect();
    assert_eq!(ids, ["req-29", "req-28", "req-27", "req-26", "req-25"]);
    assert_eq!(s.count(&limited).await.expect("count"), 30);
    let none = AuditFilter {
        limit: Some(0),
        ..Default::default()
    };
    assert!(s.query(&none).await.expect("zero").is_empty());
}

async fn limit_defaults_to_100_and_is_capped(db: &TestDb) {
    let s = &db.store;
    let records: Vec<AuditRecord> = (0..10_001).map(numbered).collect();
    s.append_unchained_batch(&records).await.expect("batch");
    assert_eq!(
        s.query(&AuditFilter::default()).await.expect("q").len(),
        100
    );
    let huge = AuditFilter {
        limit: Some(u32::MAX),
        ..Default::default()
    };
    let got = s.query(&huge).await.expect("q");
    assert_eq!(got.len(), 10_000);
    assert_eq!(got[0].record.request_id, "req-10000");
}

async fn batch_crosses_chunk_boundaries(db: &TestDb) {
    let s = &db.store;
    let records: Vec<AuditRecord> = (0..2_500).map(numbered).collect();
    s.append_unchained_batch(&records).await.expect("batch");
    assert_eq!(
        s.count(&AuditFilter::default()).await.expect("count"),
        2_500
    );
    // Records from each chunk (900 rows per statement) come back intact.
    for i in [0, 999, 1_000, 1_999, 2_000, 2_499] {
        let got = s.query(&by_request(&format!("req-{i}"))).await.expect("q");
        assert_eq!(got.len(), 1, "req-{i}");
        assert_eq!(got[0].record, records[i]);
    }
    let bob_denied = AuditFilter {
        subject: Some("bob".into()),
        decision: Some(Effect::Deny),
        ..Default::default()
    };
    let want = (0..2_500).filter(|i| i % 3 == 1 && i % 2 == 1).count();
    assert_eq!(
        s.count(&bob_denied).await.expect("count"),
        u64::try_from(want).expect("small")
    );
}

async fn empty_batch_writes_nothing(db: &TestDb) {
    db.store
        .append_unchained_batch(&[])
        .await
        .expect("empty batch");
    assert_eq!(
        db.store
            .count(&AuditFilter::default())
            .await
            .expect("count"),
        0
    );
}

/// Installs a trigger that makes the database refuse any record with request id `poison`.
async fn install_poison_trigger(db: &TestDb) {
    if db.is_postgres() {
        db.raw(
            "CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'poison'; END $$; \
             CREATE TRIGGER reject_poison BEFORE INSERT ON audit_records FOR EACH ROW \
             WHEN (NEW.request_id = 'poison') EXECUTE FUNCTION reject_poison();",
        )
        .await;
    } else {
        db.raw(
            "CREATE TRIGGER reject_poison BEFORE INSERT ON audit_records \
             WHEN NEW.request_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END;",
        )
        .await;
    }
}

async fn failed_batch_commits_nothing(db: &TestDb) {
    install_poison_trigger(db).await;
    let s = &db.store;
    let mut records: Vec<AuditRecord> = (0..2_500).map(numbered).collect();
    // In the third statement, after two chunks were already inserted.
    records[2_100].request_id = "poison".into();
    let err = s
        .append_unchained_batch(&records)
        .await
        .expect_err("poisoned batch");
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    assert_eq!(s.count(&AuditFilter::default()).await.expect("count"), 0);
    // The store is still usable afterwards.
    records[2_100].request_id = "fine".into();
    s.append_unchained_batch(&records)
        .await
        .expect("clean batch");
    assert_eq!(
        s.count(&AuditFilter::default()).await.expect("count"),
        2_500
    );
}

async fn failed_append_is_an_error(db: &TestDb) {
    install_poison_trigger(db).await;
    let err = db
        .store
        .append_unchained(&full("poison"))
        .await
        .expect_err("poisoned");
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
    assert_eq!(
        db.store
            .count(&AuditFilter::default())
            .await
            .expect("count"),
        0
    );
}

async fn bad_stored_reason_is_corrupt(db: &TestDb) {
    let good = db
        .store
        .append_unchained(&full("good"))
        .await
        .expect("append");
    db.raw(
        "INSERT INTO audit_records (time_ms, request_id, actors, scopes, roles, upstream, method, \
         decision, reason) VALUES (99, 'bad', '[]', '[]', '[]', 'u', 'm', 'deny', 'not_a_reason')",
    )
    .await;
    let err = db
        .store
        .query(&AuditFilter::default())
        .await
        .expect_err("corrupt row");
    match err {
        Error::Corrupt { id, field } => {
            assert_eq!(field, "reason");
            assert_ne!(id, good);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Queries that do not touch the bad row, and counts, still work.
    let got = db.store.query(&by_request("good")).await.expect("good row");
    assert_eq!(got[0].id, good);
    assert_eq!(
        db.store
            .count(&AuditFilter::default())
            .await
            .expect("count"),
        2
    );
}

/// Unknown kinds and malformed `shown` lists are reported, never guessed. (An out-of-range
/// `upstream_status` cannot be stored: a CHECK refuses it, like `http_status`.)
async fn bad_stored_new_fields_are_corrupt(db: &TestDb) {
    let good = db
        .store
        .append_unchained(&full("good"))
        .await
        .expect("append");
    for (field, set) in [
        ("kind", "kind = 'Outcome'"),
        ("shown", "shown = '{\"a\":1}'"),
    ] {
        db.raw(&format!("UPDATE audit_records SET {set} WHERE id = {good}"))
            .await;
        match db.store.query(&by_request("good")).await {
            Err(Error::Corrupt { id, field: f }) => assert_eq!((id, f), (good, field)),
            other => panic!("{field}: expected Corrupt, got {other:?}"),
        }
        // Put the good value back (the record's own) before spoiling the next column.
        db.raw(&format!(
            "UPDATE audit_records SET kind = 'outcome', \
             shown = '[\"get_ticket\",\"file:///tmp/a \\\"b\\\".txt\",\"\"]' WHERE id = {good}"
        ))
        .await;
        assert_eq!(
            db.store.query(&by_request("good")).await.expect("q")[0].record,
            full("good")
        );
    }
}

async fn reconnecting_keeps_records_and_migrations_are_idempotent(db: &TestDb) {
    let r = full("persisted");
    let id = db.store.append_unchained(&r).await.expect("append");
    db.store.close().await;
    // Twice: the second connect finds every migration applied and changes nothing.
    for _ in 0..2 {
        let store = db.reconnect().await;
        let got = store.query(&AuditFilter::default()).await.expect("query");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id, &got[0].record), (id, &r));
        store.close().await;
    }
    let store = db.reconnect().await;
    let next = store
        .append_unchained(&full("after"))
        .await
        .expect("append after reopen");
    assert!(next > id);
    store.close().await;
}

/// Runs `callers` tasks at once, task `t` making its `each` appends one after the other with
/// `append(t, i)`; returns every id the appends returned, sorted and deduplicated.
pub(crate) async fn append_concurrently<F, Fut>(callers: usize, each: usize, append: F) -> Vec<i64>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = i64> + Send + 'static,
{
    let mut tasks = Vec::new();
    for t in 0..callers {
        let append = append.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(each);
            for i in 0..each {
                ids.push(append(t, i).await);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("task"));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

async fn concurrent_appends_all_land(db: &TestDb) {
    let store = db.store.clone();
    let ids = append_concurrently(8, 25, move |t, i| {
        let store = store.clone();
        async move {
            store
                .append_unchained(&full(&format!("t{t}-{i}")))
                .await
                .expect("append")
        }
    })
    .await;
    assert_eq!(ids.len(), 200);
    assert_eq!(
        db.store
            .count(&AuditFilter::default())
            .await
            .expect("count"),
        200
    );
}

async fn closed_store_fails_closed(db: &TestDb) {
    db.store.ping().await.expect("ping");
    let clone = db.store.clone();
    db.store.close().await;
    assert!(matches!(clone.ping().await, Err(Error::Read { .. })));
    let err = clone
        .append_unchained(&full("late"))
        .await
        .expect_err("closed");
    assert!(matches!(err, Error::Write { .. }), "{err:?}");
}

/// Connecting to a fresh database creates the audit store's own tables and no other store's.
async fn a_fresh_database_gets_only_the_audit_tables(db: &TestDb) {
    db.store.close().await;
    assert_eq!(
        db.tables().await,
        [
            "_sqlx_migrations",
            "audit_checkpoints",
            "audit_records",
            "audit_ship_cursors"
        ]
    );
}

/// SQLite stores NUL characters; Postgres text cannot hold them, so the write is refused (an
/// error the gateway fails closed on), never truncated.
async fn nul_in_text(db: &TestDb) {
    let r = full("nul\0inside");
    let result = db.store.append_unchained(&r).await;
    if db.is_postgres() {
        assert!(matches!(result, Err(Error::Write { .. })), "{result:?}");
    } else {
        result.expect("SQLite takes NUL");
        let got = db.store.query(&by_request("nul\0inside")).await.expect("q");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].record, r);
    }
}

#[tokio::test]
async fn unreachable_postgres_error_hides_the_password() {
    let err = AuditStore::connect("postgres://u:secret@127.0.0.1:1/x")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("postgres://u:***@127.0.0.1:1/x"), "{text}");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://u:secret@h/db", "sqlite::memory:", "audit.db"] {
        let err = AuditStore::connect(url).await.expect_err(url);
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        assert!(!err.to_string().contains("secret"));
    }
}

#[tokio::test]
async fn sqlite_without_mode_creates_the_file_and_read_only_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plain.db");
    let store = AuditStore::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("created");
    store.close().await;
    assert!(path.exists());

    let missing = dir.path().join("missing.db");
    let err = AuditStore::connect(&format!("sqlite://{}?mode=rw", missing.display()))
        .await
        .expect_err("mode=rw does not create");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!missing.exists());
}
