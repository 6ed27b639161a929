//! `authzctl approvals`: list and show the calls a gateway held, approve one so the identical
//! call is let through once (as the gateway asks the store), reject one so identical calls are
//! refused, and refuse to decide what is no longer pending.

use authz_rbac::{ApprovalStore, CallContext, HeldCall, HoldLimits, Standing};

use crate::common::{fails, json, ok, sqlite_url, with_db};

const LIMITS: HoldLimits = HoldLimits {
    pending_ttl_ms: 600_000,
    max_pending_per_principal: 10,
};

fn call(digest: &str) -> HeldCall {
    HeldCall {
        upstream: "tickets".into(),
        tool: "delete_ticket".into(),
        issuer: "https://idp.test".into(),
        subject: "sue".into(),
        tenant: "default".into(),
        acting: "client=agent act=-".into(),
        args_digest: digest.into(),
    }
}

fn context(request_id: &str) -> CallContext {
    CallContext {
        arguments: Some(r#"{"id":7,"reason":"[redacted]"}"#.into()),
        roles: vec!["ticket-steward".into()],
        rule: "p, ticket-steward, default, tool:tickets/delete_ticket, call, approve".into(),
        request_id: request_id.into(),
    }
}

/// What a gateway finds for the call now (the way it asks the store on a retry).
async fn retry(store: &ApprovalStore, digest: &str, rid: &str) -> Standing {
    store
        .hold_or_use(
            &format!("apv-{rid}"),
            &call(digest),
            &context(rid),
            LIMITS,
            authz_types::now_unix_ms(),
        )
        .await
        .expect("hold or use")
}

#[tokio::test]
async fn an_approval_on_the_command_line_lets_the_identical_call_through_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = ApprovalStore::connect(&url).await.expect("store");
    let Standing::Created(held) = retry(&store, "d1", "r1").await else {
        panic!("not held");
    };
    let Standing::Created(other) = retry(&store, "d2", "r2").await else {
        panic!("not held");
    };

    let listed = ok(&with_db(&["approvals", "list"], &url)).await;
    assert!(
        listed.contains(&held.id) && listed.contains("delete_ticket") && listed.contains("sue"),
        "{listed}"
    );
    let v = json(&with_db(
        &["approvals", "list", "--state", "approved"],
        &url,
    ))
    .await;
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(0));
    let shown = ok(&with_db(&["approvals", "show", &held.id], &url)).await;
    for needle in [
        "state     pending",
        "call      delete_ticket on tickets",
        "asked by  sue (https://idp.test), tenant default",
        "  \"id\": 7,",
        "  \"reason\": \"[redacted]\"",
        "request   r1",
    ] {
        assert!(shown.contains(needle), "no {needle:?} in:\n{shown}");
    }

    let approved = ok(&with_db(
        &["approvals", "approve", &held.id, "--actor", "olivia"],
        &url,
    ))
    .await;
    assert!(
        approved.starts_with(&format!(
            "approved {} (delete_ticket on tickets for sue) as olivia",
            held.id
        )),
        "{approved}"
    );
    // Deciding again is refused and changes nothing.
    let err = fails(&with_db(&["approvals", "reject", &held.id], &url)).await;
    assert!(
        err.to_string().contains("is approved, not pending"),
        "{err}"
    );
    let err = fails(&with_db(&["approvals", "approve", "apv-nope"], &url)).await;
    assert!(err.to_string().contains("no approval `apv-nope`"), "{err}");

    // The gateway's retry of the identical call uses it, once; other arguments do not.
    assert!(matches!(retry(&store, "d2", "r3").await, Standing::Pending(a) if a.id == other.id));
    assert!(matches!(retry(&store, "d1", "r4").await, Standing::Used(a) if a.id == held.id));
    assert!(matches!(
        retry(&store, "d1", "r5").await,
        Standing::Created(_)
    ));
    let v = json(&with_db(&["approvals", "show", &held.id], &url)).await;
    assert_eq!(v["approval"]["state"], "used");
    assert_eq!(v["approval"]["used_request_id"], "r4");
    assert_eq!(v["approval"]["decided_by"], "olivia");
    assert_eq!(v["approval"]["history"][0]["event"], "approved");

    // Rejected: identical calls are refused.
    let rejected = ok(&with_db(
        &[
            "approvals",
            "reject",
            &other.id,
            "--reason",
            "not today",
            "--actor",
            "olivia",
        ],
        &url,
    ))
    .await;
    assert!(
        rejected.starts_with(&format!("rejected {}", other.id)),
        "{rejected}"
    );
    assert!(matches!(retry(&store, "d2", "r6").await, Standing::Rejected(a) if a.id == other.id));
    let v = json(&with_db(&["approvals", "list", "--state", "all"], &url)).await;
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(3), "{v}");
}

#[tokio::test]
async fn prune_deletes_lapsed_approvals_and_only_decisions_already_in_an_audit_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(dir.path(), "audit.db");
    let store = ApprovalStore::connect(&url).await.expect("store");
    let day = 86_400_000;
    let long_ago = authz_types::now_unix_ms() - 10 * day;
    // Two calls held ten days ago: one lapsed undecided, one approved then and lapsed unused.
    let hold = async |digest: &str, rid: &str, at: i64| {
        let Standing::Created(a) = store
            .hold_or_use(
                &format!("apv-{rid}"),
                &call(digest),
                &context(rid),
                LIMITS,
                at,
            )
            .await
            .expect("hold")
        else {
            panic!("not held");
        };
        a
    };
    hold("old-1", "o1", long_ago).await;
    let approved = hold("old-2", "o2", long_ago).await;
    store
        .approve(&approved.id, "ann", 300_000, long_ago + 1)
        .await
        .expect("approve");
    // A third approved ten days ago whose decision is not yet in an audit chain.
    let unaudited = hold("old-3", "o3", long_ago).await;
    store
        .approve(&unaudited.id, "ann", 300_000, long_ago + 2)
        .await
        .expect("approve");
    // The first decision is written into an audit chain (the gateway claims it).
    let events = store.unaudited(10).await.expect("events");
    let first = events
        .iter()
        .find(|e| e.approval_id == approved.id)
        .expect("a decision");
    assert!(store.claim_audit(first.id, "chain-1").await.expect("claim"));
    // One pending now: never pruned.
    let pending = retry(&store, "new", "n1").await;
    assert!(matches!(pending, Standing::Created(_)));

    let v = json(&with_db(
        &["approvals", "prune", "--before", "1d", "--yes"],
        &url,
    ))
    .await;
    assert_eq!(v["approvals"], 3, "{v}");
    assert_eq!(v["decisions"], 1, "{v}");
    let left = store.events(None).await.expect("events");
    assert_eq!(left.len(), 1, "the unaudited decision stays: {left:?}");
    assert_eq!(left[0].approval_id, unaudited.id);
    let listed = json(&with_db(&["approvals", "list", "--state", "all"], &url)).await;
    assert_eq!(
        listed["approvals"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    // Without --yes and no terminal, nothing is deleted.
    let e = fails(&with_db(&["approvals", "prune", "--before", "1d"], &url)).await;
    assert!(format!("{e:#}").contains("--yes"), "{e:#}");
}
