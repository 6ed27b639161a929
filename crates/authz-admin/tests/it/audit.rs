//! `audit list` over records appended with `AuditStore`: filters and both output formats.

use authz_audit::AuditStore;
use authz_types::{AuditRecord, Effect, ReasonCode, now_unix_ms};

use crate::common::{json, ok, sqlite_url};

pub(crate) const MINUTE_MS: i64 = 60_000;

/// A decision record about `tool` for `subject`, `minutes_ago` minutes old.
pub(crate) fn record(subject: &str, decision: Effect, tool: &str, minutes_ago: i64) -> AuditRecord {
    let allowed = decision == Effect::Allow;
    AuditRecord {
        time_ms: now_unix_ms() - minutes_ago * MINUTE_MS,
        request_id: format!("req-{subject}-{tool}"),
        session_id: None,
        tenant: Some("default".into()),
        subject: Some(subject.into()),
        issuer: Some("authzctl".into()),
        client_id: None,
        actors: vec![],
        token_id: None,
        scopes: vec!["tickets:read".into()],
        roles: vec!["ticket-reader".into()],
        upstream: "tickets".into(),
        method: "tools/call".into(),
        target: Some(tool.into()),
        decision,
        reason: if allowed {
            ReasonCode::PolicyAllow
        } else {
            ReasonCode::NoMatchingRule
        },
        matched_rule: allowed
            .then(|| "p, ticket-reader, default, tool:tickets/get_*, call, allow".into()),
        policy_revision: Some(1),
        http_status: (!allowed).then_some(403),
        jsonrpc_error: None,
        ..AuditRecord::unauthenticated("", "", "", ReasonCode::TokenMissing, 0)
    }
}

/// The request ids of a JSON listing, in output order.
fn ids(listing: &serde_json::Value) -> Vec<String> {
    listing
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {listing}"))
        .iter()
        .map(|r| r["request_id"].as_str().expect("request_id").to_owned())
        .collect()
}

#[tokio::test]
async fn audit_list_filters_and_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = AuditStore::connect(&url).await.expect("audit store");
    store
        .append_unchained(&record("bob", Effect::Allow, "list_tickets", 180))
        .await
        .expect("append");
    store
        .append_unchained(&record("alice", Effect::Allow, "get_ticket", 10))
        .await
        .expect("append");
    store
        .append_unchained(&record("alice", Effect::Deny, "delete_ticket", 1))
        .await
        .expect("append");
    let mut anonymous = AuditRecord::unauthenticated(
        "req-anon",
        "tickets",
        "tools/call",
        ReasonCode::TokenMissing,
        401,
    );
    anonymous.time_ms = now_unix_ms() - 30 * MINUTE_MS;
    store.append_unchained(&anonymous).await.expect("append");
    store.close().await;

    let db = ["--database-url", url.as_str()];
    let list = |extra: &[&'static str]| [&["audit", "list"][..], &db, extra].concat();

    // Newest first.
    let all = json(&list(&[])).await;
    assert_eq!(
        ids(&all),
        [
            "req-alice-delete_ticket",
            "req-alice-get_ticket",
            "req-anon",
            "req-bob-list_tickets"
        ]
    );
    assert!(all[0]["id"].as_i64().is_some(), "{all}");
    assert_eq!(all[0]["decision"], "deny");
    assert_eq!(all[0]["reason"], "no_matching_rule");

    let alice = json(&list(&["--subject", "alice"])).await;
    assert_eq!(
        ids(&alice),
        ["req-alice-delete_ticket", "req-alice-get_ticket"]
    );
    let denied = json(&list(&["--decision", "deny"])).await;
    assert_eq!(ids(&denied), ["req-alice-delete_ticket", "req-anon"]);
    let recent = json(&list(&["--since", "1h"])).await;
    assert_eq!(
        ids(&recent),
        [
            "req-alice-delete_ticket",
            "req-alice-get_ticket",
            "req-anon"
        ]
    );
    let newest = json(&list(&["--limit", "1"])).await;
    assert_eq!(ids(&newest), ["req-alice-delete_ticket"]);
    let combined = json(&list(&[
        "--subject",
        "alice",
        "--decision",
        "allow",
        "--since",
        "2h",
    ]))
    .await;
    assert_eq!(ids(&combined), ["req-alice-get_ticket"]);
    // An RFC 3339 bound in the future leaves nothing, and that is still a JSON array.
    let none = json(&list(&["--since", "2999-01-01T00:00:00Z"])).await;
    assert_eq!(none, serde_json::json!([]));

    let table = ok(&list(&["--subject", "alice"])).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert!(lines[0].contains("SUBJECT"), "{table}");
    assert!(
        lines[1].contains("deny") && lines[1].contains("delete_ticket"),
        "{table}"
    );
    assert!(lines[1].contains("no_matching_rule"), "{table}");
    assert!(
        lines[2].contains("allow") && lines[2].contains("get_ticket"),
        "{table}"
    );
    assert!(lines[2].contains("tool:tickets/get_*"), "{table}");
    assert!(lines[2].contains("ticket-reader"), "{table}");
}

