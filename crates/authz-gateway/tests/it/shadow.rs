//! Shadow mode on live traffic: a candidate started in the shared store is evaluated beside
//! the live policy by the gateway, never enforced; exactly the requests it would decide
//! otherwise carry its answer in their decision record and are counted; stopping it stops that.

use std::time::Duration;

use authz_rbac::ShadowStore;
use authz_types::ReasonCode;

use crate::harness::{self, AuditBackend};

/// The repository policy, except that readers lose `get_*`.
fn candidate() -> String {
    let live = std::fs::read_to_string(authz_test_support::repo_path("policies/policy.csv"))
        .expect("policy");
    let candidate: String = live
        .lines()
        .filter(|l| !l.starts_with("p, ticket-reader, default, tool:tickets/get_*"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(candidate.len(), live.len() + 1, "the candidate differs");
    candidate
}

async fn metric(env: &harness::Env, name: &str) -> u64 {
    let text = env.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_is_evaluated_on_live_traffic_and_only_its_differences_are_recorded() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let store = ShadowStore::connect(&env.audit_url).await.expect("store");
    store
        .start(
            &candidate(),
            "no reader gets",
            "olivia",
            authz_types::now_unix_ms(),
        )
        .await
        .expect("start");
    authz_test_support::eventually_async(
        "the candidate runs",
        Duration::from_secs(10),
        async || metric(&env, "authz_shadow_running").await == 1,
    )
    .await;

    let bob = env.token("bob", &["ticket-reader"], &["tickets:read"]);
    let mut differing = Vec::new();
    let mut agreeing = Vec::new();
    for i in 0..3 {
        let resp = env.post_stateless_call(&bob, 10 + i, "get_ticket").await;
        assert_eq!(resp.status(), 200, "never enforced");
        differing.push(harness::request_id(&resp));
        let _ = resp.bytes().await;
    }
    for i in 0..2 {
        let resp = env.post_stateless_call(&bob, 20 + i, "list_tickets").await;
        assert_eq!(resp.status(), 200);
        agreeing.push(harness::request_id(&resp));
        let _ = resp.bytes().await;
    }
    for rid in &differing {
        let rec = env
            .records_for_request(rid, authz_types::RecordKind::Decision)
            .await
            .remove(0);
        assert_eq!(rec.reason, ReasonCode::PolicyAllow);
        assert_eq!(
            rec.shadow.as_deref(),
            Some("deny no_matching_rule"),
            "{rec:?}"
        );
        // The outcome record does not repeat it.
        let outcome = env.outcomes_for_request(rid).await.remove(0);
        assert_eq!(outcome.shadow, None);
    }
    for rid in &agreeing {
        let rec = env
            .records_for_request(rid, authz_types::RecordKind::Decision)
            .await
            .remove(0);
        assert_eq!(rec.shadow, None, "{rec:?}");
    }
    assert_eq!(metric(&env, "authz_shadow_differences_total").await, 3);
    assert_eq!(metric(&env, "authz_shadow_evaluated_total").await, 5);

    store
        .stop("olivia", authz_types::now_unix_ms())
        .await
        .expect("stop");
    authz_test_support::eventually_async(
        "the candidate stops",
        Duration::from_secs(10),
        async || metric(&env, "authz_shadow_running").await == 0,
    )
    .await;
    let resp = env.post_stateless_call(&bob, 30, "get_ticket").await;
    let rec = env.the_record_for(&resp).await;
    assert_eq!(rec.shadow, None);
    assert_eq!(metric(&env, "authz_shadow_differences_total").await, 3);
    env.assert_chain_intact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_does_not_load_leaves_shadow_mode_off() {
    let env = harness::start(AuditBackend::Sqlite).await;
    let store = ShadowStore::connect(&env.audit_url).await.expect("store");
    store
        .start(
            "p, r, default, nowhere, call, allow\n",
            "bad",
            "olivia",
            authz_types::now_unix_ms(),
        )
        .await
        .expect("start");
    authz_test_support::eventually_async(
        "the failure counted",
        Duration::from_secs(10),
        async || metric(&env, "authz_shadow_load_failures_total").await == 1,
    )
    .await;
    assert_eq!(metric(&env, "authz_shadow_running").await, 0);
    let bob = env.token("bob", &["ticket-reader"], &["tickets:read"]);
    let resp = env.post_stateless_call(&bob, 1, "get_ticket").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(env.the_record_for(&resp).await.shadow, None);
}
