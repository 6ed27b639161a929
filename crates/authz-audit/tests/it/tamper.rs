//! Tamper evidence: raw SQL edits, deletions, insertions and reorderings of a written chain are
//! each detected and named by `verify`; checkpoints and pruning anchors are checked.

use authz_audit::{
    AuditQuery, AuditWriter, GENESIS_HASH, HashVersion, PublicKey, SigningKey, Tamper,
    VerifyReport, WriterConfig, record_hash, record_hash_with, verify,
};
use authz_types::{AuditFilter, AuditRecord, Effect, ReasonCode, RecordKind};

use crate::db::TestDb;
use crate::writer::{config, rec, test_key};

on_both_backends!(
    an_intact_chain_verifies,
    an_edited_field_is_named,
    a_deleted_record_is_named,
    a_deletion_hidden_by_renumbering_is_named,
    a_forged_record_with_a_valid_hash_is_named_inserted,
    a_forged_record_with_garbage_hashes_is_named_inserted,
    swapped_records_are_named_reordered,
    a_cut_off_tail_is_named_deleted,
    checkpoints_are_checked,
    pruning_leaves_a_verifiable_chain,
    edits_of_the_new_fields_are_named,
    a_changed_hash_version_is_named_edited,
    a_chain_mixing_v1_and_v2_rows_verifies,
    a_chain_mixing_v3_and_v4_rows_verifies,
    a_chain_mixing_v4_and_v5_rows_verifies,
);

const CHAIN: &str = "c1";

/// Writes records 1..=20 to chain `c1`, one per batch, so record `i` has seq `i`; a checkpoint
/// every 5 records.
async fn twenty(db: &TestDb, key: Option<SigningKey>) {
    let writer = checkpointing_writer(db, key).await;
    for i in 1..=20 {
        writer.append_durable(rec(i)).await.expect("append");
    }
    writer.shutdown().await.expect("shutdown");
}

/// The hashes of records 0..=20 as the test computes them from the documented encoding:
/// `hashes[i]` is the hash of seq `i` (`hashes[0]` the genesis value).
fn expected_hashes() -> Vec<[u8; 32]> {
    let mut hashes = vec![GENESIS_HASH];
    for i in 1..=20 {
        let prev = hashes[i - 1];
        hashes.push(record_hash(
            &rec(i),
            CHAIN,
            i64::try_from(i).expect("small"),
            &prev,
        ));
    }
    hashes
}

/// Writes [`twenty`] records without a key, runs `sql` on them as an attacker with write access
/// would, and verifies without a key.
async fn tampered(db: &TestDb, sql: &str) -> VerifyReport {
    twenty(db, None).await;
    db.raw(sql).await;
    report(db, None).await
}

