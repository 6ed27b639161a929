//! The approval store: a held call creates one pending approval however often it is retried;
//! an approval is used once, only for the exact call, only before it expires; a rejection
//! refuses identical calls for a while; the per-principal cap; decisions are claimed once for
//! the audit trail.

use authz_rbac::{
    ApprovalFilter, ApprovalState, ApprovalStore, CallContext, Error, HeldCall, HoldLimits,
    Standing,
};
use authz_test_support::TestDatabase;

const LIMITS: HoldLimits = HoldLimits {
    pending_ttl_ms: 1_000,
    max_pending_per_principal: 3,
};

fn call(digest: &str) -> HeldCall {
    HeldCall {
        upstream: "tickets".into(),
        tool: "delete_ticket".into(),
        issuer: "https://issuer.example".into(),
        subject: "sue".into(),
        tenant: "default".into(),
        acting: "client=agent-1".into(),
        args_digest: digest.into(),
    }
}

fn context(request_id: &str) -> CallContext {
    CallContext {
        arguments: Some(r#"{"id":"T-1"}"#.into()),
        roles: vec!["ticket-steward".into()],
        rule: "p, ticket-steward, default, tool:tickets/delete_ticket, call, approve".into(),
        request_id: request_id.into(),
    }
}

async fn exercise(store: &ApprovalStore) {
    let c = call("d1");
    // The first sight creates a pending approval; retries find the same one.
    let Standing::Created(first) = store
        .hold_or_use("apv-1", &c, &context("r1"), LIMITS, 10)
        .await
        .expect("hold")
    else {
        panic!("not created");
    };
    assert_eq!(
        (
            first.state,
            first.expires_ms,
            first.context.request_id.as_str()
        ),
        (ApprovalState::Pending, 1_010, "r1")
    );
    assert_eq!(first.context.roles, ["ticket-steward"]);
    let again = store
        .hold_or_use("apv-2", &c, &context("r2"), LIMITS, 20)
        .await
        .expect("hold");
    assert!(
        matches!(&again, Standing::Pending(a) if a.id == "apv-1"),
        "{again:?}"
    );
    assert!(store.get("apv-2").await.expect("get").is_none());

    // Approved: used once by the identical call, never by a call with other arguments or
    // another agent, and never twice.
    let approved = store
        .approve("apv-1", "olivia", 500, 30)
        .await
        .expect("approve");
    assert_eq!(
        (
            approved.state,
            approved.decided_by.as_deref(),
            approved.expires_ms
        ),
        (ApprovalState::Approved, Some("olivia"), 530)
    );
    assert!(matches!(
        store.approve("apv-1", "olivia", 500, 31).await,
        Err(Error::NotFound)
    ));
    let other_args = store
        .hold_or_use("apv-3", &call("d2"), &context("r3"), LIMITS, 40)
        .await
        .expect("hold");
    assert!(
        matches!(&other_args, Standing::Created(a) if a.id == "apv-3"),
        "{other_args:?}"
    );
    let mut other_agent = call("d1");
    other_agent.acting = "client=agent-2".into();
    let other = store
        .hold_or_use("apv-4", &other_agent, &context("r4"), LIMITS, 41)
        .await
        .expect("hold");
    assert!(
        matches!(&other, Standing::Created(a) if a.id == "apv-4"),
        "{other:?}"
    );
    let used = store
        .hold_or_use("apv-5", &c, &context("r5"), LIMITS, 50)
        .await
        .expect("use");
    let Standing::Used(used) = used else {
        panic!("not used: {used:?}");
    };
    assert_eq!(
        (
            used.id.as_str(),
            used.state,
            used.used_request_id.as_deref()
        ),
        ("apv-1", ApprovalState::Used, Some("r5"))
    );
    // Reused: the call is held again, under a new pending approval.
    let reused = store
        .hold_or_use("apv-6", &c, &context("r6"), LIMITS, 60)
        .await
        .expect("hold");
    assert!(
        matches!(&reused, Standing::Created(a) if a.id == "apv-6"),
        "{reused:?}"
    );

    // The cap: sue now has three pending (apv-3, apv-4, apv-6).
    let capped = store
        .hold_or_use("apv-7", &call("d3"), &context("r7"), LIMITS, 70)
        .await
        .expect("hold");
    assert_eq!(capped, Standing::TooManyPending { pending: 3 });
    assert!(store.get("apv-7").await.expect("get").is_none());

    // Rejected: identical calls are refused until the rejection lapses, then held anew.
    let rejected = store
        .reject("apv-6", "olivia", Some("not this one"), 100, 80)
        .await
        .expect("reject");
    assert_eq!(
        (rejected.state, rejected.reason.as_deref()),
        (ApprovalState::Rejected, Some("not this one"))
    );
    let refused = store
        .hold_or_use("apv-8", &c, &context("r8"), LIMITS, 90)
        .await
        .expect("hold");
    assert!(
        matches!(&refused, Standing::Rejected(a) if a.id == "apv-6"),
        "{refused:?}"
    );
    let anew = store
        .hold_or_use("apv-9", &c, &context("r9"), LIMITS, 181)
        .await
        .expect("hold");
    assert!(
        matches!(&anew, Standing::Created(a) if a.id == "apv-9"),
        "{anew:?}"
    );

    // Expired: an approval not used in time is never used; a lapsed pending one cannot be
    // approved.
    store
        .approve("apv-9", "olivia", 10, 190)
        .await
        .expect("approve");
    let late = store
        .hold_or_use("apv-10", &c, &context("r10"), LIMITS, 200)
        .await
        .expect("hold");
    assert!(
        matches!(&late, Standing::Created(a) if a.id == "apv-10"),
        "{late:?}"
    );
    assert!(matches!(
        store.approve("apv-3", "olivia", 10, 5_000).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.reject("nope", "olivia", None, 10, 200).await,
        Err(Error::NotFound)
    ));

    // Listing, as shown at a given time.
    let now = 300;
    let pending = ApprovalFilter {
        state: Some("pending".into()),
        ..Default::default()
    };
    let ids = |v: Vec<authz_rbac::Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list(&pending, now).await.expect("list")),
        ["apv-10", "apv-4", "apv-3"]
    );
    let expired = ApprovalFilter {
        state: Some("expired".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list(&expired, now).await.expect("list")),
        ["apv-9", "apv-6"]
    );
    let elsewhere = ApprovalFilter {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    assert!(store.list(&elsewhere, now).await.expect("list").is_empty());
    assert_eq!(
        store
            .list(&ApprovalFilter::default(), now)
            .await
            .expect("list")
            .len(),
        6
    );
    let nine = store.get("apv-9").await.expect("get").expect("apv-9");
    assert_eq!(nine.shown_state(now), "expired");
    assert!(!nine.is_open(now));

    // Decisions: recorded in order, claimed once for the audit trail.
    let events = store.events(None).await.expect("events");
    let steps: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.approval_id.as_str(), e.event.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("apv-1", "approved"),
            ("apv-6", "rejected"),
            ("apv-9", "approved")
        ]
    );
    let first_event = events[0].id;
    assert!(store.claim_audit(first_event, "gw-1").await.expect("claim"));
    assert!(!store.claim_audit(first_event, "gw-2").await.expect("claim"));
    assert_eq!(store.unaudited(10).await.expect("unaudited").len(), 2);
    store
        .release_audit(first_event, "gw-1")
        .await
        .expect("release");
    assert_eq!(store.unaudited(10).await.expect("unaudited").len(), 3);

    // Pruning far in the future takes every approval, and of the decisions only those already
    // in an audit chain: here none (the claim above was given back), then the one claimed now.
    let all = store
        .list(&ApprovalFilter::default(), 0)
        .await
        .expect("list")
        .len() as u64;
    let (approvals, decisions) = store.prune(i64::MAX).await.expect("prune");
    assert_eq!((approvals, decisions), (all, 0));
    assert!(store.claim_audit(first_event, "gw-1").await.expect("claim"));
    assert_eq!(store.prune(i64::MAX).await.expect("prune"), (0, 1));
    assert_eq!(store.events(None).await.expect("events").len(), 2);
}

/// Two replicas racing for one approved approval: exactly one uses it.
async fn race(store: &ApprovalStore) {
    let mut c = call("race");
    c.subject = "rae".into();
    store
        .hold_or_use("race-1", &c, &context("r"), LIMITS, 10)
        .await
        .expect("hold");
    store
        .approve("race-1", "olivia", 500, 20)
        .await
        .expect("approve");
    let (ra, rb) = (context("ra"), context("rb"));
    let (a, b) = tokio::join!(
        store.hold_or_use("race-2", &c, &ra, LIMITS, 30),
        store.hold_or_use("race-3", &c, &rb, LIMITS, 30),
    );
    let used = [a.expect("a"), b.expect("b")]
        .iter()
        .filter(|s| matches!(s, Standing::Used(_)))
        .count();
    assert_eq!(used, 1);
}

#[tokio::test]
async fn sqlite_approvals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let store = ApprovalStore::connect(&url).await.expect("store");
    exercise(&store).await;
    race(&store).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_approvals() {
    let db = TestDatabase::postgres().await;
    let store = ApprovalStore::connect(db.url()).await.expect("store");
    exercise(&store).await;
    race(&store).await;
}
