//! `audit verify|tail|export|prune` and `keys generate-audit` over records written by the
//! group-commit writer: intact and tampered chains, signatures, following new records, export
//! formats and pruning that keeps the rest verifiable.

use std::sync::Arc;
use std::time::Duration;

use authz_admin::{
    AuditCommand, Command, Confirmation, EXIT_ERROR, EXIT_TAMPERED, EXIT_USAGE, FollowControl,
    Outcome, Output, UsageError, audit_tail, execute_with, exit_code_of,
};
use authz_audit::{AuditStore, AuditWriter, SigningKey, StoredRecord, WriterConfig};
use authz_types::{AuditRecord, Effect, ReasonCode};

use crate::audit::record;
use crate::common::{fails, json, ok, parse, run, sqlite_url, text, with_db};

/// Runs SQL against the store directly, as someone with write access to the database would.
async fn raw_sql(url: &str, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
        sqlx::query(sql).execute(&pool).await.expect("raw SQL");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        sqlx::query(sql).execute(&pool).await.expect("raw SQL");
        pool.close().await;
    }
}

/// Writes `records` through a writer on chain `chain` (signing checkpoints with `key`) and
/// returns their ids.
async fn write_chain(
    url: &str,
    chain: &str,
    records: Vec<AuditRecord>,
    key: Option<SigningKey>,
) -> Vec<i64> {
    let store = AuditStore::connect(url).await.expect("audit store");
    let config = WriterConfig {
        chain_id: Some(chain.to_owned()),
        // One chain per writer, as these tests name it.
        lanes: Some(1),
        ..WriterConfig::default()
    };
    let writer = AuditWriter::spawn(store.clone(), config, key)
        .await
        .expect("writer");
    let mut ids = Vec::new();
    for r in records {
        ids.push(writer.append_durable(r).await.expect("append"));
    }
    writer.shutdown().await.expect("shutdown");
    store.close().await;
    ids
}

/// An intact chain verifies (exit 0); one edited row makes `audit verify` exit 5 naming it.
pub(crate) async fn verify_round_trip(url: &str) {
    let records = (0..5)
        .map(|i| record("alice", Effect::Allow, &format!("tool_{i}"), 5 - i))
        .collect();
    let ids = write_chain(url, "gw-1", records, None).await;

    let (outcome, out) = run(&with_db(&["audit", "verify"], url))
        .await
        .expect("verify");
    assert_eq!(outcome, Outcome::Success, "{out}");
    assert!(
        out.contains("intact: 1 chain(s), 5 record(s) verified"),
        "{out}"
    );
    assert!(out.contains("signatures were not checked"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CHAIN") && lines[0].ends_with("STATUS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("gw-1") && lines[1].ends_with("intact"),
        "{out}"
    );

    raw_sql(
        url,
        &format!(
            "UPDATE audit_records SET subject = 'x' WHERE id = {}",
            ids[2]
        ),
    )
    .await;
    let (outcome, out) = run(&with_db(&["audit", "verify"], url))
        .await
        .expect("verify");
    assert_eq!(outcome, Outcome::Tampered, "{out}");
    assert_eq!(outcome.exit_code(), EXIT_TAMPERED);
    assert!(
        out.contains(&format!(
            "TAMPERED: chain gw-1, seq 3, record id {}: edited: ",
            ids[2]
        )),
        "{out}"
    );
    let (_, out) = run(&with_db(&["audit", "verify", "-o", "json"], url))
        .await
        .expect("verify");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["intact"], false);
    assert_eq!(report["problem"]["chain_id"], "gw-1");
    assert_eq!(report["problem"]["seq"], 3);
    assert_eq!(report["problem"]["record_id"], ids[2]);
    assert_eq!(report["problem"]["kind"], "edited");
    assert_eq!(report["chains"][0]["records"], 2, "intact up to the edit");
}

#[tokio::test]
async fn verify_finds_an_edited_record_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    verify_round_trip(&sqlite_url(dir.path(), "audit.db")).await;
}

