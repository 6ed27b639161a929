//! The pin store: first sight under trust on first use and strict pinning, a change held
//! pending, approval and rejection (only of the definition named), a revert, and the history.

use authz_rbac::{DefinitionKind, Error, Item, Observed, PinState, PinStore};
use authz_test_support::TestDatabase;

const A: &str = "aaaaaaaa11111111";
const B: &str = "bbbbbbbb22222222";
const C: &str = "cccccccc33333333";

fn tool(name: &str) -> Item<'_> {
    Item {
        upstream: "tickets",
        kind: DefinitionKind::Tool,
        name,
    }
}

async fn exercise(store: &PinStore) {
    let t = tool("get_ticket");
    // Trust on first use: approved at once; the same definition again changes nothing.
    assert_eq!(
        store.observe(t, A, "{a}", true, 1).await.expect("observe"),
        Observed::New
    );
    assert_eq!(
        store.observe(t, A, "{a}", true, 2).await.expect("observe"),
        Observed::Approved
    );
    let pin = store.get(t).await.expect("get").expect("pin");
    assert_eq!(
        (pin.state, pin.approved_digest.as_deref()),
        (PinState::Approved, Some(A))
    );
    assert!(pin.admits(A) && !pin.admits(B));
    // Nothing pending: nothing to approve.
    assert!(matches!(
        store.approve(t, None, "olivia", 3).await,
        Err(Error::NotFound)
    ));

    // A change is pending; the same change seen again (by another replica) is not new.
    assert_eq!(
        store.observe(t, B, "{b}", true, 4).await.expect("observe"),
        Observed::Changed
    );
    assert_eq!(
        store.observe(t, B, "{b}", true, 5).await.expect("observe"),
        Observed::StillPending
    );
    let pin = store.get(t).await.expect("get").expect("pin");
    assert_eq!(pin.state, PinState::Pending);
    assert_eq!(
        (
            pin.pending_digest.as_deref(),
            pin.pending_definition.as_deref()
        ),
        (Some(B), Some("{b}"))
    );
    // Approving what one did not review is refused.
    assert!(matches!(
        store.approve(t, Some(&C[..8]), "olivia", 6).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.approve(t, Some("bbb"), "olivia", 6).await,
        Err(Error::NotFound)
    ));
    let pin = store
        .approve(t, Some(&B[..8]), "olivia", 7)
        .await
        .expect("approve");
    assert_eq!(pin.state, PinState::Approved);
    assert_eq!(pin.approved_digest.as_deref(), Some(B));
    assert_eq!(pin.approved_definition.as_deref(), Some("{b}"));
    assert_eq!(
        (pin.decided_by.as_deref(), pin.decided_ms),
        (Some("olivia"), Some(7))
    );

    // Rejected stays blocked; the approved definition served again clears it.
    assert_eq!(
        store.observe(t, C, "{c}", true, 8).await.expect("observe"),
        Observed::Changed
    );
    let pin = store.reject(t, None, "olivia", 9).await.expect("reject");
    assert_eq!(
        (pin.state, pin.pending_digest.as_deref()),
        (PinState::Rejected, Some(C))
    );
    assert_eq!(
        store.observe(t, C, "{c}", true, 10).await.expect("observe"),
        Observed::StillPending
    );
    assert_eq!(
        store.observe(t, B, "{b}", true, 11).await.expect("observe"),
        Observed::Reverted
    );
    let pin = store.get(t).await.expect("get").expect("pin");
    assert_eq!((pin.state, pin.pending_digest), (PinState::Approved, None));

    // Strict: the first sight waits for approval.
    let s = tool("delete_ticket");
    assert_eq!(
        store
            .observe(s, A, "{a}", false, 12)
            .await
            .expect("observe"),
        Observed::New
    );
    let pin = store.get(s).await.expect("get").expect("pin");
    assert_eq!(
        (pin.state, pin.approved_digest.as_deref()),
        (PinState::Pending, None)
    );
    assert!(!pin.admits(A));
    store.approve(s, None, "olivia", 13).await.expect("approve");

    // Kinds and upstreams are separate.
    let prompt = Item {
        kind: DefinitionKind::Prompt,
        ..t
    };
    assert!(store.get(prompt).await.expect("get").is_none());

    let events: Vec<(String, String, String)> = store
        .events(Some("tickets"))
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.name, e.event, e.actor))
        .collect();
    let expect = |n: &str, e: &str, a: &str| (n.to_owned(), e.to_owned(), a.to_owned());
    assert_eq!(
        events,
        [
            expect("get_ticket", "first_seen", "gateway"),
            expect("get_ticket", "changed", "gateway"),
            expect("get_ticket", "approved", "olivia"),
            expect("get_ticket", "changed", "gateway"),
            expect("get_ticket", "rejected", "olivia"),
            expect("get_ticket", "reverted", "gateway"),
            expect("delete_ticket", "first_seen_pending", "gateway"),
            expect("delete_ticket", "approved", "olivia"),
        ]
    );
    assert!(
        store
            .events(Some("other"))
            .await
            .expect("events")
            .is_empty()
    );
    assert_eq!(store.all().await.expect("all").len(), 2);

    // Each step is claimed for an audit chain by exactly one replica; one given back is open
    // again.
    let open = store.unaudited(100).await.expect("unaudited");
    assert_eq!(open.len(), 8);
    let first = open[0].id;
    assert!(store.claim_audit(first, "gw-1").await.expect("claim"));
    assert!(!store.claim_audit(first, "gw-2").await.expect("claim"));
    store
        .release_audit(first, "gw-2")
        .await
        .expect("not its claim");
    assert_eq!(store.unaudited(100).await.expect("unaudited").len(), 7);
    store.release_audit(first, "gw-1").await.expect("release");
    assert_eq!(store.unaudited(100).await.expect("unaudited")[0].id, first);
}

#[tokio::test]
async fn sqlite_pins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    exercise(&PinStore::connect(&url).await.expect("store")).await;
}

#[tokio::test]
#[cfg_attr(not(authz_postgres), ignore = "needs Postgres: run cargo xtask test")]
async fn postgres_pins() {
    let db = TestDatabase::postgres().await;
    exercise(&PinStore::connect(db.url()).await.expect("store")).await;
}
