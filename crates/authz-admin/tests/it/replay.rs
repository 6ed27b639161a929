//! `authzctl policy replay`: a recorded window re-decided under a candidate policy, with a
//! known set of expected changes (grouped and counted), what could not be re-decided, and the
//! window respected.

use authz_audit::AuditStore;
use authz_types::{Effect, ReasonCode};

use crate::audit::record;
use crate::common::{json, ok, sqlite_url};

const CANDIDATE: &str = "\
p, ticket-reader, default, tool:tickets/get_*, call, allow
p, ticket-reader, default, tool:tickets/delete_ticket, call, allow
p, ticket-admin, default, tool:tickets/*, call, allow
p, ticket-admin, default, tool:tickets/delete_*, call, deny
";

/// The recorded window of these tests: five decisions the policy made, one it did not, and one
/// outside the window.
async fn seed(url: &str) {
    let store = AuditStore::connect(url).await.expect("audit store");
    let mut recs = vec![
        record("bob", Effect::Allow, "get_ticket", 30),
        record("bob", Effect::Deny, "delete_ticket", 20),
        record("bob", Effect::Deny, "delete_ticket", 10),
    ];
    let mut carol = record("carol", Effect::Allow, "delete_ticket", 15);
    carol.roles = vec!["ticket-admin".into()];
    carol.matched_rule = Some("p, ticket-admin, default, tool:tickets/*, call, allow".into());
    recs.push(carol);
    let mut sue = record("sue", Effect::Deny, "delete_ticket", 12);
    sue.roles = vec!["ticket-steward".into()];
    sue.reason = ReasonCode::ApprovalRequired;
    recs.push(sue);
    let mut expired = record("mallory", Effect::Deny, "delete_ticket", 5);
    expired.reason = ReasonCode::TokenExpired;
    recs.push(expired);
    // Outside the window: never counted.
    recs.push(record("bob", Effect::Deny, "delete_ticket", 3 * 24 * 60));
    for (i, mut r) in recs.into_iter().enumerate() {
        r.request_id = format!("req-{i}");
        store.append_unchained(&r).await.expect("append");
    }
}

#[tokio::test]
async fn replay_against_a_store_revision_sees_the_policy_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    seed(&url).await;
    let policy_url = sqlite_url(dir.path(), "policy.db");
    let candidate = dir.path().join("candidate.csv");
    std::fs::write(&candidate, CANDIDATE).expect("write");
    let candidate = candidate.display().to_string();
    ok(&[
        "policy",
        "import",
        &candidate,
        "--database-url",
        &policy_url,
    ])
    .await;
    let revision = json(&["policy", "history", "--database-url", &policy_url]).await["changes"][0]
        ["to_revision"]
        .as_i64()
        .expect("revision");
    // A later change the replay must not see.
    ok(&[
        "role",
        "grant",
        "ticket-steward",
        "call",
        "tool:tickets/delete_ticket",
        "--database-url",
        &policy_url,
    ])
    .await;
    let model = authz_test_support::policies_dir()
        .join("model.conf")
        .display()
        .to_string();
    let rev = revision.to_string();
    let v = json(&[
        "policy",
        "replay",
        "--candidate-revision",
        &rev,
        "--policy-database-url",
        &policy_url,
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    assert_eq!(
        (v["redecided"].as_u64(), v["changed"].as_u64()),
        (Some(5), Some(4)),
        "{v}"
    );
    let later = (revision + 1).to_string();
    let v = json(&[
        "policy",
        "replay",
        "--candidate-revision",
        &later,
        "--policy-database-url",
        &policy_url,
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    // With the steward's delete allowed, sue's held call now becomes an allow.
    assert!(
        v["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["subject"] == "sue" && c["new"] == "allow"),
        "{v}"
    );
    let err = crate::common::fails(&[
        "policy",
        "replay",
        "--candidate-revision",
        "99",
        "--policy-database-url",
        &policy_url,
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    assert!(err.to_string().contains("no revision 99"), "{err}");
}

#[tokio::test]
async fn replay_reports_exactly_the_decisions_a_candidate_would_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    seed(&url).await;
    let candidate = dir.path().join("candidate.csv");
    std::fs::write(&candidate, CANDIDATE).expect("write");
    let candidate = candidate.display().to_string();
    let model = authz_test_support::policies_dir()
        .join("model.conf")
        .display()
        .to_string();
    let args = [
        "policy",
        "replay",
        "--candidate",
        &candidate,
        "--model",
        &model,
        "--since",
        "24h",
        "--database-url",
        &url,
    ];

    let v = json(&args).await;
    assert_eq!(v["redecided"], 5, "{v}");
    assert_eq!(v["unchanged"], 1, "{v}");
    assert_eq!(v["changed"], 4, "{v}");
    assert_eq!(
        v["not_redecided"],
        serde_json::json!({"token_expired": 1}),
        "{v}"
    );
    let changes: Vec<(u64, String, String, String, String)> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["count"].as_u64().expect("count"),
                c["subject"].as_str().expect("subject").to_owned(),
                c["old"].as_str().expect("old").to_owned(),
                c["new"].as_str().expect("new").to_owned(),
                c["rule"].as_str().expect("rule").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                2,
                "bob".into(),
                "deny".into(),
                "allow".into(),
                "p, ticket-reader, default, tool:tickets/delete_ticket, call, allow".into()
            ),
            (
                1,
                "carol".into(),
                "allow".into(),
                "deny".into(),
                "p, ticket-admin, default, tool:tickets/delete_*, call, deny".into()
            ),
            (
                1,
                "sue".into(),
                "held".into(),
                "deny".into(),
                "no_matching_rule".into()
            ),
        ]
    );

    let table = ok(&args).await;
    assert!(
        table.starts_with("5 decisions re-decided: 1 unchanged, 4 would change\n"),
        "{table}"
    );
    assert!(
        table.contains("1 not re-decided (decided before or beside the policy): token_expired 1"),
        "{table}"
    );
    assert!(table.contains("deny -> allow"), "{table}");

    // A candidate that does not load is refused, naming why.
    std::fs::write(
        dir.path().join("bad.csv"),
        "p, r, default, nowhere, call, allow\n",
    )
    .expect("write");
    let bad = dir.path().join("bad.csv").display().to_string();
    let err = crate::common::fails(&[
        "policy",
        "replay",
        "--candidate",
        &bad,
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    assert!(
        err.to_string()
            .contains("the candidate policy does not load"),
        "{err}"
    );
}

#[tokio::test]
async fn shadow_start_checks_the_candidate_and_report_counts_what_it_would_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let model = authz_test_support::policies_dir()
        .join("model.conf")
        .display()
        .to_string();
    let candidate = dir.path().join("candidate.csv");
    std::fs::write(&candidate, CANDIDATE).expect("write");
    let candidate = candidate.display().to_string();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "p, r, default, nowhere, call, allow\n").expect("write");
    let bad = bad.display().to_string();

    let err = crate::common::fails(&[
        "policy",
        "shadow",
        "start",
        "--candidate",
        &bad,
        "--model",
        &model,
        "--database-url",
        &url,
    ])
    .await;
    assert!(err.to_string().contains("does not load"), "{err}");
    let started = ok(&[
        "policy",
        "shadow",
        "start",
        "--candidate",
        &candidate,
        "--model",
        &model,
        "--actor",
        "olivia",
        "--database-url",
        &url,
    ])
    .await;
    assert!(
        started.starts_with("shadow candidate 1 started as olivia"),
        "{started}"
    );
    let stored = authz_rbac::ShadowStore::connect(&url)
        .await
        .expect("store")
        .current()
        .await
        .expect("current")
        .expect("running");
    assert_eq!(stored.candidate, CANDIDATE);
    let status = json(&["policy", "shadow", "status", "--database-url", &url]).await;
    assert_eq!(status["candidates"][0]["running"], true, "{status}");

    // Records as gateways write them while it runs.
    let store = AuditStore::connect(&url).await.expect("audit store");
    for (i, shadow) in [
        Some("deny no_matching_rule"),
        Some("deny no_matching_rule"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = record("bob", Effect::Allow, "get_ticket", 5);
        r.request_id = format!("s-{i}");
        r.shadow = shadow.map(str::to_owned);
        store.append_unchained(&r).await.expect("append");
    }
    let report = json(&["policy", "shadow", "report", "--database-url", &url]).await;
    assert_eq!(report["differences"], 2, "{report}");
    assert_eq!(report["groups"][0]["count"], 2);
    assert_eq!(report["groups"][0]["live"], "allow policy_allow");
    assert_eq!(report["groups"][0]["candidate"], "deny no_matching_rule");
    let table = ok(&["policy", "shadow", "report", "--database-url", &url]).await;
    assert!(
        table.starts_with("2 decisions the shadow candidate would have made otherwise"),
        "{table}"
    );

    let stopped = ok(&[
        "policy",
        "shadow",
        "stop",
        "--actor",
        "olivia",
        "--database-url",
        &url,
    ])
    .await;
    assert_eq!(stopped, "shadow candidate stopped as olivia\n");
    let again = ok(&["policy", "shadow", "stop", "--database-url", &url]).await;
    assert_eq!(again, "no shadow candidate was running\n");
}

#[tokio::test]
async fn replay_uses_recorded_arguments_for_conditions_and_says_what_it_could_not_redecide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = AuditStore::connect(&url).await.expect("audit store");
    let mut over = record("dan", Effect::Allow, "get_ticket", 10);
    over.arguments = Some(r#"{"id":7}"#.into());
    let mut within = record("erin", Effect::Allow, "get_ticket", 10);
    within.arguments = Some(r#"{"id":3}"#.into());
    // Only the digest was kept: a condition on its arguments cannot be re-decided.
    let unknown = record("fay", Effect::Allow, "get_ticket", 10);
    for (i, mut r) in [over, within, unknown].into_iter().enumerate() {
        r.request_id = format!("req-{i}");
        store.append_unchained(&r).await.expect("append");
    }
    let candidate = dir.path().join("candidate.csv");
    std::fs::write(
        &candidate,
        "p, ticket-reader, default, tool:tickets/get_ticket, call, allow, \"args.id <= 5\"\n",
    )
    .expect("write");
    let candidate = candidate.display().to_string();
    let model = authz_test_support::policies_dir()
        .join("model.conf")
        .display()
        .to_string();
    let v = json(&[
        "policy",
        "replay",
        "--candidate",
        &candidate,
        "--model",
        &model,
        "--since",
        "24h",
        "--database-url",
        &url,
    ])
    .await;
    assert_eq!(v["redecided"], 2, "{v}");
    assert_eq!(v["unchanged"], 1, "{v}");
    assert_eq!(v["changed"], 1, "{v}");
    assert_eq!(
        v["not_redecided"],
        serde_json::json!({"arguments_not_recorded": 1}),
        "{v}"
    );
    assert_eq!(v["changes"][0]["subject"], "dan", "{v}");
    assert_eq!(v["changes"][0]["new"], "deny", "{v}");
    assert!(
        v["changes"][0]["rule"]
            .as_str()
            .is_some_and(|r| r.ends_with("[condition false]")),
        "{v}"
    );
}