#[tokio::test]
async fn generated_audit_keys_sign_checkpoints_that_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let key_path = dir.path().join("keys/audit.key");
    let key_arg = key_path.display().to_string();
    let generated = json(&["keys", "generate-audit", "--out", &key_arg]).await;
    let public = generated["public_key"]
        .as_str()
        .expect("public key")
        .to_owned();
    assert_eq!(public.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let e = fails(&["keys", "generate-audit", "--out", &key_arg]).await;
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    assert!(text(&e).contains("already exists"), "{e:#}");
    let table = ok(&[
        "keys",
        "generate-audit",
        "--out",
        &dir.path().join("second.key").display().to_string(),
    ])
    .await;
    assert!(table.contains("public key: "), "{table}");

    let key = SigningKey::from_seed_file(&key_path).expect("seed file");
    assert_eq!(key.public_key().to_hex(), public);
    let records = (0..3)
        .map(|i| record("bob", Effect::Deny, &format!("t{i}"), 3 - i))
        .collect();
    write_chain(&url, "gw-a", records, Some(key)).await;

    let report = json(&with_db(
        &["audit", "verify", "--public-key", &public],
        &url,
    ))
    .await;
    assert_eq!(report["intact"], true);
    assert_eq!(report["signatures_checked"], true);
    assert_eq!(report["chains"][0]["signed_through"], 3);
    let public_file = dir.path().join("audit.pub");
    std::fs::write(&public_file, format!("{public}\n")).expect("write public key");
    let public_arg = public_file.display().to_string();
    let out = ok(&with_db(
        &[
            "audit",
            "verify",
            "--public-key",
            &public_arg,
            "--chain",
            "gw-a",
        ],
        &url,
    ))
    .await;
    assert!(
        out.contains("intact: 1 chain(s), 3 record(s) verified"),
        "{out}"
    );

    // Another key's public half does not match the signatures.
    let other = SigningKey::from_seed(&[7; 32])
        .expect("key")
        .public_key()
        .to_hex();
    let (outcome, out) = run(&with_db(&["audit", "verify", "--public-key", &other], &url))
        .await
        .expect("verify");
    assert_eq!(outcome, Outcome::Tampered, "{out}");
    assert!(out.contains("bad_checkpoint"), "{out}");

    let e = fails(&with_db(
        &["audit", "verify", "--public-key", "not-a-key"],
        &url,
    ))
    .await;
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    assert!(text(&e).contains("neither 64 hex digits"), "{e:#}");
    let e = fails(&with_db(&["audit", "verify", "--chain", "nope"], &url)).await;
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    assert!(text(&e).contains("no chain `nope`"), "{e:#}");
}

/// The request ids of JSON lines, in output order.
fn request_ids(lines: &str) -> Vec<String> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["request_id"].as_str().expect("request_id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn tail_prints_the_newest_and_follows_new_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = AuditStore::connect(&url).await.expect("audit store");
    for (subject, tool, minutes_ago) in [("bob", "a", 30), ("alice", "b", 20), ("alice", "c", 10)] {
        store
            .append_unchained(&record(subject, Effect::Allow, tool, minutes_ago))
            .await
            .expect("append");
    }

    let table = ok(&with_db(&["audit", "tail", "-n", "2"], &url)).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert!(
        lines[1].contains("alice") && lines[1].contains(" b "),
        "{table}"
    );
    assert!(
        lines[2].contains(" c "),
        "oldest of the newest first: {table}"
    );
    let newest = ok(&with_db(&["audit", "tail", "-n", "2", "-o", "jsonl"], &url)).await;
    assert_eq!(request_ids(&newest), ["req-alice-b", "req-alice-c"]);
    // The hidden --max-polls ends a follow; nothing new arrived.
    let quiet = ok(&with_db(
        &[
            "audit",
            "tail",
            "-n",
            "0",
            "-f",
            "--max-polls",
            "1",
            "-o",
            "json",
        ],
        &url,
    ))
    .await;
    assert_eq!(quiet, "");

    let cli = parse(&with_db(
        &["audit", "tail", "-f", "-n", "1", "--subject", "alice"],
        &url,
    ));
    let Command::Audit(AuditCommand::Tail(args)) = cli.command else {
        panic!("not audit tail: {cli:?}");
    };
    let first_poll = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&first_poll);
    let mut polls = 0u32;
    // Polls every 10 ms; 1000 polls bound the wait to about ten seconds if the record never
    // shows up (the assertions below then fail).
    let mut stop = move |fresh: &[StoredRecord]| {
        polls += 1;
        if polls == 1 {
            notify.notify_one();
        }
        fresh
            .iter()
            .any(|r| r.record.request_id == "req-alice-late")
            || polls >= 1000
    };
    let control = FollowControl {
        interval: Duration::from_millis(10),
        stop_on_ctrl_c: false,
        stop: &mut stop,
    };
    let mut out = Vec::new();
    let append_after_the_first_poll = async {
        first_poll.notified().await;
        for subject in ["bob", "alice"] {
            store
                .append_unchained(&record(subject, Effect::Deny, "late", 0))
                .await
                .expect("append");
        }
    };
    let (tailed, ()) = tokio::join!(
        audit_tail(&args, Output::Jsonl, &mut out, control),
        append_after_the_first_poll
    );
    tailed.expect("tail");
    store.close().await;
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        request_ids(&out),
        ["req-alice-c", "req-alice-late"],
        "bob's record is filtered out and nothing is printed twice"
    );
}