#[tokio::test]
async fn audit_stats_counts_denials_by_reason_subject_and_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = AuditStore::connect(&url).await.expect("audit store");
    let mut append = Vec::new();
    append.push(record("alice", Effect::Deny, "delete_ticket", 5));
    append.push(record("alice", Effect::Deny, "delete_ticket", 4));
    let mut scope = record("bob", Effect::Deny, "delete_ticket", 3);
    scope.reason = ReasonCode::InsufficientScope;
    append.push(scope);
    append.push(record("bob", Effect::Allow, "get_ticket", 2));
    // Outcome records are not decisions: not counted.
    let mut outcome = AuditRecord::outcome(&record("carol", Effect::Deny, "x", 1));
    outcome.outcome = Some("ok".into());
    append.push(outcome);
    // An aggregate record of 50 tokenless refusals counts as 50.
    let mut flood =
        AuditRecord::unauthenticated("agg", "tickets", "POST", ReasonCode::TokenMissing, 401);
    flood.repeat_count = Some(50);
    flood.first_time_ms = Some(flood.time_ms - 10_000);
    flood.client_addr = Some("203.0.113.9".into());
    append.push(flood);
    // Two days old: outside the default 24 h window.
    append.push(record("dave", Effect::Deny, "delete_ticket", 2 * 24 * 60));
    // The gateway's own events are not request denials: a blocked pin step, a rejected
    // approval, a crashed stdio process.
    for (method, reason) in [
        ("pin/changed", ReasonCode::DefinitionUnapproved),
        ("approval/rejected", ReasonCode::ApprovalRejected),
        ("process/exit", ReasonCode::ProcessExited),
    ] {
        let mut event = AuditRecord::unauthenticated("ev", "tickets", method, reason, 0);
        event.decision = Effect::Deny;
        append.push(event);
    }
    for r in &append {
        store.append_unchained(r).await.expect("append");
    }
    store.close().await;

    let db = ["--database-url", url.as_str()];
    let stats = json(&[&["audit", "stats"][..], &db].concat()).await;
    assert_eq!(stats["denials"], 53, "{stats}");
    assert_eq!(stats["records"], 4, "{stats}");
    assert_eq!(
        stats["by_reason"],
        serde_json::json!([
            {"reason": "token_missing", "denials": 50},
            {"reason": "no_matching_rule", "denials": 2},
            {"reason": "insufficient_scope", "denials": 1},
        ]),
        "{stats}"
    );
    assert_eq!(
        stats["by_subject"][0],
        serde_json::json!({"subject": "-", "denials": 50})
    );
    assert_eq!(
        stats["by_target"][1],
        serde_json::json!({"target": "tools/call delete_ticket", "denials": 3})
    );
    // --since widens the window; --top shortens the lists; the table names each section.
    let week = json(&[&["audit", "stats", "--since", "7d", "--top", "1"][..], &db].concat()).await;
    assert_eq!(week["denials"], 54, "{week}");
    assert_eq!(week["by_subject"].as_array().map(Vec::len), Some(1));
    let table = ok(&[&["audit", "stats"][..], &db].concat()).await;
    assert!(table.starts_with("53 denials in 4 records"), "{table}");
    // It counts denials: asking it for allowed decisions is a usage error, not silently ignored.
    let e =
        crate::common::fails(&[&["audit", "stats", "--decision", "allow"][..], &db].concat()).await;
    assert_eq!(
        authz_admin::exit_code_of(&e),
        authz_admin::EXIT_USAGE,
        "{e:#}"
    );
    assert!(e.to_string().contains("audit list --decision allow"), "{e}");
    assert!(
        table.contains("REASON") && table.contains("token_missing"),
        "{table}"
    );
}