async fn id_of(db: &TestDb, request_id: &str) -> i64 {
    let found = db
        .store
        .search(&AuditQuery {
            filter: AuditFilter {
                request_id: Some(request_id.into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(found.len(), 1, "{request_id}");
    found[0].id
}

async fn report(db: &TestDb, key: Option<&PublicKey>) -> VerifyReport {
    verify(&db.store, None, key).await.expect("verify")
}

/// Asserts the first problem's kind, seq and record id.
fn assert_problem(report: &VerifyReport, kind: Tamper, seq: i64, record_id: Option<i64>) {
    let Some(problem) = report.first_problem() else {
        panic!("expected {kind:?} at seq {seq}, but the chain verified: {report:?}")
    };
    assert_eq!(
        (
            problem.kind,
            problem.seq,
            problem.record_id,
            problem.chain_id.as_str()
        ),
        (kind, seq, record_id, CHAIN),
        "{problem:?}"
    );
    assert!(!problem.detail.is_empty());
    assert!(!report.is_intact());
}

/// Verifies (checking signatures with `key`) and asserts the first problem's kind and seq, on
/// the record with `request_id`; returns the report.
async fn assert_named(
    db: &TestDb,
    key: Option<&PublicKey>,
    kind: Tamper,
    seq: i64,
    request_id: &str,
) -> VerifyReport {
    let r = report(db, key).await;
    assert_problem(&r, kind, seq, Some(id_of(db, request_id).await));
    r
}

/// A writer on chain `c1` that writes a checkpoint every 5 records, signed with `key`.
async fn checkpointing_writer(db: &TestDb, key: Option<SigningKey>) -> AuditWriter {
    AuditWriter::spawn(
        db.store.clone(),
        WriterConfig {
            checkpoint_every: 5,
            ..config(CHAIN)
        },
        key,
    )
    .await
    .expect("spawn")
}

/// Moves records with seq >= `from` one place up, making room at `from`.
async fn shift_up(db: &TestDb, from: i64) {
    db.raw(&format!(
        "UPDATE audit_records SET seq = -seq - 1 WHERE chain_id = '{CHAIN}' AND seq >= {from}; \
         UPDATE audit_records SET seq = -seq WHERE chain_id = '{CHAIN}' AND seq < 0;"
    ))
    .await;
}

/// A record that never happened: an allowed call with no identity, no target and no rule, as
/// the columns [`insert_forged`] writes hold it.
fn forged() -> AuditRecord {
    let shape = AuditRecord::unauthenticated(
        "forged",
        "tickets",
        "tools/call",
        ReasonCode::PolicyAllow,
        0,
    );
    AuditRecord {
        time_ms: 7_500,
        decision: Effect::Allow,
        http_status: None,
        ..shape
    }
}

async fn insert_forged(db: &TestDb, seq: i64, prev: &[u8], hash: &[u8]) {
    let f = forged();
    db.raw(&format!(
        "INSERT INTO audit_records (time_ms, request_id, actors, scopes, roles, upstream, method, \
         decision, reason, chain_id, seq, prev_hash, hash, hash_version) VALUES ({}, '{}', '[]', \
         '[]', '[]', '{}', '{}', '{}', '{}', '{CHAIN}', {seq}, {}, {}, {})",
        f.time_ms,
        f.request_id,
        f.upstream,
        f.method,
        f.decision.as_str(),
        f.reason.as_str(),
        db.blob(prev),
        db.blob(hash),
        HashVersion::CURRENT.number(),
    ))
    .await;
}

async fn an_intact_chain_verifies(db: &TestDb) {
    twenty(db, Some(test_key())).await;
    let r = report(db, Some(&test_key().public_key())).await;
    assert!(r.is_intact(), "{r:?}");
    let c = &r.chains[0];
    assert_eq!((c.records, c.last_seq, c.checkpoints), (20, 20, 4));
    assert_eq!((c.anchor_seq, c.signed_through), (None, Some(20)));
    // Only the chain asked for.
    let none = verify(&db.store, Some("other"), None)
        .await
        .expect("verify");
    assert!(none.is_intact());
    assert_eq!(none.chains[0].records, 0);
}

async fn an_edited_field_is_named(db: &TestDb) {
    twenty(db, Some(test_key())).await;
    db.raw(&format!(
        "UPDATE audit_records SET decision = 'deny' WHERE chain_id = '{CHAIN}' AND seq = 7"
    ))
    .await;
    let public = test_key().public_key();
    let r = assert_named(db, Some(&public), Tamper::Edited, 7, "r7").await;
    // Records before the edit are vouched for.
    assert_eq!(r.chains[0].records, 6);
}

async fn a_deleted_record_is_named(db: &TestDb) {
    let sql = format!("DELETE FROM audit_records WHERE chain_id = '{CHAIN}' AND seq = 7");
    assert_problem(&tampered(db, &sql).await, Tamper::Deleted, 7, None);
}

async fn a_deletion_hidden_by_renumbering_is_named(db: &TestDb) {
    let sql = format!(
        "DELETE FROM audit_records WHERE chain_id = '{CHAIN}' AND seq = 8; \
         UPDATE audit_records SET seq = -(seq - 1) WHERE chain_id = '{CHAIN}' AND seq > 8; \
         UPDATE audit_records SET seq = -seq WHERE chain_id = '{CHAIN}' AND seq < 0;"
    );
    assert_problem(&tampered(db, &sql).await, Tamper::Deleted, 8, None);
}

async fn a_forged_record_with_a_valid_hash_is_named_inserted(db: &TestDb) {
    twenty(db, Some(test_key())).await;
    // The best an attacker without the key can do: make room, and link a correctly hashed
    // forged record to its predecessor.
    let hashes = expected_hashes();
    shift_up(db, 8).await;
    let hash = record_hash(&forged(), CHAIN, 8, &hashes[7]);
    insert_forged(db, 8, &hashes[7], &hash).await;
    assert_named(db, None, Tamper::Inserted, 8, "forged").await;
}

async fn a_forged_record_with_garbage_hashes_is_named_inserted(db: &TestDb) {
    twenty(db, None).await;
    shift_up(db, 8).await;
    insert_forged(db, 8, &[1; 32], &[2; 32]).await;
    assert_named(db, None, Tamper::Inserted, 8, "forged").await;
}

async fn swapped_records_are_named_reordered(db: &TestDb) {
    let sql = format!(
        "UPDATE audit_records SET seq = -1 WHERE chain_id = '{CHAIN}' AND seq = 7; \
         UPDATE audit_records SET seq = 7 WHERE chain_id = '{CHAIN}' AND seq = 8; \
         UPDATE audit_records SET seq = 8 WHERE chain_id = '{CHAIN}' AND seq = -1;"
    );
    let r = tampered(db, &sql).await;
    // Seq 7 now holds the record written eighth.
    assert_problem(&r, Tamper::Reordered, 7, Some(id_of(db, "r8").await));
}

async fn a_cut_off_tail_is_named_deleted(db: &TestDb) {
    let sql = format!("DELETE FROM audit_records WHERE chain_id = '{CHAIN}' AND seq >= 19");
    // The checkpoint at seq 20 remembers the records.
    assert_problem(&tampered(db, &sql).await, Tamper::Deleted, 19, None);
}

async fn checkpoints_are_checked(db: &TestDb) {
    let key = test_key();
    let public = key.public_key();
    twenty(db, Some(key)).await;
    let wrong = SigningKey::from_seed(&[1; 32]).expect("key").public_key();
    assert_problem(
        &report(db, Some(&wrong)).await,
        Tamper::BadCheckpoint,
        5,
        None,
    );

    // The time is covered by the signature only.
    db.raw("UPDATE audit_checkpoints SET time_ms = time_ms + 1 WHERE seq = 10")
        .await;
    assert!(report(db, None).await.is_intact());
    let r = report(db, Some(&public)).await;
    assert_problem(&r, Tamper::BadCheckpoint, 10, None);
    assert_eq!(r.chains[0].signed_through, Some(5));

    // A checkpoint that disagrees with the chain is bad with or without a key.
    db.raw(&format!(
        "UPDATE audit_checkpoints SET hash = {} WHERE seq = 10",
        db.blob(&[9; 32])
    ))
    .await;
    assert_problem(&report(db, None).await, Tamper::BadCheckpoint, 10, None);
    db.raw("DELETE FROM audit_checkpoints WHERE seq = 10").await;
    assert!(report(db, Some(&public)).await.is_intact());
}

async fn pruning_leaves_a_verifiable_chain(db: &TestDb) {
    let key = test_key();
    let public = key.public_key();
    let writer = checkpointing_writer(db, Some(test_key())).await;
    for i in 1..=30 {
        let mut r = rec(i);
        // Times are not ordered along the chain: record 5 is late.
        if i == 5 {
            r.time_ms = 50_000;
        }
        writer.append_durable(r).await.expect("append");
    }
    writer.shutdown().await.expect("shutdown");
    db.store.append_unchained(&rec(0)).await.expect("unchained");

    // Only the prefix before the first young record goes.
    let pruned = db
        .store
        .prune_before(10_500, Some(&key))
        .await
        .expect("prune");
    assert_eq!(
        (
            pruned.chained_deleted,
            pruned.unchained_deleted,
            pruned.anchors.clone()
        ),
        (4, 1, vec![(CHAIN.to_owned(), 4)])
    );
    let r = report(db, Some(&public)).await;
    assert!(r.is_intact(), "{r:?}");
    let c = &r.chains[0];
    assert_eq!((c.anchor_seq, c.records, c.last_seq), (Some(4), 26, 30));
    assert_eq!(c.signed_through, Some(30));

    // A record put back before the anchor is not part of the chain.
    insert_forged(db, 2, &[1; 32], &[2; 32]).await;
    assert_named(db, None, Tamper::Inserted, 2, "forged").await;
    db.raw("DELETE FROM audit_records WHERE request_id = 'forged'")
        .await;

    // Everything goes; the chain continues from the anchor.
    let pruned = db
        .store
        .prune_before(1_000_000, Some(&key))
        .await
        .expect("prune");
    assert_eq!(pruned.chained_deleted, 26);
    assert_eq!(db.store.count(&AuditFilter::default()).await.expect("n"), 0);
    let writer = AuditWriter::spawn(db.store.clone(), config(CHAIN), Some(test_key()))
        .await
        .expect("respawn");
    writer.append_durable(rec(31)).await.expect("append");
    assert_eq!(writer.shutdown().await.expect("shutdown").last_seq, 31);
    let r = report(db, Some(&public)).await;
    assert!(r.is_intact(), "{r:?}");
    let c = &r.chains[0];
    assert_eq!((c.anchor_seq, c.records, c.last_seq), (Some(30), 1, 31));

    // An anchor written without the key does not verify against it.
    db.store.prune_before(1_000_000, None).await.expect("prune");
    assert_problem(
        &report(db, Some(&public)).await,
        Tamper::BadCheckpoint,
        31,
        None,
    );
    assert!(report(db, None).await.is_intact());
}

async fn edits_of_the_new_fields_are_named(db: &TestDb) {
    twenty(db, Some(test_key())).await;
    let public = test_key().public_key();
    // Each edit is earlier in the chain than the one before, so it is the first problem.
    let edits = [
        // A retry's link to its first round, added afterwards.
        (19, "first_round_request_id = 'r1'"),
        // Record 18 is an outcome: what the caller was shown.
        (18, r#"shown = '["tool_18"]'"#),
        (15, "upstream_status = 500"),
        (13, r#"arguments = '{"n":13,"secret":"hunter2"}'"#),
        (12, "upstream_latency_ms = 1"),
        (11, "args_digest = NULL"),
        (9, "outcome = 'timeout'"),
        (8, "trace_id = 'forged'"),
        // A decision passed off as an outcome.
        (7, "kind = 'outcome'"),
        // What a decision record never had.
        (4, r#"shown = '["x"]'"#),
    ];
    for (seq, set) in edits {
        db.raw(&format!(
            "UPDATE audit_records SET {set} WHERE chain_id = '{CHAIN}' AND seq = {seq}"
        ))
        .await;
        let r = assert_named(db, Some(&public), Tamper::Edited, seq, &format!("r{seq}")).await;
        assert_eq!(r.chains[0].records, u64::try_from(seq - 1).expect("small"));
    }
}

async fn a_changed_hash_version_is_named_edited(db: &TestDb) {
    twenty(db, None).await;
    // Rows are written in the current encoding; neither an unknown version nor an older one
    // reproduces their hash.
    for (seq, version) in [(12, 6), (11, 4), (10, 3), (8, 2), (4, 1)] {
        db.raw(&format!(
            "UPDATE audit_records SET hash_version = {version} WHERE chain_id = '{CHAIN}' \
             AND seq = {seq}"
        ))
        .await;
        assert_named(db, None, Tamper::Edited, seq, &format!("r{seq}")).await;
    }
    db.raw(&format!(
        "UPDATE audit_records SET hash_version = {} WHERE chain_id = '{CHAIN}'",
        HashVersion::CURRENT.number()
    ))
    .await;
    assert!(report(db, None).await.is_intact());
}

/// A decision record as written before the record grew: every new field at its default.
fn v1_record(i: usize) -> AuditRecord {
    let mut r = rec(i);
    r.kind = RecordKind::Decision;
    r.trace_id = None;
    r.upstream_status = None;
    r.upstream_latency_ms = None;
    r.outcome = None;
    r.args_digest = None;
    r.arguments = None;
    r.shown = Vec::new();
    r
}

/// Plants records 1..=5 as a version-1 chain (as a writer before migration 0006 left them),
/// then lets a current writer continue the chain with records 6..=10.
async fn mixed_chain(db: &TestDb) {
    let mut prev = GENESIS_HASH;
    for i in 1..=5 {
        let r = v1_record(i);
        let seq = i64::try_from(i).expect("small");
        let hash = record_hash_with(HashVersion::V1, &r, CHAIN, seq, &prev).expect("fits v1");
        let id = db.store.append_unchained(&r).await.expect("append");
        db.raw(&format!(
            "UPDATE audit_records SET chain_id = '{CHAIN}', seq = {seq}, prev_hash = {}, \
             hash = {}, hash_version = 1 WHERE id = {id}",
            db.blob(&prev),
            db.blob(&hash)
        ))
        .await;
        prev = hash;
    }
    let writer = checkpointing_writer(db, Some(test_key())).await;
    for i in 6..=10 {
        writer.append_durable(rec(i)).await.expect("append");
    }
    assert_eq!(writer.shutdown().await.expect("shutdown").last_seq, 10);
}

async fn a_chain_mixing_v1_and_v2_rows_verifies(db: &TestDb) {
    mixed_chain(db).await;
    let r = report(db, Some(&test_key().public_key())).await;
    assert!(r.is_intact(), "{r:?}");
    let c = &r.chains[0];
    assert_eq!(
        (c.records, c.last_seq, c.signed_through),
        (10, 10, Some(10))
    );
    // The version-2 rows hash as the documented encoding says, continuing from the last
    // version-1 row.
    let mut prev = GENESIS_HASH;
    for i in 1..=5 {
        let seq = i64::try_from(i).expect("small");
        prev = record_hash_with(HashVersion::V1, &v1_record(i), CHAIN, seq, &prev).expect("v1");
    }
    for i in 6..=10 {
        prev = record_hash(&rec(i), CHAIN, i64::try_from(i).expect("small"), &prev);
    }
    let stored = db
        .fetch_bytes(&format!(
            "SELECT hash FROM audit_records WHERE chain_id = '{CHAIN}' AND seq = 10"
        ))
        .await;
    assert_eq!(stored, prev);

    // A version-1 row cannot vouch for columns it did not cover: filling one in is an edit.
    db.raw(&format!(
        r#"UPDATE audit_records SET shown = '["x"]' WHERE chain_id = '{CHAIN}' AND seq = 3"#
    ))
    .await;
    assert_named(db, None, Tamper::Edited, 3, "r3").await;
    db.raw(&format!(
        "UPDATE audit_records SET shown = '[]' WHERE chain_id = '{CHAIN}' AND seq = 3"
    ))
    .await;
    assert!(report(db, None).await.is_intact());
    // Nor can a version-1 row be relabelled as version 2, or the other way round.
    for (seq, version) in [(7, 1), (2, 2)] {
        db.raw(&format!(
            "UPDATE audit_records SET hash_version = {version} WHERE chain_id = '{CHAIN}' \
             AND seq = {seq}"
        ))
        .await;
        assert_named(db, None, Tamper::Edited, seq, &format!("r{seq}")).await;
    }
}

/// Record `i` as a version-3 writer (before migration 0010) wrote it: the client address set,
/// no first round.
fn v3_record(i: usize) -> AuditRecord {
    let mut r = rec(i);
    r.client_addr = Some(format!("192.0.2.{i}"));
    r.first_round_request_id = None;
    r
}

/// Record `i` as a retry of a multi round-trip call whose first round was `r1`.
fn v4_record(i: usize) -> AuditRecord {
    let mut r = v3_record(i);
    r.first_round_request_id = Some("r1".into());
    r
}

async fn a_chain_mixing_v3_and_v4_rows_verifies(db: &TestDb) {
    // Records 1..=5 planted as version-3 rows, as a writer before migration 0010 left them.
    let mut prev = GENESIS_HASH;
    for i in 1..=5 {
        let r = v3_record(i);
        let seq = i64::try_from(i).expect("small");
        let hash = record_hash_with(HashVersion::V3, &r, CHAIN, seq, &prev).expect("fits v3");
        let id = db.store.append_unchained(&r).await.expect("append");
        db.raw(&format!(
            "UPDATE audit_records SET chain_id = '{CHAIN}', seq = {seq}, prev_hash = {}, \
             hash = {}, hash_version = 3 WHERE id = {id}",
            db.blob(&prev),
            db.blob(&hash)
        ))
        .await;
        prev = hash;
    }
    // A current writer continues the chain with retries linked to their first round.
    let writer = checkpointing_writer(db, Some(test_key())).await;
    for i in 6..=10 {
        writer.append_durable(v4_record(i)).await.expect("append");
    }
    assert_eq!(writer.shutdown().await.expect("shutdown").last_seq, 10);
    let r = report(db, Some(&test_key().public_key())).await;
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.chains[0].records, 10);
    // The version-4 rows hash as the documented encoding says, and the link reads back.
    for i in 6..=10 {
        prev = record_hash(
            &v4_record(i),
            CHAIN,
            i64::try_from(i).expect("small"),
            &prev,
        );
    }
    let stored = db
        .fetch_bytes(&format!(
            "SELECT hash FROM audit_records WHERE chain_id = '{CHAIN}' AND seq = 10"
        ))
        .await;
    assert_eq!(stored, prev);
    let got = db
        .store
        .query(&AuditFilter {
            request_id: Some("r8".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("query");
    assert_eq!(got[0].record.first_round_request_id.as_deref(), Some("r1"));

    // A version-4 row's link cannot be changed, nor one given to a version-3 row, nor a
    // version-4 row relabelled as version 3. Each edit is earlier than the one before.
    let edits = [
        (9, "first_round_request_id = 'r2'".to_owned()),
        (8, "first_round_request_id = NULL".to_owned()),
        (7, "hash_version = 3".to_owned()),
        (4, "first_round_request_id = 'r1'".to_owned()),
    ];
    for (seq, set) in edits {
        db.raw(&format!(
            "UPDATE audit_records SET {set} WHERE chain_id = '{CHAIN}' AND seq = {seq}"
        ))
        .await;
        assert_named(db, None, Tamper::Edited, seq, &format!("r{seq}")).await;
    }
}

fn v5_record(i: usize) -> AuditRecord {
    let mut r = v4_record(i);
    r.shadow = Some(format!("allow policy_allow: rule {i}"));
    r
}

async fn a_chain_mixing_v4_and_v5_rows_verifies(db: &TestDb) {
    // Records 1..=5 planted as version-4 rows, as a writer before migration 0015 left them.
    let mut prev = GENESIS_HASH;
    for i in 1..=5 {
        let r = v4_record(i);
        let seq = i64::try_from(i).expect("small");
        let hash = record_hash_with(HashVersion::V4, &r, CHAIN, seq, &prev).expect("fits v4");
        let id = db.store.append_unchained(&r).await.expect("append");
        db.raw(&format!(
            "UPDATE audit_records SET chain_id = '{CHAIN}', seq = {seq}, prev_hash = {}, \
             hash = {}, hash_version = 4 WHERE id = {id}",
            db.blob(&prev),
            db.blob(&hash)
        ))
        .await;
        prev = hash;
    }
    // A current writer continues the chain with shadow decisions on its records.
    let writer = checkpointing_writer(db, Some(test_key())).await;
    for i in 6..=10 {
        writer.append_durable(v5_record(i)).await.expect("append");
    }
    assert_eq!(writer.shutdown().await.expect("shutdown").last_seq, 10);
    let r = report(db, Some(&test_key().public_key())).await;
    assert!(r.is_intact(), "{r:?}");
    for i in 6..=10 {
        prev = record_hash(
            &v5_record(i),
            CHAIN,
            i64::try_from(i).expect("small"),
            &prev,
        );
    }
    let stored = db
        .fetch_bytes(&format!(
            "SELECT hash FROM audit_records WHERE chain_id = '{CHAIN}' AND seq = 10"
        ))
        .await;
    assert_eq!(stored, prev);
    let got = db
        .store
        .query(&AuditFilter {
            request_id: Some("r8".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("query");
    assert_eq!(
        got[0].record.shadow.as_deref(),
        Some("allow policy_allow: rule 8")
    );
    // A shadow decision cannot be changed, removed, given to a version-4 row, nor a version-5
    // row relabelled as version 4. Each edit is earlier than the one before.
    let edits = [
        (9, "shadow = 'deny no_matching_rule'".to_owned()),
        (8, "shadow = NULL".to_owned()),
        (7, "hash_version = 4".to_owned()),
        (4, "shadow = 'deny'".to_owned()),
    ];
    for (seq, set) in edits {
        db.raw(&format!(
            "UPDATE audit_records SET {set} WHERE chain_id = '{CHAIN}' AND seq = {seq}"
        ))
        .await;
        assert_named(db, None, Tamper::Edited, seq, &format!("r{seq}")).await;
    }
}