#[tokio::test]
async fn export_writes_every_matching_record_in_each_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = AuditStore::connect(&url).await.expect("audit store");
    // More records than one page, so export pages through the store.
    let filler: Vec<AuditRecord> = (0..1_200)
        .map(|i| record("filler", Effect::Allow, &format!("f{i}"), 60))
        .collect();
    store
        .append_unchained_batch(&filler)
        .await
        .expect("append batch");
    let mut acme = record("alice", Effect::Allow, "get_ticket", 30);
    acme.tenant = Some("acme".into());
    let formula = record("bob", Effect::Deny, "=HYPERLINK(\"x\")", 20);
    let mut denied = record("alice", Effect::Deny, "delete_ticket", 10);
    denied.reason = ReasonCode::ExplicitDeny;
    denied.matched_rule =
        Some("p, ticket-admin, default, tool:tickets/delete_*, call, deny".into());
    for r in [&acme, &formula, &denied] {
        store.append_unchained(r).await.expect("append");
    }
    store.close().await;
    let export = |extra: &[&'static str]| -> Vec<String> {
        [&["audit", "export", "--database-url", &url][..], extra]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let run_export = async |extra: &[&'static str]| {
        let args = export(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args).await
    };

    let all = run_export(&[]).await;
    let rows: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 1_203);
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest (by id) first");
    assert_eq!(rows[1_202]["request_id"], "req-alice-delete_ticket");

    let alice = run_export(&["--subject", "alice"]).await;
    assert_eq!(
        request_ids(&alice),
        ["req-alice-get_ticket", "req-alice-delete_ticket"]
    );
    let denied_json: serde_json::Value =
        serde_json::from_str(&run_export(&["--decision", "deny", "--format", "json"]).await)
            .expect("one JSON array");
    let denied_ids: Vec<&str> = denied_json
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["request_id"].as_str().expect("request_id"))
        .collect();
    assert_eq!(
        denied_ids,
        ["req-bob-=HYPERLINK(\"x\")", "req-alice-delete_ticket"]
    );
    let none = run_export(&["--subject", "nobody", "--format", "json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&none).expect("JSON"),
        serde_json::json!([])
    );

    let csv = run_export(&["--subject", "bob", "--format", "csv"]).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,time,time_ms,request_id,session_id,tenant,subject,issuer,client_id,actors,token_id,\
         scopes,roles,upstream,method,target,decision,reason,matched_rule,policy_revision,\
         http_status,jsonrpc_error,client_addr,repeat_count,first_time_ms,first_round_request_id,\
         shadow"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    // The crafted target is quoted and cannot run as a formula.
    assert!(
        lines[1].contains(",tools/call,\"'=HYPERLINK(\"\"x\"\")\",deny,no_matching_rule,,1,403,"),
        "{csv}"
    );
    let csv = run_export(&["--reason", "explicit_deny", "--format", "csv"]).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(
            ",delete_ticket,deny,explicit_deny,\"p, ticket-admin, default, tool:tickets/delete_*, call, deny\",1,403,"
        ),
        "{csv}"
    );
    assert!(
        lines[1].contains(",default,alice,authzctl,,,,tickets:read,ticket-reader,tickets,"),
        "{csv}"
    );

    // `audit list` takes the same filters, and prints JSON lines.
    let list = |extra: &[&'static str]| {
        let mut args = vec!["audit", "list", "-o", "jsonl", "--database-url"];
        args.push(&url);
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    for (filter, expected) in [
        (&["--tenant", "acme"][..], &["req-alice-get_ticket"][..]),
        (
            &["--method", "tools/call", "--target", "delete_ticket"],
            &["req-alice-delete_ticket"],
        ),
        (&["--reason", "explicit_deny"], &["req-alice-delete_ticket"]),
        (
            &["--subject", "alice", "--until", "15m"],
            &["req-alice-get_ticket"],
        ),
        (&["--upstream", "billing"], &[]),
    ] {
        let args = list(filter);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(request_ids(&ok(&args).await), expected, "{filter:?}");
    }
}

/// `audit prune --before 1h <extra>` on the store at `url`.
fn prune_1h<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    with_db(
        &[&["audit", "prune", "--before", "1h"][..], extra].concat(),
        url,
    )
}

#[tokio::test]
async fn prune_deletes_old_records_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let key_path = dir.path().join("audit.key");
    let key_arg = key_path.display().to_string();
    let public = json(&["keys", "generate-audit", "--out", &key_arg]).await["public_key"]
        .as_str()
        .expect("public key")
        .to_owned();
    let key = SigningKey::from_seed_file(&key_path).expect("seed file");
    let records = [180, 170, 160, 1, 0]
        .iter()
        .enumerate()
        .map(|(i, minutes)| record("alice", Effect::Allow, &format!("t{i}"), *minutes))
        .collect();
    write_chain(&url, "gw-1", records, Some(key)).await;
    // An old record written without a chain goes as well.
    let store = AuditStore::connect(&url).await.expect("audit store");
    store
        .append_unchained(&record("old", Effect::Deny, "x", 300))
        .await
        .expect("append");
    store.close().await;
    let count = async || {
        json(&with_db(&["audit", "list", "--limit", "100"], &url))
            .await
            .as_array()
            .expect("array")
            .len()
    };

    let dry = ok(&prune_1h(&url, &["--dry-run"])).await;
    assert!(
        dry.starts_with("dry run: would delete up to 4 record(s) older than "),
        "{dry}"
    );
    assert_eq!(count().await, 6, "a dry run deletes nothing");

    let e = fails(&prune_1h(&url, &[])).await;
    assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
    assert_eq!(exit_code_of(&e), EXIT_USAGE);
    let mut out = Vec::new();
    let e = execute_with(
        parse(&prune_1h(&url, &[])),
        &mut out,
        Confirmation::Answer(false),
    )
    .await
    .expect_err("not confirmed");
    assert!(text(&e).contains("not confirmed"), "{e:#}");
    assert_eq!(count().await, 6, "an unconfirmed prune deletes nothing");

    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "short").expect("write");
    let bad_arg = bad_key.display().to_string();
    let e = fails(&prune_1h(&url, &["--yes", "--signing-key", &bad_arg])).await;
    assert_eq!(exit_code_of(&e), EXIT_ERROR);
    assert_eq!(count().await, 6);

    let pruned = json(&prune_1h(&url, &["--yes", "--signing-key", &key_arg])).await;
    assert_eq!(pruned["deleted"], 4);
    assert_eq!(pruned["chained_deleted"], 3);
    assert_eq!(pruned["unchained_deleted"], 1);
    assert_eq!(
        pruned["anchors"],
        serde_json::json!([{"chain_id": "gw-1", "seq": 3}])
    );
    assert_eq!(count().await, 2);

    let report = json(&with_db(
        &["audit", "verify", "--public-key", &public],
        &url,
    ))
    .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["chains"][0]["anchor_seq"], 3);
    assert_eq!(report["chains"][0]["records"], 2);

    let again = ok(&prune_1h(&url, &["--yes"])).await;
    assert!(
        again.starts_with("nothing to delete: no record is older than "),
        "{again}"
    );
}
